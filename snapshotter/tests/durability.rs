//! Scenario: a store on disk (RocksDB index + chunk files) is written, closed and reopened, and
//! everything reads back: manifests, state, working set, mappings, bad marks, chunk bytes.

use thaw_snapshotter::{FunctionKey, SnapshotMeta, Store, StoreOptions};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(seed) ^ (i >> 12) as u8)
        .collect()
}

#[test]
fn test_reopened_store_reads_everything_back() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        chunk_size: 256 << 10,
        ..StoreOptions::default()
    };
    let f = FunctionKey::new("hello:1");
    let meta = SnapshotMeta {
        function: f.clone(),
        code_hash: "c".into(),
        runtime_hash: "r".into(),
        memory_size: 4 << 20,
        labels: [("k".to_string(), "v".to_string())].into(),
    };
    let low = pattern(1 << 20, 7);
    let mut high = vec![0u8; 1 << 20];
    high[700_000..700_100].copy_from_slice(&pattern(100, 3));
    let (id, other) = {
        let store = Store::open_with_options(dir.path(), opts.clone()).unwrap();
        let mut w = store.begin(meta.clone());
        w.add_region(0, &low).unwrap();
        w.add_region(2 << 20, &high).unwrap();
        w.set_state(b"state".to_vec());
        let id = w.commit().unwrap();
        store.set_current(&f, &id).unwrap();
        store.set_working_set(&id, &[4, 0]).unwrap();
        let mut w = store.begin(SnapshotMeta {
            function: FunctionKey::new("other"),
            ..meta.clone()
        });
        w.add_region(0, &low).unwrap();
        let other = w.commit().unwrap();
        store.mark_bad(&other, "test").unwrap();
        (id, other)
    };

    let store = Store::open_with_options(dir.path(), opts).unwrap();
    assert_eq!(store.current(&f).unwrap(), Some(id));
    let m = store.manifest(&id).unwrap();
    assert_eq!(
        (m.meta, m.state, m.working_set),
        (meta, b"state".to_vec(), Some(vec![4, 0]))
    );
    assert_eq!(store.is_bad(&other).unwrap().as_deref(), Some("test"));
    let out = dir.path().join("mem.img");
    store.materialize(&id, &out).unwrap();
    let img = std::fs::read(&out).unwrap();
    assert_eq!(&img[..1 << 20], &low[..]);
    assert_eq!(&img[2 << 20..3 << 20], &high[..]);
    let report = store.verify().unwrap();
    assert!(report.problems.is_empty(), "{report:?}");
    let stats = store.stats().unwrap();
    assert_eq!(stats.snapshots, 2);
    assert_eq!(
        stats.chunks, 5,
        "4 low chunks shared by both snapshots + 1 high"
    );
    assert_eq!(store.gc().unwrap().files_removed, 0);
}
