//! What the registry could not do ([`RegistryError`]): a missing or existing resource, a stale
//! revision, an update in progress, a store or decode failure.
use thaw_snapshotter::KvError;

/// What the registry could not do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Function not found: {0}")]
    FunctionNotFound(String),
    #[error("Function not found: {0}:{1}")]
    VersionNotFound(String, String),
    #[error("Alias not found: {0}:{1}")]
    AliasNotFound(String, String),
    #[error("Function already exist: {0}")]
    FunctionExists(String),
    #[error("Alias already exists: {0}:{1}")]
    AliasExists(String, String),
    /// The caller's `RevisionId` is not the resource's current one.
    #[error("The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")]
    RevisionMismatch,
    /// An update of the function is still being built.
    #[error("The operation cannot be performed at this time. An update is in progress for resource: {0}")]
    UpdateInProgress(String),
    #[error("The function {0} doesn't have an EventInvokeConfig")]
    EventInvokeConfigNotFound(String),
    #[error("The resource you requested does not exist. (function URL of {0})")]
    UrlNotFound(String),
    #[error("Function URL already exists for {0}")]
    UrlExists(String),
    #[error("The resource you requested does not exist. (policy of {0})")]
    PolicyNotFound(String),
    #[error("The resource you requested does not exist. (statement {1} in the policy of {0})")]
    StatementNotFound(String, String),
    #[error("The statement id ({0}) provided already exists. Please provide a new statement id, or remove the existing statement.")]
    StatementExists(String),
    #[error("Unable to delete version {0} because the following aliases reference it: [{1}]")]
    VersionInUse(String, String),
    #[error("registry storage failed")]
    Store(#[from] KvError),
    #[error("registry record is corrupt")]
    Decode(#[from] serde_json::Error),
    #[error("registry record is corrupt")]
    Codec(#[from] thaw_snapshotter::CodecError),
}

/// A registry operation's result.
pub(crate) type Result<T> = std::result::Result<T, RegistryError>;
