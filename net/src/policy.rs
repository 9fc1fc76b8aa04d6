//! The egress policy: which destinations a function may reach. Pure logic: no
//! sockets, no resolver, unit-tested on its own.
//!
//! Nothing is allowed unless a pattern allows it (default deny). A pattern is
//! `host:port`, the port a number or `*`, the host one of:
//! - an IP literal (`127.0.0.1`) or an IPv6 literal in brackets (`[::1]`);
//! - a CIDR block (`10.0.0.0/8`, `[fd00::/8]`);
//! - an exact name (`localhost`, `api.example.com`; case and a final dot ignored);
//! - a wildcard name (`*.amazonaws.com`: any name with at least one more label in
//!   front, not `amazonaws.com` itself).
//!
//! Connects only ever name an IP address (the guest resolves names through the
//! host first), so the check of one connect to `ip:port` is:
//! 1. IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are checked as the IPv4
//!    address they reach.
//! 2. Allowed if an address or CIDR pattern matches `ip:port`.
//! 3. Otherwise allowed if, during this VM's life, a host resolution of a name
//!    returned `ip`, a name pattern matches that name and `port`, and the address
//!    passes the rebinding rule.
//! 4. Everything else is denied.
//!
//! **Rebinding rule.** An address that is loopback, private (RFC 1918, unique
//! local `fc00::/7`), shared (`100.64.0.0/10`), link-local (this includes the
//! metadata service 169.254.169.254), unspecified, broadcast or multicast is
//! *sensitive*. A sensitive address reached through a **wildcard** name pattern is
//! refused (unless step 2 allows it): whoever controls a zone's DNS cannot point
//! `evil.amazonaws.com`-style names at the host's own network. Exact names are
//! trusted to resolve where they resolve (`localhost:8443` reaches 127.0.0.1).
//!
//! Resolving a name at all is allowed only when some name pattern (any port)
//! matches it: the host never sends DNS queries for names the function may not
//! reach (no exfiltration through the resolver).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A pattern that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("egress pattern {0:?} has no `:port` (use `host:port` or `host:*`)")]
    MissingPort(String),
    #[error("egress pattern {0:?} has a bad port (a number 1-65535 or `*`)")]
    BadPort(String),
    #[error("egress pattern {0:?}: IPv6 addresses go in brackets, e.g. `[::1]:443`")]
    UnbracketedIpv6(String),
    #[error("egress pattern {0:?} has a bad CIDR block")]
    BadCidr(String),
    #[error("egress pattern {0:?} has a bad host name")]
    BadName(String),
    #[error("egress pattern {0:?}: a bare `*` host is not allowed (use `0.0.0.0/0` or `[::/0]`)")]
    BareWildcard(String),
}

/// The host part of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// A network and its prefix length; one address is a full-length prefix.
    Net(IpAddr, u8),
    /// An exact name, lower case, no final dot.
    Name(String),
    /// `*.suffix`: the suffix, lower case.
    Wildcard(String),
}

/// One `host:port` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    host: Host,
    /// `None`: any port.
    port: Option<u16>,
}

impl Pattern {
    /// Parses `host:port` (see the module doc).
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let bad = || text.to_string();
        let (host, port) = text
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| PolicyError::MissingPort(bad()))?;
        let port = match port {
            "*" => None,
            p => match p.parse::<u16>() {
                Ok(n) if n > 0 && !p.starts_with('+') => Some(n),
                _ => return Err(PolicyError::BadPort(bad())),
            },
        };
        let host = if let Some(inner) = host.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| PolicyError::UnbracketedIpv6(bad()))?;
            match inner.split_once('/') {
                Some((a, len)) => cidr(a.parse::<Ipv6Addr>().ok().map(IpAddr::V6), len)
                    .ok_or_else(|| PolicyError::BadCidr(bad()))?,
                None => match inner.parse::<Ipv6Addr>() {
                    Ok(a) => Host::Net(canonical(IpAddr::V6(a)), full_len(canonical(a.into()))),
                    Err(_) => return Err(PolicyError::BadCidr(bad())),
                },
            }
        } else if host.contains(':') {
            return Err(PolicyError::UnbracketedIpv6(bad()));
        } else if let Some((a, len)) = host.split_once('/') {
            cidr(a.parse::<Ipv4Addr>().ok().map(IpAddr::V4), len)
                .ok_or_else(|| PolicyError::BadCidr(bad()))?
        } else if let Ok(a) = host.parse::<Ipv4Addr>() {
            Host::Net(IpAddr::V4(a), 32)
        } else if host == "*" {
            return Err(PolicyError::BareWildcard(bad()));
        } else if let Some(suffix) = host.strip_prefix("*.") {
            Host::Wildcard(normalize_name(suffix).ok_or_else(|| PolicyError::BadName(bad()))?)
        } else {
            Host::Name(normalize_name(host).ok_or_else(|| PolicyError::BadName(bad()))?)
        };
        Ok(Self { host, port })
    }

    fn port_matches(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }

    /// Whether this is a name pattern matching `name` (normalized), any port.
    fn name_matches(&self, name: &str) -> bool {
        match &self.host {
            Host::Name(n) => n == name,
            Host::Wildcard(s) => name
                .strip_suffix(s.as_str())
                .is_some_and(|front| front.len() > 1 && front.ends_with('.')),
            Host::Net(..) => false,
        }
    }

    /// Whether this is an address pattern containing `ip` (canonical).
    fn addr_matches(&self, ip: IpAddr) -> bool {
        match self.host {
            Host::Net(net, len) => in_net(ip, net, len),
            _ => false,
        }
    }
}

/// The parsed allowlist of one function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    patterns: Vec<Pattern>,
}

impl Policy {
    /// Parses every pattern; the first bad one is the error.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PolicyError> {
        let patterns = patterns
            .iter()
            .map(|p| Pattern::parse(p.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// True when nothing at all is allowed.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Step 2: an address or CIDR pattern allows `ip:port`.
    pub fn allows_addr(&self, ip: IpAddr, port: u16) -> bool {
        let ip = canonical(ip);
        self.patterns
            .iter()
            .any(|p| p.port_matches(port) && p.addr_matches(ip))
    }

    /// Whether the host may resolve `name` at all (some name pattern matches it).
    pub fn allows_resolving(&self, name: &str) -> bool {
        normalize_name(name).is_some_and(|n| self.patterns.iter().any(|p| p.name_matches(&n)))
    }

    /// Step 3 for one name: `name` resolved to `ip`; does a name pattern allow
    /// `ip:port` through it (rebinding rule included)?
    pub fn allows_via_name(&self, name: &str, ip: IpAddr, port: u16) -> bool {
        let Some(name) = normalize_name(name) else {
            return false;
        };
        let sensitive = is_sensitive(canonical(ip));
        self.patterns.iter().any(|p| {
            p.port_matches(port)
                && p.name_matches(&name)
                && (matches!(p.host, Host::Name(_)) || !sensitive)
        })
    }

    /// The whole check of a connect to `ip:port`, given the names that host
    /// resolutions mapped to `ip` during the VM's life.
    pub fn allows_connect<'a>(
        &self,
        ip: IpAddr,
        port: u16,
        names: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        self.allows_addr(ip, port) || names.into_iter().any(|n| self.allows_via_name(n, ip, port))
    }
}

/// IPv4-mapped IPv6 addresses become the IPv4 address they reach.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Loopback, private, shared, link-local (metadata), unspecified, broadcast or
/// multicast: never reached through a wildcard name.
pub fn is_sensitive(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Lower case, one final dot dropped; `None` if not a plausible DNS name.
pub fn normalize_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then_some(name)
}

fn full_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// `addr/len` as a canonical network (mapped IPv6 prefixes become IPv4 ones).
fn cidr(addr: Option<IpAddr>, len: &str) -> Option<Host> {
    let addr = addr?;
    let len: u8 = len.parse().ok().filter(|_| !len.starts_with('+'))?;
    if len > full_len(addr) {
        return None;
    }
    match addr {
        IpAddr::V6(v6) if len >= 96 && v6.to_ipv4_mapped().is_some() => {
            Some(Host::Net(canonical(addr), len - 96))
        }
        _ => Some(Host::Net(addr, len)),
    }
}

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn policy(p: &[&str]) -> Policy {
        Policy::parse(p).unwrap()
    }

    #[test]
    fn empty_policy_denies_everything() {
        let p = policy(&[]);
        assert!(p.is_empty());
        assert!(!p.allows_addr(ip("127.0.0.1"), 80));
        assert!(!p.allows_resolving("localhost"));
        assert!(!p.allows_connect(ip("127.0.0.1"), 80, ["localhost"]));
    }

    #[test]
    fn addresses_and_ports() {
        let p = policy(&["127.0.0.1:8080", "127.0.0.2:*", "[::1]:443"]);
        assert!(p.allows_addr(ip("127.0.0.1"), 8080));
        assert!(!p.allows_addr(ip("127.0.0.1"), 8081));
        assert!(p.allows_addr(ip("127.0.0.2"), 1));
        assert!(p.allows_addr(ip("127.0.0.2"), 65535));
        assert!(!p.allows_addr(ip("127.0.0.3"), 8080));
        assert!(p.allows_addr(ip("::1"), 443));
        assert!(!p.allows_addr(ip("::1"), 80));
        assert!(!p.allows_addr(ip("::2"), 443));
    }

    #[test]
    fn cidr_blocks() {
        let p = policy(&[
            "10.0.0.0/8:443",
            "[fd00::/8]:*",
            "0.0.0.0/0:25",
            "192.168.1.77/24:1",
        ]);
        assert!(p.allows_addr(ip("10.255.1.2"), 443));
        assert!(!p.allows_addr(ip("11.0.0.1"), 443));
        assert!(!p.allows_addr(ip("10.0.0.1"), 444));
        assert!(p.allows_addr(ip("fd12::1"), 9));
        assert!(!p.allows_addr(ip("fe80::1"), 9));
        assert!(p.allows_addr(ip("8.8.8.8"), 25));
        assert!(
            !p.allows_addr(ip("::8"), 25),
            "an IPv4 block holds no IPv6 address"
        );
        assert!(
            p.allows_addr(ip("192.168.1.3"), 1),
            "host bits of a block are ignored"
        );
    }

    #[test]
    fn mapped_ipv6_is_checked_as_ipv4() {
        let p = policy(&["127.0.0.1:80"]);
        assert!(p.allows_addr(ip("::ffff:127.0.0.1"), 80));
        let p = policy(&["[::ffff:10.0.0.0/104]:80"]);
        assert!(p.allows_addr(ip("10.9.9.9"), 80));
        let p = policy(&["*.example.com:80"]);
        assert!(!p.allows_via_name("a.example.com", ip("::ffff:10.0.0.1"), 80));
        assert!(is_sensitive(ip("::ffff:169.254.169.254")));
    }

    #[test]
    fn exact_names() {
        let p = policy(&["localhost:8443", "API.Example.com.:*"]);
        assert!(p.allows_resolving("localhost"));
        assert!(p.allows_resolving("LOCALHOST."));
        assert!(p.allows_resolving("api.example.com"));
        assert!(!p.allows_resolving("example.com"));
        assert!(!p.allows_resolving("x.localhost"));
        // Exact names are trusted to resolve where they resolve.
        assert!(p.allows_via_name("localhost", ip("127.0.0.1"), 8443));
        assert!(p.allows_via_name("localhost", ip("::1"), 8443));
        assert!(!p.allows_via_name("localhost", ip("127.0.0.1"), 8444));
        assert!(p.allows_via_name("api.example.com", ip("10.0.0.1"), 1234));
    }

    #[test]
    fn wildcard_names() {
        let p = policy(&["*.amazonaws.com:443"]);
        assert!(p.allows_resolving("s3.amazonaws.com"));
        assert!(p.allows_resolving("a.b.eu-west-1.amazonaws.com"));
        assert!(!p.allows_resolving("amazonaws.com"));
        assert!(!p.allows_resolving("evilamazonaws.com"));
        assert!(!p.allows_resolving("amazonaws.com.evil.org"));
        assert!(p.allows_via_name("s3.amazonaws.com", ip("52.1.2.3"), 443));
        assert!(!p.allows_via_name("s3.amazonaws.com", ip("52.1.2.3"), 80));
        assert!(!p.allows_via_name("s3.amazonaws.org", ip("52.1.2.3"), 443));
    }

    #[test]
    fn rebinding_through_a_wildcard_is_refused() {
        let p = policy(&["*.example.com:443"]);
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "ff02::1",
        ] {
            assert!(is_sensitive(ip(bad)), "{bad}");
            assert!(!p.allows_connect(ip(bad), 443, ["a.example.com"]), "{bad}");
        }
        assert!(!is_sensitive(ip("93.184.216.34")));
        assert!(p.allows_connect(ip("93.184.216.34"), 443, ["a.example.com"]));
        assert!(p.allows_connect(ip("2606:2800::1"), 443, ["a.example.com"]));
        // An address pattern still allows a sensitive address.
        let p = policy(&["*.example.com:443", "127.0.0.0/8:443"]);
        assert!(p.allows_connect(ip("127.0.0.5"), 443, ["a.example.com"]));
        assert!(!p.allows_connect(ip("10.0.0.5"), 443, ["a.example.com"]));
    }

    #[test]
    fn connect_needs_a_name_that_matches() {
        let p = policy(&["localhost:8443"]);
        assert!(!p.allows_connect(ip("127.0.0.1"), 8443, []));
        assert!(!p.allows_connect(ip("127.0.0.1"), 8443, ["other"]));
        assert!(p.allows_connect(ip("127.0.0.1"), 8443, ["other", "localhost"]));
    }

    #[test]
    fn bad_patterns_are_clear_errors() {
        type Case = (&'static str, fn(String) -> PolicyError);
        let cases: &[Case] = &[
            ("localhost", PolicyError::MissingPort),
            ("localhost:", PolicyError::BadPort),
            ("localhost:0", PolicyError::BadPort),
            ("localhost:65536", PolicyError::BadPort),
            ("localhost:+1", PolicyError::BadPort),
            ("::1:443", PolicyError::UnbracketedIpv6),
            ("[::1:443", PolicyError::UnbracketedIpv6),
            ("[nothex]:443", PolicyError::BadCidr),
            ("10.0.0.0/33:1", PolicyError::BadCidr),
            ("10.0.0/8:1", PolicyError::BadCidr),
            ("[::/129]:1", PolicyError::BadCidr),
            ("*:443", PolicyError::BareWildcard),
            ("*.:443", PolicyError::BadName),
            ("a..b:443", PolicyError::BadName),
            ("a b:443", PolicyError::BadName),
            ("a.*.com:443", PolicyError::BadName),
            (":443", PolicyError::BadName),
        ];
        for (text, want) in cases {
            assert_eq!(Pattern::parse(text), Err(want(text.to_string())), "{text}");
        }
        let msg = Policy::parse(&["ok:1", "nope"]).unwrap_err().to_string();
        assert!(
            msg.contains("\"nope\"") && msg.contains("host:port"),
            "{msg}"
        );
    }
}
