//! Lease + release of a warm (idle, on-demand) instance: the scheduler's share of a warm invoke.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use thaw_scheduler::fake::FakeFactory;
use thaw_scheduler::{FunctionVersion, Limits, Scheduler, SystemClock};

fn lease_release(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let scheduler = rt.block_on(async {
        Scheduler::new(FakeFactory::new(1 << 20), SystemClock, Limits::default())
    });
    let fv = FunctionVersion::new("bench", "1");
    // Warm one instance up.
    rt.block_on(scheduler.lease(&fv))
        .expect("first lease")
        .release(true);

    c.bench_function("lease_release_warm", |b| {
        b.iter(|| {
            let lease = rt.block_on(scheduler.lease(black_box(&fv))).expect("lease");
            black_box(lease.id());
            lease.release(true);
        })
    });

    let pfv = FunctionVersion::new("bench", "2");
    rt.block_on(async {
        scheduler.put_provisioned(&pfv, 1).expect("provision");
        while scheduler
            .get_provisioned(&pfv)
            .is_some_and(|c| c.available == 0)
        {
            tokio::task::yield_now().await;
        }
    });
    c.bench_function("lease_release_provisioned", |b| {
        b.iter(|| {
            let lease = rt
                .block_on(scheduler.lease(black_box(&pfv)))
                .expect("lease");
            black_box(lease.id());
            lease.release(true);
        })
    });
}

criterion_group!(benches, lease_release);
criterion_main!(benches);
