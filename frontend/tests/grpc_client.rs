//! The gRPC service through the generated tonic client on the fake backend: CreateFunction,
//! PublishVersion, provisioned concurrency, Invoke (sync, Event, DryRun), errors, Stats.
mod common;

use common::*;
use std::time::Duration;
use thaw_frontend::proto::{self, thaw_client::ThawClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_client_drives_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _backend) = fake_server(dir.path(), test_config()).await;
    let mut client = ThawClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();

    let cfg = client
        .create_function(proto::CreateFunctionRequest {
            function_name: "g".into(),
            runtime: "python3.12".into(),
            handler: "app.handler".into(),
            zip_file: example_zip("hello"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (cfg.state.as_str(), cfg.memory_size, cfg.timeout),
        ("Pending", 512, 3)
    );
    let get = proto::GetFunctionRequest {
        function_name: "g".into(),
        qualifier: String::new(),
    };
    while client
        .get_function(get.clone())
        .await
        .unwrap()
        .into_inner()
        .state
        == "Pending"
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let v = client
        .publish_version(proto::PublishVersionRequest {
            function_name: "g".into(),
            description: "v1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.version, "1");
    let get1 = proto::GetFunctionRequest {
        function_name: "g:1".into(),
        qualifier: String::new(),
    };
    while client
        .get_function(get1.clone())
        .await
        .unwrap()
        .into_inner()
        .state
        == "Pending"
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pc = client
        .put_provisioned_concurrency(proto::PutProvisionedConcurrencyRequest {
            function_name: "g".into(),
            qualifier: "1".into(),
            provisioned_concurrent_executions: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pc.requested, 2);
    let getpc = proto::GetProvisionedConcurrencyRequest {
        function_name: "g".into(),
        qualifier: "1".into(),
    };
    while client
        .get_provisioned_concurrency(getpc.clone())
        .await
        .unwrap()
        .into_inner()
        .status
        != "READY"
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let out = client
        .invoke(proto::InvokeRequest {
            function_name: "g".into(),
            qualifier: "1".into(),
            payload: br#"{"a":1}"#.to_vec(),
            tail: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.payload, br#"{"echo":{"a":1}}"#);
    assert_eq!(
        (
            out.executed_version.as_str(),
            out.start_type.as_str(),
            out.function_error.as_str()
        ),
        ("1", "warm", "")
    );
    assert!(!out.log_result.is_empty());
    let out = client
        .invoke(proto::InvokeRequest {
            function_name: "g:1".into(),
            payload: br#"{"fail":1}"#.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.function_error, "Unhandled");
    let ev = client
        .invoke(proto::InvokeRequest {
            function_name: "g".into(),
            invocation_type: proto::InvocationType::Event as i32,
            payload: b"{}".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!ev.request_id.is_empty());
    client
        .invoke(proto::InvokeRequest {
            function_name: "g".into(),
            invocation_type: proto::InvocationType::DryRun as i32,
            ..Default::default()
        })
        .await
        .unwrap();

    // Errors carry the Lambda error name.
    let err = client
        .invoke(proto::InvokeRequest {
            function_name: "missing".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(
        err.metadata().get("x-amzn-errortype").unwrap(),
        "ResourceNotFoundException"
    );
    let err = client
        .put_provisioned_concurrency(proto::PutProvisionedConcurrencyRequest {
            function_name: "g".into(),
            qualifier: "$LATEST".into(),
            provisioned_concurrent_executions: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let stats = client
        .stats(proto::StatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.functions, 1);
    let pool = stats
        .pools
        .iter()
        .find(|p| p.version == "1")
        .expect("pool of g:1");
    assert_eq!(
        (pool.provisioned_requested, pool.provisioned_allocated),
        (2, 2)
    );
    drop(client);
    server.shutdown().await;
}
