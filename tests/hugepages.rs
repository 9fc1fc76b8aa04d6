//! Issue 4: with the hugetlb pool (nearly) empty, lazy restores fall back to 4 KiB
//! guest pages instead of failing, and come back to huge pages once some are free.
//! Its own test binary: it holds most of the host's huge pages for a while.
#![forbid(unsafe_code)]

use thaw_snapshotter::StoreOptions;
use thaw_tests::{body_json, invoke, spec, worker};
use thaw_vmm::kvm_or_skip;
use thaw_worker::{Instance, MemoryMode};

/// Huge pages (KiB) of shared images mapped into the instance's guest RAM.
fn shared_hugetlb_kib(inst: &Instance) -> u64 {
    let ram = inst.vm().ram();
    let m = thaw_pager::mapping_memory(thaw_pager::HostAddr(ram.host_addr().0), ram.len() as usize)
        .expect("smaps");
    m.shared_hugetlb_kib
}

/// The tests here take the pool away: one at a time.
static POOL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Huge pages (KiB) the instance's guest RAM holds itself (the runtime's shared
/// module image, mapped into every clone, is not counted).
fn hugetlb_kib(inst: &Instance) -> u64 {
    let ram = inst.vm().ram();
    let m = thaw_pager::mapping_memory(thaw_pager::HostAddr(ram.host_addr().0), ram.len() as usize)
        .expect("smaps");
    m.private_hugetlb_kib
}

#[test]
fn test_restores_fall_back_to_small_pages_when_huge_pages_run_out() {
    if !kvm_or_skip("test_restores_fall_back_to_small_pages_when_huge_pages_run_out") {
        return;
    }
    let _pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let free = thaw_pager::free_huge_pages();
    if free < 64 {
        println!("SKIPPED: test_restores_fall_back_to_small_pages_when_huge_pages_run_out (only {free} free huge pages; scripts/setup.sh reserves 512)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), StoreOptions::default());
    let code = "N = 0\ndef handler(event, context):\n    global N\n    N += 1\n    return {'n': N, 'echo': event}\n";
    let (id, _) = w.snapshot(&spec("small-pages", code)).unwrap();
    // The build's probe clone, reset for reuse, serves the first restore below.
    w.wait_recycled(std::time::Duration::from_secs(5));
    let restore = || {
        let snap = w.open_snapshot(&id, None).unwrap();
        let (mut inst, _) = w.restore(&snap, MemoryMode::UffdPrefetch).expect("restore");
        let out = body_json(&invoke(&mut inst, &serde_json::json!({"k": 7})));
        assert_eq!(out, serde_json::json!({"n": 1, "echo": {"k": 7}}));
        inst
    };
    // Records the working set; on huge pages.
    let first = restore();
    assert!(hugetlb_kib(&first) > 0, "expected huge pages");
    drop(first);
    // The runtime's shared module image (built after the first restore) is mapped
    // even into small-page guests.
    w.wait_module_images();
    // Take all but 4 free huge pages (touched, so they are really gone). Working-set
    // images (this test's or other tests') are let go first: a restore that finds the
    // pool short deletes them, which would free their pages under the hog.
    w.wait_working_set_images();
    w.release_working_set_images();
    let take = thaw_pager::free_huge_pages().saturating_sub(4);
    let mut hog = thaw_pager::HugeMemfd::create(take * thaw_pager::HUGE_PAGE_SIZE).unwrap();
    hog.fill_parallel(thaw_pager::HUGE_PAGE_SIZE, 1, |_, page| {
        page[0] = 1;
        Ok::<(), ()>(())
    })
    .unwrap();
    assert!(thaw_pager::free_huge_pages() <= 4);
    let mut small = Vec::new();
    for _ in 0..3 {
        let inst = restore();
        assert_eq!(hugetlb_kib(&inst), 0, "restored onto 4 KiB pages");
        assert!(shared_hugetlb_kib(&inst) > 0, "the module image is mapped");
        small.push(inst);
    }
    // More invocations on a small-page instance work as usual.
    let out = body_json(&invoke(&mut small[0], &serde_json::json!({})));
    assert_eq!(out["n"], 2);
    drop(small);
    drop(hog);
    let again = restore();
    assert!(
        hugetlb_kib(&again) > 0,
        "back on huge pages once they are free"
    );
}

/// Issue 14: the pool runs dry while an instance restored on huge pages is alive.
/// Its guest then grows into memory no huge page can back: the invocation still ends
/// promptly (it succeeds on 4 KiB pages or gets a clear error), never a hang.
#[test]
fn test_a_pool_drained_under_a_live_instance_never_hangs_it() {
    if !kvm_or_skip("test_a_pool_drained_under_a_live_instance_never_hangs_it") {
        return;
    }
    let _pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let free = thaw_pager::free_huge_pages();
    if free < 64 {
        println!("SKIPPED: test_a_pool_drained_under_a_live_instance_never_hangs_it (only {free} free huge pages; scripts/setup.sh reserves 512)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), StoreOptions::default());
    let code = "def handler(event, context):\n    blocks = [bytearray(1 << 20) for _ in range(event['mb'])]\n    for b in blocks:\n        b[::4096] = b'x' * len(b[::4096])\n    return len(blocks)\n";
    let mut s = spec("dry-pool", code);
    s.memory_mb = 512;
    s.timeout = std::time::Duration::from_secs(30);
    let (id, _) = w.snapshot(&s).unwrap();
    for mode in [MemoryMode::Uffd, MemoryMode::UffdPrefetch] {
        let snap = w.open_snapshot(&id, None).unwrap();
        let (mut inst, _) = w.restore(&snap, mode).expect("restore");
        assert_eq!(
            body_json(&invoke(&mut inst, &serde_json::json!({"mb": 1}))),
            serde_json::json!(1)
        );
        // Take every free huge page (touched, so they are really gone), once no
        // working-set image is being built.
        w.wait_working_set_images();
        let take = thaw_pager::free_huge_pages().max(1);
        let mut hog = thaw_pager::HugeMemfd::create(take * thaw_pager::HUGE_PAGE_SIZE).unwrap();
        hog.fill_parallel(thaw_pager::HUGE_PAGE_SIZE, 1, |_, page| {
            page[0] = 1;
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(thaw_pager::free_huge_pages(), 0);
        let t0 = std::time::Instant::now();
        let out = thaw_tests::invoke_raw(&mut inst, br#"{"mb": 300}"#.to_vec());
        let took = t0.elapsed();
        drop(hog);
        eprintln!(
            "{mode:?}: {took:?}: {:?}",
            out.as_ref()
                .map(|o| String::from_utf8_lossy(&o.body).to_string())
        );
        assert!(
            took < std::time::Duration::from_secs(20),
            "{mode:?}: took {took:?}"
        );
        let fell_back = inst
            .pager_stats()
            .expect("a lazy instance")
            .small_page_blocks;
        eprintln!("{mode:?}: {fell_back} blocks on small pages");
        match out {
            Ok(o) => {
                assert_eq!(body_json(&o), serde_json::json!(300), "{mode:?}");
                // 300 MiB grew past the pool: those blocks came on small pages.
                assert!(fell_back >= 100, "{mode:?}: {fell_back} small-page blocks");
            }
            Err(e) => {
                let j: serde_json::Value = serde_json::from_slice(&e.to_error_json()).unwrap();
                assert_eq!(j["errorType"], "Runtime.OutOfMemory", "{mode:?}: {j}");
            }
        }
    }
}

/// Issue 14: with a hugetlbfs mount, the runtime's module image is a file there that
/// every process maps: a fresh worker (another process's view) maps it at its very
/// first restore instead of paging the module in.
#[test]
fn test_a_fresh_worker_maps_the_shared_module_image_at_its_first_restore() {
    if !kvm_or_skip("test_a_fresh_worker_maps_the_shared_module_image_at_its_first_restore") {
        return;
    }
    let _pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(dir) = thaw_pager::hugetlbfs_dir() else {
        println!("SKIPPED: test_a_fresh_worker_maps_the_shared_module_image_at_its_first_restore (no writable hugetlbfs mount; scripts/setup.sh mounts /dev/hugepages)");
        return;
    };
    if thaw_pager::free_huge_pages() < 64 {
        println!("SKIPPED: test_a_fresh_worker_maps_the_shared_module_image_at_its_first_restore (too few free huge pages)");
        return;
    }
    let code = "def handler(event, context):\n    return 1\n";
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = worker(a.path(), StoreOptions::default());
    first.snapshot(&spec("shared-module-a", code)).unwrap();
    first.wait_module_images();
    let published = std::fs::read_dir(&dir).unwrap().flatten().any(|e| {
        e.file_name().to_string_lossy().starts_with("thaw-module-")
            && !e.file_name().to_string_lossy().ends_with(".tmp")
    });
    assert!(
        published,
        "the module image is published in {}",
        dir.display()
    );
    // Another worker, its own store: its first restore maps the image at once.
    let fresh = worker(b.path(), StoreOptions::default());
    let (id, _) = fresh.snapshot(&spec("shared-module-b", code)).unwrap();
    let snap = fresh.open_snapshot(&id, None).unwrap();
    let (mut inst, _) = fresh.restore(&snap, MemoryMode::UffdPrefetch).unwrap();
    assert_eq!(
        body_json(&invoke(&mut inst, &serde_json::json!({}))),
        serde_json::json!(1)
    );
    assert!(
        shared_hugetlb_kib(&inst) > 0,
        "the shared module image is mapped"
    );
    // Nothing of the module was paged in privately: only the working set and the
    // VMM's chunks were installed.
    let stats = inst.pager_stats().unwrap();
    let module = thaw_tests::runtime().module.len() as u64;
    assert!(stats.bytes_installed < module / 2, "{stats:?}");
}

/// Issue 14: VMs kept for reuse never hold huge pages the host runs short of: when the
/// pool runs low the ready ones are torn down, and retired instances are not reset
/// (torn down instead) until pages are free again.
#[test]
fn test_reset_vms_give_their_huge_pages_back_when_the_pool_runs_low() {
    if !kvm_or_skip("test_reset_vms_give_their_huge_pages_back_when_the_pool_runs_low") {
        return;
    }
    let _pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let free = thaw_pager::free_huge_pages();
    if free < 128 {
        println!("SKIPPED: test_reset_vms_give_their_huge_pages_back_when_the_pool_runs_low (only {free} free huge pages)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), StoreOptions::default());
    let code = "def handler(event, context):\n    return event\n";
    let (id, _) = w.snapshot(&spec("recycle-low", code)).unwrap();
    w.wait_recycled(std::time::Duration::from_secs(5));
    let restore = || {
        let snap = w.open_snapshot(&id, None).unwrap();
        let (mut inst, _) = w.restore(&snap, MemoryMode::UffdPrefetch).expect("restore");
        let out = body_json(&invoke(&mut inst, &serde_json::json!({"k": 1})));
        assert_eq!(out, serde_json::json!({"k": 1}));
        inst
    };
    // Two instances on huge pages (the first takes the build's probe clone).
    let (a, b) = (restore(), restore());
    assert!(hugetlb_kib(&b) > 0, "expected huge pages");
    w.retire(a);
    w.wait_recycled(std::time::Duration::from_secs(5));
    assert_eq!(w.recycle_stats().ready, 1);
    // Working-set images are let go first (see the test above).
    w.wait_working_set_images();
    w.release_working_set_images();
    let take = thaw_pager::free_huge_pages().saturating_sub(8);
    let mut hog = thaw_pager::HugeMemfd::create(take * thaw_pager::HUGE_PAGE_SIZE).unwrap();
    hog.fill_parallel(thaw_pager::HUGE_PAGE_SIZE, 1, |_, page| {
        page[0] = 1;
        Ok::<(), ()>(())
    })
    .unwrap();
    // The pool's thread looks every second: the ready VM goes.
    let t0 = std::time::Instant::now();
    while w.recycle_stats().ready > 0 && t0.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(w.recycle_stats().ready, 0, "a reset VM kept its huge pages");
    // An instance retired now is torn down, not reset.
    let refused = w.recycle_stats().refused;
    w.retire(b);
    w.wait_recycled(std::time::Duration::from_secs(5));
    let st = w.recycle_stats();
    assert_eq!((st.ready, st.refused), (0, refused + 1), "{st:?}");
    drop(hog);
}
