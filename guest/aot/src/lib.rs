//! The host half of the guest's WebAssembly engine: [`guest_engine`] is the wasmtime
//! engine whose compiled output the guest (`guest/src/engine.rs`) can load. The guest
//! runs wasmtime's runtime without a compiler, so the host compiles with Cranelift for
//! target `x86_64-unknown-none`, with the engine settings both sides take from
//! `thaw_abi::engine`, plus the CPU features compiled code may use ([`CRANELIFT_FLAGS`]),
//! which the guest checks against its vCPU when it loads a module.
//!
//! It lives beside the guest because it is the other side of one contract: a change here
//! is a change to what the guest must accept.
use wasmtime::{Config, Engine, OptLevel};

/// CPU features compiled code may use: x86-64-v2 (every vCPU here has them; the
/// guest CPUID hides LZCNT, so it stays off). The guest checks them at load.
pub const CRANELIFT_FLAGS: [&str; 5] = [
    "has_sse3",
    "has_ssse3",
    "has_sse41",
    "has_sse42",
    "has_popcnt",
];

/// Builds the engine whose output the guest can load.
pub fn guest_engine() -> Result<Engine, wasmtime::Error> {
    let mut c = Config::new();
    c.target("x86_64-unknown-none")?;
    c.cranelift_opt_level(OptLevel::Speed);
    thaw_abi::apply_engine_settings!(&mut c);
    for flag in CRANELIFT_FLAGS {
        // SAFETY: wasmtime cannot check that the machine running the code has the
        // feature; here that machine is the guest, whose engine detects its vCPU's
        // features (cpuid) and refuses to load a module compiled for one it lacks, so
        // no instruction the vCPU lacks ever runs. An unknown flag makes
        // `Engine::new` fail.
        unsafe {
            c.cranelift_flag_enable(flag);
        }
    }
    Engine::new(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_the_guest_engine_builds_and_compiles_for_the_guest_target() {
        let engine = guest_engine().unwrap();
        let wasm = b"\0asm\x01\0\0\0";
        let compiled = engine.precompile_module(wasm).unwrap();
        assert!(
            compiled.starts_with(b"\x7fELF"),
            "a precompiled module is an ELF image"
        );
    }
}
