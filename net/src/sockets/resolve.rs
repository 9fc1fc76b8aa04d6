//! RESOLVE: host name resolution under the policy, remembering which names
//! gave which addresses for the connects that follow.
use super::{fail, OpResult, Sockets, MAX_REMEMBERED};
use crate::config::NetStats;
use crate::policy::{canonical, normalize_name};
use std::net::IpAddr;
use thaw_abi::net::errno;
use thaw_vmm::NetReply;

impl Sockets {
    pub(super) fn resolve(&mut self, input: &[u8], family: u64, cap: usize) -> OpResult {
        let name = std::str::from_utf8(input)
            .map_err(|_| fail(errno::EINVAL, "host name is not UTF-8"))?
            .trim();
        if name.is_empty() {
            return Err(fail(errno::EINVAL, "empty host name"));
        }
        if name.len() > 253 {
            return Err(fail(errno::ENAMETOOLONG, "host name too long"));
        }
        let want = |ip: &IpAddr| match family {
            2 => ip.is_ipv4(),
            10 => ip.is_ipv6(),
            _ => true,
        };
        if !matches!(family, 0 | 2 | 10) {
            return Err(fail(
                errno::EAFNOSUPPORT,
                "family must be 0, AF_INET or AF_INET6",
            ));
        }
        let literal = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        let addrs = if let Ok(ip) = literal.parse::<IpAddr>() {
            vec![ip]
        } else {
            let Some(norm) = normalize_name(name).filter(|n| self.ctx.policy.allows_resolving(n))
            else {
                NetStats::add(&self.stats().resolves_denied, 1);
                let shown: String = name.chars().take(64).collect();
                tracing::warn!(name = %shown, "name resolution denied by the function's policy");
                return Err(fail(
                    errno::ENONAME,
                    format!("resolving {shown:?} is not allowed by this function's policy"),
                ));
            };
            NetStats::add(&self.stats().resolves, 1);
            let addrs = self
                .ctx
                .resolver
                .resolve(&norm)
                .map_err(|_| fail(errno::ENONAME, format!("cannot resolve {norm:?}")))?;
            self.remember(&norm, &addrs)?;
            addrs
        };
        let mut lines = String::new();
        let mut count = 0;
        let mut seen = Vec::new();
        for ip in addrs.iter().filter(|ip| want(ip)) {
            if seen.contains(ip) {
                continue;
            }
            seen.push(*ip);
            let line = format!("{ip}\n");
            if lines.len() + line.len() > cap {
                break;
            }
            lines.push_str(&line);
            count += 1;
        }
        if seen.is_empty() {
            return Err(fail(errno::ENONAME, format!("no address for {name:?}")));
        }
        if count == 0 {
            return Err(fail(errno::ENOBUFS, "answer buffer too small"));
        }
        Ok(NetReply {
            result: count,
            out: lines.into_bytes(),
            message: String::new(),
        })
    }

    /// Remembers that `name` resolved to `addrs` (for later connects).
    fn remember(&mut self, name: &str, addrs: &[IpAddr]) -> Result<(), NetReply> {
        for ip in addrs {
            let names = self.resolved.entry(canonical(*ip)).or_default();
            if names.iter().any(|n| n == name) {
                continue;
            }
            if self.remembered >= MAX_REMEMBERED {
                return Err(fail(
                    errno::ENOBUFS,
                    "this function resolved too many names",
                ));
            }
            names.push(name.to_string());
            self.remembered += 1;
        }
        Ok(())
    }
}
