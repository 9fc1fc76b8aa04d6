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
