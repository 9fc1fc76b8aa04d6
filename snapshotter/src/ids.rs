//! Identifiers that cross crate boundaries: [`ChunkId`] (blake3 of a chunk's uncompressed bytes),
//! [`SnapshotId`] (blake3 of a committed manifest) and [`FunctionKey`] (the function a snapshot
//! belongs to). Ids print as lowercase hex and parse back with `FromStr`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// The string is not 64 characters long.
    #[error("id must be 64 hex characters, got {0}")]
    ParseLength(usize),
    /// A character is not a hex digit.
    #[error("id contains a non-hex character")]
    ParseDigit,
}

fn to_hex(bytes: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

fn from_hex(s: &str) -> Result<[u8; 32], IdError> {
    if s.len() != 64 {
        return Err(IdError::ParseLength(s.len()));
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16).ok_or(IdError::ParseDigit)?;
        let lo = (pair[1] as char).to_digit(16).ok_or(IdError::ParseDigit)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Ok(out)
}

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The id as 64 lowercase hex characters.
            pub fn to_hex(&self) -> String {
                to_hex(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&to_hex(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), to_hex(&self.0))
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                from_hex(s).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&to_hex(&self.0))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(
    /// Names a chunk: the blake3 hash of its uncompressed bytes.
    ChunkId
);

hex_id!(
    /// Names a committed snapshot: the blake3 hash of its encoded manifest (without the working
    /// set, which can be set later), so identical snapshots share one id.
    SnapshotId
);

impl ChunkId {
    /// The id of `bytes` (blake3 of the uncompressed contents).
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }
}

/// The function (and version) a snapshot belongs to, e.g. `"hello:3"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FunctionKey(pub String);

impl FunctionKey {
    /// A key from anything string-like.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
}

impl fmt::Display for FunctionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_chunk_id_hex_round_trip() {
        let id = ChunkId::of(b"hello");
        let s = id.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<ChunkId>().unwrap(), id);
        assert_eq!(s, blake3::hash(b"hello").to_hex().as_str());
    }

    #[test]
    fn test_bad_ids_are_rejected() {
        assert_eq!("abc".parse::<SnapshotId>(), Err(IdError::ParseLength(3)));
        let s = "g".repeat(64);
        assert_eq!(s.parse::<SnapshotId>(), Err(IdError::ParseDigit));
    }

    #[test]
    fn test_ids_serialize_as_strings() {
        let id = SnapshotId([7; 32]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<SnapshotId>(&json).unwrap(), id);
    }
}
