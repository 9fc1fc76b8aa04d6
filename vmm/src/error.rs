//! Errors of the VMM. A guest can end its own VM with any of the `Guest*` variants;
//! none of them affects the host process or other VMs.
use thiserror::Error;

/// What went wrong with a microVM.
#[derive(Debug, Error)]
pub enum VmError {
    #[error("cannot open /dev/kvm")]
    OpenKvm(#[source] std::io::Error),
    #[error("KVM_CREATE_VM failed")]
    CreateVm(#[source] std::io::Error),
    #[error("KVM_CREATE_VCPU failed")]
    CreateVcpu(#[source] std::io::Error),
    #[error(
        "guest memory size {0} is not a non-zero multiple of 2 MiB within the supported maximum"
    )]
    MemorySize(u64),
    #[error("mapping guest memory failed")]
    MapMemory(#[source] std::io::Error),
    #[error("KVM_SET_USER_MEMORY_REGION failed")]
    SetMemoryRegion(#[source] std::io::Error),
    #[error("setting up vCPU state ({step}) failed")]
    SetupVcpu {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("reading vCPU state ({step}) failed")]
    SaveVcpu {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("guest range {addr:#x}+{len:#x} is outside guest RAM")]
    OutOfRange { addr: u64, len: u64 },
    #[error("guest program is not a loadable x86_64 ELF: {0}")]
    BadElf(String),
    #[error("KVM_RUN failed")]
    Run(#[source] std::io::Error),
    #[error("guest aborted: {message}")]
    GuestAbort { message: String },
    #[error("guest made an invalid hypercall: {0}")]
    GuestHypercall(String),
    #[error("guest stopped unexpectedly: {0}")]
    GuestExit(String),
    #[error("guest triple-faulted (KVM_EXIT_SHUTDOWN) at rip {rip:#x}: a fault with no handler, e.g. a stack overflow or a wild pointer")]
    GuestShutdown { rip: u64 },
    #[error("the vCPU was stopped by the host (timeout)")]
    Interrupted,
    #[error("the VM already failed and cannot run again")]
    Dead,
    #[error(
        "guest RAM is served by a pager: it can no longer be borrowed, remapped or paged again"
    )]
    RamPaged,
    #[error("a pager cannot serve this guest RAM: {0}")]
    PagerBacking(String),
    #[error("starting the guest RAM's pager failed")]
    Pager(#[source] thaw_pager::PagerError),
    #[error("payload of {len} bytes exceeds the {max}-byte limit")]
    PayloadTooLarge { len: u64, max: u64 },
}
