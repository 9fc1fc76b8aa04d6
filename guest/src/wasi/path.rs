//! The `path_*` calls and opening files: resolving a path against a directory
//! fd, and what each kind of file (read-only tree, `/tmp`, the `/run/thaw`
//! special files, see `vfs`) does on open.
use super::tmp::{open_tmp, tmp_op, TreeOp};
use super::{with, Ctx, Handle};
use crate::net;
use crate::vfs::{normalize, Node, Sink, Special, TmpFs};
use alloc::string::String;
use alloc::vec::Vec;
use thaw_guest_wasi::records::{
    filestat, inode, FILETYPE_DIR, FILETYPE_FILE, OFLAG_CREAT, OFLAG_DIRECTORY, OFLAG_EXCL,
    OFLAG_TRUNC, RIGHT_FD_WRITE,
};
use thaw_guest_wasi::{errno, Mem};
use wasmtime::{Caller, Linker};

pub(super) fn add(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    register!(
        linker,
        path_open,
        path_filestat_get,
        path_readlink,
        path_create_directory,
        path_remove_directory,
        path_unlink_file,
        path_filestat_set_times,
        path_link,
        path_rename,
        path_symlink
    );
    Ok(())
}

/// Resolves `path` relative to directory fd `dirfd`.
fn resolve(mem: &Mem<'_>, ctx: &mut Ctx, dirfd: i32, ptr: i32, len: i32) -> Result<String, i32> {
    let Handle::Dir(base) = ctx.handle(dirfd)? else {
        return Err(errno::NOTDIR);
    };
    let base = base.clone();
    normalize(&base, mem.str(ptr, len as usize)?).ok_or(errno::NOENT)
}

/// Runs `f` with checked memory, the context and `path` resolved against
/// directory fd `dirfd`; returns its errno.
fn with_path(
    caller: &mut Caller<'_, Ctx>,
    dirfd: i32,
    p: i32,
    pl: i32,
    f: impl FnOnce(&mut Mem<'_>, &mut Ctx, String) -> Result<(), i32>,
) -> i32 {
    with(caller, |m, ctx| {
        let path = resolve(m, ctx, dirfd, p, pl)?;
        f(m, ctx, path)
    })
}

#[allow(clippy::too_many_arguments)] // The WASI signature.
fn path_open(
    mut caller: Caller<'_, Ctx>,
    dirfd: i32,
    _lookup_flags: i32,
    p: i32,
    pl: i32,
    oflags: i32,
    rights: i64,
    _inheriting: i64,
    fdflags: i32,
    out: i32,
) -> i32 {
    with_path(&mut caller, dirfd, p, pl, |m, ctx, path| {
        if oflags & OFLAG_CREAT != 0 && oflags & OFLAG_EXCL != 0 && ctx.exists(&path) {
            return Err(errno::EXIST);
        }
        let h = open(ctx, path, oflags, fdflags, rights)?;
        let fd = ctx.insert(h);
        m.put_u32(out, fd as u32)
    })
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
        Some(Node::Special(s)) => open_special(ctx, s),
        Some(Node::Dir) if write => Err(errno::ISDIR),
        Some(Node::Dir) => Ok(Handle::Dir(path)),
        Some(Node::File(_)) if oflags & OFLAG_DIRECTORY != 0 => Err(errno::NOTDIR),
        Some(Node::File(_)) if write => Err(errno::ROFS),
        Some(Node::File(data)) => Ok(Handle::File { data, pos: 0 }),
        None if oflags & OFLAG_CREAT != 0 => Err(errno::ROFS),
        None => Err(errno::NOENT),
    }
}

/// Opens a `/run/thaw` file.
fn open_special(ctx: &mut Ctx, s: Special) -> Result<Handle, i32> {
    if let Some(kind) = s.response_kind() {
        return Ok(Handle::Sink(Sink { kind, len: 0 }));
    }
    let data: &'static [u8] = match s {
        Special::Next => next_invocation(ctx),
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

/// `/run/thaw/next`: blocks in `Next` (handing over the log and any queued
/// response) and returns the new invocation's header.
fn next_invocation(ctx: &mut Ctx) -> &'static [u8] {
    let next = crate::hc::next(crate::log::pending(), crate::memory::used_bytes());
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

fn path_filestat_get(
    mut caller: Caller<'_, Ctx>,
    dirfd: i32,
    _flags: i32,
    p: i32,
    pl: i32,
    out: i32,
) -> i32 {
    with_path(&mut caller, dirfd, p, pl, |m, ctx, path| {
        if TmpFs::covers(&path) {
            if ctx.tmp.is_dir(&path) {
                return filestat(m, out, FILETYPE_DIR, 0, inode(&path));
            }
            let data = ctx.tmp.file(&path).ok_or(errno::NOENT)?;
            let size = data.borrow().len() as u64;
            return filestat(m, out, FILETYPE_FILE, size, data.as_ptr() as u64);
        }
        match ctx.tree.lookup(&path) {
            Some(Node::File(d)) => filestat(m, out, FILETYPE_FILE, d.len() as u64, inode(&path)),
            Some(Node::Dir) => filestat(m, out, FILETYPE_DIR, 0, inode(&path)),
            Some(Node::Special(_)) => filestat(m, out, FILETYPE_FILE, 0, inode(&path)),
            None => Err(errno::NOENT),
        }
    })
}

/// There are no symlinks: `EINVAL` for anything that exists.
fn path_readlink(
    mut caller: Caller<'_, Ctx>,
    dirfd: i32,
    p: i32,
    pl: i32,
    _buf: i32,
    _buf_len: i32,
    _out: i32,
) -> i32 {
    with_path(&mut caller, dirfd, p, pl, |_, ctx, path| {
        Err(if ctx.exists(&path) {
            errno::INVAL
        } else {
            errno::NOENT
        })
    })
}

fn tree_op(mut caller: Caller<'_, Ctx>, dirfd: i32, p: i32, pl: i32, op: TreeOp) -> i32 {
    with_path(&mut caller, dirfd, p, pl, |_, ctx, path| {
        tmp_op(ctx, &path, op)
    })
}

fn path_create_directory(caller: Caller<'_, Ctx>, dirfd: i32, p: i32, pl: i32) -> i32 {
    tree_op(caller, dirfd, p, pl, TmpFs::mkdir)
}

fn path_remove_directory(caller: Caller<'_, Ctx>, dirfd: i32, p: i32, pl: i32) -> i32 {
    tree_op(caller, dirfd, p, pl, TmpFs::rmdir)
}

fn path_unlink_file(caller: Caller<'_, Ctx>, dirfd: i32, p: i32, pl: i32) -> i32 {
    tree_op(caller, dirfd, p, pl, TmpFs::unlink)
}

#[allow(clippy::too_many_arguments)] // The WASI signature.
fn path_filestat_set_times(
    mut caller: Caller<'_, Ctx>,
    dirfd: i32,
    _flags: i32,
    p: i32,
    pl: i32,
    _atime: i64,
    _mtime: i64,
    _fst_flags: i32,
) -> i32 {
    with_path(&mut caller, dirfd, p, pl, |_, ctx, path| {
        match (TmpFs::covers(&path), ctx.exists(&path)) {
            (_, false) => Err(errno::NOENT),
            (true, true) => Ok(()),
            (false, true) => Err(errno::ROFS),
        }
    })
}

fn path_link(_: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32) -> i32 {
    errno::NOTSUP
}

fn path_rename(
    mut caller: Caller<'_, Ctx>,
    fd: i32,
    p: i32,
    pl: i32,
    fd2: i32,
    p2: i32,
    pl2: i32,
) -> i32 {
    with(&mut caller, |m, ctx| {
        let from = resolve(m, ctx, fd, p, pl)?;
        let to = resolve(m, ctx, fd2, p2, pl2)?;
        match (TmpFs::covers(&from), TmpFs::covers(&to)) {
            (true, true) => ctx.tmp.rename(&from, &to).map_err(errno::from_tmp),
            (true, false) | (false, true) if !ctx.exists(&from) => Err(errno::NOENT),
            // Across file systems, as rename(2) would say.
            (true, false) | (false, true) => Err(errno::XDEV),
            (false, false) => Err(if ctx.exists(&from) {
                errno::ROFS
            } else {
                errno::NOENT
            }),
        }
    })
}

fn path_symlink(_: i32, _: i32, _: i32, _: i32, _: i32) -> i32 {
    errno::ROFS
}
