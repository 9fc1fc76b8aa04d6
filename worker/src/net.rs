//! The network instances get when nobody configured one: no egress at all, but
//! local socket pairs (asyncio's self-pipe) and TLS roots still work.
use std::sync::OnceLock;

/// The deny-all network context, built once per process (it loads the system's
/// TLS roots).
pub fn deny_all() -> thaw_net::NetContext {
    static DENY: OnceLock<thaw_net::NetContext> = OnceLock::new();
    DENY.get_or_init(|| {
        thaw_net::NetContext::new(&thaw_net::NetConfig::default())
            .expect("the default network configuration is valid")
    })
    .clone()
}
