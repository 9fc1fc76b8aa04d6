//! Issue 2: the user's mistakes: a handler that raises, an import error at init,
//! code without the handler module, and a zip that climbs out of its root.
use serde_json::json;
use std::io::Write;
use thaw_tests::{body_json, boot, boot_err, code, invoke, spec};
use thaw_vmm::kvm_or_skip;
use thaw_worker::{FunctionCode, FunctionSpec, WorkerError};

#[test]
fn test_handler_exception_is_a_function_error() {
    if !kvm_or_skip("test_handler_exception_is_a_function_error") {
        return;
    }
    let source = "class Declined(Exception):\n    pass\n\ndef handler(event, context):\n    raise Declined('card ' + event['card'] + ' declined')\n";
    let mut instance = boot(spec("raises", source));
    let out = invoke(&mut instance, &json!({"card": "4242"}));
    assert!(out.function_error);
    let v = body_json(&out);
    assert_eq!(v["errorType"], "Declined");
    assert_eq!(v["errorMessage"], "card 4242 declined");
    let trace = v["stackTrace"].as_array().expect("stackTrace is a list");
    assert!(
        trace
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains("app.py"))),
        "{trace:?}"
    );
    assert_eq!(v["requestId"], json!(out.request_id));
    // The error was logged, and the instance still serves.
    assert!(
        String::from_utf8_lossy(&out.log).contains("Declined"),
        "{}",
        String::from_utf8_lossy(&out.log)
    );
    let again = invoke(&mut instance, &json!({"card": "1"}));
    assert_eq!(body_json(&again)["errorMessage"], "card 1 declined");
}

#[test]
fn test_import_error_is_an_init_failure() {
    if !kvm_or_skip("test_import_error_is_an_init_failure") {
        return;
    }
    let err = boot_err(spec(
        "import-error",
        "import module_that_does_not_exist\n\ndef handler(e, c):\n    return 1\n",
    ));
    let WorkerError::InitFailed { body, .. } = &err else {
        panic!("expected InitFailed, got {err:?}")
    };
    let v: serde_json::Value = serde_json::from_slice(body).expect("init error body is JSON");
    assert_eq!(v["errorType"], "Runtime.ImportModuleError");
    assert!(
        v["errorMessage"]
            .as_str()
            .unwrap()
            .contains("module_that_does_not_exist"),
        "{v}"
    );
}

#[test]
fn test_exception_in_init_code_is_an_init_failure() {
    if !kvm_or_skip("test_exception_in_init_code_is_an_init_failure") {
        return;
    }
    let err = boot_err(spec(
        "init-raises",
        "raise ValueError('bad config')\n\ndef handler(e, c):\n    return 1\n",
    ));
    let WorkerError::InitFailed { body, .. } = &err else {
        panic!("expected InitFailed, got {err:?}")
    };
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["errorMessage"], "bad config", "{v}");
}

#[test]
fn test_missing_handler_module_is_refused_before_boot() {
    // No VM is created: runs without KVM too.
    let s = FunctionSpec::new("no-module", "app.handler", code(&[("other.py", "x = 1\n")]));
    let err = match thaw_worker::Instance::boot(thaw_tests::runtime(), std::sync::Arc::new(s)) {
        Ok(_) => panic!("boot without the handler module must fail"),
        Err(e) => e,
    };
    assert!(
        matches!(&err, WorkerError::HandlerModuleMissing { module, .. } if module == "app"),
        "{err:?}"
    );
    assert!(err.to_string().contains("app.py"), "{err}");
}

fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in files {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn test_zip_slip_paths_are_refused() {
    for bad in [
        "../evil.py",
        "lib/../../evil.py",
        "/etc/evil.py",
        "..\\evil.py",
    ] {
        let zip = zip_of(&[("app.py", b"def handler(e, c): return 1"), (bad, b"x")]);
        let err = FunctionCode::from_zip(&zip).expect_err(bad);
        assert!(matches!(err, WorkerError::UnsafePath(_)), "{bad}: {err:?}");
    }
}

#[test]
fn test_zip_function_runs() {
    if !kvm_or_skip("test_zip_function_runs") {
        return;
    }
    let zip = zip_of(&[
        (
            "app.py",
            b"from lib.util import twice\n\ndef handler(e, c):\n    return twice(e['x'])\n",
        ),
        ("lib/util.py", b"def twice(x):\n    return 2 * x\n"),
        ("lib/__init__.py", b""),
    ]);
    let code = FunctionCode::from_zip(&zip).unwrap();
    let mut instance = boot(FunctionSpec::new("zipped", "app.handler", code));
    assert_eq!(
        body_json(&invoke(&mut instance, &json!({"x": 21}))),
        json!(42)
    );
}
