//! Provisioned and reserved concurrency operations of the HTTP API.
use super::{json, json_body, QualifierQuery};
use crate::backend::Backend;
use crate::errors::ApiError;
use crate::names;
use crate::service::Service;
use crate::shapes;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

type Svc<B> = State<Arc<Service<B>>>;

#[derive(Debug, Deserialize)]
struct ProvisionedBody {
    #[serde(rename = "ProvisionedConcurrentExecutions")]
    n: u32,
}

pub(super) async fn put_provisioned<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, q.qualifier.as_deref())?;
    let b: ProvisionedBody = json_body(&body)?;
    let config = svc.put_provisioned(&f, b.n)?;
    Ok(json(StatusCode::ACCEPTED, shapes::provisioned(&config)))
}

pub(super) async fn delete_provisioned<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, q.qualifier.as_deref())?;
    svc.delete_provisioned(&f)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
struct ReservedBody {
    #[serde(rename = "ReservedConcurrentExecutions")]
    n: u32,
}

pub(super) async fn put_reserved<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, None)?;
    let b: ReservedBody = json_body(&body)?;
    let n = svc.put_reserved(&f.name, b.n)?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({ "ReservedConcurrentExecutions": n }),
    ))
}

pub(super) async fn delete_reserved<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, None)?;
    svc.delete_reserved(&f.name)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn get_reserved<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, None)?;
    svc.registry.resolve(&f.name, None)?;
    let v = match svc.registry.reserved(&f.name) {
        Some(n) => serde_json::json!({ "ReservedConcurrentExecutions": n }),
        None => serde_json::json!({}),
    };
    Ok(json(StatusCode::OK, v))
}
