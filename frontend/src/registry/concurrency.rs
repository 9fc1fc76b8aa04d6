//! Provisioned-concurrency requests (`p/<name>/<version>` -> [`ProvRecord`]) and reserved
//! concurrency (`r/<name>` -> [`ReservedRecord`]) in the registry; the scheduler enforces them.
use super::{codec, keys, ProvRecord, Registry, RegistryError, ReservedRecord, Result};

impl Registry {
    /// Records a provisioned-concurrency request.
    pub fn put_provisioned(&self, rec: ProvRecord) -> Result<()> {
        let mut cache = self.cache.write();
        let entry = cache
            .get_mut(&rec.function)
            .ok_or_else(|| RegistryError::FunctionNotFound(rec.function.clone()))?;
        self.kv.put(
            &keys::provisioned(&rec.function, &rec.version),
            &codec::encode(&rec)?,
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
        self.kv.delete(&keys::provisioned(function, version))?;
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
        let key = keys::reserved(function);
        match n {
            Some(n) => {
                let rec = ReservedRecord {
                    function: function.into(),
                    reserved: n,
                };
                self.kv.put(&key, &codec::encode(&rec)?)?
            }
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
}
