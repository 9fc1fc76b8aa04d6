//! Waiting on host descriptors within a call's two deadlines: the guest's own
//! wait (`wait_until`, passing it is `-EAGAIN`) and the caller's slice end
//! (`yield_at`, reaching it is `errno::RETRY`). A signal (the VMM's kicker or its
//! slice timer) interrupting `poll` is also `RETRY`: the guest issues the call
//! again with what is left of its deadline.
use rustix::event::{PollFd, Timespec};
use std::time::Instant;
use thaw_abi::net::errno;

/// Why a wait ended without anything ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The guest's wait is over: `-EAGAIN` (or `-EINPROGRESS` for a connect).
    Again,
    /// The slice ended or a signal arrived: `RETRY`.
    Retry,
    /// `poll` itself failed (a positive errno).
    Failed(i32),
}

impl Stop {
    /// The negated errno for the guest.
    pub fn errno(self) -> i64 {
        match self {
            Stop::Again => -errno::EAGAIN,
            Stop::Retry => -errno::RETRY,
            Stop::Failed(e) => -i64::from(e),
        }
    }
}

/// A call's deadlines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    pub wait_until: Option<Instant>,
    pub yield_at: Option<Instant>,
}

impl Deadlines {
    /// Whether a deadline has passed (`Again` first: the guest's own wait).
    pub fn passed(&self) -> Option<Stop> {
        let now = Instant::now();
        if self.wait_until.is_some_and(|t| now >= t) {
            Some(Stop::Again)
        } else if self.yield_at.is_some_and(|t| now >= t) {
            Some(Stop::Retry)
        } else {
            None
        }
    }

    fn earliest(&self) -> Option<Instant> {
        match (self.wait_until, self.yield_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Polls `fds` until one is ready (the count) or a deadline passes. Polls at
    /// least once, without waiting, even when a deadline has already passed.
    pub fn poll(&self, fds: &mut [PollFd<'_>]) -> Result<usize, Stop> {
        loop {
            let timeout = self.earliest().map(|t| {
                let d = t.saturating_duration_since(Instant::now());
                Timespec::try_from(d).unwrap_or(Timespec {
                    tv_sec: i64::MAX / 2,
                    tv_nsec: 0,
                })
            });
            match rustix::event::poll(fds, timeout.as_ref()) {
                Ok(0) => {
                    if let Some(stop) = self.passed() {
                        return Err(stop);
                    }
                }
                Ok(n) => return Ok(n),
                Err(rustix::io::Errno::INTR) => return Err(Stop::Retry),
                Err(e) => return Err(Stop::Failed(e.raw_os_error())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::event::PollFlags;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    #[test]
    fn test_guest_wait_ends_in_again_and_slice_in_retry() {
        let (a, _b) = UnixStream::pair().unwrap();
        let soon = Instant::now() + Duration::from_millis(20);
        let later = soon + Duration::from_secs(5);
        let mut fds = [PollFd::new(&a, PollFlags::IN)];
        let d = Deadlines {
            wait_until: Some(soon),
            yield_at: Some(later),
        };
        let t = Instant::now();
        assert_eq!(d.poll(&mut fds), Err(Stop::Again));
        assert!(t.elapsed() >= Duration::from_millis(19));
        let d = Deadlines {
            wait_until: Some(later),
            yield_at: Some(soon),
        };
        assert_eq!(d.poll(&mut fds), Err(Stop::Retry));
        let d = Deadlines {
            wait_until: None,
            yield_at: Some(Instant::now()),
        };
        assert_eq!(d.poll(&mut fds), Err(Stop::Retry));
    }

    #[test]
    fn test_ready_wins_over_a_passed_deadline() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut fds = [PollFd::new(&a, PollFlags::OUT)];
        let d = Deadlines {
            wait_until: Some(Instant::now()),
            yield_at: None,
        };
        assert_eq!(d.poll(&mut fds), Ok(1));
    }
}
