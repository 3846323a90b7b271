//! The harness the end-to-end tests drive: a real canto server started
//! in-process on an ephemeral loopback port, with real modules built from
//! `guest-modules/`, and a log capture to assert on what operators see.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use canto::{Config, Server};
use tokio::sync::oneshot;

/// A running server; dropping it stops it.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    finished: Option<tokio::task::JoinHandle<()>>,
    /// Holds the config file and plugin directory for the server's lifetime.
    pub dir: tempfile::TempDir,
}

/// Config lines every test server gets: an ephemeral loopback port, a
/// plugin directory holding every guest module, and a small instance pool
/// (many servers share one test process's address space).
fn preamble(dir: &std::path::Path) -> String {
    format!(
        "http_ports = {{ 0 }}\nhttp_interfaces = {{ \"127.0.0.1\" }}\nplugin_paths = {{ {:?} }}\nhttp_module_pool_size = 256\n",
        dir.join("plugins").display().to_string()
    )
}

impl TestServer {
    /// Starts a server with `config` (Prosody syntax) after the preamble.
    pub async fn start(config: &str) -> TestServer {
        match Self::try_start(config).await {
            Ok(server) => server,
            Err(error) => panic!("server did not start: {error}"),
        }
    }

    pub async fn try_start(config: &str) -> Result<TestServer, String> {
        capture_logs();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).map_err(|e| e.to_string())?;
        for (name, path) in canto_guests::ALL {
            std::fs::copy(path, plugins.join(format!("mod_{name}.wasm"))).map_err(|e| e.to_string())?;
        }
        let config_path = dir.path().join("prosody.cfg.lua");
        let text = format!("{}{config}", preamble(dir.path()));
        std::fs::write(&config_path, &text).map_err(|e| e.to_string())?;
        let config = Config::load(&config_path, &canto::builtin::names()).map_err(|e| e.to_string())?;
        let server = Server::start(&config).await.map_err(|e| e.to_string())?;
        let addr = server.local_addrs()[0];
        let (stop, stopped) = oneshot::channel::<()>();
        let finished = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Ok(TestServer { addr, stop: Some(stop), finished: Some(finished), dir })
    }

    /// `http://<host>:<port><path>`; the client resolves every host to us.
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.addr.port())
    }

    /// A client that reaches this server for any of `hosts`.
    pub fn client(&self, hosts: &[&str]) -> reqwest::Client {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(60));
        for host in hosts {
            builder = builder.resolve(host, self.addr);
        }
        builder.build().expect("build http client")
    }

    pub async fn get(&self, host: &str, path: &str) -> reqwest::Response {
        self.client(&[host]).get(self.url(host, path)).send().await.expect("request failed")
    }

    /// Asks the server to shut down gracefully and waits until it has.
    pub async fn stop(mut self) {
        self.begin_stop();
        if let Some(finished) = self.finished.take() {
            let _ = finished.await;
        }
    }

    /// Signals shutdown without waiting; returns a handle to await it.
    pub fn begin_stop(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.finished.take()
    }

    pub fn plugin_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

static LOGS: OnceLock<Mutex<String>> = OnceLock::new();

/// Routes the process's log output into a buffer tests can search (and
/// echoes it to stderr, which the test runner shows for failing tests).
fn capture_logs() {
    struct Capture;
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let text = String::from_utf8_lossy(buf);
            eprint!("{text}");
            LOGS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner()).push_str(&text);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn"))
        .with_ansi(false)
        .with_writer(|| Capture)
        .try_init();
}

/// Log lines so far that contain every one of `needles`.
pub fn log_lines_with(needles: &[&str]) -> Vec<String> {
    let logs = LOGS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner()).clone();
    logs.lines().filter(|line| needles.iter().all(|n| line.contains(n))).map(str::to_string).collect()
}

/// Waits until a log line contains every one of `needles`, or panics.
pub async fn wait_for_log(needles: &[&str]) -> String {
    for _ in 0..200 {
        if let Some(line) = log_lines_with(needles).into_iter().next() {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no log line contains all of {needles:?}");
}
