//! The `fd_*` calls: reading, writing, seeking and describing open file
//! descriptors ([`Handle`]), the preopened directories and directory listings.
use super::sock::{read_socket, write_control, write_socket};
use super::tmp::{tmp_file, tmp_resize, write_tmp};
use super::{with, Ctx, Handle, PREOPENS};
use crate::net;
use alloc::string::String;
use thaw_guest_wasi::records::{
    dirents, fdstat, filestat, inode, prestat_dir, seek, FDFLAG_APPEND, FILETYPE_CHAR,
    FILETYPE_DIR, FILETYPE_FILE, FILETYPE_SOCKET_STREAM,
};
use thaw_guest_wasi::{errno, Mem};
use wasmtime::{Caller, Linker};

pub(super) fn add(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    register!(
        linker,
        fd_write,
        fd_read,
        fd_pread,
        fd_close,
        fd_seek,
        fd_tell,
        fd_fdstat_get,
        fd_fdstat_set_flags,
        fd_filestat_get,
        fd_prestat_get,
        fd_prestat_dir_name,
        fd_readdir,
        fd_advise,
        fd_allocate,
        fd_datasync,
        fd_sync,
        fd_filestat_set_size,
        fd_filestat_set_times,
        fd_pwrite
    );
    Ok(())
}

fn fd_write(mut caller: Caller<'_, Ctx>, fd: i32, iovs: i32, n: i32, out: i32) -> i32 {
    with(&mut caller, |m, ctx| match ctx.handle(fd)? {
        Handle::Socket(sock) => {
            let sock = *sock;
            write_socket(m, &sock, iovs, n, out)
        }
        Handle::NetControl(_) => write_control(m, ctx, fd, iovs, n, out),
        _ => write(m, ctx, fd, iovs, n, out),
    })
}

/// `fd_write` to the log, a response sink or a `/tmp` file (at its position, or
/// its end when appending).
fn write(m: &mut Mem<'_>, ctx: &mut Ctx, fd: i32, iovs: i32, n: i32, out: i32) -> Result<(), i32> {
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
}

fn fd_pwrite(mut caller: Caller<'_, Ctx>, fd: i32, iovs: i32, n: i32, off: i64, out: i32) -> i32 {
    with(&mut caller, |m, ctx| {
        let (file, tmp, limits) = tmp_file(ctx, fd)?;
        let mut at = off as u64;
        let mut total = 0u32;
        for (p, len) in m.iovecs(iovs, n)? {
            at = write_tmp(tmp, limits, file, at, m.bytes(p, len)?)?;
            total += len as u32;
        }
        m.put_u32(out, total)
    })
}

fn fd_read(mut caller: Caller<'_, Ctx>, fd: i32, iovs: i32, n: i32, out: i32) -> i32 {
    with(&mut caller, |m, ctx| read(m, ctx, fd, iovs, n, None, out))
}

fn fd_pread(mut caller: Caller<'_, Ctx>, fd: i32, iovs: i32, n: i32, off: i64, out: i32) -> i32 {
    with(&mut caller, |m, ctx| {
        read(m, ctx, fd, iovs, n, Some(off as u64), out)
    })
}

/// `fd_read` (`at`: `None`, from the position, which moves) and `fd_pread`.
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
            return read_socket(m, &sock, &iov, out);
        }
        Handle::NetControl(reply) => {
            let reply = core::mem::take(reply);
            let done = m.scatter(&iov, &reply)?;
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

fn fd_close(mut caller: Caller<'_, Ctx>, fd: i32) -> i32 {
    let ctx = caller.data_mut();
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
}

fn fd_seek(mut caller: Caller<'_, Ctx>, fd: i32, off: i64, whence: i32, out: i32) -> i32 {
    with(&mut caller, |m, ctx| {
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
    })
}

fn fd_tell(mut caller: Caller<'_, Ctx>, fd: i32, out: i32) -> i32 {
    with(&mut caller, |m, ctx| {
        let pos = match ctx.handle(fd)? {
            Handle::File { pos, .. } | Handle::Tmp { pos, .. } => *pos,
            Handle::Sink(s) => s.len,
            _ => return Err(errno::SPIPE),
        };
        m.put_u64(out, pos)
    })
}

fn fd_fdstat_get(mut caller: Caller<'_, Ctx>, fd: i32, out: i32) -> i32 {
    with(&mut caller, |m, ctx| {
        let h = ctx.handle(fd)?;
        let ty = match h {
            Handle::Stdin | Handle::Log => FILETYPE_CHAR,
            Handle::Dir(_) => FILETYPE_DIR,
            Handle::File { .. } | Handle::Sink(_) | Handle::Tmp { .. } | Handle::NetControl(_) => {
                FILETYPE_FILE
            }
            Handle::Socket(_) => FILETYPE_SOCKET_STREAM,
        };
        let append = matches!(h, Handle::Tmp { append: true, .. });
        fdstat(m, out, ty, append)
    })
}

fn fd_fdstat_set_flags(mut caller: Caller<'_, Ctx>, fd: i32, flags: i32) -> i32 {
    errno::code(caller.data_mut().handle(fd).map(|h| {
        if let Handle::Tmp { append, .. } = h {
            *append = flags & FDFLAG_APPEND != 0;
        }
    }))
}

fn fd_filestat_get(mut caller: Caller<'_, Ctx>, fd: i32, out: i32) -> i32 {
    with(&mut caller, |m, ctx| {
        let (ty, size, ino) = match ctx.handle(fd)? {
            Handle::Stdin | Handle::Log => (FILETYPE_CHAR, 0, fd as u64),
            Handle::Dir(p) => (FILETYPE_DIR, 0, inode(p)),
            Handle::File { data, .. } => (FILETYPE_FILE, data.len() as u64, data.as_ptr() as u64),
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
    })
}

/// The preopened directory `fd` names.
fn preopen(fd: i32) -> Result<&'static str, i32> {
    usize::try_from(fd - 3)
        .ok()
        .and_then(|i| PREOPENS.get(i))
        .copied()
        .ok_or(errno::BADF)
}

fn fd_prestat_get(mut caller: Caller<'_, Ctx>, fd: i32, out: i32) -> i32 {
    with(&mut caller, |m, _| prestat_dir(m, out, preopen(fd)?.len()))
}

fn fd_prestat_dir_name(mut caller: Caller<'_, Ctx>, fd: i32, buf: i32, len: i32) -> i32 {
    with(&mut caller, |m, _| {
        let dir = preopen(fd)?;
        let n = dir.len().min(len as u32 as usize);
        m.put(buf, &dir.as_bytes()[..n])
    })
}

fn fd_readdir(
    mut caller: Caller<'_, Ctx>,
    fd: i32,
    buf: i32,
    len: i32,
    cookie: i64,
    out: i32,
) -> i32 {
    with(&mut caller, |m, ctx| {
        let Handle::Dir(dir) = ctx.handle(fd)? else {
            return Err(errno::NOTDIR);
        };
        let dir = dir.clone();
        let mut entries = alloc::vec![(String::from("."), true), (String::from(".."), true)];
        if crate::vfs::TmpFs::covers(&dir) {
            entries.extend(ctx.tmp.list(&dir));
        } else {
            entries.extend(ctx.tree.list(&dir));
            if dir == "/" {
                entries.push((String::from("tmp"), true));
            }
        }
        let bytes = dirents(&entries, cookie as u64, len);
        m.put(buf, &bytes)?;
        m.put_u32(out, bytes.len() as u32)
    })
}

fn fd_advise(_fd: i32, _off: i64, _len: i64, _advice: i32) -> i32 {
    errno::SUCCESS
}

fn fd_allocate(mut caller: Caller<'_, Ctx>, fd: i32, off: i64, len: i64) -> i32 {
    let size = (off as u64).checked_add(len as u64);
    errno::code(tmp_resize(caller.data_mut(), fd, size, true))
}

fn fd_datasync(_fd: i32) -> i32 {
    errno::SUCCESS
}

fn fd_sync(_fd: i32) -> i32 {
    errno::SUCCESS
}

fn fd_filestat_set_size(mut caller: Caller<'_, Ctx>, fd: i32, size: i64) -> i32 {
    errno::code(tmp_resize(caller.data_mut(), fd, Some(size as u64), false))
}

fn fd_filestat_set_times(
    mut caller: Caller<'_, Ctx>,
    fd: i32,
    _atime: i64,
    _mtime: i64,
    _flags: i32,
) -> i32 {
    errno::code(match caller.data_mut().handle(fd) {
        Ok(Handle::Tmp { .. } | Handle::Dir(_)) => Ok(()),
        Ok(_) => Err(errno::ROFS),
        Err(e) => Err(e),
    })
}
