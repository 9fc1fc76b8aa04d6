//! Network configuration: what the service's config says ([`NetConfig`]), the
//! prepared form shared by every VM ([`NetContext`]: the parsed policy, the TLS
//! roots built once, the resolver) and the counters the service exports
//! ([`NetStats`]).
use crate::policy::{Policy, PolicyError};
use crate::tls::ClientConfigs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use std::fmt;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A configuration that cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum NetConfigError {
    #[error("bad egress allow pattern")]
    Policy(#[from] PolicyError),
    #[error("cannot read the CA bundle {path}")]
    ReadCaBundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA bundle {path} holds no usable PEM certificate")]
    EmptyCaBundle { path: PathBuf },
    #[error("max_sockets must be at least 1")]
    NoSockets,
}

/// Counters shared with the service (`/metrics`); every `Sockets` made from one
/// [`NetContext`] adds to the same ones.
#[derive(Debug, Default)]
pub struct NetStats {
    /// Connects the policy allowed (attempted on the host).
    pub connects: AtomicU64,
    /// Connects the policy denied.
    pub denied: AtomicU64,
    /// Name resolutions performed on the host.
    pub resolves: AtomicU64,
    /// Name resolutions the policy refused.
    pub resolves_denied: AtomicU64,
    /// Bytes received for guests (plaintext after TLS).
    pub bytes_in: AtomicU64,
    /// Bytes sent for guests (plaintext before TLS).
    pub bytes_out: AtomicU64,
    /// TLS handshakes completed.
    pub tls_handshakes: AtomicU64,
    /// TLS handshakes that failed (certificate or protocol errors).
    pub tls_failures: AtomicU64,
}

/// A point-in-time copy of [`NetStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStatsSnapshot {
    pub connects: u64,
    pub denied: u64,
    pub resolves: u64,
    pub resolves_denied: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub tls_handshakes: u64,
    pub tls_failures: u64,
}

impl NetStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> NetStatsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NetStatsSnapshot {
            connects: r(&self.connects),
            denied: r(&self.denied),
            resolves: r(&self.resolves),
            resolves_denied: r(&self.resolves_denied),
            bytes_in: r(&self.bytes_in),
            bytes_out: r(&self.bytes_out),
            tls_handshakes: r(&self.tls_handshakes),
            tls_failures: r(&self.tls_failures),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The `[egress]` section and the limits of one function.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// `host:port` patterns ([`crate::policy`]); empty: no egress at all.
    pub allow: Vec<String>,
    /// PEM certificates trusted in addition to the system roots.
    pub ca_bundle: Option<PathBuf>,
    /// Most sockets one VM may hold open at once.
    pub max_sockets: usize,
    /// Bytes (in + out, plaintext) one invocation may move.
    pub max_bytes_per_invocation: u64,
    /// Where the counters go.
    pub stats: Arc<NetStats>,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            ca_bundle: None,
            max_sockets: 64,
            max_bytes_per_invocation: 1 << 30,
            stats: Arc::default(),
        }
    }
}

/// Host name resolution, behind a trait so tests can inject answers.
pub trait Resolver: Send + Sync + fmt::Debug {
    /// Every address `name` resolves to (both families).
    fn resolve(&self, name: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The system resolver (`getaddrinfo`).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, name: &str) -> std::io::Result<Vec<IpAddr>> {
        Ok((name, 0).to_socket_addrs()?.map(|a| a.ip()).collect())
    }
}

/// The prepared, cheaply clonable form of a [`NetConfig`]: one per function
/// (or per service), from which each VM's `Sockets` is made.
#[derive(Debug, Clone)]
pub struct NetContext {
    pub(crate) inner: Arc<ContextInner>,
}

#[derive(Debug)]
pub(crate) struct ContextInner {
    pub policy: Policy,
    pub resolver: Arc<dyn Resolver>,
    pub max_sockets: usize,
    pub max_bytes: u64,
    pub stats: Arc<NetStats>,
    /// The roots TLS verifies against and the client configs built from them.
    pub tls: ClientConfigs,
}

impl NetContext {
    /// Parses the policy and builds the root store, with the system resolver.
    pub fn new(config: &NetConfig) -> Result<Self, NetConfigError> {
        Self::with_resolver(config, Arc::new(SystemResolver))
    }

    /// As [`NetContext::new`], resolving names with `resolver`.
    pub fn with_resolver(
        config: &NetConfig,
        resolver: Arc<dyn Resolver>,
    ) -> Result<Self, NetConfigError> {
        let policy = Policy::parse(&config.allow)?;
        if config.max_sockets == 0 {
            return Err(NetConfigError::NoSockets);
        }
        let mut roots = system_roots();
        if let Some(path) = &config.ca_bundle {
            add_bundle(&mut roots, path)?;
        }
        Ok(Self {
            inner: Arc::new(ContextInner {
                policy,
                resolver,
                max_sockets: config.max_sockets,
                max_bytes: config.max_bytes_per_invocation,
                stats: config.stats.clone(),
                tls: ClientConfigs::new(roots),
            }),
        })
    }

    /// The parsed policy.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<NetStats> {
        &self.inner.stats
    }

    /// How many trust anchors TLS verifies against by default.
    pub fn root_count(&self) -> usize {
        self.inner.tls.root_count()
    }
}

/// The system's roots; webpki-roots' Mozilla set if none load.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!("no system CA certificates loaded; using the built-in webpki roots");
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

fn add_bundle(roots: &mut RootCertStore, path: &Path) -> Result<(), NetConfigError> {
    let pem = std::fs::read(path).map_err(|source| NetConfigError::ReadCaBundle {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok);
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(NetConfigError::EmptyCaBundle {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_patterns_fail_at_construction() {
        let config = NetConfig {
            allow: vec!["localhost:80".into(), "10.0.0.0/40:1".into()],
            ..NetConfig::default()
        };
        let err = NetContext::new(&config).unwrap_err();
        assert!(matches!(
            err,
            NetConfigError::Policy(PolicyError::BadCidr(_))
        ));
    }

    #[test]
    fn zero_sockets_is_refused() {
        let config = NetConfig {
            max_sockets: 0,
            ..NetConfig::default()
        };
        assert!(matches!(
            NetContext::new(&config),
            Err(NetConfigError::NoSockets)
        ));
    }

    #[test]
    fn ca_bundle_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("thaw-net-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let config = NetConfig {
            ca_bundle: Some(empty.clone()),
            ..NetConfig::default()
        };
        let err = NetContext::new(&config).unwrap_err();
        assert!(matches!(err, NetConfigError::EmptyCaBundle { .. }));
        assert!(err.to_string().contains("empty.pem"));
        let config = NetConfig {
            ca_bundle: Some(dir.join("missing.pem")),
            ..NetConfig::default()
        };
        assert!(matches!(
            NetContext::new(&config),
            Err(NetConfigError::ReadCaBundle { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn roots_load() {
        let ctx = NetContext::new(&NetConfig::default()).unwrap();
        assert!(ctx.root_count() > 0);
        assert!(ctx.policy().is_empty());
    }
}
