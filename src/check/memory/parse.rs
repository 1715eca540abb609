//! Parsers of `/proc/meminfo` and `/proc/vmstat`.

use crate::parse::{ParseError, parse_key_values};

/// The fields of `/proc/meminfo` the check uses, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meminfo {
    /// MemTotal.
    pub total: u64,
    /// MemFree.
    pub free: u64,
    /// MemAvailable (absent before Linux 3.14).
    pub available: Option<u64>,
    /// Buffers.
    pub buffers: u64,
    /// Cached.
    pub cached: u64,
    /// SReclaimable.
    pub sreclaimable: u64,
    /// Shmem.
    pub shmem: u64,
    /// SwapTotal (0 without swap).
    pub swap_total: u64,
    /// SwapFree.
    pub swap_free: u64,
}

impl Meminfo {
    /// MemAvailable, or the documented estimate when the kernel lacks it; the flag says which.
    pub fn available_or_estimate(&self) -> (u64, bool) {
        match self.available {
            Some(a) => (a.min(self.total), false),
            None => {
                let est = (self.free as u128
                    + self.buffers as u128
                    + self.cached as u128
                    + self.sreclaimable as u128)
                    .saturating_sub(self.shmem as u128);
                (est.min(self.total as u128) as u64, true)
            }
        }
    }
}

/// Parses `/proc/meminfo`. MemTotal and MemFree are required; other fields default to 0.
pub fn parse_meminfo(text: &str) -> Result<Meminfo, ParseError> {
    let mut m = Meminfo::default();
    let (mut total, mut free) = (None, None);
    for (key, value) in parse_key_values(text)? {
        match key {
            "MemTotal" => total = Some(value),
            "MemFree" => free = Some(value),
            "MemAvailable" => m.available = Some(value),
            "Buffers" => m.buffers = value,
            "Cached" => m.cached = value,
            "SReclaimable" => m.sreclaimable = value,
            "Shmem" => m.shmem = value,
            "SwapTotal" => m.swap_total = value,
            "SwapFree" => m.swap_free = value,
            _ => {}
        }
    }
    m.total = total.ok_or_else(|| ParseError::file("no MemTotal line"))?;
    m.free = free.ok_or_else(|| ParseError::file("no MemFree line"))?;
    if m.total == 0 {
        return Err(ParseError::file("MemTotal is 0"));
    }
    Ok(m)
}

/// The `/proc/vmstat` counters the check uses. Each is absent when the kernel lacks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VmCounters {
    /// Pages swapped in since boot.
    pub pswpin: Option<u64>,
    /// Pages swapped out since boot.
    pub pswpout: Option<u64>,
    /// OOM kills since boot (Linux 4.13+).
    pub oom_kill: Option<u64>,
}

/// Parses `/proc/vmstat`. Every line must be `name value`; unknown names are skipped.
pub fn parse_vmstat(text: &str) -> Result<VmCounters, ParseError> {
    let mut c = VmCounters::default();
    for (key, value) in parse_key_values(text)? {
        match key {
            "pswpin" => c.pswpin = Some(value),
            "pswpout" => c.pswpout = Some(value),
            "oom_kill" => c.oom_kill = Some(value),
            _ => {}
        }
    }
    Ok(c)
}
