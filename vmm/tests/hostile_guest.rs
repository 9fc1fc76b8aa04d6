//! A hostile guest: hand-assembled CPL3 code that makes malformed hypercalls, touches
//! memory it does not have and spins forever. Each case must end only its own VM with
//! a clear error; the host process (this test) carries on and can run more VMs.
use std::time::{Duration, Instant};
use thaw_abi::{layout, Hypercall, HYPERCALL_PORT};
use thaw_vmm::asm::Asm;
use thaw_vmm::{kvm_or_skip, Deadline, GuestEvent, NextInput, Vm, VmConfig, VmError};

fn vm_with(code: Asm) -> Vm {
    let mut vm = Vm::new(&VmConfig {
        memory_bytes: 64 << 20,
    })
    .expect("create VM");
    vm.load_flat(&code.0).expect("load code");
    vm
}

fn run_err(code: Asm) -> VmError {
    let mut vm = vm_with(code);
    let err = vm.run().expect_err("hostile guest must fail");
    assert!(
        matches!(vm.run(), Err(VmError::Dead)),
        "a failed VM must refuse to run again"
    );
    err
}

#[test]
fn test_valid_next_then_response_round_trip() {
    if !kvm_or_skip("test_valid_next_then_response_round_trip") {
        return;
    }
    // Next; then copy 8 bytes of the event into the response area; Response(Ok, 8).
    let resp = Hypercall::Response.mailbox();
    let code = Asm::default()
        .hypercall(Hypercall::Next)
        .load(layout::REQUEST + layout::REQUEST_PAYLOAD_OFFSET);
    let code = code
        .store_rax(layout::RESPONSE)
        .store(resp, 0)
        .store(resp + 8, 8)
        .store(resp + 16, 0)
        .hypercall(Hypercall::Response)
        .spin();
    let mut vm = vm_with(code);
    assert_eq!(vm.run().unwrap(), GuestEvent::Next);
    let input = NextInput {
        header: b"{}",
        payload: b"abcdefgh",
        clock: vm.clock_now(),
        seed: [1; 32],
        restored: false,
    };
    vm.provide_next(&input).unwrap();
    match vm.run().unwrap() {
        GuestEvent::Response(r) => assert_eq!(r.body, b"abcdefgh"),
        other => panic!("expected a response, got {other:?}"),
    }
}

#[test]
fn test_unknown_port_ends_vm() {
    if !kvm_or_skip("test_unknown_port_ends_vm") {
        return;
    }
    let err = run_err(Asm::default().mov_dx(0x3f8).mov_eax(0).out());
    assert!(
        matches!(&err, VmError::GuestHypercall(m) if m.contains("0x3f8")),
        "{err}"
    );
}

#[test]
fn test_unknown_hypercall_number_ends_vm() {
    if !kvm_or_skip("test_unknown_hypercall_number_ends_vm") {
        return;
    }
    let err = run_err(Asm::default().mov_dx(HYPERCALL_PORT).mov_eax(0xdead).out());
    assert!(
        matches!(&err, VmError::GuestHypercall(m) if m.contains("57005")),
        "{err}"
    );
}

#[test]
fn test_port_read_ends_vm() {
    if !kvm_or_skip("test_port_read_ends_vm") {
        return;
    }
    let err = run_err(Asm::default().mov_dx(HYPERCALL_PORT).input());
    assert!(matches!(err, VmError::GuestHypercall(_)), "{err}");
}

#[test]
fn test_huge_response_length_ends_vm() {
    if !kvm_or_skip("test_huge_response_length_ends_vm") {
        return;
    }
    let mb = Hypercall::Response.mailbox();
    let err = run_err(
        Asm::default()
            .store(mb, 0)
            .store(mb + 8, u64::MAX - 3)
            .hypercall(Hypercall::Response),
    );
    assert!(
        matches!(&err, VmError::GuestHypercall(m) if m.contains("response length")),
        "{err}"
    );
}

#[test]
fn test_huge_log_length_ends_vm() {
    if !kvm_or_skip("test_huge_log_length_ends_vm") {
        return;
    }
    let mb = Hypercall::Log.mailbox();
    let err = run_err(Asm::default().store(mb, 1 << 40).hypercall(Hypercall::Log));
    assert!(
        matches!(&err, VmError::GuestHypercall(m) if m.contains("log length")),
        "{err}"
    );
}

#[test]
fn test_bad_response_kind_ends_vm() {
    if !kvm_or_skip("test_bad_response_kind_ends_vm") {
        return;
    }
    let mb = Hypercall::Response.mailbox();
    let err = run_err(Asm::default().store(mb, 77).hypercall(Hypercall::Response));
    assert!(
        matches!(&err, VmError::GuestHypercall(m) if m.contains("kind")),
        "{err}"
    );
}

#[test]
fn test_wild_pointer_ends_vm() {
    if !kvm_or_skip("test_wild_pointer_ends_vm") {
        return;
    }
    // Unmapped in the guest page table: a page fault with no IDT -> shutdown.
    let err = run_err(Asm::default().load(0x7fff_0000_0000));
    assert!(
        matches!(err, VmError::GuestShutdown { .. } | VmError::GuestExit(_)),
        "{err}"
    );
}

#[test]
fn test_privileged_instruction_ends_vm() {
    if !kvm_or_skip("test_privileged_instruction_ends_vm") {
        return;
    }
    let err = run_err(Asm::default().hlt());
    assert!(
        matches!(err, VmError::GuestShutdown { .. } | VmError::GuestExit(_)),
        "{err}"
    );
}

#[test]
fn test_abort_message_is_reported() {
    if !kvm_or_skip("test_abort_message_is_reported") {
        return;
    }
    let mb = Hypercall::Abort.mailbox();
    let text = u64::from_le_bytes(*b"oh no!!!");
    let err = run_err(
        Asm::default()
            .store(mb, 8)
            .store(mb + 8, 0)
            .store(mb + 16, text)
            .hypercall(Hypercall::Abort),
    );
    assert!(
        matches!(&err, VmError::GuestAbort { message } if message == "oh no!!!"),
        "{err}"
    );
}

#[test]
fn test_infinite_loop_is_stopped_at_deadline() {
    if !kvm_or_skip("test_infinite_loop_is_stopped_at_deadline") {
        return;
    }
    spin_until_deadline(Duration::from_millis(200));
}

/// Runs a spinning guest with a deadline `after` from now: it must be stopped then.
fn spin_until_deadline(after: Duration) {
    let mut vm = vm_with(Asm::default().spin());
    let t0 = Instant::now();
    let _deadline = Deadline::arm(t0 + after, &vm.kicker());
    let err = vm.run().expect_err("spinning guest must be stopped");
    assert!(matches!(err, VmError::Interrupted), "{err}");
    assert!(t0.elapsed() >= after);
    assert!(
        t0.elapsed() < after + Duration::from_secs(10),
        "kick took {:?}",
        t0.elapsed()
    );
}

#[test]
fn test_earlier_deadline_armed_after_a_later_one_fires_on_time() {
    if !kvm_or_skip("test_earlier_deadline_armed_after_a_later_one_fires_on_time") {
        return;
    }
    // The watchdog sleeps until the earliest deadline; a later arming that is
    // earlier than that must wake it, and disarmed deadlines must not fire.
    let idle = vm_with(Asm::default().spin());
    let _far = Deadline::arm(Instant::now() + Duration::from_secs(600), &idle.kicker());
    drop(Deadline::arm(
        Instant::now() + Duration::from_millis(50),
        &idle.kicker(),
    ));
    spin_until_deadline(Duration::from_millis(300));
}

#[test]
fn test_run_slice_yields_and_resumes_on_another_thread() {
    if !kvm_or_skip("test_run_slice_yields_and_resumes_on_another_thread") {
        return;
    }
    // A quick guest: the event comes back within the slice.
    let mut quick = vm_with(Asm::default().hypercall(Hypercall::Next).spin());
    assert_eq!(
        quick.run_slice(Duration::from_millis(50)).unwrap(),
        Some(GuestEvent::Next)
    );
    // Busy work longer than a slice: run_slice yields (Ok(None)) and the guest
    // carries on where it was, on whichever thread resumes it, until its hypercall.
    let mut vm = vm_with(
        Asm::default()
            .count_down(400_000_000)
            .hypercall(Hypercall::Next)
            .spin(),
    );
    let t0 = Instant::now();
    let mut yields = 0u32;
    let event = loop {
        let slice = Duration::from_millis(1);
        let step = if yields.is_multiple_of(2) {
            vm.run_slice(slice).unwrap()
        } else {
            std::thread::scope(|s| s.spawn(|| vm.run_slice(slice)).join().unwrap()).unwrap()
        };
        match step {
            Some(event) => break event,
            None => yields += 1,
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "guest never finished"
        );
    };
    assert_eq!(event, GuestEvent::Next);
    assert!(yields >= 2, "only {yields} yields in {:?}", t0.elapsed());
    // A spinning guest is yielded again and again; a deadline still ends it.
    let mut spin = vm_with(Asm::default().spin());
    for _ in 0..3 {
        let t = Instant::now();
        assert_eq!(spin.run_slice(Duration::from_millis(2)).unwrap(), None);
        assert!(t.elapsed() >= Duration::from_millis(2));
    }
    let _deadline = Deadline::arm(Instant::now() + Duration::from_millis(50), &spin.kicker());
    let err = spin
        .run_slice(Duration::from_secs(30))
        .expect_err("deadline");
    assert!(matches!(err, VmError::Interrupted), "{err}");
    assert!(matches!(spin.run(), Err(VmError::Dead)));
}

#[test]
fn test_host_survives_many_hostile_vms() {
    if !kvm_or_skip("test_host_survives_many_hostile_vms") {
        return;
    }
    for i in 0..20u32 {
        let code = match i % 4 {
            0 => Asm::default().mov_dx(i as u16).out(),
            1 => Asm::default().load(0x10_0000_0000 + u64::from(i)),
            2 => Asm::default()
                .mov_dx(HYPERCALL_PORT)
                .mov_eax(1000 + i)
                .out(),
            _ => Asm::default().hlt(),
        };
        run_err(code);
    }
    // Still able to run a well-behaved guest.
    let mut vm = vm_with(Asm::default().hypercall(Hypercall::Next));
    assert_eq!(vm.run().unwrap(), GuestEvent::Next);
}

#[test]
fn test_response_riding_on_next_is_validated() {
    if !kvm_or_skip("test_response_riding_on_next_is_validated") {
        return;
    }
    // NextMailbox: ..., restored @72, response_flags @76, response_kind @80, response_len @88.
    let mb = Hypercall::Next.mailbox();
    let flags = u64::from(thaw_abi::NEXT_HAS_RESPONSE) << 32;
    let huge = Asm::default()
        .store(mb + 72, flags)
        .store(mb + 80, 0)
        .store(mb + 88, u64::MAX / 2)
        .hypercall(Hypercall::Next);
    let err = run_err(huge);
    assert!(
        matches!(&err, VmError::GuestHypercall(m) if m.contains("response length")),
        "{err}"
    );
    let bad_kind = Asm::default()
        .store(mb + 72, flags)
        .store(mb + 80, 9)
        .store(mb + 88, 4)
        .hypercall(Hypercall::Next);
    let err = run_err(bad_kind);
    assert!(
        matches!(&err, VmError::GuestHypercall(m) if m.contains("kind")),
        "{err}"
    );
}

#[test]
fn test_mailbox_offsets_match_the_abi() {
    // The hand-assembled guests above poke NextMailbox fields by offset.
    let m = thaw_abi::NextMailbox::default();
    let base = &m as *const _ as usize;
    assert_eq!(&m.response_flags as *const _ as usize - base, 76);
    assert_eq!(&m.response_kind as *const _ as usize - base, 80);
    assert_eq!(&m.response_len as *const _ as usize - base, 88);
    assert_eq!(&m.mem_used as *const _ as usize - base, 96);
}

#[test]
fn test_reported_memory_use_is_clamped_to_guest_ram() {
    if !kvm_or_skip("test_reported_memory_use_is_clamped_to_guest_ram") {
        return;
    }
    // NextMailbox::mem_used @96: a plausible figure is kept (the peak), a wild one
    // is cut to the guest's RAM.
    let mb = Hypercall::Next.mailbox();
    let code = Asm::default()
        .store(mb + 96, 5 << 20)
        .hypercall(Hypercall::Next)
        .store(mb + 96, 3 << 20)
        .hypercall(Hypercall::Next)
        .store(mb + 96, u64::MAX)
        .hypercall(Hypercall::Next)
        .spin();
    let mut vm = vm_with(code);
    assert_eq!(vm.run().unwrap(), GuestEvent::Next);
    assert_eq!(vm.guest_memory_peak(), 5 << 20);
    assert_eq!(vm.run().unwrap(), GuestEvent::Next);
    assert_eq!(
        vm.guest_memory_peak(),
        5 << 20,
        "the peak, not the last figure"
    );
    assert_eq!(vm.run().unwrap(), GuestEvent::Next);
    assert_eq!(vm.guest_memory_peak(), vm.ram().len());
}

/// The `Net` hypercall against a real socket host.
#[path = "hostile_guest/net.rs"]
mod net;
