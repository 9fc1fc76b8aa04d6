//! The Lambda-compatible HTTP API (rest-json, as botocore speaks it; see LAMBDA-API.md) and
//! `/metrics`. Handlers parse requests and shape responses; the work happens in
//! [`crate::service`] and [`crate::lifecycle`]; errors become responses only in
//! [`crate::errors`].
mod concurrency;
mod deploy;
mod functions;
mod invoke;
mod policy;

use crate::backend::Backend;
use crate::errors::ApiError;
use crate::limits::MAX_BODY;
use crate::service::Service;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::Deserialize;
use std::sync::Arc;

/// The `Qualifier` query parameter.
#[derive(Debug, Deserialize, Default)]
pub struct QualifierQuery {
    #[serde(rename = "Qualifier")]
    pub qualifier: Option<String>,
}

/// The HTTP API over `svc`.
pub fn router<B: Backend>(svc: Arc<Service<B>>) -> Router {
    let auth = crate::auth::Auth::from_config(&svc.config.auth, &svc.config.region);
    Router::new()
        .route(
            "/2015-03-31/functions",
            post(functions::create::<B>).get(functions::list::<B>),
        )
        .route(
            "/2015-03-31/functions/",
            post(functions::create::<B>).get(functions::list::<B>),
        )
        .route(
            "/2015-03-31/functions/{name}",
            get(functions::get::<B>).delete(functions::delete::<B>),
        )
        .route(
            "/2015-03-31/functions/{name}/configuration",
            get(functions::get_configuration::<B>).put(deploy::update_configuration::<B>),
        )
        .route(
            "/2015-03-31/functions/{name}/code",
            put(functions::update_code::<B>),
        )
        .route(
            "/2015-03-31/functions/{name}/versions",
            post(functions::publish::<B>).get(deploy::list_versions::<B>),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases",
            post(deploy::create_alias::<B>).get(deploy::list_aliases::<B>),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases/{alias}",
            get(deploy::get_alias::<B>)
                .put(deploy::update_alias::<B>)
                .delete(deploy::delete_alias::<B>),
        )
        .route(
            "/2015-03-31/functions/{name}/policy",
            post(policy::add_permission::<B>).get(policy::get_policy::<B>),
        )
        .route(
            "/2015-03-31/functions/{name}/policy/{sid}",
            delete(policy::remove_permission::<B>),
        )
        .route(
            "/2015-03-31/functions/{name}/invocations",
            post(invoke::invoke::<B>),
        )
        .route(
            "/2019-09-30/functions/{name}/provisioned-concurrency",
            put(concurrency::put_provisioned::<B>)
                .get(deploy::get_or_list_provisioned::<B>)
                .delete(concurrency::delete_provisioned::<B>),
        )
        .route(
            "/2017-10-31/functions/{name}/concurrency",
            put(concurrency::put_reserved::<B>).delete(concurrency::delete_reserved::<B>),
        )
        .route(
            "/2019-09-30/functions/{name}/concurrency",
            get(concurrency::get_reserved::<B>),
        )
        .route(
            "/2016-08-19/account-settings",
            get(deploy::account_settings::<B>),
        )
        .route(
            "/2016-08-19/account-settings/",
            get(deploy::account_settings::<B>),
        )
        .route(
            "/2017-03-31/tags/{arn}",
            get(deploy::list_tags::<B>)
                .post(deploy::tag::<B>)
                .delete(deploy::untag::<B>),
        )
        .route(
            "/2020-06-30/functions/{name}/code-signing-config",
            get(deploy::code_signing_config::<B>),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config",
            put(deploy::put_invoke_config::<B>)
                .post(deploy::update_invoke_config::<B>)
                .get(deploy::get_invoke_config::<B>)
                .delete(deploy::delete_invoke_config::<B>),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config/list",
            get(deploy::list_invoke_configs::<B>),
        )
        .route(
            "/2021-10-31/functions/{name}/url",
            post(deploy::create_url::<B>)
                .put(deploy::update_url::<B>)
                .get(deploy::get_url::<B>)
                .delete(deploy::delete_url::<B>),
        )
        .route(
            "/2021-10-31/functions/{name}/urls",
            get(deploy::list_urls::<B>),
        )
        .route("/metrics", get(metrics::<B>))
        .route("/health", get(|| async { "ok" }))
        .fallback(|| async { ApiError::ResourceNotFound("Unknown operation".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            auth,
            crate::auth::http_layer,
        ))
        .layer(axum::middleware::map_response(finish_response))
        .with_state(svc)
}

/// Every error response is Lambda's JSON shape with `x-amzn-ErrorType` (axum's own rejections,
/// such as a malformed query string or an unknown method, arrive as plain text and are rewritten
/// here); every response carries `x-amzn-RequestId`.
async fn finish_response(resp: Response) -> Response {
    let mut resp =
        if resp.status().as_u16() >= 400 && !resp.headers().contains_key("x-amzn-errortype") {
            let status = resp.status();
            let text = match http_body_util::BodyExt::collect(resp.into_body()).await {
                Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim().to_string(),
                Err(_) => String::new(),
            };
            let text = if text.is_empty() {
                status.canonical_reason().unwrap_or("error").to_string()
            } else {
                text
            };
            ApiError::from_plain(status, text).into_response()
        } else {
            resp
        };
    if !resp.headers().contains_key("x-amzn-requestid") {
        if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            resp.headers_mut().insert("x-amzn-requestid", v);
        }
    }
    resp
}

async fn metrics<B: Backend>(State(svc): State<Arc<Service<B>>>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        svc.render_metrics(),
    )
        .into_response()
}

/// Parses a JSON body (empty means `{}`) into `T`; malformed input is InvalidParameterValue.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidParameter(format!("invalid request body: {e}")))
}

/// A JSON response with `status`.
pub(crate) fn json(status: StatusCode, v: serde_json::Value) -> Response {
    (status, axum::Json(v)).into_response()
}
