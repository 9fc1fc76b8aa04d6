//! Provisioned and reserved concurrency over HTTP on the fake backend: READY counts, `$LATEST`
//! refused, 429 with Lambda's reasons and `Retry-After`, and everything re-applied after a restart.
mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_and_reserved_concurrency_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, backend) = fake_server(dir.path(), test_config()).await;
    let http = Http::new(server.http);
    assert_eq!(
        http.post_json(
            "/2015-03-31/functions",
            create_body("pc", "hello", "app.handler")
        )
        .await
        .status,
        201
    );
    http.wait_state("pc").await;
    assert_eq!(
        http.post_json("/2015-03-31/functions/pc/versions", json!({}))
            .await
            .status,
        201
    );
    http.wait_state("pc?Qualifier=1").await;

    // Not on $LATEST, and a qualifier is required.
    let r = http
        .put_json(
            "/2019-09-30/functions/pc/provisioned-concurrency?Qualifier=%24LATEST",
            json!({"ProvisionedConcurrentExecutions": 2}),
        )
        .await;
    assert_eq!(
        (r.status, r.header("x-amzn-errortype")),
        (400, Some("InvalidParameterValueException"))
    );
    let r = http
        .put_json(
            "/2019-09-30/functions/pc/provisioned-concurrency",
            json!({"ProvisionedConcurrentExecutions": 2}),
        )
        .await;
    assert_eq!(r.status, 400);
    // No config yet -> 404 ProvisionedConcurrencyConfigNotFoundException.
    let r = http
        .get("/2019-09-30/functions/pc/provisioned-concurrency?Qualifier=1")
        .await;
    assert_eq!(
        (r.status, r.header("x-amzn-errortype")),
        (404, Some("ProvisionedConcurrencyConfigNotFoundException"))
    );

    let r = http
        .put_json(
            "/2019-09-30/functions/pc/provisioned-concurrency?Qualifier=1",
            json!({"ProvisionedConcurrentExecutions": 2}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["RequestedProvisionedConcurrentExecutions"], 2);
    let v = http.wait_provisioned("pc", "1").await;
    assert_eq!(v["Status"], "READY");
    assert_eq!(
        (
            v["AllocatedProvisionedConcurrentExecutions"].as_u64(),
            v["AvailableProvisionedConcurrentExecutions"].as_u64()
        ),
        (Some(2), Some(2))
    );
    assert_eq!(backend.factory.provisioned_restores(), 2);

    // Invokes of version 1 use the provisioned instances: warm, no cold start.
    let r = http.invoke("pc:1", "{}", &[]).await;
    assert_eq!(r.status, 200);

    // Reserved 0 throttles on-demand invokes ($LATEST) with the reserved reason...
    let r = http
        .put_json(
            "/2017-10-31/functions/pc/concurrency",
            json!({"ReservedConcurrentExecutions": 0}),
        )
        .await;
    assert_eq!(
        r.status,
        400,
        "reserved below provisioned is refused: {}",
        String::from_utf8_lossy(&r.body)
    );
    let r = http
        .delete("/2019-09-30/functions/pc/provisioned-concurrency?Qualifier=1")
        .await;
    assert_eq!(r.status, 204);
    let r = http
        .put_json(
            "/2017-10-31/functions/pc/concurrency",
            json!({"ReservedConcurrentExecutions": 0}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["ReservedConcurrentExecutions"], 0);
    let r = http.invoke("pc", "{}", &[]).await;
    assert_eq!(
        (
            r.status,
            r.header("x-amzn-errortype"),
            r.header("retry-after")
        ),
        (429, Some("TooManyRequestsException"), Some("1"))
    );
    assert_eq!(
        r.json(),
        json!({"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded", "Type": "User", "message": "Rate Exceeded."})
    );
    assert_eq!(
        http.get("/2019-09-30/functions/pc/concurrency")
            .await
            .json()["ReservedConcurrentExecutions"],
        0
    );
    assert_eq!(
        http.get("/2015-03-31/functions/pc").await.json()["Concurrency"]
            ["ReservedConcurrentExecutions"],
        0
    );
    let m = String::from_utf8(http.get("/metrics").await.body).unwrap();
    assert!(m.contains("thaw_throttles_total{function=\"pc\",version=\"$LATEST\",reason=\"ReservedFunctionConcurrentInvocationLimitExceeded\"} 1"), "{m}");

    // Put reserved 3 and provisioned 1 again, then restart: both come back.
    assert_eq!(
        http.put_json(
            "/2017-10-31/functions/pc/concurrency",
            json!({"ReservedConcurrentExecutions": 3})
        )
        .await
        .status,
        200
    );
    let r = http
        .put_json(
            "/2019-09-30/functions/pc/provisioned-concurrency?Qualifier=1",
            json!({"ProvisionedConcurrentExecutions": 4}),
        )
        .await;
    assert_eq!(r.status, 400, "provisioned above reserved is refused");
    assert_eq!(
        http.put_json(
            "/2019-09-30/functions/pc/provisioned-concurrency?Qualifier=1",
            json!({"ProvisionedConcurrentExecutions": 1})
        )
        .await
        .status,
        202
    );
    server.shutdown().await;

    let (server, backend) = fake_server(dir.path(), test_config()).await;
    let http = Http::new(server.http);
    let v = http.wait_provisioned("pc", "1").await;
    assert_eq!(
        (
            v["Status"].as_str(),
            v["AllocatedProvisionedConcurrentExecutions"].as_u64()
        ),
        (Some("READY"), Some(1))
    );
    assert_eq!(backend.factory.provisioned_restores(), 1);
    assert_eq!(
        http.get("/2019-09-30/functions/pc/concurrency")
            .await
            .json()["ReservedConcurrentExecutions"],
        3
    );
    assert_eq!(http.invoke("pc:1", "{}", &[]).await.status, 200);
    // With the account limit at 0 unreserved, others throttle with the account reason.
    assert_eq!(
        http.delete("/2017-10-31/functions/pc/concurrency")
            .await
            .status,
        204
    );
    server.shutdown().await;

    let mut tight = test_config();
    tight.limits.account_concurrency = 1;
    tight.limits.min_unreserved_concurrency = 0;
    let (server, _backend) = fake_server(dir.path(), tight).await;
    let http = Http::new(server.http);
    http.wait_provisioned("pc", "1").await;
    let r = http.invoke("pc", "{}", &[]).await;
    assert_eq!(
        r.status,
        429,
        "the provisioned slot uses the whole account: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json()["Reason"], "ConcurrentInvocationLimitExceeded");
    server.shutdown().await;
}
