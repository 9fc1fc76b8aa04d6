//! The network hypercall's VMM side: decoding and validating a [`NetMailbox`] and
//! handing the operation to the VM's [`NetHost`], which owns the real sockets.
//!
//! The VMM knows nothing about sockets, TLS or policy: it checks that the op is
//! known, that the buffer lies inside guest RAM and within [`MAX_IO`], copies the
//! input out and the output back, and caps the message. A VM without a host
//! answers every op with `-EPERM` ("no network").
//!
//! Steps of one call (`Vm::net_call`):
//! 1. Read the mailbox; an unknown op or an out-of-range buffer ends the VM.
//! 2. Copy the input bytes out of guest RAM (ops whose buffer is input).
//! 3. Work out the deadlines: the guest's wait (`args[2]` ms) and the caller's
//!    slice end, whichever the host must return by.
//! 4. Call the host; it fills the output and returns a result or a negated errno.
//! 5. Write the output (at most `len` bytes) and the result back to the guest.
use crate::error::VmError;
use crate::memory::GuestAddress;
use std::time::{Duration, Instant};
use thaw_abi::net::{buffer_direction, errno, op, NetMailbox, MAX_IO, MESSAGE_MAX};

/// One validated network operation.
#[derive(Debug)]
pub struct NetCall<'a> {
    /// A `thaw_abi::net::op` code (known: checked by the VMM).
    pub op: u32,
    /// The socket handle the guest named (unchecked: the host owns handles).
    pub handle: u32,
    /// The op's arguments (untrusted values).
    pub args: [u64; 3],
    /// Input bytes (empty for ops without input).
    pub input: &'a [u8],
    /// Most output bytes the guest can take (0 for ops without output).
    pub out_cap: usize,
    /// When the guest's own wait is over (`None`: it may wait forever). Passing
    /// it with nothing ready is `-EAGAIN`.
    pub wait_until: Option<Instant>,
    /// When the host must hand the vCPU back whatever happens (the caller's time
    /// slice); reaching it first is [`errno::RETRY`].
    pub yield_at: Option<Instant>,
}

/// What the host answers.
#[derive(Debug, Default)]
pub struct NetReply {
    /// `>= 0` the value, `< 0` a negated `thaw_abi::net::errno`.
    pub result: i64,
    /// Output bytes (truncated to `out_cap` by the VMM).
    pub out: Vec<u8>,
    /// Why it failed, for the guest (never host secrets).
    pub message: String,
}

impl NetReply {
    /// A failure with `errno` and a message.
    pub fn error(errno: i64, message: impl Into<String>) -> Self {
        Self {
            result: -errno,
            out: Vec::new(),
            message: message.into(),
        }
    }

    /// A success with value `v`.
    pub fn ok(v: i64) -> Self {
        Self {
            result: v,
            ..Self::default()
        }
    }
}

/// The host side of a VM's sockets. Implementations block at most until the
/// earlier of the call's deadlines, and return [`errno::RETRY`] when a signal
/// (a kick or the slice timer) interrupts their wait.
pub trait NetHost: Send + std::fmt::Debug {
    /// Performs one operation.
    fn call(&mut self, call: NetCall<'_>) -> NetReply;

    /// A new invocation starts (per-invocation budgets reset).
    fn begin_invocation(&mut self) {}
}

impl crate::Vm {
    /// Installs the host that serves this VM's socket operations (replacing and
    /// dropping any previous one, which closes its sockets).
    pub fn set_net(&mut self, host: Box<dyn NetHost>) {
        self.net = Some(host);
    }

    /// Drops the VM's network host and every socket it holds.
    pub fn clear_net(&mut self) {
        self.net = None;
    }

    /// Serves one `Net` hypercall (see the module doc); `end` is the slice end.
    pub(crate) fn net_call(&mut self, end: Option<Instant>) -> Result<(), VmError> {
        let mb_addr = thaw_abi::Hypercall::Net.mailbox();
        // 1. The mailbox, every field checked.
        let mut m: NetMailbox = self.ram.read_obj(GuestAddress(mb_addr))?;
        if m.op == 0 || m.op > op::LAST {
            return Err(VmError::GuestHypercall(format!(
                "unknown network op {}",
                m.op
            )));
        }
        let (takes_input, gives_output) = buffer_direction(m.op);
        if (takes_input || gives_output) && m.len > 0 {
            if m.len > MAX_IO {
                return Err(VmError::GuestHypercall(format!(
                    "network buffer of {} bytes exceeds {MAX_IO}",
                    m.len
                )));
            }
            if self.ram.check(GuestAddress(m.buf), m.len).is_err() {
                return Err(VmError::GuestHypercall(format!(
                    "network buffer {:#x}+{} lies outside guest RAM",
                    m.buf, m.len
                )));
            }
        }
        // 2. Input.
        let input = if takes_input {
            self.ram.read_vec(GuestAddress(m.buf), m.len)?
        } else {
            Vec::new()
        };
        // 3. Deadlines.
        let now = Instant::now();
        let wait_until = match m.args[2] {
            u64::MAX => None,
            ms => Some(now + Duration::from_millis(ms.min(1 << 40))),
        };
        // 4. The host.
        let reply = match self.net.as_mut() {
            Some(host) => host.call(NetCall {
                op: m.op,
                handle: m.handle,
                args: m.args,
                input: &input,
                out_cap: if gives_output { m.len as usize } else { 0 },
                wait_until,
                yield_at: end,
            }),
            None => NetReply::error(errno::EPERM, "this function has no network access"),
        };
        // 5. Output and result.
        let out_len = if gives_output {
            let n = reply.out.len().min(m.len as usize);
            self.ram.write(GuestAddress(m.buf), &reply.out[..n])?;
            n as u64
        } else {
            0
        };
        let msg = reply.message.as_bytes();
        let msg_len = msg.len().min(MESSAGE_MAX);
        m.result = reply.result;
        m.out_len = out_len;
        m.message_len = msg_len as u64;
        m.message[..msg_len].copy_from_slice(&msg[..msg_len]);
        self.ram.write_obj(GuestAddress(mb_addr), &m)
    }
}
