//! Stopping a vCPU from another thread: a flag plus a signal that knocks the vCPU
//! thread out of KVM_RUN (EINTR). The signal is re-sent every millisecond until the
//! run loop acknowledges, which closes the race where the signal lands just before
//! the thread enters KVM_RUN. A single process-wide watchdog thread fires kicks at
//! deadlines (function timeouts).
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

/// The process-wide deadline service.
struct Watchdog {
    armed: Mutex<BTreeMap<(Instant, u64), Kicker>>,
    wake: Condvar,
    next_id: AtomicU64,
}

fn watchdog() -> &'static Watchdog {
    static W: OnceLock<&'static Watchdog> = OnceLock::new();
    W.get_or_init(|| {
        let w: &'static Watchdog = Box::leak(Box::new(Watchdog {
            armed: Mutex::new(BTreeMap::new()),
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
    /// 1. Sleep until the earliest deadline (or a new arming).
    /// 2. Kick every expired VM.
    /// 3. Re-arm a kicked VM 1 ms later while it is still inside `run`, so a
    ///    signal that raced with KVM_RUN entry is repeated.
    fn run(&self) {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            let due: Vec<_> = armed
                .range(..(now, u64::MAX))
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            for (key, kicker) in due {
                armed.remove(&key);
                if kicker.kick() && kicker.inside_run() {
                    armed.insert((now + Duration::from_millis(1), key.1), kicker);
                }
            }
            armed = match armed.keys().next() {
                Some((t, _)) => {
                    let wait = t.saturating_duration_since(Instant::now());
                    self.wake
                        .wait_timeout(armed, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.wake.wait(armed).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// A deadline armed on the watchdog; dropping it disarms.
#[derive(Debug)]
pub struct Deadline {
    id: u64,
}

impl Deadline {
    /// Kicks `kicker` at `at` unless dropped first.
    pub fn arm(at: Instant, kicker: &Kicker) -> Self {
        let w = watchdog();
        let id = w.next_id.fetch_add(1, Ordering::Relaxed);
        w.armed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((at, id), kicker.clone());
        w.wake.notify_one();
        Self { id }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        let mut armed = watchdog().armed.lock().unwrap_or_else(|e| e.into_inner());
        armed.retain(|(_, id), _| *id != self.id);
    }
}
