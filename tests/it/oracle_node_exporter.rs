//! Cross-check of the md parsers against Debian's node_exporter (package `prometheus-node-exporter`), run
//! for real on every corpus mdstat file (recipe of `tests/corpus/oracle/README.md`): same disk counts, same
//! blocks, same accept/reject decision. Deliberate differences are asserted, with the reason:
//! - a reshape: node_exporter 1.5.0 reports it "active" and fully synced; hvprobe reports the reshape and
//!   its position;
//! - inactive arrays: node_exporter reports 0 required/active disks; hvprobe keeps what the kernel printed;
//! - unindented status lines (`pymdstat_15`): node_exporter rejects the file; hvprobe reads it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{
    ChildGuard, FixtureHost, corpus_text, free_port, http_get, require_bin, wait_for,
};
use hvprobe::check::md_raid::from_mdstat;
use hvprobe::check::md_raid::mdstat::parse_mdstat;

/// Scrapes node_exporter's mdadm collector over a fake root. Returns `(collector_ok, metrics)`.
fn node_exporter(root: &std::path::Path) -> (bool, HashMap<String, f64>) {
    let bin = require_bin("prometheus-node-exporter", "prometheus-node-exporter");
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(bin)
        .arg(format!("--web.listen-address={addr}"))
        .arg(format!("--path.procfs={}", root.join("proc").display()))
        .arg(format!("--path.sysfs={}", root.join("sys").display()))
        .arg(format!("--path.rootfs={}", root.display()))
        .args(["--collector.disable-defaults", "--collector.mdadm"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node_exporter");
    let _guard = ChildGuard(child);
    let (_, body) = wait_for(Duration::from_secs(10), || {
        http_get(&addr, "/metrics").filter(|(s, _)| *s == 200)
    })
    .expect("node_exporter answers on loopback");
    let metrics: HashMap<String, f64> = body
        .lines()
        .filter(|l| l.starts_with("node_md_") || l.starts_with("node_scrape_collector_success"))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect();
    let ok = metrics.get("node_scrape_collector_success{collector=\"mdadm\"}") == Some(&1.0);
    (ok, metrics)
}

#[test]
fn md_disk_counts_agree_with_a_live_node_exporter() {
    let mut files: Vec<String> = std::fs::read_dir(crate::support::corpus("mdstat"))
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .into_string()
                .unwrap()
                .strip_suffix(".txt")
                .map(str::to_owned)
        })
        .collect();
    files.sort();
    let mut arrays_compared = 0;
    for name in &files {
        let text = corpus_text(&format!("mdstat/{name}.txt"));
        let h = FixtureHost::empty();
        h.write("proc/mdstat", &text);
        std::fs::create_dir_all(h.path("sys")).unwrap();
        let (ok, m) = node_exporter(h.root());
        let ours = parse_mdstat(&text);
        if name == "pymdstat_15" {
            assert!(
                !ok && ours.is_ok(),
                "{name}: expected node_exporter to reject, hvprobe to accept"
            );
            continue;
        }
        assert_eq!(
            ours.is_ok(),
            ok,
            "{name}: accept/reject differs (hvprobe: {ours:?})"
        );
        let Ok(md) = ours else { continue };
        for raw in &md.arrays {
            let a = from_mdstat(raw);
            let get = |metric: &str| {
                m.get(&format!("{metric}{{device=\"{}\"}}", raw.name))
                    .copied()
            };
            let disks = |state: &str| {
                m.get(&format!(
                    "node_md_disks{{device=\"{}\",state=\"{state}\"}}",
                    raw.name
                ))
                .copied()
            };
            let ctx = format!("{name} {}", raw.name);
            assert_eq!(
                disks("failed"),
                Some(f64::from(a.failed_disks)),
                "{ctx} failed"
            );
            assert_eq!(
                disks("spare"),
                Some(f64::from(a.spare_disks)),
                "{ctx} spare"
            );
            assert_eq!(
                get("node_md_blocks"),
                raw.blocks.map(|b| b as f64),
                "{ctx} blocks"
            );
            if raw.state == "inactive" {
                assert_eq!(get("node_md_disks_required"), Some(0.0), "{ctx}");
            } else {
                assert_eq!(
                    get("node_md_disks_required"),
                    a.raid_disks.map(f64::from),
                    "{ctx} required"
                );
                assert_eq!(
                    disks("active"),
                    a.active_disks.map(f64::from),
                    "{ctx} active"
                );
                let synced = get("node_md_blocks_synced").unwrap();
                match raw.progress.as_ref().and_then(|p| p.done) {
                    Some(done) if a.sync_action == "reshape" => {
                        assert_eq!(
                            Some(synced),
                            raw.blocks.map(|b| b as f64),
                            "{ctx}: 1.5.0 says synced"
                        );
                        assert!((done as f64) < synced, "{ctx}");
                    }
                    Some(done) => assert_eq!(synced, done as f64, "{ctx} synced"),
                    None => {}
                }
            }
            arrays_compared += 1;
        }
    }
    assert!(
        arrays_compared >= 50,
        "only {arrays_compared} arrays compared"
    );
}
