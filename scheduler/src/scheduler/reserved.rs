//! Reserved concurrency per function (PutFunctionConcurrency and friends): checked against the
//! account's limits and the function's provisioned concurrency, then kept in the state's ledger.

use super::Scheduler;
use crate::factory::InstanceFactory;
use crate::model::ReservedError;

impl<F: InstanceFactory> Scheduler<F> {
    /// Sets `function`'s reserved concurrency (all versions together); 0 throttles every on-demand
    /// invocation of it.
    pub fn put_reserved(&self, function: &str, n: u32) -> Result<(), ReservedError> {
        let limits = &self.inner.limits;
        let mut st = self.inner.state.lock();
        let st = &mut *st;
        let (old, provisioned, usage) = st.functions.get(function).map_or((None, 0, 0), |fs| {
            (fs.reserved, fs.provisioned_requested(), fs.usage())
        });
        if n < provisioned {
            return Err(ReservedError::BelowProvisioned {
                requested: n,
                provisioned,
            });
        }
        let others_reserved = st.reserved_total - old.unwrap_or(0);
        let others_provisioned =
            st.unreserved_provisioned() - if old.is_none() { provisioned } else { 0 };
        let available = limits.account_concurrency.saturating_sub(
            limits.min_unreserved_concurrency + others_reserved + others_provisioned,
        );
        if n > available {
            return Err(ReservedError::ExceedsUnreserved {
                requested: n,
                available,
            });
        }
        let fs = st
            .functions
            .entry(function.to_owned())
            .or_insert_with(crate::state::FunctionState::new);
        fs.reserved = Some(n);
        st.reserved_total = others_reserved + n;
        if old.is_none() {
            st.unreserved_used -= usage;
        }
        Ok(())
    }

    /// Removes `function`'s reserved concurrency; it shares the unreserved pool again. Returns the
    /// reservation that was removed, if any.
    pub fn delete_reserved(&self, function: &str) -> Option<u32> {
        let mut st = self.inner.state.lock();
        let st = &mut *st;
        let fs = st.functions.get_mut(function)?;
        let old = fs.reserved.take()?;
        st.reserved_total -= old;
        st.unreserved_used += fs.usage();
        Some(old)
    }

    /// `function`'s reserved concurrency, if set.
    pub fn get_reserved(&self, function: &str) -> Option<u32> {
        self.inner.state.lock().functions.get(function)?.reserved
    }
}
