//! Counting: reserved concurrency per function, the account limit, their 429 reasons, and the
//! validation of reserved and provisioned configs.

mod common;

use common::{env, fv, limits, settle};
use thaw_scheduler::{LeaseError, ProvisionedError, ReservedError, StartType, ThrottleReason};

fn reason(result: Result<impl std::fmt::Debug, LeaseError>) -> ThrottleReason {
    match result {
        Err(LeaseError::Throttled { reason }) => reason,
        other => panic!("expected a throttle, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn reserved_limit_throttles_with_the_reserved_reason() {
    let e = env(limits());
    e.scheduler.put_reserved("f", 2).unwrap();
    let (v1, v2) = (fv("f", "1"), fv("f", "2"));
    let _a = e.scheduler.lease(&v1).await.unwrap();
    let _b = e.scheduler.lease(&v2).await.unwrap();
    let r = reason(e.scheduler.lease(&v1).await);
    assert_eq!(
        r,
        ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded
    );
    assert_eq!(
        r.as_str(),
        "ReservedFunctionConcurrentInvocationLimitExceeded"
    );
    assert_eq!(
        e.scheduler
            .stats()
            .pool(&v1)
            .unwrap()
            .counters
            .throttles_reserved,
        1
    );
    // Other functions are unaffected.
    e.scheduler.lease(&fv("g", "1")).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn reserved_zero_throttles_everything_until_deleted() {
    let e = env(limits());
    e.scheduler.put_reserved("f", 0).unwrap();
    let v = fv("f", "$LATEST");
    assert_eq!(
        reason(e.scheduler.lease(&v).await),
        ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded
    );
    assert_eq!(e.factory.restores(), 0);
    assert_eq!(e.scheduler.delete_reserved("f"), Some(0));
    assert_eq!(
        e.scheduler.lease(&v).await.unwrap().start_type(),
        StartType::Restore
    );
}

#[tokio::test(start_paused = true)]
async fn account_limit_throttles_with_the_account_reason_and_reservations_shrink_it() {
    let mut l = limits();
    l.account_concurrency = 20;
    l.min_unreserved_concurrency = 5;
    let e = env(l);
    e.scheduler.put_reserved("big", 12).unwrap();
    let mut held = Vec::new();
    for i in 0..8 {
        held.push(e.scheduler.lease(&fv(&format!("f{i}"), "1")).await.unwrap());
    }
    let err = e.scheduler.lease(&fv("other", "1")).await.unwrap_err();
    assert_eq!(
        err.throttle_reason(),
        Some(ThrottleReason::ConcurrentInvocationLimitExceeded)
    );
    // The reserved function still has its own 12.
    for _ in 0..12 {
        held.push(e.scheduler.lease(&fv("big", "1")).await.unwrap());
    }
    assert_eq!(
        reason(e.scheduler.lease(&fv("big", "1")).await),
        ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded
    );
    held.pop();
    held.remove(0);
    e.scheduler.lease(&fv("other", "1")).await.unwrap();
    e.scheduler.lease(&fv("big", "1")).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn reserved_changes_are_validated() {
    let mut l = limits();
    l.account_concurrency = 100;
    l.min_unreserved_concurrency = 10;
    let e = env(l);
    e.scheduler.put_reserved("a", 60).unwrap();
    assert_eq!(
        e.scheduler.put_reserved("b", 31),
        Err(ReservedError::ExceedsUnreserved {
            requested: 31,
            available: 30
        })
    );
    e.scheduler.put_reserved("b", 30).unwrap();
    e.scheduler.put_reserved("a", 10).unwrap(); // lowering frees room
    assert_eq!(e.scheduler.stats().reserved_concurrency_total, 40);
    e.scheduler.put_provisioned(&fv("a", "1"), 8).unwrap();
    assert_eq!(
        e.scheduler.put_reserved("a", 7),
        Err(ReservedError::BelowProvisioned {
            requested: 7,
            provisioned: 8
        })
    );
}

#[tokio::test(start_paused = true)]
async fn provisioned_counts_against_reserved_and_is_served_first() {
    let e = env(limits());
    e.scheduler.put_reserved("f", 3).unwrap();
    let v = fv("f", "1");
    assert_eq!(
        e.scheduler.put_provisioned(&v, 4),
        Err(ProvisionedError::ExceedsReserved {
            requested: 4,
            reserved: 3
        })
    );
    e.scheduler.put_provisioned(&v, 2).unwrap();
    settle(&e.scheduler, &v).await;
    // Two provisioned + one on-demand slot = the reservation.
    let a = e.scheduler.lease(&v).await.unwrap();
    let b = e.scheduler.lease(&v).await.unwrap();
    assert!(a.is_provisioned() && b.is_provisioned());
    let c = e.scheduler.lease(&v).await.unwrap();
    assert!(!c.is_provisioned());
    assert_eq!(c.start_type(), StartType::Restore);
    assert_eq!(
        reason(e.scheduler.lease(&v).await),
        ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded
    );
    drop(a);
    // A free provisioned instance is served even though on-demand slots are exhausted.
    assert!(e.scheduler.lease(&v).await.unwrap().is_provisioned());
}

#[tokio::test(start_paused = true)]
async fn unreserved_provisioned_draws_on_the_account_pool() {
    let mut l = limits();
    l.account_concurrency = 10;
    l.min_unreserved_concurrency = 2;
    let e = env(l);
    assert_eq!(
        e.scheduler.put_provisioned(&fv("p", "1"), 9),
        Err(ProvisionedError::ExceedsUnreserved {
            requested: 9,
            available: 8
        })
    );
    e.scheduler.put_provisioned(&fv("p", "1"), 8).unwrap();
    let _x = e.scheduler.lease(&fv("x", "1")).await.unwrap();
    let _y = e.scheduler.lease(&fv("y", "1")).await.unwrap();
    assert_eq!(
        reason(e.scheduler.lease(&fv("z", "1")).await),
        ThrottleReason::ConcurrentInvocationLimitExceeded
    );
}
