//! Issue 4: with the hugetlb pool (nearly) empty, lazy restores fall back to 4 KiB
//! guest pages instead of failing, and come back to huge pages once some are free.
//! Its own test binary: it holds most of the host's huge pages for a while.
#![forbid(unsafe_code)]

use thaw_snapshotter::StoreOptions;
use thaw_tests::{body_json, invoke, spec, worker};
use thaw_vmm::kvm_or_skip;
use thaw_worker::{Instance, MemoryMode};

/// Huge pages (KiB) in the instance's guest RAM mapping.
fn hugetlb_kib(inst: &Instance) -> u64 {
    let ram = inst.vm().ram();
    let m = thaw_pager::mapping_memory(thaw_pager::HostAddr(ram.host_addr().0), ram.len() as usize)
        .expect("smaps");
    m.shared_hugetlb_kib + m.private_hugetlb_kib
}

#[test]
fn test_restores_fall_back_to_small_pages_when_huge_pages_run_out() {
    if !kvm_or_skip("test_restores_fall_back_to_small_pages_when_huge_pages_run_out") {
        return;
    }
    let free = thaw_pager::free_huge_pages();
    if free < 64 {
        println!("SKIPPED: test_restores_fall_back_to_small_pages_when_huge_pages_run_out (only {free} free huge pages; scripts/setup.sh reserves 512)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), StoreOptions::default());
    let code = "N = 0\ndef handler(event, context):\n    global N\n    N += 1\n    return {'n': N, 'echo': event}\n";
    let (id, _) = w.snapshot(&spec("small-pages", code)).unwrap();
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
    // Take all but 4 free huge pages (touched, so they are really gone).
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
