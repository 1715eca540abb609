//! The `reach` check and its correlation in a network-namespace lab: four hosts (two AZs of two) routed
//! through a `core` namespace to a `target` namespace that plays object storage (TLS, a certificate for
//! `s3.lab` from the test's CA) and a broker (TCP), each host a real agent in its own namespace, streaming to
//! a real collector through a veth into the test's own namespace. Faults are made with nftables in `core`,
//! by taking the target's link down and by closing the services, and each is seen to open exactly one
//! verdict and to close it when undone:
//! one host cut (rejected: the router's unreachable is seen at once), a whole AZ cut (dropped: timeouts),
//! the target host down, the service down (refused), a TLS failure (wrong certificate name), and 2 % random
//! loss on every link, which must open nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::Value;

use crate::support::{Agent, Collector, FixtureHost, Netns, ifname, ns_sh, require_bin, sh};

const TARGET: &str = "10.213.100.2";
const GW: &str = "10.213.100.1";

/// A TCP service the test plays inside a namespace: accepts, and (for TLS) completes a handshake with the
/// current configuration. Dropping it closes the listening socket: connects are refused.
struct Service {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    fn start(
        ns: &Netns,
        addr: &str,
        tls: Option<Arc<Mutex<Arc<rustls::ServerConfig>>>>,
    ) -> Service {
        let addr: SocketAddr = addr.parse().unwrap();
        let listener = ns.enter(|| TcpListener::bind(addr)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut sock, _)) => {
                        let _ = sock.set_nonblocking(false);
                        let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
                        if let Some(cfg) = &tls {
                            let cfg = cfg.lock().unwrap().clone();
                            std::thread::spawn(move || {
                                if let Ok(mut conn) = rustls::ServerConnection::new(cfg) {
                                    while conn.is_handshaking() {
                                        if conn.complete_io(&mut sock).is_err() {
                                            return;
                                        }
                                    }
                                    let _ = conn.complete_io(&mut sock);
                                    let mut buf = [0u8; 64];
                                    let _ = sock.read(&mut buf);
                                }
                            });
                        } else {
                            let _ = sock.write_all(b"AMQP");
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Service {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A CA, and server configurations for certificates it issued.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "reach lab CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca,
        };
        std::fs::write(pki.dir.path().join("ca.crt"), pki.ca.pem()).unwrap();
        pki
    }

    fn ca_file(&self) -> String {
        self.dir.path().join("ca.crt").display().to_string()
    }

    /// A server configuration presenting a certificate for `name`.
    fn server(&self, name: &str) -> Arc<rustls::ServerConfig> {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], der)
            .unwrap(),
        )
    }
}

/// The namespaces and links: hosts h0..h3 on 10.213.<i+1>.2/24, `core` routing, `target` on
/// 10.213.100.2/24 behind `core` (10.213.100.1), and the test's namespace on 10.213.0.1/30.
struct Lab {
    core: Netns,
    target: Netns,
    hosts: Vec<Netns>,
    target_if: String,
}

impl Lab {
    fn new() -> Lab {
        require_bin("nft", "nftables");
        let core = Netns::new("rcore");
        let target = Netns::new("rtgt");
        ns_sh(&core, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        // The router answers every probe it rejects: Linux rate-limits the ICMP errors it sends (1/s per
        // destination by default), under which some echoes would time out instead.
        ns_sh(&core, &["sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"]);
        // The test's namespace <-> core: the collector listens on 10.213.0.1.
        let (root_if, core_if) = (ifname("r"), ifname("c"));
        sh(&[
            "ip", "link", "add", &root_if, "type", "veth", "peer", "name", &core_if, "netns",
            &core.name,
        ]);
        sh(&["ip", "addr", "add", "10.213.0.1/30", "dev", &root_if]);
        sh(&["ip", "link", "set", &root_if, "up"]);
        sh(&[
            "ip",
            "route",
            "add",
            "10.213.0.0/16",
            "via",
            "10.213.0.2",
            "dev",
            &root_if,
        ]);
        core.ip(&["addr", "add", "10.213.0.2/30", "dev", &core_if]);
        core.ip(&["link", "set", &core_if, "up"]);
        let link = |ns: &Netns, net: u32, ns_ip: &str| -> String {
            let (a, b) = (ifname("h"), ifname("k"));
            sh(&[
                "ip", "link", "add", &a, "netns", &ns.name, "type", "veth", "peer", "name", &b,
                "netns", &core.name,
            ]);
            ns.ip(&["addr", "add", &format!("{ns_ip}/24"), "dev", &a]);
            ns.ip(&["link", "set", &a, "up"]);
            ns.ip(&["route", "add", "default", "via", &format!("10.213.{net}.1")]);
            core.ip(&["addr", "add", &format!("10.213.{net}.1/24"), "dev", &b]);
            core.ip(&["link", "set", &b, "up"]);
            a
        };
        let hosts: Vec<Netns> = (0..4).map(|_| Netns::new("rhost")).collect();
        for (i, h) in hosts.iter().enumerate() {
            let net = i as u32 + 1;
            link(h, net, &format!("10.213.{net}.2"));
            // az1's hosts may open the unprivileged ICMP socket (as Debian allows every group); a new
            // namespace allows none, so az2's agents (root) fall back to the raw socket: both are exercised.
            if i < 2 {
                ns_sh(
                    h,
                    &["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"],
                );
            }
        }
        let target_if = link(&target, 100, TARGET);
        ns_sh(
            &core,
            &[
                "nft",
                "add table inet lab; add chain inet lab forward { type filter hook forward priority 0; policy accept; }",
            ],
        );
        Lab {
            core,
            target,
            hosts,
            target_if,
        }
    }

    /// Replaces the forwarding rules of `core` (none: everything passes).
    fn rules(&self, rules: &[&str]) {
        ns_sh(&self.core, &["nft", "flush chain inet lab forward"]);
        for r in rules {
            ns_sh(
                &self.core,
                &["nft", &format!("add rule inet lab forward {r}")],
            );
        }
    }
}

/// Every open `reach` verdict the collector shows: (scope, summary).
fn reach_verdicts(c: &Collector) -> Vec<(String, String)> {
    let z = c.get("/api/v1/zones");
    let mut all: Vec<Value> = Vec::new();
    for zone in z["zones"].as_array().cloned().unwrap_or_default() {
        all.extend(zone["verdicts"].as_array().cloned().unwrap_or_default());
    }
    all.extend(z["region_verdicts"].as_array().cloned().unwrap_or_default());
    all.into_iter()
        .filter(|v| v["check"] == "reach" && v["recovered_at"].is_null())
        .map(|v| {
            (
                v["scope"].as_str().unwrap_or_default().to_owned(),
                v["summary"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits until `want` holds of the open reach verdicts; panics with what there was.
fn wait_verdicts(
    c: &Collector,
    what: &str,
    secs: u64,
    want: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = reach_verdicts(c);
        if want(&v) {
            return v;
        }
        if Instant::now() > deadline {
            panic!("{what}: reach verdicts {v:#?}\n{}", c.log());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A host's reach details, from the collector's host API.
fn reach_details(h: &Value) -> Option<Value> {
    h["checks"]
        .as_array()?
        .iter()
        .find(|x| x["check"] == "reach")
        .map(|x| x["details"].clone())
}

/// The failure class a host's reach check gave one of its targets.
fn target_failure(c: &Collector, host: &str, target: &str) -> Option<Value> {
    let details = reach_details(&c.get(&format!("/api/v1/hosts/{host}")))?;
    details["targets"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == target)
        .map(|t| t["failure"].clone())
}

fn has(v: &[(String, String)], scope: &str, text: &str) -> bool {
    v.iter().any(|(s, t)| s == scope && t.contains(text))
}

#[test]
fn each_reachability_fault_is_one_verdict_at_its_scope_and_closes_when_undone() {
    let lab = Lab::new();
    let pki = Pki::new();
    let tls_cfg = Arc::new(Mutex::new(pki.server("s3.lab")));
    let s3 = Service::start(
        &lab.target,
        &format!("{TARGET}:8443"),
        Some(tls_cfg.clone()),
    );
    let mut broker = Some(Service::start(&lab.target, &format!("{TARGET}:5672"), None));
    let c = Collector::start_on(
        "10.213.0.1",
        "\n[correlation]\naz-min-hosts = 2\nflap-window-secs = 5\n",
    );
    let reach = format!(
        r#"
[[check]]
kind = "reach"
probe-timeout-ms = 500
connect-timeout-ms = 1400
timeout-ms = 2500
ca-file = "{}"
targets = [
  {{ name = "s3", address = "{TARGET}:8443", kind = "tls", critical = true, server-name = "s3.lab" }},
  {{ name = "broker", address = "{TARGET}:5672", kind = "tcp", critical = true }},
  {{ name = "target-host", address = "{TARGET}", kind = "icmp", critical = true }},
  {{ name = "gw", address = "{GW}", kind = "icmp" }},
]
"#,
        pki.ca_file()
    );
    let fixtures: Vec<FixtureHost> = (0..4).map(|_| FixtureHost::kernel_6_18()).collect();
    let ids = ["az1-h0", "az1-h1", "az2-h2", "az2-h3"];
    let _agents: Vec<Agent> = (0..4)
        .map(|i| {
            let az = if i < 2 { "az1" } else { "az2" };
            Agent::start_in(
                Some(&lab.hosts[i]),
                &fixtures[i],
                ids[i],
                az,
                &[&c.grpc],
                3,
                &[],
                &reach,
            )
        })
        .collect();
    // Healthy: every host reports reach OK.
    crate::support::wait_for(Duration::from_secs(40), || {
        let hosts = c.hosts();
        let ok = hosts.len() == 4
            && hosts.iter().all(|h| {
                h["checks"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|x| x["check"] == "reach" && x["status"] == "ok")
                })
            });
        ok.then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the lab did not come up healthy: {:#?}\n{}",
            c.hosts(),
            c.log()
        )
    });
    assert!(reach_verdicts(&c).is_empty());

    // 1. One host of each AZ cut from the target machine by a reject rule: one verdict each, that host's,
    //    naming every target at that address. The router's "host unreachable" came back at once, not as a
    //    timeout: read from the error queue of az1-h0's datagram socket, and quoted back to az2-h2's raw
    //    socket (where it must not count as a reply).
    lab.rules(&[&format!(
        "ip saddr {{ 10.213.1.2, 10.213.3.2 }} ip daddr {TARGET} reject with icmp type host-unreachable"
    )]);
    let v = wait_verdicts(&c, "one host cut", 40, |v| {
        has(
            v,
            "host",
            "az1-h0 cannot reach 10.213.100.2 (broker, s3, target-host): tcp.address_unreachable (local: 1/2 hosts of az1 probing it)",
        ) && has(
            v,
            "host",
            "az2-h2 cannot reach 10.213.100.2 (broker, s3, target-host): tcp.address_unreachable (local: 1/2 hosts of az2 probing it)",
        )
    });
    assert_eq!(v.len(), 2, "{v:#?}");
    for (host, raw) in [("az1-h0", false), ("az2-h2", true)] {
        let h = c.get(&format!("/api/v1/hosts/{host}"));
        assert_eq!(
            (
                target_failure(&c, host, "target-host"),
                reach_details(&h).map(|d| d["icmp_raw_socket"].clone())
            ),
            (
                Some(Value::from("icmp.host_unreachable")),
                Some(Value::from(raw))
            ),
            "{h}"
        );
    }
    lab.rules(&[]);
    wait_verdicts(&c, "one host cut, undone", 40, |v| v.is_empty());

    // 2. A whole AZ cut (dropped: timeouts): one AZ verdict, for az1 only.
    lab.rules(&[&format!(
        "ip saddr {{ 10.213.1.2, 10.213.2.2 }} ip daddr {TARGET} drop"
    )]);
    let v = wait_verdicts(&c, "AZ cut", 40, |v| {
        has(
            v,
            "az",
            "az1 cannot reach 10.213.100.2 (broker, s3, target-host): 2/2 hosts, tcp.timed_out",
        )
    });
    assert_eq!(v.len(), 1, "{v:#?}");
    lab.rules(&[]);
    wait_verdicts(&c, "AZ cut, undone", 40, |v| v.is_empty());

    // 3. The target machine goes down (its link): every AZ loses it -> one target verdict, not AZ verdicts.
    lab.target.ip(&["link", "set", &lab.target_if, "down"]);
    let v = wait_verdicts(&c, "target host down", 40, |v| {
        has(
            v,
            "region",
            "target 10.213.100.2 (broker, s3, target-host) down: unreachable from 4/4 hosts in every AZ probing it (az1, az2)",
        )
    });
    assert_eq!(v.len(), 1, "{v:#?}");
    lab.target.ip(&["link", "set", &lab.target_if, "up"]);
    // Its default route went with the link; the host comes back with its network configuration.
    lab.target.ip(&["route", "replace", "default", "via", GW]);
    wait_verdicts(&c, "target host back", 60, |v| v.is_empty());
    // 4. The service down: connections refused everywhere -> one target verdict for the broker.
    drop(broker.take());
    let v = wait_verdicts(&c, "service down", 40, |v| {
        has(
            v,
            "region",
            "target broker (10.213.100.2:5672) down: unreachable from 4/4 hosts in every AZ probing it (az1, az2), tcp.refused",
        )
    });
    assert_eq!(v.len(), 1, "only the broker: {v:#?}");
    broker = Some(Service::start(&lab.target, &format!("{TARGET}:5672"), None));
    wait_verdicts(&c, "service back", 40, |v| v.is_empty());

    // 5. TLS failure: s3 presents a certificate for another name.
    *tls_cfg.lock().unwrap() = pki.server("other.lab");
    let v = wait_verdicts(&c, "TLS failure", 40, |v| {
        has(
            v,
            "region",
            "target s3 (10.213.100.2:8443) down: unreachable from 4/4 hosts in every AZ probing it (az1, az2), tls.cert.name_invalid",
        )
    });
    assert_eq!(v.len(), 1, "only s3: {v:#?}");
    *tls_cfg.lock().unwrap() = pki.server("s3.lab");
    wait_verdicts(&c, "TLS fixed", 40, |v| v.is_empty());

    // 6. 2 % random loss on every link through core, for ten cycles: no verdict at all.
    lab.rules(&["numgen random mod 100 < 2 drop"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let v = reach_verdicts(&c);
        assert!(v.is_empty(), "2 % loss opened a verdict: {v:#?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    lab.rules(&[]);
    drop((s3, broker));
}

/// Never OK blind: without a socket it may open (a namespace whose `ping_group_range` admits no group, and
/// no CAP_NET_RAW) the ICMP targets are UNKNOWN `no-permission` naming both ways; as root in the same
/// namespace the raw socket is used and the same target answers.
#[test]
fn no_icmp_socket_is_unknown_naming_why_and_root_falls_back_to_raw() {
    let setpriv = require_bin("setpriv", "util-linux");
    let ns = Netns::new("rperm");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let cfg = dir.path().join("reach.toml");
    std::fs::write(
        &cfg,
        "[[check]]\nkind = \"reach\"\ntargets = [{ name = \"lo\", address = \"127.0.0.1\", kind = \"icmp\", critical = true }]\n",
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let args = [
        "check",
        "--config",
        cfg.to_str().unwrap(),
        "--check",
        "reach",
        "--format",
        "json",
    ];
    let out = ns
        .cmd(&setpriv)
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_hvprobe"))
        .args(args)
        .output()
        .unwrap();
    let doc = crate::support::json_of(&out);
    let c = crate::support::check_of(&doc, "reach");
    assert_eq!(
        (
            out.status.code(),
            c["status"].as_str(),
            c["reason"].as_str()
        ),
        (Some(3), Some("unknown"), Some("no-permission")),
        "{c}"
    );
    let summary = c["summary"].as_str().unwrap();
    assert!(
        summary.contains("ping_group_range") && summary.contains("CAP_NET_RAW"),
        "{summary}"
    );
    let out = ns
        .cmd(env!("CARGO_BIN_EXE_hvprobe"))
        .args(args)
        .output()
        .unwrap();
    let doc = crate::support::json_of(&out);
    let c = crate::support::check_of(&doc, "reach");
    assert_eq!(
        (out.status.code(), c["status"].as_str()),
        (Some(0), Some("ok")),
        "{c}"
    );
    assert_eq!(c["details"]["icmp_raw_socket"], true, "{c}");
}
