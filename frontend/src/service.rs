//! The service core both APIs call: the registry, the scheduler over a [`Backend`], metrics and
//! logs, and the invoke path. Control-plane operations (`lifecycle.rs`, `deploy.rs`), the async
//! executor (`async_queue.rs`) and startup (`startup.rs`) build on it.
//!
//! Synchronous invoke:
//! 1. Resolve the name and qualifier to a version; it must be `Active`.
//! 2. Lease an instance (free provisioned, else an on-demand slot -> warm idle or a new instance);
//!    throttles become 429 with Lambda's reason.
//! 3. Invoke it on the backend; a crash or timeout is a function error and the instance is
//!    released unhealthy (discarded, replaced if provisioned).
//! 4. Render START/END/REPORT (with Init/Restore Duration on a cold start), print it, record
//!    metrics, and return the body with the tail of the log if asked.
use crate::backend::Backend;
use crate::config::Config;
use crate::errors::ApiError;
use crate::limits::{MAX_ASYNC_PAYLOAD, MAX_SYNC_PAYLOAD};
use crate::logs::{self, LogSink, Record};
use crate::metrics::{Metrics, Observation};
use crate::registry::{AsyncEvent, FunctionState, Registry, VersionConfig};
use crate::shapes::ArnBase;
use base64::Engine;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thaw_scheduler::{LeaseError, Scheduler, StartType, SystemClock};
use thaw_snapshotter::KvStore;
use thaw_worker::{InvokeRequest, WorkerError};
use tokio::sync::{mpsc, watch};

/// How a caller wants a function invoked (`X-Amz-Invocation-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationType {
    RequestResponse,
    Event,
    DryRun,
}

/// A synchronous invocation's result.
#[derive(Debug)]
pub struct SyncResult {
    pub request_id: String,
    pub version: String,
    pub body: Vec<u8>,
    pub function_error: bool,
    /// Base64 of the log's last 4 KB, when the caller asked for `Tail`.
    pub log_result: Option<String>,
    /// The handler's duration as the worker measured it.
    pub handler_duration: Duration,
    /// `warm`, `boot` or `restore`.
    pub start: &'static str,
}

/// One invocation's inputs.
#[derive(Debug, Default)]
pub struct InvokeInput {
    pub payload: Vec<u8>,
    pub client_context: Option<serde_json::Value>,
    pub tail: bool,
    pub request_id: Option<String>,
    /// The qualifier the caller named (an alias, a version, none): event-invoke configs
    /// are looked up by it.
    pub qualifier: Option<String>,
}

/// The service: shared by the HTTP and gRPC front ends and the async executor.
#[derive(Debug)]
pub struct Service<B: Backend> {
    pub registry: Registry,
    pub scheduler: Scheduler<B>,
    pub metrics: Metrics,
    pub arn: ArnBase,
    pub config: Config,
    logs: LogSink,
    events: mpsc::UnboundedSender<AsyncEvent>,
    queued: AtomicU64,
    stop: watch::Sender<bool>,
    /// `http://ADDR` of the function URL listener, once it is bound.
    url_base: std::sync::OnceLock<String>,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("opening the registry")]
    Registry(#[from] crate::registry::RegistryError),
}

impl<B: Backend> Service<B> {
    /// Opens the registry in `kv` and builds the scheduler over `backend`; nothing runs yet.
    /// Returns the receiving end of the async event channel for the executor.
    /// [`Service::start`] (`startup.rs`) recovers what a previous process left and starts the
    /// background work.
    pub(crate) fn open(
        config: Config,
        backend: B,
        kv: Arc<dyn KvStore>,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<AsyncEvent>), ServiceError> {
        let registry = Registry::open(kv)?;
        let scheduler = Scheduler::new(backend, SystemClock, config.scheduler_limits());
        let (tx, rx) = mpsc::unbounded_channel();
        let svc = Arc::new(Self {
            registry,
            scheduler,
            metrics: Metrics::default(),
            arn: ArnBase {
                region: config.region.clone(),
                account_id: config.account_id.clone(),
            },
            logs: LogSink {
                enabled: config.log_invocations,
            },
            config,
            events: tx,
            queued: AtomicU64::new(0),
            stop: watch::channel(false).0,
            url_base: std::sync::OnceLock::new(),
        });
        Ok((svc, rx))
    }

    /// Stops background work (the async executor; queued events stay stored).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Resolves once [`Service::stop`] was called.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stop.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    /// The backend (the scheduler's factory).
    pub fn backend(&self) -> &B {
        self.scheduler.factory()
    }

    /// Records where the function URL listener is (`http://ADDR`); the first call wins.
    pub fn set_url_base(&self, base: String) {
        let _ = self.url_base.set(base);
    }

    /// `http://ADDR` of the function URL listener (`http://127.0.0.1:9002` before it is bound).
    pub fn url_base(&self) -> &str {
        self.url_base
            .get()
            .map_or("http://127.0.0.1:9002", String::as_str)
    }

    /// Events stored and not yet finished.
    pub fn queued_events(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Counts `n` events a previous process left stored (startup).
    pub(crate) fn events_resumed(&self, n: usize) {
        self.queued.store(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn event_finished(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }

    /// Resolves a reference to the configuration one invocation runs: a weighted alias picks
    /// its version at random by weight, and a version being updated runs its previous
    /// configuration until the update is built.
    pub fn resolve_active(
        &self,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<Arc<VersionConfig>, ApiError> {
        let draw = (uuid::Uuid::new_v4().as_u64_pair().0 >> 11) as f64 / (1u64 << 53) as f64;
        let resolved = self.registry.resolve_weighted(name, qualifier, draw)?;
        let cfg = if std::ptr::eq(resolved.serving(), &*resolved) {
            resolved
        } else {
            Arc::new(resolved.serving().clone())
        };
        match cfg.state {
            FunctionState::Active => Ok(cfg),
            state => Err(ApiError::ResourceConflict(format!(
                "The operation cannot be performed at this time. The function is currently in the following state: {}",
                state.as_str()
            ))),
        }
    }

    /// Stores an Event invocation durably (synced) and hands it to the executor; returns its
    /// request id.
    pub async fn enqueue(
        self: &Arc<Self>,
        cfg: &VersionConfig,
        input: InvokeInput,
    ) -> Result<String, ApiError> {
        if input.payload.len() > MAX_ASYNC_PAYLOAD {
            return Err(too_large(input.payload.len(), MAX_ASYNC_PAYLOAD));
        }
        let event = AsyncEvent {
            seq: 0,
            request_id: input
                .request_id
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            function: cfg.name.clone(),
            version: cfg.version.clone(),
            payload: base64::engine::general_purpose::STANDARD.encode(&input.payload),
            attempts: 0,
            client_context: input.client_context,
            enqueued_ms: crate::time::now_ms(),
            qualifier: input.qualifier,
        };
        let svc = Arc::clone(self);
        let event = tokio::task::spawn_blocking(move || svc.registry.enqueue_event(event))
            .await
            .map_err(|e| ApiError::Service(format!("event store task failed: {e}")))??;
        let request_id = event.request_id.clone();
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.metrics.async_event("queued");
        // The executor only stops at shutdown; the event stays stored and runs after a restart.
        let _ = self.events.send(event);
        Ok(request_id)
    }

    /// Runs one synchronous invocation of `cfg` (see the module doc).
    pub async fn invoke(
        &self,
        cfg: &VersionConfig,
        input: InvokeInput,
    ) -> Result<SyncResult, ApiError> {
        if input.payload.len() > MAX_SYNC_PAYLOAD {
            return Err(too_large(input.payload.len(), MAX_SYNC_PAYLOAD));
        }
        let fv = cfg.function_version();
        // 2.
        let lease = match self.scheduler.lease(&fv).await {
            Ok(lease) => lease,
            Err(e) => {
                if let Some(reason) = e.throttle_reason() {
                    self.metrics
                        .throttle(&cfg.name, &cfg.version, reason.as_str());
                    return Err(ApiError::TooManyRequests(reason));
                }
                let LeaseError::Restore(f) = e else {
                    unreachable!("only restores fail without a throttle reason")
                };
                return Err(ApiError::Service(format!(
                    "could not start an instance: {}",
                    f.reason()
                )));
            }
        };
        let cold = (lease.start_type() == StartType::Restore)
            .then(|| self.backend().cold_start(lease.instance()));
        let start = cold.map_or("warm", |c| c.kind.as_str());
        // 3.
        let request_id = input
            .request_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let req = InvokeRequest {
            payload: input.payload,
            request_id: Some(request_id.clone()),
            client_context: input.client_context,
        };
        let outcome = self.backend().invoke(lease.instance(), req).await;
        let max_memory_used = self.backend().max_memory_used(lease.instance());
        lease.release(outcome.is_ok());
        let crashed = outcome.is_err();
        let (body, function_error, log, duration, note, timeout) = match outcome {
            Ok(o) => (o.body, o.function_error, o.log, o.duration, None, false),
            Err(e) => {
                let timeout = matches!(e, WorkerError::Timeout { .. });
                let note = match &e {
                    WorkerError::Timeout { .. } => Some(format!(
                        "Task timed out after {:.2} seconds",
                        cfg.timeout_s as f64
                    )),
                    other => Some(format!("Error: {other}")),
                };
                let duration = if timeout {
                    Duration::from_secs(u64::from(cfg.timeout_s))
                } else {
                    Duration::ZERO
                };
                (
                    e.to_error_json(),
                    true,
                    e.log().to_vec(),
                    duration,
                    note,
                    timeout,
                )
            }
        };
        // 4.
        let text = logs::render(&Record {
            request_id: &request_id,
            version: &cfg.version,
            function_log: &log,
            duration,
            memory_mb: cfg.memory_mb,
            max_memory_used,
            cold,
            platform_note: note.as_deref(),
            format: cfg.logging.log_format,
            system_level: cfg.logging.system_level(),
            status: match (timeout, crashed, function_error) {
                (true, _, _) => "timeout",
                (_, true, _) => "failure",
                (_, _, true) => "error",
                _ => "success",
            },
        });
        self.logs.emit(&cfg.name, &cfg.version, &text);
        self.metrics.observe(&Observation {
            function: &cfg.name,
            version: &cfg.version,
            start,
            duration,
            init: cold.map(|c| c.duration),
            error: function_error,
            timeout,
        });
        Ok(SyncResult {
            request_id,
            version: cfg.version.clone(),
            body,
            function_error,
            log_result: input.tail.then(|| logs::tail(&text)),
            handler_duration: duration,
            start,
        })
    }

    /// Logs the `INIT_REPORT` of a version's build.
    pub(crate) fn log_init_report(&self, cfg: &VersionConfig, duration: Duration, ok: bool) {
        let kind = if cfg.snap_start_on() {
            "snap-start"
        } else {
            "on-demand"
        };
        let text = logs::init_report(cfg.logging.log_format, kind, duration, ok);
        self.logs.emit(&cfg.name, &cfg.version, &text);
    }

    /// The `/metrics` text.
    pub fn render_metrics(&self) -> String {
        let mut out = self
            .metrics
            .render(&self.scheduler.stats(), self.queued_events());
        crate::metrics::render_net(&mut out, &self.config.egress.stats.snapshot());
        crate::metrics::render_recycle(&mut out, &self.scheduler.factory().recycle_stats());
        crate::metrics::render_images(&mut out, &self.scheduler.factory().image_stats());
        out
    }
}

fn too_large(len: usize, max: usize) -> ApiError {
    ApiError::RequestTooLarge(format!(
        "Request must be smaller than {max} bytes for the InvokeFunction operation (got {len})"
    ))
}
