//! Deployment packages as pip lays them out (issue 10): real wheels from PyPI
//! (hash-pinned, downloaded by scripts/setup.sh, installed here offline with
//! `pip install -t`), and synthetic trees with every layout pip can produce.
use serde_json::json;
use thaw_tests::net::{code_with, pip_install};
use thaw_tests::{body_json, boot, invoke};
use thaw_vmm::kvm_or_skip;
use thaw_worker::{FunctionCode, FunctionSpec};

fn run(code: FunctionCode, event: serde_json::Value) -> serde_json::Value {
    let mut s = FunctionSpec::new("packages", "app.handler", code);
    s.timeout = std::time::Duration::from_secs(60);
    let mut i = boot(s);
    let out = invoke(&mut i, &event);
    assert!(
        !out.function_error,
        "{}\n{}",
        String::from_utf8_lossy(&out.body),
        String::from_utf8_lossy(&out.log)
    );
    body_json(&out)
}

const REAL: &str = r#"
import importlib.metadata, os
import attrs, attr
from attrs import converters
import dateutil.parser
import boto3, botocore.session

@attrs.define
class Point:
    x: int = attrs.field(converter=converters.optional(int))

def handler(event, context):
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    return {
        "attrs": Point("3").x,
        "dateutil": dateutil.parser.parse("2026-12-02T10:00:00Z").year,
        "s3_ops": "ListBuckets" in s3.meta.service_model.operation_names,
        "botocore_data": os.path.isdir("/var/task/botocore/data"),
        "versions": [importlib.metadata.version(p) for p in ("boto3", "attrs")],
        "compat": __import__("boto3.compat").compat.__name__,
    }
"#;

#[test]
fn test_real_wheels_installed_with_pip_target_import() {
    if !kvm_or_skip("test_real_wheels_installed_with_pip_target_import") {
        return;
    }
    let dir = pip_install(&["attrs", "python-dateutil", "boto3"]);
    let got = run(code_with(&dir, &[("app.py", REAL)]), json!({}));
    assert_eq!(got["attrs"], 3);
    assert_eq!(got["dateutil"], 2026);
    assert_eq!(got["s3_ops"], true);
    assert_eq!(got["botocore_data"], true);
    assert_eq!(got["compat"], "boto3.compat");
    let versions = got["versions"].as_array().expect("versions");
    assert!(
        versions
            .iter()
            .all(|v| v.as_str().is_some_and(|s| !s.is_empty())),
        "{got}"
    );
}

const SYNTHETIC: &str = r#"
import importlib, os, sys
import foo, foo_bar, ns.a.mod, ns.b.mod
def handler(event, context):
    deep = importlib.import_module(".".join(["deep"] + ["d%d" % i for i in range(40)] + ["leaf"]))
    mods = [importlib.import_module("bulk.p%d.m%d" % (i % 50, i)).V for i in range(0, 12000, 997)]
    files = sum(len(f) for _, _, f in os.walk("/var/task/bulk"))
    return {
        "foo": foo.WHO, "foo_bar": foo_bar.WHO, "ns": [ns.a.mod.WHO, ns.b.mod.WHO],
        "deep": deep.WHO, "mods": mods, "files": files,
        "listing": sorted(n for n in os.listdir("/var/task") if n.startswith("foo")),
        "dist_info": sorted(os.listdir("/var/task/foo-1.0.dist-info")),
        "data": os.listdir("/var/task/foo-1.0.data/scripts"),
        "bin": os.path.isfile("/var/task/bin/foo-cli"),
    }
"#;

#[test]
fn test_every_pip_layout_imports_including_ten_thousand_files() {
    if !kvm_or_skip("test_every_pip_layout_imports_including_ten_thousand_files") {
        return;
    }
    let mut files: Vec<(String, String)> = vec![
        ("app.py".into(), SYNTHETIC.into()),
        ("foo/__init__.py".into(), "WHO = 'foo package'\n".into()),
        (
            "foo.py".into(),
            "WHO = 'foo module (shadowed by the package)'\n".into(),
        ),
        (
            "foo-1.0.dist-info/METADATA".into(),
            "Name: foo\nVersion: 1.0\n".into(),
        ),
        ("foo-1.0.dist-info/RECORD".into(), String::new()),
        ("foo-1.0.data/scripts/foo-cli".into(), "#!python\n".into()),
        ("foo_bar/__init__.py".into(), "WHO = 'foo_bar'\n".into()),
        ("foo.bar/README".into(), "not a package\n".into()),
        ("bin/foo-cli".into(), "#!/usr/bin/env python\n".into()),
        ("ns/a/mod.py".into(), "WHO = 'ns.a'\n".into()),
        ("ns/b/mod.py".into(), "WHO = 'ns.b'\n".into()),
    ];
    // Deep regular packages (CPython's namespace-package path recalculation is
    // exponential in depth, on any host, so deep trees carry __init__.py as pip's
    // real packages do).
    let mut deep = String::from("deep/");
    files.push(("deep/__init__.py".into(), String::new()));
    for i in 0..40 {
        deep.push_str(&format!("d{i}/"));
        files.push((format!("{deep}__init__.py"), String::new()));
    }
    files.push((format!("{deep}leaf.py"), "WHO = 'deep'\n".into()));
    for i in 0..12_000 {
        files.push((format!("bulk/p{}/m{i}.py", i % 50), format!("V = {i}\n")));
    }
    let code = FunctionCode {
        files: files
            .into_iter()
            .map(|(n, t)| (n, t.into_bytes()))
            .collect(),
    };
    let got = run(code, json!({}));
    assert_eq!(got["foo"], "foo package");
    assert_eq!(got["foo_bar"], "foo_bar");
    assert_eq!(got["ns"], json!(["ns.a", "ns.b"]));
    assert_eq!(got["deep"], "deep");
    let want: Vec<u64> = (0..12_000).step_by(997).collect();
    assert_eq!(got["mods"], json!(want));
    assert_eq!(got["files"], 12_000);
    assert_eq!(
        got["listing"],
        json!([
            "foo",
            "foo-1.0.data",
            "foo-1.0.dist-info",
            "foo.bar",
            "foo.py",
            "foo_bar"
        ])
    );
    assert_eq!(got["dist_info"], json!(["METADATA", "RECORD"]));
    assert_eq!(got["data"], json!(["foo-cli"]));
    assert_eq!(got["bin"], true);
}
