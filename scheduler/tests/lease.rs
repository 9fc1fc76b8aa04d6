//! Leasing: warm reuse first, spillover restore, return to the pool, unhealthy discard, cancelled
//! restores, invalidation.

mod common;

use std::time::Duration;

use common::{env, fv, limits, run_background, MIB};
use thaw_scheduler::{LeaseError, RestoreKind, StartType};

#[tokio::test(start_paused = true)]
async fn spillover_restores_then_release_returns_to_pool_and_lease_prefers_warm() {
    let e = env(limits());
    let v = fv("f", "$LATEST");
    let first = e.scheduler.lease(&v).await.unwrap();
    assert_eq!(first.start_type(), StartType::Restore);
    assert!(first.restore_duration().is_some());
    assert_eq!(first.instance().kind, RestoreKind::OnDemand);
    let serial = first.instance().serial;
    first.release(true);
    let stats = e.scheduler.stats();
    let pool = stats.pool(&v).unwrap();
    assert_eq!((pool.idle, pool.busy), (1, 0));

    let second = e.scheduler.lease(&v).await.unwrap();
    assert_eq!(second.start_type(), StartType::Warm);
    assert_eq!(second.restore_duration(), None);
    assert_eq!(second.instance().serial, serial);
    // The only warm instance is busy: the next lease spills over.
    let third = e.scheduler.lease(&v).await.unwrap();
    assert_eq!(third.start_type(), StartType::Restore);
    assert_eq!(e.factory.restores(), 2);
    drop((second, third));
    let counters = e.scheduler.stats().pool(&v).unwrap().counters;
    assert_eq!((counters.leases_warm, counters.leases_restore), (1, 2));
    assert_eq!(e.scheduler.stats().pool(&v).unwrap().idle, 2);
}

#[tokio::test(start_paused = true)]
async fn warm_reuse_takes_the_most_recently_used_instance() {
    let e = env(limits());
    let v = fv("f", "1");
    let a = e.scheduler.lease(&v).await.unwrap();
    let b = e.scheduler.lease(&v).await.unwrap();
    let b_serial = b.instance().serial;
    a.release(true);
    e.clock.advance(Duration::from_secs(1));
    b.release(true);
    assert_eq!(
        e.scheduler.lease(&v).await.unwrap().instance().serial,
        b_serial
    );
}

#[tokio::test(start_paused = true)]
async fn unhealthy_on_demand_instance_is_discarded_not_pooled() {
    let e = env(limits());
    let v = fv("f", "1");
    let lease = e.scheduler.lease(&v).await.unwrap();
    lease.release(false);
    let stats = e.scheduler.stats();
    assert_eq!(stats.pool(&v).unwrap().idle, 0);
    assert_eq!(stats.memory_used, 0);
    assert_eq!(e.factory.discards(), 1);
    run_background().await;
    assert_eq!(
        e.factory.restores(),
        1,
        "on-demand instances are not replaced"
    );
}

#[tokio::test(start_paused = true)]
async fn failed_on_demand_restore_returns_the_error_and_its_slot() {
    let e = env(limits());
    e.factory.set_fail(Some("no snapshot"));
    let v = fv("f", "1");
    let err = e.scheduler.lease(&v).await.unwrap_err();
    assert!(matches!(err, LeaseError::Restore(_)));
    assert_eq!(err.throttle_reason(), None);
    let stats = e.scheduler.stats();
    assert_eq!(
        (stats.unreserved_concurrency_used, stats.memory_used),
        (0, 0)
    );
    assert_eq!(stats.pool(&v).unwrap().counters.restore_failures, 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_lease_future_mid_restore_gives_back_its_slot() {
    let e = env(limits());
    e.factory.set_delay(Duration::from_secs(1));
    let v = fv("f", "1");
    let attempt = tokio::time::timeout(Duration::from_millis(10), e.scheduler.lease(&v)).await;
    assert!(attempt.is_err(), "restore should still be running");
    let stats = e.scheduler.stats();
    assert_eq!(stats.pool(&v).unwrap().restoring, 0);
    assert_eq!(
        (stats.unreserved_concurrency_used, stats.memory_used),
        (0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn invalidate_discards_idle_and_stale_busy_instances() {
    let e = env(limits());
    let v = fv("f", "$LATEST");
    let idle = e.scheduler.lease(&v).await.unwrap();
    let busy = e.scheduler.lease(&v).await.unwrap();
    drop(idle);
    e.scheduler.invalidate(&v);
    assert_eq!(e.factory.discards(), 1);
    busy.release(true);
    assert_eq!(
        e.factory.discards(),
        2,
        "instance of the old code is not pooled"
    );
    assert_eq!(e.scheduler.stats().memory_used, 0);
    let next = e.scheduler.lease(&v).await.unwrap();
    assert_eq!(next.start_type(), StartType::Restore);
    assert_eq!(e.scheduler.stats().memory_used, 10 * MIB);
}

#[tokio::test(start_paused = true)]
async fn remove_function_drops_configs_and_instances() {
    let e = env(limits());
    let v = fv("f", "1");
    e.scheduler.put_reserved("f", 5).unwrap();
    e.scheduler.put_provisioned(&v, 2).unwrap();
    common::settle(&e.scheduler, &v).await;
    let busy = e.scheduler.lease(&v).await.unwrap();
    e.scheduler.remove_function("f");
    assert_eq!(e.scheduler.get_reserved("f"), None);
    assert!(e.scheduler.get_provisioned(&v).is_none());
    drop(busy);
    assert_eq!(e.factory.live(), 0);
    let report = e.scheduler.tick();
    assert_eq!(report.pools_removed, 1);
    let stats = e.scheduler.stats();
    assert!(stats.pools.is_empty());
    assert_eq!(
        (
            stats.memory_used,
            stats.reserved_concurrency_total,
            stats.unreserved_concurrency_used
        ),
        (0, 0, 0)
    );
}
