//! Registry records on disk: each goes through thaw's versioned codec
//! ([`thaw_snapshotter::codec`]: magic, a kind per record type, format version, checksum)
//! around its JSON. Records written before the codec (bare JSON, no `THAW` magic) still
//! load, so an older data directory keeps working; they are rewritten framed when changed.
//! Reserved concurrency was a bare decimal string then ([`decode_reserved`]).
use super::{
    Alias, AsyncEvent, EventInvokeConfig, Policy, ProvRecord, ReservedRecord, Result, UrlConfig,
    VersionConfig,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use thaw_snapshotter::codec;

/// The format version every registry record is written in.
pub const RECORD_VERSION: u16 = 1;

/// A record type the registry persists, with its codec kind.
pub trait Record: Serialize + DeserializeOwned {
    /// The codec kind (four ASCII bytes).
    const KIND: [u8; 4];
}

impl Record for VersionConfig {
    const KIND: [u8; 4] = *b"RVER";
}
impl Record for Alias {
    const KIND: [u8; 4] = *b"RALI";
}
impl Record for ProvRecord {
    const KIND: [u8; 4] = *b"RPRV";
}
impl Record for ReservedRecord {
    const KIND: [u8; 4] = *b"RRES";
}
impl Record for AsyncEvent {
    const KIND: [u8; 4] = *b"REVT";
}
impl Record for EventInvokeConfig {
    const KIND: [u8; 4] = *b"RINV";
}
impl Record for UrlConfig {
    const KIND: [u8; 4] = *b"RURL";
}
impl Record for Policy {
    const KIND: [u8; 4] = *b"RPOL";
}
/// A function's tags.
impl Record for BTreeMap<String, String> {
    const KIND: [u8; 4] = *b"RTAG";
}

/// `r` framed for the store.
pub fn encode<T: Record>(r: &T) -> Result<Vec<u8>> {
    Ok(codec::encode(
        T::KIND,
        RECORD_VERSION,
        &serde_json::to_vec(r)?,
    ))
}

/// A record read from the store (framed, or bare JSON from before the codec).
pub fn decode<T: Record>(bytes: &[u8]) -> Result<T> {
    if bytes.starts_with(&codec::MAGIC) {
        let payload = codec::decode(T::KIND, RECORD_VERSION, bytes)?;
        return Ok(serde_json::from_slice(payload)?);
    }
    Ok(serde_json::from_slice(bytes)?)
}

/// `function`'s reserved concurrency as read from the store: framed, or the bare decimal
/// string builds before the codec wrote (one that does not parse is ignored, as they ignored it).
pub fn decode_reserved(function: &str, bytes: &[u8]) -> Result<Option<ReservedRecord>> {
    if bytes.starts_with(&codec::MAGIC) {
        return decode(bytes).map(Some);
    }
    Ok(String::from_utf8_lossy(bytes)
        .parse()
        .ok()
        .map(|reserved| ReservedRecord {
            function: function.into(),
            reserved,
        }))
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;
    use std::fmt::Debug;

    /// Every persisted type: encode -> decode gives the value back, and the bytes are
    /// framed with its kind and version.
    fn assert_round_trip<T: Record + PartialEq + Debug>(v: &T) {
        let bytes = encode(v).unwrap();
        assert_eq!(&bytes[..4], b"THAW");
        assert_eq!(&bytes[4..8], &T::KIND);
        assert_eq!(&decode::<T>(&bytes).unwrap(), v);
        // A flipped payload byte is caught by the checksum.
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(decode::<T>(&bad).is_err());
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn alias() -> Alias {
        Alias {
            function: "f".into(),
            name: "live".into(),
            version: "1".into(),
            description: "d".into(),
            revision_id: "r".into(),
            weights: BTreeMap::from([("2".to_string(), 0.25)]),
        }
    }

    fn reserved() -> ReservedRecord {
        ReservedRecord {
            function: "f".into(),
            reserved: 5,
        }
    }

    fn prov() -> ProvRecord {
        ProvRecord {
            function: "f".into(),
            version: "1".into(),
            requested: 3,
            last_modified_ms: 7,
            qualifier: Some("live".into()),
        }
    }

    fn event() -> AsyncEvent {
        AsyncEvent {
            seq: 9,
            request_id: "id".into(),
            function: "f".into(),
            version: "$LATEST".into(),
            payload: "e30=".into(),
            attempts: 1,
            client_context: Some(serde_json::json!({"a": 1})),
            enqueued_ms: 5,
            qualifier: None,
        }
    }

    #[test]
    fn test_every_record_type_round_trips() {
        assert_round_trip(&alias());
        assert_round_trip(&reserved());
        assert_round_trip(&prov());
        assert_round_trip(&event());
        assert_round_trip(&EventInvokeConfig {
            function: "f".into(),
            qualifier: "$LATEST".into(),
            maximum_retry_attempts: Some(0),
            maximum_event_age_s: Some(60),
            on_success: None,
            on_failure: Some("g".into()),
            last_modified_ms: 1,
        });
        assert_round_trip(&Policy {
            function: "f".into(),
            qualifier: Some("1".into()),
            statements: vec![super::super::Permission {
                sid: "s3".into(),
                action: "lambda:InvokeFunction".into(),
                principal: "s3.amazonaws.com".into(),
                source_arn: Some("arn:aws:s3:::b".into()),
                source_account: None,
                principal_org_id: None,
                event_source_token: None,
                function_url_auth_type: None,
            }],
            revision_id: "r".into(),
        });
        assert_round_trip(&UrlConfig {
            function: "f".into(),
            qualifier: None,
            url_id: "a".repeat(32),
            auth_type: UrlAuthType::AwsIam,
            cors: Some(crate::url_event::Cors {
                allow_origins: vec!["*".into()],
                ..Default::default()
            }),
            invoke_mode: "BUFFERED".into(),
            created_ms: 1,
            last_modified_ms: 2,
        });
        assert_round_trip(&BTreeMap::from([("team".to_string(), "core".to_string())]));
        let mut v = super::super::tests::cfg("f");
        v.last_update_status = UpdateStatus::InProgress;
        v.logging = LoggingConfig {
            log_format: LogFormat::Json,
            application_log_level: Some(LogLevel::Warn),
            system_log_level: None,
            log_group: None,
        };
        v.snap_start = SnapStartApplyOn::PublishedVersions;
        v.dead_letter_target = Some("dlq".into());
        let mut prev = v.clone();
        prev.revision_id = "r1".into();
        v.previous = Some(Box::new(prev));
        assert_round_trip(&v);
    }

    /// The v1 bytes of [`alias`] (magic, kind `RALI`, version 1, payload length, blake3,
    /// then its JSON) as this version writes them: a later version must still
    /// read them, and a change to them is a format change (bump [`RECORD_VERSION`]).
    const ALIAS_V1: &str = "
        54484157 52414c49 0100 0000 6500000000000000
        cc19f56d6f20e67284e727f4c56cd0f37e541a1a93fa2a7633bf5ad20fcbd0fb
        7b2266756e6374696f6e223a2266222c226e616d65223a226c697665222c2276
        657273696f6e223a2231222c226465736372697074696f6e223a2264222c2272
        65766973696f6e5f6964223a2272222c2277656967687473223a7b2232223a30
        2e32357d7d
    ";

    /// `value` encodes to exactly the fixture's bytes and the fixture decodes to `value`;
    /// returns the fixture's bytes.
    fn assert_fixture<T: Record + PartialEq + std::fmt::Debug>(
        fixture: &str,
        value: &T,
    ) -> Vec<u8> {
        let fixture = hex(fixture);
        let bytes = encode(value).unwrap();
        let shown: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(bytes, fixture, "encoded now: {shown}");
        assert_eq!(&decode::<T>(&fixture).unwrap(), value);
        fixture
    }

    #[test]
    fn test_v1_alias_fixture_decodes_and_reencodes_identically() {
        assert_fixture(ALIAS_V1, &alias());
    }

    #[test]
    fn test_records_from_before_the_codec_still_load() {
        let legacy =
            br#"{"function":"f","name":"live","version":"1","description":"","revision_id":"r"}"#;
        let a: Alias = decode(legacy).unwrap();
        assert_eq!((a.version.as_str(), a.weights.len()), ("1", 0));
        // A framed record of another kind is refused, not misread.
        let framed = encode(&alias()).unwrap();
        assert!(decode::<ProvRecord>(&framed).is_err());
    }

    /// The v1 bytes of [`reserved`] (kind `RRES`), as [`ALIAS_V1`] is for aliases.
    const RESERVED_V1: &str = "
        54484157 52524553 0100 0000 1d00000000000000
        b7315bfae8af12c3e1ac5fe9415dc46103a3013a0b97163f415adb68fe68ca98
        7b2266756e6374696f6e223a2266222c227265736572766564223a357d
    ";

    #[test]
    fn test_v1_reserved_fixture_decodes_and_reencodes_identically() {
        let fixture = assert_fixture(RESERVED_V1, &reserved());
        assert_eq!(decode_reserved("f", &fixture).unwrap(), Some(reserved()));
    }

    #[test]
    fn test_reserved_concurrency_from_before_the_codec_still_loads() {
        // Earlier builds stored the bare decimal string.
        assert_eq!(decode_reserved("f", b"5").unwrap(), Some(reserved()));
        assert_eq!(decode_reserved("f", b"five").unwrap(), None);
        // A framed record of another kind is refused, not misread.
        let framed = encode(&alias()).unwrap();
        assert!(decode_reserved("f", &framed).is_err());
    }

    /// The v1 bytes of [`prov`] (kind `RPRV`), as [`ALIAS_V1`] is for aliases.
    const PROV_V1: &str = "
        54484157 52505256 0100 0000 5400000000000000
        7ad203cf3b7893995a0d4be8b6a61afcb4ac8de74288e638c6cfeedd10b9735b
        7b2266756e6374696f6e223a2266222c2276657273696f6e223a2231222c2272
        6571756573746564223a332c226c6173745f6d6f6469666965645f6d73223a37
        2c227175616c6966696572223a226c697665227d
    ";

    #[test]
    fn test_v1_provisioned_fixture_decodes_and_reencodes_identically() {
        assert_fixture(PROV_V1, &prov());
    }

    /// The v1 bytes of [`event`] (kind `REVT`), as [`ALIAS_V1`] is for aliases.
    const EVENT_V1: &str = "
        54484157 52455654 0100 0000 9600000000000000
        614787ba4fae996ef838fbc8fd35ca1b894eb5e85946869b42e48bd066104890
        7b22736571223a392c22726571756573745f6964223a226964222c2266756e63
        74696f6e223a2266222c2276657273696f6e223a22244c4154455354222c2270
        61796c6f6164223a226533303d222c22617474656d707473223a312c22636c69
        656e745f636f6e74657874223a7b2261223a317d2c22656e7175657565645f6d
        73223a352c227175616c6966696572223a6e756c6c7d
    ";

    #[test]
    fn test_v1_async_event_fixture_decodes_and_reencodes_identically() {
        assert_fixture(EVENT_V1, &event());
    }
}
