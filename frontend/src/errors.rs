//! The API's errors and the one place they become HTTP responses and gRPC statuses.
//!
//! Body shapes follow Lambda exactly: `ResourceNotFoundException` and
//! `ProvisionedConcurrencyConfigNotFoundException` carry `{Type, Message}`, the others
//! `{Type, message}`, and throttles add `Reason` and a `Retry-After` header. Every response carries
//! `x-amzn-ErrorType` (errors) and `x-amzn-RequestId`.
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use thaw_scheduler::ThrottleReason;

/// Seconds a throttled client is told to wait.
pub const RETRY_AFTER_SECS: u32 = 1;

/// An API failure, named for the Lambda error it becomes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// 404 `ResourceNotFoundException`.
    #[error("{0}")]
    ResourceNotFound(String),
    /// 404 `ProvisionedConcurrencyConfigNotFoundException`.
    #[error("{0}")]
    ProvisionedConfigNotFound(String),
    /// 409 `ResourceConflictException`.
    #[error("{0}")]
    ResourceConflict(String),
    /// 400 `InvalidParameterValueException`.
    #[error("{0}")]
    InvalidParameter(String),
    /// 413 `RequestTooLargeException`.
    #[error("{0}")]
    RequestTooLarge(String),
    /// 429 `TooManyRequestsException`.
    #[error("Rate Exceeded.")]
    TooManyRequests(ThrottleReason),
    /// 500 `ServiceException`.
    #[error("{0}")]
    Service(String),
    /// 403 `MissingAuthenticationTokenException`: the request is not signed.
    #[error("{0}")]
    MissingAuthenticationToken(String),
    /// 400 `IncompleteSignatureException`: a malformed signature.
    #[error("{0}")]
    IncompleteSignature(String),
    /// 403 `UnrecognizedClientException`: an unknown access key.
    #[error("{0}")]
    UnrecognizedClient(String),
    /// 403 `InvalidSignatureException`: a wrong or expired signature.
    #[error("{0}")]
    InvalidSignature(String),
    /// 405 `UnknownOperationException`: the path exists, the method does not.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 412 `PreconditionFailedException`: the caller's `RevisionId` is stale.
    #[error("{0}")]
    PreconditionFailed(String),
}

impl ApiError {
    /// The Lambda error name (`x-amzn-ErrorType`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::ResourceNotFound(_) => "ResourceNotFoundException",
            Self::ProvisionedConfigNotFound(_) => "ProvisionedConcurrencyConfigNotFoundException",
            Self::ResourceConflict(_) => "ResourceConflictException",
            Self::InvalidParameter(_) => "InvalidParameterValueException",
            Self::RequestTooLarge(_) => "RequestTooLargeException",
            Self::TooManyRequests(_) => "TooManyRequestsException",
            Self::Service(_) => "ServiceException",
            Self::MissingAuthenticationToken(_) => "MissingAuthenticationTokenException",
            Self::IncompleteSignature(_) => "IncompleteSignatureException",
            Self::UnrecognizedClient(_) => "UnrecognizedClientException",
            Self::InvalidSignature(_) => "InvalidSignatureException",
            Self::MethodNotAllowed(_) => "UnknownOperationException",
            Self::PreconditionFailed(_) => "PreconditionFailedException",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::ResourceNotFound(_) | Self::ProvisionedConfigNotFound(_) => StatusCode::NOT_FOUND,
            Self::ResourceConflict(_) => StatusCode::CONFLICT,
            Self::InvalidParameter(_) => StatusCode::BAD_REQUEST,
            Self::RequestTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Service(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::IncompleteSignature(_) => StatusCode::BAD_REQUEST,
            Self::MissingAuthenticationToken(_)
            | Self::UnrecognizedClient(_)
            | Self::InvalidSignature(_) => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
        }
    }

    /// The error for a response some layer below the handlers produced without one (an axum
    /// rejection: a bad query string, an unknown method): its status and plain-text message.
    pub fn from_plain(status: StatusCode, message: String) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::ResourceNotFound(message),
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed(message),
            StatusCode::PAYLOAD_TOO_LARGE => Self::RequestTooLarge(message),
            StatusCode::TOO_MANY_REQUESTS => {
                Self::TooManyRequests(ThrottleReason::ConcurrentInvocationLimitExceeded)
            }
            s if s.is_server_error() => Self::Service(message),
            _ => Self::InvalidParameter(message),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let msg = self.to_string();
        match self {
            Self::ResourceNotFound(_) | Self::ProvisionedConfigNotFound(_) => {
                serde_json::json!({"Type": "User", "Message": msg})
            }
            Self::TooManyRequests(reason) => {
                serde_json::json!({"Reason": reason.as_str(), "Type": "User", "message": msg})
            }
            Self::Service(_) => serde_json::json!({"Type": "Service", "message": msg}),
            Self::MissingAuthenticationToken(_)
            | Self::IncompleteSignature(_)
            | Self::InvalidSignature(_) => serde_json::json!({"message": msg}),
            _ => serde_json::json!({"Type": "User", "message": msg}),
        }
    }

    /// The gRPC status; metadata `x-amzn-errortype` carries [`ApiError::type_name`].
    pub fn to_status(&self) -> tonic::Status {
        use tonic::Code;
        let code = match self {
            Self::ResourceNotFound(_) | Self::ProvisionedConfigNotFound(_) => Code::NotFound,
            Self::ResourceConflict(_) | Self::PreconditionFailed(_) => Code::FailedPrecondition,
            Self::InvalidParameter(_) => Code::InvalidArgument,
            Self::RequestTooLarge(_) => Code::OutOfRange,
            Self::TooManyRequests(_) => Code::ResourceExhausted,
            Self::Service(_) => Code::Internal,
            Self::MissingAuthenticationToken(_)
            | Self::IncompleteSignature(_)
            | Self::UnrecognizedClient(_)
            | Self::InvalidSignature(_) => Code::Unauthenticated,
            Self::MethodNotAllowed(_) => Code::Unimplemented,
        };
        let message = match self {
            Self::TooManyRequests(reason) => format!("Rate Exceeded. ({reason})"),
            other => other.to_string(),
        };
        let mut status = tonic::Status::new(code, message);
        status.metadata_mut().insert(
            "x-amzn-errortype",
            tonic::metadata::MetadataValue::from_static(self.type_name()),
        );
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), axum::Json(self.body())).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            "x-amzn-errortype",
            HeaderValue::from_static(self.type_name()),
        );
        if let Self::TooManyRequests(_) = self {
            headers.insert("retry-after", HeaderValue::from(RETRY_AFTER_SECS));
        }
        resp
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        e.to_status()
    }
}

impl From<crate::auth::sigv4::SigV4Error> for ApiError {
    fn from(e: crate::auth::sigv4::SigV4Error) -> Self {
        use crate::auth::sigv4::SigV4Error as S;
        let msg = e.to_string();
        match e {
            S::Missing => Self::MissingAuthenticationToken(msg),
            S::Incomplete(_) => Self::IncompleteSignature(msg),
            S::UnknownKey => Self::UnrecognizedClient(msg),
            S::Expired { .. }
            | S::NotYetCurrent { .. }
            | S::Scope(_)
            | S::PayloadHash
            | S::UnsignedPayload
            | S::Mismatch => Self::InvalidSignature(msg),
        }
    }
}

impl From<crate::registry::RegistryError> for ApiError {
    fn from(e: crate::registry::RegistryError) -> Self {
        use crate::registry::RegistryError as R;
        match e {
            R::FunctionNotFound(_)
            | R::VersionNotFound(..)
            | R::AliasNotFound(..)
            | R::EventInvokeConfigNotFound(_)
            | R::UrlNotFound(_)
            | R::PolicyNotFound(_)
            | R::StatementNotFound(..) => Self::ResourceNotFound(e.to_string()),
            R::FunctionExists(_)
            | R::StatementExists(_)
            | R::AliasExists(..)
            | R::UrlExists(_)
            | R::UpdateInProgress(_)
            | R::VersionInUse(..) => Self::ResourceConflict(e.to_string()),
            R::RevisionMismatch => Self::PreconditionFailed(e.to_string()),
            R::Store(_) | R::Decode(_) | R::Codec(_) => {
                Self::Service(thaw_worker::error::error_chain(&e))
            }
        }
    }
}
