//! Keep-warm TTL: idle on-demand instances scale to zero; provisioned instances stay.

mod common;

use std::time::Duration;

use common::{env, fv, limits, settle, MIB};

#[tokio::test(start_paused = true)]
async fn idle_instances_scale_to_zero_after_the_ttl_but_provisioned_stay() {
    let e = env(limits()); // TTL 300 s
    let (od, prov) = (fv("od", "1"), fv("prov", "1"));
    e.scheduler.put_provisioned(&prov, 2).unwrap();
    settle(&e.scheduler, &prov).await;
    let a = e.scheduler.lease(&od).await.unwrap();
    let b = e.scheduler.lease(&od).await.unwrap();
    drop(a);
    e.clock.advance(Duration::from_secs(200));
    drop(b);
    // A busy provisioned instance is untouched too.
    let _busy = e.scheduler.lease(&prov).await.unwrap();

    assert_eq!(e.scheduler.tick().evicted, 0);
    e.clock.advance(Duration::from_secs(100));
    assert_eq!(
        e.scheduler.tick().evicted,
        1,
        "only the instance idle for 300 s"
    );
    e.clock.advance(Duration::from_secs(200));
    assert_eq!(e.scheduler.tick().evicted, 1);

    let stats = e.scheduler.stats();
    let pool = stats.pool(&od).unwrap();
    assert_eq!((pool.idle, pool.busy, pool.counters.evicted_ttl), (0, 0, 2));
    let p = stats.pool(&prov).unwrap();
    assert_eq!((p.provisioned_allocated, p.provisioned_available), (2, 1));
    assert_eq!(stats.memory_used, 2 * 10 * MIB);
    assert_eq!(e.factory.discards(), 2);
    assert_eq!(e.scheduler.get_provisioned(&prov).unwrap().allocated, 2);
}

#[tokio::test(start_paused = true)]
async fn a_reused_instance_restarts_its_ttl() {
    let e = env(limits());
    let v = fv("f", "1");
    drop(e.scheduler.lease(&v).await.unwrap());
    e.clock.advance(Duration::from_secs(299));
    drop(e.scheduler.lease(&v).await.unwrap());
    e.clock.advance(Duration::from_secs(299));
    assert_eq!(e.scheduler.tick().evicted, 0);
    assert_eq!(e.scheduler.stats().pool(&v).unwrap().idle, 1);
}

#[tokio::test(start_paused = true)]
async fn the_reaper_ticks_in_the_background() {
    let e = env(limits());
    let v = fv("f", "1");
    let reaper = e.scheduler.spawn_reaper(Duration::from_secs(1));
    drop(e.scheduler.lease(&v).await.unwrap());
    e.clock.advance(Duration::from_secs(301));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(e.scheduler.stats().pool(&v).unwrap().idle, 0);
    assert_eq!(e.factory.live(), 0);
    reaper.abort();
}
