//! The process calls: argv (`args_*`), the environment (`environ_*`) and
//! `proc_exit`, which unwinds out of the module with [`Exit`].
use super::{with, Ctx, Exit};
use thaw_guest_wasi::records::{strings_get, strings_sizes};
use wasmtime::{Caller, Linker};

pub(super) fn add(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    register!(
        linker,
        args_sizes_get,
        args_get,
        environ_sizes_get,
        environ_get,
        proc_exit
    );
    Ok(())
}

fn args_sizes_get(mut caller: Caller<'_, Ctx>, count: i32, size: i32) -> i32 {
    with(&mut caller, |m, ctx| {
        strings_sizes(m, &ctx.args, count, size)
    })
}

fn args_get(mut caller: Caller<'_, Ctx>, ptrs: i32, buf: i32) -> i32 {
    with(&mut caller, |m, ctx| strings_get(m, &ctx.args, ptrs, buf))
}

fn environ_sizes_get(mut caller: Caller<'_, Ctx>, count: i32, size: i32) -> i32 {
    with(&mut caller, |m, ctx| {
        strings_sizes(m, &ctx.env, count, size)
    })
}

fn environ_get(mut caller: Caller<'_, Ctx>, ptrs: i32, buf: i32) -> i32 {
    with(&mut caller, |m, ctx| strings_get(m, &ctx.env, ptrs, buf))
}

fn proc_exit(code: i32) -> wasmtime::Result<()> {
    Err(wasmtime::Error::new(Exit(code)))
}
