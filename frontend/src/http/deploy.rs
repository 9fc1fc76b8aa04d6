//! HTTP handlers of the operations deploy tools call beyond create/invoke/publish:
//! UpdateFunctionConfiguration, alias updates and listings, ListProvisionedConcurrencyConfigs,
//! GetAccountSettings, tags, GetFunctionCodeSigningConfig, event-invoke configs and function
//! URL configs. They parse and shape; [`crate::deploy`] and [`crate::lifecycle`] do the work.
use super::{json, json_body, QualifierQuery};
use crate::backend::Backend;
use crate::deploy::{InvokeConfigChange, UrlChange};
use crate::errors::ApiError;
use crate::lifecycle::ConfigChange;
use crate::names;
use crate::registry::{LogFormat, LogLevel, LoggingConfig, SnapStartApplyOn, UrlAuthType};
use crate::service::Service;
use crate::shapes;
use crate::url_event::Cors;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

type Svc<B> = State<Arc<Service<B>>>;

/// `Marker` / `MaxItems` of the List operations.
#[derive(Debug, Deserialize, Default)]
pub(super) struct PageQuery {
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<usize>,
    #[serde(rename = "FunctionVersion")]
    function_version: Option<String>,
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
    #[serde(rename = "List")]
    list: Option<String>,
}

impl PageQuery {
    fn max(&self) -> usize {
        self.max_items.unwrap_or(50).clamp(1, 10_000)
    }

    fn marker(&self) -> Option<&str> {
        self.marker.as_deref().filter(|m| !m.is_empty())
    }
}

/// A page of `items` after the item whose key is `marker`, and the next marker.
fn page<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    marker: Option<&str>,
    max: usize,
) -> (Vec<T>, Option<String>) {
    let mut it = items.into_iter().peekable();
    if let Some(m) = marker {
        while it.peek().is_some_and(|x| key(x) != m) {
            it.next();
        }
        it.next();
    }
    let out: Vec<T> = it.by_ref().take(max).collect();
    let next = it.peek().and(out.last().map(&key));
    (out, next)
}

/// A List operation's 200: `{<key>: items, NextMarker}` (the marker only when there is more).
fn listed(key: &str, items: Vec<Value>, next: Option<String>) -> Response {
    let mut v = json!({ key: items });
    if let Some(next) = next {
        v["NextMarker"] = json!(next);
    }
    json(StatusCode::OK, v)
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct EnvBody {
    pub variables: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct EphemeralBody {
    pub size: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct LoggingBody {
    pub log_format: Option<String>,
    pub application_log_level: Option<String>,
    pub system_log_level: Option<String>,
    pub log_group: Option<String>,
}

impl LoggingBody {
    /// The config, from Lambda's spellings.
    pub(crate) fn parse(self) -> Result<LoggingConfig, ApiError> {
        let log_format = match self.log_format.as_deref() {
            None | Some("Text") => LogFormat::Text,
            Some("JSON") => LogFormat::Json,
            Some(other) => {
                return Err(ApiError::InvalidParameter(format!(
                    "LoggingConfig.LogFormat must be Text or JSON (got {other})"
                )))
            }
        };
        let level = |what: &str, v: Option<String>| -> Result<Option<LogLevel>, ApiError> {
            v.map(|s| {
                LogLevel::parse(&s).ok_or_else(|| {
                    ApiError::InvalidParameter(format!(
                        "LoggingConfig.{what} must be TRACE, DEBUG, INFO, WARN, ERROR or FATAL (got {s})"
                    ))
                })
            })
            .transpose()
        };
        Ok(LoggingConfig {
            log_format,
            application_log_level: level("ApplicationLogLevel", self.application_log_level)?,
            system_log_level: level("SystemLogLevel", self.system_log_level)?,
            log_group: self.log_group,
        })
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct SnapStartBody {
    pub apply_on: Option<String>,
}

impl SnapStartBody {
    pub(crate) fn parse(self) -> Result<SnapStartApplyOn, ApiError> {
        match self.apply_on.as_deref() {
            None | Some("None") => Ok(SnapStartApplyOn::None),
            Some("PublishedVersions") => Ok(SnapStartApplyOn::PublishedVersions),
            Some(other) => Err(ApiError::InvalidParameter(format!(
                "SnapStart.ApplyOn must be None or PublishedVersions (got {other})"
            ))),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct DeadLetterBody {
    pub target_arn: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct UpdateConfigBody {
    runtime: Option<String>,
    handler: Option<String>,
    description: Option<String>,
    role: Option<String>,
    memory_size: Option<u32>,
    timeout: Option<u32>,
    environment: Option<EnvBody>,
    ephemeral_storage: Option<EphemeralBody>,
    logging_config: Option<LoggingBody>,
    snap_start: Option<SnapStartBody>,
    dead_letter_config: Option<DeadLetterBody>,
    revision_id: Option<String>,
}

pub(super) async fn update_configuration<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, None)?;
    let b: UpdateConfigBody = json_body(&body)?;
    let change = ConfigChange {
        runtime: b.runtime,
        handler: b.handler,
        description: b.description,
        role: b.role,
        memory_mb: b.memory_size,
        timeout_s: b.timeout,
        env: b.environment.map(|e| e.variables),
        ephemeral_mb: b.ephemeral_storage.and_then(|e| e.size),
        logging: b.logging_config.map(LoggingBody::parse).transpose()?,
        snap_start: b.snap_start.map(SnapStartBody::parse).transpose()?,
        dead_letter_target: b
            .dead_letter_config
            .map(|d| d.target_arn.filter(|t| !t.is_empty())),
        revision_id: b.revision_id,
    };
    let cfg = svc.update_function_configuration(&f.name, change)?;
    Ok(json(StatusCode::OK, shapes::configuration(&svc.arn, &cfg)))
}

pub(super) async fn list_versions<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, None)?;
    let (versions, next) = svc.registry.versions_page(&f.name, q.marker(), q.max())?;
    let versions: Vec<_> = versions
        .iter()
        .map(|c| shapes::configuration(&svc.arn, c))
        .collect();
    Ok(listed("Versions", versions, next))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RoutingBody {
    additional_version_weights: BTreeMap<String, f64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct AliasBody {
    name: String,
    function_version: String,
    description: String,
    routing_config: Option<RoutingBody>,
}

pub(super) async fn create_alias<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, None)?;
    let b: AliasBody = json_body(&body)?;
    let weights = b
        .routing_config
        .map(|r| r.additional_version_weights)
        .unwrap_or_default();
    let alias = svc.create_alias(
        &f.name,
        &b.name,
        &b.function_version,
        &b.description,
        weights,
    )?;
    Ok(json(StatusCode::CREATED, shapes::alias(&svc.arn, &alias)))
}

pub(super) async fn get_alias<B: Backend>(
    State(svc): Svc<B>,
    Path((name, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, None)?;
    let alias = svc.registry.get_alias(&f.name, &alias)?;
    Ok(json(StatusCode::OK, shapes::alias(&svc.arn, &alias)))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct UpdateAliasBody {
    function_version: Option<String>,
    description: Option<String>,
    routing_config: Option<RoutingBody>,
    revision_id: Option<String>,
}

pub(super) async fn update_alias<B: Backend>(
    State(svc): Svc<B>,
    Path((name, alias)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, None)?;
    let b: UpdateAliasBody = json_body(&body)?;
    let alias = svc.update_alias(
        &f.name,
        &alias,
        b.function_version,
        b.description,
        b.routing_config.map(|r| r.additional_version_weights),
        b.revision_id.as_deref(),
    )?;
    Ok(json(StatusCode::OK, shapes::alias(&svc.arn, &alias)))
}

pub(super) async fn delete_alias<B: Backend>(
    State(svc): Svc<B>,
    Path((name, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, None)?;
    svc.delete_alias(&f.name, &alias)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn list_aliases<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, None)?;
    let aliases = svc
        .registry
        .list_aliases(&f.name, q.function_version.as_deref())?;
    let (aliases, next) = page(aliases, |a| a.name.clone(), q.marker(), q.max());
    let aliases: Vec<_> = aliases.iter().map(|a| shapes::alias(&svc.arn, a)).collect();
    Ok(listed("Aliases", aliases, next))
}

/// GET `.../provisioned-concurrency`: one config with `Qualifier`, every config of the
/// function with `List=ALL` (ListProvisionedConcurrencyConfigs).
pub(super) async fn get_or_list_provisioned<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, q.qualifier.as_deref())?;
    if f.qualifier.is_some() || q.list.as_deref() != Some("ALL") {
        return Ok(json(
            StatusCode::OK,
            shapes::provisioned(&svc.get_provisioned(&f)?),
        ));
    }
    let records = svc.registry.provisioned_of(&f.name)?;
    let mut configs = Vec::new();
    for rec in records {
        let fv = thaw_scheduler::FunctionVersion::new(rec.function.clone(), rec.version.clone());
        let Some(live) = svc.scheduler.get_provisioned(&fv) else {
            continue;
        };
        let q = rec.qualifier.clone().unwrap_or(rec.version.clone());
        let mut v = shapes::provisioned(&live);
        v["FunctionArn"] = json!(format!("{}:{q}", svc.arn.function(&rec.function)));
        configs.push((q, v));
    }
    let (configs, next) = page(configs, |(q, _)| q.clone(), q.marker(), q.max());
    let configs: Vec<Value> = configs.into_iter().map(|(_, v)| v).collect();
    Ok(listed("ProvisionedConcurrencyConfigs", configs, next))
}

/// GetAccountSettings: limits and usage from the scheduler (the counting service) and the
/// registry, plus thaw's memory admission under `Thaw` (clients ignore unknown keys).
pub(super) async fn account_settings<B: Backend>(State(svc): Svc<B>) -> Response {
    let stats = svc.scheduler.stats();
    let limits = svc.scheduler.limits();
    let total_code: u64 = svc
        .registry
        .all_versions()
        .iter()
        .map(|v| v.code_size)
        .sum();
    let admission = match stats.admission {
        thaw_scheduler::Admission::MemorySize => json!({"Policy": "memory_size"}),
        thaw_scheduler::Admission::Measured {
            margin_pct,
            floor_bytes,
        } => json!({"Policy": "measured", "MarginPercent": margin_pct, "FloorBytes": floor_bytes}),
    };
    json(
        StatusCode::OK,
        json!({
            "AccountLimit": {
                "TotalCodeSize": 80u64 << 30,
                "CodeSizeUnzipped": 250u64 << 20,
                "CodeSizeZipped": 50u64 << 20,
                "ConcurrentExecutions": limits.account_concurrency,
                "UnreservedConcurrentExecutions":
                    limits.account_concurrency.saturating_sub(stats.reserved_concurrency_total),
            },
            "AccountUsage": {
                "TotalCodeSize": total_code,
                "FunctionCount": svc.registry.function_count(),
            },
            "Thaw": {
                "MemoryAdmission": admission,
                "MemoryBudgetBytes": stats.memory_budget,
                "MemoryChargedBytes": stats.memory_used,
            },
        }),
    )
}

/// The function a tagging ARN names (tags live on the unqualified function).
fn tagged_function(arn: &str) -> Result<String, ApiError> {
    let f = names::parse(arn, None)?;
    if f.qualifier.is_some() {
        return Err(ApiError::InvalidParameter(
            "Tags apply to functions, not to versions or aliases".into(),
        ));
    }
    Ok(f.name)
}

pub(super) async fn list_tags<B: Backend>(
    State(svc): Svc<B>,
    Path(arn): Path<String>,
) -> Result<Response, ApiError> {
    let tags = svc.registry.tags(&tagged_function(&arn)?)?;
    Ok(json(StatusCode::OK, json!({ "Tags": tags })))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct TagBody {
    tags: BTreeMap<String, String>,
}

pub(super) async fn tag<B: Backend>(
    State(svc): Svc<B>,
    Path(arn): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: TagBody = json_body(&body)?;
    svc.tag(&tagged_function(&arn)?, &b.tags)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The values of a repeated query key (`tagKeys=a&tagKeys=b`), form-decoded.
fn query_values(query: &str, key: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| crate::url_event::form_decode(v))
        .collect()
}

pub(super) async fn untag<B: Backend>(
    State(svc): Svc<B>,
    Path(arn): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let keys = query_values(query.as_deref().unwrap_or(""), "tagKeys");
    svc.untag(&tagged_function(&arn)?, &keys)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// GetFunctionCodeSigningConfig: thaw has no code signing, so none is configured.
pub(super) async fn code_signing_config<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, None)?;
    svc.registry.resolve(&f.name, None)?;
    Ok(json(
        StatusCode::OK,
        json!({"CodeSigningConfigArn": "", "FunctionName": f.name}),
    ))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct DestinationBody {
    destination: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct DestinationConfigBody {
    on_success: Option<DestinationBody>,
    on_failure: Option<DestinationBody>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct InvokeConfigBody {
    maximum_retry_attempts: Option<u32>,
    maximum_event_age_in_seconds: Option<u32>,
    destination_config: Option<DestinationConfigBody>,
}

impl InvokeConfigBody {
    fn change(self) -> InvokeConfigChange {
        let d = self.destination_config.unwrap_or_default();
        let dest =
            |b: Option<DestinationBody>| b.and_then(|b| b.destination).filter(|d| !d.is_empty());
        InvokeConfigChange {
            maximum_retry_attempts: self.maximum_retry_attempts,
            maximum_event_age_s: self.maximum_event_age_in_seconds,
            on_success: dest(d.on_success),
            on_failure: dest(d.on_failure),
        }
    }
}

async fn write_invoke_config<B: Backend>(
    svc: &Service<B>,
    name: &str,
    q: QualifierQuery,
    body: &[u8],
    merge: bool,
) -> Result<Response, ApiError> {
    let f = names::parse(name, q.qualifier.as_deref())?;
    let b: InvokeConfigBody = json_body(body)?;
    let c = svc.put_invoke_config(&f.name, f.qualifier.as_deref(), b.change(), merge)?;
    Ok(json(StatusCode::OK, shapes::invoke_config(&svc.arn, &c)))
}

pub(super) async fn put_invoke_config<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    write_invoke_config(&svc, &name, q, &body, false).await
}

pub(super) async fn update_invoke_config<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    write_invoke_config(&svc, &name, q, &body, true).await
}

pub(super) async fn get_invoke_config<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, q.qualifier.as_deref())?;
    let c = svc
        .registry
        .invoke_config(&f.name, f.qualifier.as_deref().unwrap_or("$LATEST"))?;
    Ok(json(StatusCode::OK, shapes::invoke_config(&svc.arn, &c)))
}

pub(super) async fn delete_invoke_config<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, q.qualifier.as_deref())?;
    svc.registry
        .delete_invoke_config(&f.name, f.qualifier.as_deref().unwrap_or("$LATEST"))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn list_invoke_configs<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, None)?;
    let all = svc.registry.invoke_configs(&f.name)?;
    let (items, next) = page(all, |c| c.qualifier.clone(), q.marker(), q.max());
    let items: Vec<_> = items
        .iter()
        .map(|c| shapes::invoke_config(&svc.arn, c))
        .collect();
    Ok(listed("FunctionEventInvokeConfigs", items, next))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct UrlBody {
    auth_type: Option<String>,
    cors: Option<Cors>,
    invoke_mode: Option<String>,
}

impl UrlBody {
    fn change(self) -> Result<UrlChange, ApiError> {
        let auth_type = match self.auth_type.as_deref() {
            None => None,
            Some("NONE") => Some(UrlAuthType::None),
            Some("AWS_IAM") => Some(UrlAuthType::AwsIam),
            Some(other) => {
                return Err(ApiError::InvalidParameter(format!(
                    "AuthType must be NONE or AWS_IAM (got {other})"
                )))
            }
        };
        Ok(UrlChange {
            auth_type,
            cors: self.cors,
            invoke_mode: self.invoke_mode,
        })
    }
}

pub(super) async fn create_url<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, q.qualifier.as_deref())?;
    let b: UrlBody = json_body(&body)?;
    let u = svc.create_url(&f.name, f.qualifier.as_deref(), b.change()?)?;
    Ok(json(
        StatusCode::CREATED,
        shapes::url_config(&svc.arn, &u, &svc.url_of(&u)),
    ))
}

pub(super) async fn update_url<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, q.qualifier.as_deref())?;
    let b: UrlBody = json_body(&body)?;
    let u = svc.update_url(&f.name, f.qualifier.as_deref(), b.change()?)?;
    Ok(json(
        StatusCode::OK,
        shapes::url_config(&svc.arn, &u, &svc.url_of(&u)),
    ))
}

fn url_qualifier(q: Option<&str>) -> Option<&str> {
    q.filter(|q| *q != "$LATEST")
}

pub(super) async fn get_url<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, q.qualifier.as_deref())?;
    let u = svc
        .registry
        .url(&f.name, url_qualifier(f.qualifier.as_deref()))?;
    Ok(json(
        StatusCode::OK,
        shapes::url_config(&svc.arn, &u, &svc.url_of(&u)),
    ))
}

pub(super) async fn delete_url<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, q.qualifier.as_deref())?;
    svc.registry
        .delete_url(&f.name, url_qualifier(f.qualifier.as_deref()))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn list_urls<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, None)?;
    let all = svc.registry.urls(&f.name)?;
    let (items, next) = page(all, |u| u.url_id.clone(), q.marker(), q.max());
    let items: Vec<_> = items
        .iter()
        .map(|u| shapes::url_config(&svc.arn, u, &svc.url_of(u)))
        .collect();
    Ok(listed("FunctionUrlConfigs", items, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_pages_and_repeated_query_keys() {
        let items: Vec<u32> = (1..=5).collect();
        let key = |x: &u32| x.to_string();
        assert_eq!(
            page(items.clone(), key, None, 2),
            (vec![1, 2], Some("2".into()))
        );
        assert_eq!(
            page(items.clone(), key, Some("2"), 2),
            (vec![3, 4], Some("4".into()))
        );
        assert_eq!(page(items.clone(), key, Some("4"), 2), (vec![5], None));
        assert_eq!(page(items, key, Some("3"), 10), (vec![4, 5], None));
        assert_eq!(
            query_values("tagKeys=a&x=1&tagKeys=b%20c&tagKeys=d%3Ae", "tagKeys"),
            vec!["a", "b c", "d:e"]
        );
    }
}
