//! Plain TCP, socketpairs, waits and limits, driven through `NetHost::call`
//! against loopback servers these tests start.
mod common;
use common::*;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use thaw_abi::net::{errno, op, opt, PollEntry, MSG_PEEK, POLLIN, POLLOUT};
use thaw_net::{NetConfig, Sockets};

fn allow(addr: SocketAddr) -> Vec<String> {
    vec![format!("{}:{}", addr.ip(), addr.port())]
}

#[test]
fn echo_round_trip_with_peek_and_addresses() {
    let server = echo_server(1);
    let (ctx, stats) = context(&allow(server), &[]);
    let mut s = Sockets::new(&ctx);
    let h = socket(&mut s);
    assert_eq!(connect(&mut s, h, server).result, 0);
    assert_eq!(
        call(&mut s, op::SETOPT, h, [opt::NODELAY, 1, 0], b"", 0).result,
        0
    );
    assert_eq!(
        call(&mut s, op::GETOPT, h, [opt::NODELAY, 0, 0], b"", 0).result,
        1
    );
    assert_eq!(
        call(&mut s, op::SETOPT, h, [opt::KEEPALIVE, 1, 0], b"", 0).result,
        0
    );
    send_all(&mut s, h, b"hello thaw");
    let r = call(&mut s, op::RECV, h, [MSG_PEEK, 0, WAIT], b"", 5);
    assert_eq!(r.out, b"hello");
    assert_eq!(recv_exact(&mut s, h, 10), b"hello thaw");
    let peer = call(&mut s, op::GETOPT, h, [opt::PEER, 0, 0], b"", 64);
    assert_eq!(peer.out, format!("127.0.0.1 {}", server.port()).as_bytes());
    let local = call(&mut s, op::GETOPT, h, [opt::LOCAL, 0, 0], b"", 64);
    assert!(local.out.starts_with(b"127.0.0.1 "), "{local:?}");
    assert_eq!(
        call(&mut s, op::GETOPT, h, [opt::ERROR, 0, 0], b"", 0).result,
        0
    );
    // Second connect: EISCONN.
    assert_eq!(connect(&mut s, h, server).result, -errno::EISCONN);
    assert_eq!(call(&mut s, op::SHUTDOWN, h, [1, 0, 0], b"", 0).result, 0);
    let r = call(&mut s, op::RECV, h, [0, 0, WAIT], b"", 100);
    assert_eq!(
        r.result, 0,
        "end of stream after the echo server sees our FIN"
    );
    assert_eq!(call(&mut s, op::CLOSE, h, [0; 3], b"", 0).result, 0);
    assert_eq!(
        call(&mut s, op::CLOSE, h, [0; 3], b"", 0).result,
        -errno::EBADF
    );
    let st = stats.snapshot();
    assert_eq!((st.connects, st.denied), (1, 0));
    assert_eq!((st.bytes_out, st.bytes_in), (10, 10));
}

#[test]
fn refused_connect_is_econnrefused() {
    let dead = closed_port();
    let (ctx, _) = context(&allow(dead), &[]);
    let mut s = Sockets::new(&ctx);
    let h = socket(&mut s);
    assert_eq!(connect(&mut s, h, dead).result, -errno::ECONNREFUSED);
    // Linux answers a second attempt on the same socket with ECONNABORTED.
    assert!(connect(&mut s, h, dead).result < 0);
}

#[test]
fn denied_connects_are_counted_and_say_why() {
    let server = echo_server(1);
    let (ctx, stats) = context(&["127.0.0.1:1".to_string()], &[]);
    let mut s = Sockets::new(&ctx);
    let h = socket(&mut s);
    let r = connect(&mut s, h, server);
    assert_eq!(r.result, -errno::ECONNREFUSED);
    assert_eq!(
        r.message,
        format!("egress to {server} is not allowed by this function's policy")
    );
    let h6 = call(&mut s, op::SOCKET, 0, [10, 1, 0], b"", 0).result as u32;
    let r = call(&mut s, op::CONNECT, h6, [80, 0, WAIT], b"::1", 0);
    assert_eq!(r.result, -errno::ECONNREFUSED);
    assert!(r.message.contains("[::1]:80"), "{}", r.message);
    // Mapped IPv6 is checked as IPv4.
    let r = call(
        &mut s,
        op::CONNECT,
        h6,
        [server.port().into(), 0, WAIT],
        b"::ffff:127.0.0.1",
        0,
    );
    assert_eq!(r.result, -errno::ECONNREFUSED);
    let st = stats.snapshot();
    assert_eq!((st.connects, st.denied), (0, 3));
    assert_eq!(stats.denied.load(Ordering::Relaxed), 3);
}

#[test]
fn names_resolve_on_the_host_and_allow_their_addresses() {
    let server = echo_server(1);
    let port = server.port();
    let (ctx, stats) = context(
        &[
            format!("localhost:{port}"),
            format!("*.example.test:{port}"),
        ],
        &[
            ("localhost", &["127.0.0.1", "::1"]),
            ("rebind.example.test", &["127.0.0.1"]),
        ],
    );
    let mut s = Sockets::new(&ctx);
    // A wildcard name pointing at loopback: resolves, but the connect is refused.
    let r = call(
        &mut s,
        op::RESOLVE,
        0,
        [0, 0, 0],
        b"rebind.example.test",
        256,
    );
    assert_eq!((r.result, r.out.as_slice()), (1, &b"127.0.0.1\n"[..]));
    let h = socket(&mut s);
    assert_eq!(connect(&mut s, h, server).result, -errno::ECONNREFUSED);
    // Names matching no pattern are not even resolved.
    let r = call(&mut s, op::RESOLVE, 0, [0, 0, 0], b"elsewhere.test", 256);
    assert_eq!(r.result, -errno::ENONAME);
    assert!(r.message.contains("not allowed"), "{}", r.message);
    // The exact name is trusted: family filter, then the connect works.
    let r = call(&mut s, op::RESOLVE, 0, [2, 0, 0], b"LocalHost.", 256);
    assert_eq!(r.out, b"127.0.0.1\n");
    let r = call(&mut s, op::RESOLVE, 0, [10, 0, 0], b"localhost", 256);
    assert_eq!(r.out, b"::1\n");
    let r = call(&mut s, op::RESOLVE, 0, [0, 0, 0], b"localhost", 256);
    assert_eq!(r.result, 2);
    assert_eq!(connect(&mut s, h, server).result, 0);
    // ...but only on the pattern's port.
    let h2 = socket(&mut s);
    let other = closed_port();
    assert_eq!(connect(&mut s, h2, other).result, -errno::ECONNREFUSED);
    // Literals answer themselves; bad input is an error, never a panic.
    let r = call(&mut s, op::RESOLVE, 0, [0, 0, 0], b"[::1]", 256);
    assert_eq!(r.out, b"::1\n");
    assert_eq!(
        call(&mut s, op::RESOLVE, 0, [7, 0, 0], b"localhost", 256).result,
        -errno::EAFNOSUPPORT
    );
    assert_eq!(
        call(&mut s, op::RESOLVE, 0, [0, 0, 0], b"", 256).result,
        -errno::EINVAL
    );
    assert_eq!(
        call(&mut s, op::RESOLVE, 0, [0, 0, 0], b"localhost", 3).result,
        -errno::ENOBUFS
    );
    let st = stats.snapshot();
    assert_eq!((st.resolves_denied, st.denied, st.connects), (1, 2, 1));
    // A fresh Sockets (a restored clone) remembers nothing.
    let mut clone = Sockets::new(&ctx);
    let h = socket(&mut clone);
    assert_eq!(connect(&mut clone, h, server).result, -errno::ECONNREFUSED);
}

#[test]
fn recv_waits_end_in_eagain_and_slices_in_retry() {
    let (addr, listener) = silent_server();
    let (ctx, _) = context(&allow(addr), &[]);
    let mut s = Sockets::new(&ctx);
    let h = socket(&mut s);
    assert_eq!(connect(&mut s, h, addr).result, 0);
    let _accepted = listener.accept().unwrap();
    // Non-blocking (wait 0): at once.
    let t = Instant::now();
    assert_eq!(
        call(&mut s, op::RECV, h, [0, 0, 0], b"", 10).result,
        -errno::EAGAIN
    );
    assert!(t.elapsed() < Duration::from_millis(50));
    // A 100 ms wait.
    let t = Instant::now();
    assert_eq!(
        call(&mut s, op::RECV, h, [0, 0, 100], b"", 10).result,
        -errno::EAGAIN
    );
    let e = t.elapsed();
    assert!(
        e >= Duration::from_millis(99) && e < Duration::from_secs(2),
        "{e:?}"
    );
    // The slice ends first: RETRY.
    let t = Instant::now();
    let soon = Instant::now() + Duration::from_millis(50);
    let r = call_until(&mut s, op::RECV, h, [0, 0, u64::MAX], b"", 10, soon);
    assert_eq!(r.result, -errno::RETRY);
    assert!(t.elapsed() < Duration::from_secs(2));
    // POLL: nothing readable within the wait is EAGAIN; writable is ready.
    let (r, _) = poll(
        &mut s,
        &[PollEntry {
            handle: h,
            events: POLLIN,
            revents: 0,
        }],
        50,
    );
    assert_eq!(r.result, -errno::EAGAIN);
    let (r, out) = poll(
        &mut s,
        &[
            PollEntry {
                handle: h,
                events: POLLIN | POLLOUT,
                revents: 0,
            },
            PollEntry {
                handle: 999,
                events: POLLIN,
                revents: 0,
            },
        ],
        1000,
    );
    assert_eq!(r.result, 2, "{r:?}");
    assert_eq!(out[0].revents, POLLOUT);
    assert_ne!(
        out[1].revents, 0,
        "an unknown handle is reported, not waited on"
    );
}

#[test]
fn a_connect_cut_short_by_the_slice_completes_when_issued_again() {
    let server = echo_server(1);
    let (ctx, _) = context(&allow(server), &[]);
    let mut s = Sockets::new(&ctx);
    let h = socket(&mut s);
    let args = [server.port().into(), 0, u64::MAX];
    let r = call_until(
        &mut s,
        op::CONNECT,
        h,
        args,
        b"127.0.0.1",
        0,
        Instant::now(),
    );
    if r.result == -errno::RETRY {
        // The same call again keeps waiting instead of failing with EALREADY.
        assert_eq!(connect(&mut s, h, server).result, 0);
    } else {
        assert_eq!(r.result, 0, "{r:?}");
    }
    let other = closed_port();
    assert!(connect(&mut s, h, other).result < 0);
}

#[test]
fn socketpair_carries_bytes_both_ways() {
    let (ctx, _) = context(&[], &[]);
    let mut s = Sockets::new(&ctx);
    let r = call(&mut s, op::SOCKETPAIR, 0, [0; 3], b"", 0);
    assert!(r.result > 0);
    let (a, b) = (r.result as u32, (r.result >> 32) as u32);
    assert_ne!(a, b);
    send_all(&mut s, a, b"x");
    let (r, out) = poll(
        &mut s,
        &[PollEntry {
            handle: b,
            events: POLLIN,
            revents: 0,
        }],
        1000,
    );
    assert_eq!((r.result, out[0].revents), (1, POLLIN));
    assert_eq!(recv_exact(&mut s, b, 1), b"x");
    send_all(&mut s, b, b"yz");
    assert_eq!(recv_exact(&mut s, a, 2), b"yz");
    // No policy applies to the local pair, and TCP options are refused.
    assert_eq!(
        call(&mut s, op::SETOPT, a, [opt::NODELAY, 1, 0], b"", 0).result,
        -errno::EINVAL
    );
    assert_eq!(call(&mut s, op::CLOSE, a, [0; 3], b"", 0).result, 0);
    assert_eq!(call(&mut s, op::RECV, b, [0, 0, WAIT], b"", 10).result, 0);
}

#[test]
fn socket_cap_is_emfile_and_handles_are_never_reused() {
    let (ctx, _) = context_with(
        NetConfig {
            max_sockets: 4,
            ..NetConfig::default()
        },
        &[],
    );
    let mut s = Sockets::new(&ctx);
    let hs: Vec<u32> = (0..4).map(|_| socket(&mut s)).collect();
    let r = call(&mut s, op::SOCKET, 0, [2, 1, 0], b"", 0);
    assert_eq!(r.result, -errno::EMFILE);
    assert!(r.message.contains("at most 4"), "{}", r.message);
    assert_eq!(call(&mut s, op::CLOSE, hs[0], [0; 3], b"", 0).result, 0);
    assert_eq!(
        call(&mut s, op::SOCKETPAIR, 0, [0; 3], b"", 0).result,
        -errno::EMFILE
    );
    let h = socket(&mut s);
    assert!(!hs.contains(&h), "handle {h} reused");
    assert_eq!(s.open_count(), 4);
    assert_eq!(
        call(&mut s, op::SOCKET, 0, [3, 1, 0], b"", 0).result,
        -errno::EAFNOSUPPORT
    );
    assert_eq!(
        call(&mut s, op::SOCKET, 0, [2, 2, 0], b"", 0).result,
        -errno::EPROTOTYPE
    );
}

#[test]
fn byte_budget_is_edquot_until_the_next_invocation() {
    let server = echo_server(1);
    let (ctx, _) = context_with(
        NetConfig {
            allow: allow(server),
            max_bytes_per_invocation: 8,
            ..NetConfig::default()
        },
        &[],
    );
    let mut s = Sockets::new(&ctx);
    let h = socket(&mut s);
    assert_eq!(connect(&mut s, h, server).result, 0);
    let r = call(&mut s, op::SEND, h, [0, 0, WAIT], b"0123456789", 0);
    assert_eq!(r.result, 8, "capped at what is left");
    let r = call(&mut s, op::SEND, h, [0, 0, WAIT], b"x", 0);
    assert_eq!(r.result, -errno::EDQUOT);
    assert!(r.message.contains("8 bytes"), "{}", r.message);
    assert_eq!(
        call(&mut s, op::RECV, h, [0, 0, WAIT], b"", 8).result,
        -errno::EDQUOT
    );
    s.begin_invocation();
    assert_eq!(recv_exact(&mut s, h, 8), b"01234567");
    assert_eq!(s.bytes_used(), 8);
}
