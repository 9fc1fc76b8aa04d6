//! `poll_oneoff`'s records: the 48-byte subscriptions the module passes in and
//! the 32-byte events written back.
use crate::{errno, Mem};

/// Subscription tags (`eventtype`).
pub const CLOCK: u8 = 0;
pub const FD_READ: u8 = 1;
pub const FD_WRITE: u8 = 2;

/// Size of a subscription record.
pub const SUBSCRIPTION_SIZE: i32 = 48;
/// Size of an event record.
pub const EVENT_SIZE: i32 = 32;

/// What a subscription waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// A clock: `timeout` nanoseconds, an absolute time when `absolute`.
    Clock { timeout: u64, absolute: bool },
    /// Readiness of `fd` for reading (`write` false) or writing.
    Fd { fd: u32, write: bool },
    /// An unknown tag (answered with `EINVAL`).
    Unknown,
}

/// One decoded subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub userdata: u64,
    pub tag: u8,
    pub wait: Wait,
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Reads subscription `i` of the array at `subs`.
pub fn subscription(mem: &Mem<'_>, subs: i32, i: i32) -> Result<Subscription, i32> {
    let at = subs.wrapping_add(i.wrapping_mul(SUBSCRIPTION_SIZE));
    let s = mem.bytes(at, SUBSCRIPTION_SIZE as usize)?;
    let tag = s[8];
    let wait = match tag {
        CLOCK => Wait::Clock {
            timeout: le_u64(&s[24..32]),
            absolute: u16::from_le_bytes([s[40], s[41]]) & 1 != 0,
        },
        FD_READ | FD_WRITE => Wait::Fd {
            fd: u32::from_le_bytes([s[16], s[17], s[18], s[19]]),
            write: tag == FD_WRITE,
        },
        _ => Wait::Unknown,
    };
    Ok(Subscription {
        userdata: le_u64(&s[..8]),
        tag,
        wait,
    })
}

/// One event to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub userdata: u64,
    pub error: u16,
    pub tag: u8,
    /// `fd_readwrite.flags` (1: hung up); fd events also report one byte ready.
    pub flags: u16,
}

/// Writes event `i` of the array at `events`.
pub fn put_event(mem: &mut Mem<'_>, events: i32, i: i32, ev: &Event) -> Result<(), i32> {
    let mut b = [0u8; EVENT_SIZE as usize];
    b[..8].copy_from_slice(&ev.userdata.to_le_bytes());
    b[8..10].copy_from_slice(&ev.error.to_le_bytes());
    b[10] = ev.tag;
    if ev.tag != CLOCK {
        b[16..24].copy_from_slice(&1u64.to_le_bytes());
        b[24..26].copy_from_slice(&ev.flags.to_le_bytes());
    }
    mem.put(events.wrapping_add(i.wrapping_mul(EVENT_SIZE)), &b)
}

/// The errno of an unknown subscription tag, as an event's error field.
pub const UNKNOWN_TAG_ERROR: u16 = errno::INVAL as u16;

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(userdata: u64, tag: u8, f: impl FnOnce(&mut [u8])) -> [u8; 48] {
        let mut s = [0u8; 48];
        s[..8].copy_from_slice(&userdata.to_le_bytes());
        s[8] = tag;
        f(&mut s);
        s
    }

    #[test]
    fn test_clock_subscription() {
        let mut buf = [0u8; 96];
        buf[48..].copy_from_slice(&sub(7, CLOCK, |s| {
            s[24..32].copy_from_slice(&5_000u64.to_le_bytes());
            s[40] = 1;
        }));
        let m = Mem::new(&mut buf);
        assert_eq!(
            subscription(&m, 0, 1),
            Ok(Subscription {
                userdata: 7,
                tag: CLOCK,
                wait: Wait::Clock {
                    timeout: 5_000,
                    absolute: true
                }
            })
        );
        assert_eq!(
            subscription(&m, 0, 0).map(|s| s.wait),
            Ok(Wait::Clock {
                timeout: 0,
                absolute: false
            })
        );
    }

    #[test]
    fn test_fd_and_unknown_subscriptions() {
        let mut buf = sub(1, FD_WRITE, |s| {
            s[16..20].copy_from_slice(&9u32.to_le_bytes())
        });
        let m = Mem::new(&mut buf);
        assert_eq!(
            subscription(&m, 0, 0).map(|s| s.wait),
            Ok(Wait::Fd { fd: 9, write: true })
        );
        let mut buf = sub(1, FD_READ, |_| {});
        let m = Mem::new(&mut buf);
        assert_eq!(
            subscription(&m, 0, 0).map(|s| s.wait),
            Ok(Wait::Fd {
                fd: 0,
                write: false
            })
        );
        let mut buf = sub(2, 9, |_| {});
        let m = Mem::new(&mut buf);
        assert_eq!(subscription(&m, 0, 0).map(|s| s.wait), Ok(Wait::Unknown));
    }

    #[test]
    fn test_subscription_out_of_range_is_efault() {
        let mut buf = [0u8; 95];
        let m = Mem::new(&mut buf);
        assert!(subscription(&m, 0, 0).is_ok());
        assert_eq!(subscription(&m, 0, 1), Err(errno::FAULT));
        assert_eq!(subscription(&m, -48, 0), Err(errno::FAULT));
        assert_eq!(subscription(&m, 0, i32::MAX), Err(errno::FAULT));
    }

    fn event(userdata: u64, error: u16, tag: u8) -> Event {
        Event {
            userdata,
            error,
            tag,
            flags: 1,
        }
    }

    #[test]
    fn test_event_layout() {
        let mut buf = [0xeeu8; 64];
        let mut m = Mem::new(&mut buf);
        put_event(&mut m, 0, 0, &event(3, 0, CLOCK)).unwrap();
        put_event(&mut m, 0, 1, &event(4, 8, FD_READ)).unwrap();
        assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), 3);
        assert!(
            buf[8..32].iter().all(|b| *b == 0),
            "clock events carry no fd data"
        );
        let e = &buf[32..];
        assert_eq!(u64::from_le_bytes(e[..8].try_into().unwrap()), 4);
        assert_eq!(u16::from_le_bytes([e[8], e[9]]), 8);
        assert_eq!(e[10], FD_READ);
        assert_eq!(u64::from_le_bytes(e[16..24].try_into().unwrap()), 1);
        assert_eq!(u16::from_le_bytes([e[24], e[25]]), 1);
    }

    #[test]
    fn test_event_out_of_range_is_efault() {
        let mut buf = [0u8; 63];
        let mut m = Mem::new(&mut buf);
        let ev = event(0, 0, CLOCK);
        assert!(put_event(&mut m, 0, 0, &ev).is_ok());
        assert_eq!(put_event(&mut m, 0, 1, &ev), Err(errno::FAULT));
        assert_eq!(put_event(&mut m, -1, 0, &ev), Err(errno::FAULT));
    }
}
