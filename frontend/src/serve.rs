//! `thaw serve`: loads the configuration, opens the registry (RocksDB under the data directory),
//! builds the worker's instance factory, and runs the HTTP and gRPC servers until SIGINT or
//! SIGTERM, then shuts down gracefully (in-flight requests finish; queued async events stay
//! stored and run after the next start).
//!
//! [`start`] is the embeddable part, generic over the [`Backend`], so tests run the real servers
//! over the fake backend on ephemeral ports.
use crate::backend::Backend;
use crate::config::Config;
use crate::grpc::GrpcService;
use crate::service::{Service, ServiceError};
use anyhow::Context;
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use thaw_snapshotter::KvStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// `thaw serve` flags (they override the config file).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (see `frontend/src/config.rs` for keys).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// HTTP listen address (Lambda API, /metrics) [default: 127.0.0.1:9000].
    #[arg(long)]
    pub http: Option<String>,
    /// gRPC listen address [default: 127.0.0.1:50051].
    #[arg(long)]
    pub grpc: Option<String>,
    /// Function URL listen address [default: 127.0.0.1:9002].
    #[arg(long)]
    pub urls: Option<String>,
    /// Data directory (registry, module cache) [default: $THAW_DATA or ~/.thaw].
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// Why the servers could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the service")]
    Service(#[from] ServiceError),
    #[error("refusing to serve anonymously on {addr}, which is not a loopback address: configure [auth] credentials, or set allow_anonymous = true under [auth]")]
    AnonymousNotLoopback { addr: SocketAddr },
}

/// Running servers.
#[derive(Debug)]
pub struct Running<B: Backend> {
    /// Where the HTTP API listens.
    pub http: SocketAddr,
    /// Where the gRPC service listens.
    pub grpc: SocketAddr,
    /// Where function URLs are served.
    pub urls: SocketAddr,
    /// The service (for tests and embedding).
    pub service: Arc<Service<B>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    executor: JoinHandle<()>,
}

impl<B: Backend> Running<B> {
    /// Stops accepting, lets in-flight requests finish, and waits for both servers.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.service.stop();
        let _ = self.executor.await;
    }
}

async fn bind(addr: &str) -> Result<tokio::net::TcpListener, StartError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.into(),
            source,
        })
}

/// Starts the service and both servers on `config.http` / `config.grpc` (port 0 picks one).
pub async fn start<B: Backend>(
    config: Config,
    backend: B,
    kv: Arc<dyn KvStore>,
) -> Result<Running<B>, StartError> {
    let http_listener = bind(&config.http).await?;
    let grpc_listener = bind(&config.grpc).await?;
    let urls_listener = bind(&config.urls).await?;
    let urls = urls_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.urls.clone(),
            source,
        })?;
    let http = http_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.http.clone(),
            source,
        })?;
    let grpc = grpc_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.grpc.clone(),
            source,
        })?;
    let auth = crate::auth::Auth::from_config(&config.auth, &config.region);
    if matches!(auth, crate::auth::Auth::Anonymous) && !config.auth.allow_anonymous {
        if let Some(addr) = [http, grpc, urls]
            .into_iter()
            .find(|a| !a.ip().is_loopback())
        {
            return Err(StartError::AnonymousNotLoopback { addr });
        }
    }
    let timeouts = crate::listen::Timeouts::from(&config.timeouts);
    let (service, executor) = Service::start(config, backend, kv)?;
    service.set_url_base(format!("http://{urls}"));
    let (stop, rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let router = crate::http::router(Arc::clone(&service));
    let http_task = tokio::spawn(crate::listen::serve_http(
        http_listener,
        router,
        timeouts,
        stopped(rx.clone()),
    ));
    let urls_task = tokio::spawn(crate::listen::serve_http(
        urls_listener,
        crate::url_listener::router(Arc::clone(&service), auth.clone()),
        timeouts,
        stopped(rx.clone()),
    ));
    let grpc_server = tonic::service::interceptor::InterceptedService::new(
        GrpcService::server(Arc::clone(&service)),
        auth,
    );
    let grpc_task = tokio::spawn(async move {
        let incoming = crate::listen::grpc_incoming(grpc_listener, timeouts);
        let result = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(timeouts.idle / 2))
            .http2_keepalive_timeout(Some(timeouts.idle / 2))
            .add_service(grpc_server)
            .serve_with_incoming_shutdown(incoming, stopped(rx))
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "gRPC server failed");
        }
    });
    Ok(Running {
        http,
        grpc,
        urls,
        service,
        stop,
        tasks: vec![http_task, grpc_task, urls_task],
        executor,
    })
}

async fn signalled() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
    }
}

/// The `thaw serve` command. `data_dir` resolves the data directory from a flag; `module_cache`
/// names the module cache inside it.
pub fn main(
    args: ServeArgs,
    data_dir: fn(Option<PathBuf>) -> PathBuf,
    module_cache: fn(&Path) -> PathBuf,
) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("THAW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(http) = args.http {
        config.http = http;
    }
    if let Some(grpc) = args.grpc {
        config.grpc = grpc;
    }
    if let Some(urls) = args.urls {
        config.urls = urls;
    }
    let data = data_dir(args.data.or(config.data.clone()));
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let kv = thaw_snapshotter::RocksKv::open(&data.join("registry")).context("opening the registry database")?;
        let cache = config.module_cache.clone().unwrap_or_else(|| module_cache(&data));
        let mode: thaw_worker::MemoryMode = config.restore_mode.parse().map_err(anyhow::Error::msg)?;
        let provisioned_mode: thaw_worker::MemoryMode = match config.provisioned_restore_mode.as_str() {
            "" => mode,
            m => m.parse().map_err(anyhow::Error::msg).context("bad provisioned_restore_mode")?,
        };
        let net = config.egress.context().context("bad [egress] section")?;
        let overhead = config.limits.instance_overhead_mb << 20;
        let inline_slice = std::time::Duration::from_micros(config.inline_slice_us);
        let worker_data = data.clone();
        // Opening the worker compiles CPython on the first start (tens of seconds): the
        // servers listen meanwhile (crate::deferred).
        let factory = crate::deferred::DeferredFactory::new(
            "loading the python3.12 runtime (the first start precompiles it, ~15-30 s)",
            overhead,
            move || {
                let mut worker = thaw_worker::Worker::open_with_cache(thaw_worker::DataDir::new(&worker_data), &thaw_worker::runtime::default_runtime_dir(), &cache)
                    .map_err(|e| format!("loading the python3.12 runtime and the snapshot store: {}", thaw_worker::error::error_chain(&e)))?;
                worker.set_net(net);
                Ok(thaw_worker::factory::WorkerFactory::new(worker, mode, overhead)
                    .with_inline_slice(inline_slice)
                    .with_provisioned_mode(provisioned_mode))
            },
        );
        let running = start(config, factory, Arc::new(kv)).await?;
        tracing::info!(http = %running.http, grpc = %running.grpc, urls = %running.urls, data = %data.display(), "thaw serve is listening");
        println!("thaw serve: http://{} grpc://{} urls http://{} data {}", running.http, running.grpc, running.urls, data.display());
        signalled().await;
        running.shutdown().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
