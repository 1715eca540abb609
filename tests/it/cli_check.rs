//! `hvprobe check` end to end: the real binary against fixture hosts, asserting exit codes and JSON.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use crate::support::{FixtureHost, check_of, json_of, run};

/// A config with short windows so the suite stays fast (the window itself is exercised in
/// `one_shot_window_sees_drops_and_oom_kills`), and without the network checks, which have suites of their
/// own against real servers.
fn fast_config(h: &FixtureHost) -> String {
    let p = h.path("hvprobe.toml");
    std::fs::write(
        &p,
        "[[check]]\nkind = \"memory\"\nwindow-ms = 50\n\n[[check]]\nkind = \"conntrack\"\nwindow-ms = 50\n\n[[check]]\nkind = \"dns\"\nenabled = false\n",
    )
    .unwrap();
    p.to_str().unwrap().to_owned()
}

fn check_json(h: &FixtureHost, extra: &[&str]) -> (i32, serde_json::Value) {
    let cfg = fast_config(h);
    let mut args = vec![
        "check",
        "--root",
        h.root_str(),
        "--config",
        &cfg,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    (out.status.code().unwrap_or(-1), json_of(&out))
}

#[test]
fn healthy_6_18_host_is_ok_with_details() {
    let h = FixtureHost::kernel_6_18();
    let (code, doc) = check_json(&h, &[]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["status"], "ok");
    let mem = check_of(&doc, "memory");
    assert_eq!(mem["status"], "ok");
    let d = &mem["details"];
    // Values of the real capture (tests/corpus/live_kernel_6.18/proc/meminfo), in bytes.
    assert_eq!(d["mem_total_bytes"], 24_684_096u64 * 1024);
    assert_eq!(d["mem_available_bytes"], 24_061_964u64 * 1024);
    assert_eq!(d["swap_total_bytes"], 0);
    assert_eq!(d["swap_free_bytes"], 0);
    assert_eq!(d["psi_some_avg10"], 0.0);
    assert_eq!(d["psi_full_avg10"], 0.0);
    assert_eq!(d["mem_available_estimated"], false);
    assert_eq!(d["swap_in_pages_per_sec"], 0.0);
    assert_eq!(d["oom_kills"], 0);
    let ct = check_of(&doc, "conntrack");
    assert_eq!(ct["status"], "ok");
    assert_eq!(ct["details"]["entries"], 0);
    assert_eq!(ct["details"]["max"], 262_144);
    assert_eq!(ct["details"]["used_percent"], 0.0);
    assert_eq!(ct["details"]["counters_available"], true);
    assert_eq!(ct["details"]["drop_delta"], 0);
    assert!(doc["host"]["hostname"].is_string());
    assert_eq!(doc["host"]["root"], h.root_str());
}

#[test]
fn memory_thresholds_give_warn_and_crit() {
    let h = FixtureHost::kernel_6_18();
    h.set_meminfo_kb("MemTotal", 1_000_000);
    h.set_meminfo_kb("MemAvailable", 95_000);
    let (code, doc) = check_json(&h, &["--check", "memory"]);
    assert_eq!(code, 1, "{doc}");
    let mem = check_of(&doc, "memory");
    assert_eq!(mem["status"], "warn");
    assert!(
        mem["summary"]
            .as_str()
            .unwrap()
            .starts_with("available 9.5% < 10%"),
        "{mem}"
    );

    h.set_meminfo_kb("MemAvailable", 40_000);
    let (code, doc) = check_json(&h, &["--check", "memory"]);
    assert_eq!(code, 2, "{doc}");
    assert_eq!(check_of(&doc, "memory")["status"], "crit");
}

#[test]
fn psi_thresholds_give_warn_and_crit() {
    let h = FixtureHost::kernel_6_18();
    h.set_psi_memory(12.5, 0.4);
    let (code, doc) = check_json(&h, &["--check", "memory"]);
    assert_eq!(code, 1, "{doc}");
    let mem = check_of(&doc, "memory");
    assert!(
        mem["summary"]
            .as_str()
            .unwrap()
            .contains("psi some avg10 12.50 >= 10"),
        "{mem}"
    );
    assert_eq!(mem["details"]["psi_some_avg10"], 12.5);
    assert_eq!(mem["details"]["psi_full_avg10"], 0.4);

    h.set_psi_memory(30.0, 6.0);
    let (code, doc) = check_json(&h, &["--check", "memory"]);
    assert_eq!(code, 2, "{doc}");
    assert!(
        check_of(&doc, "memory")["summary"]
            .as_str()
            .unwrap()
            .contains("psi full avg10 6.00 >= 5")
    );
}

#[test]
fn missing_psi_is_reported_not_fatal() {
    let h = FixtureHost::kernel_6_18();
    h.remove("proc/pressure");
    let (code, doc) = check_json(&h, &["--check", "memory"]);
    assert_eq!(code, 0, "{doc}");
    let d = &check_of(&doc, "memory")["details"];
    assert_eq!(d["psi_supported"], false);
    assert!(d["psi_some_avg10"].is_null());
    assert!(
        d["notes"][0].as_str().unwrap().contains("PSI unsupported"),
        "{d}"
    );
}

#[test]
fn kernel_without_memavailable_gets_the_estimate() {
    let h = FixtureHost::kernel_6_18();
    // The prometheus/procfs fixture is a real pre-3.14 style meminfo without MemAvailable.
    h.write(
        "proc/meminfo",
        &crate::support::corpus_text("meminfo/procfs_meminfo.txt"),
    );
    let (code, doc) = check_json(&h, &["--check", "memory"]);
    assert_eq!(code, 0, "{doc}");
    let d = &check_of(&doc, "memory")["details"];
    assert_eq!(d["mem_available_estimated"], true);
    // MemFree + Buffers + Cached + SReclaimable - Shmem, in kB, from procfs_meminfo.expected.json.
    let kb = 440_324u64 + 1_020_128 + 12_007_640 + 1_738_124 - 1_308;
    assert_eq!(d["mem_available_bytes"], kb * 1024);
}

#[test]
fn malformed_proc_files_make_only_that_check_unknown() {
    let cases: &[(&str, &str)] = &[
        ("proc/meminfo", ""),
        ("proc/meminfo", "MemTotal:       24684096 kB\nMemFr"),
        ("proc/meminfo", "\u{1}\u{2}garbage\u{7f}\n"),
        ("proc/meminfo", "MemTotal:       abc kB\nMemFree: 1 kB\n"),
    ];
    for (file, content) in cases {
        let h = FixtureHost::kernel_6_18();
        h.write(file, content);
        let (code, doc) = check_json(&h, &[]);
        let mem = check_of(&doc, "memory");
        assert_eq!(mem["status"], "unknown", "{content:?}: {mem}");
        assert_eq!(mem["reason"], "malformed", "{content:?}: {mem}");
        let summary = mem["summary"].as_str().unwrap();
        assert!(
            summary.contains(&h.path(file).display().to_string()),
            "{summary}"
        );
        assert_eq!(check_of(&doc, "conntrack")["status"], "ok");
        assert_eq!(code, 3, "unknown + ok exits 3: {doc}");
    }

    let h = FixtureHost::kernel_6_18();
    h.write(
        "proc/net/stat/nf_conntrack",
        "entries drop\n0000000g 00000000\n",
    );
    let (code, doc) = check_json(&h, &[]);
    let ct = check_of(&doc, "conntrack");
    assert_eq!(ct["status"], "unknown");
    assert!(
        ct["summary"]
            .as_str()
            .unwrap()
            .contains("proc/net/stat/nf_conntrack: malformed: line 2"),
        "{ct}"
    );
    assert_eq!(check_of(&doc, "memory")["status"], "ok");
    assert_eq!(code, 3);

    // Secondary sources: named, and the status is at least UNKNOWN.
    let h = FixtureHost::kernel_6_18();
    h.write(
        "proc/pressure/memory",
        &crate::support::corpus_text("pressure/procfs_malformed_1.txt"),
    );
    h.write(
        "proc/vmstat",
        &crate::support::corpus_text("vmstat/telegraf_invalid.txt"),
    );
    let (_, doc) = check_json(&h, &["--check", "memory"]);
    let mem = check_of(&doc, "memory");
    assert_eq!(mem["status"], "unknown", "{mem}");
    let summary = mem["summary"].as_str().unwrap();
    assert!(
        summary.contains("pressure/memory: malformed: line 1"),
        "{summary}"
    );
    assert!(summary.contains("vmstat: malformed"), "{summary}");
    // What could be read is still reported.
    assert_eq!(mem["details"]["mem_total_bytes"], 24_684_096u64 * 1024);
}

#[test]
fn all_unknown_exits_3() {
    let h = FixtureHost::kernel_6_18();
    h.write("proc/meminfo", "garbage\n");
    h.write("proc/sys/net/netfilter/nf_conntrack_count", "many\n");
    let (code, doc) = check_json(&h, &[]);
    assert_eq!(doc["status"], "unknown");
    assert_eq!(code, 3);
}

#[test]
fn conntrack_thresholds_and_absent_files() {
    let h = FixtureHost::kernel_6_18();
    h.set_conntrack(750, 1000);
    let (code, doc) = check_json(&h, &["--check", "conntrack"]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(check_of(&doc, "conntrack")["details"]["used_percent"], 75.0);

    h.set_conntrack(901, 1000);
    let (code, doc) = check_json(&h, &["--check", "conntrack"]);
    assert_eq!(code, 2, "{doc}");
    assert!(
        check_of(&doc, "conntrack")["summary"]
            .as_str()
            .unwrap()
            .starts_with("table 90.1% full >= 90%")
    );

    // Stat file absent (some distributions): judged on count/max, counters unavailable.
    h.set_conntrack(10, 1000);
    h.remove("proc/net/stat");
    let (code, doc) = check_json(&h, &["--check", "conntrack"]);
    assert_eq!(code, 0, "{doc}");
    let ct = check_of(&doc, "conntrack");
    assert_eq!(ct["details"]["counters_available"], false);
    assert!(ct["details"]["drop_per_sec"].is_null());
    assert!(
        ct["summary"]
            .as_str()
            .unwrap()
            .contains("counters unavailable")
    );

    // Module not loaded: nothing to check.
    h.remove("proc/sys/net/netfilter");
    let (code, doc) = check_json(&h, &["--check", "conntrack"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(
        check_of(&doc, "conntrack")["summary"],
        "conntrack not in use (module not loaded)"
    );
}

#[test]
fn conntrack_in_a_netns_with_flows() {
    // Real capture of a private netns with 6 tracked flows.
    let h = FixtureHost::kernel_6_18();
    for rel in [
        "proc/net/stat/nf_conntrack",
        "proc/sys/net/netfilter/nf_conntrack_count",
        "proc/sys/net/netfilter/nf_conntrack_max",
    ] {
        h.write(
            rel,
            &crate::support::corpus_text(&format!("live_kernel_6.18/netns_with_conntrack/{rel}")),
        );
    }
    let (code, doc) = check_json(&h, &["--check", "conntrack"]);
    assert_eq!(code, 0);
    assert_eq!(check_of(&doc, "conntrack")["details"]["entries"], 6);
}

#[test]
fn vm_cgroups_are_ranked_by_pressure() {
    let h = FixtureHost::kernel_6_18();
    for (i, some) in [3.0, 40.5, 0.0, 12.0, 7.0, 25.0, 1.0].iter().enumerate() {
        h.add_vm_cgroup(
            &format!("machine-qemu\\x2d{i}\\x2dvm{i}.scope"),
            *some,
            some / 2.0,
            1 << 30,
        );
    }
    let (_, doc) = check_json(&h, &["--check", "memory"]);
    let mem = check_of(&doc, "memory");
    let top = mem["details"]["top_cgroups"].as_array().unwrap();
    let names: Vec<&str> = top.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "qemu-1-vm1",
            "qemu-5-vm5",
            "qemu-3-vm3",
            "qemu-4-vm4",
            "qemu-0-vm0"
        ]
    );
    assert_eq!(top[0]["psi_some_avg10"], 40.5);
    assert_eq!(top[0]["memory_current_bytes"], 1u64 << 30);
    assert!(top[0]["memory_max_bytes"].is_null());
    assert!(
        mem["summary"]
            .as_str()
            .unwrap()
            .contains("top VM qemu-1-vm1 some 40.50"),
        "{mem}"
    );

    // No machine.slice: nothing to rank, not an error.
    h.remove("sys/fs/cgroup/machine.slice");
    let (code, doc) = check_json(&h, &["--check", "memory"]);
    assert_eq!(code, 0);
    assert_eq!(
        check_of(&doc, "memory")["details"]["top_cgroups"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn one_shot_window_sees_drops_and_oom_kills() {
    let h = FixtureHost::kernel_6_18();
    let cfg = h.path("window.toml");
    std::fs::write(
        &cfg,
        "[[check]]\nkind = \"memory\"\nwindow-ms = 1500\ntimeout-ms = 5000\n[[check]]\nkind = \"conntrack\"\nwindow-ms = 1500\ntimeout-ms = 5000\n",
    )
    .unwrap();
    let child = crate::support::hvprobe()
        .args([
            "check",
            "--root",
            h.root_str(),
            "--format",
            "json",
            "--config",
        ])
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Change the counters in the middle of the window, as the kernel would.
    std::thread::sleep(std::time::Duration::from_millis(600));
    h.set_conntrack_stat("drop", 2);
    h.set_vmstat("oom_kill", 1);
    h.set_vmstat("pswpin", 600);
    let out = child.wait_with_output().unwrap();
    let doc = json_of(&out);
    let ct = check_of(&doc, "conntrack");
    assert_eq!(ct["status"], "crit", "{ct}");
    assert_eq!(ct["details"]["drop_delta"], 4, "2 CPUs x 2 drops: {ct}");
    let mem = check_of(&doc, "memory");
    assert_eq!(mem["status"], "crit", "{mem}");
    assert_eq!(mem["details"]["oom_kills"], 1);
    assert!(
        mem["details"]["swap_in_pages_per_sec"].as_f64().unwrap() > 100.0,
        "{mem}"
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn nagios_and_human_formats() {
    let h = FixtureHost::kernel_6_18();
    h.set_conntrack(800, 1000);
    let cfg = fast_config(&h);
    let out = run(&[
        "check",
        "--root",
        h.root_str(),
        "--config",
        &cfg,
        "--format",
        "nagios",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("HVPROBE WARNING - conntrack: table 80.0% full >= 75%"),
        "{first}"
    );
    let (_, perf) = first.split_once(" | ").expect("perfdata");
    assert!(perf.contains("conntrack_used=80%;;;0;100"), "{perf}");
    assert!(perf.contains("memory_available="), "{perf}");
    assert!(text.contains("\n[OK] memory: "), "{text}");

    let out = run(&["check", "--root", h.root_str(), "--config", &cfg]);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "STATUS   CHECK      SUMMARY");
    assert!(
        lines[1].starts_with("OK       memory     available"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("WARN     conntrack  table 80.0% full"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colour when stdout is not a tty");
}

#[test]
fn usage_and_config_errors_exit_64() {
    let h = FixtureHost::kernel_6_18();
    let bad = h.path("bad.toml");
    std::fs::write(
        &bad,
        "[[check]]\nkind = \"memory\"\nwarn-availble-percent = 3\n",
    )
    .unwrap();
    let bad = bad.to_str().unwrap();
    for args in [
        vec!["check", "--root", h.root_str(), "--config", bad],
        vec!["validate", "--config", bad],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("warn-availble-percent"), "{err}");
    }

    let inverted = h.path("inverted.toml");
    std::fs::write(
        &inverted,
        "[[check]]\nkind = \"conntrack\"\nwarn-used-percent = 95\ncrit-used-percent = 90\n",
    )
    .unwrap();
    let out = run(&["validate", "--config", inverted.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("check.conntrack.warn-used-percent"));

    for args in [
        vec!["check", "--check", "dns-typo"],
        vec!["check", "--format", "xml"],
        vec!["check", "--root", "/nonexistent/dir"],
        vec!["frobnicate"],
        vec![],
    ] {
        let out = run(&args);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run(&["validate", "--config", "/nonexistent.toml"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml"));
    assert_eq!(run(&["--help"]).status.code(), Some(0));
    assert_eq!(run(&["--version"]).status.code(), Some(0));
}

#[test]
fn packaged_example_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging");
    let mut seen = 0;
    for entry in walk(&dir) {
        if entry.extension().is_some_and(|e| e == "toml") {
            seen += 1;
            let out = run(&["validate", "--config", entry.to_str().unwrap()]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}: {}",
                entry.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert!(seen > 0, "no example configs under packaging/");
}

/// The reference config names every check, so a new check cannot ship without its keys documented.
#[test]
fn the_reference_config_names_every_check() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/hvprobe.toml"),
    )
    .unwrap();
    for k in hvprobe::check::CheckKind::ALL {
        assert!(
            text.contains(&format!("kind = \"{k}\"")),
            "packaging/hvprobe.toml lacks a [[check]] table for {k}"
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `services` and `reach` are off until told what to watch; asked for by name with nothing to watch, each
/// is UNKNOWN (config) saying what to list, never OK about nothing.
#[test]
fn asked_for_with_nothing_to_watch_a_check_is_unknown_never_ok() {
    for (check, says) in [
        ("services", "no units to watch"),
        ("reach", "no targets to probe"),
    ] {
        let out = run(&["check", "--check", check, "--format", "json"]);
        let doc = json_of(&out);
        let c = check_of(&doc, check);
        assert_eq!(
            (
                out.status.code(),
                c["status"].as_str(),
                c["reason"].as_str()
            ),
            (Some(3), Some("unknown"), Some("config")),
            "{c}"
        );
        assert!(c["summary"].as_str().unwrap().starts_with(says), "{c}");
    }
}
