//! A [`Backend`] over the scheduler's [`FakeFactory`] ([`FakeBackend`]), so the HTTP and gRPC surfaces are testable
//! without KVM. The fake "function" answers `{"echo": <event>}` and obeys a few event keys:
//! `{"fail": true}` (function error), `{"crash": true}` (instance dies), `{"sleep_ms": N}`,
//! `{"env": true}` (the answer adds `"env"`: the environment of the spec the instance was
//! made from, so tests can see which configuration served).
//! A function whose handler is `fail.init` fails its build (init error).
use crate::backend::Backend;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thaw_scheduler::fake::{FakeFactory, FakeInstance};

/// What a fake instance reports as its memory use (REPORT's Max Memory Used).
pub const FAKE_MEMORY_USED: u64 = 7 << 20;
use thaw_scheduler::{FactoryError, FunctionVersion, InstanceFactory, RestoreKind};
use thaw_worker::factory::{ColdStart, StartKind};
use thaw_worker::{FunctionSpec, InvokeOutcome, InvokeRequest, WorkerError};

/// The scheduler's fake factory plus the specs the service registered.
#[derive(Debug, Clone)]
pub struct FakeBackend {
    /// The wrapped fake (restore/discard counters, failure and delay knobs).
    pub factory: FakeFactory,
    specs: Arc<Mutex<HashMap<FunctionVersion, Arc<FunctionSpec>>>>,
    /// The spec each live instance was made from, by serial.
    made_from: Arc<Mutex<HashMap<u64, Arc<FunctionSpec>>>>,
    invoked: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl FakeBackend {
    /// A fake charging `memory_bytes` per instance.
    pub fn new(memory_bytes: u64) -> Self {
        Self {
            factory: FakeFactory::new(memory_bytes),
            specs: Arc::default(),
            made_from: Arc::default(),
            invoked: Arc::default(),
        }
    }

    /// Payloads of every invocation so far, in order.
    pub fn invoked(&self) -> Vec<Vec<u8>> {
        self.invoked.lock().clone()
    }
}

impl InstanceFactory for FakeBackend {
    type Instance = FakeInstance;

    fn restore(
        &self,
        fv: &FunctionVersion,
        kind: RestoreKind,
    ) -> impl Future<Output = Result<FakeInstance, FactoryError>> + Send {
        let spec = self.specs.lock().get(fv).cloned();
        let unknown = fv.clone();
        let fut = self.factory.restore(fv, kind);
        let made_from = Arc::clone(&self.made_from);
        async move {
            let Some(spec) = spec else {
                return Err(FactoryError::UnknownVersion(unknown));
            };
            let instance = fut.await?;
            made_from.lock().insert(instance.serial, spec);
            Ok(instance)
        }
    }

    fn memory_bytes(&self, fv: &FunctionVersion) -> u64 {
        self.factory.memory_bytes(fv)
    }

    fn discard(&self, instance: FakeInstance) {
        self.made_from.lock().remove(&instance.serial);
        self.factory.discard(instance)
    }
}

impl Backend for FakeBackend {
    fn define(&self, fv: &FunctionVersion, spec: Arc<FunctionSpec>) {
        self.specs.lock().insert(fv.clone(), spec);
    }

    fn forget(&self, fv: &FunctionVersion) {
        self.specs.lock().remove(fv);
    }

    async fn build(
        &self,
        _fv: &FunctionVersion,
        spec: Arc<FunctionSpec>,
    ) -> Result<ColdStart, WorkerError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if spec.handler == "fail.init" {
            return Err(WorkerError::InitFailed {
                body: br#"{"errorMessage": "boom at import", "errorType": "RuntimeError"}"#
                    .to_vec(),
                log: b"Traceback: boom\n".to_vec(),
            });
        }
        Ok(ColdStart {
            kind: StartKind::Boot,
            duration: Duration::from_millis(5),
        })
    }

    async fn invoke(
        &self,
        instance: &FakeInstance,
        req: InvokeRequest,
    ) -> Result<InvokeOutcome, WorkerError> {
        let t0 = Instant::now();
        self.invoked.lock().push(req.payload.clone());
        let event: serde_json::Value =
            serde_json::from_slice(&req.payload).unwrap_or(serde_json::Value::Null);
        if let Some(ms) = event.get("sleep_ms").and_then(|v| v.as_u64()) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let log = format!("fake instance {} ran\n", instance.serial).into_bytes();
        if event.get("crash").is_some() {
            return Err(WorkerError::Crashed {
                message: "fake crash".into(),
                log,
            });
        }
        let request_id = req
            .request_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let (function_error, body) = if event.get("fail").is_some() {
            (
                true,
                br#"{"errorMessage": "fake failure", "errorType": "Exception"}"#.to_vec(),
            )
        } else {
            let mut answer = serde_json::json!({ "echo": event });
            if event.get("env").is_some() {
                let env = self
                    .made_from
                    .lock()
                    .get(&instance.serial)
                    .map(|s| s.env.clone())
                    .unwrap_or_default();
                answer["env"] = serde_json::json!(env);
            }
            (false, answer.to_string().into_bytes())
        };
        Ok(InvokeOutcome {
            request_id,
            function_error,
            body,
            log,
            duration: t0.elapsed(),
            max_memory_used: FAKE_MEMORY_USED,
        })
    }

    fn max_memory_used(&self, _instance: &FakeInstance) -> u64 {
        FAKE_MEMORY_USED
    }

    fn cold_start(&self, _instance: &FakeInstance) -> ColdStart {
        ColdStart {
            kind: StartKind::Restore,
            duration: Duration::from_millis(1),
        }
    }
}
