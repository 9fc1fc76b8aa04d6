//! The counting service: the account-wide concurrency limit, reserved concurrency per function, and
//! the admission check an on-demand lease passes (Lambda's rules and throttle reasons).
//!
//! Capacity model, as in Lambda: a function with reserved concurrency `R` may use at most `R`
//! (provisioned slots included); every other function shares the unreserved pool,
//! `account_concurrency - sum(R)`, which its provisioned slots also draw on. Provisioned slots are
//! checked when configured, so leasing a provisioned instance is never throttled.

use super::State;
use crate::model::{Limits, ThrottleReason};

impl<I> State<I> {
    /// May `function` start one more on-demand lease? Its pool must exist.
    pub fn admit(&self, function: &str, limits: &Limits) -> Result<(), ThrottleReason> {
        let fs = self.functions.get(function);
        match fs.and_then(|fs| fs.reserved) {
            Some(reserved) => {
                let used = fs.map_or(0, |fs| fs.usage());
                if used < reserved {
                    Ok(())
                } else {
                    Err(ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded)
                }
            }
            None => {
                let pool = limits
                    .account_concurrency
                    .saturating_sub(self.reserved_total);
                if self.unreserved_used < pool {
                    Ok(())
                } else {
                    Err(ThrottleReason::ConcurrentInvocationLimitExceeded)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::FunctionVersion;

    #[test]
    fn test_admission_uses_reserved_then_unreserved_pool() {
        let limits = Limits {
            account_concurrency: 10,
            ..Limits::default()
        };
        let mut st: State<u32> = State::new();
        let (a, b) = (
            FunctionVersion::new("a", "1"),
            FunctionVersion::new("b", "1"),
        );
        st.ensure_pool(&a, || 1);
        st.ensure_pool(&b, || 1);
        st.functions.get_mut("b").unwrap().reserved = Some(4);
        st.reserved_total = 4;
        st.adjust_pool(&a, |p| p.busy = 6);
        assert_eq!(
            st.admit("a", &limits),
            Err(ThrottleReason::ConcurrentInvocationLimitExceeded)
        );
        st.adjust_pool(&b, |p| p.busy = 3);
        assert_eq!(st.admit("b", &limits), Ok(()));
        st.adjust_pool(&b, |p| p.busy = 4);
        assert_eq!(
            st.admit("b", &limits).unwrap_err().as_str(),
            "ReservedFunctionConcurrentInvocationLimitExceeded"
        );
    }
}
