//! thaw's VMM: one kernel-less KVM microVM per [`Vm`].
//!
//! The guest is a freestanding program started at CPL3 in 64-bit mode (no guest
//! kernel: on this platform kernel-mode guest code is emulated thousands of times
//! slower). The VMM owns guest RAM ([`memory`]; served by a userfaultfd pager: [`paged`]), the boot structures ([`setup`]),
//! the ELF loader ([`elf`]), the exit loop and hypercall validation ([`vm`]), the
//! timeout kick ([`kick`]) and vCPU state save/restore ([`state`]).
pub mod asm;
pub mod elf;
pub mod error;
pub mod kick;
pub mod memory;
pub mod net;
pub mod paged;
pub mod setup;
pub mod state;
pub mod vm;

pub use error::VmError;
pub use kick::{Deadline, Kicker};
pub use memory::{Backing, GuestAddress, GuestRam, GuestRange, HostAddr};
pub use net::{NetCall, NetHost, NetReply};
pub use vm::{GuestEvent, NextInput, Response, Vm, VmConfig};

/// True when this machine can run VMs.
pub fn kvm_available() -> bool {
    std::path::Path::new("/dev/kvm").exists()
}

/// The one gate for KVM tests: false (after a loud SKIPPED line) when /dev/kvm is
/// missing, so such tests never pass silently.
pub fn kvm_or_skip(test: &str) -> bool {
    if kvm_available() {
        return true;
    }
    eprintln!("SKIPPED: no /dev/kvm: {test} did not run");
    println!("SKIPPED: no /dev/kvm: {test} did not run");
    false
}
