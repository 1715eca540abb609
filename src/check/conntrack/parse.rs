//! Parsers of the conntrack sysctls and `/proc/net/stat/nf_conntrack` (by header name, hex, per CPU).

use crate::parse::ParseError;

/// `/proc/net/stat/nf_conntrack`: column names and one row of values per possible CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackStat {
    /// Column names from the header, in order.
    pub columns: Vec<String>,
    /// One row per CPU, aligned with `columns`.
    pub rows: Vec<Vec<u64>>,
}

impl ConntrackStat {
    /// Per-CPU values of a column, `None` when the kernel has no such column.
    pub fn column(&self, name: &str) -> Option<impl Iterator<Item = u64> + '_> {
        let i = self.columns.iter().position(|c| c == name)?;
        Some(self.rows.iter().map(move |r| r[i]))
    }

    /// A counter summed over CPUs; `entries` is global and is taken from the first row instead.
    pub fn total(&self, name: &str) -> Option<u64> {
        let mut values = self.column(name)?;
        if name == "entries" {
            return values.next();
        }
        Some(values.fold(0u64, u64::saturating_add))
    }

    /// Increase of a counter between two readings, CPU by CPU. Per-CPU counters are 32-bit in the kernel
    /// and may wrap; that is handled. `None` when the readings cannot be compared (columns or CPU rows
    /// changed, which happens across a reboot under a redirected root).
    pub fn delta(&self, later: &ConntrackStat, name: &str) -> Option<u64> {
        if self.columns != later.columns || self.rows.len() != later.rows.len() {
            return None;
        }
        let before = self.column(name)?;
        let after = later.column(name)?;
        let mut sum = 0u64;
        for (a, b) in before.zip(after) {
            let d = if b >= a {
                b - a
            } else if a <= u64::from(u32::MAX) && b <= u64::from(u32::MAX) {
                (b + (1u64 << 32)) - a
            } else {
                return None;
            };
            sum = sum.saturating_add(d);
        }
        Some(sum)
    }
}

/// Parses `/proc/net/stat/nf_conntrack`. The header names the columns; every row must have as many hex
/// values as the header has names.
pub fn parse_stat(text: &str) -> Result<ConntrackStat, ParseError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(ParseError::file("empty file"));
    };
    let columns: Vec<String> = header.split_whitespace().map(str::to_owned).collect();
    if columns.iter().any(|c| {
        c.chars()
            .any(|ch| !(ch.is_ascii_alphanumeric() || ch == '_'))
    }) {
        return Err(ParseError::at(1, "header is not a list of column names"));
    }
    if !columns.iter().any(|c| c == "entries") {
        return Err(ParseError::at(1, "header lacks the \"entries\" column"));
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        let values: Result<Vec<u64>, _> = line
            .split_whitespace()
            .map(|w| u64::from_str_radix(w, 16))
            .collect();
        let values = values.map_err(|_| ParseError::at(i + 1, "expected hex values"))?;
        if values.len() != columns.len() {
            return Err(ParseError::at(
                i + 1,
                format!("{} values for {} columns", values.len(), columns.len()),
            ));
        }
        rows.push(values);
    }
    if rows.is_empty() {
        return Err(ParseError::file("no CPU rows"));
    }
    Ok(ConntrackStat { columns, rows })
}

/// Parses a single-number sysctl file such as `nf_conntrack_count`.
pub fn parse_number(text: &str) -> Result<u64, ParseError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(ParseError::file("empty file"));
    }
    t.parse()
        .map_err(|_| ParseError::at(1, format!("expected a number, got {t:?}")))
}
