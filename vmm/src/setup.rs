//! The boot state of a kernel-less guest: GDT and TSS, an identity page table of
//! 2 MiB pages, and vCPU registers for 64-bit mode at CPL3 with IOPL=3 and SSE/AVX.
//!
//! Layout (thaw_abi::layout): the first 2 MiB hold the system structures and are
//! mapped supervisor-only, so CPL3 code cannot rewrite its own page tables; the
//! 2 MiB below the stack stay unmapped, so a stack overflow faults (and, with no IDT,
//! ends the VM) instead of corrupting memory.
use crate::error::VmError;
use crate::memory::GuestAddress;
use crate::memory::GuestRam;
use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs, kvm_xcrs};
use kvm_ioctls::VcpuFd;
use thaw_abi::layout;

const PTE_PRESENT: u64 = 1;
const PTE_WRITE: u64 = 1 << 1;
const PTE_USER: u64 = 1 << 2;
const PTE_HUGE: u64 = 1 << 7;

/// GDT selectors (RPL included).
const USER_CS: u16 = 0x18 | 3;
const USER_DS: u16 = 0x20 | 3;
const TSS_SEL: u16 = 0x28;
/// TSS limit: the 0x68-byte TSS, an 8 KiB I/O bitmap and its terminator byte.
const TSS_LIMIT: u64 = 0x68 + 0x2000;

/// Control-register and EFER bits the guest runs with (Intel SDM vol. 3A, 2.5 and 2.2.1).
mod bits {
    /// CR0.PE: protected mode.
    pub const CR0_PE: u64 = 1 << 0;
    /// CR0.MP: WAIT/FWAIT honour TS.
    pub const CR0_MP: u64 = 1 << 1;
    /// CR0.ET: x87 present (hard-wired on modern CPUs).
    pub const CR0_ET: u64 = 1 << 4;
    /// CR0.NE: native x87 error reporting.
    pub const CR0_NE: u64 = 1 << 5;
    /// CR0.WP: read-only pages are read-only at CPL0 too.
    pub const CR0_WP: u64 = 1 << 16;
    /// CR0.PG: paging.
    pub const CR0_PG: u64 = 1 << 31;
    /// CR4.PAE: physical address extension (required for long mode).
    pub const CR4_PAE: u64 = 1 << 5;
    /// CR4.OSFXSR: FXSAVE/FXRSTOR and SSE.
    pub const CR4_OSFXSR: u64 = 1 << 9;
    /// CR4.OSXMMEXCPT: unmasked SIMD exceptions are #XM.
    pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
    /// CR4.OSXSAVE: XSAVE and XGETBV (AVX state).
    pub const CR4_OSXSAVE: u64 = 1 << 18;
    /// EFER.LME: long mode enable.
    pub const EFER_LME: u64 = 1 << 8;
    /// EFER.LMA: long mode active.
    pub const EFER_LMA: u64 = 1 << 10;

    pub const CR0: u64 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    pub const CR4: u64 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_OSXSAVE;
    pub const EFER: u64 = EFER_LME | EFER_LMA;

    // The values the VMM has always set.
    const _: () = assert!(CR0 == 0x8001_0033 && CR4 == 0x4_0620 && EFER == 0x500);
}

/// GDT descriptors (flat segments; base and limit are ignored in 64-bit mode but set
/// to 0 / 0xfffff with 4 KiB granularity as is conventional). Layout per Intel SDM
/// vol. 3A, 3.4.5: access byte at bits 40-47, flags (G, D/B, L) at 52-55.
mod descriptor {
    /// Access byte: present, DPL 0, code/data, execute/read, accessed.
    const KERNEL_CODE: u64 = 0x9b;
    /// Access byte: present, DPL 0, code/data, read/write, accessed.
    const KERNEL_DATA: u64 = 0x93;
    /// Access byte: present, DPL 3, code/data, execute/read, accessed.
    const USER_CODE: u64 = 0xfb;
    /// Access byte: present, DPL 3, code/data, read/write, accessed.
    const USER_DATA: u64 = 0xf3;
    /// Flags: G (4 KiB granularity) and L (64-bit code).
    const FLAGS_CODE64: u64 = 0xa;
    /// Flags: G and D/B (32-bit default operand size; data segments).
    const FLAGS_DATA: u64 = 0xc;

    /// A flat descriptor with `access` and `flags`.
    const fn flat(access: u64, flags: u64) -> u64 {
        0xffff | (access << 40) | (0xf << 48) | (flags << 52)
    }

    pub const KERNEL_CODE64: u64 = flat(KERNEL_CODE, FLAGS_CODE64);
    pub const KERNEL_DATA64: u64 = flat(KERNEL_DATA, FLAGS_DATA);
    pub const USER_CODE64: u64 = flat(USER_CODE, FLAGS_CODE64);
    pub const USER_DATA64: u64 = flat(USER_DATA, FLAGS_DATA);
    /// Access byte of an available 64-bit TSS, present, DPL 0.
    pub const TSS_AVAILABLE: u64 = 0x8b;

    // The raw values the VMM has always written.
    const _: () = assert!(
        KERNEL_CODE64 == 0x00af_9b00_0000_ffff
            && KERNEL_DATA64 == 0x00cf_9300_0000_ffff
            && USER_CODE64 == 0x00af_fb00_0000_ffff
            && USER_DATA64 == 0x00cf_f300_0000_ffff
    );
}

/// Writes the GDT, TSS and page tables for `ram`.
pub fn write_system_tables(ram: &GuestRam) -> Result<(), VmError> {
    // 1. GDT: null, kernel code/data (unused), user code64, user data, 64-bit TSS.
    let tss_lo = TSS_LIMIT
        | ((layout::TSS & 0xff_ffff) << 16)
        | (descriptor::TSS_AVAILABLE << 40)
        | (((layout::TSS >> 24) & 0xff) << 56);
    let tss_hi = layout::TSS >> 32;
    let gdt: [u64; 7] = [
        0,
        descriptor::KERNEL_CODE64,
        descriptor::KERNEL_DATA64,
        descriptor::USER_CODE64,
        descriptor::USER_DATA64,
        tss_lo,
        tss_hi,
    ];
    for (i, e) in gdt.iter().enumerate() {
        ram.write_obj(GuestAddress(layout::GDT + 8 * i as u64), e)?;
    }
    // 2. TSS with an all-zero I/O permission bitmap (every port allowed) followed by
    //    the 0xff terminator byte.
    ram.zero(GuestAddress(layout::TSS), TSS_LIMIT + 1)?;
    ram.write(GuestAddress(layout::TSS + 0x66), &0x68u16.to_le_bytes())?;
    ram.write(GuestAddress(layout::TSS + TSS_LIMIT), &[0xff])?;
    // 3. PML4[0] -> PDPT; PDPT[g] -> PD g; PD entries map 2 MiB pages.
    ram.write_obj(
        GuestAddress(layout::PML4),
        &(layout::PDPT | PTE_PRESENT | PTE_WRITE | PTE_USER),
    )?;
    let gib = ram.len().div_ceil(1 << 30);
    for g in 0..gib {
        let pd = layout::PD + g * 0x1000;
        ram.write_obj(
            GuestAddress(layout::PDPT + 8 * g),
            &(pd | PTE_PRESENT | PTE_WRITE | PTE_USER),
        )?;
    }
    for page in 0..ram.len() / thaw_abi::PAGE_2M {
        let addr = page * thaw_abi::PAGE_2M;
        let entry = if addr == layout::STACK_GUARD {
            0
        } else if addr == 0 {
            addr | PTE_PRESENT | PTE_WRITE | PTE_HUGE
        } else {
            addr | PTE_PRESENT | PTE_WRITE | PTE_USER | PTE_HUGE
        };
        ram.write_obj(GuestAddress(layout::PD + 8 * page), &entry)?;
    }
    Ok(())
}

fn segment(selector: u16, type_: u8, code: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: (selector & 3) as u8,
        db: u8::from(!code),
        s: 1,
        l: u8::from(code),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

fn io(step: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |e| VmError::SetupVcpu {
        step,
        source: std::io::Error::from_raw_os_error(e.errno()),
    }
}

/// Puts the vCPU in 64-bit mode at CPL3 about to run `entry`.
pub fn setup_vcpu(vcpu: &VcpuFd, entry: u64, avx: bool) -> Result<(), VmError> {
    let regs = kvm_regs {
        rip: entry,
        rsp: layout::STACK_TOP,
        rflags: 0x2 | 0x3000, // reserved bit 1, IOPL = 3
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(io("set regs"))?;
    let mut sregs: kvm_sregs = vcpu.get_sregs().map_err(io("get sregs"))?;
    sregs.cs = segment(USER_CS, 0xb, true);
    let data = segment(USER_DS, 0x3, false);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = kvm_segment {
        base: layout::TSS,
        limit: TSS_LIMIT as u32,
        selector: TSS_SEL,
        type_: 0xb,
        present: 1,
        s: 0,
        ..Default::default()
    };
    sregs.ldt = kvm_segment {
        type_: 2,
        present: 1,
        unusable: 1,
        ..Default::default()
    };
    sregs.gdt.base = layout::GDT;
    sregs.gdt.limit = 7 * 8 - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = bits::CR0;
    sregs.cr4 = bits::CR4;
    sregs.cr3 = layout::PML4;
    sregs.efer = bits::EFER;
    vcpu.set_sregs(&sregs).map_err(io("set sregs"))?;

    let mut xcrs = kvm_xcrs {
        nr_xcrs: 1,
        ..Default::default()
    };
    xcrs.xcrs[0].xcr = 0;
    xcrs.xcrs[0].value = if avx { 0x7 } else { 0x3 };
    vcpu.set_xcrs(&xcrs).map_err(io("set xcrs"))?;

    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(io("set fpu"))?;

    Ok(())
}
