//! Small, defensive parsers for kernel text shared by several checks (PSI files, `key value` files).
//!
//! Invariants: every function here is pure, never panics on any input (property-tested), and names the
//! line it choked on. Unknown keys and unknown lines are skipped, never errors: kernels add fields.

use std::fmt;

/// A parse failure, with the 1-based line it happened on (0 = the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number, or 0 when the problem is the file as a whole (empty, a line missing).
    pub line: usize,
    /// What was wrong, lowercase, no trailing period.
    pub msg: String,
}

impl ParseError {
    /// An error about line `line` (1-based).
    pub fn at(line: usize, msg: impl Into<String>) -> Self {
        ParseError {
            line,
            msg: msg.into(),
        }
    }

    /// An error about the file as a whole.
    pub fn file(msg: impl Into<String>) -> Self {
        ParseError {
            line: 0,
            msg: msg.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.msg)
        } else {
            write!(f, "line {}: {}", self.line, self.msg)
        }
    }
}

impl std::error::Error for ParseError {}

/// One PSI line (`some` or `full`): percentages of wall time stalled, and the total in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PsiLine {
    /// Share of the last 10 s, in percent.
    pub avg10: f64,
    /// Share of the last 60 s, in percent.
    pub avg60: f64,
    /// Share of the last 300 s, in percent.
    pub avg300: f64,
    /// Total stall time in microseconds.
    pub total: u64,
}

/// A PSI file (`/proc/pressure/*`, `memory.pressure` of a cgroup).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Psi {
    /// Some tasks stalled.
    pub some: PsiLine,
    /// All non-idle tasks stalled; absent on old kernels for cpu.
    pub full: Option<PsiLine>,
}

/// Parses a PSI file. Lines other than `some`/`full` are ignored (as prometheus/procfs does); a bad value
/// in a `some`/`full` line is an error; a file without a `some` line is an error.
pub fn parse_psi(text: &str) -> Result<Psi, ParseError> {
    let mut some = None;
    let mut full = None;
    for (i, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        let slot = match words.next() {
            Some("some") => &mut some,
            Some("full") => &mut full,
            _ => continue,
        };
        let (mut avg10, mut avg60, mut avg300, mut total) = (None, None, None, None);
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                return Err(ParseError::at(
                    i + 1,
                    format!("expected key=value, got {word:?}"),
                ));
            };
            let bad = || ParseError::at(i + 1, format!("bad value for {key}: {value:?}"));
            match key {
                "avg10" => avg10 = Some(parse_percent(value).ok_or_else(bad)?),
                "avg60" => avg60 = Some(parse_percent(value).ok_or_else(bad)?),
                "avg300" => avg300 = Some(parse_percent(value).ok_or_else(bad)?),
                "total" => total = Some(value.parse::<u64>().map_err(|_| bad())?),
                _ => {}
            }
        }
        match (avg10, avg60, avg300, total) {
            (Some(avg10), Some(avg60), Some(avg300), Some(total)) => {
                *slot = Some(PsiLine {
                    avg10,
                    avg60,
                    avg300,
                    total,
                })
            }
            _ => {
                return Err(ParseError::at(
                    i + 1,
                    "expected avg10=, avg60=, avg300= and total=",
                ));
            }
        }
    }
    match some {
        Some(some) => Ok(Psi { some, full }),
        None => Err(ParseError::file("no \"some\" line")),
    }
}

/// A finite, non-negative share. Not capped at 100: the kernel never prints more, but a value above is
/// still a number (telegraf's fixture has `avg300=300.00`) and judging it is the evaluator's business.
fn parse_percent(s: &str) -> Option<f64> {
    let v: f64 = s.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v)
}

/// Iterates the `key value` lines of files like `/proc/vmstat` (`key value`) and `/proc/meminfo`
/// (`Key:   value kB`), yielding `(line_no, key, value_in_units)`. A `kB` suffix is multiplied out to bytes.
/// A line that is not `key value [kB]` with an unsigned integer value is an error.
pub fn parse_key_values(text: &str) -> Result<Vec<(&str, u64)>, ParseError> {
    let mut out = Vec::with_capacity(64);
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let mut words = trimmed.split_whitespace();
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            return Err(ParseError::at(
                i + 1,
                format!("expected \"key value\", got {trimmed:?}"),
            ));
        };
        let key = key.strip_suffix(':').unwrap_or(key);
        let value: u64 = value
            .parse()
            .map_err(|_| ParseError::at(i + 1, format!("bad value for {key}: {value:?}")))?;
        let value = match words.next() {
            None => value,
            Some("kB") => value
                .checked_mul(1024)
                .ok_or_else(|| ParseError::at(i + 1, format!("value of {key} overflows")))?,
            Some(unit) => {
                return Err(ParseError::at(
                    i + 1,
                    format!("unknown unit {unit:?} for {key}"),
                ));
            }
        };
        if words.next().is_some() {
            return Err(ParseError::at(i + 1, format!("trailing text after {key}")));
        }
        out.push((key, value));
    }
    if out.is_empty() {
        return Err(ParseError::file("empty file"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn psi_with_full_and_unknown_lines() {
        let psi = parse_psi(
            "some avg10=0.10 avg60=2.00 avg300=3.85 total=15\nnonsense haha test=fake\nfull avg10=0.20 avg60=3.00 avg300=4.95 total=25\n",
        )
        .unwrap();
        assert_eq!(psi.some.avg10, 0.10);
        assert_eq!(psi.some.total, 15);
        assert_eq!(psi.full.map(|f| f.avg300), Some(4.95));
    }

    #[test]
    fn psi_without_full_line() {
        let psi = parse_psi("some avg10=1.00 avg60=2.00 avg300=3.00 total=4\n").unwrap();
        assert!(psi.full.is_none());
    }

    #[test]
    fn psi_errors_name_the_line() {
        let e = parse_psi("some avg10=0.10 avg60=2.00 avg300=3.85 total=1\nfull avg10=0.20 avg60=3.00 avg300=test total=25").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("avg300"), "{e}");
        assert!(parse_psi("").is_err());
        assert!(parse_psi("some avg10=1").is_err());
        assert!(parse_psi("some avg10=NaN avg60=1 avg300=1 total=1").is_err());
    }

    #[test]
    fn key_values_with_units() {
        let kv = parse_key_values("MemTotal:  100 kB\nHugePages_Total:   3\n\npswpin 7\n").unwrap();
        assert_eq!(
            kv,
            vec![("MemTotal", 102400), ("HugePages_Total", 3), ("pswpin", 7)]
        );
        assert_eq!(parse_key_values("thp_split abcd").unwrap_err().line, 1);
        assert!(parse_key_values("").is_err());
        assert!(parse_key_values("MemTotal: 1 MB").is_err());
        assert!(parse_key_values("MemTotal:").is_err());
    }

    proptest! {
        #[test]
        fn psi_never_panics(s in "\\PC*") {
            let _ = parse_psi(&s);
        }

        #[test]
        fn psi_never_panics_on_near_misses(s in "(some|full)( (avg10|avg60|avg300|total)=[0-9.a-z-]{0,6}){0,5}\n?") {
            let _ = parse_psi(&s);
        }

        #[test]
        fn key_values_never_panic(s in "\\PC*") {
            let _ = parse_key_values(&s);
        }
    }
}
