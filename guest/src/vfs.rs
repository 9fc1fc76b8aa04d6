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
use alloc::string::String;
use alloc::vec::Vec;
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
            return ["next", "event", "response", "error", "init_error", "runtime_ready", "function_ready"]
                .iter()
                .map(|n| (String::from(*n), false))
                .collect();
        }
        let prefix = if dir == "/" { String::from("/") } else { alloc::format!("{dir}/") };
        let start = self.files.partition_point(|(p, _)| p.as_str() < prefix.as_str());
        let mut out: Vec<(String, bool)> = Vec::new();
        for (p, _) in &self.files[start..] {
            let Some(rest) = p.strip_prefix(prefix.as_str()) else { break };
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
    let full = if rel.starts_with('/') { [rel, ""] } else { [base, rel] };
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

