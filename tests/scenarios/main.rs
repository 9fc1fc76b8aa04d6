//! thaw's cross-crate integration tests: one test binary (each binary links the
//! engine and loads the ~60 MB runtime once), one scenario per module file. Every
//! test that needs KVM starts with `thaw_vmm::kvm_or_skip`.
#![forbid(unsafe_code)]

mod handler_errors;
mod hello;
mod hostile_runtime;
mod hypercall_cost;
mod inline;
mod lazy;
mod memory;
mod network;
mod packages;
mod payloads;
mod recycle;
mod snapshots;
mod timeout;
mod tmp;
mod wsimage;
