//! The async event queue in the registry: `e/<seq, 20 digits>` -> [`AsyncEvent`], stored synced
//! before the caller is answered and deleted once the event ran or finally failed.
use super::{codec, keys, AsyncEvent, Registry, Result};
use std::sync::atomic::Ordering;

impl Registry {
    /// Stores an event durably (synced) and assigns its `seq`.
    pub fn enqueue_event(&self, mut event: AsyncEvent) -> Result<AsyncEvent> {
        event.seq = self.next_event.fetch_add(1, Ordering::SeqCst);
        self.kv
            .put(&keys::event(event.seq), &codec::encode(&event)?)?;
        Ok(event)
    }

    /// Rewrites an event (its attempt count).
    pub fn update_event(&self, event: &AsyncEvent) -> Result<()> {
        Ok(self
            .kv
            .put(&keys::event(event.seq), &codec::encode(event)?)?)
    }

    /// Removes a finished event.
    pub fn delete_event(&self, seq: u64) -> Result<()> {
        Ok(self.kv.delete(&keys::event(seq))?)
    }

    /// Every queued event, oldest first.
    pub fn load_events(&self) -> Result<Vec<AsyncEvent>> {
        let mut out = Vec::new();
        for (_, v) in self.kv.scan_prefix(keys::prefix::EVENT)? {
            out.push(codec::decode(&v)?);
        }
        Ok(out)
    }
}
