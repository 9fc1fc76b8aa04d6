//! `thaw serve` as a child process on free ports (the KVM tests' server).
use super::Http;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key pair the servers below are configured with.
pub const KEY: &str = "AKIDSERVEKVM";
pub const SECRET: &str = "serve-kvm/secret";

/// A `thaw serve` child on free ports, requiring SigV4 with [`KEY`] / [`SECRET`].
pub struct Server {
    pub data: std::path::PathBuf,
    child: Child,
    pub http: String,
}

/// A server left running by a failed test is killed, not orphaned.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn start(data: &Path) -> Self {
        Self::start_with(data, "")
    }

    /// [`Server::start`] with `extra` appended to the config file.
    pub fn start_with(data: &Path, extra: &str) -> Self {
        Self::start_at(data, "127.0.0.1:0", extra)
    }

    /// [`Server::start_with`] with the HTTP API on `http` (a fixed port, for
    /// configs that must name it, such as an egress allowlist).
    pub fn start_at(data: &Path, http: &str, extra: &str) -> Self {
        // Share the user's precompiled CPython module if there is one (compiling takes ~30 s).
        let config = data.join("thaw.toml");
        let shared = std::env::var_os("HOME")
            .map(|h| Path::new(&h).join(".thaw/cache/modules"))
            .filter(|p| p.is_dir());
        let mut text = shared.map_or(String::new(), |p| {
            format!("module_cache = {:?}\n", p.display().to_string())
        });
        text.push_str(&format!(
            "[auth]\ncredentials = [{{ access_key_id = \"{KEY}\", secret_access_key = \"{SECRET}\" }}]\n"
        ));
        text.push_str(extra);
        std::fs::write(&config, text).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_thaw"))
            .args([
                "serve",
                "--http",
                http,
                "--grpc",
                "127.0.0.1:0",
                "--urls",
                "127.0.0.1:0",
                "--config",
            ])
            .arg(&config)
            .arg("--data")
            .arg(data)
            .env("THAW_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn thaw serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("thaw serve printed nothing").unwrap();
        // "thaw serve: http://ADDR grpc://ADDR urls http://ADDR data DIR"
        let http = first
            .split_whitespace()
            .nth(2)
            .expect("address line")
            .trim_start_matches("http://")
            .to_string();
        std::thread::spawn(move || for _ in lines {});
        Self {
            data: data.to_path_buf(),
            child,
            http,
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.http.parse().unwrap()
    }

    /// A client that signs its requests.
    pub fn client(&self) -> Http {
        Http::signed(self.addr(), KEY, SECRET)
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("thaw serve ignored SIGTERM");
    }
}

/// Whether the CPython runtime is installed; prints SKIPPED when it is not.
pub fn has_runtime() -> bool {
    let path = thaw_worker::runtime::default_runtime_dir().join(thaw_worker::runtime::PYTHON_WASM);
    let ok = path.exists();
    if !ok {
        println!(
            "SKIPPED: no CPython runtime at {} (scripts/setup.sh fetches it)",
            path.display()
        );
    }
    ok
}
