//! A hostile guest against the `Net` hypercall, with a real `thaw_net::Sockets`
//! behind it: a deny-all policy plus one allowed loopback listener, and "canary"
//! listeners on loopback addresses the policy denies. The guest fills the
//! `NetMailbox` with random and out-of-range ops, handles, buffers and arguments.
//! The host must never panic; unknown ops and bad buffers end only that VM; no
//! canary ever sees a connection; the resolver is never asked anything (no name
//! pattern is allowed); handles are capped; no descriptor outlives its VM.
//!
//! Every test here takes [`NET_LOCK`]: they count this process's socket
//! descriptors, and only they create sockets.
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thaw_abi::net::{errno, op, NetMailbox, MAX_IO};
use thaw_abi::{layout, Hypercall};
use thaw_net::{NetConfig, NetContext, NetStatsSnapshot, Resolver, Sockets};
use thaw_vmm::asm::Asm;
use thaw_vmm::GuestAddress;
use thaw_vmm::{kvm_or_skip, GuestEvent, Vm, VmConfig, VmError};

static NET_LOCK: Mutex<()> = Mutex::new(());

const RAM: u64 = 64 << 20;
/// Text and list inputs the host prepares for the guest (read-mostly).
const INPUTS: u64 = layout::IMAGES;
/// Output buffers (RECV, GETOPT, RESOLVE answers).
const OUTPUTS: u64 = layout::IMAGES + (4 << 20);
/// One i64 per call: the `result` the guest copied out of its mailbox.
const RESULTS: u64 = layout::IMAGES + (8 << 20);
/// Poll lists (in + out), [`POLL_SLOTS`] of [`POLL_STRIDE`] bytes (1025 entries each).
const POLLS: u64 = INPUTS + 0x1_0000;
const POLL_SLOTS: u64 = 8;
const POLL_STRIDE: u64 = 0x3000;
/// A START_TLS request.
const TLS_REQ: u64 = INPUTS + 0x3_0000;
/// The START_TLS request at [`TLS_REQ`] (the listeners answer with plain text).
const TLS_REQUEST: &[u8] = b"server_name localhost\nalpn h2,http/1.1\nverify 1\ncheck_hostname 1\n";
/// Random bytes.
const NOISE: u64 = INPUTS + 0x4_0000;
const NOISE_LEN: u64 = 0x1_0000;
/// Address texts, [`SLOT`] bytes apart.
const SLOT: u64 = 64;

/// `NetMailbox` field offsets the hand-assembled guests poke.
const OFF_OP: u64 = 0;
const OFF_ARGS: u64 = 8;
const OFF_BUF: u64 = 32;
const OFF_LEN: u64 = 40;
const OFF_RESULT: u64 = 48;

#[test]
fn test_net_mailbox_offsets_match_the_abi() {
    assert_eq!(std::mem::offset_of!(NetMailbox, op) as u64, OFF_OP);
    assert_eq!(std::mem::offset_of!(NetMailbox, handle) as u64, OFF_OP + 4);
    assert_eq!(std::mem::offset_of!(NetMailbox, args) as u64, OFF_ARGS);
    assert_eq!(std::mem::offset_of!(NetMailbox, buf) as u64, OFF_BUF);
    assert_eq!(std::mem::offset_of!(NetMailbox, len) as u64, OFF_LEN);
    assert_eq!(std::mem::offset_of!(NetMailbox, result) as u64, OFF_RESULT);
    assert!(std::mem::size_of::<NetMailbox>() <= 0x1000);
}

/// One Net call as the guest writes it.
#[derive(Debug, Clone, Copy, Default)]
struct Call {
    op: u32,
    handle: u32,
    args: [u64; 3],
    buf: u64,
    len: u64,
}

/// Appends code that fills the mailbox with `c`, makes the hypercall and, with
/// `record`, copies the result to `RESULTS + 8 * index`.
fn emit(asm: Asm, c: &Call, record: Option<usize>) -> Asm {
    let mb = Hypercall::Net.mailbox();
    let mut asm = asm
        .store(mb + OFF_OP, u64::from(c.op) | u64::from(c.handle) << 32)
        .store(mb + OFF_ARGS, c.args[0])
        .store(mb + OFF_ARGS + 8, c.args[1])
        .store(mb + OFF_ARGS + 16, c.args[2])
        .store(mb + OFF_BUF, c.buf)
        .store(mb + OFF_LEN, c.len)
        .hypercall(Hypercall::Net);
    if let Some(i) = record {
        asm = asm.load(mb + OFF_RESULT).store_rax(RESULTS + 8 * i as u64);
    }
    asm
}

/// A guest making `calls` (results recorded), then `Next`.
fn guest(calls: &[Call]) -> Asm {
    let asm = calls
        .iter()
        .enumerate()
        .fold(Asm::default(), |asm, (i, c)| emit(asm, c, Some(i)));
    asm.hypercall(Hypercall::Next).spin()
}

/// A resolver that must never be asked: the policy allows no names.
#[derive(Debug, Default)]
struct Recording {
    asked: Mutex<Vec<String>>,
}

impl Resolver for Recording {
    fn resolve(&self, name: &str) -> std::io::Result<Vec<IpAddr>> {
        self.asked.lock().unwrap().push(name.to_string());
        Ok(vec!["127.0.0.1".parse().unwrap()])
    }
}

/// A loopback listener that greets every connection and reads it to the end;
/// `accepted` counts connections. Dropping it stops the accept thread.
struct Listener {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    fn bind(addr: &str) -> Option<Self> {
        let l = TcpListener::bind(addr).ok()?;
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (acc, st) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in l.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                acc.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                    let _ = conn.write_all(b"hello\n");
                    let mut sink = [0u8; 4096];
                    while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
                });
            }
        });
        Some(Self {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        })
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The world a net test runs in: the allowed listener, canaries on denied
/// loopback addresses, the context (deny-all but the listener) and its resolver.
struct World {
    allowed: Listener,
    canaries: Vec<Listener>,
    /// A denied port on 127.0.0.1 (the first canary's).
    denied_port: u16,
    ctx: NetContext,
    resolver: Arc<Recording>,
}

impl World {
    fn new(max_sockets: usize) -> Self {
        let allowed = Listener::bind("127.0.0.1:0").expect("bind the allowed listener");
        let port = allowed.addr.port();
        let first = Listener::bind("127.0.0.1:0").expect("bind a canary");
        let denied_port = first.addr.port();
        let mut canaries = vec![first];
        // The allowed port on other loopback addresses: same port, other host.
        canaries.extend(Listener::bind(&format!("127.0.0.2:{port}")));
        canaries.extend(Listener::bind(&format!("[::1]:{port}")));
        let resolver = Arc::new(Recording::default());
        let config = NetConfig {
            allow: vec![format!("127.0.0.1:{port}")],
            max_sockets,
            ..Default::default()
        };
        let ctx = NetContext::with_resolver(&config, resolver.clone()).expect("net context");
        Self {
            allowed,
            canaries,
            denied_port,
            ctx,
            resolver,
        }
    }

    fn port(&self) -> u16 {
        self.allowed.addr.port()
    }

    fn stats(&self) -> NetStatsSnapshot {
        self.ctx.stats().snapshot()
    }

    /// The address texts the guest connects to, with the port to use, and
    /// whether the policy allows it. All are loopback (or local garbage).
    fn targets(&self) -> Vec<(&'static str, u16, bool)> {
        let (a, d) = (self.port(), self.denied_port);
        vec![
            ("127.0.0.1", a, true),
            ("[127.0.0.1]", a, true),
            ("127.0.0.1", d, false),
            ("127.0.0.2", a, false),
            ("0.0.0.0", a, false),
            ("0.0.0.0", d, false),
            ("::ffff:127.0.0.1", d, false),
            ("::1", a, false),
            ("[::1]", d, false),
            ("localhost", a, false),
            ("127.0.0.1 junk", a, false),
            ("", a, false),
        ]
    }

    /// A VM running `code` with this world's sockets and its inputs in place.
    fn vm(&self, code: &Asm) -> Vm {
        let mut vm = Vm::new(&VmConfig { memory_bytes: RAM }).expect("create VM");
        vm.load_flat(&code.0).expect("load code");
        vm.set_net(Box::new(Sockets::new(&self.ctx)));
        let ram = vm.ram();
        for (i, (text, _, _)) in self.targets().iter().enumerate() {
            ram.write(GuestAddress(INPUTS + SLOT * i as u64), text.as_bytes())
                .unwrap();
        }
        let mut rng = Rng(0x5eed);
        let noise: Vec<u8> = (0..NOISE_LEN).map(|_| rng.next() as u8).collect();
        ram.write(GuestAddress(NOISE), &noise).unwrap();
        ram.write(GuestAddress(TLS_REQ), TLS_REQUEST).unwrap();
        vm
    }

    /// No canary saw a connection and nothing was resolved.
    fn assert_nothing_escaped(&self) {
        for c in &self.canaries {
            assert_eq!(c.accepted(), 0, "a denied address {} was reached", c.addr);
        }
        assert!(
            self.resolver.asked.lock().unwrap().is_empty(),
            "the host resolved names no pattern allows: {:?}",
            self.resolver.asked.lock().unwrap()
        );
        assert!(
            self.allowed.accepted() <= self.stats().connects,
            "more connections arrived than the policy allowed"
        );
    }
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// Descriptors this process holds that a VM's sockets could leak: sockets,
/// pipes and files. KVM's anonymous inodes and memfds are left out, since other tests
/// in this binary create VMs on parallel threads.
fn host_fds() -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Ok(target) = std::fs::read_link(e.path()) {
            let t = target.to_string_lossy().into_owned();
            if !t.starts_with("anon_inode:") && !t.starts_with("/memfd:") {
                out.push(t);
            }
        }
    }
    out.sort();
    out
}

fn socket_fds() -> usize {
    host_fds()
        .iter()
        .filter(|t| t.starts_with("socket:"))
        .count()
}

/// Waits (bounded) until the descriptor set is back to `baseline`: the
/// listeners' connection threads close their ends when the guest's go away.
fn assert_fds_back_to(baseline: &[String]) {
    let t0 = Instant::now();
    loop {
        let now = host_fds();
        if now.len() <= baseline.len() {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "descriptors leaked after the VM dropped: {} before, {} now: {:?}",
            baseline.len(),
            now.len(),
            now.iter()
                .filter(|t| !baseline.contains(t))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the VM in short slices (so guest waits without limit still return)
/// until its event, within `limit`.
fn run_sliced(vm: &mut Vm, limit: Duration) -> Result<GuestEvent, VmError> {
    let t0 = Instant::now();
    loop {
        if let Some(event) = vm.run_slice(Duration::from_millis(20))? {
            return Ok(event);
        }
        assert!(t0.elapsed() < limit, "guest did not finish in {limit:?}");
    }
}

fn results(vm: &Vm, n: usize) -> Vec<i64> {
    (0..n)
        .map(|i| {
            let mut b = [0u8; 8];
            vm.ram()
                .read(GuestAddress(RESULTS + 8 * i as u64), &mut b)
                .unwrap();
            i64::from_le_bytes(b)
        })
        .collect()
}

/// Every errno the host may answer with (negated in `result`).
const KNOWN_ERRNOS: &[i64] = &[
    errno::EPERM,
    errno::ENOENT,
    errno::EINTR,
    errno::EIO,
    errno::EBADF,
    errno::EAGAIN,
    errno::ENOMEM,
    errno::EACCES,
    errno::EINVAL,
    errno::EMFILE,
    errno::EPIPE,
    errno::ENAMETOOLONG,
    errno::ENOSYS,
    errno::EPROTO,
    errno::EMSGSIZE,
    errno::EPROTOTYPE,
    errno::EAFNOSUPPORT,
    errno::EADDRNOTAVAIL,
    errno::ENETUNREACH,
    errno::ECONNABORTED,
    errno::ECONNRESET,
    errno::ENOBUFS,
    errno::EISCONN,
    errno::ENOTCONN,
    errno::ETIMEDOUT,
    errno::ECONNREFUSED,
    errno::EHOSTUNREACH,
    errno::EALREADY,
    errno::EINPROGRESS,
    errno::EDQUOT,
    errno::ENONAME,
    errno::RETRY,
];

/// Interesting argument values.
const ARGS: &[u64] = &[
    0,
    1,
    2,
    3,
    7,
    10,
    0x800 | 1,
    65535,
    65536,
    1 << 31,
    1 << 32,
    1 << 63,
    u64::MAX - 1,
    u64::MAX,
];
/// `wait_ms` values: mostly short, sometimes without limit (the slice ends them).
const WAITS: &[u64] = &[0, 0, 0, 1, 5, 50, u64::MAX, 1 << 40, u64::MAX - 1];

/// One random call whose op is known and whose buffer lies inside guest RAM
/// (outputs only into the scratch areas, so the guest's code stays intact).
/// `made` estimates the handles created so far.
fn random_call(rng: &mut Rng, world: &World, made: &mut u32) -> Call {
    let targets = world.targets();
    // Every op, weighted toward the ones that make connections and move data.
    let op = if rng.below(2) == 0 {
        1 + rng.below(u64::from(op::LAST)) as u32
    } else {
        rng.pick(&[
            op::SOCKET,
            op::CONNECT,
            op::CONNECT,
            op::SEND,
            op::RECV,
            op::POLL,
            op::CLOSE,
        ])
    };
    let recent = (*made).saturating_sub(rng.below(3) as u32).max(1);
    let handle = match rng.below(10) {
        0 => 0,
        1 => rng.next() as u32,
        2 => u32::MAX,
        3 => rng.below(80) as u32,
        _ => recent,
    };
    let arg = |rng: &mut Rng| {
        if rng.below(3) == 0 {
            rng.next()
        } else {
            rng.pick(ARGS)
        }
    };
    let mut c = Call {
        op,
        handle,
        args: [arg(rng), arg(rng), rng.pick(WAITS)],
        buf: NOISE + rng.below(NOISE_LEN),
        len: rng.below(4096),
    };
    match op {
        op::SOCKET => {
            if rng.below(4) == 0 {
                c.args[0] = rng.pick(&[0, 1, 99, u64::MAX, 10]);
                c.args[1] = rng.pick(&[1, 0x801, 2, 3, 0, u64::MAX]);
            } else {
                c.args = [2, 1, 0];
                *made += 1;
            }
        }
        op::SOCKETPAIR => *made += 2,
        op::CONNECT => {
            // The allowed address a third of the time.
            let i = if rng.below(3) == 0 {
                0
            } else {
                rng.below(targets.len() as u64)
            };
            let (text, port, _) = targets[i as usize];
            c.buf = INPUTS + SLOT * i;
            c.len = text.len() as u64;
            c.args[0] = if rng.below(8) == 0 {
                arg(rng)
            } else {
                u64::from(port)
            };
        }
        op::SEND => {
            // Any bytes in RAM: noise, the page tables, the guest's own code.
            (c.buf, c.len) = rng.pick(&[
                (NOISE, 0),
                (NOISE, 1),
                (NOISE, 100),
                (NOISE, NOISE_LEN),
                (0, 4096),
                (layout::ELF_BASE, 4096),
                (RAM - 4096, 4096),
                (RAM - MAX_IO, MAX_IO),
            ]);
        }
        op::RECV => {
            c.args[0] = rng.pick(&[0, 0, 2, 1, u64::MAX]);
            c.buf = OUTPUTS;
            c.len = rng.pick(&[0, 1, 6, 4096, MAX_IO]);
        }
        op::POLL => {
            c.len = rng.pick(&[0, 8, 8 * 4, 8 * 64, 8 * 1024, 8 * 1025, 7, 13]);
            // Lists of random handles and events: `write_poll_lists`.
            c.buf = POLLS + rng.below(POLL_SLOTS) * POLL_STRIDE;
        }
        op::RESOLVE => {
            let i = rng.below(targets.len() as u64);
            c.buf = INPUTS + SLOT * i;
            c.len = rng.pick(&[0, SLOT, 16 << 10]);
            c.args[0] = rng.pick(&[0, 2, 10, 1, u64::MAX]);
            c.args[1] = rng.pick(&[0, targets[i as usize].0.len() as u64, 9, u64::MAX]);
            if c.len > SLOT {
                c.buf = OUTPUTS;
            }
        }
        op::START_TLS => {
            let whole = TLS_REQUEST.len() as u64;
            (c.buf, c.len) =
                rng.pick(&[(TLS_REQ, whole), (TLS_REQ, 30), (NOISE, 300), (TLS_REQ, 0)]);
        }
        op::GETOPT => {
            c.args[0] = rng.below(12);
            c.buf = OUTPUTS;
            c.len = rng.pick(&[0, 2, 64, 4096]);
        }
        op::SETOPT | op::SHUTDOWN => c.args[0] = rng.below(10),
        // Mostly older handles, so the table does not just sit at its cap.
        op::CLOSE if rng.below(4) != 0 => c.handle = (*made).saturating_sub(2),
        _ => {}
    }
    c
}

/// Random poll lists at the slots `random_call` points POLL at.
fn write_poll_lists(vm: &Vm, rng: &mut Rng) {
    for slot in 0..POLL_SLOTS {
        let list: Vec<u8> = (0..1025u32)
            .flat_map(|i| {
                let h = if i % 3 == 0 {
                    rng.next() as u32
                } else {
                    1 + rng.below(64) as u32
                };
                let mut e = h.to_le_bytes().to_vec();
                e.extend(rng.pick(&[1u16, 4, 5, 0, 0xffff]).to_le_bytes());
                e.extend([0, 0]);
                e
            })
            .collect();
        vm.ram()
            .write(GuestAddress(POLLS + slot * POLL_STRIDE), &list)
            .unwrap();
    }
}

#[test]
fn test_net_random_calls_never_harm_the_host() {
    if !kvm_or_skip("test_net_random_calls_never_harm_the_host") {
        return;
    }
    let _guard = NET_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let world = World::new(64);
    let baseline = host_fds();
    let mut rng = Rng(0x7ac0_0001);
    let (mut calls_total, mut ok_results) = (0usize, 0usize);
    for round in 0..4 {
        let mut made = 0u32;
        let calls: Vec<Call> = (0..1500)
            .map(|_| random_call(&mut rng, &world, &mut made))
            .collect();
        let mut vm = world.vm(&guest(&calls));
        write_poll_lists(&vm, &mut rng);
        let event = run_sliced(&mut vm, Duration::from_secs(240))
            .unwrap_or_else(|e| panic!("round {round}: a valid-op guest failed: {e}"));
        assert_eq!(event, GuestEvent::Next);
        for (c, r) in calls.iter().zip(results(&vm, calls.len())) {
            assert!(
                r >= 0 || KNOWN_ERRNOS.contains(&-r),
                "round {round}: {c:?} answered {r}, not a value or a known errno"
            );
            ok_results += usize::from(r >= 0);
            // NET_FUZZ_TRACE=1: every call and its answer, to tune the mix.
            if std::env::var_os("NET_FUZZ_TRACE").is_some() {
                eprintln!("{:?} h={} a0={} -> {r}", c.op, c.handle, c.args[0]);
            }
        }
        calls_total += calls.len();
        drop(vm);
        assert_fds_back_to(&baseline);
    }
    let stats = world.stats();
    eprintln!("{calls_total} random calls, {ok_results} succeeded; {stats:?}");
    world.assert_nothing_escaped();
    assert!(stats.denied > 0, "no denied connect was tried: {stats:?}");
    assert!(
        stats.connects > 0,
        "no allowed connect was tried: {stats:?}"
    );
    assert!(ok_results > 0 && ok_results < calls_total);
}

#[test]
fn test_net_denied_connects_never_leave_and_allowed_ones_work() {
    if !kvm_or_skip("test_net_denied_connects_never_leave_and_allowed_ones_work") {
        return;
    }
    let _guard = NET_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let world = World::new(64);
    let baseline = host_fds();
    let targets = world.targets();
    // For each target: a socket of its family, then a connect that may wait 2 s.
    let mut calls = Vec::new();
    for (i, (text, port, _)) in targets.iter().enumerate() {
        let v6 = text.contains("::");
        calls.push(Call {
            op: op::SOCKET,
            args: [if v6 { 10 } else { 2 }, 1, 0],
            ..Default::default()
        });
        calls.push(Call {
            op: op::CONNECT,
            handle: i as u32 + 1,
            args: [u64::from(*port), 0, 2000],
            buf: INPUTS + SLOT * i as u64,
            len: text.len() as u64,
        });
    }
    let mut vm = world.vm(&guest(&calls));
    assert_eq!(
        run_sliced(&mut vm, Duration::from_secs(60)).unwrap(),
        GuestEvent::Next
    );
    let r = results(&vm, calls.len());
    for (i, (text, port, allowed)) in targets.iter().enumerate() {
        assert_eq!(r[2 * i], i as i64 + 1, "socket for {text}");
        let got = r[2 * i + 1];
        if *allowed {
            assert_eq!(got, 0, "allowed connect to {text}:{port}");
        } else {
            assert!(
                [errno::ECONNREFUSED, errno::EINVAL, errno::EAFNOSUPPORT].contains(&-got),
                "denied connect to {text}:{port} answered {got}"
            );
        }
    }
    let allowed = targets.iter().filter(|t| t.2).count() as u64;
    let stats = world.stats();
    assert_eq!(stats.connects, allowed, "{stats:?}");
    assert!(stats.denied >= 5, "{stats:?}");
    // The allowed connections really arrived (the accept thread may lag a little).
    let t0 = Instant::now();
    while world.allowed.accepted() < allowed && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(world.allowed.accepted(), allowed);
    world.assert_nothing_escaped();
    drop(vm);
    assert_fds_back_to(&baseline);
}

#[test]
fn test_net_socket_handles_are_capped() {
    if !kvm_or_skip("test_net_socket_handles_are_capped") {
        return;
    }
    let _guard = NET_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let max = 64usize;
    let world = World::new(max);
    let baseline = host_fds();
    let socket = Call {
        op: op::SOCKET,
        args: [2, 1, 0],
        ..Default::default()
    };
    // 100 sockets, a pair, close #1, one more socket, a connect on it.
    let mut calls = vec![socket; 100];
    calls.push(Call {
        op: op::SOCKETPAIR,
        ..Default::default()
    });
    calls.push(Call {
        op: op::CLOSE,
        handle: 1,
        ..Default::default()
    });
    calls.push(socket);
    let mut vm = world.vm(&guest(&calls));
    let before = socket_fds();
    assert_eq!(
        run_sliced(&mut vm, Duration::from_secs(60)).unwrap(),
        GuestEvent::Next
    );
    let r = results(&vm, calls.len());
    for (i, got) in r[..max].iter().enumerate() {
        assert_eq!(*got, i as i64 + 1, "socket {i}");
    }
    for got in &r[max..100] {
        assert_eq!(*got, -errno::EMFILE, "over the cap");
    }
    assert_eq!(r[100], -errno::EMFILE, "a pair over the cap");
    assert_eq!(r[101], 0, "close");
    assert_eq!(r[102], max as i64 + 1, "handles are never reused");
    // The VM holds exactly `max` host sockets now.
    assert_eq!(socket_fds(), before + max);
    drop(vm);
    assert_fds_back_to(&baseline);
}

/// A guest that first opens a few sockets (so the host holds descriptors),
/// then makes one `bad` call: the VM must end with a guest error.
fn bad_call_ends_vm(world: &World, bad: Call) -> VmError {
    let opener = Call {
        op: op::SOCKET,
        args: [2, 1, 0],
        ..Default::default()
    };
    let mut asm = Asm::default();
    for i in 0..3 {
        asm = emit(asm, &opener, Some(i));
    }
    let asm = emit(asm, &bad, None).hypercall(Hypercall::Next).spin();
    let mut vm = world.vm(&asm);
    let err = run_sliced(&mut vm, Duration::from_secs(30)).expect_err("bad call must end the VM");
    assert!(matches!(vm.run(), Err(VmError::Dead)), "{bad:?}");
    assert_eq!(results(&vm, 3), vec![1, 2, 3], "the openers ran");
    err
}

#[test]
fn test_net_unknown_ops_and_bad_buffers_end_the_vm() {
    if !kvm_or_skip("test_net_unknown_ops_and_bad_buffers_end_the_vm") {
        return;
    }
    let _guard = NET_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let world = World::new(64);
    let baseline = host_fds();
    let with = |op, buf, len| Call {
        op,
        handle: 1,
        args: [0, 0, 0],
        buf,
        len,
    };
    // (call, what the error names). Unknown ops and oversized buffers are
    // GuestHypercall; a buffer outside RAM is the RAM check's own guest error.
    let cases = [
        (with(0, 0, 0), "unknown network op 0"),
        (with(op::LAST + 1, NOISE, 8), "unknown network op"),
        (with(u32::MAX, 0, 0), "unknown network op"),
        (with(op::RECV, OUTPUTS, MAX_IO + 1), "exceeds"),
        (with(op::SEND, NOISE, u64::MAX), "exceeds"),
        (with(op::POLL, POLLS, 1 << 40), "exceeds"),
        (with(op::CONNECT, RAM - 4, 9), "outside guest RAM"),
        (with(op::RECV, RAM, 1), "outside guest RAM"),
        (with(op::GETOPT, u64::MAX - 7, 16), "outside guest RAM"),
        (with(op::START_TLS, 1 << 40, 64), "outside guest RAM"),
        (with(op::RESOLVE, u64::MAX, 1), "outside guest RAM"),
    ];
    for (bad, says) in cases {
        let err = bad_call_ends_vm(&world, bad);
        let guest_fault = matches!(err, VmError::GuestHypercall(_) | VmError::OutOfRange { .. });
        assert!(
            guest_fault && err.to_string().contains(says),
            "{bad:?}: {err}"
        );
        assert_fds_back_to(&baseline);
    }
    // Ops without a buffer ignore buf/len whatever they say.
    let mut calls = Vec::new();
    for o in [
        op::SOCKETPAIR,
        op::SHUTDOWN,
        op::HANDSHAKE,
        op::SETOPT,
        op::CLOSE,
    ] {
        calls.push(Call {
            op: o,
            handle: 1,
            args: [2, 1, 0],
            buf: u64::MAX,
            len: u64::MAX,
        });
    }
    let mut vm = world.vm(&guest(&calls));
    assert_eq!(
        run_sliced(&mut vm, Duration::from_secs(30)).unwrap(),
        GuestEvent::Next
    );
    assert_eq!(results(&vm, calls.len())[0], 1 | 2 << 32, "the pair");
    drop(vm);
    world.assert_nothing_escaped();
    assert_fds_back_to(&baseline);
}
