//! `/proc/diskstats` as the kernel prints it (block/genhd.c `diskstats_show`): major, minor, name, then 11
//! counters (kernels before 4.18), 15 (with discards, 4.18+) or 17 (with flushes, 5.5+). The time fields are
//! 32-bit in the kernel (`%u`) and wrap; the rest are `unsigned long`.

use crate::parse::ParseError;

/// One device's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskCounters {
    /// Reads completed.
    pub reads: u64,
    /// Sectors read (512 bytes each, whatever the device's sector size).
    pub sectors_read: u64,
    /// Milliseconds spent reading (32-bit, wraps).
    pub read_ms: u64,
    /// Writes completed.
    pub writes: u64,
    /// Sectors written.
    pub sectors_written: u64,
    /// Milliseconds spent writing (32-bit, wraps).
    pub write_ms: u64,
    /// I/Os currently in flight.
    pub in_flight: u64,
    /// Milliseconds with I/O in flight (32-bit, wraps): the basis of utilisation.
    pub io_ms: u64,
    /// Discards completed (4.18+; 0 before).
    pub discards: u64,
    /// Milliseconds spent discarding.
    pub discard_ms: u64,
    /// Flushes completed (5.5+; 0 before).
    pub flushes: u64,
    /// Milliseconds spent flushing.
    pub flush_ms: u64,
}

/// One line of `/proc/diskstats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskStat {
    /// Major device number.
    pub major: u32,
    /// Minor device number.
    pub minor: u32,
    /// Kernel name: `sda`, `nvme0n1`, `md0`, `dm-3`.
    pub name: String,
    /// The counters.
    pub counters: DiskCounters,
}

/// Parses `/proc/diskstats`. Every non-blank line must have a name and 11, 15 or 17 numbers after it.
pub fn parse_diskstats(text: &str) -> Result<Vec<DiskStat>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        if !matches!(fields.len(), 14 | 18 | 20) {
            return Err(ParseError::at(
                n,
                format!(
                    "{} fields, expected 14, 18 or 20 (major minor name and 11, 15 or 17 counters)",
                    fields.len()
                ),
            ));
        }
        let num = |k: usize| -> Result<u64, ParseError> {
            fields[k]
                .parse::<u64>()
                .map_err(|_| ParseError::at(n, format!("field {}: not a number: {:?}", k + 1, fields[k])))
        };
        let small = |k: usize| -> Result<u32, ParseError> {
            u32::try_from(num(k)?).map_err(|_| ParseError::at(n, format!("field {}: out of range", k + 1)))
        };
        let name = fields[2];
        if name.contains('/') || name.chars().any(char::is_control) {
            return Err(ParseError::at(n, format!("bad device name {name:?}")));
        }
        let opt = |k: usize| if k < fields.len() { num(k) } else { Ok(0) };
        out.push(DiskStat {
            major: small(0)?,
            minor: small(1)?,
            name: name.to_owned(),
            counters: DiskCounters {
                reads: num(3)?,
                sectors_read: num(5)?,
                read_ms: num(6)?,
                writes: num(7)?,
                sectors_written: num(9)?,
                write_ms: num(10)?,
                in_flight: num(11)?,
                io_ms: num(12)?,
                discards: opt(14)?,
                discard_ms: opt(17)?,
                flushes: opt(18)?,
                flush_ms: opt(19)?,
            },
        });
    }
    Ok(out)
}

/// Devices that are never disks to judge: loop devices, RAM disks (`ram*`, `zram*`), optical drives.
pub fn pseudo_device(name: &str) -> bool {
    ["loop", "ram", "zram", "sr", "fd"]
        .iter()
        .any(|p| name.strip_prefix(p).is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit())))
}

/// Whether `name` is a partition, judged by name when sysfs cannot say: `sda1`, `vdb2`, `nvme0n1p1`,
/// `mmcblk0p1`, `md0p1`. Whole disks: `sda`, `nvme0n1`, `mmcblk0`, `md0`, `dm-3`.
pub fn partition_by_name(name: &str) -> bool {
    if name.starts_with("dm-") {
        return false;
    }
    if let Some(i) = name.rfind('p') {
        let (base, num) = (&name[..i], &name[i + 1..]);
        if !num.is_empty()
            && num.chars().all(|c| c.is_ascii_digit())
            && base.ends_with(|c: char| c.is_ascii_digit())
            && (base.starts_with("nvme") || base.starts_with("mmcblk") || base.starts_with("md") || base.starts_with("nbd"))
        {
            return true;
        }
    }
    // sdXN, vdXN, xvdXN, hdXN: letters then digits.
    let letters = ["sd", "vd", "xvd", "hd"];
    letters.iter().any(|p| {
        name.strip_prefix(p).is_some_and(|rest| {
            let alpha = rest.trim_end_matches(|c: char| c.is_ascii_digit());
            !alpha.is_empty() && alpha.len() < rest.len() && alpha.chars().all(|c| c.is_ascii_lowercase())
        })
    })
}
