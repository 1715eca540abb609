//! Conformance of the /proc parsers on real data: every meminfo, vmstat, PSI and conntrack file of the
//! corpus, compared with what its source project asserts (`*.expected.json` / `*.expected.prom`) and with
//! what Debian's node_exporter 1.5.0 and check_swap printed for the same input (`oracle/`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use std::collections::HashMap;

use crate::support::corpus_text;
use hvprobe::check::conntrack::{parse_number, parse_stat};
use hvprobe::check::memory::{parse_meminfo, parse_vmstat};
use hvprobe::parse::parse_psi;
use serde_json::Value;

fn json(rel: &str) -> Value {
    serde_json::from_str(&corpus_text(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `name value` lines of a Prometheus exposition file (labels kept in the name).
fn prom(rel: &str) -> HashMap<String, f64> {
    corpus_text(rel)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[test]
fn meminfo_matches_procfs_expectations() {
    let m = parse_meminfo(&corpus_text("meminfo/procfs_meminfo.txt")).unwrap();
    let exp = &json("meminfo/procfs_meminfo.expected.json")["expected_procfs_fields"];
    let kb = |k: &str| exp[k].as_u64().unwrap_or_else(|| panic!("{k}")) * 1024;
    assert_eq!(m.total, kb("MemTotal"));
    assert_eq!(m.free, kb("MemFree"));
    assert_eq!(m.buffers, kb("Buffers"));
    assert_eq!(m.cached, kb("Cached"));
    assert_eq!(m.sreclaimable, kb("SReclaimable"));
    assert_eq!(m.shmem, kb("Shmem"));
    assert_eq!(m.swap_total, kb("SwapTotal"));
    assert_eq!(m.swap_free, kb("SwapFree"));
    assert_eq!(m.available, None, "this fixture has no MemAvailable line");
}

#[test]
fn meminfo_matches_node_exporter() {
    let m = parse_meminfo(&corpus_text("meminfo/node_exporter_meminfo.txt")).unwrap();
    let p = prom("meminfo/node_exporter_meminfo.expected.prom");
    let v = |k: &str| p[k] as u64;
    assert_eq!(m.total, v("node_memory_MemTotal_bytes"));
    assert_eq!(m.free, v("node_memory_MemFree_bytes"));
    assert_eq!(m.buffers, v("node_memory_Buffers_bytes"));
    assert_eq!(m.cached, v("node_memory_Cached_bytes"));
    assert_eq!(m.swap_total, v("node_memory_SwapTotal_bytes"));
    assert_eq!(m.swap_free, v("node_memory_SwapFree_bytes"));
    assert_eq!(m.shmem, v("node_memory_Shmem_bytes"));
    if let Some(a) = p.get("node_memory_MemAvailable_bytes") {
        assert_eq!(m.available, Some(*a as u64));
    }
}

#[test]
fn meminfo_agrees_with_check_swap() {
    // check_swap prints `swap=<free>B;…;0;<total>` for each corpus meminfo it was fed. It works in whole
    // MiB (SwapTotal 4194300 kB becomes 4095 MiB = 4293918720 B), so the comparison is at MiB precision:
    // the byte values differ by design of check_swap, not because either parser is wrong. check_swap also
    // counts SwapCached (pages that are both in RAM and in swap) as free; hvprobe reports the kernel's
    // SwapFree unchanged, so SwapCached is added back here before comparing.
    let results = corpus_text("oracle/check_swap_2.3.3/results.txt");
    let mut compared = 0;
    for line in results.lines() {
        let Some((name, rest)) = line.split_once(" | ") else {
            continue;
        };
        let file = format!("meminfo/{}.txt", name.trim());
        if !crate::support::corpus(&file).exists() {
            continue; // `proc_meminfo` was the oracle machine's own file, not in the corpus
        }
        let perf = rest.split("|swap=").nth(1).unwrap();
        let fields: Vec<&str> = perf.split(';').collect();
        let free: u64 = fields[0].trim_end_matches('B').parse().unwrap();
        let total: u64 = fields[4]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let text = corpus_text(&file);
        let m = parse_meminfo(&text).unwrap();
        let swap_cached = hvprobe::parse::parse_key_values(&text)
            .unwrap()
            .into_iter()
            .find(|(k, _)| *k == "SwapCached")
            .map_or(0, |(_, v)| v);
        let mib = |b: u64| b as f64 / 1_048_576.0;
        let ours = mib(m.swap_free + swap_cached);
        // Each of SwapFree and SwapCached is truncated to whole MiB by check_swap: up to 2 MiB apart.
        assert!(
            (ours - mib(free)).abs() < 2.0,
            "{file}: free {ours} MiB vs {free} B"
        );
        assert!(
            (mib(m.swap_total) - mib(total)).abs() <= 1.0,
            "{file}: total {} vs {total}",
            m.swap_total
        );
        compared += 1;
    }
    assert!(compared >= 4, "compared only {compared} check_swap results");
}

#[test]
fn telegraf_meminfo_files_parse_and_missing_fields_are_not_errors() {
    for f in [
        "meminfo/telegraf_normal.txt",
        "meminfo/telegraf_missing_fields.txt",
    ] {
        let m = parse_meminfo(&corpus_text(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(m.total, 16_201_888 * 1024, "{f}");
        assert_eq!(m.available, Some(14_221_924 * 1024), "{f}");
    }
    let live = parse_meminfo(&corpus_text("live_kernel_6.18/proc/meminfo")).unwrap();
    assert_eq!(live.total, 24_684_096 * 1024);
    assert_eq!(live.swap_total, 0, "the capture machine has no swap");
}

#[test]
fn vmstat_matches_node_exporter_and_telegraf() {
    let c = parse_vmstat(&corpus_text("vmstat/node_exporter_vmstat.txt")).unwrap();
    let exp = &json("vmstat/node_exporter_vmstat.expected.json")["expected"];
    assert_eq!(c.pswpin, exp["node_vmstat_pswpin"].as_u64());
    assert_eq!(c.pswpout, exp["node_vmstat_pswpout"].as_u64());
    assert_eq!(c.oom_kill, exp["node_vmstat_oom_kill"].as_u64());

    let t = json("vmstat/telegraf.expected.json");
    let full = parse_vmstat(&corpus_text("vmstat/telegraf_full.txt")).unwrap();
    let fields = t["expected"]["telegraf_full.txt"].clone();
    let fields = if fields.is_null() {
        t["expected"]["full"].clone()
    } else {
        fields
    };
    assert_eq!(full.pswpin, fields["pswpin"].as_u64(), "{fields}");
    assert_eq!(full.pswpout, fields["pswpout"].as_u64());
    assert_eq!(full.oom_kill, None, "old kernel: no oom_kill counter");
    assert!(parse_vmstat(&corpus_text("vmstat/telegraf_partial.txt")).is_ok());
    // telegraf: a non-integer value ("thp_split abcd") is an error; so it is here, naming the line.
    let err = parse_vmstat(&corpus_text("vmstat/telegraf_invalid.txt")).unwrap_err();
    assert!(err.to_string().contains("thp_split"), "{err}");

    let live = parse_vmstat(&corpus_text("live_kernel_6.18/proc/vmstat")).unwrap();
    assert_eq!(
        (live.pswpin, live.pswpout, live.oom_kill),
        (Some(0), Some(0), Some(0))
    );
}

#[test]
fn psi_matches_procfs_telegraf_and_node_exporter() {
    let exp = &json("pressure/procfs.expected.json")["expected"];
    for res in ["cpu", "memory", "io"] {
        let psi = parse_psi(&corpus_text(&format!("pressure/procfs/{res}"))).unwrap();
        let e = &exp[res];
        assert_eq!(
            psi.some.avg10,
            e["some"]["avg10"].as_f64().unwrap(),
            "{res}"
        );
        assert_eq!(
            psi.some.avg60,
            e["some"]["avg60"].as_f64().unwrap(),
            "{res}"
        );
        assert_eq!(
            psi.some.avg300,
            e["some"]["avg300"].as_f64().unwrap(),
            "{res}"
        );
        assert_eq!(
            psi.some.total,
            e["some"]["total"].as_u64().unwrap(),
            "{res}"
        );
        match psi.full {
            None => assert!(e["full"].is_null(), "{res}"),
            Some(f) => {
                assert_eq!(f.avg10, e["full"]["avg10"].as_f64().unwrap(), "{res}");
                assert_eq!(f.total, e["full"]["total"].as_u64().unwrap(), "{res}");
            }
        }
    }
    let t = &json("pressure/telegraf.expected.json")["expected"];
    let mem = parse_psi(&corpus_text("pressure/telegraf/memory")).unwrap();
    assert_eq!(mem.some.avg10, t["memory/some"]["avg10"].as_f64().unwrap());
    assert_eq!(mem.some.total, t["memory/some"]["total"].as_u64().unwrap());
    assert_eq!(
        mem.full.unwrap().avg60,
        t["memory/full"]["avg60"].as_f64().unwrap()
    );

    let n = &json("pressure/node_exporter.expected.json")["expected"];
    let mem = parse_psi(&corpus_text("pressure/node_exporter/memory")).unwrap();
    assert_eq!(
        mem.some.total as f64 / 1e6,
        n["node_pressure_memory_waiting_seconds_total"]
            .as_f64()
            .unwrap()
    );
    assert_eq!(
        mem.full.unwrap().total as f64 / 1e6,
        n["node_pressure_memory_stalled_seconds_total"]
            .as_f64()
            .unwrap()
    );
    // The live 6.18 capture: cpu now has a full line.
    let cpu = parse_psi(&corpus_text("live_kernel_6.18/proc/pressure/cpu")).unwrap();
    assert!(cpu.full.is_some());
}

#[test]
fn malformed_psi_is_rejected_with_the_line() {
    for (f, line) in [
        ("pressure/procfs_malformed_1.txt", 1),
        ("pressure/procfs_malformed_2.txt", 2),
    ] {
        let e = parse_psi(&corpus_text(f)).unwrap_err();
        assert_eq!(e.line, line, "{f}: {e}");
    }
}

fn conntrack_field(name: &str) -> &str {
    match name {
        "Entries" => "entries",
        "Searched" => "searched",
        "Found" => "found",
        "New" => "new",
        "Invalid" => "invalid",
        "Ignore" => "ignore",
        "Delete" => "delete",
        "DeleteList" => "delete_list",
        "Insert" => "insert",
        "InsertFailed" => "insert_failed",
        "Drop" => "drop",
        "EarlyDrop" => "early_drop",
        "SearchRestart" => "search_restart",
        other => panic!("unmapped field {other}"),
    }
}

#[test]
fn conntrack_stat_matches_procfs_per_cpu_values() {
    for (file, exp) in [
        (
            "conntrack/procfs_inline_nf_conntrack.txt",
            "conntrack/procfs_inline_nf_conntrack.expected.json",
        ),
        (
            "conntrack/procfs_inline_nf_conntrack_old_format.txt",
            "conntrack/procfs_inline_nf_conntrack_old_format.expected.json",
        ),
    ] {
        let stat = parse_stat(&corpus_text(file)).unwrap();
        let per_cpu = json(exp)["per_cpu"].as_array().unwrap().clone();
        assert_eq!(stat.rows.len(), per_cpu.len(), "{file}");
        for (cpu, expected) in per_cpu.iter().enumerate() {
            for (name, value) in expected.as_object().unwrap() {
                let col = conntrack_field(name);
                let got = match stat.column(col) {
                    Some(mut it) => it.nth(cpu).unwrap(),
                    // Old kernels lack search_restart; procfs reports 0 for it.
                    None => {
                        assert_eq!(col, "search_restart", "{file}: column {col} missing");
                        0
                    }
                };
                assert_eq!(got, value.as_u64().unwrap(), "{file} cpu {cpu} {col}");
            }
        }
    }
}

#[test]
fn conntrack_totals_match_node_exporter() {
    let stat = parse_stat(&corpus_text(
        "conntrack/node_exporter/proc/net/stat/nf_conntrack",
    ))
    .unwrap();
    let exp = &json("conntrack/node_exporter.expected.json")["expected"];
    for col in [
        "drop",
        "early_drop",
        "found",
        "ignore",
        "insert",
        "insert_failed",
        "invalid",
        "search_restart",
    ] {
        let want = exp[format!("node_nf_conntrack_stat_{col}")]
            .as_u64()
            .unwrap();
        assert_eq!(stat.total(col), Some(want), "{col}");
    }
    let count = parse_number(&corpus_text(
        "conntrack/node_exporter/proc/sys/net/netfilter/nf_conntrack_count",
    ))
    .unwrap();
    let max = parse_number(&corpus_text(
        "conntrack/node_exporter/proc/sys/net/netfilter/nf_conntrack_max",
    ))
    .unwrap();
    assert_eq!(count, exp["node_nf_conntrack_entries"].as_u64().unwrap());
    assert_eq!(
        max,
        exp["node_nf_conntrack_entries_limit"].as_u64().unwrap()
    );
}

#[test]
fn conntrack_live_6_18_agrees_with_conntrack_tools() {
    // conntrack -S printed the same counters for the same moment (conntrack-tools 1.4.7).
    for dir in ["live_kernel_6.18", "live_kernel_6.18/netns_with_conntrack"] {
        let stat = parse_stat(&corpus_text(&format!("{dir}/proc/net/stat/nf_conntrack"))).unwrap();
        let oracle = corpus_text(&format!("{dir}/conntrack_S.txt"));
        let rows: Vec<HashMap<&str, u64>> = oracle
            .lines()
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
                    .collect()
            })
            .collect();
        assert_eq!(rows.len(), stat.rows.len(), "{dir}");
        for col in [
            "found",
            "invalid",
            "insert",
            "insert_failed",
            "drop",
            "early_drop",
            "search_restart",
        ] {
            let ours: Vec<u64> = stat.column(col).unwrap().collect();
            let theirs: Vec<u64> = rows.iter().map(|r| r[col]).collect();
            assert_eq!(ours, theirs, "{dir} {col}");
        }
        let count = parse_number(&corpus_text(&format!(
            "{dir}/proc/sys/net/netfilter/nf_conntrack_count"
        )))
        .unwrap();
        assert_eq!(
            stat.total("entries"),
            Some(count),
            "{dir}: entries column is the global count"
        );
    }
    let c = corpus_text("live_kernel_6.18/netns_with_conntrack/conntrack_C.txt");
    assert_eq!(c.trim(), "6");
}
