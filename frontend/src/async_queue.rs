//! The async (Event) executor. Events are stored synced in the registry before the caller gets
//! 202, so a crash loses none; they are deleted only after they ran or finally failed, so each
//! runs at least once.
//!
//! Per event:
//! 1. Look the version up; if it is gone the event is dropped.
//! 2. Invoke it. Success -> delete.
//! 3. A function error (or a failed instance start, or a `Failed` version) counts an attempt:
//!    after `max_attempts` (1 + Lambda's 2 retries) delete, else persist the count and wait
//!    `retry_delay_ms x attempts`.
//! 4. A throttle or a `Pending` version is not an attempt: wait `retry_delay_ms` and try again.
use crate::backend::Backend;
use crate::errors::ApiError;
use crate::registry::{AsyncEvent, FunctionState, RegistryError};
use crate::service::{InvokeInput, Service};
use base64::Engine;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

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
    Attempt,
    Wait,
}

async fn run_event<B: Backend>(svc: &Arc<Service<B>>, mut event: AsyncEvent) {
    let cfg = &svc.config.async_events;
    let delay = Duration::from_millis(cfg.retry_delay_ms);
    let payload = base64::engine::general_purpose::STANDARD
        .decode(&event.payload)
        .unwrap_or_default();
    loop {
        // 1. 2.
        let step = match svc.registry.get(&event.function, &event.version) {
            Err(RegistryError::FunctionNotFound(_) | RegistryError::VersionNotFound(..)) => {
                Step::Done("dropped")
            }
            Err(e) => {
                tracing::warn!(error = %e, "registry read failed for an async event");
                Step::Wait
            }
            Ok(v) if v.state == FunctionState::Failed => Step::Attempt,
            Ok(v) if v.state == FunctionState::Pending => Step::Wait,
            Ok(v) => {
                let input = InvokeInput {
                    payload: payload.clone(),
                    client_context: event.client_context.clone(),
                    tail: false,
                    request_id: Some(event.request_id.clone()),
                };
                match svc.invoke(&v, input).await {
                    Ok(r) if !r.function_error => Step::Done("succeeded"),
                    Ok(_) | Err(ApiError::Service(_)) => Step::Attempt,
                    Err(ApiError::TooManyRequests(_) | ApiError::ResourceConflict(_)) => Step::Wait,
                    Err(_) => Step::Done("dropped"),
                }
            }
        };
        match step {
            Step::Done(outcome) => return finish(svc, &event, outcome),
            // 3.
            Step::Attempt => {
                event.attempts += 1;
                if event.attempts >= cfg.max_attempts {
                    tracing::warn!(request_id = %event.request_id, function = %event.function, attempts = event.attempts, "async event failed after all attempts");
                    return finish(svc, &event, "failed");
                }
                svc.metrics.async_event("retried");
                if let Err(e) = persist(svc, &event).await {
                    tracing::error!(error = %e, "cannot record an async event's attempt");
                }
                tokio::time::sleep(delay * event.attempts).await;
            }
            // 4.
            Step::Wait => tokio::time::sleep(delay).await,
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
