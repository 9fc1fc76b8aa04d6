//! The control plane: CreateFunction, UpdateFunctionCode, PublishVersion, aliases, deletes, and
//! provisioned and reserved concurrency, plus the background build that moves a version from
//! `Pending` to `Active` or `Failed`.
//!
//! Build of a version (CreateFunction, PublishVersion, UpdateFunctionCode, or one interrupted by
//! a restart):
//! 1. Load its code from the registry and register its spec with the backend.
//! 2. `Backend::build` (today: boot once and run init; later: boot -> init -> snapshot).
//! 3. Record `Active`, or `Failed` with the init error as `StateReason`, unless a newer update
//!    replaced the version meanwhile (its revision id changed).
use crate::backend::Backend;
use crate::errors::ApiError;
use crate::names::{validate_alias, validate_name, FunctionRef};
use crate::registry::{revision_id, Alias, FunctionState, ProvRecord, UpdateStatus, VersionConfig};
use crate::service::Service;
use crate::time::now_ms;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use thaw_scheduler::{FunctionVersion, ProvisionedConfig, ProvisionedError};
use thaw_worker::{FunctionCode, FunctionSpec, WorkerError};

/// The runtimes thaw can run.
pub const RUNTIMES: &[&str] = &["python3.12"];

/// CreateFunction's inputs.
#[derive(Debug, Default, Clone)]
pub struct CreateFunction {
    pub name: String,
    pub runtime: String,
    pub handler: String,
    pub zip: Vec<u8>,
    pub memory_mb: Option<u32>,
    pub timeout_s: Option<u32>,
    pub env: BTreeMap<String, String>,
    pub description: String,
    pub role: String,
    pub publish: bool,
}

/// Checks a zip and returns (base64 sha256, hex sha256).
fn check_zip(zip: &[u8]) -> Result<(String, String), ApiError> {
    FunctionCode::from_zip(zip)
        .map_err(|e| ApiError::InvalidParameter(format!("Could not unzip uploaded file: {e}")))?;
    let digest = Sha256::digest(zip);
    let hex = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok((
        base64::engine::general_purpose::STANDARD.encode(digest),
        hex,
    ))
}

/// `errorType: errorMessage` from a Lambda error JSON, else the text.
fn init_reason(e: &WorkerError) -> String {
    if let WorkerError::InitFailed { body, .. } = e {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
            let ty = v
                .get("errorType")
                .and_then(|t| t.as_str())
                .unwrap_or("Runtime.InitError");
            let msg = v.get("errorMessage").and_then(|t| t.as_str()).unwrap_or("");
            return format!("{ty}: {msg}");
        }
        return String::from_utf8_lossy(body).into_owned();
    }
    thaw_worker::error::error_chain(e)
}

impl<B: Backend> Service<B> {
    /// Builds the worker spec of a version from its stored code and registers it.
    pub(crate) fn define(&self, cfg: &VersionConfig) -> Result<(), String> {
        let zip = self
            .registry
            .code(&cfg.name, &cfg.code_hex)
            .map_err(|e| thaw_worker::error::error_chain(&e))?
            .ok_or("code missing from the registry")?;
        let code = FunctionCode::from_zip(&zip).map_err(|e| thaw_worker::error::error_chain(&e))?;
        let mut spec = FunctionSpec::new(&cfg.name, &cfg.handler, code);
        spec.version = cfg.version.clone();
        spec.memory_mb = cfg.memory_mb;
        spec.timeout = Duration::from_secs(u64::from(cfg.timeout_s));
        spec.env = cfg.env.clone();
        spec.region = self.config.region.clone();
        if let Some(c) = &self.config.function_credentials {
            // Reserved keys (users cannot set them): the role credentials' slot.
            spec.env
                .insert("AWS_ACCESS_KEY_ID".into(), c.access_key_id.clone());
            spec.env.insert(
                "AWS_SECRET_ACCESS_KEY".into(),
                c.secret_access_key.expose().to_string(),
            );
            if let Some(t) = &c.session_token {
                spec.env
                    .insert("AWS_SESSION_TOKEN".into(), t.expose().to_string());
            }
        }
        self.backend()
            .define(&cfg.function_version(), Arc::new(spec));
        Ok(())
    }

    /// Starts the build of `cfg` in the background (see the module doc).
    pub(crate) fn spawn_build(self: &Arc<Self>, cfg: Arc<VersionConfig>) {
        let svc = Arc::clone(self);
        tokio::spawn(async move {
            let fv = cfg.function_version();
            let t0 = std::time::Instant::now();
            // 1. 2.
            let result = match svc.define(&cfg) {
                Ok(()) => svc.backend().build(&fv).await.map_err(|e| init_reason(&e)),
                Err(e) => Err(e),
            };
            match &result {
                Ok(_) => {
                    tracing::info!(fv = %fv, ms = t0.elapsed().as_millis() as u64, "version built: Active")
                }
                Err(reason) => tracing::warn!(fv = %fv, %reason, "version build failed"),
            }
            // 3.
            let updated = svc.registry.update(&cfg.name, &cfg.version, |c| {
                if c.revision_id != cfg.revision_id {
                    return;
                }
                match &result {
                    Ok(_) => {
                        c.state = FunctionState::Active;
                        c.state_reason = None;
                        c.state_reason_code = None;
                        c.last_update_status = UpdateStatus::Successful;
                        c.last_update_status_reason = None;
                    }
                    Err(reason) => {
                        c.state = FunctionState::Failed;
                        c.state_reason = Some(reason.clone());
                        c.state_reason_code = Some("InvalidCode".into());
                        c.last_update_status = UpdateStatus::Failed;
                        c.last_update_status_reason = Some(reason.clone());
                    }
                }
            });
            if let Err(e) = updated {
                tracing::warn!(fv = %fv, error = %e, "version gone before its build finished");
            }
        });
    }

    /// CreateFunction: stores `$LATEST` as `Pending` and starts its build. With `publish`, also
    /// publishes version 1 and returns it.
    pub fn create_function(
        self: &Arc<Self>,
        req: CreateFunction,
    ) -> Result<Arc<VersionConfig>, ApiError> {
        validate_name(&req.name)?;
        if !RUNTIMES.contains(&req.runtime.as_str()) {
            return Err(ApiError::InvalidParameter(format!("Value {} at 'runtime' failed to satisfy constraint: supported runtimes are {RUNTIMES:?}", req.runtime)));
        }
        crate::validate::handler(&req.handler)?;
        crate::validate::environment(&req.env)?;
        let memory_mb = req.memory_mb.unwrap_or(512);
        if !(128..=10240).contains(&memory_mb) {
            return Err(ApiError::InvalidParameter(
                "MemorySize must be between 128 and 10240".into(),
            ));
        }
        let timeout_s = req.timeout_s.unwrap_or(3);
        if !(1..=900).contains(&timeout_s) {
            return Err(ApiError::InvalidParameter(
                "Timeout must be between 1 and 900".into(),
            ));
        }
        let (code_sha256, code_hex) = check_zip(&req.zip)?;
        let cfg = VersionConfig {
            name: req.name.clone(),
            version: "$LATEST".into(),
            runtime: req.runtime,
            handler: req.handler,
            description: req.description,
            role: req.role,
            memory_mb,
            timeout_s,
            env: req.env,
            code_sha256,
            code_hex,
            code_size: req.zip.len() as u64,
            state: FunctionState::Pending,
            state_reason: Some("The function is being created.".into()),
            state_reason_code: Some("Creating".into()),
            last_update_status: UpdateStatus::InProgress,
            last_update_status_reason: None,
            last_modified_ms: now_ms(),
            revision_id: revision_id(),
        };
        let cfg = self.registry.create_function(cfg, &req.zip)?;
        self.spawn_build(Arc::clone(&cfg));
        if req.publish {
            return self.publish_version(&req.name, "");
        }
        Ok(cfg)
    }

    /// UpdateFunctionCode: replaces `$LATEST`'s code, drops its warm instances and rebuilds it.
    pub fn update_function_code(
        self: &Arc<Self>,
        name: &str,
        zip: &[u8],
        publish: bool,
    ) -> Result<Arc<VersionConfig>, ApiError> {
        let (code_sha256, code_hex) = check_zip(zip)?;
        let cfg = self
            .registry
            .update_with_code(name, "$LATEST", Some((&code_hex, zip)), |c| {
                c.code_sha256 = code_sha256.clone();
                c.code_hex = code_hex.clone();
                c.code_size = zip.len() as u64;
                c.last_update_status = UpdateStatus::InProgress;
                c.last_update_status_reason = None;
                c.last_modified_ms = now_ms();
                c.revision_id = revision_id();
            })?;
        self.scheduler.invalidate(&cfg.function_version());
        self.spawn_build(Arc::clone(&cfg));
        if publish {
            return self.publish_version(name, "");
        }
        Ok(cfg)
    }

    /// PublishVersion: a new version (built in the background), or the newest one if nothing
    /// changed.
    pub fn publish_version(
        self: &Arc<Self>,
        name: &str,
        description: &str,
    ) -> Result<Arc<VersionConfig>, ApiError> {
        let (cfg, new) = self.registry.publish(name, description, now_ms())?;
        if new {
            self.spawn_build(Arc::clone(&cfg));
        }
        Ok(cfg)
    }

    /// DeleteFunction (the whole function, or one published version with a qualifier).
    pub fn delete_function(&self, f: &FunctionRef) -> Result<(), ApiError> {
        match f.qualifier.as_deref() {
            Some(q) if q != "$LATEST" => {
                let cfg = self.registry.resolve(&f.name, Some(q))?;
                let fv = cfg.function_version();
                let _ = self.scheduler.delete_provisioned(&fv);
                self.registry.delete_version(&f.name, &cfg.version)?;
                self.scheduler.invalidate(&fv);
                self.backend().forget(&fv);
            }
            _ => {
                let versions = self.registry.delete_function(&f.name)?;
                self.scheduler.remove_function(&f.name);
                for v in versions {
                    self.backend()
                        .forget(&FunctionVersion::new(f.name.clone(), v));
                }
            }
        }
        Ok(())
    }

    /// CreateAlias.
    pub fn create_alias(
        &self,
        function: &str,
        name: &str,
        version: &str,
        description: &str,
    ) -> Result<Alias, ApiError> {
        validate_alias(name)?;
        self.registry.get(function, version)?;
        Ok(self.registry.create_alias(Alias {
            function: function.into(),
            name: name.into(),
            version: version.into(),
            description: description.into(),
            revision_id: revision_id(),
        })?)
    }

    /// The version a provisioned-concurrency call addresses (a qualifier is required).
    fn provisioned_target(&self, f: &FunctionRef) -> Result<Arc<VersionConfig>, ApiError> {
        let q = f.qualifier.as_deref().ok_or_else(|| {
            ApiError::InvalidParameter("Qualifier is required for provisioned concurrency".into())
        })?;
        let cfg = self.registry.resolve(&f.name, Some(q))?;
        if cfg.version == "$LATEST" {
            return Err(ApiError::InvalidParameter("Provisioned Concurrency Configs cannot be applied to unpublished function versions.".into()));
        }
        Ok(cfg)
    }

    /// PutProvisionedConcurrencyConfig: applies it to the scheduler (which validates it against
    /// reserved and account concurrency), then persists it.
    pub fn put_provisioned(&self, f: &FunctionRef, n: u32) -> Result<ProvisionedConfig, ApiError> {
        let cfg = self.provisioned_target(f)?;
        let fv = cfg.function_version();
        let config = self
            .scheduler
            .put_provisioned(&fv, n)
            .map_err(|e| ApiError::InvalidParameter(e.to_string()))?;
        let rec = ProvRecord {
            function: cfg.name.clone(),
            version: cfg.version.clone(),
            requested: n,
            last_modified_ms: now_ms(),
        };
        if let Err(e) = self.registry.put_provisioned(rec) {
            let _ = self.scheduler.delete_provisioned(&fv);
            return Err(e.into());
        }
        Ok(config)
    }

    /// GetProvisionedConcurrencyConfig.
    pub fn get_provisioned(&self, f: &FunctionRef) -> Result<ProvisionedConfig, ApiError> {
        let cfg = self.provisioned_target(f)?;
        self.scheduler
            .get_provisioned(&cfg.function_version())
            .ok_or_else(|| {
                ApiError::ProvisionedConfigNotFound(
                    "No Provisioned Concurrency Config found for this function".into(),
                )
            })
    }

    /// DeleteProvisionedConcurrencyConfig.
    pub fn delete_provisioned(&self, f: &FunctionRef) -> Result<(), ApiError> {
        let cfg = self.provisioned_target(f)?;
        match self.scheduler.delete_provisioned(&cfg.function_version()) {
            Ok(()) | Err(ProvisionedError::NotFound(_)) => {}
            Err(e) => return Err(ApiError::InvalidParameter(e.to_string())),
        }
        if !self.registry.delete_provisioned(&cfg.name, &cfg.version)? {
            return Err(ApiError::ProvisionedConfigNotFound(
                "No Provisioned Concurrency Config found for this function".into(),
            ));
        }
        Ok(())
    }

    /// PutFunctionConcurrency.
    pub fn put_reserved(&self, name: &str, n: u32) -> Result<u32, ApiError> {
        self.registry.resolve(name, None)?;
        self.scheduler
            .put_reserved(name, n)
            .map_err(|e| ApiError::InvalidParameter(e.to_string()))?;
        self.registry.set_reserved(name, Some(n))?;
        Ok(n)
    }

    /// DeleteFunctionConcurrency.
    pub fn delete_reserved(&self, name: &str) -> Result<(), ApiError> {
        self.registry.resolve(name, None)?;
        self.scheduler.delete_reserved(name);
        self.registry.set_reserved(name, None)?;
        Ok(())
    }
}
