//! The scheduler's mutable state behind one lock: every function's pools, the counting service's
//! running totals and the memory placement ledger.
//!
//! Invariant kept by [`State::adjust_pool`]: `unreserved_used` equals the sum of `usage()` over
//! functions without reserved concurrency. Every change to a pool's busy, restoring or provisioned
//! fields goes through it.
//!
//! This layer is the ledger only: synchronous, no tokio, no factory. Its children add the
//! counting service's admission check (`admit.rs`), the memory placement (`placement.rs`) and
//! the provisioned-concurrency arithmetic (`provisioned.rs`); `scheduler/` drives it.

use std::collections::HashMap;

use crate::ids::{FunctionVersion, InstanceId};

mod admit;
mod placement;
mod pool;
mod provisioned;

pub(crate) use pool::{FunctionState, Idle, Pool, ProvState};
pub(crate) use provisioned::take_needed;

pub(crate) struct State<I> {
    pub functions: HashMap<String, FunctionState<I>>,
    /// Sum of reserved concurrency over functions that have some.
    pub reserved_total: u32,
    /// Concurrency used by functions without reserved concurrency.
    pub unreserved_used: u32,
    /// Bytes charged for live and restoring instances.
    pub memory_used: u64,
    next_id: u64,
}

impl<I> State<I> {
    pub fn new() -> Self {
        Self {
            functions: HashMap::new(),
            reserved_total: 0,
            unreserved_used: 0,
            memory_used: 0,
            next_id: 1,
        }
    }

    pub fn next_instance_id(&mut self) -> InstanceId {
        let id = InstanceId(self.next_id);
        self.next_id += 1;
        id
    }

    pub fn pool(&self, fv: &FunctionVersion) -> Option<&Pool<I>> {
        self.functions.get(&fv.function)?.versions.get(&fv.version)
    }

    /// Mutable access for fields that do not change usage (idle lists, counters, status).
    pub fn pool_mut(&mut self, fv: &FunctionVersion) -> Option<&mut Pool<I>> {
        self.functions
            .get_mut(&fv.function)?
            .versions
            .get_mut(&fv.version)
    }

    /// The pool of `fv`, created (with `cost()` bytes per instance) if absent; un-retires it.
    pub fn ensure_pool(
        &mut self,
        fv: &FunctionVersion,
        cost: impl FnOnce() -> u64,
    ) -> &mut Pool<I> {
        let fs = self
            .functions
            .entry(fv.function.clone())
            .or_insert_with(FunctionState::new);
        let pool = fs
            .versions
            .entry(fv.version.clone())
            .or_insert_with(|| Pool::new(fv.clone(), cost()));
        pool.retired = false;
        pool
    }

    /// Runs `f` on the pool of `fv` and keeps `unreserved_used` in step with its usage change.
    /// `None` if the pool does not exist.
    pub fn adjust_pool<R>(
        &mut self,
        fv: &FunctionVersion,
        f: impl FnOnce(&mut Pool<I>) -> R,
    ) -> Option<R> {
        let fs = self.functions.get_mut(&fv.function)?;
        let unreserved = fs.reserved.is_none();
        let pool = fs.versions.get_mut(&fv.version)?;
        let before = pool.usage();
        let out = f(pool);
        let after = pool.usage();
        if unreserved {
            debug_assert!(
                self.unreserved_used + after >= before,
                "unreserved usage underflow"
            );
            self.unreserved_used = (self.unreserved_used + after).saturating_sub(before);
        }
        Some(out)
    }

    /// Sum of requested provisioned concurrency over functions without reserved concurrency.
    pub fn unreserved_provisioned(&self) -> u32 {
        self.functions
            .values()
            .filter(|fs| fs.reserved.is_none())
            .map(FunctionState::provisioned_requested)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_adjust_pool_tracks_unreserved_usage_only() {
        let mut st: State<u32> = State::new();
        let a = FunctionVersion::new("a", "1");
        let b = FunctionVersion::new("b", "1");
        st.ensure_pool(&a, || 1);
        st.ensure_pool(&b, || 1);
        st.functions.get_mut("b").unwrap().reserved = Some(5);
        st.adjust_pool(&a, |p| p.busy += 2);
        st.adjust_pool(&b, |p| p.busy += 3);
        assert_eq!(st.unreserved_used, 2);
        st.adjust_pool(&a, |p| p.busy -= 1);
        assert_eq!(st.unreserved_used, 1);
        assert!(st
            .adjust_pool(&FunctionVersion::new("zz", "1"), |_| ())
            .is_none());
        assert_eq!(st.next_instance_id(), InstanceId(1));
        assert_eq!(st.next_instance_id(), InstanceId(2));
    }
}
