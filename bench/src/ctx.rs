//! What every scenario's iterations run with ([`Ctx`]): the worker (a fresh handle per
//! iteration with `--cache evicted`), the invoke request, and dropping a snapshot from the
//! page cache before an evicted-cache restore.
use anyhow::Context;
use thaw_snapshotter::SnapshotId;
use thaw_worker::{InvokeRequest, Worker};

/// What a scenario run needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub worker: Worker,
    pub evicted: bool,
    pub request: InvokeRequest,
}

impl Ctx {
    /// The worker for one iteration: with an evicted cache, a handle without the
    /// snapshot's cached state (shared images, working sets); the runtime-wide
    /// state a running service keeps (module image, VM shells) stays.
    pub fn worker(&self) -> Worker {
        if self.evicted {
            self.worker.without_snapshot_caches()
        } else {
            self.worker.clone()
        }
    }

    pub(crate) fn evict(&self, worker: &Worker, id: &SnapshotId) -> anyhow::Result<()> {
        if !self.evicted {
            return Ok(());
        }
        let manifest = worker
            .store()
            .manifest(id)
            .context("reading the manifest to evict")?;
        let data = worker.data();
        crate::cache::evict_snapshot(&data.store(), &data.images(), &manifest)
            .context("dropping the snapshot from the page cache")?;
        Ok(())
    }
}
