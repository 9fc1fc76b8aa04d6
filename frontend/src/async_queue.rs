//! The async (Event) executor. Events are stored synced in the registry before the caller gets
//! 202, so a crash loses none; they are deleted only after they ran or finally failed, so each
//! runs at least once.
//!
//! Per event:
//! 1. Look the version up; if it is gone the event is dropped. Read the event-invoke config of
//!    the qualifier it was sent to (`MaximumRetryAttempts`, `MaximumEventAgeInSeconds`,
//!    destinations); without one, `[async] max_attempts` and 6 hours apply.
//! 2. An event older than its maximum age is not run: it fails with `EventAgeExceeded`.
//! 3. Invoke it. Success -> the OnSuccess destination gets the record, delete.
//! 4. A function error (or a failed instance start, or a `Failed` version) counts an attempt:
//!    after the last one the OnFailure destination gets the record (`RetriesExhausted`) and the
//!    version's dead-letter target gets the event, delete; else persist the count and wait
//!    `retry_delay_ms x attempts`.
//! 5. A throttle or a `Pending` version is not an attempt: wait `retry_delay_ms` and try again.
//!
//! Destinations are thaw functions; a record is delivered as an Event invocation of the
//! destination (queued durably like any other) in Lambda's shape:
//! `{version, timestamp, requestContext {requestId, functionArn, condition,
//! approximateInvokeCount}, requestPayload, responseContext {statusCode, executedVersion,
//! functionError}, responsePayload}`.
use crate::backend::Backend;
use crate::errors::ApiError;
use crate::registry::{AsyncEvent, EventInvokeConfig, FunctionState, RegistryError};
use crate::service::{InvokeInput, Service, SyncResult};
use base64::Engine;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

/// Lambda's default `MaximumEventAgeInSeconds`.
pub const DEFAULT_MAX_EVENT_AGE_S: u32 = 6 * 3600;

/// Runs `backlog` and then whatever arrives on `rx`, `config.async.concurrency` at a time.
/// Stops (aborting events in flight; they stay stored) once the service is stopped.
pub fn spawn_executor<B: Backend>(
    svc: Arc<Service<B>>,
    mut rx: mpsc::UnboundedReceiver<AsyncEvent>,
    backlog: Vec<AsyncEvent>,
) -> JoinHandle<()> {
    let permits = Arc::new(Semaphore::new(svc.config.async_events.concurrency.max(1)));
    tokio::spawn(async move {
        let mut backlog = backlog.into_iter();
        let mut tasks = JoinSet::new();
        let stopped = svc.stopped();
        tokio::pin!(stopped);
        loop {
            let event = match backlog.next() {
                Some(e) => e,
                None => tokio::select! {
                    e = rx.recv() => match e {
                        Some(e) => e,
                        None => break,
                    },
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
                    _ = &mut stopped => break,
                },
            };
            let permit = tokio::select! {
                p = Arc::clone(&permits).acquire_owned() => p.expect("semaphore never closed"),
                _ = &mut stopped => break,
            };
            let svc = Arc::clone(&svc);
            tasks.spawn(async move {
                run_event(&svc, event).await;
                drop(permit);
            });
        }
        tasks.shutdown().await;
    })
}

enum Step {
    Done(&'static str),
    Attempt(Option<SyncResult>),
    Wait,
}

/// Why an event ended, for its destination record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
}

impl Condition {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::RetriesExhausted => "RetriesExhausted",
            Self::EventAgeExceeded => "EventAgeExceeded",
        }
    }
}

async fn run_event<B: Backend>(svc: &Arc<Service<B>>, mut event: AsyncEvent) {
    let cfg = &svc.config.async_events;
    let delay = Duration::from_millis(cfg.retry_delay_ms);
    let payload = base64::engine::general_purpose::STANDARD
        .decode(&event.payload)
        .unwrap_or_default();
    loop {
        // 1.
        let qualifier = event.qualifier.as_deref().unwrap_or("$LATEST");
        let invoke_cfg = svc.registry.invoke_config(&event.function, qualifier).ok();
        let max_attempts = invoke_cfg
            .as_ref()
            .and_then(|c| c.maximum_retry_attempts)
            .map_or(cfg.max_attempts, |r| r + 1)
            .max(1);
        let max_age_s = invoke_cfg
            .as_ref()
            .and_then(|c| c.maximum_event_age_s)
            .unwrap_or(DEFAULT_MAX_EVENT_AGE_S);
        // 2.
        let age_ms = crate::time::now_ms().saturating_sub(event.enqueued_ms);
        if age_ms > u64::from(max_age_s) * 1000 {
            tracing::warn!(request_id = %event.request_id, function = %event.function, age_ms, "async event too old: not run");
            deliver_failure(
                svc,
                &event,
                invoke_cfg.as_ref(),
                Condition::EventAgeExceeded,
                None,
                &payload,
            )
            .await;
            return finish(svc, &event, "expired");
        }
        // 3.
        let step = match svc.registry.get(&event.function, &event.version) {
            Err(RegistryError::FunctionNotFound(_) | RegistryError::VersionNotFound(..)) => {
                Step::Done("dropped")
            }
            Err(e) => {
                tracing::warn!(error = %e, "registry read failed for an async event");
                Step::Wait
            }
            Ok(v) if v.serving().state == FunctionState::Failed => Step::Attempt(None),
            Ok(v) if v.serving().state == FunctionState::Pending => Step::Wait,
            Ok(v) => {
                let v = Arc::new(v.serving().clone());
                let input = InvokeInput {
                    payload: payload.clone(),
                    client_context: event.client_context.clone(),
                    tail: false,
                    request_id: Some(event.request_id.clone()),
                    qualifier: event.qualifier.clone(),
                };
                match svc.invoke(&v, input).await {
                    Ok(r) if !r.function_error => {
                        event.attempts += 1;
                        if let Some(dest) =
                            invoke_cfg.as_ref().and_then(|c| c.on_success.as_deref())
                        {
                            let record = destination_record(
                                svc,
                                &event,
                                Condition::Success,
                                Some(&r),
                                &payload,
                            );
                            deliver(svc, dest, &record).await;
                        }
                        Step::Done("succeeded")
                    }
                    Ok(r) => Step::Attempt(Some(r)),
                    Err(ApiError::Service(_)) => Step::Attempt(None),
                    Err(ApiError::TooManyRequests(_) | ApiError::ResourceConflict(_)) => Step::Wait,
                    Err(_) => Step::Done("dropped"),
                }
            }
        };
        match step {
            Step::Done(outcome) => return finish(svc, &event, outcome),
            // 4.
            Step::Attempt(result) => {
                event.attempts += 1;
                if event.attempts >= max_attempts {
                    tracing::warn!(request_id = %event.request_id, function = %event.function, attempts = event.attempts, "async event failed after all attempts");
                    deliver_failure(
                        svc,
                        &event,
                        invoke_cfg.as_ref(),
                        Condition::RetriesExhausted,
                        result.as_ref(),
                        &payload,
                    )
                    .await;
                    return finish(svc, &event, "failed");
                }
                svc.metrics.async_event("retried");
                if let Err(e) = persist(svc, &event).await {
                    tracing::error!(error = %e, "cannot record an async event's attempt");
                }
                tokio::time::sleep(delay * event.attempts).await;
            }
            // 5.
            Step::Wait => tokio::time::sleep(delay).await,
        }
    }
}

/// Sends a failed event to its OnFailure destination (the record) and to the version's
/// dead-letter target (the event itself).
async fn deliver_failure<B: Backend>(
    svc: &Arc<Service<B>>,
    event: &AsyncEvent,
    invoke_cfg: Option<&EventInvokeConfig>,
    condition: Condition,
    result: Option<&SyncResult>,
    payload: &[u8],
) {
    if let Some(dest) = invoke_cfg.and_then(|c| c.on_failure.as_deref()) {
        let record = destination_record(svc, event, condition, result, payload);
        deliver(svc, dest, &record).await;
    }
    let dlq = svc
        .registry
        .get(&event.function, &event.version)
        .ok()
        .and_then(|v| v.serving().dead_letter_target.clone());
    if let Some(dlq) = dlq {
        deliver(svc, &dlq, payload).await;
    }
}

/// Lambda's destination record.
fn destination_record<B: Backend>(
    svc: &Service<B>,
    event: &AsyncEvent,
    condition: Condition,
    result: Option<&SyncResult>,
    payload: &[u8],
) -> Vec<u8> {
    let as_json = |b: &[u8]| {
        serde_json::from_slice::<Value>(b)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned()))
    };
    let mut record = json!({
        "version": "1.0",
        "timestamp": crate::time::iso_timestamp(crate::time::now_ms()),
        "requestContext": {
            "requestId": event.request_id,
            "functionArn": format!("{}:{}", svc.arn.function(&event.function), event.qualifier.as_deref().unwrap_or("$LATEST")),
            "condition": condition.as_str(),
            "approximateInvokeCount": event.attempts,
        },
        "requestPayload": as_json(payload),
    });
    if let Some(r) = result {
        let mut ctx = json!({"statusCode": 200, "executedVersion": r.version});
        if r.function_error {
            ctx["functionError"] = json!("Unhandled");
        }
        record["responseContext"] = ctx;
        record["responsePayload"] = as_json(&r.body);
    }
    record.to_string().into_bytes()
}

/// Queues `payload` as an Event invocation of the destination function `arn`.
async fn deliver<B: Backend>(svc: &Arc<Service<B>>, arn: &str, payload: &[u8]) {
    let target = crate::names::parse(arn, None)
        .map_err(|e| e.to_string())
        .and_then(|f| {
            svc.registry
                .resolve(&f.name, f.qualifier.as_deref())
                .map(|c| (c, f.qualifier))
                .map_err(|e| e.to_string())
        });
    let (cfg, qualifier) = match target {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(destination = %arn, error = %e, "async destination not found: record dropped");
            svc.metrics.async_event("destination_failed");
            return;
        }
    };
    let input = InvokeInput {
        payload: payload.to_vec(),
        qualifier,
        ..InvokeInput::default()
    };
    match svc.enqueue(&cfg, input).await {
        Ok(_) => svc.metrics.async_event("delivered"),
        Err(e) => {
            tracing::warn!(destination = %arn, error = %e, "async destination refused the record");
            svc.metrics.async_event("destination_failed");
        }
    }
}

async fn persist<B: Backend>(svc: &Arc<Service<B>>, event: &AsyncEvent) -> Result<(), String> {
    let (svc, event) = (Arc::clone(svc), event.clone());
    tokio::task::spawn_blocking(move || svc.registry.update_event(&event))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

fn finish<B: Backend>(svc: &Arc<Service<B>>, event: &AsyncEvent, outcome: &'static str) {
    svc.metrics.async_event(outcome);
    if let Err(e) = svc.registry.delete_event(event.seq) {
        tracing::error!(error = %e, seq = event.seq, "cannot delete a finished async event (it will run again)");
        return;
    }
    svc.event_finished();
}
