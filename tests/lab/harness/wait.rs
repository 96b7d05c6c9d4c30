//! Bounded polling. The lab never sleeps without a deadline: every wait is
//! `poll_until`, which gives up after `timeout` and lets the caller panic
//! with whatever context explains the failure.

use std::thread::sleep;
use std::time::{Duration, Instant};

/// How often probes are retried. Short, because every probe is cheap and
/// scenario setup time adds up over a dozen stacks.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Calls `probe` until it returns `Some`, or until `timeout` has passed.
/// The probe always runs at least once, and once more right at the deadline
/// so a slow last interval does not cause a spurious failure.
pub fn poll_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        sleep(POLL_INTERVAL.min(deadline - now));
    }
}
