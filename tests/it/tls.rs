//! mTLS with the identity bound to the certificate, and authenticated query surfaces (issue 11): a CA made
//! in the test (rcgen; no private key is committed), a real collector and real agents over real TLS on
//! loopback. A borrowed certificate, a foreign CA, a plaintext agent and unauthenticated queries are all
//! refused; a reconnecting agent replaces its own stream; certificates are re-read on SIGHUP without
//! dropping the streams that are up; and after each, a real agent still reports.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::support::{Agent, Collector, FixtureHost, run, wait_for};

/// A CA and the certificates it signs, written as PEM files into a temp dir.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca,
        };
        std::fs::write(pki.path("ca.crt"), pki.ca.pem()).unwrap();
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues `name.crt`/`name.key` with these DNS names, URIs and IP addresses.
    fn issue(&self, name: &str, dns: &[&str], uris: &[&str], ips: &[&str]) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
        for u in uris {
            params
                .subject_alt_names
                .push(SanType::URI((*u).try_into().unwrap()));
        }
        for ip in ips {
            params
                .subject_alt_names
                .push(SanType::IpAddress(ip.parse().unwrap()));
        }
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (c, k) = (
            self.path(&format!("{name}.crt")),
            self.path(&format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

/// An `[agent.tls]` table: this certificate, verifying collectors against `pki`'s CA.
fn agent_tls(pki: &Pki, cert: &Path, key: &Path) -> String {
    format!(
        "[agent.tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n",
        cert.display(),
        key.display(),
        pki.path("ca.crt").display()
    )
}

/// A real agent with `[agent.tls]` (this certificate, collectors verified against `pki`'s CA).
fn tls_agent(
    c: &Collector,
    pki: &Pki,
    h: &FixtureHost,
    id: &str,
    az: &str,
    cert: &Path,
    key: &Path,
) -> Agent {
    Agent::start_cfg(h, id, az, &[&c.grpc], 1, &[], &agent_tls(pki, cert, key))
}

/// Waits until `id` reports, or fails the test with the collector's log.
fn wait_reporting(c: &Collector, pki: &Pki, id: &str) {
    wait_for(Duration::from_secs(20), || {
        reporting(c, pki, id).then_some(())
    })
    .unwrap_or_else(|| panic!("{id} does not report over TLS\n{}", c.log()));
}

/// `hvprobe <args>` against the collector's gRPC address: (exit code, stderr).
fn cli(args: &[&str]) -> (i32, String) {
    let out = run(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A collector with TLS on both ports and an API token; its certificate names 127.0.0.1.
fn collector(pki: &Pki) -> Collector {
    collector_with(pki, "")
}

/// `collector` with `extra` lines in its `[collector]` section.
fn collector_with(pki: &Pki, extra: &str) -> Collector {
    let (cert, key) = pki.issue("collector", &["localhost"], &[], &["127.0.0.1"]);
    std::fs::write(pki.path("token"), "s3cret-token\n").unwrap();
    Collector::start_tls(&format!(
        "{extra}\napi-token-file = \"{}\"\n[collector.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient-ca = \"{}\"\n",
        pki.path("token").display(),
        cert.display(),
        key.display(),
        pki.path("ca.crt").display()
    ))
}

/// `curl` on the HTTPS API: (status, body).
fn curl(c: &Collector, pki: &Pki, path: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(pki.path("ca.crt"))
        .args(extra)
        .args(["-w", "\n%{http_code}", &format!("https://{}{path}", c.http)])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn hosts(c: &Collector, pki: &Pki) -> serde_json::Value {
    let (code, body) = curl(
        c,
        pki,
        "/api/v1/hosts",
        &["-H", "Authorization: Bearer s3cret-token"],
    );
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn reporting(c: &Collector, pki: &Pki, id: &str) -> bool {
    hosts(c, pki).as_array().is_some_and(|a| {
        a.iter()
            .any(|h| h["host_id"] == id && h["status"] != "stale")
    })
}

#[test]
fn the_certificate_names_the_host_and_nobody_else_gets_in() {
    let pki = Pki::new("hvprobe test CA");
    let c = collector(&pki);
    // A legitimate agent: its certificate's DNS SAN is its host id.
    let h = FixtureHost::kernel_6_18();
    let (cert, key) = pki.issue("hv-good", &["hv-good"], &[], &[]);
    let _good = tls_agent(&c, &pki, &h, "hv-good", "az1", &cert, &key);
    wait_reporting(&c, &pki, "hv-good");
    // A SPIFFE identity binds the AZ too.
    let (scert, skey) = pki.issue(
        "hv-spiffe",
        &[],
        &["spiffe://fleet.test/az/az2/host/hv-spiffe"],
        &[],
    );
    let h2 = FixtureHost::kernel_6_18();
    let _spiffe = tls_agent(&c, &pki, &h2, "hv-spiffe", "az2", &scert, &skey);
    wait_reporting(&c, &pki, "hv-spiffe");
    // A borrowed certificate: hv-good's certificate used to report as hv-victim.
    let h3 = FixtureHost::kernel_6_18();
    let thief = tls_agent(&c, &pki, &h3, "hv-victim", "az1", &cert, &key);
    let told = wait_for(Duration::from_secs(20), || {
        thief
            .log()
            .contains("the client certificate names dns:hv-good, not host_id \"hv-victim\"")
            .then_some(())
    });
    assert!(told.is_some(), "the agent logs why: {}", thief.log());
    // The right host, the wrong AZ for a SPIFFE certificate.
    let h4 = FixtureHost::kernel_6_18();
    let wrong_az = tls_agent(&c, &pki, &h4, "hv-spiffe", "az1", &scert, &skey);
    wait_for(Duration::from_secs(20), || {
        wrong_az
            .log()
            .contains("names spiffe:az2/hv-spiffe, not host_id \"hv-spiffe\" in az \"az1\"")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("{}", wrong_az.log()));
    // A foreign CA, and a plaintext agent: they never get in.
    let foreign = Pki::new("somebody else's CA");
    let (fcert, fkey) = foreign.issue("hv-foreign", &["hv-foreign"], &[], &[]);
    let h5 = FixtureHost::kernel_6_18();
    // Its own certificate is from a foreign CA; it trusts ours for the collector.
    let _foreign = tls_agent(&c, &pki, &h5, "hv-foreign", "az1", &fcert, &fkey);
    let h6 = FixtureHost::kernel_6_18();
    let _plain = Agent::start(&h6, "hv-plain", "az1", &[&c.grpc], 1);
    std::thread::sleep(Duration::from_secs(4));
    let all = hosts(&c, &pki).to_string();
    for intruder in ["hv-victim", "hv-foreign", "hv-plain"] {
        assert!(!all.contains(intruder), "{intruder} got in: {all}");
    }
    assert!(c.metric_tls(&pki, "hvprobe_collector_tls_handshake_failures_total") >= 2.0);
    // The legitimate agents still report, and a fresh fault still opens a verdict.
    assert!(reporting(&c, &pki, "hv-good") && reporting(&c, &pki, "hv-spiffe"));
    h.set_conntrack(950, 1000);
    wait_for(Duration::from_secs(20), || {
        let (_, body) = curl(
            &c,
            &pki,
            "/api/v1/zones?az=az1",
            &["-H", "Authorization: Bearer s3cret-token"],
        );
        body.contains("conntrack CRIT on hv-good").then_some(())
    })
    .unwrap_or_else(|| panic!("no verdict after the intruders\n{}", c.log()));
}

trait TlsMetrics {
    fn metric_tls(&self, pki: &Pki, name: &str) -> f64;
}

impl TlsMetrics for Collector {
    fn metric_tls(&self, pki: &Pki, name: &str) -> f64 {
        let (_, body) = curl(
            self,
            pki,
            "/metrics",
            &["-H", "Authorization: Bearer s3cret-token"],
        );
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(f64::NAN)
    }
}

#[test]
fn queries_need_a_certificate_or_the_token() {
    let pki = Pki::new("hvprobe test CA");
    let c = collector(&pki);
    // HTTP: 401 without credentials, 200 with the token or a client certificate; /healthz stays open.
    let (code, body) = curl(&c, &pki, "/api/v1/zones", &[]);
    assert_eq!(code, 401, "{body}");
    let (code, _) = curl(
        &c,
        &pki,
        "/api/v1/zones",
        &["-H", "Authorization: Bearer wrong"],
    );
    assert_eq!(code, 401);
    let (code, _) = curl(
        &c,
        &pki,
        "/api/v1/zones",
        &["-H", "Authorization: Bearer s3cret-token"],
    );
    assert_eq!(code, 200);
    let (ocert, okey) = pki.issue("operator", &["operator"], &[], &[]);
    let (code, _) = curl(
        &c,
        &pki,
        "/api/v1/zones",
        &[
            "--cert",
            ocert.to_str().unwrap(),
            "--key",
            okey.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 200);
    let (code, body) = curl(&c, &pki, "/healthz", &[]);
    assert_eq!((code, body.trim()), (200, "ok"));
    // Plaintext HTTP gets no answer at all.
    assert!(crate::support::http_get(&c.http, "/api/v1/zones").is_none());
    // gRPC Query: hvprobe status without credentials fails, with the token or a certificate it works.
    let url = format!("https://{}", c.grpc);
    let ca = pki.path("ca.crt");
    let ca = ca.to_str().unwrap();
    let (code, err) = cli(&["status", "--collector", &url, "--ca", ca]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("client certificate"), "{err}");
    let token = pki.path("token");
    let (code, err) = cli(&[
        "status",
        "--collector",
        &url,
        "--ca",
        ca,
        "--token-file",
        token.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (cert, key) = (ocert.to_str().unwrap(), okey.to_str().unwrap());
    let (code, err) = cli(&[
        "timeline",
        "--collector",
        &url,
        "--ca",
        ca,
        "--cert",
        cert,
        "--key",
        key,
    ]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_reconnect_replaces_its_own_stream_and_sighup_keeps_streams_up() {
    let pki = Pki::new("hvprobe test CA");
    let c = collector(&pki);
    let (cert, key) = pki.issue("hv-r", &["hv-r"], &[], &[]);
    let h = FixtureHost::kernel_6_18();
    let mut first = tls_agent(&c, &pki, &h, "hv-r", "az1", &cert, &key);
    wait_reporting(&c, &pki, "hv-r");
    // The agent vanishes without closing its connection (SIGSTOP: a half-open stream), and comes back as a
    // new process with the same certificate: the newer stream replaces the older one.
    let pid = first.pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let h2 = FixtureHost::kernel_6_18();
    let _second = tls_agent(&c, &pki, &h2, "hv-r", "az1", &cert, &key);
    wait_for(Duration::from_secs(20), || {
        c.log()
            .contains("a newer stream of the same certificate replaces the older one")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no replacement\n{}", c.log()));
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    first.terminate();
    // SIGHUP with a new collector certificate: the stream that is up stays up, new connections get the new
    // certificate.
    pki.issue("collector", &["localhost"], &[], &["127.0.0.1"]);
    let before = c.log().matches("connected to collector").count();
    let cpid = c.child.as_ref().unwrap().0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &cpid])
            .status()
            .unwrap()
            .success()
    );
    wait_for(Duration::from_secs(10), || {
        c.log()
            .contains("TLS certificates and client CA reloaded")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("{}", c.log()));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        reporting(&c, &pki, "hv-r"),
        "the stream survived the reload"
    );
    assert_eq!(c.log().matches("connected to collector").count(), before);
    let h3 = FixtureHost::kernel_6_18();
    let (ncert, nkey) = pki.issue("hv-new", &["hv-new"], &[], &[]);
    let _new = tls_agent(&c, &pki, &h3, "hv-new", "az1", &ncert, &nkey);
    wait_reporting(&c, &pki, "hv-new");
}

/// Issue 15: TLS handshakes, the dearest thing a fleet coming back after an outage asks for, start at
/// `admit-connections-per-sec`. 25 clients with valid certificates handshaking at once against 5/s: about a
/// second's worth complete at once and the rest at the pace, and none fails or is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_start_at_the_configured_pace() {
    let pki = Pki::new("hvprobe pace CA");
    let c = tokio::task::block_in_place(|| {
        collector_with(
            &pki,
            "admit-connections-per-sec = 5\nadmit-connections-per-source-per-sec = 100000",
        )
    });
    let (cert, key) = pki.issue("hv-pace", &["hv-pace"], &[], &[]);
    let mut roots = rustls::RootCertStore::empty();
    for ca in hvprobe::tls::load_certs(&pki.path("ca.crt")).unwrap() {
        roots.add(ca).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        hvprobe::tls::load_certs(&cert).unwrap(),
        hvprobe::tls::load_key(&key).unwrap(),
    )
    .unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    // A full bucket whatever connected before: a second's quiet refills it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let t0 = std::time::Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..25 {
        let (connector, addr) = (connector.clone(), c.grpc.clone());
        clients.spawn(async move {
            let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let tls = tokio::time::timeout(Duration::from_secs(20), connector.connect(name, tcp))
                .await
                .expect("a paced handshake completes, it is not dropped")
                .expect("a valid client completes its handshake");
            (t0.elapsed().as_secs_f64(), tls)
        });
    }
    let (at, held) = crate::support::finish_times(clients).await;
    crate::support::assert_paced(&at, 5, &[0.5, 1.5, 2.5]);
    assert!(at[24] >= 3.0, "20 beyond the burst at 5/s: {at:?}");
    drop(held);
    let (code, metrics) = tokio::task::block_in_place(|| {
        curl(
            &c,
            &pki,
            "/metrics",
            &["-H", "Authorization: Bearer s3cret-token"],
        )
    });
    assert_eq!(code, 200, "{metrics}");
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    assert_eq!(value("hvprobe_collector_tls_handshake_failures_total"), 0.0);
    assert!(value("hvprobe_collector_accept_pauses_total") > 0.0);
}
