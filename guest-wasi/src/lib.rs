//! The parts of the guest's WASI preview 1 layer that touch nothing but the
//! module's linear memory, kept out of the freestanding guest crate so they build
//! and are tested on the host (the guest itself only builds for
//! `x86_64-unknown-none`): bounds-checked memory access ([`Mem`]), the WASI errno
//! values ([`errno`]) and the encoders and decoders of the records the calls
//! exchange ([`records`], [`poll`]). Every pointer is checked against the memory:
//! a bad one is `EFAULT`, never a panic.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod errno;
mod mem;
pub mod poll;
pub mod records;

pub use mem::Mem;
