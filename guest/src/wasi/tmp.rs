//! The writable `/tmp`: opening, writing and resizing its files within the
//! limits (EphemeralStorage, MemorySize), and its tree operations (mkdir,
//! rmdir, unlink); everywhere else the tree is read-only.
use super::{Ctx, Handle};
use crate::memory::Budget;
use crate::vfs::{TmpData, TmpError, TmpFs};
use alloc::string::String;
use thaw_guest_wasi::errno;
use thaw_guest_wasi::records::{
    FDFLAG_APPEND, OFLAG_CREAT, OFLAG_DIRECTORY, OFLAG_EXCL, OFLAG_TRUNC,
};

/// Opens (or creates) `path` in `/tmp`.
pub(super) fn open_tmp(
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
        None if oflags & OFLAG_CREAT != 0 => ctx.tmp.create(&path).map_err(errno::from_tmp)?,
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
/// limits (EphemeralStorage, MemorySize); returns the end of the write.
pub(super) fn write_tmp(
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

/// The `/tmp` file open as `fd` with the state it is written against: its
/// bytes, `/tmp` and the budget (`EROFS` for any other file).
pub(super) fn tmp_file(ctx: &mut Ctx, fd: i32) -> Result<(&TmpData, &TmpFs, &Budget), i32> {
    let Ctx {
        fds, tmp, limits, ..
    } = ctx;
    match fds
        .get_mut(fd as usize)
        .and_then(|h| h.as_mut())
        .ok_or(errno::BADF)?
    {
        Handle::Tmp { data, .. } => Ok((data, tmp, limits)),
        _ => Err(errno::ROFS),
    }
}

/// Sets a `/tmp` file's size (`grow_only`: `fd_allocate`, which never shrinks).
pub(super) fn tmp_resize(
    ctx: &mut Ctx,
    fd: i32,
    size: Option<u64>,
    grow_only: bool,
) -> Result<(), i32> {
    let (data, tmp, limits) = tmp_file(ctx, fd)?;
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

/// A `/tmp` tree operation (`TmpFs::mkdir`, `rmdir`, `unlink`).
pub(super) type TreeOp = fn(&mut TmpFs, &str) -> Result<(), TmpError>;

/// Runs a `/tmp` tree operation on a path; elsewhere the tree is read-only.
pub(super) fn tmp_op(ctx: &mut Ctx, path: &str, op: TreeOp) -> Result<(), i32> {
    if TmpFs::covers(path) {
        return op(&mut ctx.tmp, path).map_err(errno::from_tmp);
    }
    Err(if ctx.exists(path) {
        errno::ROFS
    } else {
        errno::NOENT
    })
}
