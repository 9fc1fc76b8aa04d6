//! Criterion benchmark of the fault path: a thread touches every 4 KiB page of a 32 MiB region
//! that a pager fills on demand from an in-memory source. Compares 4 KiB and 2 MiB chunks on
//! anonymous memory and 2 MiB chunks on hugetlbfs; criterion's throughput is faults per second,
//! and one line per case prints microseconds per fault.
//!
//! Run: `CARGO_TARGET_DIR=target/h-pager cargo bench -j1 -p thaw-pager --bench fault`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thaw_pager::{Backing, GuestRegion, HugeMemfd, Pager, PagerOptions, VecSource};

const LEN: usize = 32 << 20;

/// Guest RAM for one iteration; unmapped on drop.
enum Ram {
    Anon(usize),
    Huge(HugeMemfd),
}

impl Ram {
    fn new(huge: bool) -> Option<Ram> {
        if huge {
            return HugeMemfd::create(LEN).ok().map(Ram::Huge);
        }
        // SAFETY: a new private anonymous mapping at an address the kernel chooses.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Some(Ram::Anon(p as usize))
    }

    fn addr(&self) -> usize {
        match self {
            Ram::Anon(a) => *a,
            Ram::Huge(m) => m.addr().0,
        }
    }
}

impl Drop for Ram {
    fn drop(&mut self) {
        if let Ram::Anon(a) = self {
            // SAFETY: unmaps the mapping `new` created.
            unsafe { libc::munmap(*a as *mut libc::c_void, LEN) };
        }
    }
}

/// One run: start a pager, touch every page, return (elapsed, faults).
fn run(src: &Arc<VecSource>, huge: bool) -> Option<(Duration, u64)> {
    let ram = Ram::new(huge)?;
    let backing = if huge {
        Backing::Hugetlb
    } else {
        Backing::Anonymous
    };
    let region = GuestRegion {
        host_addr: thaw_pager::HostAddr(ram.addr()),
        len: LEN,
        backing,
        keep_alive: None,
    };
    // SAFETY: fresh unpopulated mapping that outlives the handle; accessed by raw address only.
    let h = unsafe { Pager::start(region, src.clone(), PagerOptions::default()) }.ok()?;
    let base = ram.addr();
    let t0 = Instant::now();
    std::thread::spawn(move || {
        let mut sum = 0u64;
        for off in (0..LEN).step_by(4096) {
            // SAFETY: the page is mapped and served by the pager.
            sum += unsafe { std::ptr::read_volatile((base + off) as *const u8) } as u64;
        }
        sum
    })
    .join()
    .ok()?;
    let took = t0.elapsed();
    let faults = h.stats().faults;
    drop(h);
    Some((took, faults))
}

fn bench_faults(c: &mut Criterion) {
    let mut g = c.benchmark_group("fault");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for (name, chunk, huge) in [
        ("anon_4k", 4096, false),
        ("anon_2m", 2 << 20, false),
        ("hugetlb_2m", 2 << 20, true),
    ] {
        let src = Arc::new(VecSource::patterned(LEN, chunk, &[]));
        let Some((took, faults)) = run(&src, huge) else {
            eprintln!(
                "SKIPPED fault/{name}: no free huge pages (echo 64 > /proc/sys/vm/nr_hugepages)"
            );
            continue;
        };
        eprintln!(
            "fault/{name}: {faults} faults in {:.2} ms: {:.1} us/fault, {:.0} faults/s, {:.2} GB/s",
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e6 / faults as f64,
            faults as f64 / took.as_secs_f64(),
            LEN as f64 / took.as_secs_f64() / 1e9
        );
        g.throughput(Throughput::Elements(faults));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| run(&src, huge).map(|r| r.0).unwrap_or_default())
                    .sum()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_faults);
criterion_main!(benches);
