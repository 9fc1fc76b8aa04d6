//! Placement on this host: the memory budget. Every live or restoring instance is charged its
//! version's `memory_bytes`; a restore that does not fit evicts idle on-demand instances, least
//! recently used first, and is refused if even that cannot make room. Provisioned and busy instances
//! are never evicted.

use super::{Pool, State};
use crate::model::PlacementError;

impl<I> State<I> {
    /// Charges `cost` bytes against `budget` and returns the evicted instances, which the caller
    /// discards after dropping the lock.
    ///
    /// 1. If `memory_used + cost <= budget`, charge and return no victims.
    /// 2. Sum the bytes of every idle on-demand instance; if freeing all of them would still not
    ///    fit, refuse without evicting anything (no pointless scale-down).
    /// 3. Take the oldest idle on-demand instance across all pools (each pool keeps its idle list
    ///    oldest-first, so the candidates are the list fronts) until the restore fits.
    /// 4. Charge `cost`.
    pub fn reserve_memory(&mut self, cost: u64, budget: u64) -> Result<Vec<I>, PlacementError> {
        // 1.
        if self.memory_used + cost <= budget {
            self.memory_used += cost;
            return Ok(Vec::new());
        }
        // 2.
        let mut pools: Vec<&mut Pool<I>> = self
            .functions
            .values_mut()
            .flat_map(|fs| fs.versions.values_mut())
            .filter(|p| !p.idle.is_empty())
            .collect();
        let evictable: u64 = pools.iter().map(|p| p.cost * p.idle.len() as u64).sum();
        if self.memory_used.saturating_sub(evictable) + cost > budget {
            return Err(PlacementError::NoCapacity {
                needed: cost,
                used: self.memory_used,
                budget,
                evictable,
            });
        }
        // 3.
        let mut victims = Vec::new();
        while self.memory_used + cost > budget {
            let oldest = pools
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.idle.front().map(|idle| (idle.since, i)))
                .min()
                .map(|(_, i)| i);
            let Some(i) = oldest else { break };
            let pool = &mut pools[i];
            if let Some(idle) = pool.idle.pop_front() {
                tracing::debug!(fv = %pool.key, id = %idle.id, "evicting idle instance for memory");
                pool.counters.evicted_memory += 1;
                pool.charged = pool.charged.saturating_sub(1);
                self.memory_used -= pool.cost;
                victims.push(idle.instance);
            }
        }
        // 4.
        self.memory_used += cost;
        Ok(victims)
    }

    /// Sets what each instance of `fv`'s pool is charged, re-charging the ones it has.
    pub fn recost(&mut self, fv: &crate::ids::FunctionVersion, cost: u64) {
        let Some(pool) = self.pool_mut(fv) else {
            return;
        };
        if pool.cost == cost {
            return;
        }
        let (n, old) = (u64::from(pool.charged), pool.cost);
        pool.cost = cost;
        self.memory_used = self
            .memory_used
            .saturating_sub(old * n)
            .saturating_add(cost * n);
    }

    /// Folds one measurement of an instance of `fv` (generation `generation`) into its
    /// pool's charge under `admission`.
    pub fn observe_cost(
        &mut self,
        fv: &crate::ids::FunctionVersion,
        generation: u64,
        bytes: u64,
        admission: crate::model::Admission,
    ) {
        let Some(pool) = self.pool_mut(fv) else {
            return;
        };
        if pool.generation != generation {
            return;
        }
        if pool.recent.len() == super::pool::RECENT_MEASUREMENTS {
            pool.recent.pop_front();
        }
        pool.recent.push_back(bytes);
        pool.measured = pool.recent.iter().copied().max().unwrap_or(0);
        let cost = admission.charge(pool.declared, pool.measured);
        self.recost(fv, cost);
    }

    /// Records that one more instance of `fv` is charged (after a successful
    /// [`State::reserve_memory`] of its pool's cost).
    pub fn charge(&mut self, fv: &crate::ids::FunctionVersion) {
        if let Some(pool) = self.pool_mut(fv) {
            pool.charged += 1;
        }
    }

    /// Returns the charge of `n` instances of `fv` (at its pool's current cost).
    pub fn uncharge(&mut self, fv: &crate::ids::FunctionVersion, n: usize) {
        let Some(pool) = self.pool_mut(fv) else {
            return;
        };
        let n = n as u32;
        pool.charged = pool.charged.saturating_sub(n);
        let cost = pool.cost * u64::from(n);
        self.release_memory(cost);
    }

    /// Returns `cost` bytes to the budget.
    pub fn release_memory(&mut self, cost: u64) {
        debug_assert!(self.memory_used >= cost, "memory ledger underflow");
        self.memory_used = self.memory_used.saturating_sub(cost);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::ids::{FunctionVersion, InstanceId};
    use crate::state::Idle;

    fn add_idle(
        st: &mut State<&'static str>,
        fv: &FunctionVersion,
        name: &'static str,
        since: Instant,
    ) {
        let pool = st.ensure_pool(fv, || 10);
        pool.idle.push_back(Idle {
            id: InstanceId(0),
            instance: name,
            since,
        });
        pool.charged += 1;
        st.memory_used += 10;
    }

    #[test]
    fn test_evicts_least_recently_used_across_pools() {
        let t0 = Instant::now();
        let (a, b) = (
            FunctionVersion::new("a", "1"),
            FunctionVersion::new("b", "1"),
        );
        let mut st = State::new();
        add_idle(&mut st, &a, "a-old", t0);
        add_idle(&mut st, &b, "b-older", t0 - Duration::from_secs(1));
        add_idle(&mut st, &a, "a-new", t0 + Duration::from_secs(1));
        assert_eq!(st.reserve_memory(15, 40).unwrap(), vec!["b-older"]);
        assert_eq!(st.memory_used, 35);
        assert_eq!(st.reserve_memory(10, 40).unwrap(), vec!["a-old"]);
        assert_eq!(st.pool(&b).unwrap().counters.evicted_memory, 1);
    }

    #[test]
    fn test_refuses_without_evicting_when_eviction_cannot_help() {
        let mut st = State::new();
        let a = FunctionVersion::new("a", "1");
        add_idle(&mut st, &a, "a", Instant::now());
        st.memory_used += 20; // busy instances elsewhere
        let err = st.reserve_memory(25, 40).unwrap_err();
        assert!(matches!(
            err,
            PlacementError::NoCapacity { evictable: 10, .. }
        ));
        assert_eq!(st.pool(&a).unwrap().idle.len(), 1);
        assert_eq!(st.memory_used, 30);
    }
}
