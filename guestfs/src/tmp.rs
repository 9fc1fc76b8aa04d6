//! `/tmp`, writable as on Lambda: an in-memory tree in the guest's heap, capped at
//! the function's EphemeralStorage (`BootInfo::tmp_limit`; [`DEFAULT_TMP_LIMIT`] when
//! none is given). It lives in guest memory, so it persists across warm invocations,
//! what init writes there is in the snapshot, and its bytes count against MemorySize
//! too (the guest checks that budget before it grows a file; docs/MEMORY.md).
use crate::path::parent;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

/// The writable directory.
pub const TMP_DIR: &str = "/tmp";
/// Bytes of file data `/tmp` may hold when no limit is given: Lambda's default
/// EphemeralStorage, 512 MB.
pub const DEFAULT_TMP_LIMIT: usize = 512 << 20;

/// A `/tmp` file's bytes, shared by its open handles.
pub type TmpData = Rc<RefCell<Vec<u8>>>;

/// Why a `/tmp` operation failed (mapped to WASI errnos by the caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TmpError {
    NotFound,
    Exists,
    NotDir,
    IsDir,
    NotEmpty,
    Invalid,
}

/// The in-memory tree under `/tmp`: absolute, normalized paths.
#[derive(Debug)]
pub struct TmpFs {
    files: BTreeMap<String, TmpData>,
    dirs: BTreeSet<String>,
    /// Bytes of file data it may hold.
    limit: usize,
}

impl Default for TmpFs {
    fn default() -> Self {
        Self::with_limit(DEFAULT_TMP_LIMIT)
    }
}

impl TmpFs {
    /// An empty `/tmp` that holds at most `limit` bytes of file data.
    pub fn with_limit(limit: usize) -> Self {
        let mut dirs = BTreeSet::new();
        dirs.insert(String::from(TMP_DIR));
        Self {
            files: BTreeMap::new(),
            dirs,
            limit,
        }
    }

    /// Bytes of file data it may hold.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether `path` (absolute, normalized) lies in `/tmp`.
    pub fn covers(path: &str) -> bool {
        path == TMP_DIR
            || path
                .strip_prefix(TMP_DIR)
                .is_some_and(|r| r.starts_with('/'))
    }

    /// The file at `path`.
    pub fn file(&self, path: &str) -> Option<TmpData> {
        self.files.get(path).cloned()
    }

    /// Whether `path` is a directory.
    pub fn is_dir(&self, path: &str) -> bool {
        self.dirs.contains(path)
    }

    /// Bytes all files hold (call with no file borrowed mutably).
    pub fn used(&self) -> usize {
        self.files.values().map(|d| d.borrow().len()).sum()
    }

    /// Whether growing some file by `extra` bytes stays within the limit.
    pub fn has_room(&self, extra: usize) -> bool {
        self.used()
            .checked_add(extra)
            .is_some_and(|n| n <= self.limit)
    }

    fn check_new(&self, path: &str) -> Result<(), TmpError> {
        if self.files.contains_key(path) || self.dirs.contains(path) {
            return Err(TmpError::Exists);
        }
        let dir = parent(path);
        if self.files.contains_key(dir) {
            return Err(TmpError::NotDir);
        }
        if !self.dirs.contains(dir) {
            return Err(TmpError::NotFound);
        }
        Ok(())
    }

    /// Creates an empty file.
    pub fn create(&mut self, path: &str) -> Result<TmpData, TmpError> {
        self.check_new(path)?;
        let data: TmpData = Rc::new(RefCell::new(Vec::new()));
        self.files.insert(String::from(path), data.clone());
        Ok(data)
    }

    /// Creates a directory.
    pub fn mkdir(&mut self, path: &str) -> Result<(), TmpError> {
        self.check_new(path)?;
        self.dirs.insert(String::from(path));
        Ok(())
    }

    /// Removes a file (open handles keep its bytes until they close).
    pub fn unlink(&mut self, path: &str) -> Result<(), TmpError> {
        if self.dirs.contains(path) {
            return Err(TmpError::IsDir);
        }
        self.files.remove(path).map(drop).ok_or(TmpError::NotFound)
    }

    /// Removes an empty directory (never `/tmp` itself).
    pub fn rmdir(&mut self, path: &str) -> Result<(), TmpError> {
        if self.files.contains_key(path) {
            return Err(TmpError::NotDir);
        }
        if !self.dirs.contains(path) {
            return Err(TmpError::NotFound);
        }
        if path == TMP_DIR {
            return Err(TmpError::Invalid);
        }
        if !self.list(path).is_empty() {
            return Err(TmpError::NotEmpty);
        }
        self.dirs.remove(path);
        Ok(())
    }

    /// Renames a file or directory (POSIX: a file replaces a file, a directory an
    /// empty directory; a directory cannot move below itself).
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), TmpError> {
        if from == to {
            return if self.files.contains_key(from) || self.dirs.contains(from) {
                Ok(())
            } else {
                Err(TmpError::NotFound)
            };
        }
        if from == TMP_DIR || to == TMP_DIR {
            return Err(TmpError::Invalid);
        }
        let dir = parent(to);
        if !self.dirs.contains(dir) {
            return Err(if self.files.contains_key(dir) {
                TmpError::NotDir
            } else {
                TmpError::NotFound
            });
        }
        if let Some(data) = self.files.get(from).cloned() {
            if self.dirs.contains(to) {
                return Err(TmpError::IsDir);
            }
            self.files.remove(from);
            self.files.insert(String::from(to), data);
            return Ok(());
        }
        if !self.dirs.contains(from) {
            return Err(TmpError::NotFound);
        }
        let below = |p: &str, d: &str| p.strip_prefix(d).is_some_and(|r| r.starts_with('/'));
        if below(to, from) {
            return Err(TmpError::Invalid);
        }
        if self.files.contains_key(to) {
            return Err(TmpError::NotDir);
        }
        if self.dirs.contains(to) {
            self.rmdir(to)?;
        }
        let moved = |p: &str| alloc::format!("{to}{}", &p[from.len()..]);
        let dirs: Vec<String> = self
            .dirs
            .iter()
            .filter(|d| *d == from || below(d, from))
            .cloned()
            .collect();
        for d in dirs {
            self.dirs.remove(&d);
            self.dirs.insert(moved(&d));
        }
        let files: Vec<String> = self
            .files
            .keys()
            .filter(|f| below(f, from))
            .cloned()
            .collect();
        for f in files {
            if let Some(data) = self.files.remove(&f) {
                self.files.insert(moved(&f), data);
            }
        }
        Ok(())
    }

    /// Names directly inside directory `dir`, with whether each is a directory.
    pub fn list(&self, dir: &str) -> Vec<(String, bool)> {
        let prefix = alloc::format!("{dir}/");
        let direct = |p: &String| {
            p.strip_prefix(prefix.as_str())
                .filter(|r| !r.contains('/'))
                .map(String::from)
        };
        let mut out: Vec<(String, bool)> = self
            .dirs
            .iter()
            .filter_map(direct)
            .map(|n| (n, true))
            .collect();
        out.extend(self.files.keys().filter_map(direct).map(|n| (n, false)));
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_create_write_rename_and_remove() {
        let mut fs = TmpFs::default();
        fs.mkdir("/tmp/a").unwrap();
        let f = fs.create("/tmp/a/x").unwrap();
        f.borrow_mut().extend_from_slice(b"hello");
        assert_eq!(fs.create("/tmp/a/x").unwrap_err(), TmpError::Exists);
        assert_eq!(fs.create("/tmp/nope/x").unwrap_err(), TmpError::NotFound);
        assert_eq!(fs.create("/tmp/a/x/y").unwrap_err(), TmpError::NotDir);
        fs.rename("/tmp/a", "/tmp/b").unwrap();
        assert_eq!(&*fs.file("/tmp/b/x").unwrap().borrow(), b"hello");
        assert!(fs.file("/tmp/a/x").is_none());
        assert_eq!(
            fs.rename("/tmp/b", "/tmp/b/c").unwrap_err(),
            TmpError::Invalid
        );
        assert_eq!(fs.rmdir("/tmp/b").unwrap_err(), TmpError::NotEmpty);
        fs.unlink("/tmp/b/x").unwrap();
        fs.rmdir("/tmp/b").unwrap();
        assert_eq!(fs.rmdir("/tmp").unwrap_err(), TmpError::Invalid);
        assert_eq!(fs.list("/tmp"), Vec::new());
    }

    #[test]
    fn test_limit() {
        let fs = TmpFs::default();
        assert_eq!(fs.limit(), DEFAULT_TMP_LIMIT);
        assert!(fs.has_room(DEFAULT_TMP_LIMIT));
        assert!(!fs.has_room(DEFAULT_TMP_LIMIT + 1));
        assert!(!fs.has_room(usize::MAX));
        // A given limit (EphemeralStorage) counts every file's bytes.
        let mut fs = TmpFs::with_limit(10);
        let a = fs.create("/tmp/a").unwrap();
        a.borrow_mut().extend_from_slice(b"123456");
        let b = fs.create("/tmp/b").unwrap();
        b.borrow_mut().extend_from_slice(b"12");
        assert!(fs.has_room(2));
        assert!(!fs.has_room(3));
        fs.unlink("/tmp/a").unwrap();
        drop(a);
        assert!(fs.has_room(8) && !fs.has_room(9));
        assert!(TmpFs::covers("/tmp") && TmpFs::covers("/tmp/x") && !TmpFs::covers("/tmpx"));
    }
}
