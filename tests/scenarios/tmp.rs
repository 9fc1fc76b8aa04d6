//! A writable `/tmp`, as on Lambda: files, directories, renames, `tempfile`, a size
//! limit with a clear error; it persists across warm invocations and what init
//! writes there survives a snapshot and restore. The function's code stays
//! read-only.
use serde_json::json;
use thaw_snapshotter::StoreOptions;
use thaw_tests::{body_json, boot, invoke, spec, worker};
use thaw_vmm::kvm_or_skip;
use thaw_worker::MemoryMode;

const HANDLER: &str = r#"
import errno, os, shutil, tempfile

with open("/tmp/from-init.txt", "w") as f:
    f.write("written at init")

def handler(event, context):
    op = event["op"]
    if op == "files":
        with open("/tmp/a.txt", "w") as f:
            f.write("hello ")
        with open("/tmp/a.txt", "a") as f:
            f.write("world")
        with open("/tmp/a.txt", "r+b") as f:
            f.seek(0)
            f.write(b"HELLO")
            f.seek(0, 2)
            end = f.tell()
        data = open("/tmp/a.txt").read()
        os.makedirs("/tmp/d/e", exist_ok=True)
        os.makedirs("/tmp/d/e", exist_ok=True)
        os.rename("/tmp/a.txt", "/tmp/d/e/b.txt")
        listing = sorted(os.listdir("/tmp/d/e"))
        size = os.path.getsize("/tmp/d/e/b.txt")
        os.truncate("/tmp/d/e/b.txt", 3)
        short = open("/tmp/d/e/b.txt").read()
        with tempfile.NamedTemporaryFile(dir="/tmp") as t:
            t.write(b"x" * 10000)
            t.flush()
            named = os.path.getsize(t.name)
        with tempfile.TemporaryDirectory() as td:
            open(os.path.join(td, "f"), "w").write("1")
            tmpdir_ok = os.listdir(td) == ["f"]
        gone = not os.path.exists(td)
        shutil.rmtree("/tmp/d")
        return {"data": data, "end": end, "listing": listing, "size": size, "short": short,
                "named": named, "tmpdir": tmpdir_ok, "gone": gone,
                "left": sorted(os.listdir("/tmp"))}
    if op == "count":
        with open("/tmp/count", "a") as f:
            f.write("x")
        return len(open("/tmp/count").read())
    if op == "init_file":
        return open("/tmp/from-init.txt").read()
    if op == "limit":
        try:
            with open("/tmp/big", "wb") as f:
                for _ in range(200):
                    f.write(b"\0" * (1 << 20))
            return "no error"
        except OSError as e:
            os.remove("/tmp/big")
            return {"errno": e.errno == errno.ENOSPC}
    if op == "readonly":
        out = {}
        for path in ["/var/task/new.txt", "/var/task/app.py"]:
            try:
                open(path, "w")
                out[path] = "writable"
            except OSError as e:
                out[path] = e.errno == errno.EROFS
        return out
"#;

#[test]
fn test_tmp_is_a_writable_directory() {
    if !kvm_or_skip("test_tmp_is_a_writable_directory") {
        return;
    }
    let mut instance = boot(spec("tmp", HANDLER));
    let out = body_json(&invoke(&mut instance, &json!({"op": "files"})));
    assert_eq!(
        out,
        json!({"data": "HELLO world", "end": 11, "listing": ["b.txt"], "size": 11, "short": "HEL",
               "named": 10000, "tmpdir": true, "gone": true, "left": ["from-init.txt"]})
    );
    // Persists across warm invocations.
    for n in 1..=3 {
        assert_eq!(
            body_json(&invoke(&mut instance, &json!({"op": "count"}))),
            n
        );
    }
    // A clear error past the size limit, and the space comes back.
    assert_eq!(
        body_json(&invoke(&mut instance, &json!({"op": "limit"}))),
        json!({"errno": true})
    );
    assert_eq!(
        body_json(&invoke(&mut instance, &json!({"op": "count"}))),
        4
    );
    // The function's own files stay read-only.
    assert_eq!(
        body_json(&invoke(&mut instance, &json!({"op": "readonly"}))),
        json!({"/var/task/new.txt": true, "/var/task/app.py": true})
    );
}

#[test]
fn test_tmp_written_at_init_survives_a_restore() {
    if !kvm_or_skip("test_tmp_written_at_init_survives_a_restore") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), StoreOptions::default());
    let (id, _) = w.snapshot(&spec("tmp-snap", HANDLER)).unwrap();
    let snap = w.open_snapshot(&id, None).unwrap();
    let (mut a, _) = w.restore(&snap, MemoryMode::UffdPrefetch).unwrap();
    let (mut b, _) = w.restore(&snap, MemoryMode::Eager).unwrap();
    for inst in [&mut a, &mut b] {
        assert_eq!(
            body_json(&invoke(inst, &json!({"op": "init_file"}))),
            "written at init"
        );
    }
    // Clones do not share what they write afterwards.
    assert_eq!(body_json(&invoke(&mut a, &json!({"op": "count"}))), 1);
    assert_eq!(body_json(&invoke(&mut a, &json!({"op": "count"}))), 2);
    assert_eq!(body_json(&invoke(&mut b, &json!({"op": "count"}))), 1);
}
