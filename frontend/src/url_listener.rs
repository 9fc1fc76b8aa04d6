//! The function URL listener: one port serving every function's URL.
//!
//! Routing (both on the same port):
//! - path-based, the form `FunctionUrl` reports: `http://HOST:PORT/<url id>/<path>`; the
//!   function sees `rawPath` `/<path>`;
//! - host-based, as on Lambda: `Host: <url id>.lambda-url.<region>.<anything>`; the function
//!   sees the whole path.
//!
//! Per request:
//! 1. Find the URL config by its id (404 `{"Message":"Not Found"}` if none).
//! 2. `AWS_IAM`: verify the SigV4 signature (service `lambda`) against the service's
//!    credentials (403 `{"Message":"Forbidden"}` otherwise); `NONE`: anyone may call.
//! 3. CORS preflight answered here when the config allows it ([`Cors::preflight`]).
//! 4. Resolve the function (its alias, if the URL has one; weights apply) and build the
//!    payload 2.0 event ([`url_event::event`]).
//! 5. Invoke it synchronously through [`Service::invoke`] (throttles are 429, a missing or
//!    inactive function 502/503), then map its result ([`url_event::response`]) and apply
//!    CORS.
use crate::auth::{sigv4, Auth};
use crate::backend::Backend;
use crate::errors::ApiError;
use crate::registry::UrlAuthType;
use crate::service::{InvokeInput, Service};
use crate::url_event::{self, UrlRequest, UrlResponse};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

/// Shared state of the listener.
#[derive(Debug)]
struct UrlState<B: Backend> {
    svc: Arc<Service<B>>,
    auth: Auth,
}

/// The listener's router over `svc`, verifying `AWS_IAM` URLs with `auth`.
pub fn router<B: Backend>(svc: Arc<Service<B>>, auth: Auth) -> Router {
    Router::new()
        .fallback(handle::<B>)
        .with_state(Arc::new(UrlState { svc, auth }))
}

/// Where a request is routed: the URL id and the path the function sees.
fn route<'a>(host: &str, path: &'a str) -> Option<(String, &'a str)> {
    let host = host.split(':').next().unwrap_or(host);
    if let Some((id, rest)) = host.split_once('.') {
        if rest.starts_with("lambda-url.") && is_url_id(id) {
            return Some((id.to_string(), path));
        }
    }
    let rest = path.strip_prefix('/')?;
    let (id, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    is_url_id(id).then(|| (id.to_string(), tail))
}

fn is_url_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn message(status: StatusCode, text: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        serde_json::json!({ "Message": text }).to_string(),
    )
        .into_response()
}

fn into_http(r: UrlResponse) -> Response {
    let mut builder = Response::builder().status(r.status);
    for (k, v) in &r.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    for c in &r.cookies {
        builder = builder.header("set-cookie", c.as_str());
    }
    builder
        .body(Body::from(r.body))
        .unwrap_or_else(|_| message(StatusCode::BAD_GATEWAY, "Internal Server Error"))
}

async fn handle<B: Backend>(State(st): State<Arc<UrlState<B>>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip());
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let full_path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    // 1.
    let Some((url_id, path)) = route(&host, &full_path) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let Some(url) = st.svc.registry.url_by_id(&url_id) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let bytes = match http_body_util::Limited::new(body, crate::limits::MAX_SYNC_PAYLOAD)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
    };
    // 2.
    if url.auth_type == UrlAuthType::AwsIam {
        if let Auth::Signed(verifier) = &st.auth {
            let signed = sigv4::SignedRequest {
                method: parts.method.as_str(),
                path: &full_path,
                query: &query,
                headers: &parts.headers,
            };
            let ok = verifier
                .precheck(&signed, SystemTime::now())
                .and_then(|c| c.verify(&bytes));
            if let Err(e) = ok {
                tracing::info!(url = %url_id, error = %e, "function URL: signature refused");
                return message(StatusCode::FORBIDDEN, "Forbidden");
            }
        }
    }
    // 3.
    let cors = url.cors.clone().unwrap_or_default();
    if url.cors.is_some() {
        if let Some(pre) = cors.preflight(parts.method.as_str(), &parts.headers) {
            return into_http(pre);
        }
    }
    // 4.
    let cfg = match st
        .svc
        .resolve_active(&url.function, url.qualifier.as_deref())
    {
        Ok(c) => c,
        Err(ApiError::ResourceNotFound(_)) => return message(StatusCode::NOT_FOUND, "Not Found"),
        Err(e) => return error_response(e),
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let protocol = match parts.version {
        axum::http::Version::HTTP_2 => "HTTP/2",
        axum::http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let event = url_event::event(&UrlRequest {
        method: parts.method.as_str(),
        raw_path: path,
        raw_query: &query,
        headers: &parts.headers,
        body: &bytes,
        source_ip: peer,
        url_id: &url_id,
        domain_name: host.split(':').next().unwrap_or(&host),
        account_id: &st.svc.arn.account_id,
        request_id: &request_id,
        now_ms: crate::time::now_ms(),
        protocol,
    });
    // 5.
    let input = InvokeInput {
        payload: event.to_string().into_bytes(),
        request_id: Some(request_id.clone()),
        qualifier: url.qualifier.clone(),
        ..InvokeInput::default()
    };
    let result = match st.svc.invoke(&cfg, input).await {
        Ok(r) => r,
        Err(e) => return error_response(e),
    };
    let mut resp = url_event::response(&result.body, result.function_error);
    if url.cors.is_some() {
        cors.apply(&parts.headers, &mut resp);
    }
    let mut resp = into_http(resp);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

/// An invoke that could not run, as a function URL answers it.
fn error_response(e: ApiError) -> Response {
    match e {
        ApiError::TooManyRequests(_) => message(StatusCode::TOO_MANY_REQUESTS, "Rate Exceeded."),
        ApiError::RequestTooLarge(_) => {
            message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
        }
        ApiError::ResourceConflict(_) => {
            message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        _ => message(StatusCode::BAD_GATEWAY, "Internal Server Error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "abcdefghijklmnopqrstuvwxyz012345";

    #[test]
    fn test_routes_by_path_and_by_host() {
        assert_eq!(
            route("127.0.0.1:9002", &format!("/{ID}/a/b")),
            Some((ID.to_string(), "/a/b"))
        );
        assert_eq!(
            route("127.0.0.1:9002", &format!("/{ID}")),
            Some((ID.to_string(), "/"))
        );
        assert_eq!(
            route(&format!("{ID}.lambda-url.us-east-1.localhost:9002"), "/x?y"),
            Some((ID.to_string(), "/x?y"))
        );
        assert_eq!(route("127.0.0.1", "/short/a"), None);
        assert_eq!(route("127.0.0.1", "/"), None);
        assert_eq!(
            route("127.0.0.1", &format!("/{}/", ID.to_uppercase())),
            None
        );
    }
}
