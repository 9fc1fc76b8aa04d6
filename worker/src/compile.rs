//! Ahead-of-time compilation of WebAssembly modules for the guest engine.
//!
//! The guest runs wasmtime's runtime without a compiler, so the host compiles with
//! Cranelift for target `x86_64-unknown-none` and exactly the guest's engine
//! settings (the engine comes from `thaw_guest_aot`, beside the guest). Results are
//! cached by the module's content hash plus wasmtime's compatibility hash: a second
//! cold boot skips compilation.
use crate::error::WorkerError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Engine;

/// Builds the engine whose output the guest can load (its configuration is the guest
/// engine's other half, `thaw_guest_aot`).
pub fn guest_engine() -> Result<Engine, WorkerError> {
    thaw_guest_aot::guest_engine().map_err(|e| WorkerError::Compile(e.into()))
}

/// A compiled module image ready to place in guest RAM. A cached one is read from
/// disk only when something needs its bytes (a cold boot writes them into guest RAM): a
/// restore needs only its length, so a new process that only restores never reads the
/// ~62 MB file.
#[derive(Debug)]
pub struct CompiledModule {
    bytes: std::sync::OnceLock<Vec<u8>>,
    path: PathBuf,
    len: usize,
    /// Content hash of the source module.
    pub source_hash: String,
    /// Whether this came from the cache.
    pub cache_hit: bool,
    /// Time spent compiling, or finding the cached result.
    pub elapsed: Duration,
}

impl CompiledModule {
    /// Length of the compiled image in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the image is empty (never, for a real module).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The compiled image, read from the cache file on first use.
    pub fn bytes(&self) -> Result<&[u8], WorkerError> {
        if let Some(b) = self.bytes.get() {
            return Ok(b);
        }
        let bytes = std::fs::read(&self.path).map_err(cache_err(&self.path))?;
        if bytes.len() != self.len {
            return Err(WorkerError::Cache {
                path: self.path.display().to_string(),
                source: std::io::Error::other(format!(
                    "the cached module changed size ({} bytes, was {})",
                    bytes.len(),
                    self.len
                )),
            });
        }
        // Another thread may have read it meanwhile: either copy is the same file.
        let _ = self.bytes.set(bytes);
        Ok(self.bytes.get().map_or(&[][..], Vec::as_slice))
    }
}

/// The blake3 hash (hex) of the file at `path`: read from a record under `cache_dir`
/// named by the file's device, inode, size, mtime and ctime when one exists (any write
/// to the file changes its ctime, so a record never outlives the bytes it hashed),
/// else computed from the bytes, which it also returns, and recorded.
fn source_hash(path: &Path, cache_dir: &Path) -> Result<(String, Option<Vec<u8>>), WorkerError> {
    use std::os::unix::fs::MetadataExt;
    let missing = |source| WorkerError::RuntimeMissing {
        path: path.display().to_string(),
        source,
    };
    let m = std::fs::metadata(path).map_err(missing)?;
    let name = path.file_name().map_or_else(
        || "module".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let record = cache_dir.join("source-hashes").join(format!(
        "{name}-{}-{}-{}-{}.{}-{}.{}",
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    ));
    if let Ok(hex) = std::fs::read_to_string(&record) {
        let hex = hex.trim();
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok((hex.to_string(), None));
        }
    }
    let wasm = std::fs::read(path).map_err(missing)?;
    let hex = blake3::hash(&wasm).to_hex().to_string();
    // A record is an optimisation: failing to write one is not an error.
    if let Some(dir) = record.parent() {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{}-{n}.tmp", std::process::id()));
        let _ = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, &hex))
            .and_then(|()| std::fs::rename(&tmp, &record));
        let _ = std::fs::remove_file(&tmp);
    }
    Ok((hex, Some(wasm)))
}

/// Compiles the module at `wasm_path` (or finds the cached result) under `cache_dir`.
/// A cache hit reads neither the source (its hash is recorded, see [`source_hash`]) nor
/// the compiled image ([`CompiledModule::bytes`] reads it when needed).
pub fn compile_cached(
    engine: &Engine,
    wasm_path: &Path,
    cache_dir: &Path,
) -> Result<Arc<CompiledModule>, WorkerError> {
    let t0 = Instant::now();
    let (source_hash, wasm) = source_hash(wasm_path, cache_dir)?;
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut h);
    let key = format!(
        "{}-{:016x}",
        &source_hash[..32],
        std::hash::Hasher::finish(&h)
    );
    let path = cache_dir.join(format!("{key}.cwasm"));
    if let Ok(m) = std::fs::metadata(&path) {
        if m.is_file() && m.len() > 0 {
            return Ok(Arc::new(CompiledModule {
                bytes: std::sync::OnceLock::new(),
                len: m.len() as usize,
                path,
                source_hash,
                cache_hit: true,
                elapsed: t0.elapsed(),
            }));
        }
    }
    let wasm = match wasm {
        Some(w) => w,
        None => std::fs::read(wasm_path).map_err(|source| WorkerError::RuntimeMissing {
            path: wasm_path.display().to_string(),
            source,
        })?,
    };
    let bytes = engine
        .precompile_module(&wasm)
        .map_err(|e| WorkerError::Compile(e.into()))?;
    std::fs::create_dir_all(cache_dir).map_err(cache_err(cache_dir))?;
    let tmp = cache_dir.join(format!(".{key}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(cache_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(cache_err(&path))?;
    Ok(Arc::new(CompiledModule {
        len: bytes.len(),
        bytes: std::sync::OnceLock::from(bytes),
        path,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_source_hash_is_recorded_and_never_outlives_a_write_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (src, cache) = (dir.path().join("m.wasm"), dir.path().join("cache"));
        std::fs::write(&src, b"first module bytes").unwrap();
        let (h1, read) = source_hash(&src, &cache).unwrap();
        assert_eq!(h1, blake3::hash(b"first module bytes").to_hex().to_string());
        assert_eq!(read.as_deref(), Some(&b"first module bytes"[..]));
        // Recorded: the second call does not read the file.
        let (again, read) = source_hash(&src, &cache).unwrap();
        assert_eq!((again.as_str(), read), (h1.as_str(), None));
        // Same length, rewritten in place: the record no longer matches.
        std::fs::write(&src, b"other module bytes").unwrap();
        let (h2, read) = source_hash(&src, &cache).unwrap();
        assert_eq!(h2, blake3::hash(b"other module bytes").to_hex().to_string());
        assert!(read.is_some());
        // A damaged record is ignored, not trusted.
        for e in std::fs::read_dir(cache.join("source-hashes")).unwrap() {
            std::fs::write(e.unwrap().path(), b"not a hash").unwrap();
        }
        assert_eq!(source_hash(&src, &cache).unwrap().0, h2);
        // A missing source is the runtime missing.
        let err = source_hash(&dir.path().join("absent.wasm"), &cache).unwrap_err();
        assert!(matches!(err, WorkerError::RuntimeMissing { .. }), "{err}");
    }

    #[test]
    fn test_a_cached_module_is_read_on_first_use_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.cwasm");
        std::fs::write(&path, vec![7u8; 1000]).unwrap();
        let m = CompiledModule {
            bytes: std::sync::OnceLock::new(),
            path: path.clone(),
            len: 1000,
            source_hash: String::new(),
            cache_hit: true,
            elapsed: Duration::ZERO,
        };
        assert_eq!(m.len(), 1000);
        assert_eq!(m.bytes().unwrap(), &[7u8; 1000][..]);
        // Read once: later changes to the file do not matter.
        std::fs::write(&path, b"short").unwrap();
        assert_eq!(m.bytes().unwrap().len(), 1000);
        let changed = CompiledModule {
            bytes: std::sync::OnceLock::new(),
            path,
            len: 1000,
            source_hash: String::new(),
            cache_hit: true,
            elapsed: Duration::ZERO,
        };
        assert!(matches!(changed.bytes(), Err(WorkerError::Cache { .. })));
    }
}
