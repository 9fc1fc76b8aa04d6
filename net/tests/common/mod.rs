//! Helpers for driving a `Sockets` through `NetHost::call` against loopback
//! servers the tests start themselves (127.0.0.1 only, bounded in time).
#![allow(dead_code)]
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use thaw_abi::net::{op, PollEntry};
use thaw_net::{NetConfig, NetContext, NetStats, Resolver, Sockets};
use thaw_vmm::{NetCall, NetHost, NetReply};

/// Answers from a fixed table (tests never use the system resolver).
#[derive(Debug, Default)]
pub struct FakeResolver(pub HashMap<String, Vec<IpAddr>>);

impl Resolver for FakeResolver {
    fn resolve(&self, name: &str) -> std::io::Result<Vec<IpAddr>> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such name"))
    }
}

pub fn context(allow: &[String], names: &[(&str, &[&str])]) -> (NetContext, Arc<NetStats>) {
    context_with(
        NetConfig {
            allow: allow.to_vec(),
            ..NetConfig::default()
        },
        names,
    )
}

pub fn context_with(
    mut config: NetConfig,
    names: &[(&str, &[&str])],
) -> (NetContext, Arc<NetStats>) {
    let stats = Arc::new(NetStats::default());
    config.stats = stats.clone();
    let table = names
        .iter()
        .map(|(n, ips)| {
            (
                n.to_string(),
                ips.iter().map(|i| i.parse().unwrap()).collect(),
            )
        })
        .collect();
    let ctx = NetContext::with_resolver(&config, Arc::new(FakeResolver(table))).unwrap();
    (ctx, stats)
}

/// One call; `wait_ms` `None` waits without limit.
pub fn call(
    s: &mut Sockets,
    op: u32,
    handle: u32,
    args: [u64; 3],
    input: &[u8],
    out_cap: usize,
) -> NetReply {
    let now = Instant::now();
    let wait_until = match args[2] {
        u64::MAX => None,
        ms => Some(now + Duration::from_millis(ms.min(1 << 40))),
    };
    s.call(NetCall {
        op,
        handle,
        args,
        input,
        out_cap,
        wait_until,
        yield_at: None,
    })
}

/// One call whose slice ends at `yield_at` (no wait limit of its own).
pub fn call_until(
    s: &mut Sockets,
    op: u32,
    handle: u32,
    args: [u64; 3],
    input: &[u8],
    out_cap: usize,
    yield_at: Instant,
) -> NetReply {
    s.call(NetCall {
        op,
        handle,
        args,
        input,
        out_cap,
        wait_until: None,
        yield_at: Some(yield_at),
    })
}

pub const WAIT: u64 = 5_000;

pub fn socket(s: &mut Sockets) -> u32 {
    let r = call(s, op::SOCKET, 0, [2, 1, 0], b"", 0);
    assert!(r.result > 0, "{r:?}");
    r.result as u32
}

pub fn connect(s: &mut Sockets, h: u32, addr: SocketAddr) -> NetReply {
    call(
        s,
        op::CONNECT,
        h,
        [u64::from(addr.port()), 0, WAIT],
        addr.ip().to_string().as_bytes(),
        0,
    )
}

pub fn send_all(s: &mut Sockets, h: u32, mut data: &[u8]) {
    while !data.is_empty() {
        let r = call(s, op::SEND, h, [0, 0, WAIT], data, 0);
        assert!(r.result > 0, "{r:?}");
        data = &data[r.result as usize..];
    }
}

pub fn recv_exact(s: &mut Sockets, h: u32, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let r = call(s, op::RECV, h, [0, 0, WAIT], b"", n - got.len());
        assert!(r.result > 0, "{r:?}");
        got.extend_from_slice(&r.out);
    }
    got
}

pub fn poll(s: &mut Sockets, entries: &[PollEntry], wait_ms: u64) -> (NetReply, Vec<PollEntry>) {
    let mut input = Vec::new();
    for e in entries {
        input.extend_from_slice(&e.handle.to_le_bytes());
        input.extend_from_slice(&e.events.to_le_bytes());
        input.extend_from_slice(&e.revents.to_le_bytes());
    }
    let r = call(s, op::POLL, 0, [0, 0, wait_ms], &input, input.len());
    let out = r
        .out
        .chunks_exact(8)
        .map(|c| PollEntry {
            handle: u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            events: u16::from_le_bytes([c[4], c[5]]),
            revents: u16::from_le_bytes([c[6], c[7]]),
        })
        .collect();
    (r, out)
}

/// A TCP echo server on 127.0.0.1 serving `conns` connections, each for at
/// most 10 s.
pub fn echo_server(conns: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for _ in 0..conns {
            let Ok((mut c, _)) = l.accept() else { return };
            thread::spawn(move || {
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut buf = [0u8; 65536];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A listener that accepts and then says nothing (for waits that must time out).
pub fn silent_server() -> (SocketAddr, TcpListener) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    (l.local_addr().unwrap(), l)
}

/// A port with nothing listening (bound then closed).
pub fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A test CA and a leaf for `localhost` and 127.0.0.1 signed by it.
pub struct TestPki {
    pub ca_pem: String,
    pub leaf: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

pub fn pki() -> TestPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "thaw test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
    TestPki {
        ca_pem: ca_cert.pem(),
        leaf: leaf.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    }
}

/// A rustls echo server on 127.0.0.1 (ALPN `h2`/`http/1.1` offered) serving
/// `conns` connections.
pub fn tls_server(pki: &TestPki, conns: usize) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.leaf.clone()], pki.key.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for _ in 0..conns {
            let Ok((c, _)) = l.accept() else { return };
            let config = config.clone();
            thread::spawn(move || serve_tls(c, config));
        }
    });
    addr
}

fn serve_tls(c: TcpStream, config: Arc<rustls::ServerConfig>) {
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let conn = rustls::ServerConnection::new(config).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, c);
    let mut buf = [0u8; 65536];
    while let Ok(n) = tls.read(&mut buf) {
        if n == 0 || tls.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}
