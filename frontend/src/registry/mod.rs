//! The function registry: functions, published versions, aliases, provisioned-concurrency configs,
//! reserved concurrency, code zips and the async event queue, persisted in a [`KvStore`]
//! (RocksDB under the data directory in production; every write is synced) with an in-memory
//! cache the invoke path reads.
//!
//! Every record is JSON framed by thaw's versioned codec (`codec.rs`); the key layout is in
//! `keys.rs`.
//!
//! The records are in [`records`]; tags, event-invoke configs, URLs, policies and alias
//! changes in `settings.rs`; provisioned and reserved concurrency in `concurrency.rs`; the
//! async event queue in `events.rs`; errors in `error.rs`.
mod codec;
mod concurrency;
mod error;
mod events;
mod keys;
mod records;
mod settings;

pub use error::RegistryError;
use error::Result;
pub use records::*;
use settings::check_alias_versions;

use keys::{prefix, qualifier_key, version_key};
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use thaw_snapshotter::{KvOp, KvStore};

#[derive(Debug, Default)]
struct FunctionEntry {
    versions: BTreeMap<String, Arc<VersionConfig>>,
    aliases: BTreeMap<String, Alias>,
    provisioned: BTreeMap<String, ProvRecord>,
    reserved: Option<u32>,
    tags: BTreeMap<String, String>,
    /// By qualifier.
    invoke_configs: BTreeMap<String, EventInvokeConfig>,
    /// By qualifier (`$LATEST` for the unqualified function).
    urls: BTreeMap<String, UrlConfig>,
    /// Resource-based policies by qualifier (`$LATEST` for the unqualified function).
    policies: BTreeMap<String, Policy>,
}

/// The registry: a write-through cache over a [`KvStore`].
#[derive(Debug)]
pub struct Registry {
    kv: Arc<dyn KvStore>,
    cache: RwLock<BTreeMap<String, FunctionEntry>>,
    /// URL id -> (function, URL qualifier key); changed under `cache`'s write lock.
    url_ids: RwLock<HashMap<String, (String, String)>>,
    next_event: AtomicU64,
}

/// A fresh revision id.
pub fn revision_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Registry {
    /// Loads everything from `kv`.
    pub fn open(kv: Arc<dyn KvStore>) -> Result<Self> {
        let mut cache: BTreeMap<String, FunctionEntry> = BTreeMap::new();
        for (_, v) in kv.scan_prefix(prefix::VERSION)? {
            let cfg: VersionConfig = codec::decode(&v)?;
            let entry = cache.entry(cfg.name.clone()).or_default();
            entry
                .versions
                .insert(version_key(&cfg.version), Arc::new(cfg));
        }
        for (_, v) in kv.scan_prefix(prefix::ALIAS)? {
            let alias: Alias = codec::decode(&v)?;
            if let Some(e) = cache.get_mut(&alias.function) {
                e.aliases.insert(alias.name.clone(), alias);
            }
        }
        for (_, v) in kv.scan_prefix(prefix::PROVISIONED)? {
            let rec: ProvRecord = codec::decode(&v)?;
            if let Some(e) = cache.get_mut(&rec.function) {
                e.provisioned.insert(rec.version.clone(), rec);
            }
        }
        for (k, v) in kv.scan_prefix(prefix::RESERVED)? {
            let name = keys::suffix(&k);
            let rec = codec::decode_reserved(&name, &v)?;
            if let Some(e) = cache.get_mut(&name) {
                e.reserved = rec.map(|r| r.reserved);
            }
        }
        for (k, v) in kv.scan_prefix(prefix::TAGS)? {
            let name = keys::suffix(&k);
            if let Some(e) = cache.get_mut(&name) {
                e.tags = codec::decode(&v)?;
            }
        }
        for (_, v) in kv.scan_prefix(prefix::INVOKE_CONFIG)? {
            let c: EventInvokeConfig = codec::decode(&v)?;
            if let Some(e) = cache.get_mut(&c.function) {
                e.invoke_configs.insert(c.qualifier.clone(), c);
            }
        }
        let mut url_ids = HashMap::new();
        for (_, v) in kv.scan_prefix(prefix::POLICY)? {
            let p: Policy = codec::decode(&v)?;
            if let Some(e) = cache.get_mut(&p.function) {
                e.policies.insert(qualifier_key(p.qualifier.as_deref()), p);
            }
        }
        for (_, v) in kv.scan_prefix(prefix::URL)? {
            let u: UrlConfig = codec::decode(&v)?;
            if let Some(e) = cache.get_mut(&u.function) {
                let q = qualifier_key(u.qualifier.as_deref());
                url_ids.insert(u.url_id.clone(), (u.function.clone(), q.clone()));
                e.urls.insert(q, u);
            }
        }
        let last = kv
            .scan_prefix(prefix::EVENT)?
            .last()
            .and_then(|(k, _)| keys::suffix(k).parse::<u64>().ok());
        Ok(Self {
            kv,
            cache: RwLock::new(cache),
            url_ids: RwLock::new(url_ids),
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
            KvOp::Put(keys::code(&cfg.name, &cfg.code_hex), zip.to_vec()),
            KvOp::Put(keys::version(&cfg.name, &cfg.version), codec::encode(&cfg)?),
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

    /// Resolves a qualifier (none, `$LATEST`, a version number or an alias) to a version config
    /// (an alias's primary version).
    pub fn resolve(&self, name: &str, qualifier: Option<&str>) -> Result<Arc<VersionConfig>> {
        self.resolve_weighted(name, qualifier, 1.0)
    }

    /// [`Registry::resolve`] for one invocation: a weighted alias picks a version by the
    /// uniform draw `u` in [0, 1) ([`Alias::pick`]); `u >= 1` always takes the primary one.
    pub fn resolve_weighted(
        &self,
        name: &str,
        qualifier: Option<&str>,
        u: f64,
    ) -> Result<Arc<VersionConfig>> {
        let cache = self.cache.read();
        let entry = cache
            .get(name)
            .ok_or_else(|| RegistryError::FunctionNotFound(name.into()))?;
        let q = qualifier.unwrap_or("$LATEST");
        let version = if q == "$LATEST" || q.parse::<u64>().is_ok() {
            q
        } else {
            entry
                .aliases
                .get(q)
                .ok_or_else(|| RegistryError::AliasNotFound(name.into(), q.into()))?
                .pick(u)
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
        self.versions_page(name, None, usize::MAX).map(|(v, _)| v)
    }

    /// ListVersionsByFunction: at most `max` versions after `marker` (a version), `$LATEST`
    /// first, and the marker of the next page.
    pub fn versions_page(
        &self,
        name: &str,
        marker: Option<&str>,
        max: usize,
    ) -> Result<(Vec<Arc<VersionConfig>>, Option<String>)> {
        let cache = self.cache.read();
        let entry = cache
            .get(name)
            .ok_or_else(|| RegistryError::FunctionNotFound(name.into()))?;
        let after = marker.map(version_key);
        let mut out = Vec::new();
        for (key, v) in &entry.versions {
            if after.as_ref().is_some_and(|a| key <= a) {
                continue;
            }
            if out.len() == max {
                let next = out.last().map(|c: &Arc<VersionConfig>| c.version.clone());
                return Ok((out, next));
            }
            out.push(Arc::clone(v));
        }
        Ok((out, None))
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
        self.try_update(name, version, code, |c| {
            f(c);
            Ok(())
        })
    }

    /// [`Registry::update_with_code`] whose change may refuse (a revision check, an update
    /// in progress); it runs under the registry's write lock, so its checks and the write are
    /// one step.
    pub fn try_update(
        &self,
        name: &str,
        version: &str,
        code: Option<(&str, &[u8])>,
        f: impl FnOnce(&mut VersionConfig) -> Result<()>,
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
        f(&mut cfg)?;
        let mut ops = vec![KvOp::Put(
            keys::version(name, version),
            codec::encode(&cfg)?,
        )];
        if let Some((hex, zip)) = code {
            ops.push(KvOp::Put(keys::code(name, hex), zip.to_vec()));
        }
        self.kv.write(ops)?;
        let cfg = Arc::new(cfg);
        entry.versions.insert(key, Arc::clone(&cfg));
        Ok(cfg)
    }

    /// The code zip stored under `hex` for `name`.
    pub fn code(&self, name: &str, hex: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.kv.get(&keys::code(name, hex))?)
    }

    /// PublishVersion: a new immutable version from `$LATEST` (state Pending), or the newest
    /// version if it already runs the same code and config. Returns it and whether it is new.
    pub fn publish(
        &self,
        name: &str,
        description: &str,
        now_ms: u64,
        expected_revision: Option<&str>,
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
        if expected_revision.is_some_and(|r| r != latest.revision_id) {
            return Err(RegistryError::RevisionMismatch);
        }
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
        cfg.last_update_status_reason = None;
        cfg.previous = None;
        cfg.last_modified_ms = now_ms;
        cfg.revision_id = revision_id();
        self.kv
            .put(&keys::version(name, &cfg.version), &codec::encode(&cfg)?)?;
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
        let mut ops = vec![
            KvOp::Delete(keys::reserved(name)),
            KvOp::Delete(keys::tags(name)),
        ];
        let mut url_ids = self.url_ids.write();
        for u in entry.urls.values() {
            url_ids.remove(&u.url_id);
        }
        for prefix in ["v", "c", "a", "p", "i", "u", "y"] {
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
        if !entry.versions.contains_key(&version_key(version)) {
            return Err(RegistryError::VersionNotFound(name.into(), version.into()));
        }
        let referenced: Vec<&str> = entry
            .aliases
            .values()
            .filter(|a| a.version == version || a.weights.contains_key(version))
            .map(|a| a.name.as_str())
            .collect();
        if !referenced.is_empty() {
            return Err(RegistryError::VersionInUse(
                version.to_string(),
                referenced.join(", "),
            ));
        }
        self.kv.write(vec![
            KvOp::Delete(keys::version(name, version)),
            KvOp::Delete(keys::provisioned(name, version)),
            KvOp::Delete(keys::invoke_config(name, version)),
        ])?;
        entry.versions.remove(&version_key(version));
        entry.provisioned.remove(version);
        entry.invoke_configs.remove(version);
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
        check_alias_versions(entry, &alias)?;
        self.kv.put(
            &keys::alias(&alias.function, &alias.name),
            &codec::encode(&alias)?,
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

    /// Number of functions.
    pub fn function_count(&self) -> usize {
        self.cache.read().len()
    }
}

fn out_last(out: &[Arc<VersionConfig>]) -> Option<String> {
    out.last().map(|c| c.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use thaw_snapshotter::MemKv;

    /// A `$LATEST` config of `name` (also used by the codec's tests).
    pub(super) fn cfg(name: &str) -> VersionConfig {
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
            ephemeral_mb: 512,
            logging: LoggingConfig::default(),
            snap_start: SnapStartApplyOn::None,
            dead_letter_target: None,
            previous: None,
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
        let (v1, new) = reg.publish("f", "", 1, None).unwrap();
        assert!(new && v1.version == "1");
        assert_eq!(
            reg.publish("f", "", 2, None).unwrap().0.version,
            "1",
            "same code republishes nothing"
        );
        reg.update("f", "$LATEST", |c| c.memory_mb = 1024).unwrap();
        assert_eq!(reg.publish("f", "", 3, None).unwrap().0.version, "2");
        reg.create_alias(Alias {
            function: "f".into(),
            name: "live".into(),
            version: "1".into(),
            description: String::new(),
            revision_id: revision_id(),
            weights: BTreeMap::from([("2".to_string(), 0.25)]),
        })
        .unwrap();
        reg.put_provisioned(ProvRecord {
            function: "f".into(),
            version: "1".into(),
            requested: 2,
            last_modified_ms: 0,
            qualifier: Some("live".into()),
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
                qualifier: Some("live".into()),
            })
            .unwrap();
        reg.create_function(cfg("g"), b"zip").unwrap();
        reg.change_tags("f", &BTreeMap::from([("team".into(), "core".into())]), &[])
            .unwrap();
        reg.put_invoke_config(EventInvokeConfig {
            function: "f".into(),
            qualifier: "live".into(),
            maximum_retry_attempts: Some(0),
            maximum_event_age_s: None,
            on_success: None,
            on_failure: Some("g".into()),
            last_modified_ms: 0,
        })
        .unwrap();
        let url = reg
            .create_url(UrlConfig {
                function: "f".into(),
                qualifier: Some("live".into()),
                url_id: "u".repeat(32),
                auth_type: UrlAuthType::None,
                cors: None,
                invoke_mode: "BUFFERED".into(),
                created_ms: 0,
                last_modified_ms: 0,
            })
            .unwrap();
        assert!(matches!(
            reg.create_url(url.clone()),
            Err(RegistryError::UrlExists(_))
        ));

        let reg = Registry::open(kv).unwrap();
        // A weighted alias: the draw decides, the primary takes the rest.
        assert_eq!(
            reg.resolve_weighted("f", Some("live"), 0.1)
                .unwrap()
                .version,
            "2"
        );
        assert_eq!(
            reg.resolve_weighted("f", Some("live"), 0.3)
                .unwrap()
                .version,
            "1"
        );
        assert!(matches!(
            reg.delete_version("f", "2"),
            Err(RegistryError::VersionInUse(..))
        ));
        assert_eq!(reg.tags("f").unwrap()["team"], "core");
        assert_eq!(
            reg.invoke_config("f", "live")
                .unwrap()
                .on_failure
                .as_deref(),
            Some("g")
        );
        assert_eq!(reg.url_by_id(&url.url_id).unwrap().function, "f");
        let (page, next) = reg.versions_page("f", None, 2).unwrap();
        assert_eq!(page.len(), 2);
        let (rest, none) = reg.versions_page("f", next.as_deref(), 2).unwrap();
        assert_eq!((rest.len(), rest[0].version.as_str(), none), (1, "2", None));
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
        assert!(reg.url_by_id(&url.url_id).is_none());
        let reg = Registry::open(Arc::clone(&reg.kv)).unwrap();
        assert!(reg.url_by_id(&url.url_id).is_none());
        assert!(reg.tags("f").is_err());
    }
}
