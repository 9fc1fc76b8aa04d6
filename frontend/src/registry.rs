//! The function registry: functions, published versions, aliases, provisioned-concurrency configs,
//! reserved concurrency, code zips and the async event queue, persisted in a [`KvStore`]
//! (RocksDB under the data directory in production; every write is synced) with an in-memory
//! cache the invoke path reads.
//!
//! Keys (function names never contain `/`):
//! - `v/<name>/<version>` -> [`VersionConfig`] JSON; `$LATEST` or the version zero-padded to 10
//!   digits, so `$LATEST` sorts first and numbers in order.
//! - `c/<name>/<sha256 hex>` -> the code zip.
//! - `a/<name>/<alias>` -> [`Alias`]; `p/<name>/<version>` -> [`ProvRecord`];
//!   `r/<name>` -> reserved concurrency (decimal).
//! - `e/<seq, 20 digits>` -> [`AsyncEvent`].
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use thaw_snapshotter::{KvError, KvOp, KvStore};

/// What the registry could not do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Function not found: {0}")]
    FunctionNotFound(String),
    #[error("Function not found: {0}:{1}")]
    VersionNotFound(String, String),
    #[error("Alias not found: {0}:{1}")]
    AliasNotFound(String, String),
    #[error("Function already exist: {0}")]
    FunctionExists(String),
    #[error("Alias already exists: {0}:{1}")]
    AliasExists(String, String),
    #[error("registry storage failed")]
    Store(#[from] KvError),
    #[error("registry record is corrupt")]
    Decode(#[from] serde_json::Error),
}

type Result<T> = std::result::Result<T, RegistryError>;

/// Lambda's function `State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FunctionState {
    Pending,
    Active,
    Failed,
}

impl FunctionState {
    /// As Lambda spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Active => "Active",
            Self::Failed => "Failed",
        }
    }
}

/// Lambda's `LastUpdateStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateStatus {
    Successful,
    InProgress,
    Failed,
}

impl UpdateStatus {
    /// As Lambda spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Successful => "Successful",
            Self::InProgress => "InProgress",
            Self::Failed => "Failed",
        }
    }
}

/// One version's configuration (`$LATEST` or a published, immutable one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionConfig {
    pub name: String,
    pub version: String,
    pub runtime: String,
    pub handler: String,
    pub description: String,
    pub role: String,
    pub memory_mb: u32,
    pub timeout_s: u32,
    pub env: BTreeMap<String, String>,
    /// Base64 SHA-256 of the zip (`CodeSha256`).
    pub code_sha256: String,
    /// Hex SHA-256 of the zip: the code's key.
    pub code_hex: String,
    pub code_size: u64,
    pub state: FunctionState,
    pub state_reason: Option<String>,
    pub state_reason_code: Option<String>,
    pub last_update_status: UpdateStatus,
    pub last_update_status_reason: Option<String>,
    pub last_modified_ms: u64,
    pub revision_id: String,
}

impl VersionConfig {
    /// The scheduler's key for this version.
    pub fn function_version(&self) -> thaw_scheduler::FunctionVersion {
        thaw_scheduler::FunctionVersion::new(self.name.clone(), self.version.clone())
    }

    /// Whether two versions would run the same thing (PublishVersion reuses a version then).
    fn same_code_and_config(&self, other: &VersionConfig) -> bool {
        self.code_hex == other.code_hex
            && self.handler == other.handler
            && self.runtime == other.runtime
            && self.memory_mb == other.memory_mb
            && self.timeout_s == other.timeout_s
            && self.env == other.env
    }
}

/// An alias pointing at a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    pub function: String,
    pub name: String,
    pub version: String,
    pub description: String,
    pub revision_id: String,
}

/// A persisted provisioned-concurrency request (the live status comes from the scheduler).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvRecord {
    pub function: String,
    pub version: String,
    pub requested: u32,
    pub last_modified_ms: u64,
}

/// A queued asynchronous invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AsyncEvent {
    /// Queue position (assigned by [`Registry::enqueue_event`]).
    #[serde(default)]
    pub seq: u64,
    pub request_id: String,
    pub function: String,
    /// The resolved version.
    pub version: String,
    /// Base64 of the payload.
    pub payload: String,
    /// Attempts made so far.
    pub attempts: u32,
    pub client_context: Option<serde_json::Value>,
    pub enqueued_ms: u64,
}

#[derive(Debug, Default)]
struct FunctionEntry {
    versions: BTreeMap<String, Arc<VersionConfig>>,
    aliases: BTreeMap<String, Alias>,
    provisioned: BTreeMap<String, ProvRecord>,
    reserved: Option<u32>,
}

/// The registry: a write-through cache over a [`KvStore`].
#[derive(Debug)]
pub struct Registry {
    kv: Arc<dyn KvStore>,
    cache: RwLock<BTreeMap<String, FunctionEntry>>,
    next_event: AtomicU64,
}

/// `$LATEST`, or a version number zero-padded so keys sort numerically.
fn version_key(version: &str) -> String {
    match version.parse::<u64>() {
        Ok(n) => format!("{n:010}"),
        Err(_) => version.to_string(),
    }
}

fn vkey(name: &str, version: &str) -> Vec<u8> {
    format!("v/{name}/{}", version_key(version)).into_bytes()
}

fn ekey(seq: u64) -> Vec<u8> {
    format!("e/{seq:020}").into_bytes()
}

/// A fresh revision id.
pub fn revision_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Registry {
    /// Loads everything from `kv`.
    pub fn open(kv: Arc<dyn KvStore>) -> Result<Self> {
        let mut cache: BTreeMap<String, FunctionEntry> = BTreeMap::new();
        for (_, v) in kv.scan_prefix(b"v/")? {
            let cfg: VersionConfig = serde_json::from_slice(&v)?;
            let entry = cache.entry(cfg.name.clone()).or_default();
            entry
                .versions
                .insert(version_key(&cfg.version), Arc::new(cfg));
        }
        for (_, v) in kv.scan_prefix(b"a/")? {
            let alias: Alias = serde_json::from_slice(&v)?;
            if let Some(e) = cache.get_mut(&alias.function) {
                e.aliases.insert(alias.name.clone(), alias);
            }
        }
        for (_, v) in kv.scan_prefix(b"p/")? {
            let rec: ProvRecord = serde_json::from_slice(&v)?;
            if let Some(e) = cache.get_mut(&rec.function) {
                e.provisioned.insert(rec.version.clone(), rec);
            }
        }
        for (k, v) in kv.scan_prefix(b"r/")? {
            let name = String::from_utf8_lossy(&k[2..]).into_owned();
            let n = String::from_utf8_lossy(&v).parse().ok();
            if let Some(e) = cache.get_mut(&name) {
                e.reserved = n;
            }
        }
        let last = kv
            .scan_prefix(b"e/")?
            .last()
            .and_then(|(k, _)| String::from_utf8_lossy(&k[2..]).parse::<u64>().ok());
        Ok(Self {
            kv,
            cache: RwLock::new(cache),
            next_event: AtomicU64::new(last.map_or(1, |n| n + 1)),
        })
    }

    /// Creates a function's `$LATEST` with its code.
    pub fn create_function(&self, cfg: VersionConfig, zip: &[u8]) -> Result<Arc<VersionConfig>> {
        let mut cache = self.cache.write();
        if cache.contains_key(&cfg.name) {
            return Err(RegistryError::FunctionExists(cfg.name));
        }
        self.kv.write(vec![
            KvOp::Put(
                format!("c/{}/{}", cfg.name, cfg.code_hex).into_bytes(),
                zip.to_vec(),
            ),
            KvOp::Put(vkey(&cfg.name, &cfg.version), serde_json::to_vec(&cfg)?),
        ])?;
        let cfg = Arc::new(cfg);
        let entry = cache.entry(cfg.name.clone()).or_default();
        entry
            .versions
            .insert(version_key(&cfg.version), Arc::clone(&cfg));
        Ok(cfg)
    }

    /// One version's config.
    pub fn get(&self, name: &str, version: &str) -> Result<Arc<VersionConfig>> {
        let cache = self.cache.read();
        let entry = cache
            .get(name)
            .ok_or_else(|| RegistryError::FunctionNotFound(name.into()))?;
        entry
            .versions
            .get(&version_key(version))
            .cloned()
            .ok_or_else(|| RegistryError::VersionNotFound(name.into(), version.into()))
    }

    /// Resolves a qualifier (none, `$LATEST`, a version number or an alias) to a version config.
    pub fn resolve(&self, name: &str, qualifier: Option<&str>) -> Result<Arc<VersionConfig>> {
        let cache = self.cache.read();
        let entry = cache
            .get(name)
            .ok_or_else(|| RegistryError::FunctionNotFound(name.into()))?;
        let q = qualifier.unwrap_or("$LATEST");
        let version = if q == "$LATEST" || q.parse::<u64>().is_ok() {
            q
        } else {
            &entry
                .aliases
                .get(q)
                .ok_or_else(|| RegistryError::AliasNotFound(name.into(), q.into()))?
                .version
        };
        entry
            .versions
            .get(&version_key(version))
            .cloned()
            .ok_or_else(|| RegistryError::VersionNotFound(name.into(), version.into()))
    }

    /// `$LATEST` of functions whose name sorts after `marker`, at most `max`, and the next marker.
    pub fn list(
        &self,
        marker: Option<&str>,
        max: usize,
    ) -> (Vec<Arc<VersionConfig>>, Option<String>) {
        let cache = self.cache.read();
        let mut out = Vec::new();
        let range = cache
            .iter()
            .filter(|(name, _)| marker.is_none_or(|m| name.as_str() > m));
        for (name, entry) in range {
            if out.len() == max {
                let next = out_last(&out);
                return (out, next);
            }
            if let Some(latest) = entry.versions.get("$LATEST") {
                out.push(Arc::clone(latest));
            } else {
                tracing::warn!(function = %name, "function without $LATEST");
            }
        }
        (out, None)
    }

    /// Every version of every function (startup).
    pub fn all_versions(&self) -> Vec<Arc<VersionConfig>> {
        self.cache
            .read()
            .values()
            .flat_map(|e| e.versions.values().cloned())
            .collect()
    }

    /// Versions of `name`, `$LATEST` first.
    pub fn versions(&self, name: &str) -> Result<Vec<Arc<VersionConfig>>> {
        let cache = self.cache.read();
        let entry = cache
            .get(name)
            .ok_or_else(|| RegistryError::FunctionNotFound(name.into()))?;
        Ok(entry.versions.values().cloned().collect())
    }

    /// Changes one version's config durably and returns the new one.
    pub fn update(
        &self,
        name: &str,
        version: &str,
        f: impl FnOnce(&mut VersionConfig),
    ) -> Result<Arc<VersionConfig>> {
        self.update_with_code(name, version, None, f)
    }

    /// [`Registry::update`] that also stores a code zip under its hex digest.
    pub fn update_with_code(
        &self,
        name: &str,
        version: &str,
        code: Option<(&str, &[u8])>,
        f: impl FnOnce(&mut VersionConfig),
    ) -> Result<Arc<VersionConfig>> {
        let mut cache = self.cache.write();
        let entry = cache
            .get_mut(name)
            .ok_or_else(|| RegistryError::FunctionNotFound(name.into()))?;
        let key = version_key(version);
        let old = entry
            .versions
            .get(&key)
            .ok_or_else(|| RegistryError::VersionNotFound(name.into(), version.into()))?;
        let mut cfg = (**old).clone();
        f(&mut cfg);
        let mut ops = vec![KvOp::Put(vkey(name, version), serde_json::to_vec(&cfg)?)];
        if let Some((hex, zip)) = code {
            ops.push(KvOp::Put(
                format!("c/{name}/{hex}").into_bytes(),
                zip.to_vec(),
            ));
        }
        self.kv.write(ops)?;
        let cfg = Arc::new(cfg);
        entry.versions.insert(key, Arc::clone(&cfg));
        Ok(cfg)
    }

    /// The code zip stored under `hex` for `name`.
    pub fn code(&self, name: &str, hex: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.kv.get(format!("c/{name}/{hex}").as_bytes())?)
    }

    /// PublishVersion: a new immutable version from `$LATEST` (state Pending), or the newest
    /// version if it already runs the same code and config. Returns it and whether it is new.
    pub fn publish(
        &self,
        name: &str,
        description: &str,
        now_ms: u64,
    ) -> Result<(Arc<VersionConfig>, bool)> {
        let mut cache = self.cache.write();
        let entry = cache
            .get_mut(name)
            .ok_or_else(|| RegistryError::FunctionNotFound(name.into()))?;
        let latest = entry
            .versions
            .get("$LATEST")
            .cloned()
            .ok_or_else(|| RegistryError::VersionNotFound(name.into(), "$LATEST".into()))?;
        let newest = entry
            .versions
            .values()
            .rfind(|v| v.version != "$LATEST")
            .cloned();
        if let Some(newest) = &newest {
            if newest.same_code_and_config(&latest) {
                return Ok((Arc::clone(newest), false));
            }
        }
        let n = newest
            .and_then(|v| v.version.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        let mut cfg = (*latest).clone();
        cfg.version = n.to_string();
        cfg.description = description.to_string();
        cfg.state = FunctionState::Pending;
        cfg.state_reason = Some("The function is being created.".into());
        cfg.state_reason_code = Some("Creating".into());
        cfg.last_update_status = UpdateStatus::Successful;
        cfg.last_modified_ms = now_ms;
        cfg.revision_id = revision_id();
        self.kv
            .put(&vkey(name, &cfg.version), &serde_json::to_vec(&cfg)?)?;
        let cfg = Arc::new(cfg);
        entry
            .versions
            .insert(version_key(&cfg.version), Arc::clone(&cfg));
        Ok((cfg, true))
    }

    /// Deletes a function and everything it owns; returns the versions it had.
    pub fn delete_function(&self, name: &str) -> Result<Vec<String>> {
        let mut cache = self.cache.write();
        let entry = cache
            .get(name)
            .ok_or_else(|| RegistryError::FunctionNotFound(name.into()))?;
        let versions = entry.versions.values().map(|v| v.version.clone()).collect();
        let mut ops = vec![KvOp::Delete(format!("r/{name}").into_bytes())];
        for prefix in ["v", "c", "a", "p"] {
            for (k, _) in self
                .kv
                .scan_prefix(format!("{prefix}/{name}/").as_bytes())?
            {
                ops.push(KvOp::Delete(k));
            }
        }
        self.kv.write(ops)?;
        cache.remove(name);
        Ok(versions)
    }

    /// Deletes one published version (and its provisioned config).
    pub fn delete_version(&self, name: &str, version: &str) -> Result<()> {
        let mut cache = self.cache.write();
        let entry = cache
            .get_mut(name)
            .ok_or_else(|| RegistryError::FunctionNotFound(name.into()))?;
        if entry.versions.remove(&version_key(version)).is_none() {
            return Err(RegistryError::VersionNotFound(name.into(), version.into()));
        }
        entry.provisioned.remove(version);
        self.kv.write(vec![
            KvOp::Delete(vkey(name, version)),
            KvOp::Delete(format!("p/{name}/{version}").into_bytes()),
        ])?;
        Ok(())
    }

    /// CreateAlias.
    pub fn create_alias(&self, alias: Alias) -> Result<Alias> {
        let mut cache = self.cache.write();
        let entry = cache
            .get_mut(&alias.function)
            .ok_or_else(|| RegistryError::FunctionNotFound(alias.function.clone()))?;
        if entry.aliases.contains_key(&alias.name) {
            return Err(RegistryError::AliasExists(alias.function, alias.name));
        }
        if !entry.versions.contains_key(&version_key(&alias.version)) {
            return Err(RegistryError::VersionNotFound(
                alias.function,
                alias.version,
            ));
        }
        self.kv.put(
            format!("a/{}/{}", alias.function, alias.name).as_bytes(),
            &serde_json::to_vec(&alias)?,
        )?;
        entry.aliases.insert(alias.name.clone(), alias.clone());
        Ok(alias)
    }

    /// GetAlias.
    pub fn get_alias(&self, function: &str, name: &str) -> Result<Alias> {
        let cache = self.cache.read();
        let entry = cache
            .get(function)
            .ok_or_else(|| RegistryError::FunctionNotFound(function.into()))?;
        entry
            .aliases
            .get(name)
            .cloned()
            .ok_or_else(|| RegistryError::AliasNotFound(function.into(), name.into()))
    }

    /// Records a provisioned-concurrency request.
    pub fn put_provisioned(&self, rec: ProvRecord) -> Result<()> {
        let mut cache = self.cache.write();
        let entry = cache
            .get_mut(&rec.function)
            .ok_or_else(|| RegistryError::FunctionNotFound(rec.function.clone()))?;
        self.kv.put(
            format!("p/{}/{}", rec.function, rec.version).as_bytes(),
            &serde_json::to_vec(&rec)?,
        )?;
        entry.provisioned.insert(rec.version.clone(), rec);
        Ok(())
    }

    /// Forgets a provisioned-concurrency request; whether one existed.
    pub fn delete_provisioned(&self, function: &str, version: &str) -> Result<bool> {
        let mut cache = self.cache.write();
        let entry = cache
            .get_mut(function)
            .ok_or_else(|| RegistryError::FunctionNotFound(function.into()))?;
        let had = entry.provisioned.remove(version).is_some();
        self.kv
            .delete(format!("p/{function}/{version}").as_bytes())?;
        Ok(had)
    }

    /// The provisioned record of one version.
    pub fn provisioned(&self, function: &str, version: &str) -> Option<ProvRecord> {
        self.cache
            .read()
            .get(function)?
            .provisioned
            .get(version)
            .cloned()
    }

    /// All provisioned records (startup).
    pub fn all_provisioned(&self) -> Vec<ProvRecord> {
        self.cache
            .read()
            .values()
            .flat_map(|e| e.provisioned.values().cloned())
            .collect()
    }

    /// Sets (`Some`) or removes (`None`) a function's reserved concurrency.
    pub fn set_reserved(&self, function: &str, n: Option<u32>) -> Result<()> {
        let mut cache = self.cache.write();
        let entry = cache
            .get_mut(function)
            .ok_or_else(|| RegistryError::FunctionNotFound(function.into()))?;
        let key = format!("r/{function}").into_bytes();
        match n {
            Some(n) => self.kv.put(&key, n.to_string().as_bytes())?,
            None => self.kv.delete(&key)?,
        }
        entry.reserved = n;
        Ok(())
    }

    /// A function's reserved concurrency.
    pub fn reserved(&self, function: &str) -> Option<u32> {
        self.cache.read().get(function)?.reserved
    }

    /// All reserved settings (startup).
    pub fn all_reserved(&self) -> Vec<(String, u32)> {
        self.cache
            .read()
            .iter()
            .filter_map(|(n, e)| Some((n.clone(), e.reserved?)))
            .collect()
    }

    /// Number of functions.
    pub fn function_count(&self) -> usize {
        self.cache.read().len()
    }

    /// Stores an event durably (synced) and assigns its `seq`.
    pub fn enqueue_event(&self, mut event: AsyncEvent) -> Result<AsyncEvent> {
        event.seq = self.next_event.fetch_add(1, Ordering::SeqCst);
        self.kv
            .put(&ekey(event.seq), &serde_json::to_vec(&event)?)?;
        Ok(event)
    }

    /// Rewrites an event (its attempt count).
    pub fn update_event(&self, event: &AsyncEvent) -> Result<()> {
        Ok(self.kv.put(&ekey(event.seq), &serde_json::to_vec(event)?)?)
    }

    /// Removes a finished event.
    pub fn delete_event(&self, seq: u64) -> Result<()> {
        Ok(self.kv.delete(&ekey(seq))?)
    }

    /// Every queued event, oldest first.
    pub fn load_events(&self) -> Result<Vec<AsyncEvent>> {
        let mut out = Vec::new();
        for (_, v) in self.kv.scan_prefix(b"e/")? {
            out.push(serde_json::from_slice(&v)?);
        }
        Ok(out)
    }
}

fn out_last(out: &[Arc<VersionConfig>]) -> Option<String> {
    out.last().map(|c| c.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use thaw_snapshotter::MemKv;

    fn cfg(name: &str) -> VersionConfig {
        VersionConfig {
            name: name.into(),
            version: "$LATEST".into(),
            runtime: "python3.12".into(),
            handler: "app.handler".into(),
            description: String::new(),
            role: String::new(),
            memory_mb: 512,
            timeout_s: 3,
            env: BTreeMap::new(),
            code_sha256: "x".into(),
            code_hex: "ab".into(),
            code_size: 2,
            state: FunctionState::Active,
            state_reason: None,
            state_reason_code: None,
            last_update_status: UpdateStatus::Successful,
            last_update_status_reason: None,
            last_modified_ms: 0,
            revision_id: revision_id(),
        }
    }

    #[test]
    fn test_registry_survives_reopen() {
        let kv: Arc<dyn KvStore> = Arc::new(MemKv::default());
        let reg = Registry::open(Arc::clone(&kv)).unwrap();
        reg.create_function(cfg("f"), b"zip").unwrap();
        assert!(matches!(
            reg.create_function(cfg("f"), b"zip"),
            Err(RegistryError::FunctionExists(_))
        ));
        let (v1, new) = reg.publish("f", "", 1).unwrap();
        assert!(new && v1.version == "1");
        assert_eq!(
            reg.publish("f", "", 2).unwrap().0.version,
            "1",
            "same code republishes nothing"
        );
        reg.update("f", "$LATEST", |c| c.memory_mb = 1024).unwrap();
        assert_eq!(reg.publish("f", "", 3).unwrap().0.version, "2");
        reg.create_alias(Alias {
            function: "f".into(),
            name: "live".into(),
            version: "1".into(),
            description: String::new(),
            revision_id: revision_id(),
        })
        .unwrap();
        reg.put_provisioned(ProvRecord {
            function: "f".into(),
            version: "1".into(),
            requested: 2,
            last_modified_ms: 0,
        })
        .unwrap();
        reg.set_reserved("f", Some(5)).unwrap();
        let ev = reg
            .enqueue_event(AsyncEvent {
                seq: 0,
                request_id: "r".into(),
                function: "f".into(),
                version: "1".into(),
                payload: String::new(),
                attempts: 0,
                client_context: None,
                enqueued_ms: 0,
            })
            .unwrap();
        reg.create_function(cfg("g"), b"zip").unwrap();

        let reg = Registry::open(kv).unwrap();
        assert_eq!(reg.resolve("f", Some("live")).unwrap().version, "1");
        assert_eq!(reg.resolve("f", None).unwrap().memory_mb, 1024);
        assert_eq!(reg.versions("f").unwrap().len(), 3);
        assert_eq!(reg.all_provisioned().len(), 1);
        assert_eq!(reg.reserved("f"), Some(5));
        assert_eq!(reg.load_events().unwrap()[0].seq, ev.seq);
        assert_eq!(reg.enqueue_event(ev.clone()).unwrap().seq, ev.seq + 1);
        assert_eq!(reg.code("f", "ab").unwrap().as_deref(), Some(&b"zip"[..]));
        let (page, marker) = reg.list(None, 1);
        assert_eq!((page.len(), marker.as_deref()), (1, Some("f")));
        let (page, marker) = reg.list(Some("f"), 1);
        assert_eq!((page[0].name.as_str(), marker), ("g", None));
        reg.delete_function("f").unwrap();
        assert!(matches!(
            reg.resolve("f", None),
            Err(RegistryError::FunctionNotFound(_))
        ));
        assert_eq!(reg.code("f", "ab").unwrap(), None);
    }
}
