//! TLS terminated on the host: a rustls loopback server with a test CA made by
//! rcgen; the client is a `Sockets` driven through `NetHost::call`.
mod common;
use common::*;
use std::net::SocketAddr;
use thaw_abi::net::{errno, op, opt, PollEntry, POLLIN};
use thaw_net::Sockets;

/// Connects, starts TLS with `request` and drives the handshake.
fn handshake(s: &mut Sockets, server: SocketAddr, request: &str) -> (u32, thaw_vmm::NetReply) {
    let h = socket(s);
    assert_eq!(connect(s, h, server).result, 0);
    let r = call(s, op::START_TLS, h, [0; 3], request.as_bytes(), 0);
    assert_eq!(r.result, 0, "{r:?}");
    (h, call(s, op::HANDSHAKE, h, [0, 0, WAIT], b"", 0))
}

fn setup(
    conns: usize,
) -> (
    TestPki,
    SocketAddr,
    thaw_net::NetContext,
    std::sync::Arc<thaw_net::NetStats>,
) {
    let pki = pki();
    let server = tls_server(&pki, conns);
    let (ctx, stats) = context(&[format!("127.0.0.1:{}", server.port())], &[]);
    (pki, server, ctx, stats)
}

#[test]
fn trusted_with_the_ca_in_the_request() {
    let (pki, server, ctx, stats) = setup(1);
    let mut s = Sockets::new(&ctx);
    let req = format!(
        "server_name localhost\nalpn h2,http/1.1\nverify 1\ncheck_hostname 1\nca\n{}",
        pki.ca_pem
    );
    let (h, r) = handshake(&mut s, server, &req);
    assert_eq!(r.result, 0, "{r:?}");
    let alpn = call(&mut s, op::GETOPT, h, [opt::TLS_ALPN, 0, 0], b"", 64);
    assert_eq!(alpn.out, b"h2");
    let info = call(&mut s, op::GETOPT, h, [opt::TLS_INFO, 0, 0], b"", 128);
    let info = String::from_utf8(info.out).unwrap();
    assert!(info.starts_with("TLSv1.3 TLS13_"), "{info}");
    let cert = call(
        &mut s,
        op::GETOPT,
        h,
        [opt::TLS_PEER_CERT, 0, 0],
        b"",
        1 << 16,
    );
    assert_eq!(cert.out, pki.leaf.as_ref());
    assert_eq!(cert.result as usize, cert.out.len());
    // Plaintext both ways, POLLIN only when plaintext is there.
    send_all(&mut s, h, b"GET / HTTP/1.1\r\n\r\n");
    let (r, out) = poll(
        &mut s,
        &[PollEntry {
            handle: h,
            events: POLLIN,
            revents: 0,
        }],
        WAIT,
    );
    assert_eq!((r.result, out[0].revents & POLLIN), (1, POLLIN), "{r:?}");
    let peek = call(
        &mut s,
        op::RECV,
        h,
        [thaw_abi::net::MSG_PEEK, 0, WAIT],
        b"",
        3,
    );
    assert_eq!(peek.out, b"GET");
    assert_eq!(recv_exact(&mut s, h, 18), b"GET / HTTP/1.1\r\n\r\n");
    let big = vec![7u8; 300_000];
    send_all(&mut s, h, &big);
    assert_eq!(recv_exact(&mut s, h, big.len()), big);
    let st = stats.snapshot();
    assert_eq!((st.tls_handshakes, st.tls_failures), (1, 0));
    assert_eq!(st.bytes_out, 18 + 300_000);
    assert_eq!(call(&mut s, op::SHUTDOWN, h, [2, 0, 0], b"", 0).result, 0);
    assert_eq!(call(&mut s, op::CLOSE, h, [0; 3], b"", 0).result, 0);
}

#[test]
fn untrusted_without_the_ca_is_eproto_with_the_reason() {
    let (_pki, server, ctx, stats) = setup(1);
    let mut s = Sockets::new(&ctx);
    let (h, r) = handshake(&mut s, server, "server_name localhost\n");
    assert_eq!(r.result, -errno::EPROTO);
    assert_eq!(
        r.message,
        "certificate verify failed: invalid peer certificate: UnknownIssuer"
    );
    // The stream stays failed.
    assert_eq!(
        call(&mut s, op::SEND, h, [0, 0, WAIT], b"x", 0).result,
        -errno::EPROTO
    );
    assert_eq!(
        call(&mut s, op::HANDSHAKE, h, [0, 0, WAIT], b"", 0).result,
        -errno::EPROTO
    );
    assert_eq!(stats.snapshot().tls_failures, 1);
}

#[test]
fn wrong_hostname_is_rejected_unless_check_hostname_is_off() {
    let (pki, server, ctx, _) = setup(3);
    let mut s = Sockets::new(&ctx);
    let (_, r) = handshake(
        &mut s,
        server,
        &format!("server_name other.test\nca\n{}", pki.ca_pem),
    );
    assert_eq!(r.result, -errno::EPROTO);
    assert!(
        r.message.starts_with("certificate verify failed: "),
        "{}",
        r.message
    );
    assert!(
        r.message.contains("not valid for name \"other.test\""),
        "{}",
        r.message
    );
    let (h, r) = handshake(
        &mut s,
        server,
        &format!(
            "server_name other.test\ncheck_hostname 0\nca\n{}",
            pki.ca_pem
        ),
    );
    assert_eq!(r.result, 0, "{r:?}");
    send_all(&mut s, h, b"ping");
    assert_eq!(recv_exact(&mut s, h, 4), b"ping");
    // The IP address is a name too (SAN 127.0.0.1).
    let (_, r) = handshake(
        &mut s,
        server,
        &format!("server_name 127.0.0.1\nca\n{}", pki.ca_pem),
    );
    assert_eq!(r.result, 0, "{r:?}");
}

#[test]
fn verify_off_accepts_any_certificate() {
    let (_pki, server, ctx, _) = setup(2);
    let mut s = Sockets::new(&ctx);
    let (h, r) = handshake(&mut s, server, "server_name whatever.test\nverify 0\n");
    assert_eq!(r.result, 0, "{r:?}");
    send_all(&mut s, h, b"ok");
    assert_eq!(recv_exact(&mut s, h, 2), b"ok");
    let alpn = call(&mut s, op::GETOPT, h, [opt::TLS_ALPN, 0, 0], b"", 64);
    assert_eq!(alpn.result, 0, "no ALPN asked, none chosen");
    // No server name at all: the peer's address is used (no SNI).
    let (_, r) = handshake(&mut s, server, "verify 0\n");
    assert_eq!(r.result, 0, "{r:?}");
}

#[test]
fn tls_misuse_is_an_error() {
    let (pki, server, ctx, _) = setup(1);
    let mut s = Sockets::new(&ctx);
    let h = socket(&mut s);
    // Not connected yet.
    assert_eq!(
        call(&mut s, op::START_TLS, h, [0; 3], b"verify 0\n", 0).result,
        -errno::ENOTCONN
    );
    assert_eq!(
        call(&mut s, op::HANDSHAKE, h, [0, 0, 0], b"", 0).result,
        -errno::EINVAL
    );
    assert_eq!(connect(&mut s, h, server).result, 0);
    for bad in [
        "check_hostname 1\n",
        "verify yes\n",
        "server_name x\nca\n-----BEGIN CERTIFICATE-----\n@@\n-----END CERTIFICATE-----\n",
    ] {
        let r = call(&mut s, op::START_TLS, h, [0; 3], bad.as_bytes(), 0);
        assert_eq!(r.result, -errno::EINVAL, "{bad}");
        assert!(!r.message.is_empty());
    }
    let req = format!("server_name localhost\nca\n{}", pki.ca_pem);
    assert_eq!(
        call(&mut s, op::START_TLS, h, [0; 3], req.as_bytes(), 0).result,
        0
    );
    assert_eq!(
        call(&mut s, op::START_TLS, h, [0; 3], req.as_bytes(), 0).result,
        -errno::EALREADY
    );
    // Data before the handshake.
    assert_eq!(
        call(&mut s, op::SEND, h, [0, 0, 0], b"x", 0).result,
        -errno::ENOTCONN
    );
    assert_eq!(
        call(&mut s, op::GETOPT, h, [opt::TLS_INFO, 0, 0], b"", 64).result,
        -errno::ENOTCONN
    );
    // A zero wait: EAGAIN until the server answers, then done.
    let mut r = call(&mut s, op::HANDSHAKE, h, [0, 0, 0], b"", 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while r.result == -errno::EAGAIN && std::time::Instant::now() < deadline {
        r = call(&mut s, op::HANDSHAKE, h, [0, 0, 10], b"", 0);
    }
    assert_eq!(r.result, 0, "{r:?}");
}
