//! Shared set-up for the scheduler's scenario tests: a fake factory, a fake clock, small limits.
#![allow(dead_code)]

use std::time::Duration;

use thaw_scheduler::fake::FakeFactory;
use thaw_scheduler::{
    FakeClock, FunctionVersion, Limits, ProvisionedConfig, ProvisionedStatus, Scheduler,
};

pub const MIB: u64 = 1 << 20;

pub struct Env {
    pub scheduler: Scheduler<FakeFactory>,
    pub factory: FakeFactory,
    pub clock: FakeClock,
}

pub fn limits() -> Limits {
    Limits {
        account_concurrency: 100,
        min_unreserved_concurrency: 10,
        memory_budget_bytes: 1000 * MIB,
        keep_warm_ttl: Duration::from_secs(300),
        provision_parallelism: 4,
        admission: thaw_scheduler::Admission::DEFAULT,
    }
}

/// A scheduler over a fake factory charging 10 MiB per instance.
pub fn env(limits: Limits) -> Env {
    let factory = FakeFactory::new(10 * MIB);
    let clock = FakeClock::new();
    let scheduler = Scheduler::new(factory.clone(), clock.clone(), limits);
    Env {
        scheduler,
        factory,
        clock,
    }
}

pub fn fv(function: &str, version: &str) -> FunctionVersion {
    FunctionVersion::new(function, version)
}

/// Waits (in tokio time: run tests with `start_paused = true`) until `fv`'s config leaves IN_PROGRESS.
pub async fn settle(scheduler: &Scheduler<FakeFactory>, fv: &FunctionVersion) -> ProvisionedConfig {
    for _ in 0..10_000 {
        let config = scheduler.get_provisioned(fv).expect("config exists");
        let restoring = scheduler
            .stats()
            .pool(fv)
            .map_or(0, |p| p.provisioned_restoring);
        if config.status != ProvisionedStatus::InProgress && restoring == 0 {
            return config;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("provisioned config of {fv} never settled");
}

/// Lets spawned tasks run for a while of tokio time.
pub async fn run_background() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}
