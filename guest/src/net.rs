//! Sockets for the guest: WASI preview 1 has none, and the guest has no network
//! stack, so each socket is a host object (owned by the VMM's network host) that
//! the guest drives through the `Net` hypercall (`thaw_abi::net`).
//!
//! The Python runtime sees them as ordinary file descriptors: `os.read`/`os.write`
//! on a socket fd are one `RECV`/`SEND` each, `select`/`poll` (WASI
//! `poll_oneoff`) is one `POLL`, and closing the fd closes the socket. Everything
//! else (creating sockets, connect, name resolution, TLS, options, timeouts) goes
//! through the control file `/run/thaw/net`: write one request, read its reply.
//!
//! Control request (little endian): `op u32, pad u32, token u64, a0 u64, a1 u64,
//! a2 u64` (the token names the socket, see [`Sock::token`]),
//! then the op's input bytes. Reply: `result i64, message_len u32`, the message,
//! then the op's output bytes. `result < 0` is a negated **WASI** errno (what
//! Python's `OSError` expects on this platform), or [`GAI_NONAME`].
//!
//! Timeouts are the socket's own (`SETTIMEOUT`): reads, writes and connects wait
//! at most that long and then fail with `EAGAIN` (Python's `socket.timeout`);
//! timeout 0 is non-blocking. Waits are kept by the guest against its own clock:
//! when the VMM hands the vCPU back early (`RETRY`), the call is issued again with
//! what is left.
//!
//! After a restore the host sockets of the snapshotted VM are gone: every socket
//! fd from before turns *dead* ([`Sock::dead`]) and fails with `ECONNRESET`, so
//! clients reconnect (SnapStart's rule).
use alloc::vec::Vec;
use thaw_abi::net::{self as abi, errno as lx, op};

/// Not a WASI errno: name resolution found nothing (Python raises `gaierror`).
pub const GAI_NONAME: i64 = -1001;

/// Guest-local control op: set a socket's timeout (`a0` = microseconds,
/// `u64::MAX` = block forever, 0 = non-blocking).
pub const CTL_SETTIMEOUT: u32 = 100;

/// Length of a control request header.
pub const REQUEST_HEADER: usize = 40;

/// WASI errno values the socket layer returns.
pub use thaw_guest_wasi::errno as wasi;

/// Maps a Linux errno from the VMM to WASI's numbering.
pub fn wasi_errno(linux: i64) -> i32 {
    match linux {
        lx::EPERM => wasi::PERM,
        lx::ENOENT => wasi::NOENT,
        lx::EINTR => wasi::INTR,
        lx::EBADF => wasi::BADF,
        lx::EAGAIN => wasi::AGAIN,
        lx::ENOMEM => wasi::NOMEM,
        lx::EACCES => wasi::ACCES,
        lx::EINVAL => wasi::INVAL,
        lx::EMFILE => wasi::MFILE,
        lx::EPIPE => wasi::PIPE,
        lx::ENAMETOOLONG => wasi::NAMETOOLONG,
        lx::ENOSYS => wasi::NOSYS,
        lx::EPROTO => wasi::PROTO,
        lx::EMSGSIZE => wasi::MSGSIZE,
        lx::EPROTOTYPE => wasi::PROTOTYPE,
        lx::EAFNOSUPPORT => wasi::AFNOSUPPORT,
        lx::EADDRNOTAVAIL => wasi::ADDRNOTAVAIL,
        lx::ENETUNREACH => wasi::NETUNREACH,
        lx::ECONNABORTED => wasi::CONNABORTED,
        lx::ECONNRESET => wasi::CONNRESET,
        lx::ENOBUFS => wasi::NOBUFS,
        lx::EISCONN => wasi::ISCONN,
        lx::ENOTCONN => wasi::NOTCONN,
        lx::ETIMEDOUT => wasi::TIMEDOUT,
        lx::ECONNREFUSED => wasi::CONNREFUSED,
        lx::EHOSTUNREACH => wasi::HOSTUNREACH,
        lx::EALREADY => wasi::ALREADY,
        lx::EINPROGRESS => wasi::INPROGRESS,
        lx::EDQUOT => wasi::DQUOT,
        _ => wasi::IO,
    }
}

/// A socket fd's state.
#[derive(Debug, Clone, Copy)]
pub struct Sock {
    /// Names the socket in control requests; Python reads it as the fd's inode
    /// (`os.fstat(fd).st_ino`). The module's wasi-vfs layer renumbers fds, so
    /// the fd number Python holds is not ours.
    pub token: u64,
    /// The VMM's handle (`None` until the `SOCKET` request).
    pub host: Option<u32>,
    /// How long reads, writes and connects wait (ns); `None` forever.
    pub timeout_ns: Option<u64>,
    /// The socket belonged to the VM this one was restored from.
    pub dead: bool,
}

impl Sock {
    fn new(token: u64, host: u32) -> Self {
        Self {
            token,
            host: Some(host),
            timeout_ns: None,
            dead: false,
        }
    }

    /// A socket fd with no host socket yet.
    pub fn unbound(token: u64) -> Self {
        Self {
            token,
            host: None,
            timeout_ns: None,
            dead: false,
        }
    }

    /// The host handle, or the error for a socket without one.
    fn live(&self) -> Result<u32, i32> {
        if self.dead {
            return Err(wasi::CONNRESET);
        }
        self.host.ok_or(wasi::NOTCONN)
    }

    /// The deadline of an operation starting now.
    pub fn deadline(&self) -> Option<u64> {
        self.timeout_ns
            .map(|t| crate::clock::monotonic_ns().saturating_add(t))
    }
}

/// A finished `Net` call.
pub struct Answer {
    /// `>= 0` the value, `< 0` a negated Linux errno.
    pub result: i64,
    pub out_len: u64,
    pub message_len: u64,
}

/// Issues `op` until the VMM stops asking for a retry or `deadline` (guest
/// monotonic ns) passes; `args[2]` carries the remaining wait.
pub fn call_until(
    op: u32,
    handle: u32,
    mut args: [u64; 3],
    buf: u64,
    len: u64,
    deadline: Option<u64>,
) -> Answer {
    loop {
        args[2] = match deadline {
            None => u64::MAX,
            Some(d) => d
                .saturating_sub(crate::clock::monotonic_ns())
                .div_ceil(1_000_000),
        };
        let a = crate::hc::net(op, handle, args, buf, len);
        if a.result == -lx::RETRY {
            if deadline.is_some_and(|d| crate::clock::monotonic_ns() >= d) {
                return Answer {
                    result: -lx::EAGAIN,
                    out_len: 0,
                    message_len: 0,
                };
            }
            continue;
        }
        return Answer {
            result: a.result,
            out_len: a.out_len,
            message_len: a.message_len,
        };
    }
}

/// Reads into guest memory at `addr` (at most `len`, capped at `MAX_IO`).
pub fn recv(sock: &Sock, addr: u64, len: usize) -> Result<usize, i32> {
    let host = sock.live()?;
    let len = (len as u64).min(abi::MAX_IO);
    let a = call_until(op::RECV, host, [0; 3], addr, len, sock.deadline());
    result(a.result).map(|n| n as usize)
}

/// Sends from guest memory at `addr`.
pub fn send(sock: &Sock, addr: u64, len: usize) -> Result<usize, i32> {
    let host = sock.live()?;
    let len = (len as u64).min(abi::MAX_IO);
    let a = call_until(op::SEND, host, [0; 3], addr, len, sock.deadline());
    result(a.result).map(|n| n as usize)
}

/// Closes the host socket (a dead one has nothing to close).
pub fn close(sock: &Sock) {
    if let Ok(host) = sock.live() {
        crate::hc::net(op::CLOSE, host, [0; 3], 0, 0);
    }
}

fn result(r: i64) -> Result<i64, i32> {
    if r >= 0 {
        Ok(r)
    } else {
        Err(wasi_errno(-r))
    }
}

/// Waits until one of `entries` is ready or `deadline` passes; fills `revents`.
/// `Err(NOSYS)` when the VM has no network host (the caller then spins).
pub fn poll(entries: &mut [abi::PollEntry], deadline: Option<u64>) -> Result<usize, i32> {
    let addr = entries.as_mut_ptr() as u64;
    let len = core::mem::size_of_val(entries) as u64;
    let a = call_until(op::POLL, 0, [0; 3], addr, len, deadline);
    match a.result {
        r if r >= 0 => Ok(r as usize),
        r if r == -lx::EAGAIN => Ok(0),
        r if r == -lx::EPERM => Err(wasi::NOSYS),
        r => Err(wasi_errno(-r)),
    }
}

/// A parsed control request.
pub struct Request<'a> {
    pub op: u32,
    pub token: u64,
    pub args: [u64; 3],
    pub input: &'a [u8],
}

impl<'a> Request<'a> {
    /// Parses a control write; `None` if it is too short.
    pub fn parse(b: &'a [u8]) -> Option<Self> {
        let u64_at = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
        };
        Some(Self {
            op: u32::from_le_bytes(b.get(0..4)?.try_into().ok()?),
            token: u64_at(8)?,
            args: [u64_at(16)?, u64_at(24)?, u64_at(32)?],
            input: b.get(REQUEST_HEADER..)?,
        })
    }
}

/// Builds a control reply.
pub fn reply(result: i64, message: &[u8], out: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(12 + message.len() + out.len());
    r.extend_from_slice(&result.to_le_bytes());
    r.extend_from_slice(&(message.len() as u32).to_le_bytes());
    r.extend_from_slice(message);
    r.extend_from_slice(out);
    r
}

/// A reply for a finished host call: WASI errno and message on failure, the
/// first `out_len` bytes of `out` on success.
pub fn answer_reply(a: &Answer, out: &[u8]) -> Vec<u8> {
    let message = if a.message_len > 0 {
        crate::hc::net_message(a.message_len)
    } else {
        Vec::new()
    };
    if a.result >= 0 {
        let n = (a.out_len as usize).min(out.len());
        reply(a.result, &message, &out[..n])
    } else if a.result == -lx::ENONAME {
        reply(GAI_NONAME, &message, &[])
    } else {
        reply(-i64::from(wasi_errno(-a.result)), &message, &[])
    }
}

/// The socket ops the control file passes to the VMM with a fresh buffer:
/// `(op, output capacity)`.
pub fn passthrough(op: u32, args: &[u64; 3]) -> Option<usize> {
    match op {
        op::CONNECT | op::SHUTDOWN | op::START_TLS | op::HANDSHAKE | op::SETOPT => Some(0),
        op::RESOLVE => Some(16 << 10),
        op::GETOPT => Some(64 << 10),
        op::RECV => Some((args[1] as usize).clamp(1, 1 << 20)),
        _ => None,
    }
}

/// Creates a host socket for the control op `SOCKET` (`args` = family, type) or
/// a pair for `SOCKETPAIR`, for the sockets named `tokens`.
pub fn create(
    op: u32,
    args: [u64; 3],
    tokens: (u64, u64),
) -> Result<(Sock, Option<Sock>), (i64, Vec<u8>)> {
    let args = if op == op::SOCKET {
        [args[0], args[1], 0]
    } else {
        [0; 3]
    };
    let a = crate::hc::net(op, 0, args, 0, 0);
    if a.result < 0 {
        let msg = crate::hc::net_message(a.message_len);
        return Err((-i64::from(wasi_errno(-a.result)), msg));
    }
    if op == op::SOCKETPAIR {
        let r = a.result as u64;
        Ok((
            Sock::new(tokens.0, r as u32),
            Some(Sock::new(tokens.1, (r >> 32) as u32)),
        ))
    } else {
        Ok((Sock::new(tokens.0, a.result as u32), None))
    }
}

/// Runs a passthrough op on `sock` with `input`; `deadline` for ops that wait.
pub fn run(sock: &Sock, req: &Request<'_>, cap: usize) -> Vec<u8> {
    let host = match sock.live() {
        Ok(h) => h,
        Err(e) if sock.dead => {
            return reply(
                -i64::from(e),
                b"the socket was opened before the snapshot this instance was restored from",
                &[],
            )
        }
        Err(e) => return reply(-i64::from(e), b"socket has no host socket", &[]),
    };
    let waits = matches!(req.op, op::CONNECT | op::HANDSHAKE | op::RECV);
    let deadline = if waits {
        match req.args[2] {
            u64::MAX => sock.deadline(),
            ms => Some(crate::clock::monotonic_ns().saturating_add(ms.saturating_mul(1_000_000))),
        }
    } else {
        Some(0)
    };
    let mut out = alloc::vec![0u8; cap];
    let (buf, len) = if cap > 0 {
        (out.as_mut_ptr() as u64, cap as u64)
    } else {
        (req.input.as_ptr() as u64, req.input.len() as u64)
    };
    let a = call_until(req.op, host, req.args, buf, len, deadline);
    answer_reply(&a, &out)
}

/// Resolves a name (no socket involved).
pub fn resolve(req: &Request<'_>) -> Vec<u8> {
    // The VMM reads the name and writes the answers in one buffer.
    let mut buf = alloc::vec![0u8; 16 << 10];
    let n = req.input.len().min(buf.len());
    buf[..n].copy_from_slice(&req.input[..n]);
    let a = crate::hc::net(
        op::RESOLVE,
        0,
        [req.args[0], n as u64, 0],
        buf.as_mut_ptr() as u64,
        buf.len() as u64,
    );
    answer_reply(
        &Answer {
            result: a.result,
            out_len: a.out_len,
            message_len: a.message_len,
        },
        &buf,
    )
}
