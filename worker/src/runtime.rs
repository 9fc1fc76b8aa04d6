//! Language runtimes: the guest program plus a precompiled WebAssembly module and
//! the files it boots with. `python3.12` is CPython 3.12 for WASI (fetched by
//! scripts/setup.sh, never committed) running `runtimes/python/bootstrap.py`.
use crate::compile::{compile_cached, guest_engine, CompiledModule};
use crate::error::WorkerError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The guest program, built by worker/build.rs.
pub static GUEST_ELF: &[u8] = include_bytes!(env!("THAW_GUEST_ELF"));

/// The Python bootstrap, placed at `/var/runtime/bootstrap.py`.
pub static PYTHON_BOOTSTRAP: &str = include_str!("../../runtimes/python/bootstrap.py");

/// The SnapStart hooks module, at `/var/runtime/snapshot_restore_py.py`.
pub static PYTHON_HOOKS: &str = include_str!("../../runtimes/python/snapshot_restore_py.py");

/// The rest of the Python runtime, at `/var/runtime/<name>`: what CPython for
/// WASI lacks (sockets and TLS through the host, thread pools, Lambda logging).
pub static PYTHON_LIBS: [(&str, &str); 6] = [
    (
        "_thaw_compat.py",
        include_str!("../../runtimes/python/_thaw_compat.py"),
    ),
    (
        "_thaw_socket.py",
        include_str!("../../runtimes/python/_thaw_socket.py"),
    ),
    (
        "_thaw_futures_thread.py",
        include_str!("../../runtimes/python/_thaw_futures_thread.py"),
    ),
    ("ssl.py", include_str!("../../runtimes/python/ssl.py")),
    (
        "multiprocessing/__init__.py",
        include_str!("../../runtimes/python/multiprocessing/__init__.py"),
    ),
    (
        "multiprocessing/managers.py",
        include_str!("../../runtimes/python/multiprocessing/managers.py"),
    ),
];

/// File name of the CPython module under the runtime directory.
pub const PYTHON_WASM: &str = "python-3.12.0.wasm";

/// Where runtimes live: `$THAW_RUNTIME_DIR`, else `third_party/` of this checkout.
pub fn default_runtime_dir() -> PathBuf {
    std::env::var_os("THAW_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../third_party"))
}

/// A runtime ready to boot instances.
#[derive(Debug)]
pub struct Runtime {
    pub name: &'static str,
    pub module: Arc<CompiledModule>,
    /// Runtime files by absolute guest path.
    pub files: Vec<(String, Vec<u8>)>,
    /// argv of the runtime process.
    pub argv: Vec<String>,
}

impl Runtime {
    /// Loads `python3.12` from `runtime_dir`, compiling it into `cache_dir` if needed.
    pub fn python(runtime_dir: &Path, cache_dir: &Path) -> Result<Self, WorkerError> {
        let path = runtime_dir.join(PYTHON_WASM);
        let engine = guest_engine()?;
        let module = compile_cached(&engine, &path, cache_dir)?;
        let libs = PYTHON_LIBS
            .iter()
            .map(|(name, text)| (format!("var/runtime/{name}"), text.as_bytes().to_vec()));
        Ok(Self {
            name: "python3.12",
            module,
            files: libs
                .chain([
                    (
                        "var/runtime/bootstrap.py".into(),
                        PYTHON_BOOTSTRAP.as_bytes().to_vec(),
                    ),
                    (
                        "var/runtime/snapshot_restore_py.py".into(),
                        PYTHON_HOOKS.as_bytes().to_vec(),
                    ),
                ])
                .collect(),
            argv: ["python3", "-u", "/var/runtime/bootstrap.py"]
                .map(String::from)
                .to_vec(),
        })
    }

    /// Identifies everything that shapes a snapshot of this runtime.
    pub fn hash(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(self.module.source_hash.as_bytes());
        h.update(GUEST_ELF);
        for (name, data) in &self.files {
            h.update(name.as_bytes());
            h.update(data);
        }
        h.finalize().to_hex().to_string()
    }
}
