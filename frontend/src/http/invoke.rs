//! `POST /2015-03-31/functions/{name}/invocations`: RequestResponse (200, with
//! `X-Amz-Function-Error`, `X-Amz-Executed-Version` and, with `X-Amz-Log-Type: Tail`,
//! `X-Amz-Log-Result`), Event (202 once stored) and DryRun (204).
use super::QualifierQuery;
use crate::backend::Backend;
use crate::errors::ApiError;
use crate::limits::MAX_SYNC_PAYLOAD;
use crate::names;
use crate::service::{InvocationType, InvokeInput, Service};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine;
use std::sync::Arc;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn invocation_type(headers: &HeaderMap) -> Result<InvocationType, ApiError> {
    match header(headers, "x-amz-invocation-type") {
        None | Some("RequestResponse") => Ok(InvocationType::RequestResponse),
        Some("Event") => Ok(InvocationType::Event),
        Some("DryRun") => Ok(InvocationType::DryRun),
        Some(other) => Err(ApiError::InvalidParameter(format!(
            "invalid X-Amz-Invocation-Type: {other}"
        ))),
    }
}

fn client_context(headers: &HeaderMap) -> Result<Option<serde_json::Value>, ApiError> {
    let Some(b64) = header(headers, "x-amz-client-context") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::InvalidParameter(
            "Client context must be a valid Base64-encoded JSON object.".into(),
        )
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| bad())?;
    serde_json::from_slice(&raw).map(Some).map_err(|_| bad())
}

fn response(status: StatusCode, request_id: &str, body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

pub(super) async fn invoke<B: Backend>(
    State(svc): State<Arc<Service<B>>>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, q.qualifier.as_deref())?;
    let kind = invocation_type(&headers)?;
    if body.len() > MAX_SYNC_PAYLOAD {
        return Err(ApiError::RequestTooLarge(format!("Request must be smaller than {MAX_SYNC_PAYLOAD} bytes for the InvokeFunction operation")));
    }
    let cfg = svc.resolve_active(&f.name, f.qualifier.as_deref())?;
    let input = InvokeInput {
        payload: body.to_vec(),
        client_context: client_context(&headers)?,
        tail: header(&headers, "x-amz-log-type") == Some("Tail"),
        request_id: None,
        qualifier: f.qualifier.clone(),
    };
    match kind {
        InvocationType::DryRun => Ok(response(
            StatusCode::NO_CONTENT,
            &uuid::Uuid::new_v4().to_string(),
            Body::empty(),
        )),
        InvocationType::Event => {
            let request_id = svc.enqueue(&cfg, input).await?;
            Ok(response(StatusCode::ACCEPTED, &request_id, Body::empty()))
        }
        InvocationType::RequestResponse => {
            let r = svc.invoke(&cfg, input).await?;
            let mut resp = response(StatusCode::OK, &r.request_id, Body::from(r.body));
            let h = resp.headers_mut();
            h.insert("content-type", HeaderValue::from_static("application/json"));
            if let Ok(v) = HeaderValue::from_str(&r.version) {
                h.insert("x-amz-executed-version", v);
            }
            h.insert(
                "x-thaw-duration-us",
                HeaderValue::from(r.handler_duration.as_micros() as u64),
            );
            if r.function_error {
                h.insert(
                    "x-amz-function-error",
                    HeaderValue::from_static("Unhandled"),
                );
            }
            if let Some(log) = r.log_result.and_then(|l| HeaderValue::from_str(&l).ok()) {
                h.insert("x-amz-log-result", log);
            }
            Ok(resp)
        }
    }
}
