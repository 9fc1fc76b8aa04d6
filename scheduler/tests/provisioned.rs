//! Provisioned concurrency: IN_PROGRESS -> READY / FAILED, lowering, deleting, replacing crashed
//! instances.

mod common;

use std::time::Duration;

use common::{env, fv, limits, settle};
use thaw_scheduler::{ProvisionedError, ProvisionedStatus, RestoreKind, StartType};

#[tokio::test(start_paused = true)]
async fn provisioning_goes_in_progress_then_ready() {
    let e = env(limits());
    e.factory.set_delay(Duration::from_millis(20));
    let v1 = fv("f", "1");
    let config = e.scheduler.put_provisioned(&v1, 5).unwrap();
    assert_eq!(config.status, ProvisionedStatus::InProgress);
    assert_eq!(
        (config.requested, config.allocated, config.available),
        (5, 0, 0)
    );
    let config = settle(&e.scheduler, &v1).await;
    assert_eq!(config.status, ProvisionedStatus::Ready);
    assert_eq!(
        (config.requested, config.allocated, config.available),
        (5, 5, 5)
    );
    assert_eq!(config.status_reason, None);
    assert_eq!(e.factory.provisioned_restores(), 5);

    let lease = e.scheduler.lease(&v1).await.unwrap();
    assert_eq!(lease.start_type(), StartType::Warm);
    assert!(lease.is_provisioned());
    assert_eq!(lease.instance().kind, RestoreKind::Provisioned);
    let config = e.scheduler.get_provisioned(&v1).unwrap();
    assert_eq!((config.allocated, config.available), (5, 4));
    drop(lease);
    assert_eq!(e.scheduler.get_provisioned(&v1).unwrap().available, 5);
    assert_eq!(
        e.factory.restores(),
        5,
        "leasing a provisioned instance restores nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn factory_error_fails_the_config_with_a_reason() {
    let e = env(limits());
    e.factory.set_fail(Some("snapshot missing"));
    let v1 = fv("f", "1");
    e.scheduler.put_provisioned(&v1, 3).unwrap();
    let config = settle(&e.scheduler, &v1).await;
    assert_eq!(config.status, ProvisionedStatus::Failed);
    assert_eq!(config.status_reason.as_deref(), Some("snapshot missing"));
    assert_eq!(config.allocated, 0);
    assert_eq!(e.scheduler.stats().memory_used, 0);

    // A new put retries from scratch.
    e.factory.set_fail(None);
    e.scheduler.put_provisioned(&v1, 3).unwrap();
    let config = settle(&e.scheduler, &v1).await;
    assert_eq!(
        (config.status, config.allocated),
        (ProvisionedStatus::Ready, 3)
    );
}

#[tokio::test(start_paused = true)]
async fn lowering_discards_extras_and_delete_drains() {
    let e = env(limits());
    let v1 = fv("f", "1");
    e.scheduler.put_provisioned(&v1, 4).unwrap();
    settle(&e.scheduler, &v1).await;
    let busy = e.scheduler.lease(&v1).await.unwrap();

    let config = e.scheduler.put_provisioned(&v1, 2).unwrap();
    assert_eq!(
        (config.requested, config.allocated, config.status),
        (2, 2, ProvisionedStatus::Ready)
    );
    assert_eq!(e.factory.discards(), 2);

    e.scheduler.delete_provisioned(&v1).unwrap();
    assert!(e.scheduler.get_provisioned(&v1).is_none());
    assert_eq!(
        e.factory.discards(),
        3,
        "idle provisioned instance discarded at delete"
    );
    busy.release(true);
    assert_eq!(
        e.factory.discards(),
        4,
        "busy provisioned instance discarded at release"
    );
    assert_eq!(e.factory.live(), 0);
    assert_eq!(e.scheduler.stats().memory_used, 0);
    assert_eq!(
        e.scheduler.delete_provisioned(&v1),
        Err(ProvisionedError::NotFound(v1))
    );
}

#[tokio::test(start_paused = true)]
async fn unhealthy_provisioned_instance_is_discarded_and_replaced() {
    let e = env(limits());
    let v1 = fv("f", "1");
    e.scheduler.put_provisioned(&v1, 2).unwrap();
    settle(&e.scheduler, &v1).await;
    let lease = e.scheduler.lease(&v1).await.unwrap();
    let crashed = lease.instance().serial;
    lease.release(false);
    assert_eq!(e.factory.discards(), 1);
    let config = settle(&e.scheduler, &v1).await;
    assert_eq!(
        (config.status, config.allocated, config.available),
        (ProvisionedStatus::Ready, 2, 2)
    );
    assert_eq!(e.factory.provisioned_restores(), 3);
    assert_eq!(
        e.scheduler
            .stats()
            .pool(&v1)
            .unwrap()
            .counters
            .discarded_unhealthy,
        1
    );
    let a = e.scheduler.lease(&v1).await.unwrap();
    let b = e.scheduler.lease(&v1).await.unwrap();
    assert!(a.instance().serial != crashed && b.instance().serial != crashed);
}

#[tokio::test(start_paused = true)]
async fn latest_and_zero_are_rejected() {
    let e = env(limits());
    assert_eq!(
        e.scheduler.put_provisioned(&fv("f", "$LATEST"), 1),
        Err(ProvisionedError::Latest)
    );
    assert_eq!(
        e.scheduler.put_provisioned(&fv("f", "1"), 0),
        Err(ProvisionedError::Zero)
    );
}

#[tokio::test(start_paused = true)]
async fn provisioned_restores_are_bounded_by_parallelism() {
    let e = env(limits()); // provision_parallelism = 4
    e.factory.set_delay(Duration::from_millis(10));
    let v1 = fv("f", "1");
    e.scheduler.put_provisioned(&v1, 10).unwrap();
    tokio::time::sleep(Duration::from_millis(15)).await;
    assert_eq!(e.factory.restores(), 4);
    let config = settle(&e.scheduler, &v1).await;
    assert_eq!(config.allocated, 10);
}
