//! Hypercall round trip: a flat CPL3 guest loops `Next` -> `Response` -> `Next` ..., and each
//! iteration is one invocation through the hypercall ABI with no runtime in the way:
//! `provide_next`, the guest's `Response` exit, and its `Next` exit (two port-I/O exits).
//! DESIGN.md measured ~25-28 us per port-I/O exit on this hypervisor.
//! Prints `SKIPPED: no /dev/kvm` and measures nothing without KVM.
//! Run: `cargo bench -p thaw-vmm --bench hypercall`.
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use thaw_abi::{layout, Hypercall};
use thaw_vmm::asm::Asm;
use thaw_vmm::{kvm_or_skip, GuestEvent, NextInput, Vm, VmConfig};

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
