use super::*;
use crate::check::{Details, Status};
use crate::problems::Problems;

fn target(name: &str, kind: ProbeKind, critical: bool) -> TargetState {
    TargetState {
        name: name.into(),
        address: "10.0.0.1".into(),
        kind,
        critical,
        sent: 3,
        received: 3,
        window_loss_percent: 0.0,
        window_probes: 3,
        rtt_p50_ms: Some(0.4),
        rtt_max_ms: Some(0.9),
        reachable: true,
        failure: None,
        failure_detail: None,
        status: Status::Unknown,
    }
}

fn down(mut t: TargetState, class: &str, detail: Option<&str>) -> TargetState {
    t.received = 0;
    t.reachable = false;
    t.rtt_p50_ms = None;
    t.rtt_max_ms = None;
    t.window_loss_percent = 100.0;
    t.failure = Some(class.into());
    t.failure_detail = detail.map(str::to_owned);
    t
}

fn judge(targets: Vec<TargetState>, cfg: &ReachConfig) -> (Status, String, Vec<Status>) {
    let out = evaluate(targets, false, cfg);
    let Details::Reach(d) = &out.details else {
        panic!("{out:?}")
    };
    let each = d.targets.iter().map(|t| t.status).collect();
    (out.status, out.summary, each)
}

#[test]
fn unreachable_is_crit_for_critical_targets_warn_otherwise() {
    let cfg = ReachConfig::default();
    let s3 = down(
        target("s3", ProbeKind::Tcp, true),
        "tcp.refused",
        Some("Connection refused (os error 111)"),
    );
    let mut s3 = s3;
    s3.sent = 1;
    let gw = down(target("gw", ProbeKind::Icmp, false), "icmp.host_unreachable", None);
    let (status, summary, each) = judge(vec![gw, s3, target("ok", ProbeKind::Icmp, true)], &cfg);
    assert_eq!(status, Status::Crit);
    assert_eq!(each, [Status::Warn, Status::Crit, Status::Ok]);
    assert_eq!(
        summary,
        "s3 (10.0.0.1) unreachable (tcp.refused: Connection refused (os error 111)); gw (10.0.0.1) unreachable (icmp.host_unreachable, 3/3 lost); 1/3 targets reachable"
    );
}

#[test]
fn partial_loss_warns_over_the_window_only() {
    let cfg = ReachConfig::default();
    let mut lossy = target("peer", ProbeKind::Icmp, true);
    lossy.received = 2;
    lossy.window_probes = 60;
    lossy.window_loss_percent = 200.0 / 60.0; // two lost echoes in the window: 2 % loss looks like this
    assert_eq!(judge(vec![lossy.clone()], &cfg).0, Status::Ok);
    lossy.window_loss_percent = 20.0;
    let (status, summary, _) = judge(vec![lossy.clone()], &cfg);
    assert_eq!(status, Status::Warn);
    assert!(summary.starts_with("peer 20% loss over the last 60 echoes"), "{summary}");
    // Early in the agent's life the window is short: two lost of six is not yet partial loss.
    lossy.window_probes = 6;
    lossy.window_loss_percent = 200.0 / 6.0;
    assert_eq!(judge(vec![lossy.clone()], &cfg).0, Status::Ok);
    lossy.window_loss_percent = 50.0;
    assert_eq!(judge(vec![lossy], &cfg).0, Status::Warn);
}

#[test]
fn slow_targets_warn_when_asked() {
    let mut cfg = ReachConfig::default();
    let mut slow = target("far", ProbeKind::Icmp, false);
    slow.rtt_p50_ms = Some(250.0);
    assert_eq!(judge(vec![slow.clone()], &cfg).0, Status::Ok);
    cfg.warn_rtt_ms = Some(200.0);
    let (status, summary, _) = judge(vec![slow], &cfg);
    assert_eq!(status, Status::Warn);
    assert!(summary.starts_with("far rtt p50 250.0 ms >= 200 ms"), "{summary}");
}

#[test]
fn a_target_not_probed_is_unknown_never_ok() {
    let cfg = ReachConfig::default();
    let mut t = target("gw", ProbeKind::Icmp, true);
    t.sent = 0;
    t.received = 0;
    t.reachable = false;
    t.failure_detail = Some("cannot open an ICMP socket: …".into());
    let out = evaluate(vec![t], false, &cfg);
    assert_eq!(out.status, Status::Unknown);
    assert_eq!(out.reason, Some(crate::check::UnknownReason::NoPermission));
    assert!(out.summary.starts_with("gw not probed: cannot open an ICMP socket"), "{}", out.summary);
}

#[test]
fn details_round_trip_the_wire() {
    let d = ReachDetails {
        targets: vec![
            down(target("a", ProbeKind::Tls, true), "tls.cert.date_invalid", Some("expired")),
            target("b", ProbeKind::Icmp, false),
        ],
        icmp_raw_socket: true,
    };
    assert_eq!(wire::from_pb(&wire::to_pb(&d)), d);
}

fn cfg_of(toml: &str) -> ReachConfig {
    toml::from_str(toml).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn bad_targets_are_named_with_their_key() {
    let ok = cfg_of(
        r#"targets = [
            { name = "s3", address = "10.0.0.5:443", kind = "tls", critical = true, server-name = "s3.example" },
            { name = "gw", address = "10.0.0.1", kind = "icmp" },
            { name = "v6", address = "[2001:db8::1]:5672", kind = "tcp" },
        ]"#,
    );
    let mut p = Problems::default();
    ok.validate(&mut p);
    assert!(p.is_empty(), "{:?}", p.items());

    let bad = cfg_of(
        r#"probes = 2
        targets = [
            { name = "gw", address = "10.0.0.1:80", kind = "icmp" },
            { name = "gw", address = "broker.example:5672", kind = "tcp" },
            { name = "x", address = "10.0.0.2", kind = "tcp", server-name = "a.example" },
        ]"#,
    );
    let mut p = Problems::default();
    bad.validate(&mut p);
    let keys: Vec<&str> = p.items().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "targets[0].address",
            "targets[1].name",
            "targets[1].address",
            "targets[2].address",
            "targets[2].server-name",
            "probes"
        ],
        "{:?}",
        p.items()
    );
    assert!(toml::from_str::<ReachConfig>(r#"targets = [{ name = "a", address = "10.0.0.1", kind = "udp" }]"#).is_err());
}

/// A TLS target without a usable CA file is UNKNOWN (config), never OK; once the file is there the next
/// cycle probes it (a failure to load is not kept).
#[tokio::test]
async fn a_missing_ca_file_is_unknown_until_it_appears() {
    use crate::check::{Check, Context, Mode, UnknownReason};
    use crate::host::HostRoot;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    // A port nothing listens on: once probed, the connect is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let cfg = ReachConfig {
        targets: vec![TargetConfig {
            name: "s3".into(),
            address: format!("127.0.0.1:{port}"),
            kind: ProbeKind::Tls,
            critical: true,
            server_name: Some("s3.example".into()),
        }],
        ca_file: ca.display().to_string(),
        ..ReachConfig::default()
    };
    let mut check = ReachCheck::new(cfg);
    let ctx = Context::new(HostRoot::new("/"), Mode::Agent);
    let o = check.run(&ctx).await;
    assert_eq!(o.status, Status::Unknown, "{o:?}");
    assert_eq!(o.reason, Some(UnknownReason::Config));
    assert!(
        o.summary.starts_with("s3 not probed: no CA to verify with:") && o.summary.contains("ca.crt"),
        "{}",
        o.summary
    );
    let cert = rcgen::generate_simple_self_signed(vec!["ca.example".to_owned()]).unwrap();
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let o = check.run(&ctx).await;
    assert_eq!(o.status, Status::Crit, "{o:?}");
    assert!(o.summary.contains("tcp.refused"), "{}", o.summary);
}
