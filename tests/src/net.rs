//! Loopback servers and function packages for the network and package tests.
//! Every server binds 127.0.0.1 on an ephemeral port and serves a bounded number
//! of connections with read timeouts; nothing here reaches any other address.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A loopback HTTP/1.1 server: `GET /bytes/N` answers N bytes of `x`, any other
/// path `hello <path>`; keep-alive. `accepted` counts connections.
#[derive(Debug)]
pub struct HttpServer {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
}

impl HttpServer {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// The test CA and the `localhost`/`127.0.0.1` leaf it signed.
#[derive(Debug)]
pub struct TestPki {
    pub ca_pem: String,
    config: Arc<rustls::ServerConfig>,
}

/// A fresh CA and server certificate (rcgen).
pub fn pki() -> TestPki {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "thaw test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("leaf params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let leaf = params.signed_by(&leaf_key, &issuer).expect("sign leaf");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .expect("server cert");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TestPki {
        ca_pem: ca_cert.pem(),
        config: Arc::new(config),
    }
}

/// Serves `conns` connections of plain HTTP.
pub fn http_server(conns: usize) -> HttpServer {
    serve(conns, None)
}

/// Serves `conns` connections of HTTPS with `pki`'s certificate.
pub fn https_server(pki: &TestPki, conns: usize) -> HttpServer {
    serve(conns, Some(pki.config.clone()))
}

fn serve(conns: usize, tls: Option<Arc<rustls::ServerConfig>>) -> HttpServer {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = l.local_addr().expect("local addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for _ in 0..conns {
            let Ok((c, _)) = l.accept() else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let tls = tls.clone();
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
                match tls {
                    None => http_loop(c),
                    Some(config) => {
                        let Ok(conn) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        http_loop(rustls::StreamOwned::new(conn, c));
                    }
                }
            });
        }
    });
    HttpServer { addr, accepted }
}

/// Answers requests on one connection until it closes.
fn http_loop(mut c: impl Read + Write) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match c.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let body = match path
            .strip_prefix("/bytes/")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => vec![b'x'; n.min(64 << 20)],
            None => format!("hello {path}").into_bytes(),
        };
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n",
            body.len()
        );
        if c.write_all(reply.as_bytes()).is_err() || c.write_all(&body).is_err() {
            return;
        }
        let _ = c.flush();
    }
}

/// A listener that accepts and never answers (timeouts).
pub fn silent_server() -> (SocketAddr, TcpListener) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    (l.local_addr().expect("local addr"), l)
}

/// A loopback port nothing listens on.
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = l.local_addr().expect("local addr").port();
    drop(l);
    port
}

/// A network context allowing `allow` (and trusting `ca_pem` when given).
pub fn net(allow: &[String], ca_pem: Option<&str>) -> thaw_net::NetContext {
    let ca_bundle = ca_pem.map(|pem| {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(f.path(), pem).expect("write CA");
        f.into_temp_path().keep().expect("keep CA file")
    });
    thaw_net::NetContext::new(&thaw_net::NetConfig {
        allow: allow.to_vec(),
        ca_bundle,
        ..Default::default()
    })
    .expect("valid network config")
}

/// Where scripts/setup.sh put the hash-pinned test wheels.
pub fn wheels_dir() -> PathBuf {
    let cache = std::env::var_os("THAW_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                })
                .join("thaw")
        });
    cache.join("wheels")
}

/// `pip install -t` of `packages` from the cached wheels (offline, no index), once
/// per test binary per package set; returns the install directory.
pub fn pip_install(packages: &[&str]) -> PathBuf {
    static DIRS: OnceLock<std::sync::Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let key = packages.join(" ");
    let dirs = DIRS.get_or_init(Default::default);
    let mut dirs = dirs.lock().expect("pip cache lock");
    if let Some((_, d)) = dirs.iter().find(|(k, _)| *k == key) {
        return d.clone();
    }
    let wheels = wheels_dir();
    assert!(
        wheels.is_dir(),
        "{} is missing: run scripts/setup.sh (it downloads the hash-pinned test wheels)",
        wheels.display()
    );
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let status =
        std::process::Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
            .env("PIP_ROOT_USER_ACTION", "ignore")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-index",
                "--disable-pip-version-check",
                "--no-warn-conflicts",
                "--find-links",
            ])
            .arg(&wheels)
            .arg("--target")
            .arg(&dir)
            .args(packages)
            .status()
            .expect("run pip");
    assert!(
        status.success(),
        "pip install -t {key} from {} failed",
        wheels.display()
    );
    dirs.push((key, dir.clone()));
    dir
}

/// Function code: the files of `base` (a pip target dir) plus `extra` files.
pub fn code_with(base: &std::path::Path, extra: &[(&str, &str)]) -> thaw_worker::FunctionCode {
    let mut code = thaw_worker::FunctionCode::load(base).expect("load the package tree");
    for (name, text) in extra {
        code.files
            .insert((*name).to_string(), text.as_bytes().to_vec());
    }
    code
}

/// `TcpStream` is used by callers that poke servers directly.
pub fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, Duration::from_secs(5))
}
