//! What is wrong with a configuration: every problem with its key, collected rather than stopping at the
//! first. At the bottom of the crate (it imports nothing of it), so every section's type can validate itself
//! where it is defined.

use std::fmt;

/// What is wrong with a configuration: `(key, reason)` pairs, keys in dotted form
/// (`check[2].warn-available-percent`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Problems {
    items: Vec<(String, String)>,
    prefix: String,
}

impl Problems {
    /// Records a problem with `key` (relative to the current scope).
    pub fn push(&mut self, key: &str, reason: impl Into<String>) {
        self.items
            .push((format!("{}{key}", self.prefix), reason.into()));
    }

    /// Runs `f` with keys prefixed by `prefix`.
    pub fn scoped(&mut self, prefix: &str, f: impl FnOnce(&mut Problems)) {
        let scoped = format!("{}{prefix}", self.prefix);
        let saved = std::mem::replace(&mut self.prefix, scoped);
        f(self);
        self.prefix = saved;
    }

    /// A percentage in 0..=100.
    pub fn percent(&mut self, key: &str, v: f64) {
        if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
            self.push(
                key,
                format!("must be a percentage between 0 and 100, got {v}"),
            );
        }
    }

    /// A finite number >= 0.
    pub fn non_negative(&mut self, key: &str, v: f64) {
        if !(v.is_finite() && v >= 0.0) {
            self.push(key, format!("must be a number >= 0, got {v}"));
        }
    }

    /// A deadline in milliseconds: 1 ms to 10 minutes.
    pub fn timeout(&mut self, key: &str, ms: u64) {
        if !(1..=600_000).contains(&ms) {
            self.push(key, format!("must be between 1 and 600000 ms, got {ms}"));
        }
    }

    /// A one-shot measurement window: at most 10 s and shorter than the check's deadline.
    pub fn window(&mut self, key: &str, window_ms: u64, timeout_ms: u64) {
        if window_ms > 10_000 {
            self.push(key, format!("must be at most 10000 ms, got {window_ms}"));
        } else if window_ms >= timeout_ms {
            self.push(
                key,
                format!("must be shorter than timeout-ms ({timeout_ms}), got {window_ms}"),
            );
        }
    }

    /// True when nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The `(key, reason)` pairs.
    pub fn items(&self) -> &[(String, String)] {
        &self.items
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, reason)) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{key}: {reason}")?;
        }
        Ok(())
    }
}
