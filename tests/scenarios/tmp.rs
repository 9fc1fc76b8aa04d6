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
        written = 0
        try:
            with open("/tmp/big", "wb") as f:
                for _ in range(event["mb"]):
                    f.write(b"\0" * (1 << 20))
                    written += 1
            os.remove("/tmp/big")
            return {"written_mb": written}
        except OSError as e:
            os.remove("/tmp/big")
            return {"errno": e.errno == errno.ENOSPC, "written_mb": written}
    if op == "alloc":
        # Memory /tmp gave back is the function's again.
        keep = [bytearray(1 << 20) for _ in range(event["mb"])]
        return len(keep)
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
        body_json(&invoke(&mut instance, &json!({"op": "limit", "mb": 600})))["errno"],
        json!(true)
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

/// `/tmp` holds up to EphemeralStorage, and since it lives in guest memory, never
/// more than MemorySize leaves; what it frees is memory again.
#[test]
fn test_tmp_size_is_ephemeral_storage_within_memory_size() {
    if !kvm_or_skip("test_tmp_size_is_ephemeral_storage_within_memory_size") {
        return;
    }
    let limit = |memory_mb: u32, ephemeral_mb: u32, mb: u32| {
        let mut s = spec("tmp-size", HANDLER);
        s.memory_mb = memory_mb;
        s.ephemeral_mb = ephemeral_mb;
        s.timeout = std::time::Duration::from_secs(60);
        let mut instance = boot(s);
        let out = body_json(&invoke(&mut instance, &json!({"op": "limit", "mb": mb})));
        (instance, out)
    };
    // EphemeralStorage 512 of MemorySize 1024: /tmp stops at 512 MiB (the file init
    // wrote holds a few bytes of it, so the 512th MiB does not fit).
    let (_, out) = limit(1024, 512, 600);
    assert_eq!(out, json!({"errno": true, "written_mb": 511}));
    // EphemeralStorage 1024: 700 MiB fit, well past the old fixed 64 MiB.
    let (mut big, out) = limit(1024, 1024, 700);
    assert_eq!(out, json!({"written_mb": 700}));
    // ... and once removed, that memory is Python's again.
    assert_eq!(
        body_json(&invoke(&mut big, &json!({"op": "alloc", "mb": 800}))),
        800
    );
    // MemorySize 256 bounds /tmp below its EphemeralStorage of 1024.
    let (mut small, out) = limit(256, 1024, 400);
    assert_eq!(out["errno"], json!(true), "{out}");
    let written = out["written_mb"].as_u64().unwrap();
    assert!((100..256).contains(&written), "{out}");
    assert_eq!(
        body_json(&invoke(&mut small, &json!({"op": "alloc", "mb": 180}))),
        180
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
