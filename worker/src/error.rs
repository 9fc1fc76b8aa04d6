//! Errors of the worker. `Function*` variants are the user's fault and carry a
//! message fit to show them; the rest are platform failures.
use thiserror::Error;

/// What went wrong building or running an instance.
#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("reading function code from {path}")]
    ReadCode {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("function code is not a valid zip archive")]
    BadZip(#[source] zip::result::ZipError),
    #[error("function code has an unsafe path {0:?} (absolute or climbing out with ..)")]
    UnsafePath(String),
    #[error("function code is {size} bytes unpacked, over the {max}-byte limit")]
    CodeTooLarge { size: u64, max: u64 },
    #[error("handler {handler:?} is not of the form module.function")]
    BadHandler { handler: String },
    #[error("handler module {module:?} not found in the function code (looked for {candidates})")]
    HandlerModuleMissing { module: String, candidates: String },
    #[error("the python runtime module is missing at {path}: run scripts/setup.sh")]
    RuntimeMissing {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("precompiling the runtime module failed")]
    Compile(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("module cache I/O at {path}")]
    Cache {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("MemorySize {memory_mb} MiB is too small: the minimum is {needed_mb} MiB")]
    MemoryTooSmall { memory_mb: u32, needed_mb: u64 },
    #[error("request payload of {len} bytes exceeds the {max}-byte limit")]
    PayloadTooLarge { len: u64, max: u64 },
    #[error("function init failed")]
    InitFailed { body: Vec<u8>, log: Vec<u8> },
    #[error("Task timed out after {secs:.2} seconds")]
    Timeout { secs: f64, log: Vec<u8> },
    #[error("the instance crashed: {message}")]
    Crashed { message: String, log: Vec<u8> },
    #[error("microVM failure")]
    Vm(#[from] thaw_vmm::VmError),
    #[error("the instance is not ready for an invocation (it failed earlier)")]
    NotReady,
    #[error("snapshot state blob is unreadable")]
    StateBlob(#[source] thaw_snapshotter::CodecError),
    #[error("snapshot state record is malformed: {0}")]
    StateRecord(String),
    #[error("storing the snapshot failed")]
    StoreSnapshot(#[source] thaw_snapshotter::WriterError),
    #[error("snapshot store")]
    Store(#[source] thaw_snapshotter::StoreError),
    #[error("snapshot {id} is marked bad ({reason}); it must be rebuilt from a cold boot")]
    SnapshotBad { id: String, reason: String },
    #[error("snapshot {id} was taken from other function code or another runtime; refusing to restore it")]
    SnapshotStale { id: String },
    #[error("memory mode {0} is not available in this build")]
    ModeUnsupported(&'static str),
    #[error("starting the lazy-memory pager")]
    Pager(#[source] thaw_pager::PagerError),
    #[error("creating a shared memory image")]
    SharedImage(#[source] thaw_pager::SharedError),
    #[error("snapshot {snapshot} could not be paged in")]
    PagerFault {
        snapshot: String,
        #[source]
        source: thaw_pager::PagerError,
    },
    #[error("the instance crashed: a guest page of snapshot {snapshot} could not be served")]
    PageFault {
        snapshot: String,
        #[source]
        source: thaw_pager::PagerError,
        log: Vec<u8>,
    },
}

impl WorkerError {
    /// True when stored snapshot bytes failed verification, whichever path read them (a
    /// restore, a prefetch, a page fault during an invocation): the snapshot must be marked
    /// bad and rebuilt. Decided on the typed `#[source]`s, never on message text.
    pub fn is_corrupt(&self) -> bool {
        match self {
            Self::Store(e) => e.is_corrupt(),
            Self::PagerFault { source, .. } | Self::PageFault { source, .. } => source.is_corrupt(),
            Self::StateBlob(_) | Self::StateRecord(_) => true,
            _ => false,
        }
    }

    /// True when the snapshot itself is unusable (corrupt, bad, stale, unreadable):
    /// the caller should rebuild it from a cold boot.
    pub fn is_snapshot_fault(&self) -> bool {
        self.is_corrupt()
            || matches!(
                self,
                Self::Store(thaw_snapshotter::StoreError::SnapshotBad { .. })
                    | Self::Store(thaw_snapshotter::StoreError::NoSuchSnapshot(_))
                    | Self::SnapshotBad { .. }
                    | Self::SnapshotStale { .. }
            )
    }
}

impl WorkerError {
    /// The Lambda-style error JSON for a failed invocation or init.
    pub fn to_error_json(&self) -> Vec<u8> {
        let (ty, msg) = match self {
            Self::InitFailed { body, .. } => return body.clone(),
            Self::Timeout { .. } => ("Sandbox.Timedout", self.to_string()),
            Self::Crashed { message, .. }
                if message.contains("memory allocation") || message.contains("out of memory") =>
            {
                (
                    "Runtime.OutOfMemory",
                    format!("Runtime exited: guest memory exhausted ({message})"),
                )
            }
            Self::Crashed { message, .. } => (
                "Runtime.ExitError",
                format!("Runtime exited with error: {message}"),
            ),
            Self::PayloadTooLarge { .. } => ("RequestTooLargeException", self.to_string()),
            other => ("ServiceException", error_chain(other)),
        };
        serde_json::json!({ "errorMessage": msg, "errorType": ty })
            .to_string()
            .into_bytes()
    }

    /// The log the guest wrote before failing, if any.
    pub fn log(&self) -> &[u8] {
        match self {
            Self::InitFailed { log, .. }
            | Self::Timeout { log, .. }
            | Self::Crashed { log, .. }
            | Self::PageFault { log, .. } => log,
            _ => &[],
        }
    }
}

/// `error: cause: cause` in one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
