//! Checked access to a module's linear memory. WASI passes pointers as `i32`;
//! they are unsigned offsets (a negative `i32` is an offset past 2 GiB), and every
//! access is checked against the memory's length: out of range, or a `ptr + len`
//! that overflows, is `EFAULT`.
use crate::errno;
use alloc::vec::Vec;
use core::ops::Range;

/// A module's linear memory, borrowed for one call.
#[derive(Debug)]
pub struct Mem<'a>(&'a mut [u8]);

impl<'a> Mem<'a> {
    /// Wraps the memory's bytes.
    pub fn new(bytes: &'a mut [u8]) -> Self {
        Self(bytes)
    }

    /// The byte range `len` bytes at `ptr` cover, if it lies inside the memory.
    pub fn range(&self, ptr: i32, len: usize) -> Result<Range<usize>, i32> {
        let start = ptr as u32 as usize;
        let end = start.checked_add(len).ok_or(errno::FAULT)?;
        if end > self.0.len() {
            return Err(errno::FAULT);
        }
        Ok(start..end)
    }

    /// `len` bytes at `ptr`.
    pub fn bytes(&self, ptr: i32, len: usize) -> Result<&[u8], i32> {
        Ok(&self.0[self.range(ptr, len)?])
    }

    /// `len` bytes at `ptr`, writable.
    pub fn bytes_mut(&mut self, ptr: i32, len: usize) -> Result<&mut [u8], i32> {
        let r = self.range(ptr, len)?;
        Ok(&mut self.0[r])
    }

    /// The address of `len` bytes at `ptr` (in the guest, virtual = physical, so
    /// the VMM can fill or read linear memory in place).
    pub fn addr(&mut self, ptr: i32, len: usize) -> Result<u64, i32> {
        let r = self.range(ptr, len)?;
        Ok(self.0.as_mut_ptr() as u64 + r.start as u64)
    }

    /// `len` bytes at `ptr` as UTF-8 (`EINVAL` when they are not).
    pub fn str(&self, ptr: i32, len: usize) -> Result<&str, i32> {
        core::str::from_utf8(self.bytes(ptr, len)?).map_err(|_| errno::INVAL)
    }

    /// A little-endian `u32` at `ptr`.
    pub fn u32(&self, ptr: i32) -> Result<u32, i32> {
        let b = self.bytes(ptr, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Copies `data` to `ptr`; nothing is written when it does not fit.
    pub fn put(&mut self, ptr: i32, data: &[u8]) -> Result<(), i32> {
        self.bytes_mut(ptr, data.len())?.copy_from_slice(data);
        Ok(())
    }

    /// Writes a little-endian `u32` at `ptr`.
    pub fn put_u32(&mut self, ptr: i32, v: u32) -> Result<(), i32> {
        self.put(ptr, &v.to_le_bytes())
    }

    /// Writes a little-endian `u64` at `ptr`.
    pub fn put_u64(&mut self, ptr: i32, v: u64) -> Result<(), i32> {
        self.put(ptr, &v.to_le_bytes())
    }

    /// The `(ptr, len)` pairs of an iovec array of `count` entries at `iovs` (a
    /// negative count is an empty list). The buffers themselves are not checked.
    pub fn iovecs(&self, iovs: i32, count: i32) -> Result<Vec<(i32, usize)>, i32> {
        (0..count.max(0))
            .map(|i| {
                let at = iovs.wrapping_add(i.wrapping_mul(8));
                Ok((self.u32(at)? as i32, self.u32(at.wrapping_add(4))? as usize))
            })
            .collect()
    }

    /// Concatenates the buffers of an iovec array.
    pub fn gather(&self, iovs: i32, count: i32) -> Result<Vec<u8>, i32> {
        let mut out = Vec::new();
        for (p, len) in self.iovecs(iovs, count)? {
            out.extend_from_slice(self.bytes(p, len)?);
        }
        Ok(out)
    }

    /// Copies `data` into the buffers of `iov` in order, as far as it goes;
    /// returns the bytes copied.
    pub fn scatter(&mut self, iov: &[(i32, usize)], data: &[u8]) -> Result<usize, i32> {
        let mut done = 0usize;
        for &(p, len) in iov {
            let k = len.min(data.len() - done);
            self.put(p, &data[done..done + k])?;
            done += k;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn test_range_inside_and_at_the_end() {
        let mut buf = [0u8; 16];
        let m = Mem::new(&mut buf);
        assert_eq!(m.range(0, 16), Ok(0..16));
        assert_eq!(m.range(16, 0), Ok(16..16));
        assert_eq!(m.range(4, 4), Ok(4..8));
    }

    #[test]
    fn test_out_of_range_is_efault() {
        let mut buf = [0u8; 16];
        let mut m = Mem::new(&mut buf);
        assert_eq!(m.range(17, 0), Err(errno::FAULT));
        assert_eq!(m.range(15, 2), Err(errno::FAULT));
        assert_eq!(m.bytes(0, 17), Err(errno::FAULT));
        assert_eq!(m.bytes_mut(12, 5).err(), Some(errno::FAULT));
        assert_eq!(m.u32(13), Err(errno::FAULT));
        assert_eq!(m.put_u64(9, 1), Err(errno::FAULT));
        assert_eq!(m.addr(16, 1), Err(errno::FAULT));
    }

    #[test]
    fn test_negative_pointer_is_a_high_offset() {
        let mut buf = [0u8; 16];
        let mut m = Mem::new(&mut buf);
        assert_eq!(m.range(-1, 0), Err(errno::FAULT));
        assert_eq!(m.u32(i32::MIN), Err(errno::FAULT));
        assert_eq!(m.put(-4, &[1, 2, 3, 4]), Err(errno::FAULT));
        // A memory larger than 2 GiB is not needed to see the offset: it is
        // `ptr as u32`, not a negative index.
        assert_eq!(m.range(-16, 0), Err(errno::FAULT));
    }

    #[test]
    fn test_ptr_plus_len_overflow_is_efault() {
        let mut buf = [0u8; 16];
        let m = Mem::new(&mut buf);
        assert_eq!(m.range(1, usize::MAX), Err(errno::FAULT));
        assert_eq!(m.range(-1, usize::MAX), Err(errno::FAULT));
        assert_eq!(m.bytes(0, usize::MAX), Err(errno::FAULT));
    }

    #[test]
    fn test_failed_put_writes_nothing() {
        let mut buf = [7u8; 8];
        let mut m = Mem::new(&mut buf);
        assert_eq!(m.put(6, &[1, 2, 3]), Err(errno::FAULT));
        assert_eq!(buf, [7u8; 8]);
    }

    #[test]
    fn test_integers_are_little_endian() {
        let mut buf = [0u8; 12];
        let mut m = Mem::new(&mut buf);
        m.put_u32(0, 0x0403_0201).unwrap();
        m.put_u64(4, 0x0c0b_0a09_0807_0605).unwrap();
        assert_eq!(m.u32(0), Ok(0x0403_0201));
        assert_eq!(m.u32(8), Ok(0x0c0b_0a09));
        assert_eq!(buf, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    }

    #[test]
    fn test_str_checks_range_then_utf8() {
        let mut buf = *b"/tmp/\xff!";
        let m = Mem::new(&mut buf);
        assert_eq!(m.str(0, 4), Ok("/tmp"));
        assert_eq!(m.str(0, 0), Ok(""));
        assert_eq!(m.str(0, 6), Err(errno::INVAL));
        assert_eq!(m.str(5, 3), Err(errno::FAULT));
        // A negative i32 length, as the guest widens it, is out of range.
        assert_eq!(m.str(0, -1i32 as usize), Err(errno::FAULT));
    }

    #[test]
    fn test_addr_is_the_byte_address() {
        let mut buf = [0u8; 8];
        let base = buf.as_ptr() as u64;
        let mut m = Mem::new(&mut buf);
        assert_eq!(m.addr(3, 5), Ok(base + 3));
    }

    fn with_iovecs(pairs: &[(u32, u32)], size: usize) -> vec::Vec<u8> {
        let mut buf = vec![0u8; size];
        for (i, (p, l)) in pairs.iter().enumerate() {
            buf[i * 8..i * 8 + 4].copy_from_slice(&p.to_le_bytes());
            buf[i * 8 + 4..i * 8 + 8].copy_from_slice(&l.to_le_bytes());
        }
        buf
    }

    #[test]
    fn test_iovecs_read_pairs() {
        let mut buf = with_iovecs(&[(16, 4), (20, 0), (0xffff_fff0, 3)], 24);
        let m = Mem::new(&mut buf);
        assert_eq!(m.iovecs(0, 3), Ok(vec![(16, 4), (20, 0), (-16, 3)]));
        assert_eq!(m.iovecs(0, 0), Ok(vec![]));
        assert_eq!(m.iovecs(0, -5), Ok(vec![]));
    }

    #[test]
    fn test_iovecs_crossing_the_end_are_efault() {
        let mut buf = with_iovecs(&[(0, 0), (0, 0)], 20);
        let m = Mem::new(&mut buf);
        // The second entry's length field ends at byte 16 (fits), a third would not.
        assert!(m.iovecs(0, 2).is_ok());
        assert_eq!(m.iovecs(0, 3), Err(errno::FAULT));
        assert_eq!(m.iovecs(16, 1), Err(errno::FAULT));
        assert_eq!(m.iovecs(-8, 1), Err(errno::FAULT));
        assert_eq!(m.iovecs(0, i32::MAX), Err(errno::FAULT));
    }

    #[test]
    fn test_gather_checks_every_buffer() {
        let mut buf = with_iovecs(&[(16, 2), (19, 1)], 20);
        buf[16..20].copy_from_slice(b"abcd");
        let m = Mem::new(&mut buf);
        assert_eq!(m.gather(0, 2), Ok(b"abd".to_vec()));
        let mut bad = with_iovecs(&[(16, 2), (19, 2)], 20);
        assert_eq!(Mem::new(&mut bad).gather(0, 2), Err(errno::FAULT));
    }

    #[test]
    fn test_scatter_fills_in_order_and_stops_when_data_ends() {
        let mut buf = [0u8; 8];
        let mut m = Mem::new(&mut buf);
        assert_eq!(m.scatter(&[(0, 2), (4, 4)], b"xyz"), Ok(3));
        assert_eq!(&buf, b"xy\0\0z\0\0\0");
        let mut m = Mem::new(&mut buf);
        assert_eq!(m.scatter(&[(6, 4)], b"abcd"), Err(errno::FAULT));
        assert_eq!(m.scatter(&[(6, 4)], b""), Ok(0));
    }
}
