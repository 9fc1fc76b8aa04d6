//! Property tests (bounded: a few hundred cases each, well under a second) for the parsers a
//! hostile client reaches first: SigV4 (`Authorization`, `X-Amz-Date`, canonical URI and query,
//! sign-then-verify round trips with tampering) and the function zip reader (random bytes and
//! mutated archives never panic and never unpack more than the cap).
use axum::http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thaw_frontend::auth::sigv4::{self, Secret, SigV4Error, SignedRequest, Verifier};
use thaw_worker::FunctionCode;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn verifier() -> Verifier {
    Verifier::new(
        [("AKIDFUZZ".to_string(), Secret::new("fuzz-secret"))],
        "us-east-1",
        false,
    )
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_000_000)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sigv4_parsers_never_panic(s in "\\PC{0,200}", raw in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = sigv4::parse_authorization(&s);
        let _ = sigv4::parse_authorization(&format!("AWS4-HMAC-SHA256 {s}"));
        let _ = sigv4::parse_amz_date(&s);
        let _ = sigv4::canonical_uri(&s);
        let _ = sigv4::canonical_query(&s);
        let lossy = String::from_utf8_lossy(&raw);
        let _ = sigv4::canonical_query(&lossy);
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&raw) {
            h.insert("authorization", v.clone());
            h.insert("x-amz-date", v);
        }
        h.insert("host", HeaderValue::from_static("h"));
        let req = SignedRequest { method: "GET", path: "/", query: "", headers: &h };
        if let Ok(c) = verifier().precheck(&req, now()) {
            let _ = c.verify(&raw);
        }
    }

    #[test]
    fn signed_requests_verify_and_tampering_fails(
        method in "(GET|POST|PUT|DELETE)",
        segs in proptest::collection::vec("[a-zA-Z0-9%:._~ -]{0,12}", 0..5),
        query in proptest::collection::vec(("[a-zA-Z0-9%+_.-]{1,8}", "[a-zA-Z0-9%+_.=-]{0,8}"), 0..4),
        body in proptest::collection::vec(any::<u8>(), 0..256),
        header in "[ -~]{0,40}",
        flip in any::<usize>(),
    ) {
        let path = format!("/{}", segs.join("/"));
        let path = path.replace(' ', "%20");
        let query = query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("127.0.0.1:9000"));
        h.insert("x-amz-client-context", HeaderValue::from_str(&header).unwrap());
        let secret = Secret::new("fuzz-secret");
        let mut req = sigv4::SignedRequestMut { method: &method, path: &path, query: &query, headers: &mut h };
        sigv4::sign(&mut req, &body, "AKIDFUZZ", &secret, "us-east-1", now());
        let check = |h: &HeaderMap, body: &[u8]| {
            let req = SignedRequest { method: &method, path: &path, query: &query, headers: h };
            verifier().precheck(&req, now())?.verify(body)
        };
        prop_assert_eq!(check(&h, &body), Ok(()));
        let mut tampered = body.clone();
        if tampered.is_empty() {
            tampered.push(0);
        } else {
            let i = flip % tampered.len();
            tampered[i] ^= 1;
        }
        prop_assert_eq!(check(&h, &tampered), Err(SigV4Error::Mismatch));
        // Past the skew, the same request is refused whatever else holds.
        let late = SignedRequest { method: &method, path: &path, query: &query, headers: &h };
        let v = verifier();
        let expired = v.precheck(&late, now() + Duration::from_secs(16 * 60));
        let is_expired = matches!(expired, Err(SigV4Error::Expired { .. }));
        prop_assert!(is_expired);
    }
}

fn zip_of(files: &[(String, Vec<u8>)], deflate: bool) -> Vec<u8> {
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (i, (name, data)) in files.iter().enumerate() {
        // Distinct names (the writer refuses duplicates); the rest of the name is random.
        w.start_file(format!("{name}{i}"), opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn zip_reader_never_panics_or_exceeds_the_cap(
        files in proptest::collection::vec(("[a-z./]{1,12}", proptest::collection::vec(any::<u8>(), 0..3000)), 1..4),
        deflate in any::<bool>(),
        mutations in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        garbage in proptest::collection::vec(any::<u8>(), 0..512),
        cap in 1u64..8000,
    ) {
        let _ = FunctionCode::from_zip_capped(&garbage, cap);
        let mut z = zip_of(&files, deflate);
        for (at, byte) in mutations {
            let i = at % z.len();
            z[i] = byte;
        }
        if let Ok(code) = FunctionCode::from_zip_capped(&z, cap) {
            let total: usize = code.files.values().map(Vec::len).sum();
            prop_assert!(total as u64 <= cap, "{} > {}", total, cap);
            for name in code.files.keys() {
                prop_assert!(!name.starts_with('/') && !name.split('/').any(|p| p == ".."), "{}", name);
            }
        }
    }
}
