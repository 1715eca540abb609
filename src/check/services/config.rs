//! `[[check]] kind = "services"`: which units, which bus, and the clocks of the verdict.

use serde::Deserialize;

use crate::problems::Problems;

/// The unit types systemd knows; a name without one of these suffixes means `.service`, as in `systemctl`.
const UNIT_TYPES: &[&str] = &[
    "service", "socket", "target", "device", "mount", "automount", "swap", "timer", "path", "slice",
    "scope",
];

/// Most units one check watches: each costs D-Bus calls every cycle.
pub const MAX_UNITS: usize = 64;

/// `[[check]] kind = "services"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ServicesConfig {
    /// Run this check (it also needs `units`).
    pub enabled: bool,
    /// The units that must be running, e.g. `["unbound", "wg-quick@wg0", "libvirtd"]` (`.service` implied).
    pub units: Vec<String>,
    /// The bus systemd is on: `system` (default), `session`, or a D-Bus address such as
    /// `unix:path=/run/user/0/bus`.
    pub bus: String,
    /// Deadline of one run, D-Bus calls included.
    pub timeout_ms: u64,
    /// The boot has settled after this many minutes of uptime, if systemd has not said it finished before.
    pub boot_settle_minutes: u64,
    /// WARN when a unit has been activating (or deactivating) this long.
    pub warn_activating_secs: u64,
    /// CRIT when a unit has been activating (or deactivating) this long.
    pub crit_activating_secs: u64,
    /// WARN when a unit restarted this many times within `restart-window-secs`.
    pub warn_restarts: u32,
    /// The window restarts are counted over.
    pub restart_window_secs: u64,
    /// How long a unit's `UnitFileState` (which systemd reads from disk) is reused.
    pub unit_file_state_cache_secs: u64,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        ServicesConfig {
            enabled: true,
            units: Vec::new(),
            bus: "system".into(),
            timeout_ms: 3000,
            boot_settle_minutes: 10,
            warn_activating_secs: 30,
            crit_activating_secs: 60,
            warn_restarts: 3,
            restart_window_secs: 600,
            unit_file_state_cache_secs: 300,
        }
    }
}

impl ServicesConfig {
    /// The units by their full names (`unbound` is `unbound.service`), in configured order.
    pub fn unit_names(&self) -> Vec<String> {
        self.units.iter().map(|u| full_name(u)).collect()
    }

    /// Collects what is wrong with this configuration.
    pub fn validate(&self, p: &mut Problems) {
        if self.units.len() > MAX_UNITS {
            p.push(
                "units",
                format!("at most {MAX_UNITS} units, got {}", self.units.len()),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, u) in self.units.iter().enumerate() {
            if let Err(why) = valid_unit_name(u) {
                p.push(&format!("units[{i}]"), format!("`{u}`: {why}"));
            } else if !seen.insert(full_name(u)) {
                p.push(&format!("units[{i}]"), format!("`{u}` is listed twice"));
            }
        }
        let bus = self.bus.as_str();
        if !(bus == "system" || bus == "session" || bus.contains(':') && bus.contains('=')) {
            p.push(
                "bus",
                format!(
                    "must be `system`, `session` or a D-Bus address like `unix:path=/run/user/0/bus`, got `{bus}`"
                ),
            );
        }
        p.timeout("timeout-ms", self.timeout_ms);
        if self.warn_activating_secs == 0 {
            p.push("warn-activating-secs", "must be at least 1");
        }
        if self.crit_activating_secs < self.warn_activating_secs {
            p.push(
                "crit-activating-secs",
                format!(
                    "must be at least warn-activating-secs ({}), got {}",
                    self.warn_activating_secs, self.crit_activating_secs
                ),
            );
        }
        if self.warn_restarts == 0 {
            p.push("warn-restarts", "must be at least 1");
        }
        if self.restart_window_secs == 0 {
            p.push("restart-window-secs", "must be at least 1");
        }
    }
}

/// `unbound` → `unbound.service`; a name with a unit type suffix is kept.
pub fn full_name(u: &str) -> String {
    match u.rsplit_once('.') {
        Some((_, ty)) if UNIT_TYPES.contains(&ty) => u.to_owned(),
        _ => format!("{u}.service"),
    }
}

/// systemd's unit name rules (`unit_name_is_valid`): at most 255 bytes, `[A-Za-z0-9:_.\-@\\]`, at most one
/// `@` (a template instance), and a prefix before the type.
fn valid_unit_name(u: &str) -> Result<(), String> {
    let full = full_name(u);
    if u.is_empty() {
        return Err("is empty".into());
    }
    if full.len() > 255 {
        return Err("is longer than 255 bytes".into());
    }
    if let Some(c) = full
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ":_.-@\\".contains(*c)))
    {
        return Err(format!("has `{c}`, not allowed in a unit name"));
    }
    if full.matches('@').count() > 1 {
        return Err("has more than one `@`".into());
    }
    if full.starts_with('.') || full.starts_with('@') {
        return Err("has no name before its type".into());
    }
    Ok(())
}
