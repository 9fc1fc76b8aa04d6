//! Registry operations deploy tools use beyond functions and versions: alias updates and
//! listings, tags, event-invoke configs and function URLs. Each write is one synced batch
//! and then the cache, under the cache's write lock.
use super::{
    keys, qualifier_key, version_key, Alias, EventInvokeConfig, FunctionEntry, Permission, Policy,
    Registry, RegistryError, Result, UrlConfig,
};
use std::collections::BTreeMap;
use thaw_snapshotter::KvOp;

/// Every version an alias names (primary and weighted) exists.
pub(super) fn check_alias_versions(entry: &FunctionEntry, alias: &Alias) -> Result<()> {
    for v in std::iter::once(&alias.version).chain(alias.weights.keys()) {
        if !entry.versions.contains_key(&version_key(v)) {
            return Err(RegistryError::VersionNotFound(
                alias.function.clone(),
                v.clone(),
            ));
        }
    }
    Ok(())
}

/// `RevisionId`, when the caller gave one, is the policy's current one.
fn check_policy_revision(policy: Option<&Policy>, revision: Option<&str>) -> Result<()> {
    match revision {
        Some(r) if policy.is_none_or(|p| p.revision_id != r) => {
            Err(RegistryError::RevisionMismatch)
        }
        _ => Ok(()),
    }
}

impl Registry {
    fn with_entry<T>(
        &self,
        function: &str,
        f: impl FnOnce(&mut FunctionEntry) -> Result<T>,
    ) -> Result<T> {
        let mut cache = self.cache.write();
        let entry = cache
            .get_mut(function)
            .ok_or_else(|| RegistryError::FunctionNotFound(function.into()))?;
        f(entry)
    }

    fn read_entry<T>(&self, function: &str, f: impl FnOnce(&FunctionEntry) -> T) -> Result<T> {
        let cache = self.cache.read();
        let entry = cache
            .get(function)
            .ok_or_else(|| RegistryError::FunctionNotFound(function.into()))?;
        Ok(f(entry))
    }

    /// UpdateAlias: `change` edits a copy of the alias (after the caller's `RevisionId`
    /// check); the versions it then names must exist.
    pub fn update_alias(
        &self,
        function: &str,
        name: &str,
        expected_revision: Option<&str>,
        change: impl FnOnce(&mut Alias),
    ) -> Result<Alias> {
        self.with_entry(function, |entry| {
            let old = entry
                .aliases
                .get(name)
                .ok_or_else(|| RegistryError::AliasNotFound(function.into(), name.into()))?;
            if expected_revision.is_some_and(|r| r != old.revision_id) {
                return Err(RegistryError::RevisionMismatch);
            }
            let mut alias = old.clone();
            change(&mut alias);
            alias.revision_id = super::revision_id();
            check_alias_versions(entry, &alias)?;
            self.kv
                .put(&keys::alias(function, name), &super::codec::encode(&alias)?)?;
            entry.aliases.insert(name.to_string(), alias.clone());
            Ok(alias)
        })
    }

    /// DeleteAlias (and the provisioned request, event-invoke config and URL on it); whether
    /// it existed.
    pub fn delete_alias(&self, function: &str, name: &str) -> Result<bool> {
        self.with_entry(function, |entry| {
            let Some(alias) = entry.aliases.get(name).cloned() else {
                return Ok(false);
            };
            let mut ops = vec![
                KvOp::Delete(keys::alias(function, name)),
                KvOp::Delete(keys::invoke_config(function, name)),
                KvOp::Delete(keys::url(function, name)),
            ];
            let prov = entry
                .provisioned
                .get(&alias.version)
                .filter(|p| p.qualifier.as_deref() == Some(name))
                .is_some();
            if prov {
                ops.push(KvOp::Delete(keys::provisioned(function, &alias.version)));
            }
            self.kv.write(ops)?;
            if prov {
                entry.provisioned.remove(&alias.version);
            }
            entry.aliases.remove(name);
            entry.invoke_configs.remove(name);
            if let Some(u) = entry.urls.remove(name) {
                self.url_ids.write().remove(&u.url_id);
            }
            Ok(true)
        })
    }

    /// ListAliases (optionally only those whose primary or weighted version is `version`).
    pub fn list_aliases(&self, function: &str, version: Option<&str>) -> Result<Vec<Alias>> {
        self.read_entry(function, |e| {
            e.aliases
                .values()
                .filter(|a| version.is_none_or(|v| a.version == v || a.weights.contains_key(v)))
                .cloned()
                .collect()
        })
    }

    /// The provisioned requests of one function.
    pub fn provisioned_of(&self, function: &str) -> Result<Vec<super::ProvRecord>> {
        self.read_entry(function, |e| e.provisioned.values().cloned().collect())
    }

    /// A function's tags.
    pub fn tags(&self, function: &str) -> Result<BTreeMap<String, String>> {
        self.read_entry(function, |e| e.tags.clone())
    }

    /// TagResource (adds or replaces) / UntagResource (`remove`).
    pub fn change_tags(
        &self,
        function: &str,
        add: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<BTreeMap<String, String>> {
        self.with_entry(function, |entry| {
            let mut tags = entry.tags.clone();
            tags.extend(add.iter().map(|(k, v)| (k.clone(), v.clone())));
            for k in remove {
                tags.remove(k);
            }
            let key = keys::tags(function);
            if tags.is_empty() {
                self.kv.delete(&key)?;
            } else {
                self.kv.put(&key, &super::codec::encode(&tags)?)?;
            }
            entry.tags = tags.clone();
            Ok(tags)
        })
    }

    /// Stores an event-invoke config (Put replaces, Update merges: the caller decides).
    pub fn put_invoke_config(&self, c: EventInvokeConfig) -> Result<EventInvokeConfig> {
        self.with_entry(&c.function.clone(), |entry| {
            self.kv.put(
                &keys::invoke_config(&c.function, &c.qualifier),
                &super::codec::encode(&c)?,
            )?;
            entry.invoke_configs.insert(c.qualifier.clone(), c.clone());
            Ok(c)
        })
    }

    /// The event-invoke config of `function` at `qualifier` (`$LATEST` when unqualified).
    pub fn invoke_config(&self, function: &str, qualifier: &str) -> Result<EventInvokeConfig> {
        self.read_entry(function, |e| e.invoke_configs.get(qualifier).cloned())?
            .ok_or_else(|| {
                RegistryError::EventInvokeConfigNotFound(format!("{function}:{qualifier}"))
            })
    }

    /// Every event-invoke config of `function`.
    pub fn invoke_configs(&self, function: &str) -> Result<Vec<EventInvokeConfig>> {
        self.read_entry(function, |e| e.invoke_configs.values().cloned().collect())
    }

    /// DeleteFunctionEventInvokeConfig.
    pub fn delete_invoke_config(&self, function: &str, qualifier: &str) -> Result<()> {
        self.with_entry(function, |entry| {
            if !entry.invoke_configs.contains_key(qualifier) {
                return Err(RegistryError::EventInvokeConfigNotFound(format!(
                    "{function}:{qualifier}"
                )));
            }
            self.kv.delete(&keys::invoke_config(function, qualifier))?;
            entry.invoke_configs.remove(qualifier);
            Ok(())
        })
    }

    /// CreateFunctionUrlConfig: one URL per function and qualifier.
    pub fn create_url(&self, u: UrlConfig) -> Result<UrlConfig> {
        let q = qualifier_key(u.qualifier.as_deref());
        self.with_entry(&u.function.clone(), |entry| {
            if entry.urls.contains_key(&q) {
                return Err(RegistryError::UrlExists(format!("{}:{q}", u.function)));
            }
            if let Some(alias) = u.qualifier.as_deref() {
                if !entry.aliases.contains_key(alias) {
                    return Err(RegistryError::AliasNotFound(
                        u.function.clone(),
                        alias.into(),
                    ));
                }
            }
            self.kv
                .put(&keys::url(&u.function, &q), &super::codec::encode(&u)?)?;
            self.url_ids
                .write()
                .insert(u.url_id.clone(), (u.function.clone(), q.clone()));
            entry.urls.insert(q, u.clone());
            Ok(u)
        })
    }

    /// UpdateFunctionUrlConfig: `change` edits a copy.
    pub fn update_url(
        &self,
        function: &str,
        qualifier: Option<&str>,
        change: impl FnOnce(&mut UrlConfig),
    ) -> Result<UrlConfig> {
        let q = qualifier_key(qualifier);
        self.with_entry(function, |entry| {
            let mut u = entry
                .urls
                .get(&q)
                .cloned()
                .ok_or_else(|| RegistryError::UrlNotFound(format!("{function}:{q}")))?;
            change(&mut u);
            self.kv
                .put(&keys::url(function, &q), &super::codec::encode(&u)?)?;
            entry.urls.insert(q, u.clone());
            Ok(u)
        })
    }

    /// GetFunctionUrlConfig.
    pub fn url(&self, function: &str, qualifier: Option<&str>) -> Result<UrlConfig> {
        let q = qualifier_key(qualifier);
        self.read_entry(function, |e| e.urls.get(&q).cloned())?
            .ok_or_else(|| RegistryError::UrlNotFound(format!("{function}:{q}")))
    }

    /// ListFunctionUrlConfigs.
    pub fn urls(&self, function: &str) -> Result<Vec<UrlConfig>> {
        self.read_entry(function, |e| e.urls.values().cloned().collect())
    }

    /// AddPermission: a statement added to the policy of `function` at `qualifier`.
    pub fn add_permission(
        &self,
        function: &str,
        qualifier: Option<&str>,
        statement: Permission,
        revision: Option<&str>,
    ) -> Result<Policy> {
        let q = qualifier_key(qualifier);
        self.with_entry(function, |entry| {
            check_policy_revision(entry.policies.get(&q), revision)?;
            let mut policy = entry.policies.get(&q).cloned().unwrap_or_else(|| Policy {
                function: function.into(),
                qualifier: qualifier.map(String::from),
                statements: Vec::new(),
                revision_id: String::new(),
            });
            if policy.statements.iter().any(|s| s.sid == statement.sid) {
                return Err(RegistryError::StatementExists(statement.sid));
            }
            policy.statements.push(statement);
            policy.revision_id = super::revision_id();
            self.kv
                .put(&keys::policy(function, &q), &super::codec::encode(&policy)?)?;
            entry.policies.insert(q, policy.clone());
            Ok(policy)
        })
    }

    /// GetPolicy.
    pub fn policy(&self, function: &str, qualifier: Option<&str>) -> Result<Policy> {
        let q = qualifier_key(qualifier);
        self.read_entry(function, |e| e.policies.get(&q).cloned())?
            .ok_or_else(|| RegistryError::PolicyNotFound(format!("{function}:{q}")))
    }

    /// RemovePermission: the statement `sid` leaves the policy (the policy goes with
    /// its last statement).
    pub fn remove_permission(
        &self,
        function: &str,
        qualifier: Option<&str>,
        sid: &str,
        revision: Option<&str>,
    ) -> Result<()> {
        let q = qualifier_key(qualifier);
        self.with_entry(function, |entry| {
            let mut policy = entry
                .policies
                .get(&q)
                .cloned()
                .ok_or_else(|| RegistryError::PolicyNotFound(format!("{function}:{q}")))?;
            check_policy_revision(Some(&policy), revision)?;
            let at = policy
                .statements
                .iter()
                .position(|s| s.sid == sid)
                .ok_or_else(|| {
                    RegistryError::StatementNotFound(format!("{function}:{q}"), sid.into())
                })?;
            policy.statements.remove(at);
            if policy.statements.is_empty() {
                self.kv.delete(&keys::policy(function, &q))?;
                entry.policies.remove(&q);
            } else {
                policy.revision_id = super::revision_id();
                self.kv
                    .put(&keys::policy(function, &q), &super::codec::encode(&policy)?)?;
                entry.policies.insert(q, policy);
            }
            Ok(())
        })
    }

    /// DeleteFunctionUrlConfig.
    pub fn delete_url(&self, function: &str, qualifier: Option<&str>) -> Result<()> {
        let q = qualifier_key(qualifier);
        self.with_entry(function, |entry| {
            let u = entry
                .urls
                .get(&q)
                .ok_or_else(|| RegistryError::UrlNotFound(format!("{function}:{q}")))?;
            self.kv.delete(&keys::url(function, &q))?;
            self.url_ids.write().remove(&u.url_id);
            entry.urls.remove(&q);
            Ok(())
        })
    }

    /// The URL config a URL id names (the URL listener's routing).
    pub fn url_by_id(&self, url_id: &str) -> Option<UrlConfig> {
        let (function, q) = self.url_ids.read().get(url_id).cloned()?;
        self.cache.read().get(&function)?.urls.get(&q).cloned()
    }
}
