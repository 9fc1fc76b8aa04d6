//! Helpers shared by thaw's cross-crate integration tests (`scenarios/`): the
//! python runtime loaded once per test binary, small functions written from source,
//! and boot/invoke shorthands over `thaw_worker`.
#![forbid(unsafe_code)]
pub mod net;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use thaw_worker::{
    FunctionCode, FunctionSpec, Instance, InvokeOutcome, InvokeRequest, Runtime, WorkerError,
};

/// The module cache shared by every test run on this machine, so the ~10 s
/// precompile of CPython happens once per machine (and engine version).
pub fn cache_dir() -> PathBuf {
    std::env::temp_dir().join("thaw-test-cache")
}

/// The python3.12 runtime, loaded (and if needed compiled) once per test binary:
/// tests run on parallel threads and must not race the first compile.
pub fn runtime() -> &'static Arc<Runtime> {
    static RUNTIME: OnceLock<Arc<Runtime>> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::python(&thaw_worker::runtime::default_runtime_dir(), &cache_dir())
            .map(Arc::new)
            .unwrap_or_else(|e| {
                panic!(
                    "loading the python runtime: {}",
                    thaw_worker::error::error_chain(&e)
                )
            })
    })
}

/// Function code from `(path, source)` pairs, written to a temporary directory and
/// read back the way `thaw run <dir>` reads it.
pub fn code(files: &[(&str, &str)]) -> FunctionCode {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, source) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("file has a parent"))
            .expect("create function dir");
        std::fs::write(&p, source).expect("write function file");
    }
    FunctionCode::load(dir.path()).expect("load function code")
}

/// A spec for handler `app.handler` in `app.py` = `source`, with a 30 s timeout
/// (tests run in parallel on 2 cores; timeout tests set their own).
pub fn spec(name: &str, source: &str) -> FunctionSpec {
    let mut s = FunctionSpec::new(name, "app.handler", code(&[("app.py", source)]));
    s.timeout = Duration::from_secs(30);
    s
}

/// Boots `spec`; panics with the error chain and the guest log on failure.
pub fn boot(spec: FunctionSpec) -> Instance {
    match Instance::boot(runtime(), Arc::new(spec)) {
        Ok((instance, _)) => instance,
        Err(e) => panic!(
            "boot failed: {}\nlog:\n{}",
            thaw_worker::error::error_chain(&e),
            String::from_utf8_lossy(e.log())
        ),
    }
}

/// Boots `spec` and returns the error it must fail with.
pub fn boot_err(spec: FunctionSpec) -> WorkerError {
    match Instance::boot(runtime(), Arc::new(spec)) {
        Ok(_) => panic!("boot was expected to fail"),
        Err(e) => e,
    }
}

/// Invokes with raw payload bytes.
pub fn invoke_raw(instance: &mut Instance, payload: Vec<u8>) -> Result<InvokeOutcome, WorkerError> {
    instance.invoke(&InvokeRequest {
        payload,
        ..Default::default()
    })
}

/// Invokes with a JSON event; panics on a platform error (a handler error is `Ok`).
pub fn invoke(instance: &mut Instance, event: &serde_json::Value) -> InvokeOutcome {
    invoke_raw(instance, event.to_string().into_bytes()).unwrap_or_else(|e| {
        panic!(
            "invoke failed: {}\nlog:\n{}",
            thaw_worker::error::error_chain(&e),
            String::from_utf8_lossy(e.log())
        )
    })
}

/// The outcome's body as JSON.
pub fn body_json(out: &InvokeOutcome) -> serde_json::Value {
    serde_json::from_slice(&out.body).unwrap_or_else(|e| {
        panic!(
            "body is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.body)
        )
    })
}

/// A hello function: proves an instance still works.
pub const HELLO: &str = "def handler(event, context):\n    return {'hello': event.get('name')}\n";

/// Boots a fresh hello instance and checks one invocation (the host is healthy).
pub fn assert_host_healthy() {
    let mut i = boot(spec("healthy", HELLO));
    let out = invoke(&mut i, &serde_json::json!({"name": "again"}));
    assert!(
        !out.function_error,
        "{}",
        String::from_utf8_lossy(&out.body)
    );
    assert_eq!(body_json(&out), serde_json::json!({"hello": "again"}));
}

/// `n` printable ASCII bytes that JSON-encode as themselves (no quote, no backslash).
pub fn ascii_payload(n: usize, seed: u64) -> String {
    const ALPHABET: &[u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 -_.:;,!?";
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

/// Adler-32, the checksum Python's `zlib.adler32` computes.
pub fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

/// Median of some durations.
pub fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

/// A worker over the shared runtime and a fresh snapshot store in `dir`.
pub fn worker(dir: &std::path::Path, opts: thaw_snapshotter::StoreOptions) -> thaw_worker::Worker {
    let data = thaw_worker::DataDir::new(dir);
    let store =
        thaw_snapshotter::Store::open_with_options(&data.store(), opts).expect("open store");
    thaw_worker::Worker::from_parts(runtime().clone(), store, data)
}

/// A worker whose store keeps no decompressed chunks: every read hits the chunk
/// file, so damage on disk is seen.
pub fn uncached_worker(dir: &std::path::Path) -> thaw_worker::Worker {
    worker(
        dir,
        thaw_snapshotter::StoreOptions {
            cache_bytes: 0,
            ..Default::default()
        },
    )
}

/// Flips one byte in the middle of a chunk file; false when the file is absent.
pub fn corrupt_file(path: &std::path::Path) -> bool {
    let Ok(mut bytes) = std::fs::read(path) else {
        return false;
    };
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(path, bytes).expect("rewrite the chunk file");
    true
}

/// The file holding chunk `id` in `w`'s store.
pub fn chunk_path(w: &thaw_worker::Worker, id: &thaw_snapshotter::ChunkId) -> PathBuf {
    let hex = id.to_string();
    w.data().store().join("chunks").join(&hex[..2]).join(&hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_adler32_matches_zlib() {
        // zlib.adler32(b"Wikipedia") == 0x11E60398
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(b""), 1);
    }

    #[test]
    fn test_ascii_payload_needs_no_json_escapes() {
        let s = ascii_payload(10_000, 7);
        assert_eq!(serde_json::to_string(&s).unwrap().len(), s.len() + 2);
    }
}
