//! Shared helpers for the frontend's integration tests: a server over the fake backend on
//! ephemeral ports, a small HTTP client, and zips of the examples.
#![allow(dead_code)]
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thaw_frontend::config::Config;
use thaw_frontend::fake::FakeBackend;
use thaw_frontend::serve::{start, Running};
use thaw_snapshotter::{KvStore, RocksKv};

pub mod server;

/// A config for tests: ephemeral ports, quiet logs, fast async retries.
pub fn test_config() -> Config {
    let mut c = Config {
        http: "127.0.0.1:0".into(),
        grpc: "127.0.0.1:0".into(),
        urls: "127.0.0.1:0".into(),
        log_invocations: false,
        ..Config::default()
    };
    c.async_events.retry_delay_ms = 20;
    c.limits.memory_budget_mb = 64 << 10;
    c
}

/// A server over a fresh fake backend with its registry in `dir`.
pub async fn fake_server(dir: &Path, config: Config) -> (Running<FakeBackend>, FakeBackend) {
    let backend = FakeBackend::new(64 << 20);
    let kv: Arc<dyn KvStore> =
        Arc::new(RocksKv::open(&dir.join("registry")).expect("open rocksdb"));
    let running = start(config, backend.clone(), kv)
        .await
        .expect("start server");
    (running, backend)
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A keep-alive HTTP/1.1 client for one server; [`Http::signed`] signs every request (SigV4).
#[derive(Clone)]
pub struct Http {
    base: String,
    host: String,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    credentials: Option<(String, thaw_frontend::auth::Secret)>,
}

impl Http {
    pub fn new(addr: std::net::SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            host: addr.to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            credentials: None,
        }
    }

    /// A client that signs with `access_key_id` / `secret` for us-east-1.
    pub fn signed(addr: std::net::SocketAddr, access_key_id: &str, secret: &str) -> Self {
        Self {
            credentials: Some((
                access_key_id.into(),
                thaw_frontend::auth::Secret::new(secret),
            )),
            ..Self::new(addr)
        }
    }

    pub async fn req(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        let body: Bytes = body.into();
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("host", &self.host);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut request = b.body(Full::new(body.clone())).unwrap();
        if let Some((key, secret)) = &self.credentials {
            let uri = request.uri().clone();
            let mut req = thaw_frontend::auth::sigv4::SignedRequestMut {
                method,
                path: uri.path(),
                query: uri.query().unwrap_or(""),
                headers: request.headers_mut(),
            };
            thaw_frontend::auth::sigv4::sign(
                &mut req,
                &body,
                key,
                secret,
                "us-east-1",
                std::time::SystemTime::now(),
            );
        }
        let resp = self.client.request(request).await.expect("HTTP request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.req("GET", path, &[], Bytes::new()).await
    }

    pub async fn post_json(&self, path: &str, v: serde_json::Value) -> Resp {
        self.req(
            "POST",
            path,
            &[("content-type", "application/json")],
            v.to_string(),
        )
        .await
    }

    pub async fn put_json(&self, path: &str, v: serde_json::Value) -> Resp {
        self.req(
            "PUT",
            path,
            &[("content-type", "application/json")],
            v.to_string(),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.req("DELETE", path, &[], Bytes::new()).await
    }

    pub async fn invoke(&self, name: &str, payload: &str, headers: &[(&str, &str)]) -> Resp {
        self.req(
            "POST",
            &format!("/2015-03-31/functions/{name}/invocations"),
            headers,
            payload.to_string(),
        )
        .await
    }

    /// Polls GetFunction until `State` is not Pending; returns the configuration.
    pub async fn wait_state(&self, name_and_query: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self
                .get(&format!("/2015-03-31/functions/{name_and_query}"))
                .await;
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            let cfg = r.json()["Configuration"].clone();
            if cfg["State"] != "Pending" && cfg["LastUpdateStatus"] != "InProgress" {
                return cfg;
            }
            assert!(Instant::now() < deadline, "function stuck Pending");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the provisioned config until READY or FAILED.
    pub async fn wait_provisioned(&self, name: &str, qualifier: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let r = self
                .get(&format!(
                    "/2019-09-30/functions/{name}/provisioned-concurrency?Qualifier={qualifier}"
                ))
                .await;
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            let v = r.json();
            if v["Status"] != "IN_PROGRESS" {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "provisioned concurrency stuck IN_PROGRESS"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A zip of the files of `examples/<name>`.
pub fn example_zip(name: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default();
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .expect("example dir")
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries.into_iter().filter(|p| p.is_file()) {
            zip.start_file(path.file_name().unwrap().to_string_lossy(), opts)
                .unwrap();
            zip.write_all(&std::fs::read(&path).unwrap()).unwrap();
        }
        zip.finish().unwrap();
    }
    buf.into_inner()
}

/// CreateFunction's JSON body.
pub fn create_body(name: &str, example: &str, handler: &str) -> serde_json::Value {
    use base64::Engine;
    serde_json::json!({
        "FunctionName": name,
        "Runtime": "python3.12",
        "Role": "arn:aws:iam::000000000000:role/thaw",
        "Handler": handler,
        "Code": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(example_zip(example))},
        "MemorySize": 512,
        "Timeout": 3,
        "Environment": {"Variables": {"GREETING": "hi"}},
    })
}
