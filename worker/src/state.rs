//! A snapshot's state blob: what a restore needs besides guest RAM. The vCPU state,
//! the function's spec ([`SpecRecord`]) and its code, so a snapshot can also be rebuilt
//! from a cold boot when a chunk turns out corrupt; and the store keys of a function
//! version's snapshots.
//!
//! State blob (`codec` kind `SNAP`, version 1): `u32 json_len`, the JSON
//! [`SnapshotRecord`], then the function code as a `thaw_abi::files` archive.
use crate::error::WorkerError;
use crate::function::FunctionCode;
use crate::spec::FunctionSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use thaw_snapshotter::{codec, FunctionKey};
use thaw_vmm::state::VmState;

/// `codec` kind of snapshot state blobs.
pub const STATE_KIND: [u8; 4] = *b"SNAP";
/// Current state blob format.
pub const STATE_VERSION: u16 = 1;

/// The serialisable part of a function spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecRecord {
    pub name: String,
    pub version: String,
    pub handler: String,
    pub memory_mb: u32,
    /// Absent in records written before EphemeralStorage took effect: 512.
    #[serde(default = "default_ephemeral_mb")]
    pub ephemeral_mb: u32,
    pub timeout_ms: u64,
    pub env: BTreeMap<String, String>,
    pub region: String,
}

fn default_ephemeral_mb() -> u32 {
    *crate::spec::EPHEMERAL_MB.start()
}

/// What a snapshot's state blob holds besides the code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub vm: VmState,
    pub spec: SpecRecord,
}

/// The store key of a function version's current snapshot.
pub fn function_key(name: &str, version: &str) -> FunctionKey {
    FunctionKey::new(format!("{name}:{version}"))
}

/// The store key of the current snapshot of `spec`'s configuration: its version's key,
/// qualified by the deployment when it has one ([`FunctionSpec::deployment`]).
pub fn spec_key(spec: &FunctionSpec) -> FunctionKey {
    if spec.deployment.is_empty() {
        function_key(&spec.name, &spec.version)
    } else {
        FunctionKey::new(format!(
            "{}:{}@{}",
            spec.name, spec.version, spec.deployment
        ))
    }
}

/// Encodes a state blob.
pub fn encode_state(record: &SnapshotRecord, code: &FunctionCode) -> Vec<u8> {
    let json = serde_json::to_vec(record).expect("snapshot record serialises");
    let mut payload = Vec::with_capacity(4 + json.len());
    payload.extend_from_slice(&(json.len() as u32).to_le_bytes());
    payload.extend_from_slice(&json);
    let mut archive = Vec::new();
    for (name, data) in &code.files {
        thaw_abi::files::push(&mut archive, name.as_bytes(), data);
    }
    payload.extend_from_slice(&archive);
    codec::encode(STATE_KIND, STATE_VERSION, &payload)
}

/// Decodes a state blob (wrong kind, version, truncation and checksum are errors).
pub fn decode_state(blob: &[u8]) -> Result<(SnapshotRecord, FunctionCode), WorkerError> {
    let payload = codec::decode(STATE_KIND, STATE_VERSION, blob).map_err(WorkerError::StateBlob)?;
    let bad = |m: &str| WorkerError::StateRecord(m.to_string());
    let len = payload.get(..4).ok_or_else(|| bad("truncated"))?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let json = payload
        .get(4..4 + len)
        .ok_or_else(|| bad("truncated record"))?;
    let record: SnapshotRecord = serde_json::from_slice(json).map_err(|e| bad(&e.to_string()))?;
    let mut code = FunctionCode::default();
    for (name, data) in thaw_abi::files::entries(&payload[4 + len..]) {
        code.files
            .insert(String::from_utf8_lossy(name).into_owned(), data.to_vec());
    }
    Ok((record, code))
}

impl SpecRecord {
    /// Mirrors a spec.
    pub fn of(spec: &FunctionSpec) -> Self {
        Self {
            name: spec.name.clone(),
            version: spec.version.clone(),
            handler: spec.handler.clone(),
            memory_mb: spec.memory_mb,
            ephemeral_mb: spec.ephemeral_mb,
            timeout_ms: spec.timeout.as_millis() as u64,
            env: spec.env.clone(),
            region: spec.region.clone(),
        }
    }

    /// Rebuilds the spec with its code.
    pub fn to_spec(&self, code: FunctionCode) -> FunctionSpec {
        let mut spec = FunctionSpec::new(&self.name, &self.handler, code);
        spec.version = self.version.clone();
        spec.memory_mb = self.memory_mb;
        spec.ephemeral_mb = self.ephemeral_mb;
        spec.timeout = Duration::from_millis(self.timeout_ms);
        spec.env = self.env.clone();
        spec.region = self.region.clone();
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> SnapshotRecord {
        let vm = VmState {
            ram_size: 64 << 20,
            regs: Default::default(),
            sregs: Default::default(),
            xcrs: Default::default(),
            xsave: vec![3; 1024],
            msrs: vec![(0x10, 5)],
            tsc_khz: 1000,
            pending: Some(2),
        };
        let spec = SpecRecord {
            name: "f".into(),
            version: "1".into(),
            handler: "app.handler".into(),
            memory_mb: 64,
            // The default: the v1 fixture predates the field and decodes to it.
            ephemeral_mb: 512,
            timeout_ms: 3000,
            env: BTreeMap::from([("K".into(), "V".into())]),
            region: "us-east-1".into(),
        };
        SnapshotRecord { vm, spec }
    }

    #[test]
    fn test_state_blob_round_trip() {
        let mut code = FunctionCode::default();
        code.files
            .insert("app.py".into(), b"def handler(e, c): return 1\n".to_vec());
        let blob = encode_state(&record(), &code);
        let (rec, back) = decode_state(&blob).unwrap();
        assert_eq!(rec, record());
        assert_eq!(back, code);
    }

    #[test]
    fn test_truncated_foreign_and_old_blobs_are_refused() {
        let blob = encode_state(&record(), &FunctionCode::default());
        assert!(matches!(
            decode_state(&blob[..blob.len() - 3]),
            Err(WorkerError::StateBlob(_))
        ));
        assert!(matches!(
            decode_state(b"PK\x03\x04 a zip, not a state blob"),
            Err(WorkerError::StateBlob(_))
        ));
        let other_version = codec::encode(STATE_KIND, STATE_VERSION + 1, b"{}");
        let err = decode_state(&other_version).unwrap_err();
        assert!(matches!(err, WorkerError::StateBlob(_)), "{err}");
        let other_kind = codec::encode(*b"XXXX", STATE_VERSION, b"{}");
        assert!(matches!(
            decode_state(&other_kind),
            Err(WorkerError::StateBlob(_))
        ));
    }

    #[test]
    fn test_state_blob_fixture_still_decodes() {
        // Generated by this format's first version; a format change must be a
        // deliberate version bump (regenerate with THAW_REGEN_FIXTURES=1).
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/snapshot_state_v1.bin"
        );
        let mut code = FunctionCode::default();
        code.files.insert("app.py".into(), b"x = 1\n".to_vec());
        if std::env::var_os("THAW_REGEN_FIXTURES").is_some() {
            std::fs::write(path, encode_state(&record(), &code)).unwrap();
        }
        let blob = std::fs::read(path).expect("fixture present");
        let (rec, back) = decode_state(&blob).unwrap();
        assert_eq!(rec, record());
        assert_eq!(back, code);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// The snapshot state blob (vCPU state, spec, code): any bytes decode to an
        /// error or a value, never a panic; a flipped bit in a valid blob is refused.
        #[test]
        fn test_state_blobs_never_panic_and_flips_are_refused(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
            at in proptest::prelude::any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let _ = decode_state(&bytes);
            let mut code = FunctionCode::default();
            code.files.insert("app.py".into(), b"x = 1\n".to_vec());
            let mut blob = encode_state(&record(), &code);
            let i = at.index(blob.len());
            blob[i] ^= 1 << bit;
            proptest::prop_assert!(decode_state(&blob).is_err());
        }
    }
}
