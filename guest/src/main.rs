//! thaw's guest program: the first and only code in a kernel-less microVM.
//!
//! The VMM loads this static ELF at 0x200000, points RSP at the top of the guest
//! stack and starts it in 64-bit mode at CPL3 with IOPL=3. There is no kernel, no
//! interrupts and no IDT: the guest talks to the VMM only through port-I/O
//! hypercalls (`hc`, the bottom layer) and the shared areas described by `thaw_abi::layout`.
//!
//! Boot steps:
//! 1. `_start` aligns the stack and calls [`guest_main`].
//! 2. Read and check the `BootInfo` the VMM wrote; claim the heap for the allocator.
//! 3. Seed the CSPRNG and the clock from the boot info.
//! 4. Load the host-precompiled module in place, instantiate it with the WASI
//!    layer and run its `_start` (CPython running thaw's bootstrap), which loops
//!    over invocations through the `/run/thaw` files for the rest of the VM's life.
//! 5. Anything fatal (panic, trap, exit) is reported with an `Abort` hypercall.
#![no_std]
#![no_main]

extern crate alloc;

mod clock;
mod engine;
mod hc;
mod heap;
mod log;
mod memory;
mod net;
mod platform;
mod region;
mod rng;
mod vfs;
mod wasi;

use core::fmt::Write;
use thaw_abi::{layout, BootInfo, ABI_VERSION, BOOT_MAGIC};

core::arch::global_asm!(
    ".section .text._start,\"ax\"",
    ".global _start",
    "_start:",
    "and rsp, -16",
    "call {main}",
    "ud2",
    main = sym guest_main,
);

/// Reads the boot info the VMM wrote before the vCPU started.
fn boot_info() -> BootInfo {
    // SAFETY: the VMM writes a `BootInfo` at this fixed, mapped, aligned address
    // before the first instruction runs; a volatile read copies it out.
    unsafe { core::ptr::read_volatile(layout::BOOT_INFO as *const BootInfo) }
}

extern "C" fn guest_main() -> ! {
    let boot = boot_info();
    if boot.magic != BOOT_MAGIC || boot.abi_version != ABI_VERSION {
        log::abort("boot info has a wrong magic or ABI version");
    }
    let (ram, m) = (boot.ram_size, boot.memory_start);
    if boot.heap_end > m
        || m % 0x20_0000 != 0
        || boot.memory_end > ram
        || boot.memory_end < m + (u64::from(boot.memory_mb) << 20)
    {
        log::abort("boot info has a bad memory region");
    }
    if let Err(e) = heap::init(boot.heap_start, boot.heap_end, m, boot.memory_end) {
        log::abort(e.message());
    }
    clock::init(boot.tsc_khz, boot.clock);
    rng::reseed(&boot.seed);
    let code = match engine::run(&boot) {
        Ok(code) => code,
        Err(msg) => log::abort(&msg),
    };
    let mut msg = heapless_msg::Msg::new();
    let _ = write!(msg, "runtime exited with status {code}");
    log::abort(msg.as_str())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let mut msg = heapless_msg::Msg::new();
    let _ = write!(msg, "guest panic: {info}");
    log::abort(msg.as_str())
}

/// A fixed-size message buffer that needs no allocator (usable on OOM).
mod heapless_msg {
    /// Up to 1 KiB of UTF-8, silently truncated.
    pub struct Msg {
        buf: [u8; 1024],
        len: usize,
    }

    impl Msg {
        pub const fn new() -> Self {
            Self {
                buf: [0; 1024],
                len: 0,
            }
        }

        pub fn as_str(&self) -> &str {
            core::str::from_utf8(&self.buf[..self.len]).unwrap_or("guest panic (message not UTF-8)")
        }
    }

    impl core::fmt::Write for Msg {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for ch in s.chars() {
                let mut tmp = [0u8; 4];
                let enc = ch.encode_utf8(&mut tmp).as_bytes();
                if self.len + enc.len() > self.buf.len() {
                    return Ok(());
                }
                self.buf[self.len..self.len + enc.len()].copy_from_slice(enc);
                self.len += enc.len();
            }
            Ok(())
        }
    }
}
