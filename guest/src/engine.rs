//! The WebAssembly engine: wasmtime's runtime (no compiler) loads the module the
//! host precompiled with Cranelift for exactly this configuration, in place from
//! guest RAM, and runs its `_start`.
//!
//! The configuration must equal the host's precompile configuration
//! (`worker/src/compile.rs`); wasmtime refuses a mismatched module at load time.
use crate::platform::{detect_feature, GuestCodeMemory};
use crate::vfs::Tree;
use crate::wasi::{Ctx, Exit};
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;
use thaw_abi::BootInfo;
use wasmtime::{Config, Engine, Linker, Module, Store};

/// The engine settings shared with the host's compiler ([`thaw_abi::engine`]), plus the
/// guest's own code memory and CPU feature detection.
fn config() -> Config {
    let mut c = Config::new();
    thaw_abi::apply_engine_settings!(&mut c);
    c.with_custom_code_memory(Some(Arc::new(GuestCodeMemory)));
    // SAFETY: the guest's Rust code is built soft-float, but it never calls or is
    // called by compiled wasm code with float arguments: the module is compiled with
    // SSE4.1, so wasmtime needs no float libcalls, and the VMM enables SSE/AVX.
    unsafe {
        c.x86_float_abi_ok(true);
        c.detect_host_feature(detect_feature);
    }
    c
}

/// A slice of guest RAM described by the boot info.
///
/// # Safety
/// `[addr, addr + len)` must be mapped guest RAM that nothing writes for the rest
/// of the VM's life (outside the heap, the linear memory and the guest program):
/// the VMM places the module image, the files and the configuration archive so.
unsafe fn region(addr: u64, len: u64) -> &'static [u8] {
    // SAFETY: the caller guarantees the range is mapped and never written again.
    unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) }
}

/// argv and environment from the configuration archive (`argv/NNNN`, `env/NAME`).
fn process_config(boot: &BootInfo) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut args, mut env) = (Vec::new(), Vec::new());
    // SAFETY: the configuration archive is a boot-info region the VMM wrote before
    // boot and never changes (see `region`).
    let config = unsafe { region(boot.config_addr, boot.config_len) };
    for (name, value) in thaw_abi::files::entries(config) {
        let mut s = Vec::new();
        if name.starts_with(b"argv/") {
            s.extend_from_slice(value);
            s.push(0);
            args.push(s);
        } else if let Some(key) = name.strip_prefix(b"env/") {
            s.extend_from_slice(key);
            s.push(b'=');
            s.extend_from_slice(value);
            s.push(0);
            env.push(s);
        }
    }
    (args, env)
}

/// Loads and runs the module; returns its exit status or an error message.
pub fn run(boot: &BootInfo) -> Result<i32, String> {
    let mut cfg = config();
    // The linear memory in its own region, grown in place (crate::memory); not part
    // of the precompile configuration (it only decides where memory lives).
    cfg.with_host_memory(Arc::new(crate::memory::RegionCreator::new(
        boot.memory_start,
        boot.memory_end,
    )));
    let engine = Engine::new(&cfg).map_err(|e| alloc::format!("engine: {e:?}"))?;
    // SAFETY: the module image is a boot-info region the VMM wrote before boot
    // and never changes (see `region`).
    let image = unsafe { region(boot.module_addr, boot.module_len) };
    // SAFETY: the image is page aligned in guest RAM, stays mapped (RWX) for the
    // VM's life and nothing else writes it.
    let module = unsafe { Module::deserialize_raw(&engine, NonNull::from(image)) }
        .map_err(|e| alloc::format!("loading the precompiled module: {e:?}"))?;
    // SAFETY: the files archive is a boot-info region the VMM wrote before boot
    // and never changes (see `region`).
    let tree = Tree::from_archive(unsafe { region(boot.files_addr, boot.files_len) });
    let (args, env) = process_config(boot);
    // A limit past the address space is no limit: MemorySize still bounds /tmp.
    let tmp_limit = usize::try_from(boot.tmp_limit).unwrap_or(usize::MAX);
    let limits = crate::memory::Budget {
        limit: u64::from(boot.memory_mb) << 20,
    };
    let mut store = Store::new(&engine, Ctx::new(tree, args, env, limits, tmp_limit));
    store.limiter(|ctx| &mut ctx.limits);
    let mut linker = Linker::new(&engine);
    crate::wasi::add_to_linker(&mut linker).map_err(|e| alloc::format!("linking WASI: {e:?}"))?;
    let instance = linker
        .instantiate(&mut store, &module)
        .map_err(|e| alloc::format!("instantiating the module: {e:?}"))?;
    let memory = instance
        .get_memory(&mut store, "memory")
        .ok_or_else(|| "module exports no memory".to_string())?;
    store.data_mut().memory = Some(memory);
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .map_err(|e| alloc::format!("module has no _start: {e:?}"))?;
    match start.call(&mut store, ()) {
        Ok(()) => Ok(0),
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(Exit(code)) => Ok(*code),
            None => Err(alloc::format!("runtime trapped: {e:?}")),
        },
    }
}
