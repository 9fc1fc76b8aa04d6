//! Sockets: reads and writes on socket fds (the host moves the bytes in place,
//! see `net`), the `/run/thaw/net` control file that creates and configures
//! them, and the `sock_*` calls (unsupported: the module's sockets go through
//! those files).
use super::{Ctx, Handle};
use crate::net;
use alloc::vec::Vec;
use thaw_guest_wasi::{errno, Mem};
use wasmtime::Linker;

pub(super) fn add(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    register!(linker, sock_accept, sock_recv, sock_send, sock_shutdown);
    Ok(())
}

fn sock_accept(_: i32, _: i32, _: i32) -> i32 {
    errno::NOTSUP
}

fn sock_recv(_: i32, _: i32, _: i32, _: i32, _: i32, _: i32) -> i32 {
    errno::NOTSUP
}

fn sock_send(_: i32, _: i32, _: i32, _: i32, _: i32) -> i32 {
    errno::NOTSUP
}

fn sock_shutdown(_: i32, _: i32) -> i32 {
    errno::NOTSUP
}

/// Receives into the first non-empty iovec of `iov`; writes the byte count.
pub(super) fn read_socket(
    m: &mut Mem<'_>,
    sock: &net::Sock,
    iov: &[(i32, usize)],
    out: i32,
) -> Result<(), i32> {
    let Some(&(p, len)) = iov.iter().find(|(_, len)| *len > 0) else {
        return m.put_u32(out, 0);
    };
    let addr = m.addr(p, len)?;
    let got = net::recv(sock, addr, len)?;
    m.put_u32(out, got as u32)
}

/// Sends the iovecs to a socket (stops at the first short send).
pub(super) fn write_socket(
    m: &mut Mem<'_>,
    sock: &net::Sock,
    iovs: i32,
    n: i32,
    out: i32,
) -> Result<(), i32> {
    let mut total = 0usize;
    for (p, len) in m.iovecs(iovs, n)? {
        if len == 0 {
            continue;
        }
        let addr = m.addr(p, len)?;
        match net::send(sock, addr, len) {
            Ok(k) => {
                total += k;
                if k < len {
                    break;
                }
            }
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        }
    }
    m.put_u32(out, total as u32)
}

/// A write to `/run/thaw/net`: serves the request the iovecs hold and keeps
/// the reply for the next read of `fd`.
pub(super) fn write_control(
    m: &mut Mem<'_>,
    ctx: &mut Ctx,
    fd: i32,
    iovs: i32,
    n: i32,
    out: i32,
) -> Result<(), i32> {
    let request = m.gather(iovs, n)?;
    let reply = control(ctx, &request);
    if let Handle::NetControl(r) = ctx.handle(fd)? {
        *r = reply;
    }
    m.put_u32(out, request.len() as u32)
}

/// Serves one request written to `/run/thaw/net` (see `net`); returns the reply.
fn control(ctx: &mut Ctx, bytes: &[u8]) -> Vec<u8> {
    use thaw_abi::net::op;
    let Some(req) = net::Request::parse(bytes) else {
        return net::reply(-i64::from(errno::INVAL), b"short network request", &[]);
    };
    match req.op {
        op::SOCKET | op::SOCKETPAIR => create(ctx, &req),
        op::RESOLVE => net::resolve(&req),
        net::CTL_SETTIMEOUT => match ctx.socket(req.token) {
            Ok(sock) => {
                sock.timeout_ns = match req.args[0] {
                    u64::MAX => None,
                    us => Some(us.saturating_mul(1000)),
                };
                net::reply(0, &[], &[])
            }
            Err(e) => net::reply(-i64::from(e), &[], &[]),
        },
        code => match (net::passthrough(code, &req.args), ctx.socket(req.token)) {
            (Some(cap), Ok(sock)) => {
                let sock = *sock;
                net::run(&sock, &req, cap)
            }
            (Some(_), Err(e)) => net::reply(-i64::from(e), &[], &[]),
            (None, _) => net::reply(-i64::from(errno::NOSYS), b"unknown network request", &[]),
        },
    }
}

/// SOCKET binds a socket fd to a new host socket; SOCKETPAIR binds the sockets
/// named by the token and a0 to the two ends of a pair.
fn create(ctx: &mut Ctx, req: &net::Request<'_>) -> Vec<u8> {
    let second = (req.op == thaw_abi::net::op::SOCKETPAIR).then_some(req.args[0]);
    for token in core::iter::once(req.token).chain(second) {
        match ctx.socket(token) {
            Ok(s) if s.host.is_none() => {}
            Ok(_) => return net::reply(-i64::from(errno::ISCONN), &[], &[]),
            Err(e) => return net::reply(-i64::from(e), &[], &[]),
        }
    }
    if second == Some(req.token) {
        return net::reply(-i64::from(errno::INVAL), &[], &[]);
    }
    let tokens = (req.token, second.unwrap_or(0));
    match net::create(req.op, req.args, tokens) {
        Ok((a, b)) => {
            if let Ok(s) = ctx.socket(req.token) {
                *s = a;
            }
            if let (Some(token), Some(b)) = (second, b) {
                if let Ok(s) = ctx.socket(token) {
                    *s = b;
                }
            }
            net::reply(0, &[], &[])
        }
        Err((r, msg)) => net::reply(r, &msg, &[]),
    }
}
