//! `/sys/block/md*/md/` reader.
//!
//! sysfs is the primary source: it is an interface (one value per file), it has the kernel's own
//! `degraded` count, `sync_completed` in sectors, `mismatch_cnt`, the array UUID and each member's state
//! flags. Files a level does not have (raid0 has no `degraded`) are simply absent. A value that does not
//! parse makes the array UNKNOWN with the file named, like any malformed kernel file.

use crate::check::Failure;
use crate::host::HostRoot;
use crate::parse::ParseError;

/// `sync_completed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncCompleted {
    /// `none`: no sync running.
    None,
    /// `delayed`: waiting for another array sharing the disks.
    Delayed,
    /// `done / total`, in 512-byte sectors.
    Progress {
        /// Sectors done.
        done: u64,
        /// Sectors in total.
        total: u64,
    },
}

/// One member (`dev-*/state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsMember {
    /// Device name without `dev-`.
    pub name: String,
    /// Comma-separated flags: `in_sync`, `faulty`, `spare`, `write_error`, `want_replacement`, …
    pub flags: Vec<String>,
}

impl SysfsMember {
    /// Whether the member has a flag.
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// One array as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SysfsArray {
    /// `md0`.
    pub name: String,
    /// `array_state`: clear, inactive, suspended, readonly, read-auto, clean, active, write-pending,
    /// active-idle, broken.
    pub array_state: Option<String>,
    /// `level`.
    pub level: Option<String>,
    /// `raid_disks` (the new count during a reshape).
    pub raid_disks: Option<u32>,
    /// During a reshape, the old count (`raid_disks` reads `new (old)`).
    pub raid_disks_before_reshape: Option<u32>,
    /// `degraded`: members missing.
    pub degraded: Option<u32>,
    /// `sync_action`.
    pub sync_action: Option<String>,
    /// `sync_completed`.
    pub sync_completed: Option<SyncCompleted>,
    /// `sync_speed` in KiB/s.
    pub sync_speed: Option<u64>,
    /// `mismatch_cnt` in sectors.
    pub mismatch_cnt: Option<u64>,
    /// `uuid`.
    pub uuid: Option<String>,
    /// Members from `dev-*/state`.
    pub members: Vec<SysfsMember>,
}

/// `"11 (10)"` -> `(11, Some(10))`; `"2"` -> `(2, None)`; empty (containers) -> `None`.
pub fn parse_raid_disks(text: &str) -> Result<Option<(u32, Option<u32>)>, ParseError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let mut words = t.split_whitespace();
    let bad = || ParseError::file(format!("expected \"N\" or \"N (M)\", got {t:?}"));
    let new: u32 = words.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let old = match words.next() {
        None => None,
        Some(w) => Some(
            w.strip_prefix('(')
                .and_then(|w| w.strip_suffix(')'))
                .ok_or_else(bad)?
                .parse()
                .map_err(|_| bad())?,
        ),
    };
    if words.next().is_some() {
        return Err(bad());
    }
    Ok(Some((new, old)))
}

/// `none`, `delayed`, or `done / total`.
pub fn parse_sync_completed(text: &str) -> Result<SyncCompleted, ParseError> {
    let t = text.trim();
    match t {
        "none" => return Ok(SyncCompleted::None),
        "delayed" => return Ok(SyncCompleted::Delayed),
        _ => {}
    }
    let bad = || {
        ParseError::file(format!(
            "expected \"none\", \"delayed\" or \"N / M\", got {t:?}"
        ))
    };
    let (done, total) = t.split_once('/').ok_or_else(bad)?;
    let done: u64 = done.trim().parse().map_err(|_| bad())?;
    let total: u64 = total.trim().parse().map_err(|_| bad())?;
    Ok(SyncCompleted::Progress { done, total })
}

/// A single unsigned number; `none` (sync_speed when idle) is `None`.
pub fn parse_u64(text: &str) -> Result<Option<u64>, ParseError> {
    let t = text.trim();
    if t == "none" || t.is_empty() {
        return Ok(None);
    }
    t.parse()
        .map(Some)
        .map_err(|_| ParseError::file(format!("expected a number, got {t:?}")))
}

/// A member's `state` file.
pub fn parse_member_state(text: &str) -> Vec<String> {
    text.trim()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A single word (state, level, action): trimmed, and refused when it is not one printable token.
fn word(text: &str) -> Result<Option<String>, ParseError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ParseError::file(format!("expected one word, got {t:?}")));
    }
    Ok(Some(t.to_owned()))
}

/// Reads every `md*` array under `<root>/sys/block`. `Ok(None)` when there is no `/sys/block` at all.
pub fn read_arrays(root: &HostRoot) -> Result<Option<Vec<SysfsArray>>, Failure> {
    let Some(names) = root.list_dir("/sys/block").map_err(|e| Failure::read(&e))? else {
        return Ok(None);
    };
    let mut arrays = Vec::new();
    for name in names.into_iter().filter(|n| n.starts_with("md")) {
        let base = format!("/sys/block/{name}/md");
        if !root.exists(&base) {
            continue;
        }
        arrays.push(read_array(root, &name, &base)?);
    }
    Ok(Some(arrays))
}

fn read_array(root: &HostRoot, name: &str, base: &str) -> Result<SysfsArray, Failure> {
    // An absent attribute is normal (per level); an unreadable or malformed one names its file.
    let get = |file: &str| -> Result<Option<(String, String)>, Failure> {
        let rel = format!("{base}/{file}");
        match root.read_optional(&rel) {
            Ok(Some(text)) => Ok(Some((rel, text))),
            Ok(None) => Ok(None),
            Err(e) => Err(Failure::read(&e)),
        }
    };
    fn parsed<T>(
        root: &HostRoot,
        v: Option<(String, String)>,
        f: impl FnOnce(&str) -> Result<T, ParseError>,
    ) -> Result<Option<T>, Failure> {
        match v {
            None => Ok(None),
            Some((rel, text)) => f(&text)
                .map(Some)
                .map_err(|e| Failure::malformed(&root.path(&rel), &e)),
        }
    }
    let mut a = SysfsArray {
        name: name.to_owned(),
        array_state: parsed(root, get("array_state")?, word)?.flatten(),
        level: parsed(root, get("level")?, word)?.flatten(),
        sync_action: parsed(root, get("sync_action")?, word)?.flatten(),
        sync_completed: parsed(root, get("sync_completed")?, parse_sync_completed)?,
        sync_speed: parsed(root, get("sync_speed")?, parse_u64)?.flatten(),
        mismatch_cnt: parsed(root, get("mismatch_cnt")?, parse_u64)?.flatten(),
        degraded: parsed(root, get("degraded")?, |t| {
            parse_u64(t)?
                .map(u32::try_from)
                .transpose()
                .map_err(|_| ParseError::file("degraded count out of range"))
        })?
        .flatten(),
        uuid: parsed(root, get("uuid")?, word)?.flatten(),
        ..SysfsArray::default()
    };
    if let Some((new, old)) = parsed(root, get("raid_disks")?, parse_raid_disks)?.flatten() {
        a.raid_disks = Some(new);
        a.raid_disks_before_reshape = old;
    }
    let entries = root
        .list_dir(base)
        .map_err(|e| Failure::read(&e))?
        .unwrap_or_default();
    for entry in entries {
        let Some(dev) = entry.strip_prefix("dev-") else {
            continue;
        };
        // A member removed between the listing and the read is gone, not an error.
        if let Ok(Some(state)) = root.read_optional(format!("{base}/{entry}/state")) {
            a.members.push(SysfsMember {
                name: dev.to_owned(),
                flags: parse_member_state(&state),
            });
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn raid_disks_forms() {
        assert_eq!(parse_raid_disks("2\n"), Ok(Some((2, None))));
        assert_eq!(parse_raid_disks("11 (10)\n"), Ok(Some((11, Some(10)))));
        assert_eq!(parse_raid_disks("\n"), Ok(None));
        assert!(parse_raid_disks("x").is_err());
        assert!(parse_raid_disks("3 [2]").is_err());
    }

    #[test]
    fn sync_completed_forms() {
        assert_eq!(parse_sync_completed("none\n"), Ok(SyncCompleted::None));
        assert_eq!(
            parse_sync_completed("delayed\n"),
            Ok(SyncCompleted::Delayed)
        );
        assert_eq!(
            parse_sync_completed("1569888 / 2093056\n"),
            Ok(SyncCompleted::Progress {
                done: 1_569_888,
                total: 2_093_056
            })
        );
        assert!(parse_sync_completed("12 of 13").is_err());
    }

    #[test]
    fn member_flags() {
        assert_eq!(
            parse_member_state("in_sync,write_error\n"),
            vec!["in_sync", "write_error"]
        );
        assert!(parse_member_state("\n").is_empty());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = parse_raid_disks(&s);
            let _ = parse_sync_completed(&s);
            let _ = parse_u64(&s);
            let _ = parse_member_state(&s);
            let _ = word(&s);
        }
    }
}
