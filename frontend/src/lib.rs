//! thaw's frontend library: `thaw serve` (the Lambda-compatible HTTP API, the gRPC service, the
//! function registry, async invocations, metrics) over the scheduler. The service is generic over
//! its [`backend::Backend`] so tests drive it with a fake instead of microVMs.
#![forbid(unsafe_code)]

pub mod async_queue;
pub mod auth;
pub mod backend;
pub mod config;
pub mod deferred;
pub mod deploy;
pub mod errors;
pub mod fake;
pub mod grpc;
pub mod http;
pub mod lifecycle;
pub mod limits;
pub mod listen;
pub mod logs;
pub mod metrics;
pub mod names;
pub mod registry;
pub mod serve;
pub mod service;
pub mod shapes;
mod startup;
pub mod time;
pub mod url_event;
pub mod url_listener;
pub mod validate;

/// The generated gRPC types and service traits (`proto/thaw.proto`).
#[allow(missing_debug_implementations, clippy::all)]
pub mod proto {
    tonic::include_proto!("thaw.v1");
}
