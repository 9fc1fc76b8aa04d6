//! Who may call the API. With `[auth] credentials`, every HTTP request but `/health` carries an
//! AWS SigV4 signature by one of the configured keys ([`sigv4`]); gRPC calls and `/metrics` carry
//! `authorization: Bearer <access key id>:<secret access key>` (the same key pairs; `/metrics` also
//! takes a SigV4 signature, so Prometheus can scrape with a bearer token; a
//! bearer secret travels in the clear, so off-host gRPC belongs behind TLS). Without credentials
//! the service is anonymous, which `thaw serve` allows only on loopback addresses unless
//! `allow_anonymous = true` (checked when the server starts).
//!
//! The HTTP layer ([`http_layer`]) also reads every request body, capped at
//! [`MAX_BODY`], so a too-large body is one JSON `RequestTooLargeException` whatever
//! the route, and the signature is checked over the bytes the handler will see.
pub mod sigv4;

pub use sigv4::{Secret, SigV4Error, Verifier};

use crate::config::AuthConfig;
use crate::errors::ApiError;
use crate::limits::MAX_BODY;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::SystemTime;

/// The service's authentication policy.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Every request is served (loopback, or `allow_anonymous`).
    Anonymous,
    /// Requests must be signed by one of the verifier's keys.
    Signed(Arc<Verifier>),
}

impl Auth {
    /// The policy `[auth]` asks for, for the service's `region`.
    pub fn from_config(cfg: &AuthConfig, region: &str) -> Self {
        if cfg.credentials.is_empty() {
            return Self::Anonymous;
        }
        let keys = cfg
            .credentials
            .iter()
            .map(|c| (c.access_key_id.clone(), c.secret_access_key.clone()));
        Self::Signed(Arc::new(Verifier::new(
            keys,
            region,
            cfg.allow_unsigned_payload,
        )))
    }

    /// Checks an `authorization: Bearer <key id>:<secret>` value (gRPC metadata, `/metrics`).
    pub fn check_bearer(&self, value: Option<&[u8]>) -> Result<(), SigV4Error> {
        let Self::Signed(verifier) = self else {
            return Ok(());
        };
        let value = value.ok_or(SigV4Error::Missing)?;
        let token = value.strip_prefix(b"Bearer ").ok_or(SigV4Error::Missing)?;
        let token = std::str::from_utf8(token).map_err(|_| SigV4Error::UnknownKey)?;
        let (key_id, secret) = token.split_once(':').ok_or(SigV4Error::UnknownKey)?;
        let known = verifier.secret(key_id).ok_or(SigV4Error::UnknownKey)?;
        if constant_time_eq(known.expose().as_bytes(), secret.as_bytes()) {
            Ok(())
        } else {
            Err(SigV4Error::UnknownKey)
        }
    }
}

fn is_bearer(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get("authorization")
        .is_some_and(|v| v.as_bytes().starts_with(b"Bearer "))
}

/// Equality whose time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The axum middleware: reads the body (capped), then verifies the request per [`Auth`].
pub async fn http_layer(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let checked = match (&auth, path) {
        (_, "/health") | (Auth::Anonymous, _) => None,
        (Auth::Signed(_), "/metrics") if is_bearer(&parts.headers) => {
            let bearer = parts.headers.get("authorization").map(|v| v.as_bytes());
            if let Err(e) = auth.check_bearer(bearer) {
                return ApiError::from(e).into_response();
            }
            None
        }
        (Auth::Signed(verifier), _) => {
            let req = sigv4::SignedRequest {
                method: parts.method.as_str(),
                path,
                query: parts.uri.query().unwrap_or(""),
                headers: &parts.headers,
            };
            match verifier.precheck(&req, SystemTime::now()) {
                Ok(c) => Some(c),
                Err(e) => return ApiError::from(e).into_response(),
            }
        }
    };
    let bytes = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return ApiError::RequestTooLarge(format!(
                "Request must be smaller than {} bytes.",
                MAX_BODY
            ))
            .into_response()
        }
        Err(_) => {
            return ApiError::InvalidParameter("the request body could not be read".into())
                .into_response()
        }
    };
    if let Some(checked) = checked {
        if let Err(e) = checked.verify(&bytes) {
            return ApiError::from(e).into_response();
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let bearer = req.metadata().get("authorization").map(|v| v.as_bytes());
        self.check_bearer(bearer)
            .map_err(|e| ApiError::from(e).to_status())?;
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CredentialConfig;

    #[test]
    fn test_bearer_tokens() {
        let cfg = AuthConfig {
            credentials: vec![CredentialConfig {
                access_key_id: "AK".into(),
                secret_access_key: Secret::new("sec"),
            }],
            ..AuthConfig::default()
        };
        let auth = Auth::from_config(&cfg, "us-east-1");
        auth.check_bearer(Some(b"Bearer AK:sec")).unwrap();
        assert_eq!(auth.check_bearer(None), Err(SigV4Error::Missing));
        assert_eq!(auth.check_bearer(Some(b"AK:sec")), Err(SigV4Error::Missing));
        for bad in [
            &b"Bearer AK:se"[..],
            b"Bearer AK:secc",
            b"Bearer XX:sec",
            b"Bearer AKsec",
        ] {
            assert_eq!(auth.check_bearer(Some(bad)), Err(SigV4Error::UnknownKey));
        }
        Auth::Anonymous.check_bearer(None).unwrap();
        assert!(matches!(
            Auth::from_config(&AuthConfig::default(), "us-east-1"),
            Auth::Anonymous
        ));
    }
}
