//! Restart timing: exponential back-off with jitter, reset after a healthy
//! run, and the restart-rate limit that marks a service crash-looping.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use super::def::{BackoffPolicy, CrashLoopPolicy};

/// The delay before restart number `failures + 1` in a row: at once for the
/// first, then `initial`·2ⁿ⁻¹, times `1 ± jitter` (`random` in [0, 1)),
/// never above `max`.
pub fn delay(policy: &BackoffPolicy, failures: u32, random: f64) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let exponent = (failures - 1).min(30);
    let base = policy.initial.saturating_mul(1 << exponent).min(policy.max);
    let factor = 1.0 + policy.jitter * (2.0 * random - 1.0);
    base.mul_f64(factor.max(0.0)).min(policy.max)
}

/// Consecutive failures of one service.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The delay before starting again after a process that ran `ran_for`.
    pub fn after_exit(&mut self, policy: &BackoffPolicy, ran_for: Duration) -> Duration {
        if ran_for >= policy.reset_after {
            self.failures = 0;
        }
        let delay = delay(policy, self.failures, fastrand::f64());
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// A start that failed before any process ran counts as a failure too.
    pub fn after_failed_start(&mut self, policy: &BackoffPolicy) -> Duration {
        self.after_exit(policy, Duration::ZERO)
    }

    /// Forgets the failures (a requested restart, a new definition).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Start times within the crash-loop window.
#[derive(Debug, Clone, Default)]
pub struct StartRate {
    starts: VecDeque<Instant>,
}

impl StartRate {
    pub fn record(&mut self, policy: &CrashLoopPolicy, now: Instant) {
        self.starts.push_back(now);
        self.expire(policy, now);
    }

    /// More than `max_starts` starts within the window.
    pub fn is_crash_looping(&mut self, policy: &CrashLoopPolicy, now: Instant) -> bool {
        self.expire(policy, now);
        self.starts.len() > policy.max_starts
    }

    pub fn reset(&mut self) {
        self.starts.clear();
    }

    fn expire(&mut self, policy: &CrashLoopPolicy, now: Instant) {
        while self
            .starts
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > policy.window)
        {
            self.starts.pop_front();
        }
        // Never more than needed to decide.
        while self.starts.len() > policy.max_starts + 1 {
            self.starts.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
            jitter: 0.2,
        }
    }

    #[test]
    fn first_restart_is_at_once_then_doubles_up_to_the_cap() {
        let p = policy();
        let mid: Vec<u128> = (0..10).map(|n| delay(&p, n, 0.5).as_millis()).collect();
        assert_eq!(
            mid,
            [0, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(delay(&p, u32::MAX, 0.999), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_within_its_band_and_under_the_cap() {
        let p = policy();
        for n in 1..12 {
            let base = delay(&p, n, 0.5);
            let low = delay(&p, n, 0.0);
            let high = delay(&p, n, 0.999_999);
            assert!(low >= base.mul_f64(0.79), "{n}");
            assert!(high <= base.mul_f64(1.21).min(p.max), "{n}");
            assert!(low < base || base == Duration::ZERO);
        }
        assert_eq!(delay(&p, 0, 0.0), Duration::ZERO);
    }

    #[test]
    fn a_healthy_run_resets_the_back_off() {
        let p = policy();
        let mut backoff = Backoff::default();
        assert_eq!(backoff.after_exit(&p, Duration::ZERO), Duration::ZERO);
        assert!(backoff.after_exit(&p, Duration::ZERO) >= Duration::from_millis(400));
        assert!(backoff.after_exit(&p, Duration::ZERO) >= Duration::from_millis(800));
        assert_eq!(
            backoff.after_exit(&p, Duration::from_secs(61)),
            Duration::ZERO
        );
        backoff.after_exit(&p, Duration::ZERO);
        backoff.reset();
        assert_eq!(backoff.after_failed_start(&p), Duration::ZERO);
    }

    #[test]
    fn more_starts_than_allowed_in_the_window_is_a_crash_loop() {
        let policy = CrashLoopPolicy {
            max_starts: 3,
            window: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        let mut rate = StartRate::default();
        for i in 0..3 {
            rate.record(&policy, t0 + Duration::from_secs(i));
            assert!(!rate.is_crash_looping(&policy, t0 + Duration::from_secs(i)));
        }
        rate.record(&policy, t0 + Duration::from_secs(3));
        assert!(rate.is_crash_looping(&policy, t0 + Duration::from_secs(3)));
        // Old starts leave the window.
        assert!(!rate.is_crash_looping(&policy, t0 + Duration::from_secs(11)));
        rate.reset();
        assert!(!rate.is_crash_looping(&policy, t0));
    }
}
