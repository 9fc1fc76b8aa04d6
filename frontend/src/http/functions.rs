//! Function, version and alias operations of the HTTP API.
use super::deploy::{DeadLetterBody, EnvBody, EphemeralBody, LoggingBody, SnapStartBody};
use super::{json, json_body, QualifierQuery};
use crate::backend::Backend;
use crate::errors::ApiError;
use crate::lifecycle::CreateFunction;
use crate::names;
use crate::service::Service;
use crate::shapes;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

type Svc<B> = State<Arc<Service<B>>>;

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CodeBody {
    zip_file: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    function_name: String,
    runtime: Option<String>,
    handler: Option<String>,
    code: CodeBody,
    memory_size: Option<u32>,
    timeout: Option<u32>,
    environment: Option<EnvBody>,
    publish: bool,
    description: String,
    role: String,
    ephemeral_storage: Option<EphemeralBody>,
    logging_config: Option<LoggingBody>,
    snap_start: Option<SnapStartBody>,
    dead_letter_config: Option<DeadLetterBody>,
    tags: BTreeMap<String, String>,
}

fn decode_zip(b64: Option<&str>) -> Result<Vec<u8>, ApiError> {
    let b64 = b64.ok_or_else(|| {
        ApiError::InvalidParameter(
            "Code.ZipFile is required (S3 and image code are not supported)".into(),
        )
    })?;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| ApiError::InvalidParameter("ZipFile is not valid base64".into()))
}

pub(super) async fn create<B: Backend>(
    State(svc): Svc<B>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: CreateBody = json_body(&body)?;
    let req = CreateFunction {
        name: b.function_name,
        runtime: b
            .runtime
            .ok_or_else(|| ApiError::InvalidParameter("Runtime is required".into()))?,
        handler: b
            .handler
            .ok_or_else(|| ApiError::InvalidParameter("Handler is required".into()))?,
        zip: decode_zip(b.code.zip_file.as_deref())?,
        memory_mb: b.memory_size,
        timeout_s: b.timeout,
        env: b.environment.map(|e| e.variables).unwrap_or_default(),
        description: b.description,
        role: b.role,
        publish: b.publish,
        ephemeral_mb: b.ephemeral_storage.and_then(|e| e.size),
        logging: b.logging_config.map(LoggingBody::parse).transpose()?,
        snap_start: b.snap_start.map(SnapStartBody::parse).transpose()?,
        dead_letter_target: b
            .dead_letter_config
            .and_then(|d| d.target_arn)
            .filter(|t| !t.is_empty()),
        tags: b.tags,
    };
    let cfg = svc.create_function(req)?;
    Ok(json(
        StatusCode::CREATED,
        shapes::configuration(&svc.arn, &cfg),
    ))
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct ListQuery {
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<usize>,
}

pub(super) async fn list<B: Backend>(
    State(svc): Svc<B>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let max = q.max_items.unwrap_or(50).clamp(1, 10_000);
    let (page, next) = svc
        .registry
        .list(q.marker.as_deref().filter(|m| !m.is_empty()), max);
    let functions: Vec<_> = page
        .iter()
        .map(|c| shapes::configuration(&svc.arn, c))
        .collect();
    let mut v = serde_json::json!({ "Functions": functions });
    if let Some(next) = next {
        v["NextMarker"] = next.into();
    }
    Ok(json(StatusCode::OK, v))
}

pub(super) async fn get<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, q.qualifier.as_deref())?;
    let cfg = svc.registry.resolve(&f.name, f.qualifier.as_deref())?;
    Ok(json(
        StatusCode::OK,
        shapes::get_function(
            &svc.arn,
            &cfg,
            svc.registry.reserved(&f.name),
            &svc.registry.tags(&f.name)?,
        ),
    ))
}

pub(super) async fn get_configuration<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, q.qualifier.as_deref())?;
    let cfg = svc.registry.resolve(&f.name, f.qualifier.as_deref())?;
    Ok(json(StatusCode::OK, shapes::configuration(&svc.arn, &cfg)))
}

pub(super) async fn delete<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, q.qualifier.as_deref())?;
    svc.delete_function(&f)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct UpdateCodeBody {
    zip_file: Option<String>,
    publish: bool,
    revision_id: Option<String>,
}

pub(super) async fn update_code<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, None)?;
    let b: UpdateCodeBody = json_body(&body)?;
    let zip = decode_zip(b.zip_file.as_deref())?;
    let cfg = svc.update_function_code(&f.name, &zip, b.publish, b.revision_id.as_deref())?;
    Ok(json(StatusCode::OK, shapes::configuration(&svc.arn, &cfg)))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct PublishBody {
    description: String,
    revision_id: Option<String>,
    code_sha256: Option<String>,
}

pub(super) async fn publish<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, None)?;
    let b: PublishBody = json_body(&body)?;
    if let Some(want) = b.code_sha256.as_deref().filter(|s| !s.is_empty()) {
        let latest = svc.registry.get(&f.name, "$LATEST")?;
        if latest.code_sha256 != want {
            return Err(ApiError::InvalidParameter(format!(
                "CodeSHA256 ({want}) is different from current CodeSHA256 in $LATEST ({}). Please try again with the CodeSHA256 in $LATEST.",
                latest.code_sha256
            )));
        }
    }
    let cfg = svc.publish_version(&f.name, &b.description, b.revision_id.as_deref())?;
    Ok(json(
        StatusCode::CREATED,
        shapes::configuration(&svc.arn, &cfg),
    ))
}
