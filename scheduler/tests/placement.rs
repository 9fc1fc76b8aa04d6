//! Placement: the host memory budget evicts idle on-demand instances LRU-first, never provisioned or
//! busy ones, and refuses when nothing can make room.

mod common;

use std::time::Duration;

use common::{env, fv, limits, settle, MIB};
use thaw_scheduler::{LeaseError, ProvisionedStatus, StartType, ThrottleReason};

#[tokio::test(start_paused = true)]
async fn a_full_budget_evicts_the_least_recently_used_idle_instance() {
    let mut l = limits();
    l.memory_budget_bytes = 30 * MIB; // three 10 MiB instances
    let e = env(l);
    let (a, b, c, d) = (fv("a", "1"), fv("b", "1"), fv("c", "1"), fv("d", "1"));
    for v in [&a, &b, &c] {
        drop(e.scheduler.lease(v).await.unwrap());
        e.clock.advance(Duration::from_secs(1));
    }
    drop(e.scheduler.lease(&a).await.unwrap()); // a is now the most recently used
    let lease = e.scheduler.lease(&d).await.unwrap();
    assert_eq!(lease.start_type(), StartType::Restore);
    let stats = e.scheduler.stats();
    assert_eq!(stats.pool(&b).unwrap().idle, 0, "b was least recently used");
    assert_eq!(stats.pool(&b).unwrap().counters.evicted_memory, 1);
    assert_eq!(
        (stats.pool(&a).unwrap().idle, stats.pool(&c).unwrap().idle),
        (1, 1)
    );
    assert_eq!(stats.memory_used, 30 * MIB);
}

#[tokio::test(start_paused = true)]
async fn busy_and_provisioned_instances_are_never_evicted() {
    let mut l = limits();
    l.memory_budget_bytes = 30 * MIB;
    let e = env(l);
    let p = fv("p", "1");
    e.scheduler.put_provisioned(&p, 2).unwrap();
    assert_eq!(
        settle(&e.scheduler, &p).await.status,
        ProvisionedStatus::Ready
    );
    let _busy = e.scheduler.lease(&fv("a", "1")).await.unwrap();
    let err = e.scheduler.lease(&fv("b", "1")).await.unwrap_err();
    assert!(matches!(err, LeaseError::NoCapacity(_)), "{err:?}");
    assert_eq!(
        err.throttle_reason(),
        Some(ThrottleReason::ConcurrentInvocationLimitExceeded)
    );
    assert_eq!(e.factory.discards(), 0);
    let stats = e.scheduler.stats();
    assert_eq!(stats.pool(&fv("b", "1")).unwrap().counters.no_capacity, 1);
    assert_eq!(
        stats.unreserved_concurrency_used, 3,
        "refused lease holds no slot"
    );
}

#[tokio::test(start_paused = true)]
async fn provisioning_evicts_idle_on_demand_instances_or_fails() {
    let mut l = limits();
    l.memory_budget_bytes = 30 * MIB;
    let e = env(l);
    let od = fv("od", "1");
    let x = e.scheduler.lease(&od).await.unwrap();
    let y = e.scheduler.lease(&od).await.unwrap();
    drop((x, y));
    let p = fv("p", "1");
    e.scheduler.put_provisioned(&p, 3).unwrap();
    let config = settle(&e.scheduler, &p).await;
    assert_eq!(
        (config.status, config.allocated),
        (ProvisionedStatus::Ready, 3)
    );
    assert_eq!(e.scheduler.stats().pool(&od).unwrap().idle, 0);

    let q = fv("q", "1");
    e.scheduler.put_provisioned(&q, 1).unwrap();
    let config = settle(&e.scheduler, &q).await;
    assert_eq!(config.status, ProvisionedStatus::Failed);
    assert!(config.status_reason.unwrap().contains("memory budget"));
}

/// The storm race, made deterministic: a crashed provisioned instance frees its memory, an
/// on-demand lease takes it before the replacement restore runs, and the budget is then full of busy
/// instances. The shortage is transient, so the config waits (IN_PROGRESS) and refills once a busy
/// instance comes back, instead of turning FAILED and never replacing the instance.
#[tokio::test(start_paused = true)]
async fn a_provisioned_replacement_waits_for_busy_instances_instead_of_failing() {
    let mut l = limits();
    l.memory_budget_bytes = 30 * MIB;
    let e = env(l);
    let p = fv("p", "1");
    e.scheduler.put_provisioned(&p, 1).unwrap();
    assert_eq!(
        settle(&e.scheduler, &p).await.status,
        ProvisionedStatus::Ready
    );
    let a = e.scheduler.lease(&fv("a", "1")).await.unwrap();
    let _b = e.scheduler.lease(&fv("b", "1")).await.unwrap();
    e.scheduler.lease(&p).await.unwrap().release(false);
    // Runs before the replacement task is polled (no await point in a zero-delay restore).
    let _c = e.scheduler.lease(&fv("c", "1")).await.unwrap();
    assert_eq!(e.scheduler.stats().memory_used, 30 * MIB);

    common::run_background().await;
    let config = e.scheduler.get_provisioned(&p).unwrap();
    assert_eq!(
        (config.status, config.allocated, config.status_reason),
        (ProvisionedStatus::InProgress, 0, None)
    );
    let pool = e.scheduler.stats().pool(&p).unwrap().clone();
    assert_eq!(
        pool.provisioned_restoring, 1,
        "the replacement is still owed"
    );
    assert_eq!(pool.counters.no_capacity, 1, "counted once, not per look");

    drop(a); // idle now, so evictable
    let config = settle(&e.scheduler, &p).await;
    assert_eq!(
        (config.status, config.allocated),
        (ProvisionedStatus::Ready, 1)
    );
    let stats = e.scheduler.stats();
    assert_eq!(
        stats.pool(&fv("a", "1")).unwrap().counters.evicted_memory,
        1
    );
    assert_eq!(stats.memory_used, 30 * MIB);
    assert_eq!(e.factory.live(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_provisioned_restore_waiting_for_memory_ends_when_the_config_is_deleted() {
    let mut l = limits();
    l.memory_budget_bytes = 20 * MIB;
    let e = env(l);
    let _a = e.scheduler.lease(&fv("a", "1")).await.unwrap();
    let _b = e.scheduler.lease(&fv("b", "1")).await.unwrap();
    let p = fv("p", "1");
    e.scheduler.put_provisioned(&p, 1).unwrap();
    common::run_background().await;
    let stats = e.scheduler.stats();
    assert_eq!(stats.pool(&p).unwrap().provisioned_restoring, 1);
    assert_eq!(
        e.scheduler.get_provisioned(&p).unwrap().status,
        ProvisionedStatus::InProgress
    );

    e.scheduler.delete_provisioned(&p).unwrap();
    common::run_background().await;
    let stats = e.scheduler.stats();
    assert_eq!(stats.pool(&p).unwrap().provisioned_restoring, 0);
    assert_eq!(stats.pool(&p).unwrap().concurrency, 0);
    assert_eq!(stats.memory_used, 20 * MIB);
    assert_eq!(e.factory.provisioned_restores(), 0);
}

/// Issue 14: admission by measured use. Until an instance of a version is measured,
/// it is charged its full declared size; after its first invocation, what it
/// measured plus the margin, so more instances fit the same budget. A new
/// generation (code or configuration changed) goes back to the declared size.
#[tokio::test(start_paused = true)]
async fn instances_are_charged_what_they_were_measured_to_cost() {
    let mut l = limits();
    l.memory_budget_bytes = 40 * MIB; // four 10 MiB instances at their declared size
    l.admission = thaw_scheduler::Admission::Measured {
        margin_pct: 50,
        floor_bytes: MIB,
    };
    let e = env(l);
    e.factory.set_measured(2 * MIB); // each really costs 2 MiB: charged 3 MiB
    let a = fv("a", "1");
    let first = e.scheduler.lease(&a).await.unwrap();
    assert_eq!(
        e.scheduler.stats().memory_used,
        10 * MIB,
        "declared until measured"
    );
    drop(first);
    let stats = e.scheduler.stats();
    let pool = stats.pool(&a).unwrap();
    assert_eq!(pool.memory_measured_per_instance, 2 * MIB);
    assert_eq!(pool.memory_charged_per_instance, 3 * MIB);
    assert_eq!(stats.memory_used, 3 * MIB, "the idle instance re-charged");
    // Thirteen busy instances fit in 40 MiB at 3 MiB each; the 14th does not.
    let mut held = Vec::new();
    for _ in 0..13 {
        held.push(e.scheduler.lease(&a).await.unwrap());
    }
    assert_eq!(e.scheduler.stats().memory_used, 39 * MIB);
    let err = e.scheduler.lease(&a).await.unwrap_err();
    assert!(matches!(err, LeaseError::NoCapacity(_)), "{err:?}");
    // A bigger measurement raises every instance's charge (never above declared).
    e.factory.set_measured(8 * MIB);
    drop(held.pop());
    let stats = e.scheduler.stats();
    assert_eq!(
        stats.pool(&a).unwrap().memory_charged_per_instance,
        10 * MIB
    );
    assert_eq!(
        stats.memory_used,
        130 * MIB,
        "13 instances, over budget until some go"
    );
    let err = e.scheduler.lease(&fv("b", "1")).await.unwrap_err();
    assert!(matches!(err, LeaseError::NoCapacity(_)), "{err:?}");
    drop(held);
    // The charge follows recent measurements: sixteen small ones bring it back down.
    e.factory.set_measured(2 * MIB);
    for _ in 0..16 {
        drop(e.scheduler.lease(&a).await.unwrap());
    }
    assert_eq!(
        e.scheduler
            .stats()
            .pool(&a)
            .unwrap()
            .memory_charged_per_instance,
        3 * MIB
    );
    // A new generation is charged its declared size again until measured.
    e.factory.set_measured(0);
    e.scheduler.invalidate(&a);
    let stats = e.scheduler.stats();
    assert_eq!(stats.pool(&a).unwrap().memory_measured_per_instance, 0);
    assert_eq!(
        stats.memory_used, 0,
        "idle instances of the old generation discarded"
    );
}

/// With `Admission::MemorySize` measurements are ignored.
#[tokio::test(start_paused = true)]
async fn memory_size_admission_ignores_measurements() {
    let mut l = limits();
    l.admission = thaw_scheduler::Admission::MemorySize;
    let e = env(l);
    e.factory.set_measured(2 * MIB);
    let a = fv("a", "1");
    drop(e.scheduler.lease(&a).await.unwrap());
    let stats = e.scheduler.stats();
    assert_eq!(
        stats.pool(&a).unwrap().memory_charged_per_instance,
        10 * MIB
    );
    assert_eq!(stats.memory_used, 10 * MIB);
}

/// Provisioned instances are measured as soon as they are restored (they may idle for
/// long before a first invocation), so a pool larger than the budget at the declared
/// size still comes up READY when its instances are small.
#[tokio::test(start_paused = true)]
async fn provisioned_instances_are_measured_when_restored() {
    let mut l = limits();
    l.memory_budget_bytes = 40 * MIB; // four at the declared 10 MiB
    l.admission = thaw_scheduler::Admission::Measured {
        margin_pct: 0,
        floor_bytes: MIB,
    };
    let e = env(l);
    e.factory.set_measured(2 * MIB);
    let p = fv("p", "1");
    e.scheduler.put_provisioned(&p, 15).unwrap();
    assert_eq!(
        settle(&e.scheduler, &p).await.status,
        ProvisionedStatus::Ready
    );
    let stats = e.scheduler.stats();
    assert_eq!(stats.pool(&p).unwrap().provisioned_allocated, 15);
    assert_eq!(stats.memory_used, 30 * MIB);
}
