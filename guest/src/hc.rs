//! Hypercalls: one `out` to `HYPERCALL_PORT` per call, arguments in the call's own
//! mailbox page. The `out` is a full exit to the VMM (~28 us here), so callers batch.
//!
//! This is the guest's bottom layer: port I/O and the shared areas only. What a
//! call reports about the rest of the guest (log bytes pending, memory in use)
//! its caller passes in.
use thaw_abi::net::NetMailbox;
use thaw_abi::{
    layout, AbortMailbox, Clock, Hypercall, LogMailbox, NextMailbox, PhaseMailbox, ResponseKind,
    ResponseMailbox, ABORT_MESSAGE_MAX, HYPERCALL_PORT, NEXT_HAS_RESPONSE, NEXT_RESPONSE_TRUNCATED,
};

/// Traps into the VMM with call `nr`; returns when the VMM resumes the vCPU.
fn call(nr: Hypercall) {
    // SAFETY: port I/O is allowed at CPL3 because the VMM starts the guest with
    // IOPL=3. The asm has no memory operands but is not `nomem`, so the compiler
    // orders all mailbox writes before it and re-reads mailboxes after it.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") HYPERCALL_PORT, in("eax") nr as u32, options(nostack, preserves_flags));
    }
}

/// Writes a mailbox value.
fn put<T: Copy>(nr: Hypercall, value: T) {
    // SAFETY: every mailbox is a 4 KiB page inside the mapped shared area, aligned
    // for any mailbox type (all are < 4 KiB, see thaw_abi tests).
    unsafe { core::ptr::write_volatile(nr.mailbox() as *mut T, value) }
}

/// Reads a mailbox value the VMM filled.
fn get<T: Copy>(nr: Hypercall) -> T {
    // SAFETY: as in `put`; the VMM writes only plain-old-data here.
    unsafe { core::ptr::read_volatile(nr.mailbox() as *const T) }
}

/// Flushes the first `len` bytes of the log buffer.
pub fn log(len: u64) {
    put(Hypercall::Log, LogMailbox { len });
    call(Hypercall::Log);
}

/// What `Next` returned.
pub struct NextInvocation {
    pub header_len: u64,
    pub payload_len: u64,
    pub clock: Clock,
    pub seed: [u8; 32],
    /// The first invocation after a restore: host objects (sockets) of the
    /// snapshotted VM do not exist here.
    pub restored: bool,
}

/// A response waiting to ride on the next `Next` call: `(kind, len, truncated)`.
static mut PENDING: Option<(ResponseKind, u64, bool)> = None;

/// Queues a response to be handed over with the next `Next` (saves one exit per
/// invocation; init errors go at once with [`respond`]: no `Next` follows them).
pub fn queue_response(kind: ResponseKind, len: u64, truncated: bool) {
    // SAFETY: the guest is single-threaded; nothing else borrows PENDING.
    unsafe { *core::ptr::addr_of_mut!(PENDING) = Some((kind, len, truncated)) };
}

/// Blocks until the VMM hands over the next invocation (handing over a queued
/// response, the first `log_len` log bytes and the memory in use on the way).
pub fn next(log_len: u64, mem_used: u64) -> NextInvocation {
    // SAFETY: single-threaded, as in `queue_response`.
    let pending = unsafe { (*core::ptr::addr_of_mut!(PENDING)).take() };
    let mut mb = NextMailbox {
        log_len,
        mem_used,
        ..Default::default()
    };
    if let Some((kind, len, truncated)) = pending {
        mb.response_flags = NEXT_HAS_RESPONSE
            | if truncated {
                NEXT_RESPONSE_TRUNCATED
            } else {
                0
            };
        mb.response_kind = kind as u32;
        mb.response_len = len;
    }
    put(Hypercall::Next, mb);
    call(Hypercall::Next);
    let m: NextMailbox = get(Hypercall::Next);
    NextInvocation {
        header_len: m.header_len,
        payload_len: m.payload_len,
        clock: m.clock,
        seed: m.seed,
        restored: m.restored != 0,
    }
}

/// What a `Net` call answered: the result, output bytes, message length.
pub struct NetAnswer {
    pub result: i64,
    pub out_len: u64,
    pub message_len: u64,
}

/// One `Net` call (see `thaw_abi::net`); only the header fields travel, the
/// message stays in the mailbox ([`net_message`]).
pub fn net(op: u32, handle: u32, args: [u64; 3], buf: u64, len: u64) -> NetAnswer {
    let mb = Hypercall::Net.mailbox() as *mut NetMailbox;
    // SAFETY: the Net mailbox is one mapped 4 KiB page holding a NetMailbox
    // (size checked at compile time in thaw_abi); the guest is single-threaded
    // and the VMM touches it only during the `out` below. `addr_of_mut!` writes
    // single fields without forming a reference to the whole mailbox.
    unsafe {
        core::ptr::addr_of_mut!((*mb).op).write_volatile(op);
        core::ptr::addr_of_mut!((*mb).handle).write_volatile(handle);
        core::ptr::addr_of_mut!((*mb).args).write_volatile(args);
        core::ptr::addr_of_mut!((*mb).buf).write_volatile(buf);
        core::ptr::addr_of_mut!((*mb).len).write_volatile(len);
    }
    call(Hypercall::Net);
    // SAFETY: as above; the VMM filled these fields before resuming us.
    unsafe {
        NetAnswer {
            result: core::ptr::addr_of!((*mb).result).read_volatile(),
            out_len: core::ptr::addr_of!((*mb).out_len).read_volatile(),
            message_len: core::ptr::addr_of!((*mb).message_len)
                .read_volatile()
                .min(thaw_abi::net::MESSAGE_MAX as u64),
        }
    }
}

/// The message of the last `Net` call (`len` from its answer, capped).
pub fn net_message(len: u64) -> alloc::vec::Vec<u8> {
    let mb = Hypercall::Net.mailbox() as *const NetMailbox;
    let len = (len as usize).min(thaw_abi::net::MESSAGE_MAX);
    // SAFETY: the message array lies inside the mapped mailbox page and `len` is
    // capped at its size; the bytes are plain data the VMM wrote.
    unsafe {
        let at = core::ptr::addr_of!((*mb).message) as *const u8;
        core::slice::from_raw_parts(at, len).to_vec()
    }
}

/// Sends a response whose body is already in the response area.
pub fn respond(kind: ResponseKind, len: u64, truncated: bool, log_len: u64) {
    put(
        Hypercall::Response,
        ResponseMailbox {
            kind: kind as u32,
            truncated: truncated as u32,
            len,
            log_len,
        },
    );
    call(Hypercall::Response);
}

/// Reports that the runtime reached `phase` (a `thaw_abi::phase` id).
pub fn phase(phase: u32) {
    put(Hypercall::Phase, PhaseMailbox { phase, _pad: 0 });
    call(Hypercall::Phase);
}

/// Reports a fatal error, with the first `log_len` log bytes, and never returns
/// (the VMM ends the VM).
pub fn abort(msg: &str, log_len: u64) -> ! {
    let bytes = msg.as_bytes();
    let len = bytes.len().min(ABORT_MESSAGE_MAX as usize);
    let text = Hypercall::Abort.mailbox() + core::mem::size_of::<AbortMailbox>() as u64;
    // SAFETY: the message area lies inside the Abort mailbox page (len is capped at
    // ABORT_MESSAGE_MAX, which leaves room for the header).
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), text as *mut u8, len) };
    put(
        Hypercall::Abort,
        AbortMailbox {
            len: len as u64,
            log_len,
        },
    );
    loop {
        call(Hypercall::Abort);
    }
}

/// Copies `data` into the response area at `offset`, as far as it fits; returns
/// the bytes copied. The area is only ever written through this copy, so no
/// reference to it outlives a call.
pub fn write_response(offset: usize, data: &[u8]) -> usize {
    let size = layout::RESPONSE_SIZE as usize;
    let start = offset.min(size);
    let n = data.len().min(size - start);
    // SAFETY: `[RESPONSE + start, RESPONSE + start + n)` lies inside the mapped
    // response area (start + n <= RESPONSE_SIZE); the guest owns the area between
    // hypercalls, is single-threaded, and `data` is guest heap or linear memory,
    // never the response area itself.
    unsafe {
        core::ptr::copy_nonoverlapping(
            data.as_ptr(),
            (layout::RESPONSE as usize + start) as *mut u8,
            n,
        )
    };
    n
}

/// The request area (header and payload the VMM wrote for the current invocation).
pub fn request_area() -> &'static [u8] {
    // SAFETY: the request area is mapped; the VMM writes it only while the guest
    // is blocked in `Next`.
    unsafe {
        core::slice::from_raw_parts(layout::REQUEST as *const u8, layout::REQUEST_SIZE as usize)
    }
}
