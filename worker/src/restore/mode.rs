//! [`MemoryMode`]: how guest memory is provided when an instance is restored (the table
//! in the parent module's doc), with its CLI names.
use std::str::FromStr;

/// How guest memory is provided on restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MemoryMode {
    Boot,
    Eager,
    Mmap,
    Uffd,
    UffdPrefetch,
    Shared,
}

impl MemoryMode {
    /// Every mode, in benchmark order.
    pub const ALL: [MemoryMode; 6] = [
        Self::Boot,
        Self::Eager,
        Self::Mmap,
        Self::Uffd,
        Self::UffdPrefetch,
        Self::Shared,
    ];

    /// The CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Boot => "boot",
            Self::Eager => "eager",
            Self::Mmap => "mmap",
            Self::Uffd => "uffd",
            Self::UffdPrefetch => "uffd+prefetch",
            Self::Shared => "shared",
        }
    }
}

impl std::fmt::Display for MemoryMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MemoryMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown memory mode {s:?} (one of boot, eager, mmap, uffd, uffd+prefetch, shared)"))
    }
}
