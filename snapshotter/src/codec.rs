//! The one versioned codec every saved blob goes through: a fixed header (magic, kind, format
//! version, payload length, checksum) in front of an opaque payload.
//!
//! Layout, little-endian, 52 bytes of header:
//! `b"THAW"` | kind `[u8; 4]` | version `u16` | reserved `u16` (0) | payload length `u64` |
//! blake3(header bytes 0..20 ++ payload) `[u8; 32]` | payload.
//! The checksum covers the header fields too, so a flipped version or length is caught.

/// First four bytes of every thaw blob.
pub const MAGIC: [u8; 4] = *b"THAW";
/// Header length in bytes.
pub const HEADER_LEN: usize = 52;

/// Why a blob could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// Fewer bytes than the header or the declared payload length.
    #[error("blob truncated: need {needed} bytes, have {got}")]
    Truncated { needed: u64, got: u64 },
    /// The blob is not a thaw blob.
    #[error("not a thaw blob (magic {found:02x?})")]
    ForeignMagic { found: [u8; 4] },
    /// The blob is a thaw blob of another kind.
    #[error("blob kind is {found:?}, expected {expected:?}", found = String::from_utf8_lossy(found), expected = String::from_utf8_lossy(expected))]
    WrongKind { expected: [u8; 4], found: [u8; 4] },
    /// The blob was written by another format version.
    #[error("blob format version {found}, this build reads version {expected}")]
    WrongVersion { expected: u16, found: u16 },
    /// Bytes after the declared payload.
    #[error("blob has {extra} trailing bytes")]
    TrailingBytes { extra: u64 },
    /// The checksum does not match the contents.
    #[error("blob checksum mismatch")]
    ChecksumMismatch,
}

fn checksum(head: &[u8], payload: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(head);
    h.update(payload);
    *h.finalize().as_bytes()
}

/// Wraps `payload` in a header naming `kind` and `version`.
pub fn encode(kind: [u8; 4], version: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&kind);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let sum = checksum(&out, payload);
    out.extend_from_slice(&sum);
    out.extend_from_slice(payload);
    out
}

/// Checks the header of `bytes` and returns the payload.
///
/// Checks run in this order so the most useful error wins: length of the header, magic, kind,
/// version (a blob of another version may use another layout), declared length, checksum.
pub fn decode(kind: [u8; 4], expected_version: u16, bytes: &[u8]) -> Result<&[u8], CodecError> {
    let got = bytes.len() as u64;
    if bytes.len() < HEADER_LEN {
        // A short blob that does not even start like ours is foreign, not truncated.
        let n = bytes.len().min(4);
        if bytes[..n] != MAGIC[..n] {
            let mut found = [0u8; 4];
            found[..n].copy_from_slice(&bytes[..n]);
            return Err(CodecError::ForeignMagic { found });
        }
        return Err(CodecError::Truncated {
            needed: HEADER_LEN as u64,
            got,
        });
    }
    let field4 = |at: usize| -> [u8; 4] { bytes[at..at + 4].try_into().unwrap_or_default() };
    if field4(0) != MAGIC {
        return Err(CodecError::ForeignMagic { found: field4(0) });
    }
    if field4(4) != kind {
        return Err(CodecError::WrongKind {
            expected: kind,
            found: field4(4),
        });
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != expected_version {
        return Err(CodecError::WrongVersion {
            expected: expected_version,
            found: version,
        });
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().unwrap_or_default());
    let needed = (HEADER_LEN as u64).saturating_add(len);
    if got < needed {
        return Err(CodecError::Truncated { needed, got });
    }
    if got > needed {
        return Err(CodecError::TrailingBytes {
            extra: got - needed,
        });
    }
    let payload = &bytes[HEADER_LEN..];
    if checksum(&bytes[..20], payload)[..] != bytes[20..HEADER_LEN] {
        return Err(CodecError::ChecksumMismatch);
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: [u8; 4] = *b"TEST";
    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/codec_test_v1.bin"
    );
    const FIXTURE_PAYLOAD: &[u8] = b"thaw codec fixture payload, format version 1";

    #[test]
    fn test_round_trip() {
        let blob = encode(KIND, 3, b"payload");
        assert_eq!(blob.len(), HEADER_LEN + 7);
        assert_eq!(decode(KIND, 3, &blob).unwrap(), b"payload");
        assert_eq!(decode(KIND, 3, &encode(KIND, 3, b"")).unwrap(), b"");
    }

    #[test]
    fn test_truncated_blob() {
        let blob = encode(KIND, 1, b"some payload");
        let err = decode(KIND, 1, &blob[..blob.len() - 1]).unwrap_err();
        assert_eq!(
            err,
            CodecError::Truncated {
                needed: blob.len() as u64,
                got: blob.len() as u64 - 1
            }
        );
        assert!(matches!(
            decode(KIND, 1, &blob[..10]),
            Err(CodecError::Truncated { .. })
        ));
        assert!(matches!(
            decode(KIND, 1, &[]),
            Err(CodecError::Truncated { .. })
        ));
    }

    #[test]
    fn test_foreign_magic_and_kind() {
        let mut blob = encode(KIND, 1, b"x");
        assert_eq!(
            decode(*b"MANI", 1, &blob),
            Err(CodecError::WrongKind {
                expected: *b"MANI",
                found: KIND
            })
        );
        blob[0] = b'Z';
        assert!(matches!(
            decode(KIND, 1, &blob),
            Err(CodecError::ForeignMagic { .. })
        ));
        assert!(matches!(
            decode(KIND, 1, b"\x7fELF"),
            Err(CodecError::ForeignMagic { .. })
        ));
    }

    #[test]
    fn test_wrong_version_names_both() {
        let blob = encode(KIND, 1, b"x");
        let err = decode(KIND, 2, &blob).unwrap_err();
        assert_eq!(
            err,
            CodecError::WrongVersion {
                expected: 2,
                found: 1
            }
        );
        let msg = err.to_string();
        assert!(msg.contains('1') && msg.contains('2'), "{msg}");
    }

    #[test]
    fn test_checksum_mismatch() {
        let mut blob = encode(KIND, 1, b"payload");
        let last = blob.len() - 1;
        blob[last] ^= 1;
        assert_eq!(decode(KIND, 1, &blob), Err(CodecError::ChecksumMismatch));
    }

    #[test]
    fn test_trailing_bytes() {
        let mut blob = encode(KIND, 1, b"payload");
        blob.push(0);
        assert_eq!(
            decode(KIND, 1, &blob),
            Err(CodecError::TrailingBytes { extra: 1 })
        );
    }

    /// Regenerates the committed fixture: `THAW_REGEN_FIXTURES=1 cargo test -p thaw-snapshotter
    /// codec`. Only do this for a deliberate format change (and bump the version).
    #[test]
    fn test_fixture_still_decodes() {
        if std::env::var_os("THAW_REGEN_FIXTURES").is_some() {
            std::fs::write(FIXTURE, encode(KIND, 1, FIXTURE_PAYLOAD)).unwrap();
        }
        let bytes = std::fs::read(FIXTURE).unwrap();
        assert_eq!(decode(KIND, 1, &bytes).unwrap(), FIXTURE_PAYLOAD);
        assert_eq!(
            encode(KIND, 1, FIXTURE_PAYLOAD),
            bytes,
            "codec output changed"
        );
    }
}
