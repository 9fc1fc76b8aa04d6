//! Hypercall round trip: a flat CPL3 guest loops `Next` -> `Response` -> `Next` ..., and each
//! iteration is one invocation through the hypercall ABI with no runtime in the way:
//! `provide_next`, the guest's `Response` exit, and its `Next` exit (two port-I/O exits).
//! DESIGN.md measured ~25-28 us per port-I/O exit on this hypervisor.
//! Prints `SKIPPED: no /dev/kvm` and measures nothing without KVM.
//! Run: `cargo bench -p thaw-vmm --bench hypercall`.
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use thaw_abi::{layout, Hypercall, HYPERCALL_PORT};
use thaw_vmm::{kvm_or_skip, GuestEvent, NextInput, Vm, VmConfig};

/// A few x86_64 instructions (as in tests/hostile_guest.rs).
#[derive(Default)]
struct Asm(Vec<u8>);

impl Asm {
    fn hypercall(mut self, h: Hypercall) -> Self {
        self.0.extend([0x66, 0xba]);
        self.0.extend(HYPERCALL_PORT.to_le_bytes());
        self.0.push(0xb8);
        self.0.extend((h as u32).to_le_bytes());
        self.0.push(0xef);
        self
    }
    /// `mov rax, v; mov [addr], rax`
    fn store(mut self, addr: u64, v: u64) -> Self {
        self.0.extend([0x48, 0xb8]);
        self.0.extend(v.to_le_bytes());
        self.0.extend([0x48, 0xa3]);
        self.0.extend(addr.to_le_bytes());
        self
    }
    /// `jmp` back to offset 0.
    fn loop_to_start(mut self) -> Self {
        let rel = -(self.0.len() as i32 + 5);
        self.0.push(0xe9);
        self.0.extend(rel.to_le_bytes());
        self
    }
}

fn round_trip(c: &mut Criterion) {
    if !kvm_or_skip("hypercall round trip bench") {
        return;
    }
    let resp = Hypercall::Response.mailbox();
    let code = Asm::default()
        .hypercall(Hypercall::Next)
        .store(resp, 0)
        .store(resp + 8, 8)
        .store(resp + 16, 0)
        .hypercall(Hypercall::Response)
        .loop_to_start();
    let mut vm = Vm::new(&VmConfig {
        memory_bytes: 64 << 20,
    })
    .expect("create VM");
    vm.load_flat(&code.0).expect("load code");
    assert_eq!(vm.run().expect("first run"), GuestEvent::Next);
    let _ = layout::RESPONSE;
    c.bench_function("invoke_round_trip_next_response_next", |b| {
        b.iter(|| {
            let input = NextInput {
                header: b"{}",
                payload: b"abcdefgh",
                clock: vm.clock_now(),
                seed: [0; 32],
                restored: false,
            };
            vm.provide_next(&input).expect("provide next");
            match vm.run().expect("run to response") {
                GuestEvent::Response(r) => {
                    black_box(r.body.len());
                }
                other => panic!("expected a response, got {other:?}"),
            }
            assert_eq!(vm.run().expect("run to next"), GuestEvent::Next);
        })
    });
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
