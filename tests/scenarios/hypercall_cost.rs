//! Issue 2: what one hypercall exit costs. A hand-assembled CPL3 guest (as in
//! vmm/tests/hostile_guest.rs) makes N `Log` hypercalls of zero bytes in a loop,
//! then blocks in `Next`; the time per exit is (t(N) - t(0)) / N. Prints with
//! `--nocapture`.
use std::time::{Duration, Instant};
use thaw_abi::{Hypercall, HYPERCALL_PORT};
use thaw_vmm::{kvm_or_skip, GuestEvent, Vm, VmConfig};

/// `mov ecx, n; L: mov dx, PORT; mov eax, Log; out dx, eax; dec ecx; jnz L;
/// mov dx, PORT; mov eax, Next; out dx, eax; jmp $`.
fn exits_then_next(n: u32) -> Vec<u8> {
    let mut c = vec![0xb9];
    c.extend(n.to_le_bytes());
    let body_start = c.len();
    let call = |c: &mut Vec<u8>, h: Hypercall| {
        c.extend([0x66, 0xba]);
        c.extend(HYPERCALL_PORT.to_le_bytes());
        c.push(0xb8);
        c.extend((h as u32).to_le_bytes());
        c.push(0xef);
    };
    if n > 0 {
        call(&mut c, Hypercall::Log);
        c.extend([0xff, 0xc9]); // dec ecx
        let rel = body_start as i64 - (c.len() as i64 + 2);
        c.extend([0x75, rel as i8 as u8]); // jnz L
    }
    call(&mut c, Hypercall::Next);
    c.extend([0xeb, 0xfe]);
    c
}

fn time_run(n: u32) -> Duration {
    let mut vm = Vm::new(&VmConfig {
        memory_bytes: 64 << 20,
    })
    .expect("create VM");
    vm.load_flat(&exits_then_next(n)).expect("load code");
    let t0 = Instant::now();
    assert_eq!(vm.run().expect("run"), GuestEvent::Next);
    t0.elapsed()
}

#[test]
fn test_hypercall_exit_cost() {
    if !kvm_or_skip("test_hypercall_exit_cost") {
        return;
    }
    const N: u32 = 20_000;
    let base = thaw_tests::median((0..5).map(|_| time_run(0)).collect());
    let many = thaw_tests::median((0..5).map(|_| time_run(N)).collect());
    let per_exit = many.saturating_sub(base) / N;
    eprintln!("hypercall exit round trip: {per_exit:?} per exit ({N} Log exits in {many:?}; first entry + Next alone {base:?})");
    assert!(
        per_exit < Duration::from_millis(1),
        "an exit costs {per_exit:?}"
    );
}
