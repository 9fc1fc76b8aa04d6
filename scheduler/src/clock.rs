//! Time as the scheduler sees it: a `Clock` trait, the real clock, and a fake clock that tests advance
//! by hand so keep-warm TTLs and `LastModified` stamps are deterministic.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

/// A source of monotonic time (policy: idle ages, TTLs) and wall time (`LastModified`).
pub trait Clock: Send + Sync + 'static {
    /// Monotonic now.
    fn now(&self) -> Instant;
    /// Wall-clock now.
    fn wall(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when [`FakeClock::advance`] is called. Clones share the same time.
#[derive(Clone)]
pub struct FakeClock {
    base: Instant,
    wall_base: SystemTime,
    offset: Arc<Mutex<Duration>>,
}

impl FakeClock {
    /// A fake clock whose wall time starts at 2024-01-01T00:00:00Z.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            wall_base: SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200),
            offset: Arc::new(Mutex::new(Duration::ZERO)),
        }
    }

    /// Moves time forward by `by` for every clone of this clock.
    pub fn advance(&self, by: Duration) {
        *self.offset.lock() += by;
    }

    /// How far the clock has been advanced since it was created.
    pub fn elapsed(&self) -> Duration {
        *self.offset.lock()
    }
}

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for FakeClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeClock")
            .field("elapsed", &self.elapsed())
            .finish()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.base + self.elapsed()
    }

    fn wall(&self) -> SystemTime {
        self.wall_base + self.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_fake_clock_moves_only_when_advanced_and_clones_share_time() {
        let clock = FakeClock::new();
        let other = clock.clone();
        let t0 = clock.now();
        let w0 = clock.wall();
        assert_eq!(clock.now(), t0);
        other.advance(Duration::from_secs(5));
        assert_eq!(clock.now() - t0, Duration::from_secs(5));
        assert_eq!(
            clock.wall().duration_since(w0).unwrap(),
            Duration::from_secs(5)
        );
    }
}
