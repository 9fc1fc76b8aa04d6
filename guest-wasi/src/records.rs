//! The fixed-layout records WASI calls write into linear memory (`filestat`,
//! `fdstat`, `prestat`, `dirent`, the `args`/`environ` arrays), the flag values
//! the calls take, and the pure bookkeeping around them (inode numbers, seeking).
use crate::{errno, Mem};
use alloc::string::String;
use alloc::vec::Vec;

pub const FILETYPE_CHAR: u8 = 2;
pub const FILETYPE_DIR: u8 = 3;
pub const FILETYPE_FILE: u8 = 4;
pub const FILETYPE_SOCKET_STREAM: u8 = 6;
pub const OFLAG_CREAT: i32 = 1;
pub const OFLAG_DIRECTORY: i32 = 2;
pub const OFLAG_EXCL: i32 = 4;
pub const OFLAG_TRUNC: i32 = 8;
pub const FDFLAG_APPEND: i32 = 1;
pub const RIGHT_FD_WRITE: i64 = 1 << 6;

/// Size of a `dirent` header (the name follows it).
pub const DIRENT_SIZE: usize = 24;

/// A stable inode number for a path (FNV-1a).
pub fn inode(path: &str) -> u64 {
    path.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Writes a 64-byte `filestat` (one link, zero times).
pub fn filestat(mem: &mut Mem<'_>, at: i32, filetype: u8, size: u64, ino: u64) -> Result<(), i32> {
    let mut st = [0u8; 64];
    st[8..16].copy_from_slice(&ino.to_le_bytes());
    st[16] = filetype;
    st[24..32].copy_from_slice(&1u64.to_le_bytes());
    st[32..40].copy_from_slice(&size.to_le_bytes());
    mem.put(at, &st)
}

/// Writes a 24-byte `fdstat` with every right (base and inheriting).
pub fn fdstat(mem: &mut Mem<'_>, at: i32, filetype: u8, append: bool) -> Result<(), i32> {
    let rights = u64::MAX;
    let mut st = [0u8; 24];
    st[0] = filetype;
    st[2] = u8::from(append);
    st[8..16].copy_from_slice(&rights.to_le_bytes());
    st[16..24].copy_from_slice(&rights.to_le_bytes());
    mem.put(at, &st)
}

/// Writes a directory `prestat`: tag 0 and the name's length.
pub fn prestat_dir(mem: &mut Mem<'_>, at: i32, name_len: usize) -> Result<(), i32> {
    mem.put_u32(at, 0)?;
    mem.put_u32(at.wrapping_add(4), name_len as u32)
}

/// The `dirent` stream of `entries` (name, is a directory) from `cookie` on, for
/// a buffer of `len` bytes: whole entries until the buffer is full, the last one
/// cut at the buffer's end (the caller asks again with a bigger buffer).
pub fn dirents(entries: &[(String, bool)], cookie: u64, len: i32) -> Vec<u8> {
    let cap = len.max(0) as usize;
    let mut bytes = Vec::new();
    for (i, (name, is_dir)) in entries.iter().enumerate().skip(cookie as usize) {
        let mut ent = [0u8; DIRENT_SIZE];
        ent[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        ent[8..16].copy_from_slice(&inode(name).to_le_bytes());
        ent[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
        ent[20] = if *is_dir { FILETYPE_DIR } else { FILETYPE_FILE };
        bytes.extend_from_slice(&ent);
        bytes.extend_from_slice(name.as_bytes());
        if bytes.len() >= cap {
            break;
        }
    }
    bytes.truncate(cap);
    bytes
}

/// Writes the count and total size of `list` (`args_sizes_get`, `environ_sizes_get`).
pub fn strings_sizes(
    mem: &mut Mem<'_>,
    list: &[Vec<u8>],
    count_at: i32,
    size_at: i32,
) -> Result<(), i32> {
    mem.put_u32(count_at, list.len() as u32)?;
    mem.put_u32(size_at, list.iter().map(|s| s.len() as u32).sum())
}

/// Writes `list` to `buf` back to back and a pointer to each into `ptrs`
/// (`args_get`, `environ_get`).
pub fn strings_get(mem: &mut Mem<'_>, list: &[Vec<u8>], ptrs: i32, buf: i32) -> Result<(), i32> {
    let mut at = buf;
    for (i, s) in list.iter().enumerate() {
        mem.put_u32(ptrs.wrapping_add((i as i32).wrapping_mul(4)), at as u32)?;
        mem.put(at, s)?;
        at = at.wrapping_add(s.len() as i32);
    }
    Ok(())
}

/// Moves a file position as `fd_seek` asks (`whence`: set, current, end); a
/// position before the start is `EINVAL`.
pub fn seek(pos: &mut u64, len: usize, off: i64, whence: i32) -> Result<u64, i32> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn entries() -> Vec<(String, bool)> {
        vec![
            (String::from("."), true),
            (String::from("a.py"), false),
            (String::from("lib"), true),
        ]
    }

    #[test]
    fn test_filestat_layout() {
        let mut buf = [0xaau8; 64];
        filestat(&mut Mem::new(&mut buf), 0, FILETYPE_FILE, 1234, 99).unwrap();
        assert_eq!(&buf[..8], &[0; 8]);
        assert_eq!(u64::from_le_bytes(buf[8..16].try_into().unwrap()), 99);
        assert_eq!(buf[16], FILETYPE_FILE);
        assert_eq!(u64::from_le_bytes(buf[24..32].try_into().unwrap()), 1);
        assert_eq!(u64::from_le_bytes(buf[32..40].try_into().unwrap()), 1234);
        assert!(buf[40..].iter().all(|b| *b == 0));
    }

    #[test]
    fn test_filestat_past_the_end_is_efault_and_writes_nothing() {
        let mut buf = [0xaau8; 70];
        assert_eq!(
            filestat(&mut Mem::new(&mut buf), 7, FILETYPE_DIR, 0, 1),
            Err(errno::FAULT)
        );
        assert!(buf.iter().all(|b| *b == 0xaa));
        assert_eq!(
            filestat(&mut Mem::new(&mut buf), -1, FILETYPE_DIR, 0, 1),
            Err(errno::FAULT)
        );
    }

    #[test]
    fn test_fdstat_layout() {
        let mut buf = [0u8; 24];
        fdstat(&mut Mem::new(&mut buf), 0, FILETYPE_SOCKET_STREAM, true).unwrap();
        assert_eq!(buf[0], FILETYPE_SOCKET_STREAM);
        assert_eq!(buf[2], 1);
        assert!(buf[8..].iter().all(|b| *b == 0xff));
        assert_eq!(
            fdstat(&mut Mem::new(&mut buf), 1, 0, false),
            Err(errno::FAULT)
        );
    }

    #[test]
    fn test_prestat_dir() {
        let mut buf = [0xffu8; 8];
        prestat_dir(&mut Mem::new(&mut buf), 0, 9).unwrap();
        assert_eq!(buf, [0, 0, 0, 0, 9, 0, 0, 0]);
        assert_eq!(
            prestat_dir(&mut Mem::new(&mut buf), 4, 9),
            Err(errno::FAULT)
        );
    }

    #[test]
    fn test_dirents_whole_listing() {
        let b = dirents(&entries(), 0, 4096);
        assert_eq!(b.len(), 3 * DIRENT_SIZE + 1 + 4 + 3);
        // First entry: next cookie 1, name "." of length 1, a directory.
        assert_eq!(u64::from_le_bytes(b[..8].try_into().unwrap()), 1);
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), inode("."));
        assert_eq!(u32::from_le_bytes(b[16..20].try_into().unwrap()), 1);
        assert_eq!(b[20], FILETYPE_DIR);
        assert_eq!(b[24], b'.');
        // Second: a file.
        let second = &b[DIRENT_SIZE + 1..];
        assert_eq!(u64::from_le_bytes(second[..8].try_into().unwrap()), 2);
        assert_eq!(second[20], FILETYPE_FILE);
        assert_eq!(&second[24..28], b"a.py");
    }

    #[test]
    fn test_dirents_from_a_cookie() {
        let b = dirents(&entries(), 2, 4096);
        assert_eq!(b.len(), DIRENT_SIZE + 3);
        assert_eq!(u64::from_le_bytes(b[..8].try_into().unwrap()), 3);
        assert_eq!(&b[24..], b"lib");
        assert!(dirents(&entries(), 3, 4096).is_empty());
        assert!(dirents(&entries(), u64::MAX, 4096).is_empty());
    }

    #[test]
    fn test_dirents_truncated_at_the_buffer() {
        let full = dirents(&entries(), 0, 4096);
        for len in [0, 1, 10, 24, 25, 26, 40] {
            let b = dirents(&entries(), 0, len);
            assert_eq!(b.len(), len as usize, "len {len}");
            assert_eq!(&b[..], &full[..len as usize]);
        }
        assert!(dirents(&entries(), 0, -1).is_empty());
        assert!(dirents(&entries(), 0, i32::MIN).is_empty());
    }

    #[test]
    fn test_strings_sizes_and_get() {
        let list = vec![b"py\0".to_vec(), b"-c\0".to_vec()];
        let mut buf = [0u8; 32];
        let mut m = Mem::new(&mut buf);
        strings_sizes(&mut m, &list, 0, 4).unwrap();
        assert_eq!((m.u32(0), m.u32(4)), (Ok(2), Ok(6)));
        strings_get(&mut m, &list, 8, 16).unwrap();
        assert_eq!((m.u32(8), m.u32(12)), (Ok(16), Ok(19)));
        assert_eq!(&buf[16..22], b"py\0-c\0");
    }

    #[test]
    fn test_strings_out_of_range_are_efault() {
        let list = vec![b"python3\0".to_vec()];
        let mut buf = [0u8; 16];
        let mut m = Mem::new(&mut buf);
        assert_eq!(strings_sizes(&mut m, &list, 0, 13), Err(errno::FAULT));
        assert_eq!(strings_get(&mut m, &list, 0, 12), Err(errno::FAULT));
        assert_eq!(strings_get(&mut m, &list, -4, 0), Err(errno::FAULT));
        assert_eq!(strings_get(&mut m, &[], -4, -4), Ok(()));
    }

    #[test]
    fn test_seek() {
        let mut pos = 5;
        assert_eq!(seek(&mut pos, 100, 10, 0), Ok(10));
        assert_eq!(seek(&mut pos, 100, -3, 1), Ok(7));
        assert_eq!(seek(&mut pos, 100, 0, 2), Ok(100));
        assert_eq!(seek(&mut pos, 100, 50, 2), Ok(150));
        assert_eq!(seek(&mut pos, 100, -151, 1), Err(errno::INVAL));
        assert_eq!(seek(&mut pos, 100, i64::MAX, 1), Err(errno::INVAL));
        assert_eq!(seek(&mut pos, 100, 0, 3), Err(errno::INVAL));
        assert_eq!(pos, 150);
    }

    #[test]
    fn test_inode_is_stable_and_distinct() {
        assert_eq!(inode(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(inode("/tmp"), inode("/tmp"));
        assert_ne!(inode("/tmp"), inode("/tmq"));
    }
}
