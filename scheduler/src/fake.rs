//! A fake [`InstanceFactory`] for tests of this crate and of crates above it (the frontend can test
//! its HTTP and gRPC surfaces without KVM): counts restores and discards, and can be told to fail
//! or to be slow.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::factory::{FactoryError, InstanceFactory, RestoreKind};
use crate::ids::FunctionVersion;

/// An instance of the fake factory.
#[derive(Debug, PartialEq, Eq)]
pub struct FakeInstance {
    /// Serial number of the restore that made it (1-based).
    pub serial: u64,
    /// The version it is an instance of.
    pub fv: FunctionVersion,
    /// Why it was restored.
    pub kind: RestoreKind,
}

#[derive(Debug, Default)]
struct Shared {
    restores: AtomicU64,
    provisioned_restores: AtomicU64,
    discards: AtomicU64,
    memory_bytes: AtomicU64,
    /// What `measured_bytes` answers (0: `None`).
    measured_bytes: AtomicU64,
    /// Restore delay in microseconds (tokio time, so paused-time tests stay deterministic).
    delay_us: AtomicU64,
    fail: Mutex<Option<String>>,
    live: Mutex<HashSet<u64>>,
}

/// A factory whose instances are plain values. Clones share counters and settings.
#[derive(Debug, Clone)]
pub struct FakeFactory {
    shared: Arc<Shared>,
}

impl FakeFactory {
    /// A factory charging `memory_bytes` per instance, restoring instantly and successfully.
    pub fn new(memory_bytes: u64) -> Self {
        let shared = Shared::default();
        shared.memory_bytes.store(memory_bytes, Ordering::Relaxed);
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Restores started that succeeded.
    pub fn restores(&self) -> u64 {
        self.shared.restores.load(Ordering::SeqCst)
    }

    /// Of [`FakeFactory::restores`], those for provisioned pools.
    pub fn provisioned_restores(&self) -> u64 {
        self.shared.provisioned_restores.load(Ordering::SeqCst)
    }

    /// Instances discarded.
    pub fn discards(&self) -> u64 {
        self.shared.discards.load(Ordering::SeqCst)
    }

    /// Instances restored and not yet discarded.
    pub fn live(&self) -> usize {
        self.shared.live.lock().len()
    }

    /// Makes every following restore fail with `message` (`None` heals the factory).
    pub fn set_fail(&self, message: Option<&str>) {
        *self.shared.fail.lock() = message.map(str::to_owned);
    }

    /// Makes `measured_bytes` answer `bytes` for every instance (0: not measurable).
    pub fn set_measured(&self, bytes: u64) {
        self.shared.measured_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Makes every following restore take `delay` of tokio time.
    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .delay_us
            .store(delay.as_micros() as u64, Ordering::Relaxed);
    }
}

impl InstanceFactory for FakeFactory {
    type Instance = FakeInstance;

    async fn restore(
        &self,
        fv: &FunctionVersion,
        kind: RestoreKind,
    ) -> Result<FakeInstance, FactoryError> {
        let delay = self.shared.delay_us.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_micros(delay)).await;
        }
        if let Some(message) = self.shared.fail.lock().clone() {
            return Err(FactoryError::restore(message));
        }
        let serial = self.shared.restores.fetch_add(1, Ordering::SeqCst) + 1;
        if kind == RestoreKind::Provisioned {
            self.shared
                .provisioned_restores
                .fetch_add(1, Ordering::SeqCst);
        }
        self.shared.live.lock().insert(serial);
        Ok(FakeInstance {
            serial,
            fv: fv.clone(),
            kind,
        })
    }

    fn memory_bytes(&self, _fv: &FunctionVersion) -> u64 {
        self.shared.memory_bytes.load(Ordering::Relaxed)
    }

    fn measured_bytes(&self, _instance: &FakeInstance) -> Option<u64> {
        Some(self.shared.measured_bytes.load(Ordering::Relaxed)).filter(|&b| b > 0)
    }

    fn discard(&self, instance: FakeInstance) {
        let removed = self.shared.live.lock().remove(&instance.serial);
        assert!(
            removed,
            "instance {} discarded twice or never restored",
            instance.serial
        );
        self.shared.discards.fetch_add(1, Ordering::SeqCst);
    }
}
