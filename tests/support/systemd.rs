//! A real systemd to test the `services` check against: `systemd --user` in a private mount namespace
//! (a tmpfs on `/run` with an empty `/run/systemd/system`, so it believes it was booted by systemd), on a
//! `dbus-daemon` of its own whose socket sits in a temp dir any process can reach. Units are real unit files
//! under the lab's `XDG_CONFIG_HOME`; started, stopped and enabled over the bus with `busctl`.
//! Dropping the lab stops systemd (which stops its units) and the bus, even when a test fails.
//!
//! One lab at a time per test process: a user manager takes its own cgroup (here the test's, shared by all
//! its threads) as its root, and two of them there would stop each other's units.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::{ChildGuard, require_bin, wait_for};

/// A running `systemd --user` and its bus.
pub struct SystemdLab {
    dir: tempfile::TempDir,
    /// The D-Bus address of the lab's bus (`unix:path=…`).
    pub address: String,
    systemd: Option<Child>,
    _dbus: ChildGuard,
    // Dropped last, after systemd has stopped.
    _one_at_a_time: MutexGuard<'static, ()>,
}

static ONE_LAB: Mutex<()> = Mutex::new(());

impl SystemdLab {
    /// Writes `units` (file name, contents) and starts systemd; returns once its manager is up.
    pub fn start(units: &[(&str, &str)]) -> SystemdLab {
        // A test that failed while holding the lab has dropped it: the lock's data is just `()`.
        let one_at_a_time = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        let dbus_daemon = require_bin("dbus-daemon", "dbus-daemon");
        let unshare = require_bin("unshare", "util-linux");
        require_bin("busctl", "systemd");
        let systemd_bin = PathBuf::from("/lib/systemd/systemd");
        assert!(
            systemd_bin.is_file(),
            "/lib/systemd/systemd not found: install the Debian package `systemd` (tests/run.sh does this)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = dir.path().join("xdg");
        for d in ["xdg", "config/systemd/user", "state", "data", "cache"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("lab dirs");
        }
        std::fs::set_permissions(
            &runtime,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod runtime dir");
        let socket = runtime.join("bus");
        let address = format!("unix:path={}", socket.display());
        let dbus = Command::new(dbus_daemon)
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address={address}"))
            .stdout(Stdio::null())
            .spawn()
            .expect("dbus-daemon");
        let dbus = ChildGuard(dbus);
        assert!(
            wait_for(Duration::from_secs(10), || socket.exists().then_some(())).is_some(),
            "dbus-daemon did not create {}",
            socket.display()
        );
        let mut lab = SystemdLab {
            dir,
            address,
            systemd: None,
            _dbus: dbus,
            _one_at_a_time: one_at_a_time,
        };
        for (name, text) in units {
            lab.write_unit(name, text);
        }
        let log = std::fs::File::create(lab.dir.path().join("systemd.log")).expect("log");
        let child = Command::new(unshare)
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(
                "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && exec /lib/systemd/systemd --user",
            )
            .envs(lab.env())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("systemd --user");
        lab.systemd = Some(child);
        let up = wait_for(Duration::from_secs(30), || {
            let state = lab.busctl_ok(&[
                "get-property",
                "org.freedesktop.systemd1",
                "/org/freedesktop/systemd1",
                "org.freedesktop.systemd1.Manager",
                "SystemState",
            ])?;
            (state.contains("running") || state.contains("degraded")).then_some(())
        });
        assert!(
            up.is_some(),
            "systemd --user did not come up: {}",
            lab.log()
        );
        lab
    }

    fn env(&self) -> Vec<(String, String)> {
        let p = |d: &str| self.dir.path().join(d).display().to_string();
        vec![
            ("HOME".into(), self.dir.path().display().to_string()),
            ("XDG_RUNTIME_DIR".into(), p("xdg")),
            ("XDG_CONFIG_HOME".into(), p("config")),
            ("XDG_STATE_HOME".into(), p("state")),
            ("XDG_DATA_HOME".into(), p("data")),
            ("XDG_CACHE_HOME".into(), p("cache")),
            ("DBUS_SESSION_BUS_ADDRESS".into(), self.address.clone()),
        ]
    }

    /// The pid of `systemd --user` (for its CPU time).
    pub fn systemd_pid(&self) -> Option<u32> {
        self.systemd.as_ref().map(Child::id)
    }

    /// The lab's directory (for the check's config and the like).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// systemd's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("systemd.log")).unwrap_or_default()
    }

    fn busctl_ok(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `busctl call` on the manager; panics with systemd's answer when it fails.
    pub fn manager(&self, method: &str, sig_and_args: &[&str]) -> String {
        let mut args = vec![
            "call",
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            method,
        ];
        args.extend_from_slice(sig_and_args);
        let out = Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .args(&args)
            .output()
            .expect("busctl");
        assert!(
            out.status.success(),
            "busctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a unit (the job is queued; systemd carries it out).
    pub fn start_unit(&self, name: &str) {
        self.manager("StartUnit", &["ss", name, "replace"]);
    }

    /// Stops a unit.
    pub fn stop_unit(&self, name: &str) {
        self.manager("StopUnit", &["ss", name, "replace"]);
    }

    /// Writes (or rewrites) a unit file; call [`SystemdLab::reload`] for a running manager to see it.
    pub fn write_unit(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join("config/systemd/user").join(name), text)
            .expect("unit file");
    }

    /// `daemon-reload`.
    pub fn reload(&self) {
        self.manager("Reload", &[]);
    }

    /// Enables a unit the way `systemctl enable` does for `WantedBy=default.target` (a symlink in
    /// `default.target.wants`) and reloads, without starting it: enabled, never started this boot.
    pub fn enable_without_starting(&self, name: &str) {
        let wants = self
            .dir
            .path()
            .join("config/systemd/user/default.target.wants");
        std::fs::create_dir_all(&wants).expect("wants dir");
        std::os::unix::fs::symlink(format!("../{name}"), wants.join(name)).expect("symlink");
        self.reload();
    }

    /// A unit's `ActiveState`, as systemd says it.
    pub fn active_state(&self, name: &str) -> String {
        let path = self.manager("GetUnit", &["s", name]);
        let path = path
            .trim()
            .trim_start_matches("o ")
            .trim_matches('"')
            .to_owned();
        self.busctl_ok(&[
            "get-property",
            "org.freedesktop.systemd1",
            &path,
            "org.freedesktop.systemd1.Unit",
            "ActiveState",
        ])
        .unwrap_or_default()
        .trim()
        .trim_start_matches("s ")
        .trim_matches('"')
        .to_owned()
    }
}

impl SystemdLab {
    /// Stops systemd and leaves the bus up; true once it has exited.
    pub fn stop_systemd(&mut self) -> bool {
        let Some(mut child) = self.systemd.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let gone = wait_for(Duration::from_secs(10), || {
            child.try_wait().ok().flatten().map(|_| ())
        });
        if gone.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        gone.is_some()
    }
}

impl Drop for SystemdLab {
    fn drop(&mut self) {
        self.stop_systemd();
    }
}
