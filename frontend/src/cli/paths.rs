//! Where thaw keeps its state: the data directory (`--data`, `$THAW_DATA`, or
//! `~/.thaw`) holds the module cache, the snapshot store and the registry.
use std::path::PathBuf;

/// The data directory to use.
pub fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("THAW_DATA").map(PathBuf::from))
        .unwrap_or_else(|| {
            std::env::var_os("HOME").map_or_else(
                || PathBuf::from(".thaw"),
                |h| PathBuf::from(h).join(".thaw"),
            )
        })
}

/// Precompiled modules, by content hash.
pub fn module_cache(data: &std::path::Path) -> PathBuf {
    data.join("cache/modules")
}
