//! Issue 14: the first restore in a fresh process copies a snapshot's working set from
//! the working-set image another process built on the hugetlbfs mount
//! (worker/src/restore/wsimage.rs) instead of reading and decompressing its chunks.
use std::collections::HashMap;
use thaw_snapshotter::StoreOptions;
use thaw_tests::{body_json, chunk_path, corrupt_file, invoke, spec, uncached_worker, worker};
use thaw_vmm::{kvm_or_skip, GuestAddress};
use thaw_worker::restore::wsimage::ImagePlan;
use thaw_worker::{MemoryMode, Worker};

const CODE: &str = r#"
N = 0
TABLE = {i: str(i) * 3 for i in range(20000)}  # wsimage test: init state in the working set

def handler(event, context):
    global N
    N += 1
    return {"n": N, "size": len(TABLE), "echo": event}
"#;

/// Deletes a test's image file however the test ends (hugetlbfs files hold their pages).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn module_chunks() -> std::ops::Range<u32> {
    let lo = thaw_abi::layout::IMAGES;
    let hi = (lo + thaw_tests::runtime().module.len() as u64).next_multiple_of(thaw_abi::PAGE_2M);
    (lo / thaw_abi::PAGE_2M) as u32..(hi / thaw_abi::PAGE_2M) as u32
}

fn restore_and_invoke(w: &Worker, id: &thaw_snapshotter::SnapshotId) -> thaw_worker::Instance {
    let snap = w.open_snapshot(id, None).unwrap();
    let (mut inst, _) = w.restore(&snap, MemoryMode::UffdPrefetch).expect("restore");
    let out = body_json(&invoke(&mut inst, &serde_json::json!({"k": 1})));
    assert_eq!(
        out,
        serde_json::json!({"n": 1, "size": 20000, "echo": {"k": 1}})
    );
    inst
}

#[test]
fn test_a_fresh_process_copies_the_working_set_from_the_shared_image() {
    if !kvm_or_skip("test_a_fresh_process_copies_the_working_set_from_the_shared_image") {
        return;
    }
    if thaw_pager::hugetlbfs_dir().is_none() || thaw_pager::free_huge_pages() < 800 {
        println!(
            "SKIPPED: test_a_fresh_process_copies_the_working_set_from_the_shared_image (needs a hugetlbfs mount and 800 free huge pages; scripts/setup.sh provides both)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let first = worker(dir.path(), StoreOptions::default());
    // New VMs only: a reset VM would skip the install this test is about.
    first.set_recycling(false);
    let (id, _) = first.snapshot(&spec("wsimage", CODE)).unwrap();
    // Other tests' images could fill the mount with recently used ones (then no new
    // image is built): they are caches, let them go.
    first.release_working_set_images();
    // The first restore records the final working set, and builds the image from the
    // chunks it read as soon as that is stored (reset VMs may serve every later restore
    // of this process, which would never install the set again).
    drop(restore_and_invoke(&first, &id));
    first.wait_working_set_images();
    assert_eq!(first.working_set_images(), 1, "the image was built");
    first.wait_module_images();
    drop(restore_and_invoke(&first, &id));
    assert_eq!(
        first.image_stats().restores,
        1,
        "the second restore used it"
    );

    let manifest = first.store().manifest(&id).unwrap();
    let ws = manifest.working_set.clone().expect("final working set");
    let plan = ImagePlan::new(&manifest, &ws, module_chunks()).expect("an image plan");
    assert!(plan.len() >= 4 << 20, "{} bytes", plan.len());
    let _cleanup = RemoveOnDrop(thaw_pager::hugetlbfs_dir().unwrap().join(plan.file_name()));
    // The snapshot's true bytes, then every chunk the image holds damaged on disk: a
    // restore that read one of them through the store would fail on its hash.
    let truth: HashMap<usize, Vec<u8>> = manifest
        .chunks()
        .enumerate()
        .filter_map(|(i, c)| Some((i, first.store().read_chunk(&c.id?).unwrap())))
        .collect();
    for id in plan.chunk_ids() {
        assert!(corrupt_file(&chunk_path(&first, id)), "chunk {id} on disk");
    }

    // A fresh worker (a new process: nothing cached) maps the image and copies from it.
    drop(first);
    let fresh = worker(dir.path(), StoreOptions::default());
    let inst = restore_and_invoke(&fresh, &id);
    assert_eq!(fresh.working_set_images(), 1);
    assert_eq!(fresh.image_stats().restores, 1);
    assert!(
        fresh.store().is_bad(&id).unwrap().is_none(),
        "no damaged chunk was read"
    );
    // Guest RAM holds the snapshot's bytes wherever the invocation left them alone:
    // every chunk the image provided, byte for byte, except where the guest wrote.
    let ram = inst.vm().ram();
    let (mut differing_pages, mut pages) = (0, 0);
    for i in plan.indices() {
        let c = manifest.chunk(i).unwrap();
        let got = ram.read_vec(GuestAddress(c.guest_addr), c.len).unwrap();
        let want = &truth[&(i as usize)];
        let differing = got
            .chunks(4096)
            .zip(want.chunks(4096))
            .filter(|(a, b)| a != b)
            .count();
        // The guest writes its stack, heap and the request/response areas, a few pages
        // of each block at most.
        assert!(differing < 64, "chunk {i}: {differing} of 512 pages differ");
        differing_pages += differing;
        pages += got.len() / 4096;
    }
    assert!(
        differing_pages * 16 < pages,
        "{differing_pages} of {pages} pages differ from the snapshot"
    );
    // Retired, its VM is reset for reuse: the blocks it keeps are rewritten from the
    // image too (their chunk files are damaged), exactly to the snapshot's bytes.
    fresh.retire(inst);
    fresh.wait_recycled(std::time::Duration::from_secs(5));
    let st = fresh.recycle_stats();
    assert_eq!((st.resets, st.refused, st.ready), (1, 0, 1), "{st:?}");
    let snap = fresh.open_snapshot(&id, None).unwrap();
    let (reused, _) = fresh.restore(&snap, MemoryMode::UffdPrefetch).unwrap();
    assert_eq!(fresh.recycle_stats().reused, 1);
    for i in plan.indices() {
        let c = manifest.chunk(i).unwrap();
        let got = reused
            .vm()
            .ram()
            .read_vec(GuestAddress(c.guest_addr), c.len)
            .unwrap();
        assert!(
            got == truth[&(i as usize)],
            "chunk {i} differs after the reset"
        );
    }
    drop(reused);
    fresh.remove_working_set_images();
    assert_eq!(fresh.working_set_images(), 0);
    drop(fresh);

    // Without the image (a store that caches nothing turns images off), the damage is
    // seen: the restore or its first invocation fails naming a chunk.
    let uncached = uncached_worker(dir.path());
    uncached.set_recycling(false);
    let snap = uncached.open_snapshot(&id, None).unwrap();
    let failed = match uncached.restore(&snap, MemoryMode::UffdPrefetch) {
        Err(e) => Some(thaw_worker::error::error_chain(&e)),
        Ok((mut i, _)) => i
            .invoke(&Default::default())
            .err()
            .map(|e| thaw_worker::error::error_chain(&e)),
    };
    let msg = failed.expect("a damaged working set restored without the image");
    assert!(msg.contains("chunk"), "{msg}");
    assert_eq!(uncached.working_set_images(), 0);
}
