//! Outbound network from a function (issue 10): the standard library and real
//! clients (requests, from a `pip install -t` tree) over host sockets, the egress
//! policy, timeouts, TLS on the host, threads/asyncio/logging, and sockets across
//! a snapshot (and DNS answers across a restore). Every server is a loopback server this test starts.
use serde_json::json;
use thaw_tests::net::{
    closed_port, code_with, http_server, https_server, net, pip_install, pki, silent_server,
};
use thaw_tests::{body_json, invoke, spec};
use thaw_vmm::kvm_or_skip;
use thaw_worker::{FunctionSpec, MemoryMode};

fn boot_with(mut s: FunctionSpec, ctx: thaw_net::NetContext) -> thaw_worker::Instance {
    s.net = Some(ctx);
    thaw_tests::boot(s)
}

fn ok(out: &thaw_worker::InvokeOutcome) -> serde_json::Value {
    assert!(
        !out.function_error,
        "handler failed: {}\nlog:\n{}",
        String::from_utf8_lossy(&out.body),
        String::from_utf8_lossy(&out.log)
    );
    body_json(out)
}

const STDLIB_CLIENTS: &str = r#"
import http.client, socket, urllib.request
def handler(event, context):
    port = event["port"]
    out = {}
    with urllib.request.urlopen("http://127.0.0.1:%d/urllib" % port, timeout=5) as r:
        out["urllib"] = [r.status, r.read().decode()]
    c = http.client.HTTPConnection("localhost", port, timeout=5)
    for path in ("/a", "/b"):  # keep-alive: two requests, one connection
        c.request("GET", path)
        r = c.getresponse()
        out.setdefault("http_client", []).append(r.read().decode())
    c.close()
    infos = socket.getaddrinfo("localhost", port, socket.AF_INET, socket.SOCK_STREAM)
    out["getaddrinfo"] = sorted({i[4][0] for i in infos})
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /bytes/100000 HTTP/1.1\r\nHost: x\r\n\r\n")
    f = s.makefile("rb")
    head = f.readline()
    while f.readline() not in (b"\r\n", b""):
        pass
    body = f.read(100000)
    out["raw"] = [head.decode().strip(), len(body), body.count(b"x")]
    out["peer"] = list(s.getpeername())
    s.close()
    return out
"#;

#[test]
fn test_stdlib_clients_reach_an_allowed_loopback_server() {
    if !kvm_or_skip("test_stdlib_clients_reach_an_allowed_loopback_server") {
        return;
    }
    let server = http_server(8);
    let p = server.port();
    let ctx = net(&[format!("127.0.0.1:{p}"), format!("localhost:{p}")], None);
    let mut i = boot_with(spec("net-stdlib", STDLIB_CLIENTS), ctx.clone());
    let got = ok(&invoke(&mut i, &json!({ "port": p })));
    assert_eq!(got["urllib"], json!([200, "hello /urllib"]));
    assert_eq!(got["http_client"], json!(["hello /a", "hello /b"]));
    assert_eq!(got["getaddrinfo"], json!(["127.0.0.1"]));
    assert_eq!(got["raw"], json!(["HTTP/1.1 200 OK", 100000, 100000]));
    assert_eq!(got["peer"], json!(["127.0.0.1", p]));
    assert_eq!(
        server.accepted(),
        3,
        "urllib, http.client (kept alive), raw socket"
    );
    assert_eq!(ctx.stats().snapshot().denied, 0);
}

const DENIED: &str = r#"
import socket, urllib.request
def handler(event, context):
    out = {}
    try:
        socket.create_connection(("127.0.0.1", event["port"]), timeout=2)
        out["connect"] = "connected"
    except OSError as e:
        out["connect"] = [type(e).__name__, str(e)]
    try:
        urllib.request.urlopen("http://localhost:%d/" % event["port"], timeout=2)
        out["urllib"] = "fetched"
    except OSError as e:
        out["urllib"] = type(e).__name__
    return out
"#;

#[test]
fn test_a_denied_destination_is_refused_without_connecting() {
    if !kvm_or_skip("test_a_denied_destination_is_refused_without_connecting") {
        return;
    }
    let server = http_server(4);
    let other = http_server(1);
    // Only the other server is allowed: connecting to this one must never happen.
    let ctx = net(&[format!("127.0.0.1:{}", other.port())], None);
    let mut i = boot_with(spec("net-denied", DENIED), ctx.clone());
    let got = ok(&invoke(&mut i, &json!({ "port": server.port() })));
    assert_eq!(got["connect"][0], "ConnectionRefusedError", "{got}");
    let msg = got["connect"][1].as_str().unwrap_or_default();
    assert!(msg.contains("not allowed"), "{msg}");
    assert_eq!(got["urllib"], "URLError", "{got}");
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(server.accepted(), 0, "a denied connect reached the server");
    assert!(ctx.stats().snapshot().denied >= 1);
}

const TIMEOUTS: &str = r#"
import socket, time, errno
def handler(event, context):
    out = {}
    s = socket.create_connection(("127.0.0.1", event["silent"]), timeout=5)
    s.settimeout(0.3)
    t = time.monotonic()
    try:
        s.recv(10)
        out["recv"] = "data"
    except socket.timeout as e:
        out["recv"] = ["timeout", round(time.monotonic() - t, 1), str(e)]
    s.setblocking(False)
    try:
        s.recv(10)
    except BlockingIOError as e:
        out["nonblocking"] = e.errno == errno.EAGAIN
    s.close()
    try:
        socket.create_connection(("127.0.0.1", event["closed"]), timeout=2)
    except ConnectionRefusedError as e:
        out["refused"] = e.errno == errno.ECONNREFUSED
    return out
"#;

#[test]
fn test_timeouts_nonblocking_and_refused_behave_as_on_linux() {
    if !kvm_or_skip("test_timeouts_nonblocking_and_refused_behave_as_on_linux") {
        return;
    }
    let (silent, _listener) = silent_server();
    let closed = closed_port();
    let ctx = net(
        &[
            format!("127.0.0.1:{}", silent.port()),
            format!("127.0.0.1:{closed}"),
        ],
        None,
    );
    let mut i = boot_with(spec("net-timeouts", TIMEOUTS), ctx);
    let got = ok(&invoke(
        &mut i,
        &json!({ "silent": silent.port(), "closed": closed }),
    ));
    assert_eq!(got["recv"][0], "timeout", "{got}");
    let waited = got["recv"][1].as_f64().unwrap_or(0.0);
    assert!(
        (0.25..2.0).contains(&waited),
        "waited {waited} s for a 0.3 s timeout"
    );
    assert_eq!(got["nonblocking"], true, "{got}");
    assert_eq!(got["refused"], true, "{got}");
}

const TLS: &str = r#"
import http.client, ssl
import requests
def handler(event, context):
    url = "https://localhost:%d/tls" % event["port"]
    out = {}
    r = requests.get(url, verify="/var/task/ca.pem", timeout=5)
    out["trusted"] = [r.status_code, r.text]
    try:
        requests.get(url, timeout=5)
        out["untrusted"] = "accepted"
    except requests.exceptions.SSLError as e:
        out["untrusted"] = ["SSLError", "CERTIFICATE_VERIFY_FAILED" in str(e)]
    out["unverified"] = requests.get(url, verify=False, timeout=5).status_code
    ctx = ssl.create_default_context(cafile="/var/task/ca.pem")
    c = http.client.HTTPSConnection("localhost", event["port"], context=ctx, timeout=5)
    c.request("GET", "/stdlib")
    out["http_client"] = c.getresponse().read().decode()
    cert = c.sock.getpeercert()
    out["subject"] = dict(x[0] for x in cert["subject"])["commonName"]
    out["san"] = [list(x) for x in cert.get("subjectAltName", ())]
    out["version"] = c.sock.version()
    c.close()
    return out
"#;

#[test]
fn test_tls_with_a_test_ca_is_accepted_and_an_untrusted_certificate_rejected() {
    if !kvm_or_skip("test_tls_with_a_test_ca_is_accepted_and_an_untrusted_certificate_rejected") {
        return;
    }
    let pki = pki();
    let server = https_server(&pki, 8);
    let p = server.port();
    let pkgs = pip_install(&["requests"]);
    let code = code_with(&pkgs, &[("app.py", TLS), ("ca.pem", &pki.ca_pem)]);
    let mut s = FunctionSpec::new("net-tls", "app.handler", code);
    s.timeout = std::time::Duration::from_secs(30);
    let ctx = net(&[format!("localhost:{p}")], None);
    let mut i = boot_with(s, ctx.clone());
    let got = ok(&invoke(&mut i, &json!({ "port": p })));
    assert_eq!(got["trusted"], json!([200, "hello /tls"]));
    assert_eq!(got["untrusted"], json!(["SSLError", true]), "{got}");
    assert_eq!(got["unverified"], 200);
    assert_eq!(got["http_client"], "hello /stdlib");
    assert_eq!(got["subject"], "localhost");
    assert!(got["san"].to_string().contains("localhost"), "{got}");
    assert!(
        got["version"].as_str().unwrap_or("").starts_with("TLSv1."),
        "{got}"
    );
    let st = ctx.stats().snapshot();
    assert!(st.tls_handshakes >= 3 && st.tls_failures >= 1, "{st:?}");
}

const CONCURRENCY: &str = r#"
import asyncio, logging, threading, urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
logger = logging.getLogger()
logger.setLevel(logging.INFO)
def get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
        return r.read().decode()
async def fetch(port, path):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    body = await reader.readexactly(n)
    writer.close()
    await writer.wait_closed()
    return body.decode()
async def main(port):
    slept = await asyncio.gather(*(asyncio.sleep(0.01, result=i) for i in range(3)))
    fetched = await asyncio.gather(*(fetch(port, "/async%d" % i) for i in range(3)))
    return slept, fetched
def handler(event, context):
    port = event["port"]
    with ThreadPoolExecutor(max_workers=4) as ex:
        futures = {ex.submit(get, port, "/pool%d" % i): i for i in range(4)}
        pool = sorted(f.result() for f in as_completed(futures))
        mapped = list(ex.map(lambda i: get(port, "/map%d" % i), range(2)))
    box = []
    t = threading.Thread(target=lambda: box.append(get(port, "/thread")))
    t.start()
    t.join()
    slept, fetched = asyncio.run(main(port))
    logger.info("fan-out done: %d", len(pool))
    logger.debug("not shown at INFO")
    return {"pool": pool, "map": mapped, "thread": box, "alive": t.is_alive(),
            "slept": slept, "async": fetched}
"#;

#[test]
fn test_thread_pool_asyncio_and_the_root_logger() {
    if !kvm_or_skip("test_thread_pool_asyncio_and_the_root_logger") {
        return;
    }
    let server = http_server(32);
    let ctx = net(&[format!("127.0.0.1:{}", server.port())], None);
    let mut i = boot_with(spec("net-concurrency", CONCURRENCY), ctx);
    let out = invoke(&mut i, &json!({ "port": server.port() }));
    let got = ok(&out);
    assert_eq!(
        got["pool"],
        json!([
            "hello /pool0",
            "hello /pool1",
            "hello /pool2",
            "hello /pool3"
        ])
    );
    assert_eq!(got["map"], json!(["hello /map0", "hello /map1"]));
    assert_eq!(got["thread"], json!(["hello /thread"]));
    assert_eq!(got["alive"], false);
    assert_eq!(got["slept"], json!([0, 1, 2]));
    assert_eq!(
        got["async"],
        json!(["hello /async0", "hello /async1", "hello /async2"])
    );
    let log = String::from_utf8_lossy(&out.log);
    let line = log
        .lines()
        .find(|l| l.contains("fan-out done: 4"))
        .unwrap_or_else(|| panic!("no root-logger line in the log:\n{log}"));
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields.len(), 4, "{line:?}");
    assert_eq!(fields[0], "[INFO]");
    assert!(
        fields[1].ends_with('Z') && fields[1].contains('T'),
        "{line:?}"
    );
    assert_eq!(fields[2], out.request_id, "{line:?}");
    assert!(!log.contains("not shown at INFO"));
}

const INIT_SOCKET: &str = r#"
import http.client, os, socket
PORT = int(os.environ["PORT"])
# Resolved on the host during init (the allowlist names "localhost" only).
RESOLVED = socket.getaddrinfo("localhost", PORT, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
INIT = http.client.HTTPConnection("localhost", PORT, timeout=5)
INIT.request("GET", "/init")
FIRST = INIT.getresponse().read().decode()
def handler(event, context):
    out = {"first": FIRST}
    try:
        INIT.request("GET", "/again")
        out["old"] = INIT.getresponse().read().decode()
    except OSError as e:
        out["old"] = type(e).__name__
    # The init-time DNS answer is not reused by a clone: connecting to the cached
    # address is refused; resolving again works.
    try:
        socket.create_connection((RESOLVED, PORT), timeout=5).close()
        out["cached_dns"] = "connected"
    except ConnectionRefusedError:
        out["cached_dns"] = "refused"
    c = http.client.HTTPConnection("localhost", PORT, timeout=5)
    c.request("GET", "/fresh")
    out["fresh"] = c.getresponse().read().decode()
    c.close()
    return out
"#;

#[test]
fn test_a_socket_opened_during_init_does_not_survive_a_restore() {
    if !kvm_or_skip("test_a_socket_opened_during_init_does_not_survive_a_restore") {
        return;
    }
    let server = http_server(16);
    let p = server.port();
    let dir = tempfile::tempdir().unwrap();
    let mut w = thaw_tests::worker(dir.path(), Default::default());
    let ctx = net(&[format!("localhost:{p}")], None);
    w.set_net(ctx);
    let mut s = spec("net-snapshot", INIT_SOCKET);
    s.env.insert("PORT".into(), p.to_string());
    let (id, _) = w.snapshot(&s).unwrap();
    let snap = w.open_snapshot(&id, None).unwrap();
    for mode in [MemoryMode::Eager, MemoryMode::UffdPrefetch] {
        let (mut clone, _) = w.restore(&snap, mode).unwrap();
        let got = ok(&invoke(&mut clone, &json!({})));
        assert_eq!(got["first"], "hello /init");
        assert_eq!(got["old"], "ConnectionResetError", "{mode:?}: {got}");
        assert_eq!(got["cached_dns"], "refused", "{mode:?}: {got}");
        assert_eq!(got["fresh"], "hello /fresh", "{mode:?}");
    }
}
