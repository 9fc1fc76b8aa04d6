//! Chaos (KVM): every chunk file of a live service's snapshot is corrupted, then the service goes
//! on (restores from memory it already holds, or finds the corruption), is restarted on the same
//! host (the working-set images on the hugetlbfs mount still hold the verified bytes) and then as
//! on a fresh host (no image: a new process restores from disk, finds the corruption through the
//! typed `is_corrupt` signal, marks the snapshot bad, verifies the store and rebuilds from a cold
//! boot). Every answer is correct or a clear error, the rebuild answers within seconds and is
//! reported as an init, and the function stays Active.
mod common;

use common::server::{has_runtime, Server};
use common::*;
use std::time::{Duration, Instant};

/// Flips the byte `at` past the middle of every chunk file under `<data>/store/chunks`; how many.
fn corrupt_every_chunk(data: &std::path::Path, at: usize) -> usize {
    let mut n = 0;
    let root = data.join("store/chunks");
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let path = f.unwrap().path();
            if path.extension().is_some() {
                continue; // temp files and already quarantined ones
            }
            let mut bytes = std::fs::read(&path).unwrap();
            let i = (bytes.len() / 2 + at) % bytes.len();
            bytes[i] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
            n += 1;
        }
    }
    n
}

/// Deletes every working-set image on the hugetlbfs mount (what a host reboot does): they
/// are caches, shared by every thaw process of the host.
fn remove_working_set_images() {
    let dir = std::env::var_os("THAW_HUGETLBFS").map_or_else(
        || std::path::PathBuf::from("/dev/hugepages"),
        std::path::PathBuf::from,
    );
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with("thaw-ws-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// One invocation: (correct?, the REPORT line, how long it took).
async fn invoke(http: &Http, n: u64) -> (Result<(), String>, String, Duration) {
    let t0 = Instant::now();
    let r = http
        .invoke(
            "chaos",
            &format!(r#"{{"n": {n}}}"#),
            &[("x-amz-log-type", "Tail")],
        )
        .await;
    let took = t0.elapsed();
    let log = r
        .header("x-amz-log-result")
        .map(|l| {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD.decode(l).unwrap();
            String::from_utf8_lossy(&raw).into_owned()
        })
        .unwrap_or_default();
    let report = log
        .lines()
        .find(|l| l.starts_with("REPORT"))
        .unwrap_or("")
        .to_string();
    let body = String::from_utf8_lossy(&r.body).into_owned();
    let verdict = if r.status == 200 && r.header("x-amz-function-error").is_none() {
        let v = r.json();
        if v["message"] == "hello" && v["event"]["n"] == n {
            Ok(())
        } else {
            panic!("a WRONG answer after corruption: {body}");
        }
    } else {
        // A clear error: Lambda's JSON shape with a type.
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|_| panic!("unclear error {}: {body}", r.status));
        let ty = v["errorType"].as_str().or(r.header("x-amzn-errortype"));
        assert!(ty.is_some(), "error without a type: {body}");
        Err(body)
    };
    (verdict, report, took)
}

#[test]
fn corrupt_chunks_of_a_live_service_are_rebuilt() {
    if !thaw_vmm::kvm_or_skip("corrupt_chunks_of_a_live_service_are_rebuilt") || !has_runtime() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Idle instances are evicted quickly, so later invokes restore.
    let extra = "[limits]\nkeep_warm_ttl_s = 1\n";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = Server::start_with(dir.path(), extra);
    let http = server.client();
    rt.block_on(async {
        let r = http
            .post_json(
                "/2015-03-31/functions",
                create_body("chaos", "hello", "app.handler"),
            )
            .await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(http.wait_state("chaos").await["State"], "Active");
        let (ok, report, _) = invoke(&http, 0).await;
        ok.unwrap();
        assert!(report.contains("Restore Duration"), "{report}");

        // 1. Corrupt the live service's chunks; it keeps answering (from memory it holds, or
        //    by finding the corruption and rebuilding).
        let n = corrupt_every_chunk(dir.path(), 0);
        assert!(n > 10, "only {n} chunk files");
        for i in 1..=4u64 {
            tokio::time::sleep(Duration::from_millis(1500)).await; // past the keep-warm TTL
            let (verdict, report, took) = invoke(&http, i).await;
            println!("live #{i}: {verdict:?} in {took:?}: {report}");
        }
    });
    server.stop();

    // 2. Restarted on the same host: the snapshot's working-set image holds its verified
    //    bytes, so restores answer from it, or find the corruption in a chunk it lacks.
    //    Never a wrong answer (`invoke` panics on one).
    let server = Server::start_with(dir.path(), extra);
    let http = server.client();
    rt.block_on(async {
        for i in 5..=6u64 {
            let (verdict, report, took) = invoke(&http, i).await;
            println!("restarted with images #{i}: {verdict:?} in {took:?}: {report}");
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    });
    server.stop();

    // 3. As on a fresh host: no memory of the good bytes (no image, no process), so every
    //    restore reads the corrupt files (a second byte flipped, in case the service already
    //    rewrote some).
    remove_working_set_images();
    corrupt_every_chunk(dir.path(), 1);
    let server = Server::start_with(dir.path(), extra);
    let http = server.client();
    rt.block_on(async {
        let mut answers = Vec::new();
        for i in 10..16u64 {
            let (verdict, report, took) = invoke(&http, i).await;
            println!("restarted #{i}: {verdict:?} in {took:?}: {report}");
            answers.push((verdict, report, took));
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        // The first answer after the restart is already correct: the corruption was found on
        // restore, the snapshot rebuilt from a cold boot, reported as an init.
        let (first, report, took) = &answers[0];
        first.as_ref().unwrap();
        assert!(report.contains("Init Duration"), "{report}");
        assert!(!report.contains("Restore Duration"), "{report}");
        assert!(*took < Duration::from_secs(30), "{took:?}");
        assert!(
            answers[1..]
                .iter()
                .any(|a| a.1.contains("Restore Duration")),
            "no restore from the rebuilt snapshot"
        );
        // Later ones are warm or restore from the rebuilt snapshot, quickly and correctly.
        for (verdict, report, took) in &answers[1..] {
            verdict.as_ref().unwrap();
            assert!(!report.contains("Init Duration"), "{report}");
            assert!(*took < Duration::from_secs(5), "{took:?}");
        }
        let cfg = http.wait_state("chaos").await;
        assert_eq!(cfg["State"], "Active");
    });
    server.stop();
}
