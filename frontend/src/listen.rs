//! The two listeners' connections and their timeouts (`[timeouts]`): the HTTP accept loop (hyper
//! with a header-read timeout, graceful shutdown) and the gRPC connection stream, both over
//! [`IdleIo`], which closes a connection on which nothing was read or written for `idle_s` while no
//! request was in flight.
//!
//! HTTP/1: hyper's header-read timer starts when the connection begins waiting for a request head
//! (after accept, and after each response on a keep-alive connection) and closes the connection
//! if the head is not complete by then, so half a request line is closed after `header_read_s`.
//! HTTP/2 and gRPC: the server pings every `idle_s / 2`; a live client's acknowledgements count as
//! activity, so a call that runs longer than `idle_s` keeps its connection, while a peer that
//! stops answering (or never finished its preface) is closed.
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

/// A connection's activity: the last byte moved and the requests in flight.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Marks a request in flight until the guard drops.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// An I/O stream that fails with `TimedOut` once it has been idle (see the module docs).
#[derive(Debug)]
pub struct IdleIo<T> {
    inner: T,
    activity: Arc<Activity>,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl<T> IdleIo<T> {
    fn new(inner: T, activity: Arc<Activity>, idle: Duration) -> Self {
        activity.touch();
        Self {
            inner,
            timer: Box::pin(tokio::time::sleep(idle)),
            activity,
            idle,
        }
    }

    /// With the inner stream pending: `Err(TimedOut)` once idle, else arms the timer's waker.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let deadline = self.activity.last() + self.idle;
            if self.activity.in_flight.load(Ordering::Relaxed) == 0 && Instant::now() >= deadline {
                return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "connection idle"));
            }
            let next = if Instant::now() >= deadline {
                Instant::now() + self.idle
            } else {
                deadline
            };
            self.timer.as_mut().reset(next.into());
        }
    }
}

impl<T> IdleIo<T> {
    /// Counts a write that moved bytes as activity; a pending one waits on the idle timer too.
    fn after_write(
        &mut self,
        r: Poll<io::Result<usize>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.activity.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.activity.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(r, cx)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for IdleIo<TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// `[timeouts]` as durations.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
}

impl From<&crate::config::TimeoutsConfig> for Timeouts {
    fn from(c: &crate::config::TimeoutsConfig) -> Self {
        Self {
            header_read: Duration::from_secs(c.header_read_s.max(1)),
            idle: Duration::from_secs(c.idle_s.max(1)),
        }
    }
}

async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                return tcp;
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves `router` on `listener` until `stop` resolves, then lets open connections finish.
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    timeouts: Timeouts,
    stop: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(timeouts.idle / 2);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let tcp = tokio::select! {
            tcp = accept(&listener) => tcp,
            () = &mut stop => break,
        };
        let activity = Activity::new();
        // Handlers that need the client's address (function URLs' `sourceIp`) read it as
        // axum's `ConnectInfo`.
        let peer = tcp.peer_addr().ok();
        let io = TokioIo::new(IdleIo::new(tcp, Arc::clone(&activity), timeouts.idle));
        let inner = hyper_util::service::TowerToHyperService::new(router.clone());
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                if let Some(peer) = peer {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                }
                let guard = activity.begin();
                let fut = hyper::service::Service::call(&inner, req);
                async move {
                    let resp = fut.await;
                    drop(guard);
                    resp
                }
            });
        let conn = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The gRPC listener's connections, each an [`IdleIo`].
pub fn grpc_incoming(
    listener: TcpListener,
    timeouts: Timeouts,
) -> impl futures_util::Stream<Item = io::Result<IdleIo<TcpStream>>> {
    futures_util::stream::unfold(listener, move |listener| async move {
        let tcp = accept(&listener).await;
        let io = IdleIo::new(tcp, Activity::new(), timeouts.idle);
        Some((Ok(io), listener))
    })
}
