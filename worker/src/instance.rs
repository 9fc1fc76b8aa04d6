//! One function instance: a microVM running a runtime and a function's init code,
//! parked in the guest's "next invocation" hypercall between invocations.
//!
//! Boot steps (`Instance::boot`), each timed:
//! 1. `vm_create`: KVM VM, guest RAM, vCPU.
//! 2. `load`: guest program, system tables, the precompiled module image, the
//!    function and runtime files and the process configuration, then `BootInfo`.
//! 3. `runtime_init`: run until the runtime reports `RUNTIME_READY` (CPython up).
//! 4. `function_init`: until `FUNCTION_READY` (handler module imported).
//! 5. `to_ready`: until the first `Next` hypercall: init is complete; this is where
//!    snapshots are taken. An init error instead ends the boot with `InitFailed`.
use crate::error::WorkerError;
use crate::function::FunctionCode;
use crate::restore::mode::MemoryMode;
use crate::runtime::{Runtime, GUEST_ELF};
pub use crate::spec::{FunctionSpec, EPHEMERAL_MB, MIN_MEMORY_MB};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thaw_abi::{layout, phase, BootInfo, ResponseKind, BOOT_MAGIC, MAX_PAYLOAD, PAGE_2M};
use thaw_vmm::GuestAddress;
use thaw_vmm::{Deadline, GuestEvent, NextInput, Vm, VmConfig, VmError};

/// The guest's engine heap: wasmtime's own structures (48 MiB, as measured with
/// room to spare). Charged to the function as it is used (docs/MEMORY.md); reserved
/// in guest-physical space, backed only where touched. When it runs out (a large
/// `/tmp`, socket buffers) the guest's allocator grows down from the top of the
/// function's memory region, within MemorySize.
const ENGINE_HEAP: u64 = 48 << 20;

/// Where a booted guest's pieces go in guest RAM (see docs/MEMORY.md): the runtime
/// image (module, files, configuration; shared, not charged), the engine heap, then
/// the function's memory region of exactly MemorySize, which ends guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestLayout {
    pub files_addr: u64,
    pub config_addr: u64,
    pub heap_start: u64,
    pub heap_end: u64,
    pub memory_start: u64,
    /// Also the size of guest RAM (MemorySize rounded up to 2 MiB past the start;
    /// the guest's budget is the exact MemorySize, `BootInfo::memory_mb`).
    pub memory_end: u64,
}

impl GuestLayout {
    /// The layout for a module, files and configuration of these lengths and a
    /// MemorySize of `memory_mb` MiB.
    pub fn new(module_len: u64, files_len: u64, config_len: u64, memory_mb: u32) -> Self {
        let files_addr = align_2m(layout::IMAGES + module_len);
        let config_addr = files_addr + thaw_abi::files::align(files_len as usize) as u64;
        let heap_start = align_2m(config_addr + config_len);
        let heap_end = heap_start + ENGINE_HEAP;
        let memory_start = heap_end;
        Self {
            files_addr,
            config_addr,
            heap_start,
            heap_end,
            memory_start,
            memory_end: memory_start + align_2m(u64::from(memory_mb) << 20),
        }
    }
}

/// Where the time of a cold boot went.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BootTimings {
    pub vm_create: Duration,
    pub load: Duration,
    pub runtime_init: Duration,
    pub function_init: Duration,
    pub to_ready: Duration,
    pub total: Duration,
}

/// One invocation's input.
#[derive(Debug, Default, Clone)]
pub struct InvokeRequest {
    pub payload: Vec<u8>,
    pub request_id: Option<String>,
    /// Decoded client context JSON (from the caller's base64 `X-Amz-Client-Context`).
    pub client_context: Option<serde_json::Value>,
}

/// One invocation's result.
#[derive(Debug, Clone)]
pub struct InvokeOutcome {
    pub request_id: String,
    /// The handler raised (body is the error JSON); HTTP stays 200 in Lambda.
    pub function_error: bool,
    pub body: Vec<u8>,
    pub log: Vec<u8>,
    pub duration: Duration,
    /// The most memory the instance's runtime has used so far (engine + wasm linear
    /// memory, as the guest reports it at each `Next`), bytes: Lambda's "Max Memory
    /// Used".
    pub max_memory_used: u64,
}

/// A booted (or restored) instance.
#[derive(Debug)]
pub struct Instance {
    /// The pager of a lazily restored VM; declared before `vm` so it stops before
    /// guest RAM is unmapped (fields drop in declaration order).
    lazy: Option<crate::restore::memory::LazyMemory>,
    vm: Vm,
    spec: Arc<FunctionSpec>,
    ready: bool,
    /// The next invocation is the first after a restore.
    fresh_restore: bool,
    /// Log written during init.
    pub init_log: Vec<u8>,
}

/// 32 bytes from the OS CSPRNG (through uuid's getrandom).
pub fn entropy() -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed
}

fn align_2m(x: u64) -> u64 {
    x.div_ceil(PAGE_2M) * PAGE_2M
}

fn config_archive(runtime: &Runtime, spec: &FunctionSpec) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, a) in runtime.argv.iter().enumerate() {
        thaw_abi::files::push(&mut out, format!("argv/{i:04}").as_bytes(), a.as_bytes());
    }
    let mem = spec.memory_mb.to_string();
    let log_group = format!("/aws/lambda/{}", spec.name);
    let mut env: BTreeMap<&str, &str> = BTreeMap::from([
        ("AWS_LAMBDA_FUNCTION_NAME", spec.name.as_str()),
        ("AWS_LAMBDA_FUNCTION_VERSION", spec.version.as_str()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", mem.as_str()),
        (
            "AWS_LAMBDA_INITIALIZATION_TYPE",
            spec.initialization_type.as_str(),
        ),
        ("AWS_LAMBDA_LOG_GROUP_NAME", log_group.as_str()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "thaw/[$LATEST]instance"),
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ("AWS_REGION", spec.region.as_str()),
        ("AWS_DEFAULT_REGION", spec.region.as_str()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_python3.12"),
        ("_HANDLER", spec.handler.as_str()),
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime"),
        ("TZ", "UTC"),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("HOME", "/tmp"),
        ("LANG", "en_US.UTF-8"),
    ]);
    for (k, v) in &spec.env {
        env.insert(k, v);
    }
    for (k, v) in env {
        thaw_abi::files::push(&mut out, format!("env/{k}").as_bytes(), v.as_bytes());
    }
    out
}

fn files_archive(runtime: &Runtime, code: &FunctionCode) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in &runtime.files {
        thaw_abi::files::push(&mut out, name.as_bytes(), data);
    }
    for (name, data) in &code.files {
        thaw_abi::files::push(&mut out, format!("var/task/{name}").as_bytes(), data);
    }
    out
}

impl Instance {
    /// Boots a fresh instance and runs init (see the module doc).
    pub fn boot(
        runtime: &Runtime,
        spec: Arc<FunctionSpec>,
    ) -> Result<(Self, BootTimings), WorkerError> {
        spec.code.check_handler(&spec.handler)?;
        let t0 = Instant::now();
        let mut timings = BootTimings::default();
        if spec.memory_mb < MIN_MEMORY_MB {
            return Err(WorkerError::MemoryTooSmall {
                memory_mb: spec.memory_mb,
                needed_mb: u64::from(MIN_MEMORY_MB),
            });
        }
        let files = files_archive(runtime, &spec.code);
        let config = config_archive(runtime, &spec);
        let module_len = runtime.module.len() as u64;
        let at = GuestLayout::new(
            module_len,
            files.len() as u64,
            config.len() as u64,
            spec.memory_mb,
        );
        let ram_size = at.memory_end;
        let (files_addr, config_addr) = (at.files_addr, at.config_addr);
        let mut vm = Vm::new(&VmConfig {
            memory_bytes: ram_size,
        })?;
        let net = spec.net.clone().unwrap_or_else(crate::net::deny_all);
        vm.set_net(Box::new(thaw_net::Sockets::new(&net)));
        timings.vm_create = t0.elapsed();

        let t1 = Instant::now();
        vm.load_guest(GUEST_ELF)?;
        vm.ram()
            .write(GuestAddress(layout::IMAGES), runtime.module.bytes()?)?;
        vm.ram().write(GuestAddress(files_addr), &files)?;
        vm.ram().write(GuestAddress(config_addr), &config)?;
        vm.write_boot_info(BootInfo {
            magic: BOOT_MAGIC,
            abi_version: thaw_abi::ABI_VERSION,
            memory_mb: spec.memory_mb,
            ram_size,
            module_addr: layout::IMAGES,
            module_len,
            files_addr,
            files_len: files.len() as u64,
            config_addr,
            config_len: config.len() as u64,
            heap_start: at.heap_start,
            heap_end: at.heap_end,
            memory_start: at.memory_start,
            memory_end: at.memory_end,
            tmp_limit: u64::from(spec.ephemeral_mb) << 20,
            seed: entropy(),
            ..Default::default()
        })?;
        timings.load = t1.elapsed();

        let t2 = Instant::now();
        let deadline = Deadline::arm(t2 + spec.init_timeout, &vm.kicker());
        let event = vm.run();
        drop(deadline);
        let end = Instant::now();
        let phases = vm.take_phases();
        let at = |id| phases.iter().find(|(p, _)| *p == id).map(|(_, t)| *t);
        let runtime_ready = at(phase::RUNTIME_READY).unwrap_or(end);
        let function_ready = at(phase::FUNCTION_READY).unwrap_or(end);
        timings.runtime_init = runtime_ready.saturating_duration_since(t2);
        timings.function_init = function_ready.saturating_duration_since(runtime_ready);
        timings.to_ready = end.saturating_duration_since(function_ready);
        timings.total = t0.elapsed();
        let log = vm.take_log();
        match event {
            Ok(GuestEvent::Next) => Ok((
                Self {
                    lazy: None,
                    vm,
                    spec,
                    ready: true,
                    fresh_restore: false,
                    init_log: log,
                },
                timings,
            )),
            Ok(GuestEvent::Response(r)) if r.kind == ResponseKind::InitError => {
                Err(WorkerError::InitFailed { body: r.body, log })
            }
            Ok(other) => Err(WorkerError::Crashed {
                message: format!("unexpected {} during init", event_name(&other)),
                log,
            }),
            Err(VmError::Interrupted) => Err(WorkerError::Timeout {
                secs: spec.init_timeout.as_secs_f64(),
                log,
            }),
            Err(VmError::GuestAbort { message }) => Err(WorkerError::Crashed { message, log }),
            Err(e) => Err(e.into()),
        }
    }

    /// Wraps a VM restored from a snapshot taken in `Next` (with the pager that fills
    /// its memory, in the lazy modes).
    pub fn restored(restored: crate::restore::Restored, spec: Arc<FunctionSpec>) -> Self {
        Self {
            lazy: restored.lazy,
            vm: restored.vm,
            spec,
            ready: true,
            fresh_restore: true,
            init_log: Vec::new(),
        }
    }

    /// Gives the instance fresh sockets under `net`'s policy (a restored VM has
    /// none: sockets never survive a snapshot).
    pub fn attach_net(&mut self, net: &thaw_net::NetContext) {
        self.vm.set_net(Box::new(thaw_net::Sockets::new(net)));
    }

    /// Pager statistics of a lazily restored instance.
    pub fn pager_stats(&self) -> Option<thaw_pager::StatsSnapshot> {
        self.lazy.as_ref().map(|l| l.handle.stats())
    }

    /// Whether the instance has not run an invocation since it was restored (its first
    /// one touches pages the pager has not installed yet).
    pub fn is_fresh(&self) -> bool {
        self.fresh_restore
    }

    /// A lazily restored instance's private guest memory as its page tables show it
    /// ([`thaw_pager::PagerHandle::private_bytes`]); `None` if unreadable or not lazy.
    pub fn private_bytes(&self) -> Option<u64> {
        self.lazy.as_ref()?.handle.private_bytes().ok()
    }

    /// The VM and pager of a lazily restored instance parked in `Next` whose restore
    /// allows reuse, with the key of the snapshot it may serve again
    /// ([`crate::restore::recycle`]); `None` for any other instance (then dropped).
    pub(crate) fn into_reusable(
        self,
    ) -> Option<(
        crate::restore::recycle::RecycleKey,
        crate::restore::recycle::ReadyVm,
    )> {
        let parked = self.ready && self.vm.pending() == Some(thaw_abi::Hypercall::Next);
        let lazy = self.lazy.filter(|l| parked && l.recycle.is_some())?;
        let key = crate::restore::recycle::RecycleKey::new(lazy.snapshot.1, &self.spec, lazy.mode);
        Some((key, crate::restore::recycle::ReadyVm { lazy, vm: self.vm }))
    }

    /// The memory mode of a lazily restored instance.
    pub fn lazy_mode(&self) -> Option<MemoryMode> {
        self.lazy.as_ref().map(|l| l.mode)
    }

    /// The microVM, mutably (saving state).
    pub fn vm_mut(&mut self) -> &mut Vm {
        &mut self.vm
    }

    /// The function this instance runs.
    pub fn spec(&self) -> &Arc<FunctionSpec> {
        &self.spec
    }

    /// The microVM (snapshotting reads it).
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    /// Whether the instance can take an invocation.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Runs one invocation. On `Err` the instance is dead and must be discarded;
    /// a handler error is an `Ok` outcome with `function_error` set.
    pub fn invoke(&mut self, req: &InvokeRequest) -> Result<InvokeOutcome, WorkerError> {
        let running = self.begin(req, false)?;
        self.resume(running)
    }

    /// Starts one invocation and runs it for about `slice`: [`Progress::Done`] with
    /// the outcome, or [`Progress::Yielded`] if it needs longer — finish it with
    /// [`Instance::resume`], from any thread. This lets an async caller run the
    /// common short invocation in place and move only long ones to a blocking
    /// thread. Errors as in [`Instance::invoke`].
    pub fn invoke_sliced(
        &mut self,
        req: &InvokeRequest,
        slice: Duration,
    ) -> Result<Progress, WorkerError> {
        let running = self.begin(req, false)?;
        self.advance(running, Some(slice))
    }

    /// Runs a yielded invocation to its end (under its deadline).
    pub fn resume(&mut self, running: Running) -> Result<InvokeOutcome, WorkerError> {
        match self.advance(running, None)? {
            Progress::Done(outcome) => Ok(outcome),
            Progress::Yielded(_) => Err(WorkerError::Crashed {
                message: "an unsliced run yielded".into(),
                log: self.vm.take_log(),
            }),
        }
    }

    /// Runs the runtime's invoke path without the handler (`"probe": true` in the
    /// header: the bootstrap parses the event, builds the context and answers `null`).
    /// Used on a throwaway clone at build time to record the memory an invocation
    /// touches before any real one (worker/src/snapshot.rs); user code never runs.
    pub fn probe_runtime(&mut self) -> Result<InvokeOutcome, WorkerError> {
        let req = InvokeRequest {
            payload: b"{}".to_vec(),
            request_id: None,
            client_context: None,
        };
        if let Some(lazy) = &mut self.lazy {
            lazy.provisional = true;
        }
        let running = self.begin(&req, true)?;
        match self.advance(running, None)? {
            Progress::Done(outcome) => Ok(outcome),
            Progress::Yielded(_) => Err(WorkerError::Crashed {
                message: "an unsliced probe yielded".into(),
                log: self.vm.take_log(),
            }),
        }
    }

    /// Hands the request to the parked guest and arms the deadline.
    fn begin(&mut self, req: &InvokeRequest, probe: bool) -> Result<Running, WorkerError> {
        if req.payload.len() as u64 > MAX_PAYLOAD {
            return Err(WorkerError::PayloadTooLarge {
                len: req.payload.len() as u64,
                max: MAX_PAYLOAD,
            });
        }
        if !self.ready {
            return Err(WorkerError::NotReady);
        }
        let t0 = Instant::now();
        let request_id = req
            .request_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let deadline_ms = crate::now_ms() + self.spec.timeout.as_millis() as u64;
        let header = serde_json::json!({
            "request_id": request_id,
            "deadline_ms": deadline_ms,
            "invoked_function_arn": self.spec.arn(),
            "trace_id": format!("Root=1-{:08x}-{}", deadline_ms / 1000, &uuid::Uuid::new_v4().simple().to_string()[..24]),
            "client_context": req.client_context,
            "restored": self.fresh_restore,
            "probe": probe,
        })
        .to_string();
        // A refused request (e.g. an oversized header) leaves the instance ready.
        self.vm.provide_next(&NextInput {
            header: header.as_bytes(),
            payload: &req.payload,
            clock: self.vm.clock_now(),
            seed: if self.fresh_restore {
                entropy()
            } else {
                [0; 32]
            },
            restored: self.fresh_restore,
        })?;
        self.ready = false;
        self.fresh_restore = false;
        Ok(Running {
            t0,
            request_id,
            deadline: Deadline::arm(t0 + self.spec.timeout, &self.vm.kicker()),
            response: None,
        })
    }

    /// Runs the guest (for about `slice`, or to the end) from where `running` left it:
    /// 1. to its response (which normally rides on its next `Next`: one exit),
    /// 2. then, if it sent the response on its own, until it parks in `Next`.
    fn advance(
        &mut self,
        mut running: Running,
        slice: Option<Duration>,
    ) -> Result<Progress, WorkerError> {
        let end = slice.map(|s| Instant::now() + s);
        let (response, duration) = match running.response.take() {
            Some(got) => got,
            None => match self.step(end) {
                Ok(None) => return Ok(Progress::Yielded(running)),
                Ok(Some(GuestEvent::Response(r))) => (r, running.t0.elapsed()),
                Ok(Some(other)) => {
                    let e = VmError::GuestExit(format!(
                        "expected a response, got {}",
                        event_name(&other)
                    ));
                    return Err(self.fail(e));
                }
                Err(e) => return Err(self.fail(e)),
            },
        };
        if self.vm.pending() != Some(thaw_abi::Hypercall::Next) {
            match self.step(end) {
                Ok(None) => {
                    running.response = Some((response, duration));
                    return Ok(Progress::Yielded(running));
                }
                Ok(Some(GuestEvent::Next)) => {}
                Ok(Some(other)) => {
                    return Err(WorkerError::Crashed {
                        message: format!("unexpected {} after a response", event_name(&other)),
                        log: self.vm.take_log(),
                    })
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
        drop(running.deadline);
        self.ready = true;
        let log = self.vm.take_log();
        if let Some(lazy) = &mut self.lazy {
            lazy.first_response_done();
        }
        let (function_error, body) = if response.too_large {
            let msg = format!("Response payload size exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes).");
            (true, serde_json::json!({"errorMessage": msg, "errorType": "Function.ResponseSizeTooLarge"}).to_string().into_bytes())
        } else {
            (response.kind != ResponseKind::Ok, response.body)
        };
        Ok(Progress::Done(InvokeOutcome {
            request_id: running.request_id,
            function_error,
            body,
            log,
            duration,
            max_memory_used: self.vm.guest_memory_peak(),
        }))
    }

    /// One run of the vCPU: sliced until `end`, or to the next event.
    fn step(&mut self, end: Option<Instant>) -> Result<Option<GuestEvent>, VmError> {
        match end {
            Some(end) => self
                .vm
                .run_slice(end.saturating_duration_since(Instant::now())),
            None => self.vm.run().map(Some),
        }
    }

    /// The error for a VM that died mid-invocation, with its log.
    fn fail(&mut self, e: VmError) -> WorkerError {
        let log = self.vm.take_log();
        if let Some(lazy) = &self.lazy {
            if let Some(source) = lazy.handle.error() {
                let (store, id) = &lazy.snapshot;
                let e = WorkerError::PageFault {
                    snapshot: id.to_string(),
                    source,
                    log,
                };
                if e.is_corrupt() {
                    // The next restore of this version rebuilds it from a cold boot.
                    let _ = store.mark_bad(id, &crate::error::error_chain(&e));
                }
                return e;
            }
        }
        match e {
            VmError::Interrupted => WorkerError::Timeout {
                secs: self.spec.timeout.as_secs_f64(),
                log,
            },
            VmError::GuestAbort { message } => WorkerError::Crashed { message, log },
            e => WorkerError::Crashed {
                message: crate::error::error_chain(&e),
                log,
            },
        }
    }
}

/// A guest event in words (for error messages, which never show Rust `Debug` output).
fn event_name(e: &GuestEvent) -> &'static str {
    match e {
        GuestEvent::Next => "a Next call",
        GuestEvent::Response(r) => match r.kind {
            ResponseKind::Ok => "a result",
            ResponseKind::Error => "a handler error",
            ResponseKind::InitError => "an init error",
        },
    }
}

/// How far a sliced invocation got.
#[derive(Debug)]
#[must_use]
pub enum Progress {
    /// It finished (the instance is ready again).
    Done(InvokeOutcome),
    /// Its slice ran out: pass this to [`Instance::resume`]. Dropping it instead
    /// leaves the instance busy for good (discard it).
    Yielded(Running),
}

/// An invocation under way: its deadline stays armed until it ends.
#[derive(Debug)]
pub struct Running {
    t0: Instant,
    request_id: String,
    deadline: Deadline,
    /// The response, once the guest sent it on its own and still has to park.
    response: Option<(thaw_vmm::Response, Duration)>,
}
