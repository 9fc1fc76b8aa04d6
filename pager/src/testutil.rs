//! Test helpers: timeouts so a pager bug fails a test instead of hanging it, anonymous
//! mappings, and kernel-mode accesses (read(2)/write(2) through a memfd) that fault the way
//! KVM's guest-memory accesses do.

use crate::HostAddr;
use std::io;
use std::sync::mpsc;
use std::time::Duration;

/// Run `f` on a thread; panic if it does not finish within `secs`.
pub fn with_timeout<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs} s: a faulting thread hangs"),
    }
}

/// A private anonymous mapping, unmapped on drop.
#[derive(Debug)]
pub struct AnonMap {
    pub addr: HostAddr,
    pub len: usize,
    _map: crate::Mapping,
}

impl AnonMap {
    pub fn new(len: usize) -> AnonMap {
        let map = crate::Mapping::new(
            len,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
        )
        .unwrap();
        AnonMap {
            addr: map.addr(),
            len,
            _map: map,
        }
    }
}

fn scratch() -> i32 {
    // SAFETY: a valid C string; result checked.
    let fd = unsafe { libc::memfd_create(c"thaw-test".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    fd
}

/// Read `len` bytes at `addr` from kernel mode: write(2) them to a memfd, pread them back.
pub fn kernel_read(addr: usize, len: usize) -> io::Result<Vec<u8>> {
    let fd = scratch();
    // SAFETY: the kernel reads user memory at `addr` and reports EFAULT if it cannot.
    let n = unsafe { libc::write(fd, addr as *const libc::c_void, len) };
    let res = if n == len as isize {
        let mut out = vec![0u8; len];
        // SAFETY: `out` is a live buffer of `len` bytes.
        unsafe { libc::pread(fd, out.as_mut_ptr().cast(), len, 0) };
        Ok(out)
    } else if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Err(io::Error::from_raw_os_error(libc::EFAULT))
    };
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    res
}

/// Write `data` at `addr` from kernel mode: read(2) it from a memfd into the region.
pub fn kernel_write(addr: usize, data: &[u8]) -> io::Result<()> {
    let fd = scratch();
    // SAFETY: `data` is a live slice; pwrite reads it.
    unsafe { libc::pwrite(fd, data.as_ptr().cast(), data.len(), 0) };
    // SAFETY: the kernel writes user memory at `addr` and reports EFAULT if it cannot.
    let n = unsafe { libc::read(fd, addr as *mut libc::c_void, data.len()) };
    let res = if n == data.len() as isize {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    };
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    res
}

/// Read one byte at `addr` from user mode.
pub fn user_read(addr: usize) -> u8 {
    // SAFETY: tests call this only on mapped addresses the pager serves.
    unsafe { std::ptr::read_volatile(addr as *const u8) }
}

/// A source that fails on some chunks, like a corrupt store.
#[derive(Debug)]
pub struct FailingSource {
    pub inner: crate::VecSource,
    pub bad: Vec<usize>,
}

impl crate::PageSource for FailingSource {
    fn chunk_size(&self) -> usize {
        self.inner.chunk_size()
    }

    fn len(&self) -> usize {
        self.inner.len()
    }

    fn read_chunk(
        &self,
        index: usize,
        dst: &mut [u8],
    ) -> Result<crate::ChunkKind, crate::SourceError> {
        if self.bad.contains(&index) {
            return Err(crate::SourceError::CorruptChunk {
                index,
                detail: "checksum mismatch".into(),
            });
        }
        self.inner.read_chunk(index, dst)
    }
}

/// Start a pager over `map` with `source`.
pub fn start(
    map: &AnonMap,
    source: std::sync::Arc<dyn crate::PageSource>,
    opts: crate::PagerOptions,
) -> crate::PagerHandle {
    let region = crate::GuestRegion {
        host_addr: map.addr,
        len: map.len,
        backing: crate::Backing::Anonymous,
        keep_alive: None,
    };
    // SAFETY: `map` is a fresh, unpopulated anonymous mapping that outlives the handle in every
    // test (tests drop the handle first) and is only accessed through raw addresses.
    unsafe { crate::Pager::start(region, source, opts) }.unwrap()
}

/// A small deterministic PRNG for access patterns.
pub fn shuffle(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut x = seed | 1;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}
