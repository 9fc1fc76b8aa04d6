//! The `thaw` binary's own commands, apart from the frontend library: `thaw run`, `thaw
//! snapshot`, `thaw store` and `thaw bench` (the only user of `thaw-bench`), plus where the data
//! directory is.
pub mod bench;
pub mod paths;
pub mod run;
pub mod snapshot;
mod worker;
