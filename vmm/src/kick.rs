//! Stopping a vCPU from another thread: a flag plus a signal that knocks the vCPU
//! thread out of KVM_RUN (EINTR). The signal is re-sent every millisecond until the
//! run loop acknowledges, which closes the race where the signal lands just before
//! the thread enters KVM_RUN. A single process-wide watchdog thread fires kicks at
//! deadlines (function timeouts). A per-thread POSIX timer sends the same signal to
//! end an inline run's time slice ([`crate::Vm::run_slice`]).
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

/// The signal used to interrupt KVM_RUN.
fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

extern "C" fn on_kick(_: libc::c_int) {}

fn install_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: installs a handler that does nothing (async-signal-safe) and
        // without SA_RESTART, so the signal interrupts KVM_RUN with EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
    });
}

/// Shared between a VM's run loop and whoever may stop it.
#[derive(Debug, Default)]
pub struct KickState {
    stop: AtomicBool,
    /// pthread id of the thread inside `run`, 0 when none.
    thread: AtomicU64,
}

/// A handle that stops a VM's vCPU.
#[derive(Debug, Clone, Default)]
pub struct Kicker(pub(crate) Arc<KickState>);

impl Kicker {
    /// Asks the vCPU to stop; `run` then returns `VmError::Interrupted`.
    /// Returns true when the vCPU thread was inside `run` and was signalled.
    pub fn kick(&self) -> bool {
        install_handler();
        self.0.stop.store(true, Ordering::SeqCst);
        let tid = self.0.thread.load(Ordering::SeqCst);
        if tid != 0 {
            // SAFETY: tid was stored by a live thread inside `run`, which clears it
            // before returning; signalling a thread that just left is harmless
            // because the handler does nothing.
            unsafe { libc::pthread_kill(tid as libc::pthread_t, kick_signal()) };
        }
        tid != 0
    }

    pub(crate) fn stopped(&self) -> bool {
        self.0.stop.load(Ordering::SeqCst)
    }

    pub(crate) fn clear(&self) {
        self.0.stop.store(false, Ordering::SeqCst);
    }

    /// Marks the current thread as the vCPU thread (inside `run`).
    pub(crate) fn enter(&self) {
        install_handler();
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() } as u64;
        self.0.thread.store(me, Ordering::SeqCst);
    }

    pub(crate) fn leave(&self) {
        self.0.thread.store(0, Ordering::SeqCst);
    }

    fn inside_run(&self) -> bool {
        self.0.thread.load(Ordering::SeqCst) != 0
    }
}

/// A POSIX timer that sends the kick signal to the thread that created it.
struct SliceTimer(libc::timer_t);

impl SliceTimer {
    fn new() -> std::io::Result<Self> {
        install_handler();
        // SAFETY: sigevent is plain data; all-zero is a valid starting value.
        let mut ev: libc::sigevent = unsafe { std::mem::zeroed() };
        ev.sigev_notify = libc::SIGEV_THREAD_ID;
        ev.sigev_signo = kick_signal();
        // SAFETY: gettid has no preconditions.
        ev.sigev_notify_thread_id = unsafe { libc::gettid() };
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: `ev` and `id` are valid for the call; the kernel writes the new
        // timer's id into `id`.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut ev, &mut id) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self(id))
    }

    /// Fires after `first`, then every `every`; zero disarms.
    fn set(&self, first: Duration, every: Duration) -> std::io::Result<()> {
        let ts = |d: Duration| libc::timespec {
            tv_sec: d.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
        };
        let spec = libc::itimerspec {
            it_interval: ts(every),
            it_value: ts(first),
        };
        // SAFETY: self.0 is a live timer owned by this thread; `spec` is valid.
        if unsafe { libc::timer_settime(self.0, 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for SliceTimer {
    fn drop(&mut self) {
        // SAFETY: self.0 was created by timer_create and is deleted once.
        unsafe { libc::timer_delete(self.0) };
    }
}

thread_local! {
    static SLICE_TIMER: RefCell<Option<SliceTimer>> = const { RefCell::new(None) };
}

/// How often the slice signal repeats once the slice is over, until the run loop
/// notices: a signal that lands just before KVM_RUN entry is not lost for long.
const SLICE_REPEAT: Duration = Duration::from_millis(1);

/// Sends the kick signal to this thread after `slice` (and every [`SLICE_REPEAT`]
/// after that) until [`end_slice`].
pub(crate) fn start_slice(slice: Duration) -> std::io::Result<()> {
    SLICE_TIMER.with(|t| {
        let mut t = t.borrow_mut();
        if t.is_none() {
            *t = Some(SliceTimer::new()?);
        }
        let timer = t
            .as_ref()
            .ok_or_else(|| std::io::Error::other("no slice timer"))?;
        timer.set(slice.max(Duration::from_micros(1)), SLICE_REPEAT)
    })
}

/// Disarms this thread's slice timer. Any signal it already sent has been
/// delivered (to the empty handler) by the time the disarming syscall returns.
pub(crate) fn end_slice() {
    SLICE_TIMER.with(|t| {
        if let Some(timer) = t.borrow().as_ref() {
            let _ = timer.set(Duration::ZERO, Duration::ZERO);
        }
    });
}

/// The process-wide deadline service.
struct Watchdog {
    state: Mutex<Armed>,
    wake: Condvar,
    next_id: AtomicU64,
}

/// The deadlines, and when the watchdog thread will next wake by itself.
struct Armed {
    deadlines: BTreeMap<(Instant, u64), Kicker>,
    /// `None` while it waits for an arming with nothing armed.
    wakes_at: Option<Instant>,
}

fn watchdog() -> &'static Watchdog {
    static W: OnceLock<&'static Watchdog> = OnceLock::new();
    W.get_or_init(|| {
        let w: &'static Watchdog = Box::leak(Box::new(Watchdog {
            state: Mutex::new(Armed {
                deadlines: BTreeMap::new(),
                wakes_at: None,
            }),
            wake: Condvar::new(),
            next_id: AtomicU64::new(1),
        }));
        std::thread::Builder::new()
            .name("thaw-watchdog".into())
            .spawn(move || w.run())
            .expect("spawn watchdog thread");
        w
    })
}

impl Watchdog {
    /// 1. Sleep until the earliest deadline (or an arming earlier than that).
    /// 2. Kick every expired VM.
    /// 3. Re-arm a kicked VM 1 ms later while it is still inside `run`, so a
    ///    signal that raced with KVM_RUN entry is repeated.
    ///
    /// A disarmed deadline leaves the thread asleep: it wakes at the old time,
    /// finds nothing due and sleeps again. So the warm path (arm a deadline
    /// seconds away, run for microseconds, disarm) never wakes this thread.
    fn run(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            let due: Vec<_> = state
                .deadlines
                .range(..(now, u64::MAX))
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            for (key, kicker) in due {
                state.deadlines.remove(&key);
                if kicker.kick() && kicker.inside_run() {
                    state
                        .deadlines
                        .insert((now + Duration::from_millis(1), key.1), kicker);
                }
            }
            state.wakes_at = state.deadlines.keys().next().map(|(t, _)| *t);
            state = match state.wakes_at {
                Some(t) => {
                    let wait = t.saturating_duration_since(Instant::now());
                    self.wake
                        .wait_timeout(state, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.wake.wait(state).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// A deadline armed on the watchdog; dropping it disarms.
#[derive(Debug)]
pub struct Deadline {
    key: (Instant, u64),
}

impl Deadline {
    /// Kicks `kicker` at `at` unless dropped first.
    pub fn arm(at: Instant, kicker: &Kicker) -> Self {
        let w = watchdog();
        let key = (at, w.next_id.fetch_add(1, Ordering::Relaxed));
        let mut state = w.state.lock().unwrap_or_else(|e| e.into_inner());
        state.deadlines.insert(key, kicker.clone());
        // Wake the thread only if it would otherwise sleep past `at`.
        if state.wakes_at.is_none_or(|t| at < t) {
            state.wakes_at = Some(at);
            w.wake.notify_one();
        }
        Self { key }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        let mut state = watchdog().state.lock().unwrap_or_else(|e| e.into_inner());
        if state.deadlines.remove(&self.key).is_none() {
            // Re-armed by the watchdog after a kick (same id, later time).
            state.deadlines.retain(|(_, id), _| *id != self.key.1);
        }
    }
}
