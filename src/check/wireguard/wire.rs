//! `WireguardDetails` to and from its protobuf message.

use super::{FlowDirection, FlowInfo, InterfaceInfo, PeerInfo, PeerState, Source, WireguardDetails};
use crate::check::Status;
use crate::pb;

/// Details to wire.
pub fn to_pb(w: &WireguardDetails) -> pb::WireguardDetails {
    pb::WireguardDetails {
        interfaces: w.interfaces.iter().map(interface_to_pb).collect(),
        missing: w.missing.clone(),
        notes: w.notes.clone(),
    }
}

/// Details from wire.
pub fn from_pb(w: &pb::WireguardDetails) -> WireguardDetails {
    WireguardDetails {
        interfaces: w.interfaces.iter().map(interface_from_pb).collect(),
        missing: w.missing.clone(),
        notes: w.notes.clone(),
    }
}

fn interface_to_pb(i: &InterfaceInfo) -> pb::WgInterface {
    pb::WgInterface {
        name: i.name.clone(),
        source: match i.source {
            Source::Kernel => pb::WgSource::Kernel,
            Source::Userspace => pb::WgSource::Userspace,
        } as i32,
        listen_port: i.listen_port.map(u32::from),
        up: i.up,
        public_key: i.public_key.clone(),
        peers: i.peers.iter().map(peer_to_pb).collect(),
        status: i.status.to_pb() as i32,
        summary: i.summary.clone(),
    }
}

fn interface_from_pb(i: &pb::WgInterface) -> InterfaceInfo {
    InterfaceInfo {
        name: i.name.clone(),
        source: match pb::WgSource::try_from(i.source) {
            Ok(pb::WgSource::Kernel) => Source::Kernel,
            _ => Source::Userspace,
        },
        listen_port: i.listen_port.and_then(|p| u16::try_from(p).ok()),
        up: i.up,
        public_key: i.public_key.clone(),
        peers: i.peers.iter().map(peer_from_pb).collect(),
        status: Status::from_pb(i.status),
        summary: i.summary.clone(),
    }
}

fn peer_to_pb(p: &PeerInfo) -> pb::WgPeer {
    pb::WgPeer {
        public_key: p.public_key.clone(),
        endpoint: p.endpoint.clone(),
        allowed_ips: p.allowed_ips.clone(),
        latest_handshake_age_secs: p.latest_handshake_age_secs,
        handshake_clock_skew: p.handshake_clock_skew,
        rx_bytes: p.rx_bytes,
        tx_bytes: p.tx_bytes,
        persistent_keepalive_secs: p.persistent_keepalive_secs.map(u32::from),
        probe_target: p.probe_target.clone(),
        probe_rtt_ms: p.probe_rtt_ms,
        one_way_secs: p.one_way_secs,
        state: match p.state {
            PeerState::Ok => pb::WgPeerState::Ok,
            PeerState::Never => pb::WgPeerState::Never,
            PeerState::Stale => pb::WgPeerState::Stale,
            PeerState::Unreachable => pb::WgPeerState::Unreachable,
            PeerState::OneWay => pb::WgPeerState::OneWay,
        } as i32,
        conntrack: p.conntrack.iter().map(flow_to_pb).collect(),
    }
}

fn flow_to_pb(f: &FlowInfo) -> pb::WgFlow {
    pb::WgFlow {
        outbound: f.direction == FlowDirection::Outbound,
        original: f.original.clone(),
        reply: f.reply.clone(),
        state: f.state.clone(),
        timeout_secs: f.timeout_secs,
        nat: f.nat.clone(),
        suspect: f.suspect.clone(),
        drop_command: f.drop_command.clone(),
    }
}

fn flow_from_pb(f: &pb::WgFlow) -> FlowInfo {
    FlowInfo {
        direction: if f.outbound {
            FlowDirection::Outbound
        } else {
            FlowDirection::Inbound
        },
        original: f.original.clone(),
        reply: f.reply.clone(),
        state: f.state.clone(),
        timeout_secs: f.timeout_secs,
        nat: f.nat.clone(),
        suspect: f.suspect.clone(),
        drop_command: f.drop_command.clone(),
    }
}

fn peer_from_pb(p: &pb::WgPeer) -> PeerInfo {
    PeerInfo {
        public_key: p.public_key.clone(),
        endpoint: p.endpoint.clone(),
        allowed_ips: p.allowed_ips.clone(),
        latest_handshake_age_secs: p.latest_handshake_age_secs,
        handshake_clock_skew: p.handshake_clock_skew,
        rx_bytes: p.rx_bytes,
        tx_bytes: p.tx_bytes,
        persistent_keepalive_secs: p
            .persistent_keepalive_secs
            .and_then(|k| u16::try_from(k).ok()),
        probe_target: p.probe_target.clone(),
        probe_rtt_ms: p.probe_rtt_ms,
        one_way_secs: p.one_way_secs,
        // A state this build does not know is shown as never-ok rather than as healthy.
        state: match pb::WgPeerState::try_from(p.state) {
            Ok(pb::WgPeerState::Ok) => PeerState::Ok,
            Ok(pb::WgPeerState::Stale) => PeerState::Stale,
            Ok(pb::WgPeerState::Unreachable) => PeerState::Unreachable,
            Ok(pb::WgPeerState::OneWay) => PeerState::OneWay,
            _ => PeerState::Never,
        },
        conntrack: p.conntrack.iter().map(flow_from_pb).collect(),
    }
}
