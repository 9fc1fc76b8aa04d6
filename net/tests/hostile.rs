//! A hostile guest: random ops, handles, arguments and buffers, garbage TLS
//! requests and connects to denied addresses. The host never panics, never
//! connects where the policy says no, and keeps to its socket cap.
mod common;
use common::*;
use std::time::{Duration, Instant};
use thaw_abi::net::op;
use thaw_net::{NetConfig, Sockets};
use thaw_vmm::{NetCall, NetHost};

/// xorshift64*: deterministic, no dependency.
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
}

#[test]
fn random_calls_never_panic_or_escape() {
    let server = echo_server(10_000);
    let (ctx, stats) = context_with(
        NetConfig {
            allow: vec![format!("127.0.0.1:{}", server.port()), "localhost:*".into()],
            max_sockets: 16,
            max_bytes_per_invocation: 1 << 20,
            ..NetConfig::default()
        },
        &[("localhost", &["127.0.0.1"])],
    );
    let mut s = Sockets::new(&ctx);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let inputs: Vec<Vec<u8>> = vec![
        b"127.0.0.1".to_vec(),
        b"::1".to_vec(),
        b"10.0.0.1".to_vec(),
        b"169.254.169.254".to_vec(),
        b"localhost".to_vec(),
        b"server_name localhost\n".to_vec(),
        b"verify 0\n".to_vec(),
        b"server_name \xff\nca\n-----BEGIN CERTIFICATE-----\n".to_vec(),
        b"ca\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
        vec![0xff; 64],
        vec![1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0],
        vec![0; 7],
        Vec::new(),
    ];
    let start = Instant::now();
    let mut live: Vec<u32> = Vec::new();
    for i in 0..20_000u32 {
        let op = rng.below(u64::from(op::LAST) + 3) as u32;
        let handle = match rng.below(4) {
            0 => rng.next() as u32,
            1 => rng.below(40) as u32,
            _ if !live.is_empty() => live[rng.below(live.len() as u64) as usize],
            _ => 1,
        };
        let mut args = [rng.next(), rng.next(), rng.below(3)];
        if rng.below(2) == 0 {
            args[0] = rng.below(16);
            args[1] = rng.below(3);
        }
        if op == op::SOCKET && rng.below(2) == 0 {
            args[0] = 2;
            args[1] = 1;
        }
        if op == op::CONNECT && rng.below(2) == 0 {
            args[0] = u64::from(server.port());
        }
        let mut input = inputs[rng.below(inputs.len() as u64) as usize].clone();
        if rng.below(5) == 0 {
            input = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
        }
        let r = s.call(NetCall {
            op,
            handle,
            args,
            input: &input,
            out_cap: rng.below(1 << 16) as usize,
            wait_until: Some(Instant::now() + Duration::from_millis(args[2])),
            yield_at: Some(Instant::now() + Duration::from_millis(5)),
        });
        assert!(r.message.len() < 4096, "{i}: message too long");
        if op == op::SOCKET && r.result > 0 {
            live.push(r.result as u32);
        }
        if op == op::SOCKETPAIR && r.result > 0 {
            live.push(r.result as u32);
            live.push((r.result >> 32) as u32);
        }
        if op == op::CLOSE && r.result == 0 {
            live.retain(|h| *h != handle);
        }
        assert!(s.open_count() <= 16);
        if i % 1000 == 0 {
            s.begin_invocation();
        }
    }
    assert!(start.elapsed() < Duration::from_secs(120));
    let st = stats.snapshot();
    // Every connect the host made was to the allowed echo server (it is the
    // only allowed address); denials were counted.
    assert!(st.denied > 0 && st.connects > 0, "{st:?}");
}

#[test]
fn denied_addresses_never_connect() {
    let (ctx, stats) = context(&[], &[]);
    let mut s = Sockets::new(&ctx);
    for (fam, addr) in [
        (2, "127.0.0.1"),
        (2, "10.1.2.3"),
        (2, "169.254.169.254"),
        (10, "::1"),
        (10, "::ffff:127.0.0.1"),
        (10, "fd00:ec2::254"),
    ] {
        let h = call(&mut s, op::SOCKET, 0, [fam, 1, 0], b"", 0).result as u32;
        let r = call(&mut s, op::CONNECT, h, [80, 0, 0], addr.as_bytes(), 0);
        assert_eq!(r.result, -thaw_abi::net::errno::ECONNREFUSED, "{addr}");
        call(&mut s, op::CLOSE, h, [0; 3], b"", 0);
    }
    assert_eq!(stats.snapshot().connects, 0);
    assert_eq!(stats.snapshot().denied, 6);
}

#[test]
fn socket_exhaustion_is_bounded() {
    let (ctx, _) = context(&[], &[]);
    let mut s = Sockets::new(&ctx);
    let mut ok = 0;
    for _ in 0..500 {
        if call(&mut s, op::SOCKETPAIR, 0, [0; 3], b"", 0).result > 0 {
            ok += 1;
        }
        if call(&mut s, op::SOCKET, 0, [2, 1, 0], b"", 0).result > 0 {
            ok += 1;
        }
    }
    assert_eq!(s.open_count(), 64);
    assert!(ok <= 64);
}
