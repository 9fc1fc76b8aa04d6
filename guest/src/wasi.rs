//! WASI preview 1 for the guest: enough of `wasi_snapshot_preview1` for CPython.
//! Files come from the read-only [`Tree`] and the writable `/tmp` ([`TmpFs`]);
//! stdout/stderr go to the invocation log;
//! clocks come from the TSC; `random_get` from the reseeded CSPRNG. Every pointer
//! the module passes is checked against its linear memory (bad ones get `EFAULT`).
use crate::memory::Budget;
use crate::net;
use crate::vfs::{normalize, Node, Sink, Special, TmpData, TmpError, TmpFs, Tree};
use alloc::string::String;
use alloc::vec::Vec;
use wasmtime::{Caller, Linker, Memory};

/// WASI errno values.
mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const EXIST: i32 = 20;
    pub const FAULT: i32 = 21;
    pub const INVAL: i32 = 28;
    pub const ISDIR: i32 = 31;
    pub const NOENT: i32 = 44;
    pub const NOSPC: i32 = 51;
    pub const NOTDIR: i32 = 54;
    pub const NOTEMPTY: i32 = 55;
    pub const NOSYS: i32 = 52;
    pub const NOTSUP: i32 = 58;
    pub const ROFS: i32 = 69;
    pub const SPIPE: i32 = 70;
}

const FILETYPE_CHAR: u8 = 2;
const FILETYPE_DIR: u8 = 3;
const FILETYPE_FILE: u8 = 4;
const FILETYPE_SOCKET_STREAM: u8 = 6;
const OFLAG_CREAT: i32 = 1;
const OFLAG_DIRECTORY: i32 = 2;
const OFLAG_EXCL: i32 = 4;
const OFLAG_TRUNC: i32 = 8;
const FDFLAG_APPEND: i32 = 1;
const RIGHT_FD_WRITE: i64 = 1 << 6;

/// Directories preopened for the module (fd 3, 4, ...).
const PREOPENS: [&str; 4] = [
    "/var/task",
    "/var/runtime",
    crate::vfs::RUN_DIR,
    crate::vfs::TMP_DIR,
];

fn tmp_errno(e: TmpError) -> i32 {
    match e {
        TmpError::NotFound => errno::NOENT,
        TmpError::Exists => errno::EXIST,
        TmpError::NotDir => errno::NOTDIR,
        TmpError::IsDir => errno::ISDIR,
        TmpError::NotEmpty => errno::NOTEMPTY,
        TmpError::Invalid => errno::INVAL,
    }
}

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
    pub limits: crate::memory::Budget,
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
    /// Builds the state from the files tree, argv and environment.
    pub fn new(
        tree: Tree,
        args: Vec<Vec<u8>>,
        env: Vec<Vec<u8>>,
        limits: crate::memory::Budget,
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

/// Checked access to the module's linear memory.
struct Mem<'a>(&'a mut [u8]);

impl Mem<'_> {
    fn range(&self, ptr: i32, len: usize) -> Result<core::ops::Range<usize>, i32> {
        let start = ptr as u32 as usize;
        let end = start.checked_add(len).ok_or(errno::FAULT)?;
        if end > self.0.len() {
            return Err(errno::FAULT);
        }
        Ok(start..end)
    }
    fn bytes(&self, ptr: i32, len: usize) -> Result<&[u8], i32> {
        Ok(&self.0[self.range(ptr, len)?])
    }
    fn bytes_mut(&mut self, ptr: i32, len: usize) -> Result<&mut [u8], i32> {
        let r = self.range(ptr, len)?;
        Ok(&mut self.0[r])
    }
    /// The guest address of `len` bytes at `ptr` (guest virtual = physical, so
    /// the VMM can fill or read linear memory in place).
    fn addr(&mut self, ptr: i32, len: usize) -> Result<u64, i32> {
        let r = self.range(ptr, len)?;
        Ok(self.0.as_mut_ptr() as u64 + r.start as u64)
    }
    fn u32(&self, ptr: i32) -> Result<u32, i32> {
        let b = self.bytes(ptr, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn put(&mut self, ptr: i32, data: &[u8]) -> Result<(), i32> {
        self.bytes_mut(ptr, data.len())?.copy_from_slice(data);
        Ok(())
    }
    fn put_u32(&mut self, ptr: i32, v: u32) -> Result<(), i32> {
        self.put(ptr, &v.to_le_bytes())
    }
    fn put_u64(&mut self, ptr: i32, v: u64) -> Result<(), i32> {
        self.put(ptr, &v.to_le_bytes())
    }
    /// The `(ptr, len)` pairs of an iovec array.
    fn iovecs(&self, iovs: i32, count: i32) -> Result<Vec<(i32, usize)>, i32> {
        (0..count.max(0))
            .map(|i| {
                let at = iovs.wrapping_add(i * 8);
                Ok((self.u32(at)? as i32, self.u32(at.wrapping_add(4))? as usize))
            })
            .collect()
    }
}

/// Runs `f` with checked memory and the context.
fn with<R>(
    caller: &mut Caller<'_, Ctx>,
    f: impl FnOnce(&mut Mem<'_>, &mut Ctx) -> Result<R, i32>,
) -> Result<R, i32> {
    let memory = caller.data().memory.ok_or(errno::FAULT)?;
    let (data, ctx) = memory.data_and_store_mut(caller);
    f(&mut Mem(data), ctx)
}

fn code(r: Result<(), i32>) -> i32 {
    match r {
        Ok(()) => errno::SUCCESS,
        Err(e) => e,
    }
}

/// Writes a 64-byte filestat.
fn filestat(mem: &mut Mem<'_>, at: i32, filetype: u8, size: u64, ino: u64) -> Result<(), i32> {
    let mut st = [0u8; 64];
    st[8..16].copy_from_slice(&ino.to_le_bytes());
    st[16] = filetype;
    st[24..32].copy_from_slice(&1u64.to_le_bytes());
    st[32..40].copy_from_slice(&size.to_le_bytes());
    mem.put(at, &st)
}

fn inode(path: &str) -> u64 {
    path.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Size/array pairs for `args_*` and `environ_*`.
fn strings_sizes(
    mem: &mut Mem<'_>,
    list: &[Vec<u8>],
    count_at: i32,
    size_at: i32,
) -> Result<(), i32> {
    mem.put_u32(count_at, list.len() as u32)?;
    mem.put_u32(size_at, list.iter().map(|s| s.len() as u32).sum())
}

fn strings_get(mem: &mut Mem<'_>, list: &[Vec<u8>], ptrs: i32, buf: i32) -> Result<(), i32> {
    let mut at = buf;
    for (i, s) in list.iter().enumerate() {
        mem.put_u32(ptrs.wrapping_add(i as i32 * 4), at as u32)?;
        mem.put(at, s)?;
        at = at.wrapping_add(s.len() as i32);
    }
    Ok(())
}

/// Resolves `path` relative to directory fd `dirfd`.
fn resolve(mem: &Mem<'_>, ctx: &mut Ctx, dirfd: i32, ptr: i32, len: i32) -> Result<String, i32> {
    let Handle::Dir(base) = ctx.handle(dirfd)? else {
        return Err(errno::NOTDIR);
    };
    let base = base.clone();
    let rel = core::str::from_utf8(mem.bytes(ptr, len as usize)?).map_err(|_| errno::INVAL)?;
    normalize(&base, rel).ok_or(errno::NOENT)
}

/// Whether `path` names anything.
fn exists(ctx: &Ctx, path: &str) -> bool {
    if TmpFs::covers(path) {
        return ctx.tmp.is_dir(path) || ctx.tmp.file(path).is_some();
    }
    ctx.tree.lookup(path).is_some()
}

/// Opens (or creates) `path` in `/tmp`.
fn open_tmp(
    ctx: &mut Ctx,
    path: String,
    oflags: i32,
    fdflags: i32,
    write: bool,
) -> Result<Handle, i32> {
    if ctx.tmp.is_dir(&path) {
        return if write {
            Err(errno::ISDIR)
        } else {
            Ok(Handle::Dir(path))
        };
    }
    if oflags & OFLAG_DIRECTORY != 0 {
        return Err(if ctx.tmp.file(&path).is_some() {
            errno::NOTDIR
        } else {
            errno::NOENT
        });
    }
    let data = match ctx.tmp.file(&path) {
        Some(_) if oflags & OFLAG_CREAT != 0 && oflags & OFLAG_EXCL != 0 => {
            return Err(errno::EXIST)
        }
        Some(data) => data,
        None if oflags & OFLAG_CREAT != 0 => ctx.tmp.create(&path).map_err(tmp_errno)?,
        None => return Err(errno::NOENT),
    };
    if oflags & OFLAG_TRUNC != 0 {
        data.borrow_mut().clear();
    }
    Ok(Handle::Tmp {
        data,
        pos: 0,
        append: fdflags & FDFLAG_APPEND != 0,
    })
}

/// Writes `bytes` into a `/tmp` file at `at`, zero-filling any gap, within the
/// limits (EphemeralStorage, MemorySize).
fn write_tmp(
    tmp: &TmpFs,
    budget: &Budget,
    data: &TmpData,
    at: u64,
    bytes: &[u8],
) -> Result<u64, i32> {
    let at = usize::try_from(at).map_err(|_| errno::NOSPC)?;
    let end = at.checked_add(bytes.len()).ok_or(errno::NOSPC)?;
    grow_tmp(tmp, budget, data, end)?;
    data.borrow_mut()[at..end].copy_from_slice(bytes);
    Ok(end as u64)
}

/// Makes a `/tmp` file at least `size` bytes long (zero-filled), or `ENOSPC` when
/// that passes `/tmp`'s limit, the function's MemorySize or the memory there is.
fn grow_tmp(tmp: &TmpFs, budget: &Budget, data: &TmpData, size: usize) -> Result<(), i32> {
    let len = data.borrow().len();
    if size <= len {
        return Ok(());
    }
    let extra = size - len;
    if !tmp.has_room(extra) || !budget.fits(extra) {
        return Err(errno::NOSPC);
    }
    let mut d = data.borrow_mut();
    // Amortised growth where memory allows, else exactly what is asked.
    if d.try_reserve(extra).is_err() && d.try_reserve_exact(extra).is_err() {
        return Err(errno::NOSPC);
    }
    d.resize(size, 0);
    Ok(())
}

/// Opens `path`; the special files act on open (see `vfs`).
fn open(
    ctx: &mut Ctx,
    path: String,
    oflags: i32,
    fdflags: i32,
    rights: i64,
) -> Result<Handle, i32> {
    let write = rights & RIGHT_FD_WRITE != 0 || oflags & (OFLAG_CREAT | OFLAG_TRUNC) != 0;
    if TmpFs::covers(&path) {
        return open_tmp(ctx, path, oflags, fdflags, write);
    }
    match ctx.tree.lookup(&path) {
        Some(Node::Special(s)) => {
            if let Some(kind) = s.response_kind() {
                return Ok(Handle::Sink(Sink { kind, len: 0 }));
            }
            let data: &'static [u8] = match s {
                Special::Next => {
                    let next = crate::hc::next(crate::log::pending());
                    crate::log::taken();
                    crate::clock::set_anchor(next.clock);
                    crate::rng::reseed(&next.seed);
                    if next.restored {
                        // Sockets of the snapshotted VM do not exist in this one.
                        for h in ctx.fds.iter_mut().flatten() {
                            if let Handle::Socket(sock) = h {
                                sock.dead = true;
                            }
                        }
                    }
                    let cap = thaw_abi::layout::REQUEST_PAYLOAD_OFFSET;
                    ctx.current = (
                        next.header_len.min(cap),
                        next.payload_len.min(thaw_abi::MAX_PAYLOAD),
                    );
                    &crate::hc::request_area()[..ctx.current.0 as usize]
                }
                Special::Event => {
                    let at = thaw_abi::layout::REQUEST_PAYLOAD_OFFSET as usize;
                    &crate::hc::request_area()[at..at + ctx.current.1 as usize]
                }
                Special::Phase(id) => {
                    crate::hc::phase(id);
                    &[]
                }
                Special::NetControl => return Ok(Handle::NetControl(Vec::new())),
                Special::Socket => {
                    ctx.next_token += 1;
                    return Ok(Handle::Socket(net::Sock::unbound(ctx.next_token)));
                }
                _ => return Err(errno::INVAL),
            };
            Ok(Handle::File { data, pos: 0 })
        }
        Some(Node::Dir) if write => Err(errno::ISDIR),
        Some(Node::Dir) => Ok(Handle::Dir(path)),
        Some(Node::File(_)) if oflags & OFLAG_DIRECTORY != 0 => Err(errno::NOTDIR),
        Some(Node::File(_)) if write => Err(errno::ROFS),
        Some(Node::File(data)) => Ok(Handle::File { data, pos: 0 }),
        None if oflags & OFLAG_CREAT != 0 => Err(errno::ROFS),
        None => Err(errno::NOENT),
    }
}

/// Registers every import of `wasi_snapshot_preview1` CPython uses.
pub fn add_to_linker(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    const M: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        M,
        "args_sizes_get",
        |mut c: Caller<'_, Ctx>, n: i32, s: i32| {
            code(with(&mut c, |m, ctx| strings_sizes(m, &ctx.args, n, s)))
        },
    )?;
    linker.func_wrap(M, "args_get", |mut c: Caller<'_, Ctx>, p: i32, b: i32| {
        code(with(&mut c, |m, ctx| strings_get(m, &ctx.args, p, b)))
    })?;
    linker.func_wrap(
        M,
        "environ_sizes_get",
        |mut c: Caller<'_, Ctx>, n: i32, s: i32| {
            code(with(&mut c, |m, ctx| strings_sizes(m, &ctx.env, n, s)))
        },
    )?;
    linker.func_wrap(
        M,
        "environ_get",
        |mut c: Caller<'_, Ctx>, p: i32, b: i32| {
            code(with(&mut c, |m, ctx| strings_get(m, &ctx.env, p, b)))
        },
    )?;
    linker.func_wrap(
        M,
        "clock_res_get",
        |mut c: Caller<'_, Ctx>, _id: i32, out: i32| code(with(&mut c, |m, _| m.put_u64(out, 1))),
    )?;
    linker.func_wrap(
        M,
        "clock_time_get",
        |mut c: Caller<'_, Ctx>, id: i32, _prec: i64, out: i32| {
            let now = if id == 0 {
                crate::clock::realtime_ns()
            } else {
                crate::clock::monotonic_ns()
            };
            code(with(&mut c, |m, _| m.put_u64(out, now)))
        },
    )?;
    linker.func_wrap(
        M,
        "random_get",
        |mut c: Caller<'_, Ctx>, buf: i32, len: i32| {
            code(with(&mut c, |m, _| {
                crate::rng::fill(m.bytes_mut(buf, len as u32 as usize)?);
                Ok(())
            }))
        },
    )?;
    linker.func_wrap(M, "sched_yield", || errno::SUCCESS)?;
    linker.func_wrap(M, "proc_exit", |code: i32| -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(Exit(code)))
    })?;
    linker.func_wrap(
        M,
        "poll_oneoff",
        |mut c: Caller<'_, Ctx>, subs: i32, events: i32, n: i32, out: i32| {
            code(with(&mut c, |m, ctx| {
                poll_oneoff(m, ctx, subs, events, n, out)
            }))
        },
    )?;
    add_fd_calls(linker)?;
    add_path_calls(linker)?;
    for name in ["sock_accept", "sock_recv", "sock_send", "sock_shutdown"] {
        let ty = wasmtime::FuncType::new(
            linker.engine(),
            core::iter::repeat_n(wasmtime::ValType::I32, sock_arity(name)),
            [wasmtime::ValType::I32],
        );
        linker.func_new(M, name, ty, |_, _, results| {
            results[0] = wasmtime::Val::I32(errno::NOTSUP);
            Ok(())
        })?;
    }
    Ok(())
}

fn sock_arity(name: &str) -> usize {
    match name {
        "sock_accept" => 3,
        "sock_recv" => 6,
        "sock_send" => 5,
        _ => 2,
    }
}

/// `poll_oneoff`: clocks (sleep), and readiness of fds: sockets are polled on the
/// host (one `POLL` that also sleeps until the earliest clock), every other fd is
/// always ready. Without a network host the guest spins on the TSC instead.
///
/// Steps:
/// 1. Read the subscriptions: the earliest clock deadline, socket entries, and
///    fds that are ready at once (files, dead sockets, bad fds with an error).
/// 2. Wait: on the host when there are sockets or a clock (nothing ready yet),
///    else not at all.
/// 3. Report the clocks that expired and the fds that are ready.
fn poll_oneoff(
    m: &mut Mem<'_>,
    ctx: &mut Ctx,
    subs: i32,
    events: i32,
    n: i32,
    out: i32,
) -> Result<(), i32> {
    if n <= 0 {
        return Err(errno::INVAL);
    }
    const CLOCK: u8 = 0;
    const FD_READ: u8 = 1;
    const FD_WRITE: u8 = 2;
    // 1. Subscriptions: (userdata, tag, clock deadline or fd readiness).
    struct Sub {
        userdata: u64,
        tag: u8,
        deadline: u64,
        entry: Option<usize>,
        error: u16,
        ready: bool,
    }
    let now = crate::clock::monotonic_ns();
    let mut wake: Option<u64> = None;
    let mut list: Vec<Sub> = Vec::with_capacity(n as usize);
    let mut entries: Vec<thaw_abi::net::PollEntry> = Vec::new();
    for i in 0..n {
        let s = m.bytes(subs.wrapping_add(i.wrapping_mul(48)), 48)?;
        let userdata = u64::from_le_bytes(s[..8].try_into().map_err(|_| errno::FAULT)?);
        let tag = s[8];
        let mut sub = Sub {
            userdata,
            tag,
            deadline: 0,
            entry: None,
            error: 0,
            ready: false,
        };
        match tag {
            CLOCK => {
                let timeout = u64::from_le_bytes(s[24..32].try_into().map_err(|_| errno::FAULT)?);
                let abs = u16::from_le_bytes([s[40], s[41]]) & 1 != 0;
                sub.deadline = if abs {
                    timeout
                } else {
                    now.saturating_add(timeout)
                };
                wake = Some(wake.map_or(sub.deadline, |w: u64| w.min(sub.deadline)));
            }
            FD_READ | FD_WRITE => {
                let fd = u32::from_le_bytes(s[16..20].try_into().map_err(|_| errno::FAULT)?);
                match ctx.handle(fd as i32) {
                    Ok(Handle::Socket(net::Sock {
                        host: Some(host),
                        dead: false,
                        ..
                    })) => {
                        let handle = *host;
                        sub.entry = Some(entries.len());
                        entries.push(thaw_abi::net::PollEntry {
                            handle,
                            events: if tag == FD_READ {
                                thaw_abi::net::POLLIN
                            } else {
                                thaw_abi::net::POLLOUT
                            },
                            revents: 0,
                        });
                    }
                    Ok(_) => sub.ready = true,
                    Err(e) => {
                        sub.ready = true;
                        sub.error = e as u16;
                    }
                }
            }
            _ => {
                sub.ready = true;
                sub.error = errno::INVAL as u16;
            }
        }
        list.push(sub);
    }
    // 2. Wait.
    let any_ready = list.iter().any(|s| s.ready);
    let deadline = if any_ready { Some(now) } else { wake };
    if !entries.is_empty() || (deadline.is_some() && !any_ready) {
        match net::poll(&mut entries, deadline) {
            Ok(_) => {}
            Err(e) if e == net::wasi::NOSYS && entries.is_empty() => {
                while deadline.is_some_and(|d| crate::clock::monotonic_ns() < d) {
                    core::hint::spin_loop();
                }
            }
            Err(e) => return Err(e),
        }
    }
    // 3. Events.
    let now = crate::clock::monotonic_ns();
    let mut count = 0i32;
    for sub in &list {
        let (ready, flags) = match (sub.tag, sub.entry) {
            (CLOCK, _) => (now >= sub.deadline, 0u16),
            (_, Some(i)) => {
                let r = entries[i].revents;
                let hup = r & thaw_abi::net::POLLHUP != 0;
                (r != 0, u16::from(hup))
            }
            _ => (sub.ready, 0),
        };
        if !ready {
            continue;
        }
        let mut ev = [0u8; 32];
        ev[..8].copy_from_slice(&sub.userdata.to_le_bytes());
        ev[8..10].copy_from_slice(&sub.error.to_le_bytes());
        ev[10] = sub.tag;
        if sub.tag != CLOCK {
            ev[16..24].copy_from_slice(&1u64.to_le_bytes());
            ev[24..26].copy_from_slice(&flags.to_le_bytes());
        }
        m.put(events.wrapping_add(count.wrapping_mul(32)), &ev)?;
        count += 1;
    }
    m.put_u32(out, count as u32)
}

/// Sends the iovecs to a socket (stops at the first short send).
fn write_socket(m: &mut Mem<'_>, sock: &net::Sock, iovs: i32, n: i32, out: i32) -> Result<(), i32> {
    let mut total = 0usize;
    for (p, len) in m.iovecs(iovs, n)? {
        if len == 0 {
            continue;
        }
        let addr = m.addr(p, len)?;
        match net::send(sock, addr, len) {
            Ok(k) => {
                total += k;
                if k < len {
                    break;
                }
            }
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        }
    }
    m.put_u32(out, total as u32)
}

/// Serves one request written to `/run/thaw/net` (see `net`); returns the reply.
fn control(ctx: &mut Ctx, bytes: &[u8]) -> Vec<u8> {
    use thaw_abi::net::op;
    let Some(req) = net::Request::parse(bytes) else {
        return net::reply(-i64::from(errno::INVAL), b"short network request", &[]);
    };
    match req.op {
        op::SOCKET | op::SOCKETPAIR => {
            // SOCKET binds a socket fd to a new host socket; SOCKETPAIR binds the
            // sockets named by the token and a0 to the two ends of a pair.
            let second = (req.op == op::SOCKETPAIR).then_some(req.args[0]);
            for token in core::iter::once(req.token).chain(second) {
                match ctx.socket(token) {
                    Ok(s) if s.host.is_none() => {}
                    Ok(_) => return net::reply(-i64::from(net::wasi::ISCONN), &[], &[]),
                    Err(e) => return net::reply(-i64::from(e), &[], &[]),
                }
            }
            if second == Some(req.token) {
                return net::reply(-i64::from(errno::INVAL), &[], &[]);
            }
            let tokens = (req.token, second.unwrap_or(0));
            match net::create(req.op, req.args, tokens) {
                Ok((a, b)) => {
                    if let Ok(s) = ctx.socket(req.token) {
                        *s = a;
                    }
                    if let (Some(token), Some(b)) = (second, b) {
                        if let Ok(s) = ctx.socket(token) {
                            *s = b;
                        }
                    }
                    net::reply(0, &[], &[])
                }
                Err((r, msg)) => net::reply(r, &msg, &[]),
            }
        }
        op::RESOLVE => net::resolve(&req),
        net::CTL_SETTIMEOUT => match ctx.socket(req.token) {
            Ok(sock) => {
                sock.timeout_ns = match req.args[0] {
                    u64::MAX => None,
                    us => Some(us.saturating_mul(1000)),
                };
                net::reply(0, &[], &[])
            }
            Err(e) => net::reply(-i64::from(e), &[], &[]),
        },
        code => match (net::passthrough(code, &req.args), ctx.socket(req.token)) {
            (Some(cap), Ok(sock)) => {
                let sock = *sock;
                net::run(&sock, &req, cap)
            }
            (Some(_), Err(e)) => net::reply(-i64::from(e), &[], &[]),
            (None, _) => net::reply(-i64::from(errno::NOSYS), b"unknown network request", &[]),
        },
    }
}

fn add_fd_calls(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    const M: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        M,
        "fd_write",
        |mut c: Caller<'_, Ctx>, fd: i32, iovs: i32, n: i32, out: i32| {
            code(with(&mut c, |m, ctx| {
                match ctx.handle(fd)? {
                    Handle::Socket(sock) => {
                        let sock = *sock;
                        return write_socket(m, &sock, iovs, n, out);
                    }
                    Handle::NetControl(_) => {
                        let mut request = Vec::new();
                        for (p, len) in m.iovecs(iovs, n)? {
                            request.extend_from_slice(m.bytes(p, len)?);
                        }
                        let reply = control(ctx, &request);
                        if let Handle::NetControl(r) = ctx.handle(fd)? {
                            *r = reply;
                        }
                        return m.put_u32(out, request.len() as u32);
                    }
                    _ => {}
                }
                let mut total = 0u32;
                for (p, len) in m.iovecs(iovs, n)? {
                    let data = m.bytes(p, len)?;
                    let Ctx {
                        fds, tmp, limits, ..
                    } = &mut *ctx;
                    match fds
                        .get_mut(fd as usize)
                        .and_then(|h| h.as_mut())
                        .ok_or(errno::BADF)?
                    {
                        Handle::Log => crate::log::write(data),
                        Handle::Sink(s) => s.write(data),
                        Handle::Tmp {
                            data: file,
                            pos,
                            append,
                        } => {
                            let at = if *append {
                                file.borrow().len() as u64
                            } else {
                                *pos
                            };
                            match write_tmp(tmp, limits, file, at, data) {
                                Ok(end) => *pos = end,
                                // A partial write reports what went in; the next one fails.
                                Err(e) if total == 0 => return Err(e),
                                Err(_) => break,
                            }
                        }
                        Handle::Dir(_) => return Err(errno::ISDIR),
                        _ => return Err(errno::BADF),
                    }
                    total += len as u32;
                }
                m.put_u32(out, total)
            }))
        },
    )?;
    linker.func_wrap(
        M,
        "fd_read",
        |mut c: Caller<'_, Ctx>, fd: i32, iovs: i32, n: i32, out: i32| {
            code(with(&mut c, |m, ctx| read(m, ctx, fd, iovs, n, None, out)))
        },
    )?;
    linker.func_wrap(
        M,
        "fd_pread",
        |mut c: Caller<'_, Ctx>, fd: i32, iovs: i32, n: i32, off: i64, out: i32| {
            code(with(&mut c, |m, ctx| {
                read(m, ctx, fd, iovs, n, Some(off as u64), out)
            }))
        },
    )?;
    linker.func_wrap(M, "fd_close", |mut c: Caller<'_, Ctx>, fd: i32| {
        let ctx = c.data_mut();
        match ctx.fds.get_mut(fd as usize).and_then(Option::take) {
            Some(Handle::Sink(s)) => {
                s.send();
                errno::SUCCESS
            }
            Some(Handle::Socket(sock)) => {
                net::close(&sock);
                errno::SUCCESS
            }
            Some(_) => errno::SUCCESS,
            None => errno::BADF,
        }
    })?;
    linker.func_wrap(
        M,
        "fd_seek",
        |mut c: Caller<'_, Ctx>, fd: i32, off: i64, whence: i32, out: i32| {
            code(with(&mut c, |m, ctx| {
                let pos = match ctx.handle(fd)? {
                    Handle::File { data, pos } => seek(pos, data.len(), off, whence)?,
                    Handle::Tmp { data, pos, .. } => {
                        let len = data.borrow().len();
                        seek(pos, len, off, whence)?
                    }
                    Handle::Sink(s) => s.len,
                    Handle::Dir(_) => return Err(errno::ISDIR),
                    _ => return Err(errno::SPIPE),
                };
                m.put_u64(out, pos)
            }))
        },
    )?;
    linker.func_wrap(M, "fd_tell", |mut c: Caller<'_, Ctx>, fd: i32, out: i32| {
        code(with(&mut c, |m, ctx| {
            let pos = match ctx.handle(fd)? {
                Handle::File { pos, .. } | Handle::Tmp { pos, .. } => *pos,
                Handle::Sink(s) => s.len,
                _ => return Err(errno::SPIPE),
            };
            m.put_u64(out, pos)
        }))
    })?;
    linker.func_wrap(
        M,
        "fd_fdstat_get",
        |mut c: Caller<'_, Ctx>, fd: i32, out: i32| {
            code(with(&mut c, |m, ctx| {
                let (ty, rights) = match ctx.handle(fd)? {
                    Handle::Stdin | Handle::Log => (FILETYPE_CHAR, u64::MAX),
                    Handle::Dir(_) => (FILETYPE_DIR, u64::MAX),
                    Handle::File { .. }
                    | Handle::Sink(_)
                    | Handle::Tmp { .. }
                    | Handle::NetControl(_) => (FILETYPE_FILE, u64::MAX),
                    Handle::Socket(_) => (FILETYPE_SOCKET_STREAM, u64::MAX),
                };
                let append = matches!(ctx.handle(fd)?, Handle::Tmp { append: true, .. });
                let mut st = [0u8; 24];
                st[0] = ty;
                st[2] = u8::from(append);
                st[8..16].copy_from_slice(&rights.to_le_bytes());
                st[16..24].copy_from_slice(&rights.to_le_bytes());
                m.put(out, &st)
            }))
        },
    )?;
    linker.func_wrap(
        M,
        "fd_fdstat_set_flags",
        |mut c: Caller<'_, Ctx>, fd: i32, flags: i32| {
            code(c.data_mut().handle(fd).map(|h| {
                if let Handle::Tmp { append, .. } = h {
                    *append = flags & FDFLAG_APPEND != 0;
                }
            }))
        },
    )?;
    linker.func_wrap(
        M,
        "fd_filestat_get",
        |mut c: Caller<'_, Ctx>, fd: i32, out: i32| {
            code(with(&mut c, |m, ctx| {
                let (ty, size, ino) = match ctx.handle(fd)? {
                    Handle::Stdin | Handle::Log => (FILETYPE_CHAR, 0, fd as u64),
                    Handle::Dir(p) => (FILETYPE_DIR, 0, inode(p)),
                    Handle::File { data, .. } => {
                        (FILETYPE_FILE, data.len() as u64, data.as_ptr() as u64)
                    }
                    Handle::Sink(s) => (FILETYPE_FILE, s.len, 1),
                    Handle::Tmp { data, .. } => (
                        FILETYPE_FILE,
                        data.borrow().len() as u64,
                        data.as_ptr() as u64,
                    ),
                    Handle::Socket(sock) => (FILETYPE_SOCKET_STREAM, 0, sock.token),
                    Handle::NetControl(_) => (FILETYPE_FILE, 0, 2),
                };
                filestat(m, out, ty, size, ino)
            }))
        },
    )?;
    linker.func_wrap(
        M,
        "fd_prestat_get",
        |mut c: Caller<'_, Ctx>, fd: i32, out: i32| {
            code(with(&mut c, |m, _| {
                let dir = usize::try_from(fd - 3)
                    .ok()
                    .and_then(|i| PREOPENS.get(i))
                    .ok_or(errno::BADF)?;
                m.put_u32(out, 0)?;
                m.put_u32(out.wrapping_add(4), dir.len() as u32)
            }))
        },
    )?;
    linker.func_wrap(
        M,
        "fd_prestat_dir_name",
        |mut c: Caller<'_, Ctx>, fd: i32, buf: i32, len: i32| {
            code(with(&mut c, |m, _| {
                let dir = usize::try_from(fd - 3)
                    .ok()
                    .and_then(|i| PREOPENS.get(i))
                    .ok_or(errno::BADF)?;
                let n = dir.len().min(len as u32 as usize);
                m.put(buf, &dir.as_bytes()[..n])
            }))
        },
    )?;
    linker.func_wrap(
        M,
        "fd_readdir",
        |mut c: Caller<'_, Ctx>, fd: i32, buf: i32, len: i32, cookie: i64, out: i32| {
            code(with(&mut c, |m, ctx| {
                readdir(m, ctx, fd, buf, len, cookie as u64, out)
            }))
        },
    )?;
    linker.func_wrap(M, "fd_advise", |_: i32, _: i64, _: i64, _: i32| {
        errno::SUCCESS
    })?;
    linker.func_wrap(
        M,
        "fd_allocate",
        |mut c: Caller<'_, Ctx>, fd: i32, off: i64, len: i64| {
            let size = (off as u64).checked_add(len as u64);
            code(tmp_resize(c.data_mut(), fd, size, true))
        },
    )?;
    linker.func_wrap(M, "fd_datasync", |_: i32| errno::SUCCESS)?;
    linker.func_wrap(M, "fd_sync", |_: i32| errno::SUCCESS)?;
    linker.func_wrap(
        M,
        "fd_filestat_set_size",
        |mut c: Caller<'_, Ctx>, fd: i32, size: i64| {
            code(tmp_resize(c.data_mut(), fd, Some(size as u64), false))
        },
    )?;
    linker.func_wrap(
        M,
        "fd_filestat_set_times",
        |mut c: Caller<'_, Ctx>, fd: i32, _: i64, _: i64, _: i32| {
            code(match c.data_mut().handle(fd) {
                Ok(Handle::Tmp { .. } | Handle::Dir(_)) => Ok(()),
                Ok(_) => Err(errno::ROFS),
                Err(e) => Err(e),
            })
        },
    )?;
    linker.func_wrap(
        M,
        "fd_pwrite",
        |mut c: Caller<'_, Ctx>, fd: i32, iovs: i32, n: i32, off: i64, out: i32| {
            code(with(&mut c, |m, ctx| {
                let Ctx {
                    fds, tmp, limits, ..
                } = &mut *ctx;
                let Handle::Tmp { data: file, .. } = fds
                    .get_mut(fd as usize)
                    .and_then(|h| h.as_mut())
                    .ok_or(errno::BADF)?
                else {
                    return Err(errno::ROFS);
                };
                let mut at = off as u64;
                let mut total = 0u32;
                for (p, len) in m.iovecs(iovs, n)? {
                    at = write_tmp(tmp, limits, file, at, m.bytes(p, len)?)?;
                    total += len as u32;
                }
                m.put_u32(out, total)
            }))
        },
    )?;
    Ok(())
}

/// Sets a `/tmp` file's size (`grow_only`: `fd_allocate`, which never shrinks).
fn tmp_resize(ctx: &mut Ctx, fd: i32, size: Option<u64>, grow_only: bool) -> Result<(), i32> {
    let Ctx {
        fds, tmp, limits, ..
    } = ctx;
    let Handle::Tmp { data, .. } = fds
        .get_mut(fd as usize)
        .and_then(|h| h.as_mut())
        .ok_or(errno::BADF)?
    else {
        return Err(errno::ROFS);
    };
    let size = size
        .and_then(|s| usize::try_from(s).ok())
        .ok_or(errno::NOSPC)?;
    grow_tmp(tmp, limits, data, size)?;
    if !grow_only {
        let mut d = data.borrow_mut();
        d.truncate(size);
        d.shrink_to_fit();
    }
    Ok(())
}

/// Moves a file position as `fd_seek` asks (`whence`: set, current, end).
fn seek(pos: &mut u64, len: usize, off: i64, whence: i32) -> Result<u64, i32> {
    let base = match whence {
        0 => 0i64,
        1 => *pos as i64,
        2 => len as i64,
        _ => return Err(errno::INVAL),
    };
    let new = base
        .checked_add(off)
        .filter(|p| *p >= 0)
        .ok_or(errno::INVAL)?;
    *pos = new as u64;
    Ok(*pos)
}

fn read(
    m: &mut Mem<'_>,
    ctx: &mut Ctx,
    fd: i32,
    iovs: i32,
    n: i32,
    at: Option<u64>,
    out: i32,
) -> Result<(), i32> {
    let iov = m.iovecs(iovs, n)?;
    let file;
    let borrowed;
    let (data, pos): (&[u8], &mut u64) = match ctx.handle(fd)? {
        Handle::Stdin => return m.put_u32(out, 0),
        Handle::Socket(sock) => {
            let sock = *sock;
            let Some(&(p, len)) = iov.iter().find(|(_, len)| *len > 0) else {
                return m.put_u32(out, 0);
            };
            let addr = m.addr(p, len)?;
            let got = net::recv(&sock, addr, len)?;
            return m.put_u32(out, got as u32);
        }
        Handle::NetControl(reply) => {
            let reply = core::mem::take(reply);
            let mut done = 0usize;
            for (p, len) in iov {
                let k = len.min(reply.len() - done);
                m.put(p, &reply[done..done + k])?;
                done += k;
            }
            return m.put_u32(out, done as u32);
        }
        Handle::File { data, pos } => (*data, pos),
        Handle::Tmp { data, pos, .. } => {
            file = data.clone();
            borrowed = file.borrow();
            (&borrowed[..], pos)
        }
        Handle::Dir(_) => return Err(errno::ISDIR),
        _ => return Err(errno::BADF),
    };
    let mut cur = at.unwrap_or(*pos);
    let mut total = 0usize;
    for (p, len) in iov {
        let start = (cur as usize).min(data.len());
        let k = len.min(data.len() - start);
        m.put(p, &data[start..start + k])?;
        cur += k as u64;
        total += k;
        if k < len {
            break;
        }
    }
    if at.is_none() {
        *pos = cur;
    }
    m.put_u32(out, total as u32)
}

fn readdir(
    m: &mut Mem<'_>,
    ctx: &mut Ctx,
    fd: i32,
    buf: i32,
    len: i32,
    cookie: u64,
    out: i32,
) -> Result<(), i32> {
    let Handle::Dir(dir) = ctx.handle(fd)? else {
        return Err(errno::NOTDIR);
    };
    let dir = dir.clone();
    let mut entries = alloc::vec![(String::from("."), true), (String::from(".."), true)];
    if TmpFs::covers(&dir) {
        entries.extend(ctx.tmp.list(&dir));
    } else {
        entries.extend(ctx.tree.list(&dir));
        if dir == "/" {
            entries.push((String::from("tmp"), true));
        }
    }
    let mut bytes = Vec::new();
    for (i, (name, is_dir)) in entries.iter().enumerate().skip(cookie as usize) {
        let mut ent = [0u8; 24];
        ent[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        ent[8..16].copy_from_slice(&inode(name).to_le_bytes());
        ent[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
        ent[20] = if *is_dir { FILETYPE_DIR } else { FILETYPE_FILE };
        bytes.extend_from_slice(&ent);
        bytes.extend_from_slice(name.as_bytes());
        if bytes.len() >= len as usize {
            break;
        }
    }
    let n = bytes.len().min(len.max(0) as usize);
    m.put(buf, &bytes[..n])?;
    m.put_u32(out, n as u32)
}

/// Runs a `/tmp` tree operation on a path; elsewhere the tree is read-only.
fn tmp_op(
    m: &Mem<'_>,
    ctx: &mut Ctx,
    dirfd: i32,
    p: i32,
    pl: i32,
    op: fn(&mut TmpFs, &str) -> Result<(), TmpError>,
) -> Result<(), i32> {
    let path = resolve(m, ctx, dirfd, p, pl)?;
    if TmpFs::covers(&path) {
        return op(&mut ctx.tmp, &path).map_err(tmp_errno);
    }
    Err(if exists(ctx, &path) {
        errno::ROFS
    } else {
        errno::NOENT
    })
}

fn add_path_calls(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    const M: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        M,
        "path_open",
        |mut c: Caller<'_, Ctx>,
         dirfd: i32,
         _lf: i32,
         p: i32,
         pl: i32,
         oflags: i32,
         rights: i64,
         _ri: i64,
         fdflags: i32,
         out: i32| {
            code(with(&mut c, |m, ctx| {
                let path = resolve(m, ctx, dirfd, p, pl)?;
                if oflags & OFLAG_CREAT != 0 && oflags & OFLAG_EXCL != 0 && exists(ctx, &path) {
                    return Err(errno::EXIST);
                }
                let h = open(ctx, path, oflags, fdflags, rights)?;
                let fd = ctx.insert(h);
                m.put_u32(out, fd as u32)
            }))
        },
    )?;
    linker.func_wrap(
        M,
        "path_filestat_get",
        |mut c: Caller<'_, Ctx>, dirfd: i32, _f: i32, p: i32, pl: i32, out: i32| {
            code(with(&mut c, |m, ctx| {
                let path = resolve(m, ctx, dirfd, p, pl)?;
                if TmpFs::covers(&path) {
                    if ctx.tmp.is_dir(&path) {
                        return filestat(m, out, FILETYPE_DIR, 0, inode(&path));
                    }
                    let data = ctx.tmp.file(&path).ok_or(errno::NOENT)?;
                    let size = data.borrow().len() as u64;
                    return filestat(m, out, FILETYPE_FILE, size, data.as_ptr() as u64);
                }
                match ctx.tree.lookup(&path) {
                    Some(Node::File(d)) => {
                        filestat(m, out, FILETYPE_FILE, d.len() as u64, inode(&path))
                    }
                    Some(Node::Dir) => filestat(m, out, FILETYPE_DIR, 0, inode(&path)),
                    Some(Node::Special(_)) => filestat(m, out, FILETYPE_FILE, 0, inode(&path)),
                    None => Err(errno::NOENT),
                }
            }))
        },
    )?;
    linker.func_wrap(
        M,
        "path_readlink",
        |mut c: Caller<'_, Ctx>, dirfd: i32, p: i32, pl: i32, _b: i32, _bl: i32, _o: i32| {
            code(with(&mut c, |m, ctx| {
                let path = resolve(m, ctx, dirfd, p, pl)?;
                Err(if exists(ctx, &path) {
                    errno::INVAL
                } else {
                    errno::NOENT
                })
            }))
        },
    )?;
    type TreeOp = fn(&mut TmpFs, &str) -> Result<(), TmpError>;
    let tree_ops: [(&str, TreeOp); 3] = [
        ("path_create_directory", TmpFs::mkdir),
        ("path_remove_directory", TmpFs::rmdir),
        ("path_unlink_file", TmpFs::unlink),
    ];
    for (name, op) in tree_ops {
        linker.func_wrap(
            M,
            name,
            move |mut c: Caller<'_, Ctx>, dirfd: i32, p: i32, pl: i32| {
                code(with(&mut c, |m, ctx| tmp_op(m, ctx, dirfd, p, pl, op)))
            },
        )?;
    }
    linker.func_wrap(
        M,
        "path_filestat_set_times",
        |mut c: Caller<'_, Ctx>, dirfd: i32, _f: i32, p: i32, pl: i32, _: i64, _: i64, _: i32| {
            code(with(&mut c, |m, ctx| {
                let path = resolve(m, ctx, dirfd, p, pl)?;
                match (TmpFs::covers(&path), exists(ctx, &path)) {
                    (_, false) => Err(errno::NOENT),
                    (true, true) => Ok(()),
                    (false, true) => Err(errno::ROFS),
                }
            }))
        },
    )?;
    linker.func_wrap(
        M,
        "path_link",
        |_: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| errno::NOTSUP,
    )?;
    linker.func_wrap(
        M,
        "path_rename",
        |mut c: Caller<'_, Ctx>, fd: i32, p: i32, pl: i32, fd2: i32, p2: i32, pl2: i32| {
            code(with(&mut c, |m, ctx| {
                let from = resolve(m, ctx, fd, p, pl)?;
                let to = resolve(m, ctx, fd2, p2, pl2)?;
                match (TmpFs::covers(&from), TmpFs::covers(&to)) {
                    (true, true) => ctx.tmp.rename(&from, &to).map_err(tmp_errno),
                    (true, false) | (false, true) if !exists(ctx, &from) => Err(errno::NOENT),
                    // Across file systems, as rename(2) would say.
                    (true, false) | (false, true) => Err(18),
                    (false, false) => Err(if exists(ctx, &from) {
                        errno::ROFS
                    } else {
                        errno::NOENT
                    }),
                }
            }))
        },
    )?;
    linker.func_wrap(
        M,
        "path_symlink",
        |_: i32, _: i32, _: i32, _: i32, _: i32| errno::ROFS,
    )?;
    Ok(())
}
