//! Chunk encode throughput (zero check + blake3 + zstd, one thread) at 64 KiB / 256 KiB / 2 MiB
//! chunks and zstd levels 1 and 3, plus a whole-snapshot write through the store, and chunk
//! decode (zstd decompress + blake3 verify, the store's read path per chunk) at the defaults. Decides
//! `DEFAULT_CHUNK_SIZE` and `DEFAULT_ZSTD_LEVEL` in `store.rs`.
//!
//! Input: the file named by `THAW_BENCH_INPUT` (e.g. a CPython wasm module or a real memory
//! image), else this benchmark's own executable, cycled to 32 MiB.
//! Run: `cargo bench -p thaw-snapshotter --bench chunking`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use thaw_snapshotter::chunks::{encode_chunk, is_zero};
use thaw_snapshotter::{
    ChunkId, FunctionKey, MemKv, SnapshotMeta, Store, StoreOptions, DEFAULT_CHUNK_SIZE,
    DEFAULT_ZSTD_LEVEL,
};

const INPUT_LEN: usize = 32 << 20;

fn input() -> Vec<u8> {
    let path = std::env::var_os("THAW_BENCH_INPUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::current_exe().expect("current exe"));
    let src = std::fs::read(&path).expect("read bench input");
    eprintln!("bench input: {} ({} bytes)", path.display(), src.len());
    src.iter().copied().cycle().take(INPUT_LEN).collect()
}

fn encode_all(data: &[u8], cs: usize, level: i32) -> usize {
    let mut stored = 0;
    for piece in data.chunks(cs) {
        if !is_zero(piece) {
            stored += encode_chunk(piece, level).expect("encode").1.len();
        }
    }
    stored
}

fn bench_encode(c: &mut Criterion) {
    let data = input();
    let mut g = c.benchmark_group("encode");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Bytes(data.len() as u64));
    for level in [1, 3] {
        for cs in [64usize << 10, 256 << 10, 2 << 20] {
            let stored = encode_all(&data, cs, level);
            eprintln!(
                "level {level} chunk {} KiB: ratio {:.2} (stored {stored} of {})",
                cs >> 10,
                data.len() as f64 / stored as f64,
                data.len()
            );
            g.bench_function(format!("zstd{level}/{}KiB", cs >> 10), |b| {
                b.iter(|| encode_all(black_box(&data), cs, level))
            });
        }
    }
    g.finish();
}

fn bench_write_snapshot(c: &mut Criterion) {
    let data = input();
    let mut g = c.benchmark_group("write_snapshot");
    g.sample_size(10).measurement_time(Duration::from_secs(6));
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("32MiB_default_options", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("tempdir");
                let kv = Arc::new(MemKv::new());
                let store = Store::with_kv(kv, &dir.path().join("chunks"), StoreOptions::default())
                    .expect("store");
                (dir, store)
            },
            |(dir, store)| {
                let meta = SnapshotMeta {
                    function: FunctionKey::new("bench"),
                    code_hash: String::new(),
                    runtime_hash: String::new(),
                    memory_size: data.len() as u64,
                    labels: Default::default(),
                };
                let mut w = store.begin(meta);
                w.add_region(0, &data).expect("add region");
                w.commit().expect("commit");
                dir
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// Decode of every non-zero chunk at the default chunk size and level: what a fault or an eager
/// restore pays per chunk when the decompressed-chunk cache misses (`ChunkFiles::read`).
fn bench_decode(c: &mut Criterion) {
    let data = input();
    let cs = DEFAULT_CHUNK_SIZE as usize;
    let encoded: Vec<(ChunkId, Vec<u8>)> = data
        .chunks(cs)
        .filter(|p| !is_zero(p))
        .map(|p| encode_chunk(p, DEFAULT_ZSTD_LEVEL).expect("encode"))
        .collect();
    let raw: usize = encoded.len() * cs;
    let mut g = c.benchmark_group("decode");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Bytes(raw as u64));
    g.bench_function(
        format!("zstd{DEFAULT_ZSTD_LEVEL}/{}KiB_verify", cs >> 10),
        |b| {
            b.iter(|| {
                for (id, compressed) in &encoded {
                    let bytes = zstd::decode_all(&compressed[..]).expect("decode");
                    assert_eq!(ChunkId::of(&bytes), *id);
                    black_box(bytes);
                }
            })
        },
    );
    g.finish();
}

criterion_group!(benches, bench_encode, bench_write_snapshot, bench_decode);
criterion_main!(benches);
