//! The size limits the listeners apply: the largest request body the HTTP API (read once, by
//! the auth layer) and the gRPC service accept, and the largest payload each invocation type
//! carries (a function URL request is a synchronous invocation).

/// Largest request body accepted (a 50 MB zip, base64 in JSON).
pub const MAX_BODY: usize = 80 << 20;
/// Synchronous invocations carry at most 6 MiB.
pub const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;
/// Asynchronous invocations carry at most 256 KiB.
pub const MAX_ASYNC_PAYLOAD: usize = 256 * 1024;
