//! Builds the freestanding guest (guest/, target x86_64-unknown-none) with its own
//! cargo invocation and hands its path to the worker, which embeds it.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let guest = manifest
        .join("../guest")
        .canonicalize()
        .expect("guest/ next to worker/");
    for p in [
        "src",
        "Cargo.toml",
        "Cargo.lock",
        "link.ld",
        "build.rs",
        ".cargo/config.toml",
        "../abi/src",
        "../guestfs/src",
        "../guest-wasi/src",
    ] {
        println!("cargo:rerun-if-changed={}", guest.join(p).display());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = guest.join("target");
    // The guest reads its own .cargo/config.toml (target, link flags), which cargo
    // finds from the working directory; host-only settings must not leak into it.
    let status = Command::new(cargo)
        .current_dir(&guest)
        .args(["build", "--release", "--locked", "--target-dir"])
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_PROFILE_RELEASE_DEBUG")
        .status()
        .expect("run cargo for the guest");
    assert!(status.success(), "building the guest failed (is the x86_64-unknown-none target installed? run scripts/setup.sh)");
    let elf = target_dir.join("x86_64-unknown-none/release/thaw-guest");
    println!("cargo:rustc-env=THAW_GUEST_ELF={}", elf.display());
}
