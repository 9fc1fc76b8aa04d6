//! boto3 inside a function (issue 10): `thaw serve` on real microVMs, a function
//! whose package is boto3 from `pip install -t` (hash-pinned PyPI wheels) calls
//! thaw's own Lambda API over loopback, signing with the credentials the service
//! puts in its environment (`[function_credentials]`, here the key pair the
//! service accepts): it invokes another function and lists functions.
mod common;

use common::server::{Server, KEY, SECRET};
use common::*;
use serde_json::json;
use std::io::Write;

const CALLER: &str = r#"
import json, os
import boto3
client = boto3.client("lambda", endpoint_url=os.environ["THAW_ENDPOINT"])
def handler(event, context):
    r = client.invoke(FunctionName="target", Payload=json.dumps({"name": "from-caller"}))
    names = sorted(f["FunctionName"] for f in client.list_functions()["Functions"])
    return {"status": r["StatusCode"], "payload": json.loads(r["Payload"].read()),
            "names": names, "key": os.environ["AWS_ACCESS_KEY_ID"]}
"#;

/// A zip of every file below `dir` plus `app.py` = `source`.
fn zip_tree(dir: &std::path::Path, source: &str) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    let opts = zip::write::SimpleFileOptions::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let name = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                zip.start_file(name, opts).unwrap();
                zip.write_all(&std::fs::read(&p).unwrap()).unwrap();
            }
        }
    }
    zip.start_file("app.py", opts).unwrap();
    zip.write_all(source.as_bytes()).unwrap();
    zip.finish().unwrap();
    buf.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_in_a_function_invokes_another_function_through_thaw() {
    if !thaw_vmm::kvm_or_skip("boto3_in_a_function_invokes_another_function_through_thaw") {
        return;
    }
    let packages = thaw_tests::net::pip_install(&["boto3"]);
    let dir = tempfile::tempdir().unwrap();
    // The service's own port must be in the egress allowlist before it starts.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra = format!(
        "[function_credentials]\naccess_key_id = \"{KEY}\"\nsecret_access_key = \"{SECRET}\"\n\
         [egress]\nallow = [\"127.0.0.1:{port}\"]\n"
    );
    let server = Server::start_at(dir.path(), &format!("127.0.0.1:{port}"), &extra);
    assert_eq!(server.addr().port(), port);
    let http = server.client();

    let r = http
        .post_json(
            "/2015-03-31/functions",
            create_body("target", "hello", "app.handler"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    use base64::Engine;
    let zip = zip_tree(&packages, CALLER);
    let body = json!({
        "FunctionName": "caller",
        "Runtime": "python3.12",
        "Role": "arn:aws:iam::000000000000:role/thaw",
        "Handler": "app.handler",
        "Code": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(zip)},
        "MemorySize": 512,
        "Timeout": 30,
        "Environment": {"Variables": {"THAW_ENDPOINT": format!("http://127.0.0.1:{port}")}},
    });
    let r = http.post_json("/2015-03-31/functions", body).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    for name in ["target", "caller"] {
        let cfg = http.wait_state(name).await;
        assert_eq!(cfg["State"], "Active", "{name}: {cfg}");
    }
    let r = http.invoke("caller", "{}", &[]).await;
    server.stop();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("x-amz-function-error"),
        None,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let got = r.json();
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["payload"]["event"]["name"], "from-caller", "{got}");
    assert_eq!(got["payload"]["message"], "hello", "{got}");
    assert_eq!(got["names"], json!(["caller", "target"]), "{got}");
    assert_eq!(got["key"], KEY);
}
