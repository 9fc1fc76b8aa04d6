//! Identifiers that cross crate boundaries: a function version and a scheduler-assigned instance id.

use std::fmt;

/// One published version of a function (`"$LATEST"`, `"1"`, `"2"`, ...). Aliases are resolved to a
/// version by the frontend before anything reaches the scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionVersion {
    /// The function's name (not an ARN).
    pub function: String,
    /// The version qualifier.
    pub version: String,
}

impl FunctionVersion {
    /// The qualifier of the unpublished, mutable version.
    pub const LATEST: &'static str = "$LATEST";

    /// A function version from its parts.
    pub fn new(function: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            function: function.into(),
            version: version.into(),
        }
    }

    /// The `$LATEST` version of `function`.
    pub fn latest(function: impl Into<String>) -> Self {
        Self::new(function, Self::LATEST)
    }

    /// Whether this is `$LATEST` (which cannot have provisioned concurrency).
    pub fn is_latest(&self) -> bool {
        self.version == Self::LATEST
    }
}

impl fmt::Display for FunctionVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.function, self.version)
    }
}

/// A restored instance, numbered by the scheduler when its restore starts. Unique per scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(pub u64);

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "i-{:08x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_display_and_latest() {
        let fv = FunctionVersion::latest("hello");
        assert!(fv.is_latest());
        assert_eq!(fv.to_string(), "hello:$LATEST");
        assert!(!FunctionVersion::new("hello", "3").is_latest());
        assert_eq!(InstanceId(26).to_string(), "i-0000001a");
    }
}
