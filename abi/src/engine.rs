//! The wasmtime settings the host compiles the runtime with and the guest loads it with.
//! A precompiled module only loads into an engine configured exactly like the one that
//! compiled it, so both sides (`worker/src/compile.rs`, `guest/src/engine.rs`) take these
//! values from here rather than stating them twice.

/// Native stack the wasm code may use (the guest's stack is 8 MiB).
pub const MAX_WASM_STACK: usize = 4 << 20;
/// Stack of the async fiber that runs wasm: the wasm stack plus 1 MiB for host calls.
pub const ASYNC_STACK_SIZE: usize = MAX_WASM_STACK + (1 << 20);
/// Virtual reservation for a linear memory: none (the guest places linear memory in its
/// own region and grows it in place, with explicit bounds checks).
pub const MEMORY_RESERVATION: u64 = 0;
/// Guard region after a linear memory: none (bounds are checked explicitly).
pub const MEMORY_GUARD_SIZE: u64 = 0;
/// Extra reservation for growth: none.
pub const MEMORY_RESERVATION_FOR_GROWTH: u64 = 0;
/// Copy-on-write memory initialisation needs an OS: off.
pub const MEMORY_INIT_COW: bool = false;
/// Traps through signal handlers need an OS: off (explicit checks instead).
pub const SIGNALS_BASED_TRAPS: bool = false;

/// Applies every setting above to a `wasmtime::Config` (the caller's wasmtime: the host's
/// and the guest's are separate builds of the same version, so this is a macro).
#[macro_export]
macro_rules! apply_engine_settings {
    ($config:expr) => {{
        use $crate::engine as e;
        let c = $config;
        c.signals_based_traps(e::SIGNALS_BASED_TRAPS);
        c.memory_reservation(e::MEMORY_RESERVATION);
        c.memory_guard_size(e::MEMORY_GUARD_SIZE);
        c.memory_reservation_for_growth(e::MEMORY_RESERVATION_FOR_GROWTH);
        c.memory_init_cow(e::MEMORY_INIT_COW);
        c.max_wasm_stack(e::MAX_WASM_STACK);
        c.async_stack_size(e::ASYNC_STACK_SIZE);
    }};
}
