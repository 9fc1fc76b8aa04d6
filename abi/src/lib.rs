//! The contract between thaw's VMM (`vmm/`) and its freestanding guest (`guest/`).
//!
//! Everything here is plain data: the guest-physical memory layout, the hypercall
//! numbers and the `#[repr(C)]` mailboxes the two sides exchange through shared
//! guest RAM. Both sides compile this crate (the guest as `no_std`), so a change
//! here changes both at once. Bump [`ABI_VERSION`] on any layout change.
//!
//! # Hypercalls
//! The guest runs at CPL3 with IOPL=3 and calls the VMM with one port write:
//! `out dx, eax` with `dx = HYPERCALL_PORT` and `eax = Hypercall as u32`. Arguments
//! travel in that call's own mailbox (never a shared one), which the guest fills
//! before the `out`; results come back in the same mailbox. The VMM treats every
//! mailbox field as hostile: pointers must fall inside guest RAM, lengths are capped,
//! unknown calls end the VM.
#![no_std]
#![forbid(unsafe_code)]

/// Version of this ABI; the guest reports it in [`BootInfo`]-checked `Ready`.
pub const ABI_VERSION: u32 = 4;

pub mod addr;
pub mod engine;
pub mod net;

/// The I/O port the guest writes a [`Hypercall`] number to.
pub const HYPERCALL_PORT: u16 = 0x0ca1;

/// 2 MiB: the guest page size, and the alignment of every region below.
pub const PAGE_2M: u64 = 2 << 20;

/// Largest synchronous payload in either direction (Lambda's 6 MiB limit).
pub const MAX_PAYLOAD: u64 = 6 * 1024 * 1024;

/// Guest-physical layout. Guest virtual addresses equal guest-physical ones
/// (identity map with 2 MiB pages).
pub mod layout {
    /// GDT (system area, supervisor-only page).
    pub const GDT: u64 = 0x1000;
    /// Task-state segment.
    pub const TSS: u64 = 0x10_0000;
    /// PML4; the PDPT and page directories follow it.
    pub const PML4: u64 = 0x3000;
    /// First page directory pointer table.
    pub const PDPT: u64 = 0x4000;
    /// First page directory; one 4 KiB directory per GiB of guest RAM.
    pub const PD: u64 = 0x5000;
    /// Most guest RAM the page-table area can map (system area ends at 2 MiB).
    pub const MAX_RAM: u64 = 256 << 30;

    /// The guest program is linked here.
    pub const ELF_BASE: u64 = 0x20_0000;
    /// End of the guest program's region.
    pub const ELF_END: u64 = 0x100_0000;

    /// Boot information written by the VMM ([`crate::BootInfo`]).
    pub const BOOT_INFO: u64 = 0x100_0000;
    /// Mailboxes, one 4 KiB page per hypercall, indexed by call number.
    pub const MAILBOXES: u64 = 0x100_1000;
    /// Log buffer: the guest appends stdout/stderr here.
    pub const LOG: u64 = 0x110_0000;
    /// Size of the log buffer.
    pub const LOG_SIZE: u64 = 0x10_0000;
    /// Invocation request area: [`crate::Invocation`] header then the event bytes.
    pub const REQUEST: u64 = 0x120_0000;
    /// Size of the request area.
    pub const REQUEST_SIZE: u64 = 0x80_0000;
    /// Offset of the event bytes inside the request area.
    pub const REQUEST_PAYLOAD_OFFSET: u64 = 0x1_0000;
    /// Response area: the guest writes results here.
    pub const RESPONSE: u64 = 0x1a0_0000;
    /// Size of the response area.
    pub const RESPONSE_SIZE: u64 = 0x80_0000;
    /// Unmapped 2 MiB hole below the stack: an overflow faults and ends the VM.
    pub const STACK_GUARD: u64 = 0x220_0000;
    /// Lowest stack address.
    pub const STACK_BOTTOM: u64 = 0x240_0000;
    /// Initial stack pointer.
    pub const STACK_TOP: u64 = 0x2c0_0000;
    /// First byte of the region holding the module image, function files and heap.
    pub const IMAGES: u64 = 0x2c0_0000;
}

/// Hypercall numbers (the value written to [`HYPERCALL_PORT`]).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypercall {
    /// Flush `LogMailbox::len` bytes of the log buffer to the invocation log.
    Log = 1,
    /// Init is complete (first call) or the last response was sent: block until the
    /// next invocation is written to the request area. Snapshots are taken while
    /// the guest is parked here; the first `Next` after a restore carries fresh
    /// entropy, the wall clock and `restored = 1`.
    Next = 2,
    /// The handler's result (`ResponseMailbox`).
    Response = 3,
    /// The guest failed fatally (panic, engine trap outside a handler, OOM).
    Abort = 4,
    /// The runtime reached a named phase (`PhaseMailbox`); the VMM timestamps it
    /// and resumes the guest at once.
    Phase = 6,
    /// A socket operation ([`net::NetMailbox`]); the VMM resumes the guest when
    /// it is done.
    Net = 7,
}

impl Hypercall {
    /// Decodes a port write; `None` for unknown numbers.
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Log,
            2 => Self::Next,
            3 => Self::Response,
            4 => Self::Abort,
            6 => Self::Phase,
            7 => Self::Net,
            _ => return None,
        })
    }

    /// Guest-physical address of this call's mailbox.
    pub const fn mailbox(self) -> u64 {
        layout::MAILBOXES + (self as u64) * 0x1000
    }
}

/// Written by the VMM at [`layout::BOOT_INFO`] before the vCPU starts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BootInfo {
    /// Must equal [`BOOT_MAGIC`].
    pub magic: u64,
    /// The VMM's [`ABI_VERSION`].
    pub abi_version: u32,
    /// MemorySize in MiB: the function's memory budget.
    pub memory_mb: u32,
    /// Total guest RAM in bytes.
    pub ram_size: u64,
    /// Precompiled module image (page aligned).
    pub module_addr: u64,
    /// Length of the module image.
    pub module_len: u64,
    /// Function files archive ([`files`] format).
    pub files_addr: u64,
    /// Length of the files archive.
    pub files_len: u64,
    /// Process configuration: argv and environment ([`files`] format, names `argv/N`, `env/NAME`).
    pub config_addr: u64,
    /// Length of the configuration archive.
    pub config_len: u64,
    /// First byte of the guest heap (the engine's own allocations and `/tmp`).
    pub heap_start: u64,
    /// One past the last byte of the guest heap.
    pub heap_end: u64,
    /// First byte of the region the WebAssembly linear memory lives in and grows
    /// into in place (2 MiB aligned, zero filled, above the heap).
    pub memory_start: u64,
    /// One past the last byte of that region (MemorySize, rounded up to 2 MiB).
    /// `memory_mb` MiB is the most the linear memory, the heap in use and `/tmp`
    /// together may take.
    pub memory_end: u64,
    /// Bytes of file data `/tmp` may hold: the function's EphemeralStorage. `/tmp`
    /// lives in guest memory, so its bytes also count against `memory_mb`.
    pub tmp_limit: u64,
    /// TSC frequency in kHz (guest clocks are TSC based).
    pub tsc_khz: u64,
    /// Wall clock at boot and its TSC reading, see [`Clock`].
    pub clock: Clock,
    /// Host entropy to seed the guest CSPRNG.
    pub seed: [u8; 32],
}

/// `BootInfo::magic`.
pub const BOOT_MAGIC: u64 = 0x7468_6177_626f_6f74; // "thawboot"

/// A wall-clock anchor: guest time = `epoch_ns + (rdtsc - tsc) * 1e6 / tsc_khz`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    /// Nanoseconds since the Unix epoch when `tsc` was read.
    pub epoch_ns: u64,
    /// The TSC value at that moment (as the guest reads it).
    pub tsc: u64,
}

/// Mailbox of [`Hypercall::Log`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LogMailbox {
    /// Bytes of the log buffer to take (from its start).
    pub len: u64,
}

/// Mailbox of [`Hypercall::Next`]; the VMM fills it when the call returns.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NextMailbox {
    /// Guest -> VMM: bytes of the log buffer still to flush.
    pub log_len: u64,
    /// VMM -> guest: length of the [`Invocation`] header JSON at [`layout::REQUEST`].
    pub header_len: u64,
    /// VMM -> guest: event length at `REQUEST + REQUEST_PAYLOAD_OFFSET`.
    pub payload_len: u64,
    /// VMM -> guest: fresh wall clock anchor.
    pub clock: Clock,
    /// VMM -> guest: fresh entropy, non-zero after a restore.
    pub seed: [u8; 32],
    /// VMM -> guest: 1 when this is the first invocation after a restore.
    pub restored: u32,
    /// Guest -> VMM: [`NEXT_HAS_RESPONSE`] and [`NEXT_RESPONSE_TRUNCATED`]: the
    /// previous invocation's response rides on this call (one exit per invoke).
    pub response_flags: u32,
    /// Guest -> VMM: that response's [`ResponseKind`].
    pub response_kind: u32,
    /// Padding.
    pub _pad: u32,
    /// Guest -> VMM: that response's length at [`layout::RESPONSE`].
    pub response_len: u64,
    /// Guest -> VMM: bytes its allocator has handed out (the engine and the wasm
    /// linear memory, which never shrinks): the runtime's memory use, for reports.
    /// Untrusted: the VMM clamps it to the guest's RAM.
    pub mem_used: u64,
}

/// `NextMailbox::response_flags`: a response is attached.
pub const NEXT_HAS_RESPONSE: u32 = 1;
/// `NextMailbox::response_flags`: the guest dropped bytes past [`MAX_PAYLOAD`].
pub const NEXT_RESPONSE_TRUNCATED: u32 = 2;

/// Result kinds of [`Hypercall::Response`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseKind {
    /// Handler result (JSON bytes).
    Ok = 0,
    /// Handler error (`{"errorMessage","errorType","stackTrace"}`).
    Error = 1,
    /// Init failed; same body as `Error`.
    InitError = 2,
}

impl ResponseKind {
    /// Decodes the mailbox field; `None` for unknown kinds.
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Ok,
            1 => Self::Error,
            2 => Self::InitError,
            _ => return None,
        })
    }
}

/// Mailbox of [`Hypercall::Response`]; the body is at [`layout::RESPONSE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponseMailbox {
    /// A [`ResponseKind`].
    pub kind: u32,
    /// 1 when the guest had to drop bytes past [`MAX_PAYLOAD`].
    pub truncated: u32,
    /// Body length.
    pub len: u64,
    /// Bytes of the log buffer still to flush.
    pub log_len: u64,
}

/// Mailbox of [`Hypercall::Abort`]: a UTF-8 message follows the header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AbortMailbox {
    /// Message length (capped at [`ABORT_MESSAGE_MAX`]).
    pub len: u64,
    /// Bytes of the log buffer still to flush.
    pub log_len: u64,
}

/// Longest abort message.
pub const ABORT_MESSAGE_MAX: u64 = 0x1000 - 16;

/// Phases the runtime reports with [`Hypercall::Phase`].
pub mod phase {
    /// The language runtime is up (e.g. CPython initialised, bootstrap running).
    pub const RUNTIME_READY: u32 = 1;
    /// The function's module was imported (function init done).
    pub const FUNCTION_READY: u32 = 2;
}

/// Mailbox of [`Hypercall::Phase`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PhaseMailbox {
    /// A [`phase`] constant.
    pub phase: u32,
    /// Padding.
    pub _pad: u32,
}

/// A tiny read-only archive: `u32 count`, then per entry `u32 name_len, u64 data_len`,
/// name bytes, data bytes; entries are 8-byte aligned. Used for function files and the
/// process configuration. The writer lives in the host, the reader in the guest.
pub mod files {
    /// Magic at the start of an archive.
    pub const MAGIC: u32 = 0x5448_4641; // "THFA"

    /// Rounds `n` up to the archive's alignment.
    pub const fn align(n: usize) -> usize {
        (n + 7) & !7
    }

    /// Iterator over `(name, data)` of a valid archive; stops at the first malformed entry.
    #[derive(Debug, Clone)]
    pub struct Entries<'a> {
        buf: &'a [u8],
        pos: usize,
        left: u32,
    }

    /// Parses an archive header.
    pub fn entries(buf: &[u8]) -> Entries<'_> {
        let ok = buf.len() >= 8 && u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) == MAGIC;
        let left = if ok {
            u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]])
        } else {
            0
        };
        Entries { buf, pos: 8, left }
    }

    impl<'a> Iterator for Entries<'a> {
        type Item = (&'a [u8], &'a [u8]);
        fn next(&mut self) -> Option<Self::Item> {
            if self.left == 0 {
                return None;
            }
            let head = self.buf.get(self.pos..self.pos.checked_add(12)?)?;
            let name_len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let mut d = [0u8; 8];
            d.copy_from_slice(&head[4..12]);
            let data_len = usize::try_from(u64::from_le_bytes(d)).ok()?;
            let name_at = self.pos + 12;
            let data_at = align(name_at.checked_add(name_len)?);
            let end = data_at.checked_add(data_len)?;
            let name = self.buf.get(name_at..name_at + name_len)?;
            let data = self.buf.get(data_at..end)?;
            self.pos = align(end);
            self.left -= 1;
            Some((name, data))
        }
    }

    /// Appends one entry to an archive being built (host side).
    #[cfg(feature = "alloc")]
    pub fn push(out: &mut alloc::vec::Vec<u8>, name: &[u8], data: &[u8]) {
        if out.is_empty() {
            out.extend_from_slice(&MAGIC.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
        }
        let count = u32::from_le_bytes([out[4], out[5], out[6], out[7]]) + 1;
        out[4..8].copy_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        out.extend_from_slice(name);
        out.resize(align(out.len()), 0);
        out.extend_from_slice(data);
        out.resize(align(out.len()), 0);
    }
}

// The layout is checked at compile time: regions in order, aligned, large enough.
const _: () = {
    use layout::*;
    assert!(ELF_END <= BOOT_INFO);
    assert!(MAILBOXES + 8 * 0x1000 <= LOG);
    assert!(core::mem::size_of::<net::NetMailbox>() <= 0x1000);
    assert!(LOG + LOG_SIZE <= REQUEST);
    assert!(REQUEST + REQUEST_SIZE <= RESPONSE);
    assert!(REQUEST_SIZE - REQUEST_PAYLOAD_OFFSET >= MAX_PAYLOAD);
    assert!(RESPONSE + RESPONSE_SIZE <= STACK_GUARD);
    assert!(RESPONSE_SIZE > MAX_PAYLOAD);
    assert!(STACK_GUARD.is_multiple_of(PAGE_2M));
    assert!(IMAGES.is_multiple_of(PAGE_2M));
    assert!(core::mem::size_of::<BootInfo>() <= 0x1000);
    assert!(core::mem::size_of::<NextMailbox>() <= 0x1000);
};

#[cfg(feature = "alloc")]
extern crate alloc;

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;

    #[test]
    fn test_archive_round_trip() {
        let mut buf = alloc::vec::Vec::new();
        files::push(&mut buf, b"app.py", b"print(1)\n");
        files::push(&mut buf, b"dir/x", b"");
        files::push(&mut buf, b"b", &[7u8; 13]);
        let got: alloc::vec::Vec<_> = files::entries(&buf).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (&b"app.py"[..], &b"print(1)\n"[..]));
        assert_eq!(got[1].1.len(), 0);
        assert_eq!(got[2].1, &[7u8; 13][..]);
    }

    #[test]
    fn test_truncated_archive_stops() {
        let mut buf = alloc::vec::Vec::new();
        files::push(&mut buf, b"app.py", b"print(1)\n");
        buf.truncate(buf.len() - 12);
        assert_eq!(files::entries(&buf).count(), 0);
        assert_eq!(files::entries(b"junkjunkjunk").count(), 0);
    }

    #[test]
    fn test_hypercall_numbers_round_trip() {
        for h in [
            Hypercall::Log,
            Hypercall::Next,
            Hypercall::Response,
            Hypercall::Abort,
            Hypercall::Phase,
            Hypercall::Net,
        ] {
            assert_eq!(Hypercall::from_u32(h as u32), Some(h));
        }
        assert_eq!(Hypercall::from_u32(0), None);
        assert_eq!(Hypercall::from_u32(99), None);
    }
}
