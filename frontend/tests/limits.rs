//! Lambda's input limits over the fake backend, and the JSON error shape on every error path:
//! environment size, reserved keys, NUL, handler strings, a lying zip bomb, an unknown method, a
//! malformed query string and a body over the limit.
mod common;

use common::*;
use serde_json::json;
use std::io::Write;

/// Asserts `r` is Lambda's JSON error `ty` with `status`; returns its message.
fn lambda_error(r: &Resp, status: u16, ty: &str) -> String {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-amzn-errortype"), Some(ty));
    assert!(r.header("x-amzn-requestid").is_some());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    let msg = v["message"].as_str().or(v["Message"].as_str());
    msg.unwrap_or_else(|| panic!("no message in {v}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_function_enforces_lambdas_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _backend) = fake_server(dir.path(), test_config()).await;
    let http = Http::new(server.http);
    let create = |patch: serde_json::Value| {
        let mut b = create_body("f", "hello", "app.handler");
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let invalid = "InvalidParameterValueException";
    let env = |vars: serde_json::Value| create(json!({"Environment": {"Variables": vars}}));

    let big = env(json!({"BIG": "x".repeat(5 << 10)}));
    let r = http.post_json("/2015-03-31/functions", big).await;
    assert!(lambda_error(&r, 400, invalid).contains("4KB limit"));
    for key in ["_HANDLER", "AWS_REGION", "AWS_LAMBDA_FUNCTION_NAME"] {
        let r = http
            .post_json("/2015-03-31/functions", env(json!({ key: "x" })))
            .await;
        assert!(lambda_error(&r, 400, invalid).contains(key));
    }
    let r = http
        .post_json("/2015-03-31/functions", env(json!({"K1": "a\u{0}b"})))
        .await;
    assert!(lambda_error(&r, 400, invalid).contains("NUL"));
    for h in ["app.__class__", "app", "app.han dler", "../app.f"] {
        let r = http
            .post_json("/2015-03-31/functions", create(json!({ "Handler": h })))
            .await;
        assert!(lambda_error(&r, 400, invalid).contains("handler"), "{h}");
    }
    // A zip whose entry claims 100 bytes and inflates past the 250 MB cap.
    let bomb = {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        w.start_file("app.py", opts).unwrap();
        let block = vec![b'#'; 1 << 20];
        for _ in 0..260 {
            w.write_all(&block).unwrap();
        }
        let mut z = w.finish().unwrap().into_inner();
        let central = z.windows(4).position(|s| s == b"PK\x01\x02").unwrap();
        z[22..26].copy_from_slice(&100u32.to_le_bytes());
        z[central + 24..central + 28].copy_from_slice(&100u32.to_le_bytes());
        z
    };
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bomb);
    let r = http
        .post_json(
            "/2015-03-31/functions",
            create(json!({"Code": {"ZipFile": b64}})),
        )
        .await;
    assert!(lambda_error(&r, 400, invalid).contains("over the 262144000-byte limit"));
    // Nothing was created by any of these.
    let fns = http.get("/2015-03-31/functions").await.json();
    assert_eq!(fns["Functions"].as_array().unwrap().len(), 0, "{fns}");
    // The valid function still goes through.
    let r = http
        .post_json("/2015-03-31/functions", create(json!({})))
        .await;
    assert_eq!(r.status, 201);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_path_is_lambda_json() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _backend) = fake_server(dir.path(), test_config()).await;
    let http = Http::new(server.http);
    // An unknown method on a known path (axum would say 405 in plain text).
    let r = http.delete("/2015-03-31/functions").await;
    lambda_error(&r, 405, "UnknownOperationException");
    // A malformed query string.
    let r = http.get("/2015-03-31/functions?MaxItems=lots").await;
    let msg = lambda_error(&r, 400, "InvalidParameterValueException");
    assert!(msg.contains("MaxItems"), "{msg}");
    // A body over the 80 MiB limit, on any route.
    let huge = vec![b'{'; thaw_frontend::limits::MAX_BODY + 1];
    let r = http
        .req("POST", "/2015-03-31/functions", &[], huge.clone())
        .await;
    lambda_error(&r, 413, "RequestTooLargeException");
    let r = http
        .req("PUT", "/2015-03-31/functions/f/code", &[], huge)
        .await;
    lambda_error(&r, 413, "RequestTooLargeException");
    // Unknown paths and malformed JSON.
    lambda_error(&http.get("/nope").await, 404, "ResourceNotFoundException");
    let r = http
        .req("POST", "/2015-03-31/functions", &[], "{not json")
        .await;
    let msg = lambda_error(&r, 400, "InvalidParameterValueException");
    assert!(
        !msg.contains("Error(") && !msg.contains("{ "),
        "Debug output: {msg}"
    );
    server.shutdown().await;
}
