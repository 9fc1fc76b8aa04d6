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
//! | `/run/thaw/socket` | read+write | a new socket fd per open (see `net`) |
//! | `/run/thaw/net` | read+write | socket control: write a request, read its reply |
//!
//! WASI preview 1 has no sockets, so these files stand in for the Lambda Runtime
//! API's HTTP endpoints (same calls, same order, same bodies).
//!
//! `/tmp` is writable, as on Lambda: an in-memory tree ([`TmpFs`]) in the guest's
//! heap (`thaw-guestfs`, tested on the host), capped at the function's EphemeralStorage
//! and, since it lives in guest memory, within MemorySize. It persists across warm
//! invocations and what init writes there is in the snapshot.
use alloc::string::String;
use alloc::vec::Vec;
use thaw_abi::{layout, ResponseKind, MAX_PAYLOAD};
pub use thaw_guestfs::{normalize, TmpData, TmpError, TmpFs, TMP_DIR};

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
    /// `/run/thaw/socket`: each open is a new socket fd, given a host socket by
    /// the control request `SOCKET` (fds must come from `path_open`: the module's
    /// wasi-vfs layer forwards only descriptors it saw opened).
    Socket,
    /// `/run/thaw/net`: the socket control file (write a request, read the reply).
    NetControl,
}

/// Names of the `/run/thaw` files, as listed.
const SPECIAL_NAMES: [&str; 9] = [
    "next",
    "event",
    "response",
    "error",
    "init_error",
    "runtime_ready",
    "function_ready",
    "socket",
    "net",
];

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
            "socket" => Self::Socket,
            "net" => Self::NetControl,
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

/// The read-only tree plus the `/run/thaw` files.
pub struct Tree {
    files: thaw_guestfs::Tree<'static>,
}

impl Tree {
    /// Builds the tree from a `thaw_abi::files` archive; names are paths relative to `/`.
    pub fn from_archive(archive: &'static [u8]) -> Self {
        Self {
            files: thaw_guestfs::Tree::from_archive(archive),
        }
    }

    /// Looks up an absolute, normalized path.
    pub fn lookup(&self, path: &str) -> Option<Node> {
        if let Some(name) = path.strip_prefix(RUN_DIR).and_then(|r| r.strip_prefix('/')) {
            return Special::from_name(name).map(Node::Special);
        }
        if path == RUN_DIR || path == "/run" {
            return Some(Node::Dir);
        }
        match self.files.lookup(path)? {
            thaw_guestfs::Entry::File(data) => Some(Node::File(data)),
            thaw_guestfs::Entry::Dir => Some(Node::Dir),
        }
    }

    /// Names directly inside directory `dir`, with whether each is a directory.
    pub fn list(&self, dir: &str) -> Vec<(String, bool)> {
        if dir == RUN_DIR {
            return SPECIAL_NAMES
                .iter()
                .map(|n| (String::from(*n), false))
                .collect();
        }
        let mut out = self.files.list(dir).map(<[_]>::to_vec).unwrap_or_default();
        if dir == "/" && !out.iter().any(|(n, _)| n == "run") {
            out.push((String::from("run"), true));
            out.sort();
        }
        if dir == "/run" && out.is_empty() {
            out.push((String::from("thaw"), true));
        }
        out
    }
}

/// A writer into the shared response area for `/run/thaw/{response,error,init_error}`.
pub struct Sink {
    pub kind: ResponseKind,
    pub len: u64,
}

impl Sink {
    /// Appends bytes; bytes past the area are counted but dropped.
    pub fn write(&mut self, data: &[u8]) {
        crate::hc::write_response(self.len as usize, data);
        self.len += data.len() as u64;
    }

    /// Hands the body to the VMM (with the next `Next`; init errors at once).
    pub fn send(self) {
        let truncated = self.len > MAX_PAYLOAD;
        let len = self.len.min(layout::RESPONSE_SIZE);
        if self.kind == ResponseKind::InitError {
            crate::hc::respond(self.kind, len, truncated, crate::log::pending());
            crate::log::taken();
        } else {
            crate::hc::queue_response(self.kind, len, truncated);
        }
    }
}
