//! Memory accounting of one mapping from /proc/self/smaps: RSS, PSS and the hugetlb fields
//! (hugetlb pages are not counted in Rss/Pss), to measure what an idle clone costs; and which
//! blocks of a range are mapped in this process's page tables (/proc/self/pagemap), to learn
//! what a guest touched where no fault reaches the pager.

use crate::HostAddr;
use std::io;

/// Why the accounting could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SmapsError {
    /// Reading /proc/self/smaps failed.
    #[error("cannot read /proc/self/smaps")]
    ReadSmaps(#[source] io::Error),
    /// No mapping overlaps the range.
    #[error("no mapping overlaps {0:#x}")]
    FindMapping(usize),
}

/// Sums over the mappings that overlap a range, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MappingMemory {
    /// Resident small/THP pages.
    pub rss_kib: u64,
    /// Proportional set size (shared pages divided by their mappers).
    pub pss_kib: u64,
    /// Resident pages shared with another mapping or process.
    pub shared_kib: u64,
    /// Resident pages only this mapping uses.
    pub private_kib: u64,
    /// hugetlb pages shared with another mapping.
    pub shared_hugetlb_kib: u64,
    /// hugetlb pages only this mapping uses.
    pub private_hugetlb_kib: u64,
}

impl MappingMemory {
    /// Memory this mapping holds alone: private small pages plus private huge pages.
    pub fn private_total_kib(&self) -> u64 {
        self.private_kib + self.private_hugetlb_kib
    }
}

/// Account the VMAs of this process that overlap `[addr, addr + len)`.
pub fn mapping_memory(addr: HostAddr, len: usize) -> Result<MappingMemory, SmapsError> {
    let text = std::fs::read_to_string("/proc/self/smaps").map_err(SmapsError::ReadSmaps)?;
    let mut m = MappingMemory::default();
    let mut inside = false;
    let mut found = false;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some((lo, hi)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let (lo, hi) = (
                usize::from_str_radix(lo, 16).unwrap_or(0),
                usize::from_str_radix(hi, 16).unwrap_or(0),
            );
            inside = lo < addr.0 + len && hi > addr.0;
            found |= inside;
            continue;
        }
        if !inside {
            continue;
        }
        let kib: u64 = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        match first {
            "Rss:" => m.rss_kib += kib,
            "Pss:" => m.pss_kib += kib,
            "Shared_Clean:" | "Shared_Dirty:" => m.shared_kib += kib,
            "Private_Clean:" | "Private_Dirty:" => m.private_kib += kib,
            "Shared_Hugetlb:" => m.shared_hugetlb_kib += kib,
            "Private_Hugetlb:" => m.private_hugetlb_kib += kib,
            _ => {}
        }
    }
    if found {
        Ok(m)
    } else {
        Err(SmapsError::FindMapping(addr.0))
    }
}

/// For each `block`-byte block of `[addr, addr + len)`: whether any of its 4 KiB pages is
/// mapped in this process's page tables (/proc/self/pagemap bit 63). A guest's accesses
/// through KVM map the pages they touch, so on a mapping that never faults into the pager
/// (a clone's private view of a shared image) this tells which blocks the guest used.
pub fn present_blocks(addr: HostAddr, len: usize, block: usize) -> io::Result<Vec<bool>> {
    use std::os::unix::fs::FileExt;
    const PAGE: usize = 4096;
    if !addr.0.is_multiple_of(PAGE) || !block.is_multiple_of(PAGE) || block == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "unaligned range or block",
        ));
    }
    let file = std::fs::File::open("/proc/self/pagemap")?;
    let per = block / PAGE;
    let mut entries = vec![0u8; per * 8];
    let mut out = Vec::with_capacity(len.div_ceil(block));
    for b in 0..len.div_ceil(block) {
        let first_page = (addr.0 + b * block) / PAGE;
        file.read_exact_at(&mut entries, (first_page * 8) as u64)?;
        let present = entries.chunks_exact(8).any(|e| e[7] & 0x80 != 0);
        out.push(present);
    }
    Ok(out)
}

/// Bytes of `[addr, addr + len)` backed by private anonymous pages (/proc/self/pagemap:
/// present, bit 63, and neither a file page nor shared anonymous memory, bit 61): on a
/// clone's `MAP_PRIVATE` view of a shared image, exactly its copy-on-write copies, the
/// memory it holds alone. Reads 8 bytes per 4 KiB page.
pub fn private_anon_bytes(addr: HostAddr, len: usize) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    const PAGE: usize = 4096;
    if !addr.0.is_multiple_of(PAGE) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "unaligned range",
        ));
    }
    let file = std::fs::File::open("/proc/self/pagemap")?;
    let pages = len.div_ceil(PAGE);
    let mut entries = vec![0u8; pages.min(4096) * 8];
    let mut private = 0u64;
    let mut done = 0;
    while done < pages {
        let n = (pages - done).min(4096);
        let buf = &mut entries[..n * 8];
        file.read_exact_at(buf, ((addr.0 / PAGE + done) * 8) as u64)?;
        private += buf
            .chunks_exact(8)
            .filter(|e| e[7] & 0x80 != 0 && e[7] & 0x20 == 0)
            .count() as u64;
        done += n;
    }
    Ok(private * PAGE as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_mapping_memory_counts_touched_private_pages() {
        let len = 64 * 4096;
        let map = crate::Mapping::new(len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1).unwrap();
        let addr = map.addr();
        // SAFETY: a fresh private anonymous mapping of `len` bytes owned by this test.
        unsafe { std::ptr::write_bytes(addr.0 as *mut u8, 1, len / 2) };
        let m = mapping_memory(addr, len).unwrap();
        assert!(m.rss_kib >= 128 && m.private_kib >= 128, "{m:?}");
    }

    #[test]
    fn test_private_anon_bytes_counts_copy_on_write_copies_only() {
        let len = 16 * 4096;
        let img = crate::SharedImage::create(len, false).unwrap();
        let map = img.map_private().unwrap();
        let addr = map.addr();
        // Read 8 pages (shared page-cache pages), then write 3 (private copies).
        for p in 0..8 {
            // SAFETY: reads inside the fresh private mapping of `len` bytes.
            unsafe { std::ptr::read_volatile((addr.0 + p * 4096) as *const u8) };
        }
        for p in [1usize, 4, 9] {
            // SAFETY: writes inside the same mapping.
            unsafe { std::ptr::write_volatile((addr.0 + p * 4096) as *mut u8, 1) };
        }
        assert_eq!(private_anon_bytes(addr, len).unwrap(), 3 * 4096);
    }

    #[test]
    fn test_present_blocks_sees_which_blocks_were_touched() {
        let block = 64 * 1024;
        let len = 8 * block;
        let map = crate::Mapping::new(len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1).unwrap();
        let addr = map.addr();
        for b in [1usize, 5] {
            // SAFETY: one byte inside the fresh private mapping of `len` bytes above.
            unsafe { std::ptr::write_volatile((addr.0 + b * block + 3 * 4096) as *mut u8, 7) };
        }
        let present = present_blocks(addr, len, block).unwrap();
        let want: Vec<bool> = (0..8).map(|b| b == 1 || b == 5).collect();
        assert_eq!(present, want);
    }
}
