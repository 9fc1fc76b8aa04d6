//! Ahead-of-time compilation of WebAssembly modules for the guest engine.
//!
//! The guest runs wasmtime's runtime without a compiler, so the host compiles with
//! Cranelift for target `x86_64-unknown-none` and exactly the guest's engine
//! settings (the engine comes from `thaw_guest_aot`, beside the guest). Results are
//! cached by the module's content hash plus wasmtime's compatibility hash: a second
//! cold boot skips compilation.
use crate::error::WorkerError;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Engine;

/// Builds the engine whose output the guest can load (its configuration is the guest
/// engine's other half, `thaw_guest_aot`).
pub fn guest_engine() -> Result<Engine, WorkerError> {
    thaw_guest_aot::guest_engine().map_err(|e| WorkerError::Compile(e.into()))
}

/// A compiled module image ready to place in guest RAM.
#[derive(Debug)]
pub struct CompiledModule {
    pub bytes: Vec<u8>,
    /// Content hash of the source module.
    pub source_hash: String,
    /// Whether this came from the cache.
    pub cache_hit: bool,
    /// Time spent compiling or reading the cache.
    pub elapsed: Duration,
}

/// Compiles `wasm` (or reads the cached result) under `cache_dir`.
pub fn compile_cached(
    engine: &Engine,
    wasm: &[u8],
    cache_dir: &Path,
) -> Result<Arc<CompiledModule>, WorkerError> {
    let t0 = Instant::now();
    let source_hash = blake3::hash(wasm).to_hex().to_string();
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut h);
    let key = format!(
        "{}-{:016x}",
        &source_hash[..32],
        std::hash::Hasher::finish(&h)
    );
    let path = cache_dir.join(format!("{key}.cwasm"));
    if let Ok(bytes) = std::fs::read(&path) {
        return Ok(Arc::new(CompiledModule {
            bytes,
            source_hash,
            cache_hit: true,
            elapsed: t0.elapsed(),
        }));
    }
    let bytes = engine
        .precompile_module(wasm)
        .map_err(|e| WorkerError::Compile(e.into()))?;
    std::fs::create_dir_all(cache_dir).map_err(cache_err(cache_dir))?;
    let tmp = cache_dir.join(format!(".{key}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(cache_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(cache_err(&path))?;
    Ok(Arc::new(CompiledModule {
        bytes,
        source_hash,
        cache_hit: false,
        elapsed: t0.elapsed(),
    }))
}

fn cache_err(p: &Path) -> impl FnOnce(std::io::Error) -> WorkerError + '_ {
    move |source| WorkerError::Cache {
        path: p.display().to_string(),
        source,
    }
}
