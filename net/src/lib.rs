//! The host side of a microVM's sockets. The guest has no network stack: it
//! drives host sockets through the `Net` hypercall (`thaw_abi::net`), which the
//! VMM validates and hands to a [`thaw_vmm::NetHost`]. This crate is that host:
//!
//! - [`Sockets`]: one VM's socket table (real non-blocking host sockets, limits,
//!   waits bounded by the call's deadlines);
//! - [`policy`]: the egress allowlist, default deny, with the DNS-rebinding rule;
//! - TLS terminated on the host with rustls (the guest sees plaintext after
//!   `START_TLS` + `HANDSHAKE`);
//! - [`NetConfig`] -> [`NetContext`] (prepared once, cheap to clone) ->
//!   [`Sockets::new`] per VM; [`NetStats`] counters for the service's metrics.
//!
//! Wiring: `let ctx = NetContext::new(&config)?;` once, then for every VM
//! (booted or restored) `vm.set_net(Box::new(Sockets::new(&ctx)))`. A fresh
//! `Sockets` per restore is what keeps init-time sockets and DNS answers out of
//! clones.
#![forbid(unsafe_code)]

mod config;
pub mod policy;
mod sockets;
mod tls;
mod wait;

pub use config::{
    NetConfig, NetConfigError, NetContext, NetStats, NetStatsSnapshot, Resolver, SystemResolver,
};
pub use policy::{Pattern, Policy, PolicyError};
pub use sockets::Sockets;
