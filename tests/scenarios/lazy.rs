//! Lazy restores on the userfaultfd pager (issue 4): every lazy mode answers like a
//! cold boot, `uffd+prefetch` records the working set once and then takes (almost)
//! no faults, shared clones keep clean pages shared, and a page the pager cannot
//! serve ends that VM with a clear error instead of hanging it.
use std::time::{Duration, Instant};
use thaw_snapshotter::StoreOptions;
use thaw_tests::{body_json, chunk_path, corrupt_file, invoke, spec, uncached_worker, worker};
use thaw_vmm::kvm_or_skip;
use thaw_worker::{MemoryMode, WorkerError};

const COUNTER: &str = r#"
import json
COUNT = 0
TABLE = {i: str(i) * 3 for i in range(20000)}

def handler(event, context):
    global COUNT
    COUNT += 1
    return {"count": COUNT, "entries": len(TABLE), "echo": event}
"#;

/// The chunk indices (2 MiB chunks) of the runtime's module image in guest memory.
fn module_chunks() -> std::ops::Range<u32> {
    let lo = thaw_abi::layout::IMAGES;
    let hi = (lo + thaw_tests::runtime().module.len() as u64).next_multiple_of(thaw_abi::PAGE_2M);
    (lo / thaw_abi::PAGE_2M) as u32..(hi / thaw_abi::PAGE_2M) as u32
}

#[test]
fn test_lazy_modes_answer_like_a_cold_boot() {
    if !kvm_or_skip("test_lazy_modes_answer_like_a_cold_boot") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), StoreOptions::default());
    let (id, _) = w.snapshot(&spec("lazy", COUNTER)).unwrap();
    for mode in [
        MemoryMode::Uffd,
        MemoryMode::UffdPrefetch,
        MemoryMode::Shared,
        MemoryMode::Shared,
    ] {
        let snap = w.open_snapshot(&id, None).unwrap();
        let (mut inst, _) = w
            .restore(&snap, mode)
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        for n in 1..=3 {
            let out = body_json(&invoke(&mut inst, &serde_json::json!({"n": n})));
            assert_eq!(out["count"], n, "{mode}");
            assert_eq!(out["entries"], 20000, "{mode}");
            assert_eq!(out["echo"]["n"], n, "{mode}");
        }
        let stats = inst.pager_stats().expect("lazy modes have a pager");
        assert!(stats.bytes_installed > 0, "{mode}: {stats:?}");
    }
}

#[test]
fn test_prefetch_records_the_working_set_then_avoids_faults() {
    if !kvm_or_skip("test_prefetch_records_the_working_set_then_avoids_faults") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), StoreOptions::default());
    let (id, _) = w.snapshot(&spec("reap", COUNTER)).unwrap();
    // The build's probe clone recorded, by its faults, the chunks the runtime's
    // invoke path touches (a provisional set); the first real restore records the
    // final set on top of it, up to the first response.
    let snap = w.open_snapshot(&id, None).unwrap();
    assert!(snap.manifest.working_set.is_none());
    let recorded = snap
        .manifest
        .provisional_working_set
        .as_ref()
        .map_or(0, |p| p.len() as u64);
    assert!(recorded > 0, "the probe's restore paged in by faults");
    let (mut first, _) = w.restore(&snap, MemoryMode::UffdPrefetch).unwrap();
    invoke(&mut first, &serde_json::json!({}));
    let snap = w.open_snapshot(&id, None).unwrap();
    let ws = snap
        .manifest
        .working_set
        .clone()
        .expect("working set stored with the snapshot");
    assert!(!ws.is_empty());
    // Later restores install it in bulk before the vCPU runs, minus the module
    // chunks, which come from the runtime's shared module image once it is built
    // (the first restore started building it).
    w.wait_module_images();
    let module = module_chunks();
    let paged = ws.iter().filter(|c| !module.contains(c)).count() as u64;
    let (mut again, _) = w.restore(&snap, MemoryMode::UffdPrefetch).unwrap();
    invoke(&mut again, &serde_json::json!({}));
    let stats = again.pager_stats().unwrap();
    assert!(stats.prefetch_blocks >= paged / 2, "{stats:?} of {paged}");
    assert!(
        stats.fault_blocks < recorded,
        "prefetch should take over from faults: {stats:?} vs {recorded}"
    );
}

#[test]
fn test_working_sets_include_the_module_chunks_the_function_uses() {
    if !kvm_or_skip("test_working_sets_include_the_module_chunks_the_function_uses") {
        return;
    }
    // A fresh worker has no module image yet: its first restore pages the module
    // region in through the pager (and starts building the image). Once the image is
    // built, restores map it and no module page faults into the pager; a recording
    // restore then reads the module chunks it used off the page tables. Either way
    // the working set holds them, so a process without the image prefetches them.
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), StoreOptions::default());
    let module = module_chunks();
    let mut found = Vec::new();
    for (name, image_built) in [("ws-paged", false), ("ws-mapped", true)] {
        if image_built {
            w.wait_module_images();
        }
        let (id, _) = w.snapshot(&spec(name, COUNTER)).unwrap();
        let snap = w.open_snapshot(&id, None).unwrap();
        let (mut inst, _) = w.restore(&snap, MemoryMode::UffdPrefetch).unwrap();
        assert_eq!(
            body_json(&invoke(&mut inst, &serde_json::json!({})))["count"],
            1
        );
        let faulted_in_module = inst.pager_stats().unwrap().fault_blocks;
        let ws = w
            .open_snapshot(&id, None)
            .unwrap()
            .manifest
            .working_set
            .expect("recorded");
        let n = ws.iter().filter(|c| module.contains(c)).count();
        eprintln!(
            "{name}: {n} of {} module chunks in a working set of {} ({faulted_in_module} faults)",
            module.len(),
            ws.len()
        );
        assert!(
            n >= 4 && n < module.len(),
            "{name}: {n} module chunks in {ws:?}"
        );
        found.push(n);
    }
    // The same runtime and handler use about the same module chunks both ways.
    assert!(
        found[1] * 2 >= found[0] && found[0] * 2 >= found[1],
        "{found:?}"
    );
}

#[test]
fn test_shared_clones_keep_clean_pages_shared() {
    if !kvm_or_skip("test_shared_clones_keep_clean_pages_shared") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), StoreOptions::default());
    let (id, _) = w.snapshot(&spec("shared", COUNTER)).unwrap();
    let snap = w.open_snapshot(&id, None).unwrap();
    let mut clones = Vec::new();
    for _ in 0..4 {
        let (mut inst, _) = w.restore(&snap, MemoryMode::Shared).unwrap();
        invoke(&mut inst, &serde_json::json!({}));
        clones.push(inst);
    }
    let guest = 512u64 << 20;
    for (i, inst) in clones.iter().enumerate() {
        let ram = inst.vm().ram();
        let m =
            thaw_pager::mapping_memory(thaw_pager::HostAddr(ram.host_addr().0), ram.len() as usize)
                .unwrap();
        let private = m.private_kib + m.private_hugetlb_kib;
        eprintln!("shared clone {i}: {m:?}");
        // An idle clone owns only the pages it wrote: well under 10% of its guest.
        assert!(
            private * 1024 < guest / 10,
            "clone {i} holds {private} KiB privately: {m:?}"
        );
    }
}

#[test]
fn test_unservable_page_ends_the_vm_with_a_clear_error() {
    if !kvm_or_skip("test_unservable_page_ends_the_vm_with_a_clear_error") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = uncached_worker(dir.path());
    let (id, _) = w.snapshot(&spec("badpage", COUNTER)).unwrap();
    let snap = w.open_snapshot(&id, None).unwrap();
    // Corrupt every chunk the guest pages in lazily, except the VMM's own areas
    // (a restore installs and verifies them up front: damage there fails the
    // restore, clean, before any run) and the runtime's module image (covered by
    // `test_corrupt_module_chunk_fails_cleanly`).
    let vmm_lo = thaw_abi::layout::BOOT_INFO;
    let vmm_hi = thaw_abi::layout::RESPONSE + thaw_abi::layout::RESPONSE_SIZE;
    let module_lo = thaw_abi::layout::IMAGES;
    let module_hi = module_lo + thaw_tests::runtime().module.len() as u64;
    let eager = |lo: u64, hi: u64| {
        (vmm_lo..vmm_hi).contains(&lo)
            || (vmm_lo..vmm_hi).contains(&(hi - 1))
            || (module_lo..module_hi.next_multiple_of(thaw_abi::PAGE_2M)).contains(&lo)
    };
    let mut corrupted = 0;
    for c in snap.manifest.chunks() {
        let Some(chunk) = c.id else { continue };
        if eager(c.guest_addr, c.guest_addr + c.len) {
            continue;
        }
        if corrupt_file(&chunk_path(&w, &chunk)) {
            corrupted += 1;
        }
    }
    assert!(corrupted > 0, "found chunk files to corrupt");
    let (mut inst, _) = w
        .restore(&snap, MemoryMode::Uffd)
        .expect("the VMM's own areas are intact");
    let t0 = Instant::now();
    let err = inst
        .invoke(&Default::default())
        .expect_err("a corrupt page must end the VM");
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "the vCPU must not hang: {:?}",
        t0.elapsed()
    );
    let msg = thaw_worker::error::error_chain(&err);
    assert!(matches!(err, WorkerError::PageFault { .. }), "{msg}");
    assert!(
        msg.contains("could not be served") && msg.contains("chunk"),
        "{msg}"
    );
    // The typed signal, not the message, says the snapshot is corrupt, and the fault marked it
    // bad: it is never restored again (the service rebuilds it from a cold boot).
    assert!(err.is_corrupt() && err.is_snapshot_fault(), "{msg}");
    let again = w.open_snapshot(&id, None).expect_err("marked bad");
    assert!(again.is_snapshot_fault(), "{again}");
    // The host is fine and the next instance of a healthy function works (in a
    // fresh store: this one's shared runtime chunks were all damaged on purpose).
    let dir2 = tempfile::tempdir().unwrap();
    let w = worker(dir2.path(), StoreOptions::default());
    let (id2, _) = w
        .snapshot(&spec("healthy", "def handler(e, c):\n    return 7\n"))
        .unwrap();
    let snap2 = w.open_snapshot(&id2, None).unwrap();
    let (mut ok, _) = w.restore(&snap2, MemoryMode::Eager).unwrap();
    assert_eq!(
        body_json(&invoke(&mut ok, &serde_json::json!({}))),
        serde_json::json!(7)
    );
}

#[test]
fn test_corrupt_module_chunk_fails_cleanly() {
    if !kvm_or_skip("test_corrupt_module_chunk_fails_cleanly") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = uncached_worker(dir.path());
    let (id, _) = w.snapshot(&spec("badmodule", COUNTER)).unwrap();
    let snap = w.open_snapshot(&id, None).unwrap();
    // The first data chunk of the runtime's module image.
    let module_lo = thaw_abi::layout::IMAGES;
    let c = snap
        .manifest
        .chunks()
        .find(|c| c.guest_addr >= module_lo && c.id.is_some())
        .unwrap();
    let hex = c.id.unwrap().to_string();
    assert!(corrupt_file(&chunk_path(&w, &c.id.unwrap())));
    // A fresh worker (a fresh process): the build's probe restore already made this
    // worker's module image from the good chunk, so only a new one reads it again.
    w.wait_module_images();
    drop((snap, w));
    let w = uncached_worker(dir.path());
    // Not the image another process published from its own (good) chunks.
    w.private_module_images();
    let snap = w.open_snapshot(&id, None).unwrap();
    // With huge pages the module image is built at restore (the restore fails);
    // without, the guest's first touch fails (the invocation fails). Either way the
    // error names the chunk and nothing hangs.
    let err = match w.restore(&snap, MemoryMode::UffdPrefetch) {
        Err(e) => e,
        Ok((mut inst, _)) => inst
            .invoke(&Default::default())
            .expect_err("corrupt module page"),
    };
    let msg = thaw_worker::error::error_chain(&err);
    assert!(msg.contains(&hex) || msg.contains("chunk"), "{msg}");
    assert!(
        w.store().is_bad(&id).unwrap().is_some() || msg.contains("could not be served"),
        "{msg}"
    );
}

/// Issue 14: only the hot chunks of the VMM's areas are backed before a lazy
/// restore resumes; a 6 MiB request and response reach the rest of the request and
/// response areas through the pager, byte exact, in every lazy mode.
#[test]
fn test_big_payloads_page_in_the_payload_areas_of_a_lazy_restore() {
    if !kvm_or_skip("test_big_payloads_page_in_the_payload_areas_of_a_lazy_restore") {
        return;
    }
    let echo = "import zlib\n\ndef handler(event, context):\n    d = event['data']\n    return {'adler32': zlib.adler32(d.encode()), 'data': d}\n";
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), StoreOptions::default());
    let (id, _) = w.snapshot(&spec("lazy-echo", echo)).unwrap();
    for mode in [
        MemoryMode::Uffd,
        MemoryMode::UffdPrefetch,
        MemoryMode::Shared,
    ] {
        for _ in 0..2 {
            let snap = w.open_snapshot(&id, None).unwrap();
            let (mut inst, _) = w.restore(&snap, mode).expect("restore");
            let data = thaw_tests::ascii_payload(thaw_abi::MAX_PAYLOAD as usize - 256, 7);
            let out = invoke(&mut inst, &serde_json::json!({ "data": data }));
            let v = body_json(&out);
            assert_eq!(
                v["adler32"],
                serde_json::json!(thaw_tests::adler32(data.as_bytes())),
                "{mode:?}"
            );
            assert!(
                v["data"].as_str() == Some(data.as_str()),
                "{mode:?}: response differs"
            );
        }
    }
}

/// Issue 14: the first cold start after a deploy prefetches too. The build records
/// a provisional working set on a throwaway clone that runs only the runtime's
/// invoke path (never the handler: its side effects must not run on a made-up
/// event); the first real restore prefetches it and records the final set on top.
#[test]
fn test_the_first_restore_after_a_build_prefetches_a_provisional_working_set() {
    if !kvm_or_skip("test_the_first_restore_after_a_build_prefetches_a_provisional_working_set") {
        return;
    }
    // The handler has a side effect outside the VM: it makes an HTTP request to a
    // loopback server this test runs. The build (and its probe) must not make it.
    let server = thaw_tests::net::http_server(4);
    let code = format!("import urllib.request\nCALLS = 0\n\ndef handler(event, context):\n    global CALLS\n    CALLS += 1\n    urllib.request.urlopen('http://127.0.0.1:{}/').read()\n    return {{'calls': CALLS, 'echo': event}}\n", server.port());
    let dir = tempfile::tempdir().unwrap();
    let mut w = worker(dir.path(), StoreOptions::default());
    w.set_net(thaw_tests::net::net(
        &[format!("127.0.0.1:{}", server.port())],
        None,
    ));
    let (id, timings) = w.snapshot(&spec("provisional", &code)).unwrap();
    assert_eq!(server.accepted(), 0, "the build ran the handler");
    let snap = w.open_snapshot(&id, None).unwrap();
    let provisional = snap
        .manifest
        .provisional_working_set
        .clone()
        .expect("the build recorded a provisional working set");
    assert!(!provisional.is_empty());
    assert!(
        snap.manifest.working_set.is_none(),
        "no final set before a real invocation"
    );
    let t0 = Instant::now();
    let (mut first, _) = w.restore(&snap, MemoryMode::UffdPrefetch).unwrap();
    let out = body_json(&invoke(&mut first, &serde_json::json!({"n": 1})));
    let first_took = t0.elapsed();
    assert_eq!(out, serde_json::json!({"calls": 1, "echo": {"n": 1}}));
    assert_eq!(
        server.accepted(),
        1,
        "exactly the real invocation's request"
    );
    let stats = first.pager_stats().unwrap();
    assert!(
        stats.prefetch_blocks > 0,
        "prefetched the provisional set: {stats:?}"
    );
    let fin = w
        .open_snapshot(&id, None)
        .unwrap()
        .manifest
        .working_set
        .expect("the first real restore stored the final set");
    assert!(
        provisional.iter().all(|c| fin.contains(c)),
        "the final set extends the provisional one"
    );
    drop(first);
    let t1 = Instant::now();
    let snap = w.open_snapshot(&id, None).unwrap();
    let (mut later, _) = w.restore(&snap, MemoryMode::UffdPrefetch).unwrap();
    invoke(&mut later, &serde_json::json!({"n": 2}));
    let later_took = t1.elapsed();
    eprintln!(
        "first restore+invoke after the build {first_took:?} (faults {}), a later one {later_took:?} (faults {}); probe at build {:?}; provisional {} blocks, final {}",
        stats.fault_blocks,
        later.pager_stats().unwrap().fault_blocks,
        timings.probe,
        provisional.len(),
        fin.len()
    );
}
