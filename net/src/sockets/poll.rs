//! POLL: readiness of many sockets at once, TLS streams readable only when
//! plaintext (or an end or error) is there for the guest.
use super::{fail, stop, OpResult, Sockets, Stream};
use crate::wait::{Deadlines, Stop};
use rustix::event::{PollFd, PollFlags};
use std::time::Instant;
use thaw_abi::net::{errno, PollEntry, MAX_POLL, POLLERR, POLLHUP, POLLIN, POLLOUT};
use thaw_vmm::NetReply;

impl Sockets {
    /// POLL: see [`Sockets::poll_once`] for one round; rounds repeat until an
    /// entry is ready or a deadline passes.
    pub(super) fn poll(&mut self, input: &[u8], d: &Deadlines) -> OpResult {
        if !input.len().is_multiple_of(8) || (input.len() / 8) as u64 > MAX_POLL {
            return Err(fail(errno::EINVAL, "bad poll list"));
        }
        let mut entries: Vec<PollEntry> = input
            .chunks_exact(8)
            .map(|c| PollEntry {
                handle: u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                events: u16::from_le_bytes([c[4], c[5]]),
                revents: 0,
            })
            .collect();
        let ready = loop {
            let n = self.poll_once(&mut entries, d).map_err(stop)?;
            if n > 0 {
                break n;
            }
            if let Some(s) = d.passed() {
                return Err(stop(s));
            }
        };
        let mut out = Vec::with_capacity(entries.len() * 8);
        for e in &entries {
            out.extend_from_slice(&e.handle.to_le_bytes());
            out.extend_from_slice(&e.events.to_le_bytes());
            out.extend_from_slice(&e.revents.to_le_bytes());
        }
        Ok(NetReply {
            result: ready as i64,
            out,
            message: String::new(),
        })
    }

    /// One poll round:
    /// 1. Entries ready without waiting: unknown handles (`POLLERR`) and TLS
    ///    streams with plaintext, end of stream or an error buffered.
    /// 2. Poll the host descriptors (without waiting if step 1 found any):
    ///    what the guest asked for, plus writability of TLS streams with
    ///    records still to send.
    /// 3. Pump TLS streams whose socket became ready; a TLS stream is readable
    ///    for the guest only when step 1's condition now holds.
    fn poll_once(&mut self, entries: &mut [PollEntry], d: &Deadlines) -> Result<usize, Stop> {
        // 1.
        let mut early = false;
        for e in entries.iter_mut() {
            e.revents = match self.table.get_mut(&e.handle) {
                None => POLLERR,
                Some(sock) => {
                    let _ = sock.settle();
                    match sock.tls.as_deref() {
                        Some(t) if t.established && t.readable() => {
                            e.events & POLLIN | if t.failed.is_some() { POLLERR } else { 0 }
                        }
                        _ => 0,
                    }
                }
            };
            early |= e.revents != 0;
        }
        // 2.
        let now = Deadlines {
            wait_until: Some(Instant::now()),
            yield_at: None,
        };
        let raw: Vec<Option<PollFlags>> = {
            let mut idx = Vec::new();
            let mut fds = Vec::new();
            for (i, e) in entries.iter().enumerate() {
                let Some(sock) = self.table.get(&e.handle) else {
                    continue;
                };
                let mut f = PollFlags::empty();
                if e.events & POLLIN != 0 {
                    f |= PollFlags::IN;
                }
                if e.events & POLLOUT != 0
                    || sock.tls.as_ref().is_some_and(|t| t.conn.wants_write())
                {
                    f |= PollFlags::OUT;
                }
                idx.push(i);
                fds.push(PollFd::new(&sock.stream, f));
            }
            let r = if early {
                now.poll(&mut fds)
            } else {
                d.poll(&mut fds)
            };
            match r {
                Ok(_) => {}
                Err(Stop::Again) if early => {}
                Err(s) => return Err(s),
            }
            let mut raw = vec![None; entries.len()];
            for (i, fd) in idx.into_iter().zip(&fds) {
                raw[i] = Some(fd.revents());
            }
            raw
        };
        // 3.
        let mut ready = 0;
        for (e, raw) in entries.iter_mut().zip(raw) {
            let Some(raw) = raw else {
                ready += usize::from(e.revents != 0);
                continue;
            };
            let Some(sock) = self.table.get_mut(&e.handle) else {
                continue;
            };
            let mut rev = e.revents;
            match (sock.tls.as_deref_mut(), &sock.stream) {
                (Some(tls), Stream::Tcp(tcp)) if tls.established => {
                    if raw.contains(PollFlags::OUT) && tls.conn.wants_write() {
                        let _ = tls.flush(tcp);
                    }
                    if raw.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                        let _ = tls.pump(tcp);
                    }
                    if tls.readable() {
                        rev |= e.events & POLLIN;
                    }
                    if raw.contains(PollFlags::OUT) {
                        rev |= e.events & POLLOUT;
                    }
                    if raw.contains(PollFlags::ERR) || tls.failed.is_some() {
                        rev |= POLLERR;
                    }
                    if raw.contains(PollFlags::HUP) {
                        rev |= POLLHUP;
                    }
                }
                _ => {
                    if raw.contains(PollFlags::IN) {
                        rev |= e.events & POLLIN;
                    }
                    if raw.contains(PollFlags::OUT) {
                        rev |= e.events & POLLOUT;
                    }
                    if raw.contains(PollFlags::ERR) {
                        rev |= POLLERR;
                    }
                    if raw.contains(PollFlags::HUP) {
                        rev |= POLLHUP;
                    }
                }
            }
            e.revents = rev;
            ready += usize::from(rev != 0);
        }
        Ok(ready)
    }
}
