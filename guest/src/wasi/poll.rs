//! Time and waiting: `poll_oneoff`, the clocks (`clock_*`, from the TSC),
//! `random_get` (the reseeded CSPRNG) and `sched_yield`.
use super::{with, Ctx, Handle};
use crate::clock::monotonic_ns;
use crate::net;
use alloc::vec::Vec;
use thaw_abi::net::{PollEntry, POLLHUP, POLLIN, POLLOUT};
use thaw_guest_wasi::poll::{put_event, subscription, Event, Wait, CLOCK, UNKNOWN_TAG_ERROR};
use thaw_guest_wasi::{errno, Mem};
use wasmtime::{Caller, Linker};

pub(super) fn add(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    register!(
        linker,
        clock_res_get,
        clock_time_get,
        random_get,
        sched_yield,
        poll_oneoff
    );
    Ok(())
}

fn clock_res_get(mut caller: Caller<'_, Ctx>, _id: i32, out: i32) -> i32 {
    with(&mut caller, |m, _| m.put_u64(out, 1))
}

fn clock_time_get(mut caller: Caller<'_, Ctx>, id: i32, _precision: i64, out: i32) -> i32 {
    let now = if id == 0 {
        crate::clock::realtime_ns()
    } else {
        monotonic_ns()
    };
    with(&mut caller, |m, _| m.put_u64(out, now))
}

fn random_get(mut caller: Caller<'_, Ctx>, buf: i32, len: i32) -> i32 {
    with(&mut caller, |m, _| {
        crate::rng::fill(m.bytes_mut(buf, len as u32 as usize)?);
        Ok(())
    })
}

fn sched_yield() -> i32 {
    errno::SUCCESS
}

fn poll_oneoff(mut caller: Caller<'_, Ctx>, subs: i32, events: i32, n: i32, out: i32) -> i32 {
    with(&mut caller, |m, ctx| poll(m, ctx, subs, events, n, out))
}

/// A subscription being waited on.
struct Sub {
    userdata: u64,
    tag: u8,
    /// A clock's deadline (monotonic ns).
    deadline: u64,
    /// The socket's index in the host poll list.
    entry: Option<usize>,
    error: u16,
    /// Ready without waiting (files, dead sockets, errors).
    ready: bool,
}

/// `poll_oneoff`: clocks (sleep), and readiness of fds: sockets are polled on the
/// host (one `POLL` that also sleeps until the earliest clock), every other fd is
/// always ready. Without a network host the guest spins on the TSC instead.
///
/// Steps:
/// 1. Read the subscriptions: the earliest clock deadline, socket entries, and
///    fds that are ready at once (files, dead sockets, bad fds with an error).
/// 2. Wait: on the host when there are sockets or a clock (nothing ready yet),
///    else not at all.
/// 3. Report the clocks that expired and the fds that are ready.
fn poll(
    m: &mut Mem<'_>,
    ctx: &mut Ctx,
    subs: i32,
    events: i32,
    n: i32,
    out: i32,
) -> Result<(), i32> {
    if n <= 0 {
        return Err(errno::INVAL);
    }
    // 1. Subscriptions.
    let now = monotonic_ns();
    let mut wake: Option<u64> = None;
    let mut list: Vec<Sub> = Vec::with_capacity(n as usize);
    let mut entries: Vec<PollEntry> = Vec::new();
    for i in 0..n {
        let sub = subscribe(ctx, subscription(m, subs, i)?, now, &mut entries);
        if sub.tag == CLOCK {
            wake = Some(wake.map_or(sub.deadline, |w| w.min(sub.deadline)));
        }
        list.push(sub);
    }
    // 2. Wait.
    let any_ready = list.iter().any(|s| s.ready);
    let deadline = if any_ready { Some(now) } else { wake };
    if !entries.is_empty() || (deadline.is_some() && !any_ready) {
        wait(&mut entries, deadline)?;
    }
    // 3. Events.
    let count = report(m, &list, &entries, events)?;
    m.put_u32(out, count as u32)
}

/// Step 1 for one subscription: a clock's deadline, a live socket's host poll
/// entry (pushed onto `entries`), or readiness at once.
fn subscribe(
    ctx: &mut Ctx,
    s: thaw_guest_wasi::poll::Subscription,
    now: u64,
    entries: &mut Vec<PollEntry>,
) -> Sub {
    let mut sub = Sub {
        userdata: s.userdata,
        tag: s.tag,
        deadline: 0,
        entry: None,
        error: 0,
        ready: false,
    };
    match s.wait {
        Wait::Clock { timeout, absolute } => {
            sub.deadline = if absolute {
                timeout
            } else {
                now.saturating_add(timeout)
            };
        }
        Wait::Fd { fd, write } => match ctx.handle(fd as i32) {
            Ok(Handle::Socket(net::Sock {
                host: Some(host),
                dead: false,
                ..
            })) => {
                sub.entry = Some(entries.len());
                entries.push(PollEntry {
                    handle: *host,
                    events: if write { POLLOUT } else { POLLIN },
                    revents: 0,
                });
            }
            Ok(_) => sub.ready = true,
            Err(e) => {
                sub.ready = true;
                sub.error = e as u16;
            }
        },
        Wait::Unknown => {
            sub.ready = true;
            sub.error = UNKNOWN_TAG_ERROR;
        }
    }
    sub
}

/// Step 2: one host poll until `deadline`, or a TSC spin without a network host.
fn wait(entries: &mut [PollEntry], deadline: Option<u64>) -> Result<(), i32> {
    match net::poll(entries, deadline) {
        Ok(_) => Ok(()),
        Err(e) if e == errno::NOSYS && entries.is_empty() => {
            while deadline.is_some_and(|d| monotonic_ns() < d) {
                core::hint::spin_loop();
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Step 3: writes an event for every subscription that is ready; returns how many.
fn report(m: &mut Mem<'_>, list: &[Sub], entries: &[PollEntry], events: i32) -> Result<i32, i32> {
    let now = monotonic_ns();
    let mut count = 0i32;
    for sub in list {
        let (ready, flags) = match (sub.tag, sub.entry) {
            (CLOCK, _) => (now >= sub.deadline, 0u16),
            (_, Some(i)) => {
                let r = entries[i].revents;
                (r != 0, u16::from(r & POLLHUP != 0))
            }
            _ => (sub.ready, 0),
        };
        if !ready {
            continue;
        }
        let ev = Event {
            userdata: sub.userdata,
            error: sub.error,
            tag: sub.tag,
            flags,
        };
        put_event(m, events, count, &ev)?;
        count += 1;
    }
    Ok(count)
}
