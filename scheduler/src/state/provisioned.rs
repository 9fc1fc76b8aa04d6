//! The ledger's side of provisioned concurrency: how many restores a pool still needs and
//! the bytes provisioned configs hold for good.

use super::{Pool, State};
use crate::model::ProvisionedStatus;

/// Counts the restores `p` needs as in flight and returns how many to spawn.
pub(crate) fn take_needed<I>(p: &mut Pool<I>) -> Option<u32> {
    let n = p.prov_needed();
    p.prov_restoring += n;
    (n > 0).then_some(n)
}

impl<I> State<I> {
    /// Bytes the provisioned configs hold for good: `requested` instances of every config that has
    /// not FAILED, and the instances a FAILED config keeps. Busy extras of a lowered or deleted
    /// config are not counted: they are discarded when released.
    pub(crate) fn provisioned_bytes(&self) -> u64 {
        self.functions
            .values()
            .flat_map(|fs| fs.versions.values())
            .map(|p| {
                let held = match &p.prov {
                    None => 0,
                    Some(c) if c.status == ProvisionedStatus::Failed => {
                        p.prov_live().min(c.requested)
                    }
                    Some(c) => c.requested,
                };
                p.cost * u64::from(held)
            })
            .sum()
    }
}
