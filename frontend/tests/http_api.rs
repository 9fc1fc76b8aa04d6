//! The Lambda HTTP API over the fake backend: function lifecycle, versions, aliases, invoke
//! variants, error shapes and headers, metrics.
mod common;

use base64::Engine;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_http_api_end_to_end_on_the_fake_backend() {
    let dir = tempfile::tempdir().unwrap();
    let (server, backend) = fake_server(dir.path(), test_config()).await;
    let http = Http::new(server.http);

    // CreateFunction -> 201 Pending -> Active.
    let r = http
        .post_json(
            "/2015-03-31/functions",
            create_body("hello", "hello", "app.handler"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let cfg = r.json();
    assert_eq!(cfg["State"], "Pending");
    assert_eq!(cfg["Version"], "$LATEST");
    assert_eq!(
        cfg["FunctionArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:hello"
    );
    let zip = example_zip("hello");
    use sha2::Digest;
    assert_eq!(
        cfg["CodeSha256"],
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&zip))
    );
    assert_eq!(cfg["CodeSize"], zip.len());
    assert!(r.header("x-amzn-requestid").is_some());
    let cfg = http.wait_state("hello").await;
    assert_eq!(cfg["State"], "Active");
    assert_eq!(cfg["LastUpdateStatus"], "Successful");
    assert_eq!(cfg["Environment"]["Variables"]["GREETING"], "hi");

    // Duplicate -> 409 with {Type, message}.
    let r = http
        .post_json(
            "/2015-03-31/functions",
            create_body("hello", "hello", "app.handler"),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("ResourceConflictException")
    );
    assert!(r.json()["message"].is_string());
    // Bad runtime -> 400.
    let mut bad = create_body("other", "hello", "app.handler");
    bad["Runtime"] = json!("nodejs20.x");
    let r = http.post_json("/2015-03-31/functions", bad).await;
    assert_eq!(
        (r.status, r.header("x-amzn-errortype")),
        (400, Some("InvalidParameterValueException"))
    );
    // Unknown function -> 404 with {Type, Message}.
    let r = http.get("/2015-03-31/functions/nope").await;
    assert_eq!(
        (r.status, r.header("x-amzn-errortype")),
        (404, Some("ResourceNotFoundException"))
    );
    assert_eq!(r.json()["Type"], "User");
    assert!(r.json()["Message"].is_string());
    assert!(r.header("x-amzn-requestid").is_some());

    // Invoke RequestResponse, with Tail.
    let r = http
        .invoke("hello", r#"{"k": 1}"#, &[("x-amz-log-type", "Tail")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"echo": {"k": 1}}));
    assert_eq!(r.header("x-amz-executed-version"), Some("$LATEST"));
    assert_eq!(r.header("x-amz-function-error"), None);
    let log = base64::engine::general_purpose::STANDARD
        .decode(r.header("x-amz-log-result").unwrap())
        .unwrap();
    let log = String::from_utf8(log).unwrap();
    let id = r.header("x-amzn-requestid").unwrap();
    assert!(
        log.starts_with(&format!("START RequestId: {id} Version: $LATEST\n")),
        "{log}"
    );
    assert!(log.contains(&format!("END RequestId: {id}\n")));
    assert!(
        log.contains("REPORT RequestId: ") && log.contains("Restore Duration: "),
        "cold start reports its restore: {log}"
    );
    // Max Memory Used is the instance's own figure, not the configured size.
    let used = thaw_frontend::fake::FAKE_MEMORY_USED >> 20;
    assert!(
        log.contains(&format!("Memory Size: 512 MB\tMax Memory Used: {used} MB")),
        "{log}"
    );
    // The second invoke is warm: no Restore Duration.
    let r = http
        .invoke("hello", "{}", &[("x-amz-log-type", "Tail")])
        .await;
    let log = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(r.header("x-amz-log-result").unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(!log.contains("Restore Duration"), "{log}");
    // A function error keeps HTTP 200.
    let r = http.invoke("hello", r#"{"fail": true}"#, &[]).await;
    assert_eq!(
        (r.status, r.header("x-amz-function-error")),
        (200, Some("Unhandled"))
    );
    assert_eq!(r.json()["errorType"], "Exception");
    // A crash is a function error too; the instance is discarded.
    let discards = backend.factory.discards();
    let r = http.invoke("hello", r#"{"crash": true}"#, &[]).await;
    assert_eq!(
        (r.status, r.header("x-amz-function-error")),
        (200, Some("Unhandled"))
    );
    assert_eq!(r.json()["errorType"], "Runtime.ExitError");
    assert_eq!(backend.factory.discards(), discards + 1);
    // DryRun -> 204, Event -> 202.
    let r = http
        .invoke("hello", "{}", &[("x-amz-invocation-type", "DryRun")])
        .await;
    assert_eq!(r.status, 204);
    let r = http
        .invoke(
            "hello",
            r#"{"async": 1}"#,
            &[("x-amz-invocation-type", "Event")],
        )
        .await;
    assert_eq!(r.status, 202);
    // Over 6 MiB -> 413.
    let big = "x".repeat(6 * 1024 * 1024 + 1);
    let r = http.invoke("hello", &big, &[]).await;
    assert_eq!(
        (r.status, r.header("x-amzn-errortype")),
        (413, Some("RequestTooLargeException"))
    );

    // PublishVersion -> 201 "1" -> Active; again with nothing changed -> "1".
    let r = http
        .post_json("/2015-03-31/functions/hello/versions", json!({}))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["Version"], "1");
    assert_eq!(
        r.json()["FunctionArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:hello:1"
    );
    assert_eq!(
        http.wait_state("hello?Qualifier=1").await["State"],
        "Active"
    );
    let r = http
        .req("POST", "/2015-03-31/functions/hello/versions", &[], "")
        .await;
    assert_eq!(r.json()["Version"], "1");
    // Alias, and every way of naming a version.
    let r = http
        .post_json(
            "/2015-03-31/functions/hello/aliases",
            json!({"Name": "live", "FunctionVersion": "1"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        http.get("/2015-03-31/functions/hello/aliases/live")
            .await
            .json()["FunctionVersion"],
        "1"
    );
    for name in [
        "hello:1",
        "hello%3A1",
        "hello:live",
        "arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Ahello%3A1",
    ] {
        let r = http.invoke(name, "{}", &[]).await;
        assert_eq!(
            (r.status, r.header("x-amz-executed-version")),
            (200, Some("1")),
            "{name}"
        );
    }
    let r = http
        .req(
            "POST",
            "/2015-03-31/functions/hello/invocations?Qualifier=live",
            &[],
            "{}",
        )
        .await;
    assert_eq!(r.header("x-amz-executed-version"), Some("1"));
    let r = http.invoke("hello:7", "{}", &[]).await;
    assert_eq!(r.status, 404);

    // UpdateFunctionCode -> new sha, rebuilt; $LATEST invokes still work.
    let r = http.put_json("/2015-03-31/functions/hello/code", json!({"ZipFile": base64::engine::general_purpose::STANDARD.encode(example_zip("fails"))})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["LastUpdateStatus"], "InProgress");
    assert_eq!(
        http.wait_state("hello").await["LastUpdateStatus"],
        "Successful"
    );
    assert_eq!(http.invoke("hello", "{}", &[]).await.status, 200);

    // A function whose init fails ends Failed with the reason; invoking it is a conflict.
    let r = http
        .post_json(
            "/2015-03-31/functions",
            create_body("broken", "hello", "fail.init"),
        )
        .await;
    assert_eq!(r.status, 201);
    let cfg = http.wait_state("broken").await;
    assert_eq!(cfg["State"], "Failed");
    assert!(
        cfg["StateReason"]
            .as_str()
            .unwrap()
            .contains("boom at import"),
        "{cfg}"
    );
    assert_eq!(http.invoke("broken", "{}", &[]).await.status, 409);

    // ListFunctions with paging.
    let r = http.get("/2015-03-31/functions/?MaxItems=1").await;
    assert_eq!(r.json()["Functions"].as_array().unwrap().len(), 1);
    assert_eq!(r.json()["NextMarker"], "broken");
    let r = http
        .get("/2015-03-31/functions/?Marker=broken&MaxItems=5")
        .await;
    assert_eq!(r.json()["Functions"][0]["FunctionName"], "hello");
    assert!(r.json().get("NextMarker").is_none());

    // /metrics in Prometheus text.
    let m = String::from_utf8(http.get("/metrics").await.body).unwrap();
    assert!(
        m.contains(
            "faas_invocations_total{function=\"hello\",version=\"$LATEST\",start=\"restore\"}"
        ),
        "{m}"
    );
    assert!(
        m.contains("faas_invocations_total{function=\"hello\",version=\"$LATEST\",start=\"warm\"}")
    );
    assert!(m.contains("faas_coldstarts_total"));
    assert!(m.contains("faas_invoke_duration_seconds_bucket"));
    assert!(m.contains("faas_init_duration_seconds_count"));
    assert!(m.contains("faas_errors_total"));

    // DeleteFunction -> 204, then 404.
    assert_eq!(http.delete("/2015-03-31/functions/hello").await.status, 204);
    assert_eq!(http.get("/2015-03-31/functions/hello").await.status, 404);
    assert_eq!(http.invoke("hello", "{}", &[]).await.status, 404);
    server.shutdown().await;
}
