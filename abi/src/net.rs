//! The network hypercall ([`crate::Hypercall::Net`]): the guest has no network
//! stack, so sockets are host objects (owned by the VMM's [`NetMailbox`] handler)
//! that the guest drives one operation per exit.
//!
//! One call = one [`NetMailbox`]: the guest fills `op`, `handle`, `args`, and a
//! buffer (`buf`, `len`) in its own RAM; the VMM validates every field (unknown op,
//! a buffer outside guest RAM or longer than [`MAX_IO`] end the VM; a bad handle is
//! an ordinary `-EBADF`), performs the operation and writes `result` (`>= 0` a
//! value, `< 0` a negated **Linux** errno from [`errno`]), `out_len` (bytes it
//! wrote into the buffer, for ops whose buffer direction is out) and an optional
//! UTF-8 `message` (TLS verification failures and denials say why).
//!
//! Waiting: ops that may block take `wait_ms` in `args[2]` (`u64::MAX`: no limit).
//! The VMM may return [`errno::RETRY`] before the wait is over (its time slice
//! ended, or it was asked to stop); the guest then issues the same call again with
//! what is left of its own deadline. A wait that passes with nothing ready is
//! `-EAGAIN`.
//!
//! Sockets opened before a snapshot do not exist in its clones: the guest drops its
//! handles when it learns it was restored, and the VMM of a clone never knows them.

/// Operation codes (`NetMailbox::op`). Buffer direction in brackets.
pub mod op {
    /// New socket. `args[0]` = family (`AF_INET` 2, `AF_INET6` 10), `args[1]` = type
    /// (`SOCK_STREAM` 1; others are refused). Result: the handle.
    pub const SOCKET: u32 = 1;
    /// A connected pair of local stream sockets (asyncio's self-pipe).
    /// Result: `first | second << 32`.
    pub const SOCKETPAIR: u32 = 2;
    /// [in: the address as text, an IP literal] Connect to it, port `args[0]`,
    /// waiting `args[2]` ms. `-EINPROGRESS` if the wait ended first (then poll for
    /// writability and read [`opt::ERROR`]). The egress policy is checked here.
    pub const CONNECT: u32 = 3;
    /// [in: data] Send. Result: bytes taken.
    pub const SEND: u32 = 4;
    /// [out: data] Receive at most `len` bytes; `args[0]` = flags
    /// ([`MSG_PEEK`]). Result: bytes received, 0 at end of stream.
    pub const RECV: u32 = 5;
    /// Shut down one direction: `args[0]` = 0 read, 1 write, 2 both.
    pub const SHUTDOWN: u32 = 6;
    /// Close the handle.
    pub const CLOSE: u32 = 7;
    /// [in+out: `len / 8` [`PollEntry`]s] Wait until one is ready; the VMM
    /// writes `revents` back. Result: entries ready.
    pub const POLL: u32 = 8;
    /// [in: name, out: answers] Resolve a host name on the host; `args[0]` =
    /// family wanted (0 any), `args[1]` = length of the name at the start of the
    /// buffer (0: up to the first NUL); the rest of the buffer is room for the
    /// answers. Answers: IP
    /// literals, one per line. The VMM remembers them for the egress check of
    /// later connects.
    pub const RESOLVE: u32 = 9;
    /// [in: [`tls`] request] Turn a connected socket into a TLS client stream:
    /// afterwards SEND and RECV carry plaintext. Does not wait; follow with
    /// [`HANDSHAKE`].
    pub const START_TLS: u32 = 10;
    /// Drive the TLS handshake, waiting `args[2]` ms. Result 0 when complete.
    /// Certificate errors are `-EPROTO` with the reason in `message`.
    pub const HANDSHAKE: u32 = 11;
    /// [out: value] Read socket information `args[0]` ([`opt`]).
    pub const GETOPT: u32 = 12;
    /// Set an option: `args[0]` ([`opt`]), `args[1]` the value.
    pub const SETOPT: u32 = 13;
    /// Highest op code.
    pub const LAST: u32 = SETOPT;
}

/// What [`op::GETOPT`] / [`op::SETOPT`] read or set.
pub mod opt {
    /// GET: the pending socket error (`SO_ERROR`, a positive Linux errno or 0) as result.
    pub const ERROR: u64 = 1;
    /// GET: the peer's address as `ip port` text.
    pub const PEER: u64 = 2;
    /// GET: the local address as `ip port` text.
    pub const LOCAL: u64 = 3;
    /// GET: the ALPN protocol the server chose (empty if none).
    pub const TLS_ALPN: u64 = 4;
    /// GET: the peer's leaf certificate, DER.
    pub const TLS_PEER_CERT: u64 = 5;
    /// GET: `version cipher-suite` text, e.g. `TLSv1.3 TLS13_AES_256_GCM_SHA384`.
    pub const TLS_INFO: u64 = 6;
    /// SET: `TCP_NODELAY` (0/1).
    pub const NODELAY: u64 = 7;
    /// SET: `SO_KEEPALIVE` (0/1).
    pub const KEEPALIVE: u64 = 8;
}

/// [`op::RECV`] flag: leave the bytes in the socket.
pub const MSG_PEEK: u64 = 2;

/// [`op::START_TLS`] request: a line-oriented text block, `key value` per line,
/// then, after a line `ca`, PEM certificates to trust for this connection (the
/// function's own `cafile`/`cadata`):
///
/// ```text
/// server_name example.com        (optional; SNI and the name verified)
/// alpn h2,http/1.1               (optional)
/// verify 1                       (0: CERT_NONE, accept any certificate)
/// check_hostname 1               (0: verify the chain but not the name)
/// ca
/// -----BEGIN CERTIFICATE-----
/// ...
/// ```
pub mod tls {
    /// Longest START_TLS request (the CA PEM dominates).
    pub const MAX_REQUEST: u64 = 1 << 20;
}

/// One [`op::POLL`] entry (8 bytes, little endian).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollEntry {
    pub handle: u32,
    /// [`POLLIN`] | [`POLLOUT`] wanted.
    pub events: u16,
    /// Written by the VMM: ready conditions ([`POLLIN`], [`POLLOUT`], [`POLLERR`], [`POLLHUP`]).
    pub revents: u16,
}

/// Readable (or end of stream).
pub const POLLIN: u16 = 0x1;
/// Writable (or connect finished).
pub const POLLOUT: u16 = 0x4;
/// An error is pending.
pub const POLLERR: u16 = 0x8;
/// The peer hung up.
pub const POLLHUP: u16 = 0x10;

/// Most poll entries in one call.
pub const MAX_POLL: u64 = 1024;
/// Longest buffer of any one call.
pub const MAX_IO: u64 = 1 << 20;
/// Longest `message`.
pub const MESSAGE_MAX: usize = 0x1000 - 128;

/// Mailbox of [`crate::Hypercall::Net`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NetMailbox {
    /// Guest -> VMM: an [`op`] code.
    pub op: u32,
    /// Guest -> VMM: the socket handle (ops on a socket).
    pub handle: u32,
    /// Guest -> VMM: op arguments; `args[2]` is `wait_ms` for ops that wait.
    pub args: [u64; 3],
    /// Guest -> VMM: the op's buffer (guest address) and length.
    pub buf: u64,
    pub len: u64,
    /// VMM -> guest: `>= 0` the value, `< 0` a negated [`errno`].
    pub result: i64,
    /// VMM -> guest: bytes written into the buffer.
    pub out_len: u64,
    /// VMM -> guest: length of `message`.
    pub message_len: u64,
    /// VMM -> guest: why the call failed, when there is more to say than errno.
    pub message: [u8; MESSAGE_MAX],
}

impl Default for NetMailbox {
    fn default() -> Self {
        Self {
            op: 0,
            handle: 0,
            args: [0; 3],
            buf: 0,
            len: 0,
            result: 0,
            out_len: 0,
            message_len: 0,
            message: [0; MESSAGE_MAX],
        }
    }
}

/// Linux errno values used in `NetMailbox::result` (negated).
pub mod errno {
    pub const EPERM: i64 = 1;
    pub const ENOENT: i64 = 2;
    pub const EINTR: i64 = 4;
    pub const EIO: i64 = 5;
    pub const EBADF: i64 = 9;
    pub const EAGAIN: i64 = 11;
    pub const ENOMEM: i64 = 12;
    pub const EACCES: i64 = 13;
    pub const EINVAL: i64 = 22;
    pub const EMFILE: i64 = 24;
    pub const EPIPE: i64 = 32;
    pub const ENAMETOOLONG: i64 = 36;
    pub const ENOSYS: i64 = 38;
    pub const EPROTO: i64 = 71;
    pub const EMSGSIZE: i64 = 90;
    pub const EPROTOTYPE: i64 = 91;
    pub const EAFNOSUPPORT: i64 = 97;
    pub const EADDRNOTAVAIL: i64 = 99;
    pub const ENETUNREACH: i64 = 101;
    pub const ECONNABORTED: i64 = 103;
    pub const ECONNRESET: i64 = 104;
    pub const ENOBUFS: i64 = 105;
    pub const EISCONN: i64 = 106;
    pub const ENOTCONN: i64 = 107;
    pub const ETIMEDOUT: i64 = 110;
    pub const ECONNREFUSED: i64 = 111;
    pub const EHOSTUNREACH: i64 = 113;
    pub const EALREADY: i64 = 114;
    pub const EINPROGRESS: i64 = 115;
    pub const EDQUOT: i64 = 122;
    /// Not a Linux errno: name resolution found nothing (`socket.gaierror`).
    pub const ENONAME: i64 = 1001;
    /// Not a Linux errno: the VMM stopped waiting early; issue the call again.
    pub const RETRY: i64 = 1002;
}

/// Whether an op's buffer is read by the VMM (`in`) and/or written by it (`out`).
pub const fn buffer_direction(op: u32) -> (bool, bool) {
    match op {
        op::CONNECT | op::SEND | op::START_TLS => (true, false),
        op::RECV | op::GETOPT => (false, true),
        // RESOLVE reads only `args[1]` bytes of its buffer as the name.
        op::POLL | op::RESOLVE => (true, true),
        _ => (false, false),
    }
}
