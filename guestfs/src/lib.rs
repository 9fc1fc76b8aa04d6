//! The guest's file trees, kept out of the freestanding guest crate so they build
//! and are tested on the host (the guest itself only builds for
//! `x86_64-unknown-none`): the read-only tree of the function's and runtime's
//! files ([`Tree`]), the writable in-memory `/tmp` ([`TmpFs`]) and path
//! normalisation ([`normalize`]).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod path;
mod tmp;
mod tree;

pub use path::{normalize, parent};
pub use tmp::{TmpData, TmpError, TmpFs, DEFAULT_TMP_LIMIT, TMP_DIR};
pub use tree::{Entry, Tree};
