//! What a snapshot is: its [`SnapshotMeta`], its memory [`Region`]s as chunk lists, the opaque
//! vCPU/device state blob and an optional working set. Also the manifest's on-disk record,
//! which goes through the codec (kind `MANI`, version 1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::ids::{ChunkId, FunctionKey, SnapshotId};

/// Codec kind of a manifest record.
pub const MANIFEST_KIND: [u8; 4] = *b"MANI";
/// Format version of manifest records this build writes and reads.
pub const MANIFEST_VERSION: u16 = 1;
/// Codec kind of a working-set record.
pub const WORKING_SET_KIND: [u8; 4] = *b"WSET";
/// Format version of working-set records.
pub const WORKING_SET_VERSION: u16 = 1;

/// Why a manifest record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The codec header is wrong.
    #[error("bad manifest record")]
    DecodeHeader(#[from] CodecError),
    /// The payload is shorter than its own length fields.
    #[error("manifest record body truncated")]
    DecodeBody,
    /// The JSON part does not parse.
    #[error("manifest record body does not parse")]
    DecodeJson(#[source] serde_json::Error),
}

/// What the caller says about a snapshot when it starts one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The function (and version) this snapshot belongs to.
    pub function: FunctionKey,
    /// Hash of the function's code; a restore must refuse a snapshot whose code changed.
    pub code_hash: String,
    /// Hash of the runtime (guest program, engine, Python); same rule.
    pub runtime_hash: String,
    /// Guest memory size in bytes; every region lies below it.
    pub memory_size: u64,
    /// Free-form labels (creator, timestamps, ...).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One guest memory region as a list of chunks of `chunk_size` bytes (the last may be shorter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    /// Guest-physical address of the region's first byte.
    pub guest_addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// One entry per chunk; `None` is an all-zero chunk (not stored).
    pub chunks: Vec<Option<ChunkId>>,
}

/// One chunk of a snapshot with its place in guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    /// Guest-physical address of the chunk's first byte.
    pub guest_addr: u64,
    /// Length in bytes (`chunk_size` except at a region's end).
    pub len: u64,
    /// `None` for an all-zero chunk.
    pub id: Option<ChunkId>,
}

/// A committed snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Its id.
    pub id: SnapshotId,
    /// What the caller said about it.
    pub meta: SnapshotMeta,
    /// Chunk size used for its regions.
    pub chunk_size: u64,
    /// Guest memory, in the order regions were added.
    pub regions: Vec<Region>,
    /// The opaque state blob (vCPU, hypercall state), already codec-encoded by its owner.
    pub state: Vec<u8>,
    /// Global chunk indices (see [`Manifest::chunk`]) in first-touch order, if recorded.
    pub working_set: Option<Vec<u32>>,
    /// A working set recorded before any real invocation (the runtime's own invoke
    /// path, at build time): prefetched by restores until the first real restore
    /// records the final one on top of it.
    pub provisional_working_set: Option<Vec<u32>>,
}

#[derive(Serialize, Deserialize)]
struct Body {
    meta: SnapshotMeta,
    chunk_size: u64,
    regions: Vec<Region>,
}

impl Manifest {
    /// All chunks of all regions in order; a chunk's position here is its global index.
    pub fn chunks(&self) -> impl Iterator<Item = ChunkRef> + '_ {
        let cs = self.chunk_size;
        self.regions.iter().flat_map(move |r| {
            r.chunks.iter().enumerate().map(move |(i, id)| {
                let off = i as u64 * cs;
                ChunkRef {
                    guest_addr: r.guest_addr + off,
                    len: cs.min(r.len - off),
                    id: *id,
                }
            })
        })
    }

    /// The chunk with global index `index` (regions' chunk lists concatenated).
    pub fn chunk(&self, index: u32) -> Option<ChunkRef> {
        self.chunks().nth(index as usize)
    }

    /// Number of chunks over all regions.
    pub fn chunk_count(&self) -> usize {
        self.regions.iter().map(|r| r.chunks.len()).sum()
    }

    /// Bytes of guest memory the regions cover.
    pub fn raw_len(&self) -> u64 {
        self.regions.iter().map(|r| r.len).sum()
    }

    /// True if the snapshot was taken from this code and runtime; restore only if so.
    pub fn matches(&self, code_hash: &str, runtime_hash: &str) -> bool {
        self.meta.code_hash == code_hash && self.meta.runtime_hash == runtime_hash
    }
}

/// Encodes a manifest record: `u32` JSON length, JSON body, state blob, inside the codec header.
pub(crate) fn encode_record(
    meta: &SnapshotMeta,
    chunk_size: u64,
    regions: &[Region],
    state: &[u8],
) -> Vec<u8> {
    let body = Body {
        meta: meta.clone(),
        chunk_size,
        regions: regions.to_vec(),
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut payload = Vec::with_capacity(4 + json.len() + state.len());
    payload.extend_from_slice(&(json.len() as u32).to_le_bytes());
    payload.extend_from_slice(&json);
    payload.extend_from_slice(state);
    codec::encode(MANIFEST_KIND, MANIFEST_VERSION, &payload)
}

/// Decodes a manifest record written by [`encode_record`].
pub(crate) fn decode_record(id: SnapshotId, record: &[u8]) -> Result<Manifest, ManifestError> {
    let payload = codec::decode(MANIFEST_KIND, MANIFEST_VERSION, record)?;
    let len_bytes = payload.get(..4).ok_or(ManifestError::DecodeBody)?;
    let json_len = u32::from_le_bytes(len_bytes.try_into().unwrap_or_default()) as usize;
    let json = payload
        .get(4..4 + json_len)
        .ok_or(ManifestError::DecodeBody)?;
    let body: Body = serde_json::from_slice(json).map_err(ManifestError::DecodeJson)?;
    Ok(Manifest {
        id,
        meta: body.meta,
        chunk_size: body.chunk_size,
        regions: body.regions,
        state: payload[4 + json_len..].to_vec(),
        working_set: None,
        provisional_working_set: None,
    })
}

/// Encodes a working set as little-endian `u32`s in a codec header.
pub(crate) fn encode_working_set(ws: &[u32]) -> Vec<u8> {
    let payload: Vec<u8> = ws.iter().flat_map(|i| i.to_le_bytes()).collect();
    codec::encode(WORKING_SET_KIND, WORKING_SET_VERSION, &payload)
}

/// Decodes a record written by [`encode_working_set`].
pub(crate) fn decode_working_set(record: &[u8]) -> Result<Vec<u32>, ManifestError> {
    let payload = codec::decode(WORKING_SET_KIND, WORKING_SET_VERSION, record)?;
    if payload.len() % 4 != 0 {
        return Err(ManifestError::DecodeBody);
    }
    Ok(payload
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/manifest_v1.bin"
    );

    fn sample() -> (SnapshotMeta, Vec<Region>) {
        let meta = SnapshotMeta {
            function: FunctionKey::new("hello:1"),
            code_hash: "code".into(),
            runtime_hash: "rt".into(),
            memory_size: 8 << 20,
            labels: [("by".to_string(), "test".to_string())].into(),
        };
        let regions = vec![Region {
            guest_addr: 0x20_0000,
            len: 5 << 20,
            chunks: vec![Some(ChunkId([1; 32])), None, Some(ChunkId([2; 32]))],
        }];
        (meta, regions)
    }

    #[test]
    fn test_record_round_trip_and_chunk_layout() {
        let (meta, regions) = sample();
        let rec = encode_record(&meta, 2 << 20, &regions, b"state");
        let m = decode_record(SnapshotId([0; 32]), &rec).unwrap();
        assert_eq!(
            (m.meta.clone(), m.regions.clone(), m.state.clone()),
            (meta, regions, b"state".to_vec())
        );
        assert_eq!(m.chunk_count(), 3);
        assert_eq!(
            m.chunk(2).unwrap(),
            ChunkRef {
                guest_addr: 0x20_0000 + (4 << 20),
                len: 1 << 20,
                id: Some(ChunkId([2; 32]))
            }
        );
        assert!(m.matches("code", "rt") && !m.matches("code", "rt2"));
    }

    #[test]
    fn test_working_set_round_trip() {
        let rec = encode_working_set(&[3, 1, 2]);
        assert_eq!(decode_working_set(&rec).unwrap(), vec![3, 1, 2]);
        assert!(decode_record(SnapshotId([0; 32]), &rec).is_err());
    }

    /// The committed fixture is a version-1 manifest record; regenerate only for a deliberate
    /// format change (`THAW_REGEN_FIXTURES=1`).
    #[test]
    fn test_manifest_fixture_still_decodes() {
        let (meta, regions) = sample();
        if std::env::var_os("THAW_REGEN_FIXTURES").is_some() {
            std::fs::write(FIXTURE, encode_record(&meta, 2 << 20, &regions, b"state")).unwrap();
        }
        let bytes = std::fs::read(FIXTURE).unwrap();
        let m = decode_record(SnapshotId([0; 32]), &bytes).unwrap();
        assert_eq!(
            (m.meta, m.regions, m.state),
            (meta, regions, b"state".to_vec())
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any bytes: a manifest or an error, never a panic.
        #[test]
        fn test_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let _ = decode_record(SnapshotId([0; 32]), &bytes);
            let _ = decode_working_set(&bytes);
        }

        /// One flipped bit anywhere in a valid record is refused (the codec's checksum).
        #[test]
        fn test_a_flipped_bit_is_refused(at in proptest::prelude::any::<proptest::sample::Index>(), bit in 0u8..8) {
            let (meta, regions) = sample();
            let mut rec = encode_record(&meta, 2 << 20, &regions, b"state");
            let i = at.index(rec.len());
            rec[i] ^= 1 << bit;
            proptest::prop_assert!(decode_record(SnapshotId([0; 32]), &rec).is_err());
        }

        /// Truncated at any length: refused.
        #[test]
        fn test_any_truncation_is_refused(at in proptest::prelude::any::<proptest::sample::Index>()) {
            let (meta, regions) = sample();
            let rec = encode_record(&meta, 2 << 20, &regions, b"state");
            let n = at.index(rec.len());
            proptest::prop_assert!(decode_record(SnapshotId([0; 32]), &rec[..n]).is_err());
        }
    }
}
