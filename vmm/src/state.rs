//! Saving and restoring a microVM's vCPU (Firecracker's persist pattern): `VmState`
//! is the plain, serialisable mirror of everything a CPL3 guest depends on besides
//! its RAM, which goes to the chunk store, never through serde.
//!
//! Save order (`Vm::save_state`), with the reasons:
//! 1. Complete the pending `out`: set `immediate_exit` and run once (KVM returns
//!    EINTR after finishing the instruction), so RIP points past the hypercall and
//!    a restored vCPU resumes as if the call had returned.
//! 2. Registers, segment/control registers, XCRs.
//! 3. XSAVE after XCRs (its layout depends on XCR0).
//! 4. MSRs last: FS/GS/KERNEL_GS bases, TSC_AUX and the TSC, read as late as
//!    possible so the saved TSC is close to the memory snapshot's moment.
//!
//! Restore applies the same order: sregs before regs (mode first), XCRs before
//! XSAVE, MSRs last; then measures the guest-TSC offset for clock anchors.
use crate::error::VmError;
use crate::memory::GuestRam;
use crate::vm::Vm;
use kvm_bindings::{kvm_msr_entry, kvm_regs, kvm_sregs, kvm_xcrs, kvm_xsave, Msrs};
use serde::{Deserialize, Serialize};
use thaw_abi::Hypercall;

/// MSRs a CPL3 guest depends on.
const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_TSC_AUX: u32 = 0xc000_0103;
const MSR_IA32_TSC: u32 = 0x10;
const SAVED_MSRS: [u32; 5] = [
    MSR_FS_BASE,
    MSR_GS_BASE,
    MSR_KERNEL_GS_BASE,
    MSR_TSC_AUX,
    MSR_IA32_TSC,
];

/// Everything but RAM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmState {
    pub ram_size: u64,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub xcrs: kvm_xcrs,
    /// The 4 KiB legacy XSAVE region (`kvm_xsave::region`).
    pub xsave: Vec<u32>,
    /// `(index, value)` of `SAVED_MSRS`.
    pub msrs: Vec<(u32, u64)>,
    pub tsc_khz: u64,
    /// The hypercall the guest was parked in (its number).
    pub pending: Option<u32>,
}

fn save_err(step: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |e| VmError::SaveVcpu {
        step,
        source: std::io::Error::from_raw_os_error(e.errno()),
    }
}

fn setup_err(step: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |e| VmError::SetupVcpu {
        step,
        source: std::io::Error::from_raw_os_error(e.errno()),
    }
}

fn msrs_of(entries: &[kvm_msr_entry]) -> Result<Msrs, VmError> {
    Msrs::from_entries(entries).map_err(|_| VmError::SaveVcpu {
        step: "msr list",
        source: std::io::Error::other("too many MSRs"),
    })
}

impl Vm {
    /// Captures the vCPU state; the guest must be parked in a hypercall.
    pub fn save_state(&mut self) -> Result<VmState, VmError> {
        let pending = self.pending();
        if pending.is_none() {
            return Err(VmError::GuestExit(
                "save_state needs the guest parked in a hypercall".into(),
            ));
        }
        // 1. Finish the `out` so RIP moves past it.
        self.complete_io()?;
        // 2-4. See the module doc for the order.
        let vcpu = self.vcpu();
        let regs = vcpu.get_regs().map_err(save_err("regs"))?;
        let sregs = vcpu.get_sregs().map_err(save_err("sregs"))?;
        let xcrs = vcpu.get_xcrs().map_err(save_err("xcrs"))?;
        let xsave = vcpu.get_xsave().map_err(save_err("xsave"))?;
        let entries: Vec<kvm_msr_entry> = SAVED_MSRS
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = msrs_of(&entries)?;
        let n = vcpu.get_msrs(&mut msrs).map_err(save_err("msrs"))?;
        let msrs = msrs.as_slice()[..n]
            .iter()
            .map(|e| (e.index, e.data))
            .collect();
        Ok(VmState {
            ram_size: self.ram().len(),
            regs,
            sregs,
            xcrs,
            xsave: xsave.region.to_vec(),
            msrs,
            tsc_khz: self.tsc_khz(),
            pending: pending.map(|h| h as u32),
        })
    }

    /// Creates a VM over `ram` (already holding the snapshot's memory) and loads `state`.
    pub fn restore(ram: GuestRam, state: &VmState) -> Result<Self, VmError> {
        let mut vm = Vm::with_ram(ram)?;
        vm.load_state(state)?;
        Ok(vm)
    }

    /// Loads `state` into this VM's vCPU (a fresh VM whose RAM already holds the
    /// snapshot's memory, or will be filled lazily by a pager).
    pub fn load_state(&mut self, state: &VmState) -> Result<(), VmError> {
        if self.ram().len() != state.ram_size {
            return Err(VmError::MemorySize(self.ram().len()));
        }
        let vm = self;
        let pending = match state.pending {
            Some(nr) => Some(Hypercall::from_u32(nr).ok_or_else(|| {
                VmError::GuestExit(format!("saved state has unknown hypercall {nr}"))
            })?),
            None => None,
        };
        let vcpu = vm.vcpu();
        vcpu.set_sregs(&state.sregs)
            .map_err(setup_err("set sregs"))?;
        vcpu.set_regs(&state.regs).map_err(setup_err("set regs"))?;
        vcpu.set_xcrs(&state.xcrs).map_err(setup_err("set xcrs"))?;
        let mut xsave = kvm_xsave::default();
        if state.xsave.len() != xsave.region.len() {
            return Err(VmError::GuestExit(format!(
                "saved XSAVE area has {} words, expected {}",
                state.xsave.len(),
                xsave.region.len()
            )));
        }
        xsave.region.copy_from_slice(&state.xsave);
        // SAFETY: the xsave area came from KVM_GET_XSAVE of a vCPU with the same
        // CPUID (the host's supported set), so it is a layout KVM accepts; a
        // malformed one is rejected by the ioctl, not misread.
        unsafe { vcpu.set_xsave(&xsave) }.map_err(setup_err("set xsave"))?;
        let entries: Vec<kvm_msr_entry> = state
            .msrs
            .iter()
            .map(|&(index, data)| kvm_msr_entry {
                index,
                data,
                ..Default::default()
            })
            .collect();
        vcpu.set_msrs(&msrs_of(&entries)?)
            .map_err(setup_err("set msrs"))?;
        vm.measure_tsc_offset()?;
        vm.set_pending(pending);
        Ok(())
    }

    /// Makes this VM a fresh restore of a snapshot again, for the next instance of the
    /// same snapshot (the caller resets guest RAM to the snapshot's bytes; this resets
    /// the rest): the pending `out` is completed, the vCPU gets `state` (registers,
    /// segments and control registers, XSAVE, XCRs, the MSRs a snapshot carries), and
    /// the per-instance host state goes: the log, reported phases and memory peak,
    /// the sockets (closed), and the kicker (handles the last instance gave out, e.g.
    /// to a timeout watchdog, no longer reach this vCPU).
    ///
    /// A CPL3 guest can change nothing else of its vCPU: the first 2 MiB of guest RAM
    /// (GDT, TSS, page tables) is mapped supervisor-only ([`crate::setup`]), so it
    /// cannot reach CPL0 or touch the MSRs, descriptor tables or its own page tables.
    /// A VM that died (a fault, a bad hypercall) is refused.
    pub fn reset_to(&mut self, state: &VmState) -> Result<(), VmError> {
        self.clear_instance()?;
        self.load_state(state)
    }

    /// Guest TSC minus host TSC, so clock anchors match what the guest reads.
    fn measure_tsc_offset(&mut self) -> Result<(), VmError> {
        let mut msrs = msrs_of(&[kvm_msr_entry {
            index: MSR_IA32_TSC,
            ..Default::default()
        }])?;
        let host = crate::vm::host_tsc();
        self.vcpu().get_msrs(&mut msrs).map_err(save_err("tsc"))?;
        let guest = msrs.as_slice()[0].data;
        self.set_tsc_offset(guest.wrapping_sub(host) as i64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Persisted components must survive save -> serialise -> restore -> compare.
    macro_rules! round_trip {
        ($value:expr) => {{
            let v = $value;
            let json = serde_json::to_vec(&v).expect("serialise");
            let back = serde_json::from_slice(&json).expect("deserialise");
            assert_eq!(v, back);
        }};
    }

    #[test]
    fn test_vm_state_round_trips_through_serde() {
        let mut state = VmState {
            ram_size: 64 << 20,
            regs: kvm_regs {
                rip: 0x200123,
                rsp: 0x2bf_fff0,
                rflags: 0x3202,
                rax: 7,
                ..Default::default()
            },
            sregs: kvm_sregs {
                cr0: 0x8001_0033,
                cr3: 0x3000,
                cr4: 0x40620,
                efer: 0x500,
                ..Default::default()
            },
            xcrs: kvm_xcrs {
                nr_xcrs: 1,
                ..Default::default()
            },
            xsave: vec![0; 1024],
            msrs: vec![(MSR_FS_BASE, 0x1234), (MSR_IA32_TSC, 99)],
            tsc_khz: 2_000_000,
            pending: Some(Hypercall::Next as u32),
        };
        state.xsave[7] = 0xdead_beef;
        round_trip!(state);
    }

    #[test]
    fn test_saved_state_from_a_live_vm_restores() {
        if !crate::kvm_or_skip("test_saved_state_from_a_live_vm_restores") {
            return;
        }
        // A guest parked in Next: save, restore into a new VM with a copy of RAM,
        // compare the restored registers with the saved ones.
        let code = [0x66, 0xba, 0xa1, 0x0c, 0xb8, 2, 0, 0, 0, 0xef, 0xeb, 0xfe];
        let mut vm = Vm::new(&crate::VmConfig {
            memory_bytes: 32 << 20,
        })
        .unwrap();
        vm.load_flat(&code).unwrap();
        assert_eq!(vm.run().unwrap(), crate::GuestEvent::Next);
        let state = vm.save_state().unwrap();
        assert_eq!(
            state.regs.rip,
            thaw_abi::layout::ELF_BASE + 10,
            "RIP must be past the out"
        );
        let ram = GuestRam::new(32 << 20, crate::Backing::Anonymous).unwrap();
        ram.write(crate::GuestAddress(0), vm.ram_mut().bytes().unwrap())
            .unwrap();
        let restored = Vm::restore(ram, &state).unwrap();
        let again = restored.vcpu().get_regs().unwrap();
        assert_eq!(again.rip, state.regs.rip);
        assert_eq!(again.rsp, state.regs.rsp);
        assert_eq!(restored.pending(), Some(Hypercall::Next));
    }
}
