//! The Lambda API deploy tools use, over the fake backend: UpdateFunctionConfiguration (the
//! old configuration serves until the new one is built, and after a failed build), RevisionId
//! checks, weighted aliases, list operations and their pages, tags, account settings,
//! event-invoke configs with OnSuccess/OnFailure destinations and a dead-letter target, and
//! function URLs called with a plain HTTP client (payload 2.0, CORS, auth types).
mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const FN: &str = "/2015-03-31/functions";

async fn create(http: &Http, name: &str, handler: &str) -> serde_json::Value {
    let r = http
        .post_json(FN, create_body(name, "hello", handler))
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    http.wait_state(name).await
}

async fn publish(http: &Http, name: &str) -> String {
    let r = http
        .post_json(&format!("{FN}/{name}/versions"), json!({}))
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json()["Version"].as_str().unwrap().to_string();
    http.wait_state(&format!("{name}?Qualifier={v}")).await;
    v
}

async fn env_of(http: &Http, name_q: &str) -> serde_json::Value {
    let r = http.invoke(name_q, r#"{"env": true}"#, &[]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["env"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_updates_keep_the_old_configuration_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _backend) = fake_server(dir.path(), test_config()).await;
    let http = Http::new(server.http);
    let cfg = create(&http, "cfg", "app.handler").await;
    assert_eq!(
        cfg["SnapStart"],
        json!({"ApplyOn": "None", "OptimizationStatus": "Off"})
    );
    assert_eq!(cfg["LoggingConfig"]["LogFormat"], "Text");
    assert_eq!(env_of(&http, "cfg").await["GREETING"], "hi");

    // A stale RevisionId is refused (412), and nothing changes.
    let path = format!("{FN}/cfg/configuration");
    let r = http
        .put_json(&path, json!({"Timeout": 9, "RevisionId": "stale"}))
        .await;
    assert_eq!(
        (r.status, r.header("x-amzn-errortype")),
        (412, Some("PreconditionFailedException"))
    );
    // A bad value is refused before anything changes.
    let r = http.put_json(&path, json!({"MemorySize": 64})).await;
    assert_eq!(r.status, 400);
    let r = http
        .put_json(
            &path,
            json!({"LoggingConfig": {"LogFormat": "Text", "ApplicationLogLevel": "DEBUG"}}),
        )
        .await;
    assert_eq!(r.status, 400, "levels need the JSON format");

    // Environment, memory, timeout, JSON logs: InProgress -> Successful, then the new
    // environment serves.
    let r = http
        .put_json(
            &path,
            json!({
                "Environment": {"Variables": {"GREETING": "hello"}},
                "MemorySize": 256, "Timeout": 9,
                "EphemeralStorage": {"Size": 1024},
                "LoggingConfig": {"LogFormat": "JSON", "ApplicationLogLevel": "WARN"},
                "RevisionId": cfg["RevisionId"],
            }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["LastUpdateStatus"], "InProgress");
    assert_ne!(r.json()["RevisionId"], cfg["RevisionId"]);
    // A second update while the first builds is a conflict.
    let second = http.put_json(&path, json!({"Timeout": 5})).await;
    let cfg = http.wait_state("cfg").await;
    assert!(
        second.status == 409 || second.status == 200,
        "{}",
        second.status
    );
    assert_eq!(cfg["LastUpdateStatus"], "Successful");
    assert_eq!(cfg["MemorySize"], 256);
    assert_eq!(cfg["EphemeralStorage"]["Size"], 1024);
    assert_eq!(cfg["LoggingConfig"]["ApplicationLogLevel"], "WARN");
    assert_eq!(cfg["LoggingConfig"]["SystemLogLevel"], "INFO");
    let env = env_of(&http, "cfg").await;
    assert_eq!(env["GREETING"], "hello");
    assert_eq!(env["AWS_LAMBDA_LOG_FORMAT"], "JSON");
    assert_eq!(env["AWS_LAMBDA_LOG_LEVEL"], "WARN");

    // An update whose build fails: LastUpdateStatus Failed with the reason, State stays
    // Active, and the previous configuration keeps serving.
    let r = http
        .put_json(
            &path,
            json!({"Handler": "fail.init", "Environment": {"Variables": {"GREETING": "broken"}}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let cfg = http.wait_state("cfg").await;
    assert_eq!(cfg["LastUpdateStatus"], "Failed");
    assert_eq!(cfg["State"], "Active");
    assert!(cfg["LastUpdateStatusReason"]
        .as_str()
        .unwrap()
        .contains("boom at import"));
    assert_eq!(env_of(&http, "cfg").await["GREETING"], "hello");
    // ... and a good update after it serves again.
    let r = http
        .put_json(
            &path,
            json!({"Handler": "app.handler", "Environment": {"Variables": {"GREETING": "fixed"}}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        http.wait_state("cfg").await["LastUpdateStatus"],
        "Successful"
    );
    assert_eq!(env_of(&http, "cfg").await["GREETING"], "fixed");

    // UpdateFunctionCode with a zip whose init fails keeps the old code serving too.
    use base64::Engine;
    let zip = base64::engine::general_purpose::STANDARD.encode(example_zip("hello"));
    http.put_json(&path, json!({"Handler": "fail.init"})).await;
    let cfg = http.wait_state("cfg").await;
    assert_eq!(cfg["LastUpdateStatus"], "Failed");
    let r = http
        .put_json(&format!("{FN}/cfg/code"), json!({"ZipFile": zip}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(http.wait_state("cfg").await["LastUpdateStatus"], "Failed");
    assert_eq!(env_of(&http, "cfg").await["GREETING"], "fixed");

    // SnapStart: published versions report OptimizationStatus On.
    http.put_json(
        &path,
        json!({"Handler": "app.handler", "SnapStart": {"ApplyOn": "PublishedVersions"}}),
    )
    .await;
    let latest = http.wait_state("cfg").await;
    assert_eq!(latest["SnapStart"]["OptimizationStatus"], "Off");
    let v = publish(&http, "cfg").await;
    let r = http
        .get(&format!("{FN}/cfg/configuration?Qualifier={v}"))
        .await;
    assert_eq!(
        r.json()["SnapStart"],
        json!({"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"})
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_aliases_lists_tags_and_account_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _backend) = fake_server(dir.path(), test_config()).await;
    let http = Http::new(server.http);
    create(&http, "w", "app.handler").await;
    let v1 = publish(&http, "w").await;
    http.put_json(
        &format!("{FN}/w/configuration"),
        json!({"Description": "second"}),
    )
    .await;
    http.put_json(&format!("{FN}/w/configuration"), json!({"Timeout": 4}))
        .await;
    http.wait_state("w").await;
    let v2 = publish(&http, "w").await;
    assert_eq!((v1.as_str(), v2.as_str()), ("1", "2"));

    // A weighted alias: 30% to version 2.
    let r = http
        .post_json(
            &format!("{FN}/w/aliases"),
            json!({"Name": "live", "FunctionVersion": "1",
                   "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.3}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["RoutingConfig"]["AdditionalVersionWeights"]["2"],
        0.3
    );
    let (mut ones, mut twos) = (0, 0);
    for _ in 0..400 {
        let r = http.invoke("w:live", "{}", &[]).await;
        match r.header("x-amz-executed-version") {
            Some("1") => ones += 1,
            Some("2") => twos += 1,
            other => panic!("executed version {other:?}"),
        }
    }
    // 400 draws at p = 0.3: mean 120, sd ~9.2; 60..180 is more than 6 sd either way.
    assert!((60..=180).contains(&twos), "version 2 ran {twos} of 400");
    assert_eq!(ones + twos, 400);
    // Bad weights are refused.
    let r = http
        .put_json(
            &format!("{FN}/w/aliases/live"),
            json!({"RoutingConfig": {"AdditionalVersionWeights": {"2": 1.5}}}),
        )
        .await;
    assert_eq!(r.status, 400);
    // UpdateAlias with a stale revision: 412; with the right one: moved, weights cleared.
    let alias = http.get(&format!("{FN}/w/aliases/live")).await.json();
    let r = http
        .put_json(
            &format!("{FN}/w/aliases/live"),
            json!({"FunctionVersion": "2", "RevisionId": "nope"}),
        )
        .await;
    assert_eq!(r.status, 412);
    let r = http
        .put_json(
            &format!("{FN}/w/aliases/live"),
            json!({"FunctionVersion": "2", "RoutingConfig": {"AdditionalVersionWeights": {}},
                   "RevisionId": alias["RevisionId"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["FunctionVersion"], "2");
    assert!(r.json().get("RoutingConfig").is_none());
    // A version an alias points at cannot be deleted.
    let r = http.delete(&format!("{FN}/w?Qualifier=2")).await;
    assert_eq!(r.status, 409);
    http.post_json(
        &format!("{FN}/w/aliases"),
        json!({"Name": "old", "FunctionVersion": "1"}),
    )
    .await;
    let r = http.get(&format!("{FN}/w/aliases")).await.json();
    assert_eq!(r["Aliases"].as_array().unwrap().len(), 2);
    let r = http
        .get(&format!("{FN}/w/aliases?FunctionVersion=1"))
        .await
        .json();
    assert_eq!(r["Aliases"][0]["Name"], "old");
    // Provisioned concurrency on an alias, then listed.
    let r = http
        .put_json(
            "/2019-09-30/functions/w/provisioned-concurrency?Qualifier=live",
            json!({"ProvisionedConcurrentExecutions": 1}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let r = http
        .get("/2019-09-30/functions/w/provisioned-concurrency?List=ALL")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let configs = r.json()["ProvisionedConcurrencyConfigs"].clone();
    assert_eq!(configs.as_array().unwrap().len(), 1);
    assert!(configs[0]["FunctionArn"]
        .as_str()
        .unwrap()
        .ends_with(":w:live"));
    let r = http.delete(&format!("{FN}/w/aliases/old")).await;
    assert_eq!(r.status, 204);
    assert_eq!(http.get(&format!("{FN}/w/aliases/old")).await.status, 404);

    // Versions in pages.
    let r = http
        .get(&format!("{FN}/w/versions?MaxItems=2"))
        .await
        .json();
    assert_eq!(r["Versions"].as_array().unwrap().len(), 2);
    let marker = r["NextMarker"].as_str().unwrap().to_string();
    let r = http
        .get(&format!("{FN}/w/versions?MaxItems=2&Marker={marker}"))
        .await
        .json();
    assert_eq!(r["Versions"][0]["Version"], "2");
    assert!(r.get("NextMarker").is_none());

    // Tags: at create, Tag, List, Untag (by ARN, percent-encoded as botocore sends it).
    let mut body = create_body("tagged", "hello", "app.handler");
    body["Tags"] = json!({"team": "core"});
    assert_eq!(http.post_json(FN, body).await.status, 201);
    let arn = "arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Atagged";
    let r = http
        .post_json(
            &format!("/2017-03-31/tags/{arn}"),
            json!({"Tags": {"env": "prod", "x": "y"}}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let r = http
        .delete(&format!("/2017-03-31/tags/{arn}?tagKeys=x"))
        .await;
    assert_eq!(r.status, 204);
    let tags = http.get(&format!("/2017-03-31/tags/{arn}")).await.json();
    assert_eq!(tags, json!({"Tags": {"team": "core", "env": "prod"}}));
    let got = http.get(&format!("{FN}/tagged")).await.json();
    assert_eq!(got["Tags"]["env"], "prod");
    let r = http
        .post_json(
            &format!("/2017-03-31/tags/{arn}"),
            json!({"Tags": {"aws:reserved": "no"}}),
        )
        .await;
    assert_eq!(r.status, 400);

    // Code signing: none configured. Account settings: limits and usage.
    let r = http
        .get("/2020-06-30/functions/tagged/code-signing-config")
        .await;
    assert_eq!(r.json()["CodeSigningConfigArn"], "");
    let r = http.get("/2016-08-19/account-settings/").await.json();
    assert_eq!(r["AccountUsage"]["FunctionCount"], 2);
    assert!(r["AccountLimit"]["ConcurrentExecutions"].as_u64().unwrap() > 0);
    assert_eq!(r["Thaw"]["MemoryAdmission"]["Policy"], "measured");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_events_reach_their_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let (server, backend) = fake_server(dir.path(), test_config()).await;
    let http = Http::new(server.http);
    for name in ["src", "ok-sink", "fail-sink", "dlq"] {
        create(&http, name, "app.handler").await;
    }
    let arn = |n: &str| format!("arn:aws:lambda:us-east-1:000000000000:function:{n}");
    let path = "/2019-09-25/functions/src/event-invoke-config";
    let r = http
        .put_json(
            path,
            json!({"MaximumRetryAttempts": 1, "MaximumEventAgeInSeconds": 3600,
                   "DestinationConfig": {"OnSuccess": {"Destination": arn("ok-sink")},
                                         "OnFailure": {"Destination": arn("fail-sink")}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["MaximumRetryAttempts"], 1);
    // Update merges; an SQS destination is refused; list shows one config.
    let r = http
        .post_json(path, json!({"MaximumRetryAttempts": 0}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["DestinationConfig"]["OnFailure"]["Destination"],
        arn("fail-sink")
    );
    let r = http
        .post_json(
            path,
            json!({"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:000000000000:q"}}}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = http
        .get("/2019-09-25/functions/src/event-invoke-config/list")
        .await;
    assert_eq!(
        r.json()["FunctionEventInvokeConfigs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    http.put_json(
        "/2015-03-31/functions/src/configuration",
        json!({"DeadLetterConfig": {"TargetArn": arn("dlq")}}),
    )
    .await;
    assert_eq!(
        http.wait_state("src").await["DeadLetterConfig"]["TargetArn"],
        arn("dlq")
    );

    let event = |payload: &str| {
        let http = &http;
        let payload = payload.to_string();
        async move {
            let r = http
                .invoke("src", &payload, &[("x-amz-invocation-type", "Event")])
                .await;
            assert_eq!(r.status, 202);
        }
    };
    event(r#"{"n": 1}"#).await;
    event(r#"{"n": 2, "fail": true}"#).await;
    // Wait until the sinks ran: 1 success record, 1 failure record, 1 dead letter.
    let deadline = Instant::now() + Duration::from_secs(30);
    let records = loop {
        let invoked: Vec<serde_json::Value> = backend
            .invoked()
            .iter()
            .filter_map(|p| serde_json::from_slice(p).ok())
            .collect();
        let records: Vec<_> = invoked
            .iter()
            .filter(|v| v.get("requestContext").is_some() || v.get("n") == Some(&json!(2)))
            .cloned()
            .collect();
        let dead = invoked.iter().filter(|v| v["n"] == 2).count();
        // n=2 runs once (MaximumRetryAttempts 0) and once more as the dead letter.
        if records
            .iter()
            .filter(|v| v.get("requestContext").is_some())
            .count()
            == 2
            && dead >= 2
        {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "destinations not reached: {invoked:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let success = records
        .iter()
        .find(|r| r["requestContext"]["condition"] == "Success")
        .expect("success record");
    assert_eq!(success["version"], "1.0");
    assert_eq!(success["requestPayload"], json!({"n": 1}));
    assert_eq!(success["responsePayload"], json!({"echo": {"n": 1}}));
    assert_eq!(success["responseContext"]["statusCode"], 200);
    assert_eq!(success["responseContext"]["executedVersion"], "$LATEST");
    assert!(success["requestContext"]["functionArn"]
        .as_str()
        .unwrap()
        .ends_with("function:src:$LATEST"));
    let failure = records
        .iter()
        .find(|r| r["requestContext"]["condition"] == "RetriesExhausted")
        .expect("failure record");
    assert_eq!(failure["requestContext"]["approximateInvokeCount"], 1);
    assert_eq!(failure["responseContext"]["functionError"], "Unhandled");
    assert_eq!(failure["requestPayload"], json!({"n": 2, "fail": true}));
    assert_eq!(failure["responsePayload"]["errorMessage"], "fake failure");
    let metrics = String::from_utf8(http.get("/metrics").await.body).unwrap();
    assert!(metrics.contains("delivered"), "{metrics}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_urls_serve_plain_http_clients() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _backend) = fake_server(dir.path(), test_config()).await;
    let http = Http::new(server.http);
    create(&http, "web", "app.handler").await;
    let r = http
        .post_json(
            "/2021-10-31/functions/web/url",
            json!({"AuthType": "NONE",
                   "Cors": {"AllowOrigins": ["https://example.com"], "AllowMethods": ["GET", "POST"], "MaxAge": 60}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let url = r.json()["FunctionUrl"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!("http://{}/", server.urls)),
        "{url}"
    );
    assert_eq!(r.json()["AuthType"], "NONE");
    // One URL per function and qualifier.
    let r = http
        .post_json("/2021-10-31/functions/web/url", json!({"AuthType": "NONE"}))
        .await;
    assert_eq!(r.status, 409);
    let path = url
        .trim_start_matches(&format!("http://{}", server.urls))
        .to_string();

    // A plain HTTP request becomes a payload 2.0 event (the fake echoes it).
    let client = Http::new(server.urls);
    let r = client
        .req(
            "POST",
            &format!("{path}items/7?q=a+b&q=c&x=%2F"),
            &[
                ("cookie", "s=1; t=2"),
                ("x-custom", "v"),
                ("content-type", "application/json"),
                ("origin", "https://example.com"),
            ],
            r#"{"hello": "url"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://example.com")
    );
    let ev = r.json()["echo"].clone();
    assert_eq!(ev["version"], "2.0");
    assert_eq!(ev["rawPath"], "/items/7");
    assert_eq!(ev["rawQueryString"], "q=a+b&q=c&x=%2F");
    assert_eq!(ev["queryStringParameters"], json!({"q": "a b,c", "x": "/"}));
    assert_eq!(ev["cookies"], json!(["s=1", "t=2"]));
    assert_eq!(ev["headers"]["x-custom"], "v");
    assert_eq!(ev["requestContext"]["http"]["method"], "POST");
    assert_eq!(ev["requestContext"]["http"]["sourceIp"], "127.0.0.1");
    assert_eq!(ev["body"], r#"{"hello": "url"}"#);
    assert_eq!(ev["isBase64Encoded"], false);
    // A CORS preflight is answered by the listener.
    let r = client
        .req(
            "OPTIONS",
            &path,
            &[
                ("origin", "https://example.com"),
                ("access-control-request-method", "POST"),
            ],
            "",
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-max-age"), Some("60"));
    // An unknown URL is a 404 (a function error's 502 is url_event's unit test).
    let r = client
        .req("GET", "/abcdefghijklmnopqrstuvwxyz012345/", &[], "")
        .await;
    assert_eq!(r.status, 404);

    // AWS_IAM on a server with credentials: unsigned is 403, signed passes.
    let r = http
        .put_json(
            "/2021-10-31/functions/web/url",
            json!({"AuthType": "AWS_IAM"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        http.get("/2021-10-31/functions/web/urls").await.json()["FunctionUrlConfigs"][0]
            ["AuthType"],
        "AWS_IAM"
    );
    server.shutdown().await;

    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.auth.credentials = vec![thaw_frontend::config::CredentialConfig {
        access_key_id: "AKURL".into(),
        secret_access_key: thaw_frontend::auth::Secret::new("url-secret"),
    }];
    let (server, _backend) = fake_server(dir.path(), config).await;
    let http = Http::signed(server.http, "AKURL", "url-secret");
    create(&http, "iam", "app.handler").await;
    let r = http
        .post_json(
            "/2021-10-31/functions/iam/url",
            json!({"AuthType": "AWS_IAM"}),
        )
        .await;
    let url = r.json()["FunctionUrl"].as_str().unwrap().to_string();
    let path = url
        .trim_start_matches(&format!("http://{}", server.urls))
        .to_string();
    let r = Http::new(server.urls).req("GET", &path, &[], "").await;
    assert_eq!(
        (r.status, r.json()["Message"].clone()),
        (403, json!("Forbidden"))
    );
    let r = Http::signed(server.urls, "AKURL", "wrong")
        .req("GET", &path, &[], "")
        .await;
    assert_eq!(r.status, 403);
    let r = Http::signed(server.urls, "AKURL", "url-secret")
        .req("GET", &path, &[], "")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["echo"]["requestContext"]["http"]["method"], "GET");
    let r = http.delete("/2021-10-31/functions/iam/url").await;
    assert_eq!(r.status, 204);
    assert_eq!(
        Http::new(server.urls)
            .req("GET", &path, &[], "")
            .await
            .status,
        404
    );
    server.shutdown().await;
}

/// AddPermission / GetPolicy / RemovePermission as Terraform's `aws_lambda_permission` uses
/// them: statements per qualifier, duplicate ids refused, RevisionId checked, the policy
/// kept across a restart and gone with its last statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_make_the_policy_deploy_tools_read() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _backend) = fake_server(dir.path(), test_config()).await;
    let http = Http::new(server.http);
    create(&http, "pol", "app.handler").await;
    let policy = format!("{FN}/pol/policy");
    // No policy yet.
    let r = http.get(&policy).await;
    assert_eq!(
        (r.status, r.header("x-amzn-errortype")),
        (404, Some("ResourceNotFoundException"))
    );
    let s3 = json!({"StatementId": "s3", "Action": "lambda:InvokeFunction",
                    "Principal": "s3.amazonaws.com", "SourceArn": "arn:aws:s3:::bucket"});
    let r = http.post_json(&policy, s3.clone()).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let statement: serde_json::Value =
        serde_json::from_str(r.json()["Statement"].as_str().unwrap()).unwrap();
    assert_eq!(statement["Sid"], "s3");
    assert_eq!(
        statement["Resource"],
        "arn:aws:lambda:us-east-1:000000000000:function:pol"
    );
    assert_eq!(
        statement["Condition"]["ArnLike"]["AWS:SourceArn"],
        "arn:aws:s3:::bucket"
    );
    // The same id again: 409, and the policy keeps one statement.
    let r = http.post_json(&policy, s3).await;
    assert_eq!(
        (r.status, r.header("x-amzn-errortype")),
        (409, Some("ResourceConflictException"))
    );
    // Bad input: 400, nothing stored.
    let r = http
        .post_json(
            &policy,
            json!({"StatementId": "x y", "Action": "lambda:InvokeFunction", "Principal": "*"}),
        )
        .await;
    assert_eq!(r.status, 400);
    // A stale RevisionId: 412.
    let url_stmt = json!({"StatementId": "url", "Action": "lambda:InvokeFunctionUrl",
                          "Principal": "*", "FunctionUrlAuthType": "NONE", "RevisionId": "stale"});
    let r = http.post_json(&policy, url_stmt.clone()).await;
    assert_eq!(r.status, 412);
    let got = http.get(&policy).await;
    assert_eq!(got.status, 200);
    let revision = got.json()["RevisionId"].as_str().unwrap().to_string();
    let mut with_rev = url_stmt;
    with_rev["RevisionId"] = json!(revision);
    assert_eq!(http.post_json(&policy, with_rev).await.status, 201);
    // A version's policy is its own; an unknown qualifier is refused.
    let v = publish(&http, "pol").await;
    assert_eq!(
        http.get(&format!("{policy}?Qualifier={v}")).await.status,
        404
    );
    let r = http
        .post_json(
            &format!("{policy}?Qualifier={v}"),
            json!({"StatementId": "acct", "Action": "lambda:*", "Principal": "123456789012"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = http
        .post_json(
            &format!("{policy}?Qualifier=99"),
            json!({"StatementId": "a", "Action": "lambda:*", "Principal": "*"}),
        )
        .await;
    assert_eq!(r.status, 404);

    let doc = |r: &Resp| -> serde_json::Value {
        serde_json::from_str(r.json()["Policy"].as_str().unwrap()).unwrap()
    };
    let sids = |d: &serde_json::Value| -> Vec<String> {
        d["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Sid"].as_str().unwrap().to_string())
            .collect()
    };
    // Kept across a restart.
    server.shutdown().await;
    let (server, _backend) = fake_server(dir.path(), test_config()).await;
    let http = Http::new(server.http);
    let d = doc(&http.get(&policy).await);
    assert_eq!(d["Version"], "2012-10-17");
    assert_eq!(sids(&d), ["s3", "url"]);
    assert_eq!(
        d["Statement"][1]["Condition"]["StringEquals"]["lambda:FunctionUrlAuthType"],
        "NONE"
    );
    let dv = doc(&http.get(&format!("{policy}?Qualifier={v}")).await);
    assert_eq!(
        dv["Statement"][0]["Resource"],
        format!("arn:aws:lambda:us-east-1:000000000000:function:pol:{v}")
    );
    assert_eq!(
        dv["Statement"][0]["Principal"]["AWS"],
        "arn:aws:iam::123456789012:root"
    );

    // RemovePermission: unknown id 404, stale revision 412, then the statements go, and
    // the policy with the last one.
    assert_eq!(http.delete(&format!("{policy}/nope")).await.status, 404);
    assert_eq!(
        http.delete(&format!("{policy}/s3?RevisionId=stale"))
            .await
            .status,
        412
    );
    assert_eq!(http.delete(&format!("{policy}/s3")).await.status, 204);
    assert_eq!(sids(&doc(&http.get(&policy).await)), ["url"]);
    assert_eq!(http.delete(&format!("{policy}/url")).await.status, 204);
    assert_eq!(http.get(&policy).await.status, 404);
    // Deleting the function deletes its policies.
    let again =
        json!({"StatementId": "again", "Action": "lambda:InvokeFunction", "Principal": "*"});
    assert_eq!(http.post_json(&policy, again).await.status, 201);
    assert_eq!(http.delete(&format!("{FN}/pol")).await.status, 204);
    server.shutdown().await;
    let (server, _backend) = fake_server(dir.path(), test_config()).await;
    let http = Http::new(server.http);
    create(&http, "pol", "app.handler").await;
    assert_eq!(http.get(&policy).await.status, 404);
    server.shutdown().await;
}
