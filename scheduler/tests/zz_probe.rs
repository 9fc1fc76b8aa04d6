mod common;
use common::{env, fv, limits};
use std::time::Duration;
use thaw_scheduler::LeaseError;
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledgers_balance_after_a_storm_with_provisioned_pools_crashes_and_a_tight_budget() {
    let mut l = limits();
    l.memory_budget_bytes = 12 * 10 * common::MIB;
    let e = env(l);
    e.factory.set_delay(Duration::from_millis(1));
    let p = fv("p", "1");
    e.scheduler.put_provisioned(&p, 4).unwrap();
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let scheduler = e.scheduler.clone();
        tasks.push(tokio::spawn(async move {
            let v = if t % 4 == 0 {
                fv("p", "1")
            } else {
                fv(&format!("f{}", t % 6), "1")
            };
            for i in 0..25u64 {
                if t == 0 && i % 5 == 0 {
                    // Reconfigure while leases are in flight.
                    scheduler.put_provisioned(&v, 2 + (i % 3) as u32).unwrap();
                }
                match scheduler.lease(&v).await {
                    Ok(lease) => {
                        tokio::time::sleep(Duration::from_micros(300)).await;
                        lease.release((t + i) % 7 != 0);
                    }
                    Err(LeaseError::NoCapacity(_) | LeaseError::Throttled { .. }) => {
                        tokio::task::yield_now().await
                    }
                    Err(other) => panic!("unexpected {other}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Let replacements finish.
    for _ in 0..200 {
        if e.scheduler
            .stats()
            .pools
            .iter()
            .all(|p| p.provisioned_restoring == 0 && p.restoring == 0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = e.scheduler.stats();
    assert_eq!(
        stats.unreserved_concurrency_used,
        stats
            .pools
            .iter()
            .map(|p| p.provisioned_requested)
            .sum::<u32>()
    );
    let instances: u64 = stats
        .pools
        .iter()
        .map(|p| (p.idle + p.provisioned_allocated) as u64)
        .sum();
    assert_eq!(instances, e.factory.live() as u64);
    assert_eq!(stats.memory_used, instances * 10 * common::MIB);
    assert!(stats.memory_used <= stats.memory_budget);
    let c = e.scheduler.get_provisioned(&p).unwrap();
    eprintln!(
        "PROBE status={:?} alloc={} reason={:?} restoring={}",
        c.status,
        c.allocated,
        c.status_reason,
        stats.pool(&p).unwrap().provisioned_restoring
    );
}
