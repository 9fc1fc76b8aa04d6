//! Dropping a `Sockets` closes every descriptor it opened (one test in its own
//! process, so /proc/self/fd counts only ours).
mod common;
use common::*;
use thaw_abi::net::op;
use thaw_net::Sockets;

#[test]
fn dropping_sockets_closes_every_descriptor() {
    let pki = pki();
    let tls = tls_server(&pki, 4);
    let echo = echo_server(4);
    let (ctx, _) = context(
        &[
            format!("127.0.0.1:{}", tls.port()),
            format!("127.0.0.1:{}", echo.port()),
        ],
        &[],
    );
    // Let the servers' threads settle before counting.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let before = open_fds();
    for _ in 0..3 {
        let mut s = Sockets::new(&ctx);
        for _ in 0..4 {
            call(&mut s, op::SOCKETPAIR, 0, [0; 3], b"", 0);
        }
        let h = socket(&mut s);
        assert_eq!(connect(&mut s, h, echo).result, 0);
        send_all(&mut s, h, b"abc");
        assert_eq!(recv_exact(&mut s, h, 3), b"abc");
        let h = socket(&mut s);
        assert_eq!(connect(&mut s, h, tls).result, 0);
        let req = format!("server_name localhost\nca\n{}", pki.ca_pem);
        assert_eq!(
            call(&mut s, op::START_TLS, h, [0; 3], req.as_bytes(), 0).result,
            0
        );
        assert_eq!(
            call(&mut s, op::HANDSHAKE, h, [0, 0, WAIT], b"", 0).result,
            0
        );
        let _unconnected = socket(&mut s);
        assert!(open_fds() > before);
        drop(s);
    }
    // Server-side threads close their ends asynchronously; ours are gone at once.
    let after = open_fds();
    assert!(after <= before + 8, "before {before}, after {after}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(open_fds(), before, "descriptors leaked");
}
