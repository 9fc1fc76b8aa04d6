//! `thaw serve`'s configuration: the TOML file (`--config thaw.toml`), its embedded defaults, and
//! the scheduler limits it maps to. Flags override the file.
//!
//! ```toml
//! http = "127.0.0.1:9000"
//! grpc = "127.0.0.1:50051"
//! data = "/var/lib/thaw"          # default: $THAW_DATA or ~/.thaw
//! module_cache = "/var/cache/thaw" # precompiled runtime modules; default: <data>/cache/modules
//! region = "us-east-1"
//! log_invocations = true          # START/END/REPORT lines on stdout
//! restore_mode = "uffd+prefetch"  # boot, eager, mmap, uffd, uffd+prefetch, shared
//! provisioned_restore_mode = ""   # provisioned instances' mode; "": restore_mode
//!                                 # ("shared": ~2 MiB of host memory each, docs/MEMORY.md)
//! inline_slice_us = 500           # run an invocation in place this long, then hand it off
//! [limits]
//! account_concurrency = 1000
//! min_unreserved_concurrency = 100
//! memory_budget_mb = 0            # 0: the host's MemTotal
//! instance_overhead_mb = 16
//! admission = "measured"          # charge instances what they were measured to use (+ margin);
//!                                 # "memory_size": MemorySize + overhead each (no overcommit)
//! admission_margin_pct = 50
//! keep_warm_ttl_s = 600
//! provision_parallelism = 4       # provisioned restores at once (they wait in syscalls: > cores pays)
//! [async]
//! max_attempts = 3                # 1 + Lambda's 2 retries on function error
//! retry_delay_ms = 1000           # times the attempt number
//! concurrency = 4
//! [auth]                          # no credentials: anonymous, and only on loopback addresses
//! credentials = [{ access_key_id = "AKID...", secret_access_key = "..." }]
//! allow_anonymous = false         # true: serve unsigned requests on any address (no credentials)
//! allow_unsigned_payload = false  # accept X-Amz-Content-Sha256: UNSIGNED-PAYLOAD (behind TLS)
//! [timeouts]
//! header_read_s = 60              # HTTP/1: a request head must be complete this long after the
//!                                 # connection starts waiting for it (also ends idle keep-alives)
//! idle_s = 60                     # both listeners: nothing read or written and no request in
//!                                 # flight for this long closes the connection
//! ```
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("parsing {path}")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
}

/// Everything `thaw serve` reads from its config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP listen address (Lambda API and /metrics).
    pub http: String,
    /// gRPC listen address.
    pub grpc: String,
    /// Function URL listener address (`FunctionUrl` is `http://<this>/<url id>/`).
    pub urls: String,
    /// Data directory (registry, module cache, snapshots).
    pub data: Option<PathBuf>,
    /// Precompiled-module cache (default: `<data>/cache/modules`).
    pub module_cache: Option<PathBuf>,
    /// Region reported in ARNs.
    pub region: String,
    /// Account id reported in ARNs.
    pub account_id: String,
    /// Print START/END/REPORT and function logs to stdout.
    pub log_invocations: bool,
    /// Memory mode of restores: eager, mmap, uffd, uffd+prefetch, shared (or boot).
    pub restore_mode: String,
    /// Memory mode of provisioned-concurrency restores (empty: `restore_mode`).
    pub provisioned_restore_mode: String,
    /// How long (us) an invocation runs in place on the async thread that received it
    /// before it moves to a blocking thread; 0 always moves it.
    pub inline_slice_us: u64,
    /// Scheduler limits.
    pub limits: LimitsConfig,
    /// Async (Event) invocation executor.
    #[serde(rename = "async")]
    pub async_events: AsyncConfig,
    /// Request authentication (SigV4 on HTTP, a bearer secret on gRPC).
    pub auth: AuthConfig,
    /// Connection timeouts of both listeners.
    pub timeouts: TimeoutsConfig,
    /// What functions may connect to (default: nothing).
    pub egress: EgressConfig,
    /// Credentials put in every function's environment (`AWS_ACCESS_KEY_ID`, ...),
    /// as Lambda puts the execution role's: what the AWS SDK inside a function
    /// signs with (e.g. to call thaw's own API). None by default.
    pub function_credentials: Option<FunctionCredentials>,
}

/// `[function_credentials]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionCredentials {
    pub access_key_id: String,
    pub secret_access_key: crate::auth::sigv4::Secret,
    #[serde(default)]
    pub session_token: Option<crate::auth::sigv4::Secret>,
}

/// `[egress]`: outbound connections from functions, denied unless allowed here.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// `host:port` patterns: `127.0.0.1:8080`, `localhost:8443`,
    /// `*.amazonaws.com:443`, `10.0.0.0/8:*`, `[::1]:80`.
    pub allow: Vec<String>,
    /// PEM certificates trusted in addition to the system roots.
    pub ca_bundle: Option<PathBuf>,
    /// Most sockets one instance may hold open.
    pub max_sockets: usize,
    /// Bytes one invocation may move through its sockets.
    pub max_bytes_per_invocation: u64,
    /// The counters `/metrics` shows (not read from the file).
    #[serde(skip)]
    pub stats: std::sync::Arc<thaw_net::NetStats>,
}

impl Default for EgressConfig {
    fn default() -> Self {
        let net = thaw_net::NetConfig::default();
        Self {
            allow: net.allow,
            ca_bundle: net.ca_bundle,
            max_sockets: net.max_sockets,
            max_bytes_per_invocation: net.max_bytes_per_invocation,
            stats: net.stats,
        }
    }
}

impl EgressConfig {
    /// The network context every instance of the service gets.
    pub fn context(&self) -> Result<thaw_net::NetContext, thaw_net::NetConfigError> {
        thaw_net::NetContext::new(&thaw_net::NetConfig {
            allow: self.allow.clone(),
            ca_bundle: self.ca_bundle.clone(),
            max_sockets: self.max_sockets,
            max_bytes_per_invocation: self.max_bytes_per_invocation,
            stats: self.stats.clone(),
        })
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Key pairs clients sign with; empty means anonymous access.
    pub credentials: Vec<CredentialConfig>,
    /// Serve anonymously on non-loopback addresses (only meaningful with no credentials).
    pub allow_anonymous: bool,
    /// Accept `X-Amz-Content-Sha256: UNSIGNED-PAYLOAD` (bodies then are not covered by the
    /// signature: only for a server behind TLS).
    pub allow_unsigned_payload: bool,
}

/// One `[[auth.credentials]]` entry; `Debug` redacts the secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    pub access_key_id: String,
    pub secret_access_key: crate::auth::sigv4::Secret,
}

/// `[timeouts]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// HTTP/1 request heads must be complete this long after the connection waits for one.
    pub header_read_s: u64,
    /// A connection with nothing read or written and no request in flight is closed after this.
    pub idle_s: u64,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            header_read_s: 60,
            idle_s: 60,
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub account_concurrency: u32,
    pub min_unreserved_concurrency: u32,
    /// 0: the host's MemTotal.
    pub memory_budget_mb: u64,
    pub instance_overhead_mb: u64,
    pub keep_warm_ttl_s: u64,
    pub provision_parallelism: usize,
    /// The overcommit policy (`thaw_scheduler::Admission`).
    pub admission: AdmissionPolicy,
    /// Margin on top of measured use, percent (`admission = "measured"`).
    pub admission_margin_pct: u32,
}

/// `[limits] admission`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdmissionPolicy {
    /// Charge what instances were measured to use, plus the margin.
    Measured,
    /// Charge MemorySize plus the instance overhead.
    MemorySize,
}

/// `[async]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AsyncConfig {
    pub max_attempts: u32,
    pub retry_delay_ms: u64,
    pub concurrency: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: "127.0.0.1:9000".into(),
            grpc: "127.0.0.1:50051".into(),
            urls: "127.0.0.1:9002".into(),
            data: None,
            module_cache: None,
            restore_mode: "uffd+prefetch".into(),
            provisioned_restore_mode: String::new(),
            inline_slice_us: thaw_worker::factory::DEFAULT_INLINE_SLICE.as_micros() as u64,
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            log_invocations: true,
            limits: LimitsConfig::default(),
            async_events: AsyncConfig::default(),
            auth: AuthConfig::default(),
            timeouts: TimeoutsConfig::default(),
            egress: EgressConfig::default(),
            function_credentials: None,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            account_concurrency: 1000,
            min_unreserved_concurrency: 100,
            memory_budget_mb: 0,
            instance_overhead_mb: 16,
            keep_warm_ttl_s: 600,
            provision_parallelism: 4,
            admission: AdmissionPolicy::Measured,
            admission_margin_pct: 50,
        }
    }
}

impl Default for AsyncConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            retry_delay_ms: 1000,
            concurrency: 4,
        }
    }
}

impl Config {
    /// Reads `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The scheduler limits this config asks for.
    pub fn scheduler_limits(&self) -> thaw_scheduler::Limits {
        let l = &self.limits;
        let budget = if l.memory_budget_mb == 0 {
            host_memory_bytes()
        } else {
            l.memory_budget_mb << 20
        };
        thaw_scheduler::Limits {
            account_concurrency: l.account_concurrency,
            min_unreserved_concurrency: l.min_unreserved_concurrency,
            memory_budget_bytes: budget,
            keep_warm_ttl: Duration::from_secs(l.keep_warm_ttl_s),
            provision_parallelism: l.provision_parallelism.max(1),
            admission: match l.admission {
                AdmissionPolicy::MemorySize => thaw_scheduler::Admission::MemorySize,
                AdmissionPolicy::Measured => thaw_scheduler::Admission::Measured {
                    margin_pct: l.admission_margin_pct,
                    floor_bytes: 4 << 20,
                },
            },
        }
    }
}

/// MemTotal from /proc/meminfo (8 GiB if unreadable).
pub fn host_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb << 10)
        })
        .unwrap_or(8 << 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_defaults_and_overrides() {
        let c = Config::parse("http = \"0.0.0.0:1\"\n[limits]\naccount_concurrency = 7\n[async]\nretry_delay_ms = 5\n").unwrap();
        assert_eq!(c.http, "0.0.0.0:1");
        assert_eq!(c.grpc, "127.0.0.1:50051");
        assert_eq!(c.scheduler_limits().account_concurrency, 7);
        assert_eq!(c.async_events.retry_delay_ms, 5);
        assert_eq!(c.async_events.max_attempts, 3);
        assert_eq!(c.inline_slice_us, 500);
        assert_eq!(
            Config::parse("inline_slice_us = 0")
                .unwrap()
                .inline_slice_us,
            0
        );
        assert!(Config::parse("bogus = 1").is_err());
    }

    #[test]
    fn test_auth_section_and_secrets_stay_out_of_debug() {
        let c = Config::parse(
            "[auth]\ncredentials = [{ access_key_id = \"AKID1\", secret_access_key = \"s3cr3t-value\" }]\n[timeouts]\nidle_s = 5\n",
        )
        .unwrap();
        assert_eq!(c.auth.credentials[0].access_key_id, "AKID1");
        assert_eq!(
            c.auth.credentials[0].secret_access_key.expose(),
            "s3cr3t-value"
        );
        assert!(!c.auth.allow_anonymous);
        assert_eq!((c.timeouts.idle_s, c.timeouts.header_read_s), (5, 60));
        let debug = format!("{c:?}");
        assert!(
            debug.contains("AKID1") && !debug.contains("s3cr3t"),
            "{debug}"
        );
        assert!(Config::parse("[auth]\ncredentials = [{ access_key_id = \"A\" }]").is_err());
    }
}
