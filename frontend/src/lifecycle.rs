//! The control plane: CreateFunction, UpdateFunctionCode, UpdateFunctionConfiguration,
//! PublishVersion, deletes, and provisioned and reserved concurrency, plus the background build
//! that moves a version from `Pending` to `Active` (or `Failed`), and an update from
//! `InProgress` to `Successful` (or `Failed`, the old configuration still serving).
//!
//! An update of `$LATEST` (code or configuration):
//! 1. Under the registry's lock: check the caller's `RevisionId`, refuse while another update
//!    builds (`ResourceConflictException`), keep the configuration that serves as `previous`,
//!    apply the change with a new revision id and `LastUpdateStatus` `InProgress`. A change
//!    that does not touch what the guest runs (description, role, dead-letter target,
//!    SnapStart on `$LATEST`) is `Successful` at once.
//! 2. Build it (below); invocations keep running the previous configuration meanwhile: its
//!    spec stays registered and its snapshot stays current under its own deployment key.
//!
//! Build of a version (CreateFunction, PublishVersion, an update, or one interrupted by a
//! restart):
//! 1. Load its code from the registry; make its worker spec (deployment = its revision id).
//! 2. `Backend::build`: boot -> init -> snapshot; `INIT_REPORT` is logged.
//! 3. Unless a newer update replaced it meanwhile (its revision id changed): on success
//!    register the spec, drain the warm instances of the old configuration and record
//!    `Active`/`Successful` (dropping `previous`); on failure record the init error as
//!    `LastUpdateStatusReason` (the previous configuration keeps serving) or, with nothing
//!    to fall back to, `State` `Failed`.
use crate::backend::Backend;
use crate::errors::ApiError;
use crate::names::{validate_name, FunctionRef};
use crate::registry::{
    revision_id, FunctionState, LogFormat, LoggingConfig, ProvRecord, RegistryError,
    SnapStartApplyOn, UpdateStatus, VersionConfig,
};
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
    pub ephemeral_mb: Option<u32>,
    pub logging: Option<LoggingConfig>,
    pub snap_start: Option<SnapStartApplyOn>,
    pub dead_letter_target: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// UpdateFunctionConfiguration's inputs: `None` leaves a setting as it is.
#[derive(Debug, Default, Clone)]
pub struct ConfigChange {
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub description: Option<String>,
    pub role: Option<String>,
    pub memory_mb: Option<u32>,
    pub timeout_s: Option<u32>,
    pub env: Option<BTreeMap<String, String>>,
    pub ephemeral_mb: Option<u32>,
    pub logging: Option<LoggingConfig>,
    pub snap_start: Option<SnapStartApplyOn>,
    /// `Some(None)` removes the target.
    pub dead_letter_target: Option<Option<String>>,
    /// The caller's `RevisionId` (the update is refused unless it is current).
    pub revision_id: Option<String>,
}

impl ConfigChange {
    /// Applies the settings it carries to `c`.
    fn apply(&self, c: &mut VersionConfig) {
        let ch = self.clone();
        if let Some(v) = ch.runtime {
            c.runtime = v;
        }
        if let Some(v) = ch.handler {
            c.handler = v;
        }
        if let Some(v) = ch.description {
            c.description = v;
        }
        if let Some(v) = ch.role {
            c.role = v;
        }
        if let Some(v) = ch.memory_mb {
            c.memory_mb = v;
        }
        if let Some(v) = ch.timeout_s {
            c.timeout_s = v;
        }
        if let Some(v) = ch.env {
            c.env = v;
        }
        if let Some(v) = ch.ephemeral_mb {
            c.ephemeral_mb = v;
        }
        if let Some(v) = ch.logging {
            c.logging = v;
        }
        if let Some(v) = ch.snap_start {
            c.snap_start = v;
        }
        if let Some(v) = ch.dead_letter_target {
            c.dead_letter_target = v;
        }
    }
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

/// Lambda's checks on the settings CreateFunction and UpdateFunctionConfiguration share.
fn check_settings(cfg: &VersionConfig) -> Result<(), ApiError> {
    if !RUNTIMES.contains(&cfg.runtime.as_str()) {
        return Err(ApiError::InvalidParameter(format!("Value {} at 'runtime' failed to satisfy constraint: supported runtimes are {RUNTIMES:?}", cfg.runtime)));
    }
    crate::validate::handler(&cfg.handler)?;
    crate::validate::environment(&cfg.env)?;
    if !(128..=10240).contains(&cfg.memory_mb) {
        return Err(ApiError::InvalidParameter(
            "MemorySize must be between 128 and 10240".into(),
        ));
    }
    if !(1..=900).contains(&cfg.timeout_s) {
        return Err(ApiError::InvalidParameter(
            "Timeout must be between 1 and 900".into(),
        ));
    }
    if !thaw_worker::instance::EPHEMERAL_MB.contains(&cfg.ephemeral_mb) {
        return Err(ApiError::InvalidParameter(
            "EphemeralStorage.Size must be between 512 and 10240".into(),
        ));
    }
    let l = &cfg.logging;
    if l.log_format == LogFormat::Text
        && (l.application_log_level.is_some() || l.system_log_level.is_some())
    {
        return Err(ApiError::InvalidParameter("LoggingConfig: ApplicationLogLevel and SystemLogLevel can only be set with LogFormat JSON".into()));
    }
    if let Some(t) = &cfg.dead_letter_target {
        crate::names::parse(t, None).map_err(|_| {
            ApiError::InvalidParameter(format!(
                "DeadLetterConfig.TargetArn must be a function ARN in this account: {t}"
            ))
        })?;
    }
    Ok(())
}

/// Whether two configurations of one version run differently in the guest (a new snapshot).
fn guest_changed(a: &VersionConfig, b: &VersionConfig) -> bool {
    a.code_hex != b.code_hex
        || a.handler != b.handler
        || a.runtime != b.runtime
        || a.memory_mb != b.memory_mb
        || a.timeout_s != b.timeout_s
        || a.env != b.env
        || a.ephemeral_mb != b.ephemeral_mb
        || a.logging != b.logging
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

/// Step 1 of an update (see the module doc), run under the registry's lock: refuses a stale
/// `RevisionId` or an update already building, keeps what serves as `previous`.
fn begin_update(
    c: &mut VersionConfig,
    expected_revision: Option<&str>,
    arn: &str,
) -> Result<(), RegistryError> {
    if expected_revision.is_some_and(|r| r != c.revision_id) {
        return Err(RegistryError::RevisionMismatch);
    }
    if c.last_update_status == UpdateStatus::InProgress || c.state == FunctionState::Pending {
        return Err(RegistryError::UpdateInProgress(arn.to_string()));
    }
    let serving = if c.state == FunctionState::Active {
        let mut s = c.serving().clone();
        s.previous = None;
        Some(Box::new(s))
    } else {
        None
    };
    c.previous = serving;
    c.last_modified_ms = now_ms();
    c.revision_id = revision_id();
    Ok(())
}

impl<B: Backend> Service<B> {
    /// The worker spec of a version's configuration, from its stored code.
    pub(crate) fn spec_of(&self, cfg: &VersionConfig) -> Result<FunctionSpec, String> {
        let zip = self
            .registry
            .code(&cfg.name, &cfg.code_hex)
            .map_err(|e| thaw_worker::error::error_chain(&e))?
            .ok_or("code missing from the registry")?;
        let code = FunctionCode::from_zip(&zip).map_err(|e| thaw_worker::error::error_chain(&e))?;
        let mut spec = FunctionSpec::new(&cfg.name, &cfg.handler, code);
        spec.version = cfg.version.clone();
        spec.deployment = cfg.revision_id.clone();
        spec.memory_mb = cfg.memory_mb;
        spec.ephemeral_mb = cfg.ephemeral_mb;
        spec.timeout = Duration::from_secs(u64::from(cfg.timeout_s));
        spec.env = cfg.env.clone();
        spec.region = self.config.region.clone();
        if cfg.logging.log_format == LogFormat::Json {
            // Read by the runtime's logging setup (as Lambda's runtimes read them).
            spec.env
                .insert("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into());
            spec.env.insert(
                "AWS_LAMBDA_LOG_LEVEL".into(),
                cfg.logging.application_level().as_str().into(),
            );
        }
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
        Ok(spec)
    }

    /// Registers the worker spec of a version's configuration.
    pub(crate) fn define(&self, cfg: &VersionConfig) -> Result<(), String> {
        let spec = self.spec_of(cfg)?;
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
            let result = match svc.spec_of(&cfg) {
                Ok(spec) => {
                    let spec = Arc::new(spec);
                    match svc.backend().build(&fv, Arc::clone(&spec)).await {
                        Ok(boot) => Ok((spec, boot)),
                        Err(e) => Err(init_reason(&e)),
                    }
                }
                Err(e) => Err(e),
            };
            svc.log_init_report(&cfg, t0.elapsed(), result.is_ok());
            match &result {
                Ok(_) => {
                    tracing::info!(fv = %fv, ms = t0.elapsed().as_millis() as u64, "version built")
                }
                Err(reason) => tracing::warn!(fv = %fv, %reason, "version build failed"),
            }
            // 3.
            let current = svc
                .registry
                .get(&cfg.name, &cfg.version)
                .is_ok_and(|c| c.revision_id == cfg.revision_id);
            if !current {
                tracing::info!(fv = %fv, "build superseded by a newer update");
                return;
            }
            if let Ok((spec, _)) = &result {
                svc.backend().define(&fv, Arc::clone(spec));
                if cfg.previous.is_some() {
                    svc.scheduler.invalidate(&fv);
                }
            }
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
                        c.previous = None;
                    }
                    Err(reason) => {
                        if c.previous.is_none() {
                            c.state = FunctionState::Failed;
                            c.state_reason = Some(reason.clone());
                            c.state_reason_code = Some("InvalidCode".into());
                        }
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
        crate::validate::tags(&req.tags)?;
        let (code_sha256, code_hex) = check_zip(&req.zip)?;
        let cfg = VersionConfig {
            name: req.name.clone(),
            version: "$LATEST".into(),
            runtime: req.runtime,
            handler: req.handler,
            description: req.description,
            role: req.role,
            memory_mb: req.memory_mb.unwrap_or(512),
            timeout_s: req.timeout_s.unwrap_or(3),
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
            ephemeral_mb: req.ephemeral_mb.unwrap_or(512),
            logging: req.logging.unwrap_or_default(),
            snap_start: req.snap_start.unwrap_or_default(),
            dead_letter_target: req.dead_letter_target,
            previous: None,
        };
        check_settings(&cfg)?;
        let cfg = self.registry.create_function(cfg, &req.zip)?;
        if !req.tags.is_empty() {
            self.registry.change_tags(&req.name, &req.tags, &[])?;
        }
        self.spawn_build(Arc::clone(&cfg));
        if req.publish {
            return self.publish_version(&req.name, "", None);
        }
        Ok(cfg)
    }

    /// UpdateFunctionCode: replaces `$LATEST`'s code and builds it; the old code serves until
    /// the new one is built, and keeps serving if it fails.
    pub fn update_function_code(
        self: &Arc<Self>,
        name: &str,
        zip: &[u8],
        publish: bool,
        expected_revision: Option<&str>,
    ) -> Result<Arc<VersionConfig>, ApiError> {
        let (code_sha256, code_hex) = check_zip(zip)?;
        let arn = self.arn.function(name);
        let cfg = self
            .registry
            .try_update(name, "$LATEST", Some((&code_hex, zip)), |c| {
                begin_update(c, expected_revision, &arn)?;
                c.code_sha256 = code_sha256.clone();
                c.code_hex = code_hex.clone();
                c.code_size = zip.len() as u64;
                c.last_update_status = UpdateStatus::InProgress;
                c.last_update_status_reason = None;
                Ok(())
            })?;
        self.spawn_build(Arc::clone(&cfg));
        if publish {
            return self.publish_version(name, "", None);
        }
        Ok(cfg)
    }

    /// UpdateFunctionConfiguration (see the module doc).
    pub fn update_function_configuration(
        self: &Arc<Self>,
        name: &str,
        change: ConfigChange,
    ) -> Result<Arc<VersionConfig>, ApiError> {
        let arn = self.arn.function(name);
        // Validate the result first (on a copy), so a bad value refuses the call before the
        // registry's lock; the change is applied again under it.
        let mut candidate = (*self.registry.get(name, "$LATEST")?).clone();
        change.apply(&mut candidate);
        check_settings(&candidate)?;
        let result = self.registry.try_update(name, "$LATEST", None, |c| {
            let before = c.serving().clone();
            begin_update(c, change.revision_id.as_deref(), &arn)?;
            change.apply(c);
            if c.state == FunctionState::Active && !guest_changed(&before, c) {
                c.previous = None;
                c.last_update_status = UpdateStatus::Successful;
            } else {
                c.last_update_status = UpdateStatus::InProgress;
            }
            c.last_update_status_reason = None;
            Ok(())
        });
        let cfg = result?;
        if cfg.last_update_status == UpdateStatus::InProgress {
            self.spawn_build(Arc::clone(&cfg));
        } else {
            // Nothing the guest runs changed: the registered spec stays, under the new
            // revision's key for the next restart.
            if let Err(e) = self.define(&cfg) {
                tracing::warn!(function = %name, error = %e, "cannot re-register a version");
            }
        }
        Ok(cfg)
    }

    /// PublishVersion: a new version (built in the background), or the newest one if nothing
    /// changed.
    pub fn publish_version(
        self: &Arc<Self>,
        name: &str,
        description: &str,
        expected_revision: Option<&str>,
    ) -> Result<Arc<VersionConfig>, ApiError> {
        let (cfg, new) = self
            .registry
            .publish(name, description, now_ms(), expected_revision)?;
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
                self.registry.delete_version(&f.name, &cfg.version)?;
                let _ = self.scheduler.delete_provisioned(&fv);
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

    /// The version a provisioned-concurrency call addresses (a qualifier is required).
    pub(crate) fn provisioned_target(
        &self,
        f: &FunctionRef,
    ) -> Result<Arc<VersionConfig>, ApiError> {
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
            qualifier: f.qualifier.clone(),
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
