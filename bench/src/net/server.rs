//! The loopback servers the network benchmark talks to: a minimal HTTP/1.1
//! server (keep-alive, `GET /small` = 13 bytes, `GET /big` = the download body),
//! plain and over rustls with a throwaway test CA (rcgen). One thread per
//! connection, Nagle off, every read bounded by a 30 s timeout.
use anyhow::Context;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// The small response body.
pub const SMALL: &[u8] = b"hello, world\n";

/// A CA and a server configuration whose certificate (for `127.0.0.1` and
/// `localhost`) it signed.
#[derive(Debug)]
pub struct Pki {
    pub ca_pem: String,
    config: Arc<rustls::ServerConfig>,
}

impl Pki {
    /// A fresh test CA and server certificate.
    pub fn generate() -> anyhow::Result<Self> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "thaw bench CA");
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let leaf_key = rcgen::KeyPair::generate()?;
        let mut leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])?;
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let leaf = leaf.signed_by(&leaf_key, &issuer)?;
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            ca_pem: ca_cert.pem(),
            config: Arc::new(config),
        })
    }
}

/// A running server; it lives as long as the process (its threads are detached).
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
}

impl Server {
    /// Serves plain HTTP on 127.0.0.1; `big` is the `/big` body.
    pub fn http(big: Arc<Vec<u8>>) -> anyhow::Result<Self> {
        Self::start(big, None)
    }

    /// Serves HTTPS on 127.0.0.1 with `pki`'s certificate.
    pub fn https(big: Arc<Vec<u8>>, pki: &Pki) -> anyhow::Result<Self> {
        Self::start(big, Some(pki.config.clone()))
    }

    fn start(big: Arc<Vec<u8>>, tls: Option<Arc<rustls::ServerConfig>>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("bind a loopback listener")?;
        let addr = listener.local_addr()?;
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (big, tls) = (big.clone(), tls.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &big, tls);
                });
            }
        });
        Ok(Self { addr })
    }
}

fn serve(
    conn: TcpStream,
    big: &[u8],
    tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<()> {
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    conn.set_write_timeout(Some(Duration::from_secs(30)))?;
    match tls {
        None => requests(conn, big),
        Some(config) => {
            let tls = rustls::ServerConnection::new(config)?;
            requests(rustls::StreamOwned::new(tls, conn), big)
        }
    }
}

/// Answers requests on one connection until the client closes it (or asks to).
fn requests<S: std::io::Read + Write>(stream: S, big: &[u8]) -> anyhow::Result<()> {
    let mut r = BufReader::with_capacity(16 << 10, stream);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut close = false;
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                close |= k.eq_ignore_ascii_case("connection") && v.trim() == "close";
            }
        }
        let body = match path.as_str() {
            "/big" => big,
            _ => SMALL,
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        let w = r.get_mut();
        if body.len() <= 4096 {
            let mut msg = head.into_bytes();
            msg.extend_from_slice(body);
            w.write_all(&msg)?;
        } else {
            w.write_all(head.as_bytes())?;
            w.write_all(body)?;
        }
        w.flush()?;
        if close {
            return Ok(());
        }
    }
}
