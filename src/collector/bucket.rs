//! The token bucket behind every rate the collector admits at: new streams (`admit-streams-per-sec`), the
//! accept loop (`admit-connections-per-sec`) and each source's share of it. One second of burst: a bucket
//! holds at most `rate` tokens and refills at `rate` a second.

use std::time::{Duration, Instant};

/// `rate` tokens a second, at most `rate` held.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` a second (at least one).
    pub fn new(rate: u32, now: Instant) -> TokenBucket {
        let rate = f64::from(rate.max(1));
        TokenBucket {
            rate,
            tokens: rate,
            at: now,
        }
    }

    /// Tokens a second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// When it was last refilled.
    pub fn last(&self) -> Instant {
        self.at
    }

    /// Adds the tokens earned since the last refill; returns the seconds that were.
    pub fn refill(&mut self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
        dt
    }

    /// Takes a token if one is there (without refilling first).
    pub fn take(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Refills, then takes a token if one is there.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.take()
    }

    /// How long until a whole token is there (zero if one is).
    pub fn wait(&self) -> Duration {
        Duration::from_secs_f64((1.0 - self.tokens).max(0.0) / self.rate)
    }

    /// Gives a token back (never beyond a full bucket).
    pub fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.rate);
    }
}

#[cfg(test)]
mod tests {
    use super::TokenBucket;
    use std::time::{Duration, Instant};

    #[test]
    fn one_second_of_burst_then_one_token_per_interval() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, t0);
        assert!((0..10).all(|_| b.try_take(t0)), "one second of burst");
        assert!(!b.try_take(t0));
        assert_eq!(b.wait(), Duration::from_millis(100));
        // Half a token later, half the wait is left; a token later, one take and no more.
        assert!(!b.try_take(t0 + Duration::from_millis(50)));
        assert!(
            (b.wait().as_secs_f64() - 0.05).abs() < 1e-6,
            "{:?}",
            b.wait()
        );
        let t1 = t0 + Duration::from_millis(150);
        assert!(b.try_take(t1));
        assert!(!b.try_take(t1));
        // A refund is a token back, never beyond a full bucket.
        b.refund();
        assert!(b.try_take(t1));
        // A long quiet refills the bucket to one second's worth, never more.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..30).filter(|_| b.try_take(t2)).count(), 10);
        b.refund();
        b.refund();
        assert_eq!((0..30).filter(|_| b.take()).count(), 2);
    }
}
