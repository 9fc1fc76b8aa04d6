//! Issue 2: a Python handler end to end: result JSON, the Lambda context, the
//! environment, stdout captured in the invocation log, and the module cache.
use serde_json::json;
use std::sync::Arc;
use thaw_tests::{body_json, boot, cache_dir, invoke, runtime, spec};
use thaw_vmm::kvm_or_skip;
use thaw_worker::{Instance, Runtime};

const CONTEXT_AND_ENV: &str = r#"
import os

def handler(event, context):
    print("stdout-marker", event["n"])
    return {
        "event": event,
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "log_group_name": context.log_group_name,
        "remaining": context.get_remaining_time_in_millis(),
        "env": {k: os.environ.get(k) for k in [
            "AWS_LAMBDA_FUNCTION_NAME", "_HANDLER", "LAMBDA_TASK_ROOT", "THAW_CUSTOM", "AWS_REGION"]},
    }
"#;

#[test]
fn test_hello_end_to_end_with_context_env_and_log() {
    if !kvm_or_skip("test_hello_end_to_end_with_context_env_and_log") {
        return;
    }
    let mut s = spec("hello-ctx", CONTEXT_AND_ENV);
    s.timeout = std::time::Duration::from_secs(10);
    s.env.insert("THAW_CUSTOM".into(), "custom value=1".into());
    let mut instance = boot(s);
    for n in 0..3 {
        let out = invoke(
            &mut instance,
            &json!({"n": n, "nested": {"a": [1, 2.5, "x", null]}}),
        );
        assert!(
            !out.function_error,
            "{}",
            String::from_utf8_lossy(&out.body)
        );
        let v = body_json(&out);
        assert_eq!(
            v["event"],
            json!({"n": n, "nested": {"a": [1, 2.5, "x", null]}})
        );
        assert_eq!(v["aws_request_id"], json!(out.request_id));
        assert_eq!(out.request_id.len(), 36, "a UUID: {}", out.request_id);
        assert_eq!(v["function_name"], "hello-ctx");
        assert_eq!(v["function_version"], "$LATEST");
        // Lambda's Python runtime hands this over as the env var's string.
        assert_eq!(v["memory_limit_in_mb"].to_string().trim_matches('"'), "512");
        assert_eq!(
            v["invoked_function_arn"],
            "arn:aws:lambda:us-east-1:000000000000:function:hello-ctx"
        );
        assert_eq!(v["log_group_name"], "/aws/lambda/hello-ctx");
        let remaining = v["remaining"].as_i64().expect("remaining is an integer");
        assert!(
            remaining > 0 && remaining <= 10_000,
            "get_remaining_time_in_millis() = {remaining}"
        );
        assert_eq!(
            v["env"],
            json!({
                "AWS_LAMBDA_FUNCTION_NAME": "hello-ctx",
                "_HANDLER": "app.handler",
                "LAMBDA_TASK_ROOT": "/var/task",
                "THAW_CUSTOM": "custom value=1",
                "AWS_REGION": "us-east-1",
            })
        );
        let log = String::from_utf8_lossy(&out.log);
        assert!(
            log.contains(&format!("stdout-marker {n}")),
            "stdout not in the invocation log: {log:?}"
        );
    }
}

#[test]
fn test_examples_hello_dir_returns_the_event() {
    if !kvm_or_skip("test_examples_hello_dir_returns_the_event") {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
    let code = thaw_worker::FunctionCode::load(&dir).expect("examples/hello");
    let mut instance = boot(thaw_worker::FunctionSpec::new("hello", "app.handler", code));
    let out = invoke(&mut instance, &json!({"a": 1}));
    let v = body_json(&out);
    assert_eq!(v["message"], "hello");
    assert_eq!(v["event"], json!({"a": 1}));
    assert_eq!(v["request_id"], json!(out.request_id));
}

#[test]
fn test_second_runtime_load_hits_the_module_cache() {
    if !kvm_or_skip("test_second_runtime_load_hits_the_module_cache") {
        return;
    }
    // The first load (shared by this binary) compiled or read the cache; now it is there.
    let first = runtime();
    let second = Runtime::python(&thaw_worker::runtime::default_runtime_dir(), &cache_dir())
        .expect("second load");
    assert!(
        second.module.cache_hit,
        "a second load must skip compilation"
    );
    assert_eq!(first.module.len(), second.module.len());
    assert!(
        first.module.bytes().unwrap() == second.module.bytes().unwrap(),
        "the cached image is the compiled one"
    );
    assert!(
        second.module.elapsed.as_secs_f64() < 5.0,
        "cache read took {:?}",
        second.module.elapsed
    );
    let (mut instance, t) = Instance::boot(&second, Arc::new(spec("cached", thaw_tests::HELLO)))
        .expect("boot from cache");
    eprintln!("cold boot from the module cache: {t:?}");
    let out = invoke(&mut instance, &json!({"name": "cached"}));
    assert_eq!(body_json(&out), json!({"hello": "cached"}));
}
