//! The status page in a real headless Chromium (Debian's `chromium`, issue 12): a collector with real
//! agents in two AZs, an AZ-wide fault in one; the DOM Chromium builds shows the AZs, the verdict and its
//! hosts, and Chromium renders a screenshot of it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use std::process::Command;
use std::time::Duration;

use crate::support::{Agent, Collector, FixtureHost, require_bin, wait_for};

/// Chromium as this machine can run it: headless, no sandbox (root), no background networking (the
/// network is closed), a profile of its own.
fn chromium(profile: &std::path::Path) -> Command {
    let mut c = Command::new(require_bin("chromium", "chromium"));
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

#[test]
fn the_status_page_shows_the_azs_the_verdict_and_its_hosts() {
    let c = Collector::start("");
    let hosts: Vec<FixtureHost> = (0..6).map(|_| FixtureHost::kernel_6_18()).collect();
    let _agents: Vec<Agent> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let az = if i < 3 { "az-page-1" } else { "az-page-2" };
            Agent::start(h, &format!("page-hv{i}"), az, &[&c.grpc], 1)
        })
        .collect();
    for h in &hosts[..3] {
        h.set_conntrack(950, 1000);
    }
    wait_for(Duration::from_secs(30), || {
        let z = c.get("/api/v1/zones?az=az-page-1");
        (z["zones"][0]["verdicts"].as_array()?.len() == 1
            && c.get("/api/v1/zones")["zones"].as_array()?.len() == 2)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no verdict: {}", c.get("/api/v1/zones")));
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{}/", c.http);
    let out = chromium(profile.path())
        .args(["--virtual-time-budget=2000", "--dump-dom", &url])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        dom.contains("data-az=\"az-page-1\"") && dom.contains("data-az=\"az-page-2\""),
        "{dom}"
    );
    assert!(
        dom.contains("class=\"verdict\" data-check=\"conntrack\" data-scope=\"az\""),
        "the AZ verdict is on the page: {dom}"
    );
    for i in 0..3 {
        assert!(
            dom.contains(&format!("page-hv{i}")),
            "host page-hv{i} listed: {dom}"
        );
    }
    assert!(
        dom.contains("conntrack CRIT on 3/3 hosts of az-page-1 (AZ-wide)"),
        "{dom}"
    );
    assert!(dom.contains("id=\"timeline\""), "{dom}");
    // A screenshot, as an operator would see it.
    let shot = profile.path().join("status.png");
    let out = chromium(profile.path())
        .args(["--window-size=1280,900", "--virtual-time-budget=2000"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .unwrap();
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if let Ok(dir) = std::env::var("HVPROBE_SCREENSHOT_DIR") {
        std::fs::copy(&shot, std::path::Path::new(&dir).join("status-page.png")).unwrap();
    }
}
