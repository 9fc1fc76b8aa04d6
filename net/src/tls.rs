//! TLS client streams terminated on the host with rustls (ring provider): the
//! START_TLS request, the per-connection client config and verifiers, and the
//! non-blocking record pump the socket table drives.
//!
//! Verification: the roots are the context's ([`ClientConfigs`]: system roots, or
//! webpki-roots when none load, plus the config's `ca_bundle`) plus the PEMs in the request.
//! `verify 0` accepts any certificate (handshake signatures are still checked);
//! `check_hostname 0` verifies the chain but ignores the name.
//!
//! Plaintext the server sends is drained out of rustls into our own buffer as it
//! arrives, so `MSG_PEEK` works and readiness is exact: a socket is readable for
//! the guest when plaintext is buffered, the peer closed, or the stream failed,
//! never merely because a record (say a TLS 1.3 session ticket) arrived.
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, Error};
use rustls::{RootCertStore, SignatureScheme};
use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::Arc;
use thaw_abi::net::errno;

/// A failure for the guest: a positive errno and a message.
pub(crate) type Fail = (i64, String);

/// Plaintext buffered per stream before the host stops reading the socket.
const PLAIN_CAP: usize = 256 << 10;

/// A parsed START_TLS request (format in `thaw_abi::net::tls`).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct TlsRequest {
    pub server_name: Option<String>,
    pub alpn: Vec<Vec<u8>>,
    pub verify: bool,
    pub check_hostname: bool,
    pub ca: Vec<CertificateDer<'static>>,
}

fn einval(msg: impl Into<String>) -> Fail {
    (errno::EINVAL, msg.into())
}

fn flag(key: &str, value: &str) -> Result<bool, Fail> {
    match value {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(einval(format!("TLS request: {key} must be 0 or 1"))),
    }
}

impl TlsRequest {
    /// Parses the request text; every error is `EINVAL` with a message.
    pub fn parse(input: &[u8]) -> Result<Self, Fail> {
        if input.len() as u64 > thaw_abi::net::tls::MAX_REQUEST {
            return Err((errno::EMSGSIZE, "TLS request too long".into()));
        }
        let text =
            std::str::from_utf8(input).map_err(|_| einval("TLS request is not UTF-8 text"))?;
        let mut req = TlsRequest {
            verify: true,
            check_hostname: true,
            ..Self::default()
        };
        let mut lines = text.split('\n');
        let mut pem = None;
        for (i, line) in lines.by_ref().enumerate() {
            let line = line.trim();
            if line == "ca" {
                pem = Some(i);
                break;
            }
            if line.is_empty() {
                continue;
            }
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let value = value.trim();
            match key {
                "server_name" => {
                    if value.is_empty() || value.len() > 253 || value.contains(char::is_whitespace)
                    {
                        return Err(einval("TLS request: bad server_name"));
                    }
                    req.server_name = Some(value.to_string());
                }
                "alpn" => {
                    req.alpn = value
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| p.as_bytes().to_vec())
                        .collect();
                    if req.alpn.iter().any(|p| p.len() > 255) || req.alpn.len() > 64 {
                        return Err(einval("TLS request: bad alpn list"));
                    }
                }
                "verify" => req.verify = flag(key, value)?,
                "check_hostname" => req.check_hostname = flag(key, value)?,
                _ => {
                    let key: String = key.chars().take(32).collect();
                    return Err(einval(format!("TLS request: unknown key {key:?}")));
                }
            }
        }
        if pem.is_some() {
            let rest: Vec<&str> = lines.collect();
            let rest = rest.join("\n");
            for cert in CertificateDer::pem_slice_iter(rest.as_bytes()) {
                let cert = cert.map_err(|e| einval(format!("TLS request: bad CA PEM: {e}")))?;
                req.ca.push(cert);
            }
        }
        if req.verify && req.check_hostname && req.server_name.is_none() {
            return Err(einval(
                "check_hostname requires server_name (or check_hostname 0)",
            ));
        }
        Ok(req)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Client configs by the SHA-256 of what shaped them (verify flags, ALPN, the
/// request's CA certificates): most connections of a function repeat one shape
/// (botocore sends its ~150-certificate bundle with every connection), so the
/// root store and verifier are built once, and sharing the config lets rustls
/// resume TLS sessions across connections. Bounded; the oldest entry goes first.
#[derive(Debug, Default)]
struct ConfigCache(std::sync::Mutex<Vec<([u8; 32], Arc<ClientConfig>)>>);

/// Most configs one context keeps.
const CONFIG_CACHE: usize = 32;

impl ConfigCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<([u8; 32], Arc<ClientConfig>)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn key(req: &TlsRequest) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update([u8::from(req.verify), u8::from(req.check_hostname)]);
        for p in &req.alpn {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        for c in &req.ca {
            h.update((c.len() as u64).to_le_bytes());
            h.update(c.as_ref());
        }
        h.finalize().into()
    }
}

/// The TLS client configs of one context: the roots it trusts and the configs already built
/// from them, by what shaped them.
#[derive(Debug)]
pub(crate) struct ClientConfigs {
    /// System roots (or webpki-roots when none load) plus the CA bundle.
    roots: Arc<RootCertStore>,
    cache: ConfigCache,
}

impl ClientConfigs {
    /// Configs over `roots`, none built yet.
    pub fn new(roots: RootCertStore) -> Self {
        Self {
            roots: Arc::new(roots),
            cache: ConfigCache::default(),
        }
    }

    /// How many trust anchors a request without its own CAs verifies against.
    pub fn root_count(&self) -> usize {
        self.roots.len()
    }

    /// The client config for `req`, from the cache or built now.
    pub fn get(&self, req: &TlsRequest) -> Result<Arc<ClientConfig>, Fail> {
        let key = ConfigCache::key(req);
        if let Some((_, config)) = self.cache.lock().iter().find(|(k, _)| *k == key) {
            return Ok(config.clone());
        }
        let config = Arc::new(client_config(&self.roots, req)?);
        let mut cache = self.cache.lock();
        if cache.len() >= CONFIG_CACHE {
            cache.remove(0);
        }
        cache.push((key, config.clone()));
        Ok(config)
    }
}

/// The client config for one connection.
fn client_config(base: &Arc<RootCertStore>, req: &TlsRequest) -> Result<ClientConfig, Fail> {
    let provider = provider();
    // `verify 0` trusts nothing it is given, so the request's CAs are not added.
    let roots = if req.ca.is_empty() || !req.verify {
        base.clone()
    } else {
        let mut roots = RootCertStore::clone(base);
        for cert in &req.ca {
            roots
                .add(cert.clone())
                .map_err(|e| einval(format!("TLS request: bad CA certificate: {e}")))?;
        }
        Arc::new(roots)
    };
    let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| einval(format!("TLS roots unusable: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match (req.verify, req.check_hostname) {
        (true, true) => webpki,
        (verify, _) => Arc::new(Relaxed {
            inner: webpki,
            any_cert: !verify,
        }),
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| einval(format!("TLS setup failed: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = req.alpn.clone();
    Ok(config)
}

/// What the guest may weaken for itself: `verify 0` accepts any certificate
/// (`any_cert`), `check_hostname 0` verifies the chain and forgives a name
/// mismatch (webpki checks the chain before the name, so a name error means the
/// chain was good). Handshake signatures are always checked, by webpki.
#[derive(Debug)]
struct Relaxed {
    inner: Arc<WebPkiServerVerifier>,
    any_cert: bool,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if self.any_cert {
            return Ok(ServerCertVerified::assertion());
        }
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A TLS client stream over one connected socket.
#[derive(Debug)]
pub(crate) struct Tls {
    pub conn: ClientConnection,
    plain: Vec<u8>,
    pos: usize,
    /// The peer sent close_notify or the TCP stream ended.
    pub peer_closed: bool,
    /// The stream failed; every later data op fails the same way.
    pub failed: Option<Fail>,
    /// The handshake finished (and was counted).
    pub established: bool,
}

impl Tls {
    /// A client for `req` to the peer at `peer` (the name verified is the
    /// request's `server_name`, else the peer's address).
    pub fn new(configs: &ClientConfigs, req: &TlsRequest, peer: IpAddr) -> Result<Self, Fail> {
        let config = configs.get(req)?;
        let name = match &req.server_name {
            Some(n) => ServerName::try_from(n.clone())
                .map_err(|_| einval("TLS request: server_name is not a valid name"))?,
            None => ServerName::IpAddress(peer.into()),
        };
        let mut conn = ClientConnection::new(config, name)
            .map_err(|e| einval(format!("TLS setup failed: {e}")))?;
        conn.set_buffer_limit(Some(256 << 10));
        Ok(Self {
            conn,
            plain: Vec::new(),
            pos: 0,
            peer_closed: false,
            failed: None,
            established: false,
        })
    }

    /// Plaintext bytes buffered for the guest.
    pub fn buffered(&self) -> usize {
        self.plain.len() - self.pos
    }

    /// Whether a RECV would return at once (data, end of stream or an error).
    pub fn readable(&self) -> bool {
        self.buffered() > 0 || self.peer_closed || self.failed.is_some()
    }

    /// Writes what rustls has to send without blocking; true when all went out.
    pub fn flush(&mut self, sock: &TcpStream) -> Result<bool, Fail> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut &*sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.fail(io_fail(&e))),
            }
        }
        Ok(true)
    }

    /// Reads what the socket has without blocking and decrypts it into the
    /// plaintext buffer.
    pub fn pump(&mut self, sock: &TcpStream) -> Result<(), Fail> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        while !self.peer_closed && self.buffered() < PLAIN_CAP && self.conn.wants_read() {
            match self.conn.read_tls(&mut &*sock) {
                Ok(0) => self.peer_closed = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.fail(io_fail(&e))),
            }
            let state = match self.conn.process_new_packets() {
                Ok(s) => s,
                Err(e) => {
                    // Best effort: tell the server why (the alert rustls queued).
                    let _ = self.conn.write_tls(&mut &*sock);
                    return Err(self.fail(tls_fail(&e)));
                }
            };
            let n = state.plaintext_bytes_to_read();
            if state.peer_has_closed() {
                self.peer_closed = true;
            }
            if n > 0 {
                if self.pos > 0 && self.pos == self.plain.len() {
                    self.plain.clear();
                    self.pos = 0;
                }
                let start = self.plain.len();
                self.plain.resize(start + n, 0);
                let got = self
                    .conn
                    .reader()
                    .read(&mut self.plain[start..])
                    .unwrap_or_default();
                self.plain.truncate(start + got);
            }
        }
        Ok(())
    }

    /// Takes (or with `peek` copies) at most `cap` buffered plaintext bytes.
    pub fn take(&mut self, cap: usize, peek: bool) -> Vec<u8> {
        let n = cap.min(self.buffered());
        let out = self.plain[self.pos..self.pos + n].to_vec();
        if !peek {
            self.pos += n;
            if self.pos == self.plain.len() {
                self.plain.clear();
                self.pos = 0;
            }
        }
        out
    }

    /// Queues plaintext; the bytes rustls took (0 when its buffer is full).
    pub fn write(&mut self, data: &[u8]) -> usize {
        self.conn.writer().write(data).unwrap_or(0)
    }

    fn fail(&mut self, f: Fail) -> Fail {
        self.failed = Some(f.clone());
        f
    }

    /// `TLSv1.3 TLS13_AES_128_GCM_SHA256`.
    pub fn info(&self) -> String {
        let version = match self.conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(v) => format!("{v:?}"),
            None => String::new(),
        };
        let suite = self
            .conn
            .negotiated_cipher_suite()
            .map(|s| {
                let s = s.suite();
                s.as_str().map_or_else(|| format!("{s:?}"), str::to_string)
            })
            .unwrap_or_default();
        format!("{version} {suite}")
    }
}

/// A socket error as a failure.
pub(crate) fn io_fail(e: &io::Error) -> Fail {
    (
        e.raw_os_error().map_or(errno::EIO, i64::from),
        format!("TLS transport failed: {e}"),
    )
}

/// A rustls error as `EPROTO` with its reason.
pub(crate) fn tls_fail(e: &Error) -> Fail {
    let msg = match e {
        Error::InvalidCertificate(_) => format!("certificate verify failed: {e}"),
        _ => format!("TLS handshake failed: {e}"),
    };
    (errno::EPROTO, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_request_parses() {
        let req = TlsRequest::parse(
            b"server_name example.com\r\nalpn h2,http/1.1\nverify 1\ncheck_hostname 0\n",
        )
        .unwrap();
        assert_eq!(req.server_name.as_deref(), Some("example.com"));
        assert_eq!(req.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert!(req.verify && !req.check_hostname && req.ca.is_empty());
        let req = TlsRequest::parse(b"verify 0\n").unwrap();
        assert!(!req.verify && req.server_name.is_none());
    }

    #[test]
    fn test_bad_requests_are_einval_with_a_message() {
        for bad in [
            &b"verify 2\n"[..],
            b"server_name a b\n",
            b"frobnicate 1\nserver_name x\n",
            b"\xff\xfe",
            b"check_hostname 1\n",
            b"server_name x\nca\n-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        ] {
            let (e, msg) = TlsRequest::parse(bad).unwrap_err();
            assert_eq!(e, errno::EINVAL, "{msg}");
            assert!(!msg.is_empty());
        }
    }
}
