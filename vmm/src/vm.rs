//! One microVM: a KVM VM with one memslot and one vCPU, and the exit loop that turns
//! port-I/O exits into validated guest events.
//!
//! Run loop (`Vm::run`):
//! 1. Refuse to run a VM that already failed, or one that was asked to stop.
//! 2. KVM_RUN until an exit; EINTR means a kick (timeout) -> `Interrupted`.
//! 3. A write of a known call number to `HYPERCALL_PORT` is decoded from its
//!    mailbox, every field checked (lengths capped, ranges inside guest RAM).
//!    `Log` and `Phase` are handled here and the guest resumed; `Next` and
//!    `Response` are returned to the caller; `Abort` ends the VM.
//! 4. Anything else (other ports, port reads, MMIO, HLT, shutdown, entry failures)
//!    ends the VM with an error naming what the guest did.
use crate::error::VmError;
use crate::kick::Kicker;
use crate::memory::GuestAddress;
use crate::memory::{Backing, GuestRam};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use std::time::{Duration, Instant};
use thaw_abi::{
    layout, AbortMailbox, BootInfo, Clock, Hypercall, LogMailbox, NextMailbox, PhaseMailbox,
    ResponseKind, ResponseMailbox, HYPERCALL_PORT, MAX_PAYLOAD, NEXT_HAS_RESPONSE,
    NEXT_RESPONSE_TRUNCATED,
};

/// Most log bytes kept per VM between `take_log` calls (older bytes are dropped).
const LOG_KEEP: usize = 8 << 20;

/// What the guest asked for when `run` returned.
#[derive(Debug, PartialEq, Eq)]
pub enum GuestEvent {
    /// Blocked waiting for the next invocation (call `provide_next`, then `run`).
    Next,
    /// A response. When it rode on `Next` the guest is already parked again
    /// (`pending() == Some(Next)`); otherwise it continues on the following `run`.
    Response(Response),
}

/// A validated response body.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub kind: ResponseKind,
    pub body: Vec<u8>,
    /// The guest produced more than `MAX_PAYLOAD` bytes.
    pub too_large: bool,
}

/// The next invocation as the VMM hands it to the guest.
#[derive(Debug)]
pub struct NextInput<'a> {
    pub header: &'a [u8],
    pub payload: &'a [u8],
    pub clock: Clock,
    pub seed: [u8; 32],
    pub restored: bool,
}

/// Guest memory and the VM's configuration.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub memory_bytes: u64,
}

/// A microVM.
#[derive(Debug)]
pub struct Vm {
    /// Kept open for the VM's life (dropped first: fields drop in order).
    _vm: VmFd,
    vcpu: VcpuFd,
    pub(crate) ram: GuestRam,
    kicker: Kicker,
    log: Vec<u8>,
    /// Log bytes dropped (oldest first) since the last `take_log`.
    log_dropped: u64,
    /// The hypercall the vCPU is stopped in, if any.
    pending: Option<Hypercall>,
    /// The most memory the guest reported in use (`NextMailbox::mem_used`, clamped).
    guest_mem_peak: u64,
    dead: bool,
    tsc_khz: u64,
    avx: bool,
    /// Guest TSC minus host TSC.
    tsc_offset: i64,
    /// Phases the guest reported, with host timestamps.
    phases: Vec<(u32, std::time::Instant)>,
    /// The host serving the guest's sockets ([`crate::net`]); `None`: no network.
    pub(crate) net: Option<Box<dyn crate::net::NetHost>>,
}

fn kvm_err(f: fn(std::io::Error) -> VmError) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |e| f(std::io::Error::from_raw_os_error(e.errno()))
}

/// Reads the host TSC.
pub fn host_tsc() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Wall clock now, in nanoseconds since the epoch.
pub fn epoch_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Vm {
    /// Creates a VM with fresh anonymous RAM.
    pub fn new(cfg: &VmConfig) -> Result<Self, VmError> {
        let ram = GuestRam::new(cfg.memory_bytes, Backing::Anonymous)?;
        Self::with_ram(ram)
    }

    /// Creates a VM over already-mapped guest RAM (restore paths map it themselves).
    pub fn with_ram(ram: GuestRam) -> Result<Self, VmError> {
        let kvm = Kvm::new().map_err(kvm_err(VmError::OpenKvm))?;
        let vm = kvm.create_vm().map_err(kvm_err(VmError::CreateVm))?;
        let region = kvm_bindings::kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: ram.len(),
            userspace_addr: ram.host_addr().0 as u64,
        };
        // SAFETY: the region describes `ram`'s live mapping, which the Vm owns and
        // keeps mapped for as long as the VM fd exists (fields drop vm before ram).
        unsafe { vm.set_user_memory_region(region) }.map_err(kvm_err(VmError::SetMemoryRegion))?;
        let vcpu = vm.create_vcpu(0).map_err(kvm_err(VmError::CreateVcpu))?;
        let cpuid = supported_cpuid(&kvm)?;
        let avx = cpuid
            .as_slice()
            .iter()
            .any(|e| e.function == 1 && e.ecx & (1 << 28) != 0);
        vcpu.set_cpuid2(&cpuid).map_err(|e| VmError::SetupVcpu {
            step: "set cpuid",
            source: std::io::Error::from_raw_os_error(e.errno()),
        })?;
        let tsc_khz = vcpu
            .get_tsc_khz()
            .map(u64::from)
            .unwrap_or_else(|_| measure_tsc_khz());
        Ok(Self {
            _vm: vm,
            vcpu,
            ram,
            kicker: Kicker::default(),
            log: Vec::new(),
            log_dropped: 0,
            pending: None,
            guest_mem_peak: 0,
            dead: false,
            tsc_khz,
            avx,
            tsc_offset: 0,
            phases: Vec::new(),
            net: None,
        })
    }

    /// Guest RAM.
    pub fn ram(&self) -> &GuestRam {
        &self.ram
    }

    /// Guest RAM, mutably: for remapping parts of it (a shared image) before the
    /// vCPU first runs.
    pub fn ram_mut(&mut self) -> &mut GuestRam {
        &mut self.ram
    }

    /// The vCPU (for state save/restore).
    pub(crate) fn vcpu(&self) -> &VcpuFd {
        &self.vcpu
    }

    /// TSC frequency the guest should assume.
    pub fn tsc_khz(&self) -> u64 {
        self.tsc_khz
    }

    /// A handle that can stop this VM's vCPU from another thread.
    pub fn kicker(&self) -> Kicker {
        self.kicker.clone()
    }

    /// The most memory the guest has reported in use since this VM was made (at each
    /// `Next`; a guest-provided figure, clamped to guest RAM: for reports only).
    pub fn guest_memory_peak(&self) -> u64 {
        self.guest_mem_peak
    }

    /// The hypercall the vCPU is parked in.
    pub fn pending(&self) -> Option<Hypercall> {
        self.pending
    }

    pub(crate) fn set_pending(&mut self, h: Option<Hypercall>) {
        self.pending = h;
    }

    /// Loads the guest program and system tables and points the vCPU at its entry.
    pub fn load_guest(&mut self, elf: &[u8]) -> Result<(), VmError> {
        crate::setup::write_system_tables(&self.ram)?;
        let entry = crate::elf::load(&self.ram, elf)?;
        crate::setup::setup_vcpu(&self.vcpu, entry, self.avx)
    }

    /// Loads raw code at `ELF_BASE` instead of an ELF (tests of hostile guests).
    pub fn load_flat(&mut self, code: &[u8]) -> Result<(), VmError> {
        crate::setup::write_system_tables(&self.ram)?;
        if code.len() as u64 > layout::ELF_END - layout::ELF_BASE {
            return Err(VmError::BadElf("flat image too large".into()));
        }
        self.ram.write(GuestAddress(layout::ELF_BASE), code)?;
        crate::setup::setup_vcpu(&self.vcpu, layout::ELF_BASE, self.avx)
    }

    /// The clock anchor for "now" as the guest's TSC sees it.
    pub fn clock_now(&self) -> Clock {
        Clock {
            epoch_ns: epoch_ns(),
            tsc: host_tsc().wrapping_add_signed(self.tsc_offset),
        }
    }

    pub(crate) fn set_tsc_offset(&mut self, off: i64) {
        self.tsc_offset = off;
    }

    /// Writes the boot info (fills in the clock and TSC frequency).
    pub fn write_boot_info(&self, mut info: BootInfo) -> Result<(), VmError> {
        info.tsc_khz = self.tsc_khz;
        info.clock = self.clock_now();
        self.ram.write_obj(GuestAddress(layout::BOOT_INFO), &info)
    }

    /// Takes the phases reported since the last call (`thaw_abi::phase` ids).
    pub fn take_phases(&mut self) -> Vec<(u32, std::time::Instant)> {
        std::mem::take(&mut self.phases)
    }

    /// Takes the guest log collected since the last call.
    /// When older bytes had to be dropped (more than `LOG_KEEP` between two
    /// calls) the log starts with a line saying how many.
    pub fn take_log(&mut self) -> Vec<u8> {
        let log = std::mem::take(&mut self.log);
        match std::mem::take(&mut self.log_dropped) {
            0 => log,
            n => {
                let mut out = format!("[thaw: {n} bytes of output dropped]\n").into_bytes();
                out.extend_from_slice(&log);
                out
            }
        }
    }

    /// Answers a pending `Next` with an invocation.
    pub fn provide_next(&mut self, input: &NextInput<'_>) -> Result<(), VmError> {
        if self.pending != Some(Hypercall::Next) {
            return Err(VmError::GuestExit(
                "provide_next while the guest is not waiting for an invocation".into(),
            ));
        }
        if input.payload.len() as u64 > MAX_PAYLOAD {
            return Err(VmError::PayloadTooLarge {
                len: input.payload.len() as u64,
                max: MAX_PAYLOAD,
            });
        }
        if input.header.len() as u64 > layout::REQUEST_PAYLOAD_OFFSET {
            return Err(VmError::PayloadTooLarge {
                len: input.header.len() as u64,
                max: layout::REQUEST_PAYLOAD_OFFSET,
            });
        }
        if let Some(net) = self.net.as_mut() {
            net.begin_invocation();
        }
        self.ram
            .write(GuestAddress(layout::REQUEST), input.header)?;
        self.ram.write(
            GuestAddress(layout::REQUEST + layout::REQUEST_PAYLOAD_OFFSET),
            input.payload,
        )?;
        let mb = NextMailbox {
            log_len: 0,
            header_len: input.header.len() as u64,
            payload_len: input.payload.len() as u64,
            clock: input.clock,
            seed: input.seed,
            restored: u32::from(input.restored),
            _pad: 0,
            ..Default::default()
        };
        self.ram
            .write_obj(GuestAddress(Hypercall::Next.mailbox()), &mb)
    }

    /// Runs the vCPU until the guest needs the host (see the module doc).
    pub fn run(&mut self) -> Result<GuestEvent, VmError> {
        match self.run_until(None)? {
            Some(event) => Ok(event),
            None => Err(VmError::GuestExit("run ended without an event".into())),
        }
    }

    /// Runs the vCPU like [`Vm::run`], but for about `slice` at most: `Ok(None)`
    /// means the slice ran out first. The guest is then simply between two
    /// instructions; `run` or `run_slice` resume it, from any thread. This lets a
    /// caller run short guest work inline on a thread that must not block long
    /// (an async executor's) and move longer work elsewhere. A per-thread timer
    /// signal ends the slice; if the timer cannot be set up the slice ends at once.
    pub fn run_slice(&mut self, slice: Duration) -> Result<Option<GuestEvent>, VmError> {
        if self.dead {
            return Err(VmError::Dead);
        }
        let end = Instant::now() + slice;
        if crate::kick::start_slice(slice).is_err() {
            return Ok(None);
        }
        let result = self.run_until(Some(end));
        crate::kick::end_slice();
        result
    }

    fn run_until(&mut self, end: Option<Instant>) -> Result<Option<GuestEvent>, VmError> {
        if self.dead {
            return Err(VmError::Dead);
        }
        self.kicker.enter();
        let result = self.run_loop(end);
        self.kicker.leave();
        if result.is_err() {
            self.dead = true;
        }
        result
    }

    /// `Ok(None)`: `end` passed (only checked when a signal interrupts KVM_RUN).
    fn run_loop(&mut self, end: Option<Instant>) -> Result<Option<GuestEvent>, VmError> {
        self.pending = None;
        let over = |end: Option<Instant>| end.is_some_and(|end| Instant::now() >= end);
        loop {
            if self.kicker.stopped() {
                self.kicker.clear();
                return Err(VmError::Interrupted);
            }
            let exit = match self.vcpu.run() {
                Ok(exit) => exit,
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    if over(end) && !self.kicker.stopped() {
                        return Ok(None);
                    }
                    continue;
                }
                Err(e) => return Err(VmError::Run(std::io::Error::from_raw_os_error(e.errno()))),
            };
            let call = match exit {
                VcpuExit::IoOut(HYPERCALL_PORT, data) if data.len() == 4 => {
                    let nr = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                    Hypercall::from_u32(nr).ok_or_else(|| {
                        VmError::GuestHypercall(format!("unknown hypercall number {nr}"))
                    })?
                }
                VcpuExit::IoOut(port, data) => {
                    return Err(VmError::GuestHypercall(format!(
                        "write of {} bytes to unknown port {port:#x}",
                        data.len()
                    )))
                }
                VcpuExit::IoIn(port, _) => {
                    return Err(VmError::GuestHypercall(format!("read from port {port:#x}")))
                }
                VcpuExit::MmioRead(addr, _) | VcpuExit::MmioWrite(addr, _) => {
                    return Err(VmError::GuestExit(format!(
                        "access to unmapped guest-physical address {addr:#x}"
                    )))
                }
                VcpuExit::Intr if over(end) && !self.kicker.stopped() => return Ok(None),
                VcpuExit::Intr => continue,
                VcpuExit::Shutdown => {
                    let rip = self.vcpu.get_regs().map_or(0, |r| r.rip);
                    return Err(VmError::GuestShutdown { rip });
                }
                VcpuExit::Hlt => return Err(VmError::GuestExit("halted".into())),
                VcpuExit::FailEntry(reason, _) => {
                    return Err(VmError::GuestExit(format!(
                        "VM entry failed (reason {reason:#x})"
                    )))
                }
                VcpuExit::InternalError => {
                    return Err(VmError::GuestExit(
                        "KVM internal error (emulation failure)".into(),
                    ))
                }
                other => return Err(VmError::GuestExit(format!("unexpected exit {other:?}"))),
            };
            if call == Hypercall::Net {
                // Served here because it needs the slice end; a slice that ran
                // out while the host waited ends here (KVM completes the `out` on
                // the next KVM_RUN, from whichever thread resumes the VM).
                self.net_call(end)?;
                if over(end) && !self.kicker.stopped() {
                    return Ok(None);
                }
                continue;
            }
            if let Some(event) = self.hypercall(call)? {
                self.pending = Some(call);
                return Ok(Some(event));
            }
        }
    }

    /// Appends `len` bytes of the guest's log buffer (validated) to the VM log.
    fn collect_log(&mut self, len: u64) -> Result<(), VmError> {
        if len > layout::LOG_SIZE {
            return Err(VmError::GuestHypercall(format!(
                "log length {len} exceeds the log buffer"
            )));
        }
        let bytes = self.ram.read_vec(GuestAddress(layout::LOG), len)?;
        self.log.extend_from_slice(&bytes);
        if self.log.len() > LOG_KEEP {
            let cut = self.log.len() - LOG_KEEP;
            self.log_dropped += cut as u64;
            self.log.drain(..cut);
        }
        Ok(())
    }

    /// Validates and copies out a response the guest left in the response area.
    fn read_response(&self, kind: u32, len: u64, truncated: bool) -> Result<Response, VmError> {
        let kind = ResponseKind::from_u32(kind)
            .ok_or_else(|| VmError::GuestHypercall(format!("unknown response kind {kind}")))?;
        if len > layout::RESPONSE_SIZE {
            return Err(VmError::GuestHypercall(format!(
                "response length {len} exceeds the response area"
            )));
        }
        let too_large = truncated || len > MAX_PAYLOAD;
        let body = if too_large {
            Vec::new()
        } else {
            self.ram.read_vec(GuestAddress(layout::RESPONSE), len)?
        };
        Ok(Response {
            kind,
            body,
            too_large,
        })
    }

    /// Decodes one hypercall; `Ok(None)` means resume the guest at once.
    fn hypercall(&mut self, call: Hypercall) -> Result<Option<GuestEvent>, VmError> {
        let mb = call.mailbox();
        match call {
            Hypercall::Log => {
                let m: LogMailbox = self.ram.read_obj(GuestAddress(mb))?;
                self.collect_log(m.len)?;
                Ok(None)
            }
            Hypercall::Next => {
                let m: NextMailbox = self.ram.read_obj(GuestAddress(mb))?;
                self.collect_log(m.log_len)?;
                self.guest_mem_peak = self.guest_mem_peak.max(m.mem_used.min(self.ram.len()));
                if m.response_flags & NEXT_HAS_RESPONSE != 0 {
                    // The guest is parked in `Next` with the last response attached:
                    // hand the response over; the guest waits for its next event.
                    let truncated = m.response_flags & NEXT_RESPONSE_TRUNCATED != 0;
                    let response =
                        self.read_response(m.response_kind, m.response_len, truncated)?;
                    return Ok(Some(GuestEvent::Response(response)));
                }
                Ok(Some(GuestEvent::Next))
            }
            Hypercall::Response => {
                let m: ResponseMailbox = self.ram.read_obj(GuestAddress(mb))?;
                self.collect_log(m.log_len)?;
                let response = self.read_response(m.kind, m.len, m.truncated != 0)?;
                Ok(Some(GuestEvent::Response(response)))
            }
            Hypercall::Phase => {
                let m: PhaseMailbox = self.ram.read_obj(GuestAddress(mb))?;
                if self.phases.len() < 64 {
                    self.phases.push((m.phase, std::time::Instant::now()));
                }
                Ok(None)
            }
            Hypercall::Net => Err(VmError::GuestHypercall(
                "network call outside the run loop".into(),
            )),
            Hypercall::Abort => {
                let m: AbortMailbox = self.ram.read_obj(GuestAddress(mb))?;
                let _ = self.collect_log(m.log_len);
                let len = m.len.min(thaw_abi::ABORT_MESSAGE_MAX);
                let text = self.ram.read_vec(
                    GuestAddress(mb + std::mem::size_of::<AbortMailbox>() as u64),
                    len,
                )?;
                Err(VmError::GuestAbort {
                    message: String::from_utf8_lossy(&text).into_owned(),
                })
            }
        }
    }

    /// Ends the last instance's host-side state for a reset ([`Vm::reset_to`]): the
    /// pending `out` is completed, and the log, reported phases, memory peak, sockets
    /// (closed) and kicker go. A VM that died is refused.
    pub(crate) fn clear_instance(&mut self) -> Result<(), VmError> {
        if self.dead {
            return Err(VmError::Dead);
        }
        if self.pending.is_some() {
            self.complete_io()?;
        }
        self.log.clear();
        self.log_dropped = 0;
        self.phases.clear();
        self.guest_mem_peak = 0;
        self.net = None;
        self.kicker = Kicker::default();
        Ok(())
    }

    /// Lets KVM finish the `out` the vCPU is stopped in: with `immediate_exit`
    /// set, KVM_RUN completes the pending I/O and returns EINTR without entering
    /// the guest again.
    pub(crate) fn complete_io(&mut self) -> Result<(), VmError> {
        self.vcpu.set_kvm_immediate_exit(1);
        let r = self.vcpu.run().map(|_| ());
        self.vcpu.set_kvm_immediate_exit(0);
        match r {
            Err(e) if e.errno() == libc::EINTR => Ok(()),
            Ok(()) => Ok(()),
            Err(e) => Err(VmError::Run(std::io::Error::from_raw_os_error(e.errno()))),
        }
    }
}

/// The CPUID KVM supports, asked once per process: the answer is a property of the
/// host, and asking costs a burst of restores ~4% of its CPU here (each host `cpuid`
/// KVM runs to build it exits to the outer hypervisor).
fn supported_cpuid(kvm: &Kvm) -> Result<kvm_bindings::CpuId, VmError> {
    static SUPPORTED: std::sync::OnceLock<kvm_bindings::CpuId> = std::sync::OnceLock::new();
    if let Some(c) = SUPPORTED.get() {
        return Ok(c.clone());
    }
    let cpuid = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| VmError::SetupVcpu {
            step: "get cpuid",
            source: std::io::Error::from_raw_os_error(e.errno()),
        })?;
    Ok(SUPPORTED.get_or_init(|| cpuid).clone())
}

/// Estimates the TSC frequency when KVM cannot tell.
fn measure_tsc_khz() -> u64 {
    let (t0, c0) = (std::time::Instant::now(), host_tsc());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (dt, dc) = (t0.elapsed(), host_tsc() - c0);
    (dc as u128 * 1_000_000 / dt.as_nanos().max(1)) as u64
}
