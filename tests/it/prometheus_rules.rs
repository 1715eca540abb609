//! The Prometheus rules shipped for watching the collectors (`packaging/prometheus/`): `promtool` accepts
//! them, their unit tests pass (alerts fire after their `for`, storms do not page, a down collector
//! resolves when back), and every collector metric they use is one a real collector exports, so a renamed
//! metric cannot leave a rule silently matching nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use std::path::Path;
use std::process::Command;

use crate::support::{Collector, require_bin, succeeded};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/prometheus");

fn promtool(args: &[&str]) -> String {
    let promtool = require_bin("promtool", "prometheus");
    let out = Command::new(promtool)
        .args(args)
        .current_dir(DIR)
        .output()
        .expect("promtool");
    succeeded(&format!("promtool {args:?}"), out)
}

#[test]
fn the_collector_rules_are_valid_and_their_unit_tests_pass() {
    let checked = promtool(&["check", "rules", "hvprobe-collector.rules.yml"]);
    assert!(checked.contains("SUCCESS: 7 rules found"), "{checked}");
    promtool(&["test", "rules", "hvprobe-collector.rules.test.yml"]);
}

#[test]
fn every_collector_metric_the_rules_use_is_exported() {
    let rules =
        std::fs::read_to_string(Path::new(DIR).join("hvprobe-collector.rules.yml")).unwrap();
    let mut used: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("hvprobe_collector_"))
        .collect();
    used.sort_unstable();
    used.dedup();
    assert!(used.len() >= 5, "{used:?}");
    let c = Collector::start("");
    let metrics = c.metrics();
    for name in used {
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "the rules use {name}, which the collector does not export:\n{metrics}"
        );
    }
}
