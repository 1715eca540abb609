//! The Debian package (issue 12): `cargo deb` builds it, `dpkg-deb` shows what is in it, `lintian` finds no
//! error or warning (issue 22), `dpkg -i` installs it on this machine, the installed binary runs and validates the installed
//! configs, and `dpkg --purge` removes it (keeping the `hvprobe` user, as Debian does).
#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{require_bin, succeeded as ok};

/// Builds the package (release, in a target dir of its own: this test runs inside `cargo test`, which
/// holds the usual one).
fn build() -> PathBuf {
    require_bin(
        "cargo-deb",
        "cargo-deb (cargo install --locked cargo-deb; tests/run.sh does this)",
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .env("CARGO_TARGET_DIR", root.join("target/deb-build"))
        .args(["deb", "--locked"])
        .output()
        .unwrap();
    let text = ok("cargo deb", out);
    let deb = text
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with(".deb"))
        .unwrap_or_else(|| panic!("no .deb named: {text}"));
    PathBuf::from(deb.trim())
}

#[test]
fn the_debian_package_builds_lints_installs_runs_and_purges() {
    let deb = build();
    let contents = ok(
        "dpkg-deb --contents",
        Command::new("dpkg-deb")
            .arg("--contents")
            .arg(&deb)
            .output()
            .unwrap(),
    );
    for path in [
        "./usr/bin/hvprobe",
        "./usr/bin/hvprobe-collector",
        "./usr/lib/systemd/system/hvprobe-agent.service",
        "./usr/lib/systemd/system/hvprobe-collector.service",
        "./usr/lib/sysusers.d/hvprobe.conf",
        "./etc/hvprobe/agent.toml",
        "./etc/hvprobe/collector.toml",
        "./usr/share/doc/hvprobe/copyright",
        "./usr/share/hvprobe/prometheus/hvprobe-collector.rules.yml",
        "./usr/share/man/man1/hvprobe.1.gz",
        "./usr/share/man/man1/hvprobe-check.1.gz",
        "./usr/share/man/man1/hvprobe-collector.1.gz",
        "./usr/share/lintian/overrides/hvprobe",
    ] {
        assert!(contents.contains(path), "{path} missing:\n{contents}");
    }
    let conffiles = ok(
        "dpkg-deb --info",
        Command::new("dpkg-deb")
            .args(["--info"])
            .arg(&deb)
            .arg("conffiles")
            .output()
            .unwrap(),
    );
    assert!(
        conffiles.contains("/etc/hvprobe/agent.toml")
            && conffiles.contains("/etc/hvprobe/collector.toml"),
        "{conffiles}"
    );
    // The units in the package are the ones under packaging/.
    let unit = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "dpkg-deb --fsys-tarfile {} | tar -xO ./usr/lib/systemd/system/hvprobe-agent.service",
            deb.display()
        ))
        .output()
        .unwrap();
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd/hvprobe-agent.service"),
    )
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&unit.stdout), shipped);
    // Clean at warning level on the lintian tests/run.sh installs (Debian's own for this release): no
    // error, no warning (man pages ship; the one override is for a package outside the archive).
    let lintian = require_bin("lintian", "lintian");
    let tags = ok(
        "lintian",
        Command::new(lintian)
            .args(["--fail-on", "error,warning"])
            .arg(&deb)
            .output()
            .unwrap(),
    );
    assert!(
        !tags
            .lines()
            .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "{tags}"
    );

    let _ = Command::new("dpkg").args(["--purge", "hvprobe"]).output();
    // The package enables and starts the agent where systemd runs; its shipped config dials example
    // collector addresses, which a test must never do: services stay stopped (policy-rc.d says no).
    let _no_start = NoServiceStart::install();
    ok(
        "dpkg -i",
        Command::new("dpkg").arg("-i").arg(&deb).output().unwrap(),
    );
    let purge = Purge;
    let version = ok(
        "hvprobe --version",
        Command::new("/usr/bin/hvprobe")
            .arg("--version")
            .output()
            .unwrap(),
    );
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    for (bin, cfg) in [
        ("/usr/bin/hvprobe", "/etc/hvprobe/agent.toml"),
        ("/usr/bin/hvprobe", "/etc/hvprobe/collector.toml"),
        // What the collector's unit runs.
        ("/usr/bin/hvprobe-collector", "/etc/hvprobe/collector.toml"),
    ] {
        ok(
            cfg,
            Command::new(bin)
                .args(["validate", "--config", cfg])
                .output()
                .unwrap(),
        );
    }
    ok(
        "the hvprobe user",
        Command::new("getent")
            .args(["passwd", "hvprobe"])
            .output()
            .unwrap(),
    );
    let state = std::fs::metadata("/var/lib/hvprobe").expect("state directory");
    assert!(state.is_dir());
    drop(purge);
    assert!(!Path::new("/usr/bin/hvprobe").exists(), "purged");
    assert!(!Path::new("/usr/bin/hvprobe-collector").exists(), "purged");
    assert!(
        !Path::new("/etc/hvprobe/agent.toml").exists(),
        "conffiles purged"
    );
    assert!(!Path::new("/var/lib/hvprobe").exists(), "state purged");
    ok(
        "the user is kept",
        Command::new("getent")
            .args(["passwd", "hvprobe"])
            .output()
            .unwrap(),
    );
}

/// Purges the package when the test ends, passing or failing.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "hvprobe"]).output();
    }
}

/// `/usr/sbin/policy-rc.d` answering 101 (action forbidden) while the test runs, so no maintainer script
/// starts a service; removed afterwards (only if the test created it).
struct NoServiceStart(bool);

impl NoServiceStart {
    fn install() -> NoServiceStart {
        use std::os::unix::fs::PermissionsExt;
        let p = Path::new("/usr/sbin/policy-rc.d");
        if p.exists() {
            return NoServiceStart(false);
        }
        std::fs::write(
            p,
            "#!/bin/sh\n# hvprobe tests: no service starts during package tests\nexit 101\n",
        )
        .unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        NoServiceStart(true)
    }
}

impl Drop for NoServiceStart {
    fn drop(&mut self) {
        if self.0 {
            let _ = std::fs::remove_file("/usr/sbin/policy-rc.d");
        }
    }
}
