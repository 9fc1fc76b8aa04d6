//! The guest's file system: a read-only in-memory tree built from the files archive
//! the VMM loaded (the function at `/var/task`, the bootstrap at `/var/runtime`),
//! plus `/run/thaw`, the files through which the runtime talks to thaw:
//!
//! | path | open for | effect |
//! |---|---|---|
//! | `/run/thaw/next` | read | blocks in the `Next` hypercall; reads the invocation header JSON |
//! | `/run/thaw/event` | read | the current invocation's event bytes |
//! | `/run/thaw/response` | write | the handler result, sent on close |
//! | `/run/thaw/error` | write | a handler error body, sent on close |
//! | `/run/thaw/init_error` | write | an init error body, sent on close |
//! | `/run/thaw/runtime_ready` | read | reports the phase (host timestamps it); empty |
//! | `/run/thaw/function_ready` | read | reports the phase; empty |
//!
//! WASI preview 1 has no sockets, so these files stand in for the Lambda Runtime
//! API's HTTP endpoints (same calls, same order, same bodies).
//!
//! `/tmp` is writable, as on Lambda: an in-memory tree ([`TmpFs`]) in the guest's
//! heap, capped at [`TMP_LIMIT`] bytes. It lives in guest memory, so it persists
//! across warm invocations and what init writes there is in the snapshot.
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use thaw_abi::{layout, ResponseKind, MAX_PAYLOAD};

/// A file or directory in the tree.
pub enum Node {
    File(&'static [u8]),
    Dir,
    Special(Special),
}

/// The `/run/thaw` files.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Special {
    Next,
    Event,
    Response,
    Error,
    InitError,
    Phase(u32),
}

impl Special {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "next" => Self::Next,
            "event" => Self::Event,
            "response" => Self::Response,
            "error" => Self::Error,
            "init_error" => Self::InitError,
            "runtime_ready" => Self::Phase(thaw_abi::phase::RUNTIME_READY),
            "function_ready" => Self::Phase(thaw_abi::phase::FUNCTION_READY),
            _ => return None,
        })
    }

    /// The response kind a writable special file sends on close.
    pub fn response_kind(self) -> Option<ResponseKind> {
        match self {
            Self::Response => Some(ResponseKind::Ok),
            Self::Error => Some(ResponseKind::Error),
            Self::InitError => Some(ResponseKind::InitError),
            _ => None,
        }
    }
}

/// The directory holding the special files.
pub const RUN_DIR: &str = "/run/thaw";

/// The read-only tree: sorted absolute paths (no trailing slash).
pub struct Tree {
    files: Vec<(String, &'static [u8])>,
}

impl Tree {
    /// Builds the tree from a `thaw_abi::files` archive; names are paths relative to `/`.
    pub fn from_archive(archive: &'static [u8]) -> Self {
        let mut files: Vec<(String, &'static [u8])> = thaw_abi::files::entries(archive)
            .filter_map(|(name, data)| {
                let name = core::str::from_utf8(name).ok()?;
                Some((normalize("/", name)?, data))
            })
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        Self { files }
    }

    /// Looks up an absolute, normalized path.
    pub fn lookup(&self, path: &str) -> Option<Node> {
        if let Some(name) = path.strip_prefix(RUN_DIR).and_then(|r| r.strip_prefix('/')) {
            return Special::from_name(name).map(Node::Special);
        }
        if path == RUN_DIR || path == "/" {
            return Some(Node::Dir);
        }
        match self.files.binary_search_by(|(p, _)| p.as_str().cmp(path)) {
            Ok(i) => Some(Node::File(self.files[i].1)),
            Err(i) => {
                // A directory exists if some file lies below it.
                let below = self.files.get(i).is_some_and(|(p, _)| {
                    p.len() > path.len() && p.starts_with(path) && p.as_bytes()[path.len()] == b'/'
                });
                below.then_some(Node::Dir)
            }
        }
    }

    /// Names directly inside directory `dir`, with whether each is a directory.
    pub fn list(&self, dir: &str) -> Vec<(String, bool)> {
        if dir == RUN_DIR {
            return [
                "next",
                "event",
                "response",
                "error",
                "init_error",
                "runtime_ready",
                "function_ready",
            ]
            .iter()
            .map(|n| (String::from(*n), false))
            .collect();
        }
        let prefix = if dir == "/" {
            String::from("/")
        } else {
            alloc::format!("{dir}/")
        };
        let start = self
            .files
            .partition_point(|(p, _)| p.as_str() < prefix.as_str());
        let mut out: Vec<(String, bool)> = Vec::new();
        for (p, _) in &self.files[start..] {
            let Some(rest) = p.strip_prefix(prefix.as_str()) else {
                break;
            };
            let (name, is_dir) = match rest.find('/') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            if out.last().map(|(n, _)| n.as_str()) != Some(name) {
                out.push((String::from(name), is_dir));
            }
        }
        out
    }
}

/// Joins `rel` onto absolute directory `base`, resolving `.` and `..`; `None` for
/// an empty or absolute `rel` that climbs above `/`.
pub fn normalize(base: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    let full = if rel.starts_with('/') {
        [rel, ""]
    } else {
        [base, rel]
    };
    for piece in full.iter().flat_map(|s| s.split('/')) {
        match piece {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    let mut out = String::new();
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// A writer into the shared response area for `/run/thaw/{response,error,init_error}`.
pub struct Sink {
    pub kind: ResponseKind,
    pub len: u64,
}

impl Sink {
    /// Appends bytes; bytes past the area are counted but dropped.
    pub fn write(&mut self, data: &[u8]) {
        let area = crate::hc::response_area();
        let start = (self.len as usize).min(area.len());
        let n = data.len().min(area.len() - start);
        area[start..start + n].copy_from_slice(&data[..n]);
        self.len += data.len() as u64;
    }

    /// Hands the body to the VMM (with the next `Next`; init errors at once).
    pub fn send(self) {
        let truncated = self.len > MAX_PAYLOAD;
        let len = self.len.min(layout::RESPONSE_SIZE);
        crate::hc::queue_response(self.kind, len, truncated);
    }
}

/// The writable directory.
pub const TMP_DIR: &str = "/tmp";
/// Bytes of file data `/tmp` may hold (it shares the guest's RAM with the runtime).
pub const TMP_LIMIT: usize = 64 << 20;

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
pub struct TmpFs {
    files: BTreeMap<String, TmpData>,
    dirs: BTreeSet<String>,
}

impl Default for TmpFs {
    fn default() -> Self {
        let mut dirs = BTreeSet::new();
        dirs.insert(String::from(TMP_DIR));
        Self {
            files: BTreeMap::new(),
            dirs,
        }
    }
}

/// The parent directory of an absolute path (`/` for top-level names).
fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

impl TmpFs {
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

    /// Whether growing some file by `extra` bytes stays within [`TMP_LIMIT`].
    pub fn has_room(&self, extra: usize) -> bool {
        self.used()
            .checked_add(extra)
            .is_some_and(|n| n <= TMP_LIMIT)
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
