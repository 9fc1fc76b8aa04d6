//! One VM's sockets: the handle table behind [`thaw_vmm::NetHost`]. Every socket
//! is a real non-blocking host socket (TCP through socket2, SOCKETPAIR a
//! `UnixStream` pair); every wait is a `poll` bounded by the call's deadlines
//! ([`crate::wait`]). Dropping a `Sockets` closes all of them.
//!
//! Limits: handles are never reused within one `Sockets`; at most
//! `max_sockets` are open at once (`-EMFILE`); an invocation moves at most
//! `max_bytes_per_invocation` plaintext bytes in + out (`-EDQUOT`), reset by
//! [`Sockets::begin_invocation`].
//!
//! A connect (`CONNECT`) is handled in steps:
//! 1. Parse the port and the IP literal; refuse a second connect (`EISCONN`,
//!    `EALREADY`), except the same one again after `RETRY`, which keeps waiting.
//! 2. Check the egress policy with the names this VM resolved to that address;
//!    a denial is counted, logged and `-ECONNREFUSED` with a message.
//! 3. Start a non-blocking connect; wait for writability within the deadlines:
//!    the guest's wait ending first is `-EINPROGRESS`, the slice `RETRY`.
//! 4. Read `SO_ERROR`: the connect's own error (`ECONNREFUSED`, `ETIMEDOUT`...).
use crate::config::{ContextInner, NetContext, NetStats};
use crate::policy::canonical;
use crate::tls::{Fail, Tls, TlsRequest};
use crate::wait::{Deadlines, Stop};
use rustix::event::{PollFd, PollFlags};
use rustix::net::{RecvFlags, SendFlags};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use thaw_abi::net::{errno, op, opt, MAX_IO, MSG_PEEK};
use thaw_vmm::{NetCall, NetHost, NetReply};

mod poll;
mod resolve;

/// Most (name, address) pairs one VM remembers from its resolutions.
const MAX_REMEMBERED: usize = 4096;
/// `SOCK_NONBLOCK | SOCK_CLOEXEC`: accepted and ignored in `SOCKET`'s type.
const TYPE_FLAGS: u64 = 0x800 | 0x80000;

type OpResult = Result<NetReply, NetReply>;

fn fail(e: i64, msg: impl Into<String>) -> NetReply {
    NetReply::error(e, msg)
}

fn from_fail((e, msg): Fail) -> NetReply {
    NetReply::error(e, msg)
}

fn io_errno(e: &std::io::Error) -> NetReply {
    NetReply::error(e.raw_os_error().map_or(errno::EIO, i64::from), "")
}

fn rx_errno(e: rustix::io::Errno) -> NetReply {
    NetReply::error(i64::from(e.raw_os_error()), "")
}

fn stop(s: Stop) -> NetReply {
    NetReply {
        result: s.errno(),
        ..NetReply::default()
    }
}

/// A value with output bytes; the result is the full length (the VMM
/// truncates to the guest's buffer, so a larger result says "buffer too small").
fn with_out(out: Vec<u8>) -> NetReply {
    NetReply {
        result: out.len() as i64,
        out,
        message: String::new(),
    }
}

#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    /// Not connected (new, or a connect failed).
    Idle,
    /// A non-blocking connect to this address is under way.
    Connecting(SocketAddr),
    /// Connected (SOCKETPAIR ends are born so).
    Connected,
}

#[derive(Debug)]
struct Socket {
    stream: Stream,
    v6: bool,
    conn: Conn,
    tls: Option<Box<Tls>>,
}

impl Socket {
    fn tcp(&self) -> Result<&TcpStream, NetReply> {
        match &self.stream {
            Stream::Tcp(s) => Ok(s),
            Stream::Unix(_) => Err(fail(errno::EINVAL, "not a TCP socket")),
        }
    }

    /// Finishes a connect that completed since (`Err`: the connect's error).
    fn settle(&mut self) -> Result<(), i64> {
        let Conn::Connecting(_) = self.conn else {
            return Ok(());
        };
        let mut fds = [PollFd::new(&self.stream, PollFlags::OUT)];
        if !matches!(rustix::event::poll(&mut fds, Some(&zero())), Ok(1)) {
            return Ok(());
        }
        self.finish_connect()
    }

    fn finish_connect(&mut self) -> Result<(), i64> {
        let err = match &self.stream {
            Stream::Tcp(s) => s.take_error(),
            Stream::Unix(s) => s.take_error(),
        };
        match err {
            Ok(None) => {
                self.conn = Conn::Connected;
                Ok(())
            }
            Ok(Some(e)) | Err(e) => {
                self.conn = Conn::Idle;
                Err(e.raw_os_error().map_or(errno::EIO, i64::from))
            }
        }
    }
}

fn zero() -> rustix::event::Timespec {
    rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    }
}

/// The sockets of one VM (see the module doc).
#[derive(Debug)]
pub struct Sockets {
    ctx: Arc<ContextInner>,
    table: BTreeMap<u32, Socket>,
    /// The next handle (never reused; `None` when all were used).
    next: Option<u32>,
    /// Bytes moved in this invocation.
    used: u64,
    /// Address -> names that resolved to it during this VM's life.
    resolved: HashMap<IpAddr, Vec<String>>,
    remembered: usize,
}

impl Sockets {
    /// An empty table following `ctx`'s policy and limits.
    pub fn new(ctx: &NetContext) -> Self {
        Self {
            ctx: ctx.inner.clone(),
            table: BTreeMap::new(),
            next: Some(1),
            used: 0,
            resolved: HashMap::new(),
            remembered: 0,
        }
    }

    /// A new invocation starts: its byte budget is full again.
    pub fn begin_invocation(&mut self) {
        self.used = 0;
    }

    /// Sockets open now.
    pub fn open_count(&self) -> usize {
        self.table.len()
    }

    /// Bytes moved in this invocation so far.
    pub fn bytes_used(&self) -> u64 {
        self.used
    }

    fn stats(&self) -> &NetStats {
        &self.ctx.stats
    }

    fn get(&mut self, h: u32) -> Result<&mut Socket, NetReply> {
        self.table
            .get_mut(&h)
            .ok_or_else(|| fail(errno::EBADF, "no such socket"))
    }

    /// Room for `n` more sockets: the next `n` handles.
    fn reserve(&mut self, n: usize) -> Result<Vec<u32>, NetReply> {
        let max = self.ctx.max_sockets;
        if self.table.len() + n > max {
            return Err(fail(
                errno::EMFILE,
                format!("too many open sockets: a function may hold at most {max}"),
            ));
        }
        let mut out = Vec::with_capacity(n);
        let mut next = self.next;
        for _ in 0..n {
            let h = next.ok_or_else(|| fail(errno::EMFILE, "socket handles exhausted"))?;
            out.push(h);
            next = h.checked_add(1);
        }
        self.next = next;
        Ok(out)
    }

    /// How many of `want` bytes this invocation may still move.
    fn allowance(&self, want: usize) -> Result<usize, NetReply> {
        let left = self.ctx.max_bytes.saturating_sub(self.used);
        if want > 0 && left == 0 {
            return Err(fail(
                errno::EDQUOT,
                format!(
                    "this invocation used its network budget of {} bytes",
                    self.ctx.max_bytes
                ),
            ));
        }
        Ok(want.min(usize::try_from(left).unwrap_or(usize::MAX)))
    }

    fn count_out(&mut self, n: usize) {
        self.used = self.used.saturating_add(n as u64);
        NetStats::add(&self.ctx.stats.bytes_out, n as u64);
    }

    fn count_in(&mut self, n: usize) {
        self.used = self.used.saturating_add(n as u64);
        NetStats::add(&self.ctx.stats.bytes_in, n as u64);
    }

    fn socket(&mut self, family: u64, ty: u64) -> OpResult {
        let v6 = match family {
            2 => false,
            10 => true,
            _ => return Err(fail(errno::EAFNOSUPPORT, "only AF_INET and AF_INET6")),
        };
        if ty & !TYPE_FLAGS != 1 {
            return Err(fail(errno::EPROTOTYPE, "only SOCK_STREAM sockets"));
        }
        let h = self.reserve(1)?[0];
        let domain = if v6 {
            socket2::Domain::IPV6
        } else {
            socket2::Domain::IPV4
        };
        let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
            .map_err(|e| io_errno(&e))?;
        s.set_nonblocking(true).map_err(|e| io_errno(&e))?;
        self.table.insert(
            h,
            Socket {
                stream: Stream::Tcp(s.into()),
                v6,
                conn: Conn::Idle,
                tls: None,
            },
        );
        Ok(NetReply::ok(i64::from(h)))
    }

    fn socketpair(&mut self) -> OpResult {
        let hs = self.reserve(2)?;
        let (a, b) = UnixStream::pair().map_err(|e| io_errno(&e))?;
        for (h, s) in hs.iter().zip([a, b]) {
            s.set_nonblocking(true).map_err(|e| io_errno(&e))?;
            let sock = Socket {
                stream: Stream::Unix(s),
                v6: false,
                conn: Conn::Connected,
                tls: None,
            };
            self.table.insert(*h, sock);
        }
        Ok(NetReply::ok(i64::from(hs[0]) | i64::from(hs[1]) << 32))
    }

    fn connect(&mut self, h: u32, input: &[u8], port: u64, d: &Deadlines) -> OpResult {
        // 1. The address, and the state of the socket.
        let port = u16::try_from(port).map_err(|_| fail(errno::EINVAL, "bad port"))?;
        let text = std::str::from_utf8(input).unwrap_or("").trim();
        let text = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        let ip: IpAddr = text.parse().map_err(|_| {
            fail(
                errno::EINVAL,
                "connect needs an IP address (names are resolved first)",
            )
        })?;
        let target = SocketAddr::new(ip, port);
        let sock = self.get(h)?;
        sock.tcp().map_err(|_| fail(errno::EISCONN, ""))?;
        match sock.conn {
            Conn::Connected => return Err(fail(errno::EISCONN, "")),
            Conn::Connecting(a) if a != target => return Err(fail(errno::EALREADY, "")),
            Conn::Connecting(_) => {}
            Conn::Idle => {
                if sock.v6 != ip.is_ipv6() {
                    return Err(fail(errno::EAFNOSUPPORT, "address family mismatch"));
                }
                // 2. The policy.
                self.check_egress(ip, port)?;
                NetStats::add(&self.stats().connects, 1);
                // 3. Start.
                let sock = self.get(h)?;
                let tcp = sock.tcp()?;
                match socket2::SockRef::from(tcp).connect(&target.into()) {
                    Ok(()) => {
                        sock.conn = Conn::Connected;
                        return Ok(NetReply::ok(0));
                    }
                    Err(e) if e.raw_os_error() == Some(errno::EINPROGRESS as i32) => {
                        sock.conn = Conn::Connecting(target);
                    }
                    Err(e) => return Err(io_errno(&e)),
                }
            }
        }
        // 3. Wait, then 4. the outcome.
        let sock = self.get(h)?;
        let mut fds = [PollFd::new(&sock.stream, PollFlags::OUT)];
        match d.poll(&mut fds) {
            Ok(_) => match sock.finish_connect() {
                Ok(()) => Ok(NetReply::ok(0)),
                Err(e) => Err(fail(e, "")),
            },
            Err(Stop::Again) => Err(fail(errno::EINPROGRESS, "")),
            Err(s) => Err(stop(s)),
        }
    }

    fn check_egress(&self, ip: IpAddr, port: u16) -> Result<(), NetReply> {
        let names = self.resolved.get(&canonical(ip));
        let names = names.into_iter().flatten().map(String::as_str);
        if self.ctx.policy.allows_connect(ip, port, names) {
            return Ok(());
        }
        NetStats::add(&self.stats().denied, 1);
        let dest = SocketAddr::new(ip, port);
        tracing::warn!(%dest, "egress denied by the function's policy");
        Err(fail(
            errno::ECONNREFUSED,
            format!("egress to {dest} is not allowed by this function's policy"),
        ))
    }

    fn send(&mut self, h: u32, data: &[u8], d: &Deadlines) -> OpResult {
        let n = self.allowance(data.len())?;
        let data = &data[..n];
        let sock = self.get(h)?;
        if data.is_empty() {
            return Ok(NetReply::ok(0));
        }
        let _ = sock.settle();
        let sent = if let Some(tls) = sock.tls.as_deref_mut() {
            let Stream::Tcp(tcp) = &sock.stream else {
                return Err(fail(errno::EINVAL, "not a TCP socket"));
            };
            tls_ready(tls)?;
            loop {
                let n = tls.write(data);
                tls.flush(tcp).map_err(from_fail)?;
                if n > 0 {
                    break n;
                }
                let mut fds = [PollFd::new(tcp, PollFlags::OUT)];
                d.poll(&mut fds).map_err(stop)?;
            }
        } else {
            loop {
                match rustix::net::send(
                    &sock.stream,
                    data,
                    SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
                ) {
                    Ok(n) => break n,
                    Err(rustix::io::Errno::AGAIN) => {
                        let mut fds = [PollFd::new(&sock.stream, PollFlags::OUT)];
                        d.poll(&mut fds).map_err(stop)?;
                    }
                    Err(rustix::io::Errno::INTR) => return Err(stop(Stop::Retry)),
                    Err(e) => return Err(rx_errno(e)),
                }
            }
        };
        self.count_out(sent);
        Ok(NetReply::ok(sent as i64))
    }

    fn recv(&mut self, h: u32, flags: u64, cap: usize, d: &Deadlines) -> OpResult {
        if flags & !MSG_PEEK != 0 {
            return Err(fail(errno::EINVAL, "unsupported recv flags"));
        }
        let peek = flags & MSG_PEEK != 0;
        let cap = cap.min(MAX_IO as usize);
        if cap == 0 {
            self.get(h)?;
            return Ok(NetReply::ok(0));
        }
        let cap = self.allowance(cap)?;
        let sock = self.get(h)?;
        let _ = sock.settle();
        let out = if let Some(tls) = sock.tls.as_deref_mut() {
            let Stream::Tcp(tcp) = &sock.stream else {
                return Err(fail(errno::EINVAL, "not a TCP socket"));
            };
            tls_ready(tls)?;
            loop {
                if tls.buffered() > 0 {
                    break tls.take(cap, peek);
                }
                tls.flush(tcp).map_err(from_fail)?;
                tls.pump(tcp).map_err(from_fail)?;
                if tls.buffered() > 0 {
                    continue;
                }
                if tls.peer_closed {
                    break Vec::new();
                }
                let mut flags = PollFlags::IN;
                if tls.conn.wants_write() {
                    flags |= PollFlags::OUT;
                }
                let mut fds = [PollFd::new(tcp, flags)];
                d.poll(&mut fds).map_err(stop)?;
            }
        } else {
            let mut buf = vec![0u8; cap];
            let mut rflags = RecvFlags::DONTWAIT;
            if peek {
                rflags |= RecvFlags::PEEK;
            }
            loop {
                match rustix::net::recv(&sock.stream, &mut buf[..], rflags) {
                    Ok((n, _)) => {
                        buf.truncate(n);
                        break buf;
                    }
                    Err(rustix::io::Errno::AGAIN) => {
                        let mut fds = [PollFd::new(&sock.stream, PollFlags::IN)];
                        d.poll(&mut fds).map_err(stop)?;
                    }
                    Err(rustix::io::Errno::INTR) => return Err(stop(Stop::Retry)),
                    Err(e) => return Err(rx_errno(e)),
                }
            }
        };
        if !peek {
            self.count_in(out.len());
        }
        Ok(NetReply {
            result: out.len() as i64,
            out,
            message: String::new(),
        })
    }

    fn shutdown(&mut self, h: u32, how: u64) -> OpResult {
        let how = match how {
            0 => Shutdown::Read,
            1 => Shutdown::Write,
            2 => Shutdown::Both,
            _ => return Err(fail(errno::EINVAL, "bad shutdown direction")),
        };
        let sock = self.get(h)?;
        let r = match &sock.stream {
            Stream::Tcp(tcp) => {
                if let Some(tls) = sock.tls.as_deref_mut() {
                    if how != Shutdown::Read && tls.established && tls.failed.is_none() {
                        tls.conn.send_close_notify();
                        let _ = tls.flush(tcp);
                    }
                }
                tcp.shutdown(how)
            }
            Stream::Unix(u) => u.shutdown(how),
        };
        r.map_err(|e| io_errno(&e))?;
        Ok(NetReply::ok(0))
    }

    fn close(&mut self, h: u32) -> OpResult {
        let mut sock = self
            .table
            .remove(&h)
            .ok_or_else(|| fail(errno::EBADF, "no such socket"))?;
        if let (Some(tls), Stream::Tcp(tcp)) = (sock.tls.as_deref_mut(), &sock.stream) {
            if tls.established && tls.failed.is_none() {
                tls.conn.send_close_notify();
                let _ = tls.flush(tcp);
            }
        }
        Ok(NetReply::ok(0))
    }

    fn start_tls(&mut self, h: u32, input: &[u8]) -> OpResult {
        let req = TlsRequest::parse(input).map_err(from_fail)?;
        let ctx = self.ctx.clone();
        let sock = self.get(h)?;
        let tcp = sock.tcp()?;
        if sock.tls.is_some() {
            return Err(fail(errno::EALREADY, "TLS already started on this socket"));
        }
        let peer = tcp
            .peer_addr()
            .map_err(|_| fail(errno::ENOTCONN, "TLS needs a connected socket"))?;
        let _ = sock.settle();
        if sock.conn != Conn::Connected {
            return Err(fail(errno::ENOTCONN, "TLS needs a connected socket"));
        }
        let tls = Tls::new(&ctx.tls, &req, peer.ip()).map_err(from_fail)?;
        sock.tls = Some(Box::new(tls));
        Ok(NetReply::ok(0))
    }

    /// HANDSHAKE: send what rustls has, read what the server sent, until the
    /// handshake is over, it fails, or a deadline passes.
    fn handshake(&mut self, h: u32, d: &Deadlines) -> OpResult {
        let stats = self.ctx.stats.clone();
        let sock = self.get(h)?;
        let (Some(tls), Stream::Tcp(tcp)) = (sock.tls.as_deref_mut(), &sock.stream) else {
            return Err(fail(errno::EINVAL, "not a TLS socket (START_TLS first)"));
        };
        if let Some(f) = &tls.failed {
            return Err(from_fail(f.clone()));
        }
        let failed = |f: Fail| {
            NetStats::add(&stats.tls_failures, 1);
            from_fail(f)
        };
        loop {
            tls.flush(tcp).map_err(failed)?;
            if !tls.conn.is_handshaking() {
                if !tls.established {
                    tls.established = true;
                    NetStats::add(&stats.tls_handshakes, 1);
                }
                return Ok(NetReply::ok(0));
            }
            tls.pump(tcp).map_err(failed)?;
            if !tls.conn.is_handshaking() {
                continue;
            }
            if tls.peer_closed {
                tls.failed = Some((
                    errno::ECONNRESET,
                    "the server closed the connection during the TLS handshake".into(),
                ));
                return Err(failed(tls.failed.clone().unwrap_or_default()));
            }
            let mut flags = PollFlags::IN;
            if tls.conn.wants_write() {
                flags |= PollFlags::OUT;
            }
            let mut fds = [PollFd::new(tcp, flags)];
            d.poll(&mut fds).map_err(stop)?;
        }
    }

    fn getopt(&mut self, h: u32, which: u64) -> OpResult {
        let sock = self.get(h)?;
        let addr_text = |a: std::io::Result<SocketAddr>| {
            a.map(|a| with_out(format!("{} {}", a.ip(), a.port()).into_bytes()))
                .map_err(|e| io_errno(&e))
        };
        match which {
            opt::ERROR => {
                let e = match sock.conn {
                    Conn::Connecting(_) => sock.settle().err().unwrap_or(0),
                    _ => match &sock.stream {
                        Stream::Tcp(s) => s.take_error(),
                        Stream::Unix(s) => s.take_error(),
                    }
                    .map_err(|e| io_errno(&e))?
                    .and_then(|e| e.raw_os_error())
                    .map_or(0, i64::from),
                };
                Ok(NetReply::ok(e))
            }
            opt::PEER => match &sock.stream {
                Stream::Tcp(s) => addr_text(s.peer_addr()),
                Stream::Unix(_) => Ok(with_out(Vec::new())),
            },
            opt::LOCAL => match &sock.stream {
                Stream::Tcp(s) => addr_text(s.local_addr()),
                Stream::Unix(_) => Ok(with_out(Vec::new())),
            },
            opt::TLS_ALPN | opt::TLS_PEER_CERT | opt::TLS_INFO => {
                let tls = sock
                    .tls
                    .as_deref()
                    .ok_or_else(|| fail(errno::EINVAL, "not a TLS socket"))?;
                if !tls.established {
                    return Err(fail(errno::ENOTCONN, "TLS handshake not complete"));
                }
                Ok(with_out(match which {
                    opt::TLS_ALPN => tls.conn.alpn_protocol().unwrap_or_default().to_vec(),
                    opt::TLS_PEER_CERT => tls
                        .conn
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.as_ref().to_vec())
                        .unwrap_or_default(),
                    _ => tls.info().into_bytes(),
                }))
            }
            opt::NODELAY => {
                let v = sock.tcp()?.nodelay().map_err(|e| io_errno(&e))?;
                Ok(NetReply::ok(i64::from(v)))
            }
            opt::KEEPALIVE => {
                let v = socket2::SockRef::from(sock.tcp()?)
                    .keepalive()
                    .map_err(|e| io_errno(&e))?;
                Ok(NetReply::ok(i64::from(v)))
            }
            _ => Err(fail(errno::EINVAL, "unknown socket option")),
        }
    }

    fn setopt(&mut self, h: u32, which: u64, value: u64) -> OpResult {
        let sock = self.get(h)?;
        let on = value != 0;
        let r = match which {
            opt::NODELAY => sock.tcp()?.set_nodelay(on),
            opt::KEEPALIVE => socket2::SockRef::from(sock.tcp()?).set_keepalive(on),
            _ => return Err(fail(errno::EINVAL, "unknown socket option")),
        };
        r.map_err(|e| io_errno(&e))?;
        Ok(NetReply::ok(0))
    }
}

/// Data may flow on a TLS stream: the handshake is done and nothing failed.
fn tls_ready(tls: &Tls) -> Result<(), NetReply> {
    if let Some(f) = &tls.failed {
        return Err(from_fail(f.clone()));
    }
    if !tls.established {
        return Err(fail(errno::ENOTCONN, "TLS handshake not complete"));
    }
    Ok(())
}

impl NetHost for Sockets {
    fn call(&mut self, call: NetCall<'_>) -> NetReply {
        let d = Deadlines {
            wait_until: call.wait_until,
            yield_at: call.yield_at,
        };
        let (h, a) = (call.handle, call.args);
        let r = match call.op {
            op::SOCKET => self.socket(a[0], a[1]),
            op::SOCKETPAIR => self.socketpair(),
            op::CONNECT => self.connect(h, call.input, a[0], &d),
            op::SEND => self.send(h, call.input, &d),
            op::RECV => self.recv(h, a[0], call.out_cap, &d),
            op::SHUTDOWN => self.shutdown(h, a[0]),
            op::CLOSE => self.close(h),
            op::POLL => self.poll(call.input, &d),
            // The name is the first `args[1]` bytes (0: the whole buffer up to a
            // NUL); the rest is room for the answers.
            op::RESOLVE => {
                let name = match usize::try_from(a[1]) {
                    Ok(0) | Err(_) => call.input.split(|b| *b == 0).next().unwrap_or(&[]),
                    Ok(n) => &call.input[..n.min(call.input.len())],
                };
                self.resolve(name, a[0], call.out_cap)
            }
            op::START_TLS => self.start_tls(h, call.input),
            op::HANDSHAKE => self.handshake(h, &d),
            op::GETOPT => self.getopt(h, a[0]),
            op::SETOPT => self.setopt(h, a[0], a[1]),
            _ => Err(fail(errno::ENOSYS, "unknown network op")),
        };
        r.unwrap_or_else(|e| e)
    }

    fn begin_invocation(&mut self) {
        Sockets::begin_invocation(self);
    }
}
