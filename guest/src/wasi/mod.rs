//! WASI preview 1 for the guest: enough of `wasi_snapshot_preview1` for CPython.
//! Files come from the read-only [`Tree`] and the writable `/tmp` ([`TmpFs`]);
//! stdout/stderr go to the invocation log; clocks come from the TSC;
//! `random_get` from the reseeded CSPRNG. Every pointer the module passes is
//! checked against its linear memory (bad ones get `EFAULT`, see
//! [`thaw_guest_wasi::Mem`]).
//!
//! This module owns the per-store state ([`Ctx`], its file descriptors
//! ([`Handle`]) and [`Exit`]) and registers the calls; each call is a named
//! function in the submodule of its family:
//! [`fd`] (`fd_*`), [`path`] (`path_*`, opening files), [`tmp`] (`/tmp` writes),
//! [`poll`] (`poll_oneoff`, clocks, randomness), [`proc`] (argv, environment,
//! exit) and [`sock`] (sockets and the `/run/thaw/net` control file).
use crate::memory::Budget;
use crate::net;
use crate::vfs::{Sink, TmpData, TmpFs, Tree};
use alloc::string::String;
use alloc::vec::Vec;
use thaw_guest_wasi::{errno, Mem};
use wasmtime::{Caller, Linker, Memory};

/// Registers each named function under its own name in `wasi_snapshot_preview1`.
macro_rules! register {
    ($linker:expr, $($f:ident),+ $(,)?) => {
        $( $linker.func_wrap($crate::wasi::MODULE, stringify!($f), $f)?; )+
    };
}

mod fd;
mod path;
mod poll;
mod proc;
mod sock;
mod tmp;

/// The module name every call is registered under.
const MODULE: &str = "wasi_snapshot_preview1";

/// Directories preopened for the module (fd 3, 4, ...).
const PREOPENS: [&str; 4] = [
    "/var/task",
    "/var/runtime",
    crate::vfs::RUN_DIR,
    crate::vfs::TMP_DIR,
];

/// An open file descriptor.
enum Handle {
    Stdin,
    Log,
    Dir(String),
    File {
        data: &'static [u8],
        pos: u64,
    },
    Sink(Sink),
    /// A `/tmp` file.
    Tmp {
        data: TmpData,
        pos: u64,
        append: bool,
    },
    /// A socket (a host object, see `net`).
    Socket(net::Sock),
    /// `/run/thaw/net`: the reply to the last request written.
    NetControl(Vec<u8>),
}

/// Raised by `proc_exit` to unwind out of the module.
#[derive(Debug)]
pub struct Exit(pub i32);

impl core::fmt::Display for Exit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "exit({})", self.0)
    }
}

impl core::error::Error for Exit {}

/// Per-store WASI state.
pub struct Ctx {
    pub memory: Option<Memory>,
    pub limits: Budget,
    tree: Tree,
    tmp: TmpFs,
    fds: Vec<Option<Handle>>,
    args: Vec<Vec<u8>>,
    env: Vec<Vec<u8>>,
    /// Header and payload lengths of the current invocation.
    current: (u64, u64),
    /// The last socket token handed out (`net::Sock::token`).
    next_token: u64,
}

impl Ctx {
    /// Whether `path` names anything, in `/tmp` or the read-only tree.
    fn exists(&self, path: &str) -> bool {
        if TmpFs::covers(path) {
            return self.tmp.is_dir(path) || self.tmp.file(path).is_some();
        }
        self.tree.lookup(path).is_some()
    }

    /// Builds the state from the files tree, argv and environment.
    pub fn new(
        tree: Tree,
        args: Vec<Vec<u8>>,
        env: Vec<Vec<u8>>,
        limits: Budget,
        tmp_limit: usize,
    ) -> Self {
        let mut fds = alloc::vec![Some(Handle::Stdin), Some(Handle::Log), Some(Handle::Log)];
        fds.extend(PREOPENS.iter().map(|p| Some(Handle::Dir(String::from(*p)))));
        Self {
            memory: None,
            limits,
            tree,
            tmp: TmpFs::with_limit(tmp_limit),
            fds,
            args,
            env,
            current: (0, 0),
            next_token: 1 << 40,
        }
    }

    fn handle(&mut self, fd: i32) -> Result<&mut Handle, i32> {
        self.fds
            .get_mut(fd as usize)
            .and_then(|h| h.as_mut())
            .ok_or(errno::BADF)
    }

    /// The socket a control request names.
    fn socket(&mut self, token: u64) -> Result<&mut net::Sock, i32> {
        self.fds
            .iter_mut()
            .flatten()
            .find_map(|h| match h {
                Handle::Socket(s) if s.token == token => Some(s),
                _ => None,
            })
            .ok_or(errno::BADF)
    }

    fn insert(&mut self, h: Handle) -> i32 {
        if let Some(i) = self.fds.iter().position(|s| s.is_none()) {
            self.fds[i] = Some(h);
            return i as i32;
        }
        self.fds.push(Some(h));
        (self.fds.len() - 1) as i32
    }
}

/// Runs `f` with checked memory and the context; returns its errno.
fn with(
    caller: &mut Caller<'_, Ctx>,
    f: impl FnOnce(&mut Mem<'_>, &mut Ctx) -> Result<(), i32>,
) -> i32 {
    let Some(memory) = caller.data().memory else {
        return errno::FAULT;
    };
    let (data, ctx) = memory.data_and_store_mut(caller);
    errno::code(f(&mut Mem::new(data), ctx))
}

/// Registers every import of `wasi_snapshot_preview1` CPython uses.
pub fn add_to_linker(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    proc::add(linker)?;
    poll::add(linker)?;
    fd::add(linker)?;
    path::add(linker)?;
    sock::add(linker)
}
