//! The harness the end-to-end tests drive: a real canto server started
//! in-process on an ephemeral loopback port, with real modules built from
//! `guest-modules/`, and a log capture to assert on what operators see.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use canto::{Config, Server};
use tokio::sync::oneshot;

pub mod daemons;
pub mod node;
pub mod tls;

/// A running server; dropping it stops it.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The first https address, when the config opens one.
    pub https_addr: Option<SocketAddr>,
    /// Re-reads the config file, as SIGHUP does.
    pub reload: canto::server::ReloadHandle,
    stop: Option<oneshot::Sender<()>>,
    finished: Option<tokio::task::JoinHandle<()>>,
    /// Holds the config file and plugin directory for the server's lifetime.
    pub dir: tempfile::TempDir,
}

/// Config lines every test server gets: an ephemeral loopback port, a
/// plugin directory holding every guest module, and a small instance pool
/// (many servers share one test process's address space). https is off
/// unless the test's config sets `https_ports`.
fn preamble(dir: &std::path::Path, config: &str) -> String {
    let https = if config.contains("https_ports") { "" } else { "https_ports = { }\n" };
    format!(
        "http_ports = {{ 0 }}\nhttp_interfaces = {{ \"127.0.0.1\" }}\n{https}plugin_paths = {{ {:?} }}\nhttp_module_pool_size = 256\n",
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

    /// Starts a server whose plugin directory also holds `extra` modules:
    /// (module name, path of the guest to install under that name).
    pub async fn start_with(config: &str, extra: &[(&str, &str)]) -> TestServer {
        match Self::try_start_with(config, extra).await {
            Ok(server) => server,
            Err(error) => panic!("server did not start: {error}"),
        }
    }

    pub async fn try_start(config: &str) -> Result<TestServer, String> {
        Self::try_start_with(config, &[]).await
    }

    pub async fn try_start_with(config: &str, extra: &[(&str, &str)]) -> Result<TestServer, String> {
        capture_logs();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).map_err(|e| e.to_string())?;
        for (name, path) in canto_guests::ALL {
            std::fs::copy(path, plugins.join(format!("mod_{name}.wasm"))).map_err(|e| e.to_string())?;
        }
        for (name, path) in extra {
            std::fs::copy(path, plugins.join(format!("mod_{name}.wasm"))).map_err(|e| e.to_string())?;
        }
        let config_path = dir.path().join("prosody.cfg.lua");
        let text = format!("{}{config}", preamble(dir.path(), config));
        std::fs::write(&config_path, &text).map_err(|e| e.to_string())?;
        let config = Config::load(&config_path, &canto::builtin::names()).map_err(|e| e.to_string())?;
        let server = Server::start(&config).await.map_err(|e| e.to_string())?;
        let addr = server.local_addrs()[0];
        let https_addr = server.local_https_addrs().first().copied();
        let reload = server.reload_handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let finished = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Ok(TestServer { addr, https_addr, reload, stop: Some(stop), finished: Some(finished), dir })
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

    /// GET without following redirects.
    pub async fn get_no_redirect(&self, host: &str, path: &str) -> reqwest::Response {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(host, self.addr)
            .build()
            .expect("build http client");
        client.get(self.url(host, path)).send().await.expect("request failed")
    }

    /// What whoami (mounted wherever `path` leads) reports for a request.
    pub async fn whoami(&self, host: &str, path: &str) -> serde_json::Value {
        let response = self.get(host, path).await;
        assert_eq!(response.status(), 200, "whoami at {host}{path}");
        response.json().await.expect("whoami answers JSON")
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

    /// Replaces the config file (keeping the preamble), as an operator
    /// would before SIGHUP.
    pub fn rewrite_config(&self, config: &str) {
        let text = format!("{}{config}", preamble(self.dir.path(), config));
        std::fs::write(self.dir.path().join("prosody.cfg.lua"), text).expect("rewrite config");
    }

    /// Installs `source` as `mod_<name>.wasm` atomically (write, then
    /// rename over), as a deploy would.
    pub fn install_module(&self, name: &str, source: &[u8]) {
        let staging = self.dir.path().join(format!(".{name}.wasm.tmp"));
        std::fs::write(&staging, source).expect("write module");
        std::fs::rename(&staging, self.plugin_dir().join(format!("mod_{name}.wasm"))).expect("rename module");
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

/// Waits until more than `seen` log lines contain every one of `needles`
/// (a second occurrence of a line already logged), or panics.
pub async fn wait_for_another_log(needles: &[&str], seen: usize) {
    for _ in 0..200 {
        if log_lines_with(needles).len() > seen {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no new log line contains all of {needles:?}");
}

/// A helper process started in a process group of its own, so that it and
/// everything it starts (nginx's workers, Chromium's helpers, the server
/// `cargo run` starts) stop together. Dropping it stops the group, even
/// when the test failed: `stop_signal` first, then SIGKILL for whatever is
/// left after a grace period; the leader is always reaped.
pub struct ProcessGroup {
    child: std::process::Child,
    stop_signal: rustix::process::Signal,
    stopped: bool,
}

impl ProcessGroup {
    /// Starts `command` as the leader of a new process group.
    pub fn spawn(
        mut command: std::process::Command,
        stop_signal: rustix::process::Signal,
    ) -> std::io::Result<ProcessGroup> {
        use std::os::unix::process::CommandExt;
        let child = command.process_group(0).spawn()?;
        Ok(ProcessGroup { child, stop_signal, stopped: false })
    }

    pub fn child(&mut self) -> &mut std::process::Child {
        &mut self.child
    }

    /// Signals the whole group with `stop_signal`, waits up to `grace` for
    /// the leader, then kills whatever is left of the group. Idempotent.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        use rustix::process::{Pid, Signal, kill_process_group};
        if self.stopped {
            return self.child.try_wait().ok().flatten();
        }
        self.stopped = true;
        let group = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw);
        if let Some(group) = group {
            let _ = kill_process_group(group, self.stop_signal);
        }
        let deadline = std::time::Instant::now() + grace;
        let mut status = None;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(exited)) = self.child.try_wait() {
                status = Some(exited);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Members that outlived the leader keep the group (and its id) alive.
        if let Some(group) = group {
            let _ = kill_process_group(group, Signal::KILL);
        }
        status.or_else(|| self.child.wait().ok())
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Waits until something accepts connections on `addr`, or `attempts` ×
/// 50 ms have passed; whether it did.
async fn wait_for_port(addr: SocketAddr, attempts: u32) -> bool {
    for _ in 0..attempts {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Starts `command` (output discarded) in a process group of its own,
/// stopped with SIGTERM, and waits until it listens on `addr`; if it does
/// not, stops it and fails with the log it left at `log`.
async fn start_listening(
    mut command: std::process::Command,
    what: &str,
    addr: SocketAddr,
    log: &std::path::Path,
) -> ProcessGroup {
    command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let process = ProcessGroup::spawn(command, rustix::process::Signal::TERM)
        .unwrap_or_else(|error| panic!("cannot run {what}: {error}"));
    if wait_for_port(addr, 200).await {
        return process;
    }
    drop(process);
    let log = std::fs::read_to_string(log).unwrap_or_default();
    panic!("{what} did not start listening on {addr}:\n{log}");
}

/// A free loopback port, for helpers that cannot be told to pick one.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// What every Prosody the tests start begins its config with: run in the
/// foreground from `root`, on loopback, with an HTTP port and (if given) a
/// client port, and no other port.
fn prosody_preamble(root: &std::path::Path, c2s_port: Option<u16>, http_port: u16) -> String {
    let root = root.display();
    let c2s = c2s_port.map(|port| port.to_string()).unwrap_or_default();
    format!(
        r#"run_as_root = true
daemonize = false
pidfile = "{root}/prosody.pid"
data_path = "{root}"
certificates = "{root}"
log = {{ info = "{root}/prosody.log" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}; s2s_ports = {{}}; c2s_direct_tls_ports = {{}}; s2s_direct_tls_ports = {{}}
component_ports = {{}}; legacy_ssl_ports = {{}}; https_ports = {{}}
http_ports = {{ {http_port} }}
http_interfaces = {{ "127.0.0.1" }}
"#
    )
}

/// Real Prosody 0.12 (Debian's package) on a free loopback port, to check
/// that canto matches it where it means to. Killed on drop.
pub struct ProsodyServer {
    pub addr: SocketAddr,
    _process: ProcessGroup,
    _dir: tempfile::TempDir,
}

impl ProsodyServer {
    /// Starts `prosody -F` with `config` after a preamble that keeps it on
    /// one loopback HTTP port and off every XMPP port.
    pub async fn start(config: &str) -> ProsodyServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let preamble = prosody_preamble(dir.path(), None, port);
        let path = dir.path().join("prosody.cfg.lua");
        std::fs::write(&path, format!("{preamble}{config}")).expect("write prosody config");
        let mut command = std::process::Command::new("prosody");
        command.arg("--config").arg(&path).arg("-F");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let what = "prosody (Debian's prosody package; scripts/test installs it)";
        let process = start_listening(command, what, addr, &dir.path().join("prosody.log")).await;
        ProsodyServer { addr, _process: process, _dir: dir }
    }
}

/// Debian's Prosody 0.12 as an XMPP server for one domain, with users
/// `alice` and `bob` (password `secret`), and `anon.<domain>` for
/// anonymous logins: its client port (plain, as on a
/// loopback port behind a bridge) and its own HTTP port serving
/// mod_websocket and mod_bosh, to compare canto's transports with.
pub struct XmppServer {
    pub c2s: SocketAddr,
    pub http: SocketAddr,
    process: ProcessGroup,
    _dir: tempfile::TempDir,
}

impl XmppServer {
    pub async fn start(domain: &str) -> XmppServer {
        Self::start_with(domain, "").await
    }

    /// With `extra` appended to its config (a Component, say).
    pub async fn start_with(domain: &str, extra: &str) -> XmppServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let (c2s_port, http_port) = (free_port(), free_port());
        let config = format!(
            r#"{}
-- What an XMPP server behind a bridge on loopback needs (see the README).
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
consider_websocket_secure = true
consider_bosh_secure = true
authentication = "internal_hashed"
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "presence"; "websocket"; "bosh" }}
VirtualHost "{domain}"
-- Guests log in without an account, for tests with many sessions.
VirtualHost "anon.{domain}"
    authentication = "anonymous"
{extra}
"#,
            prosody_preamble(dir.path(), Some(c2s_port), http_port)
        );
        let path = dir.path().join("prosody.cfg.lua");
        std::fs::write(&path, config).expect("write prosody config");
        for user in ["alice", "bob"] {
            let registered = std::process::Command::new("prosodyctl")
                .arg("--config")
                .arg(&path)
                .args(["register", user, domain, "secret"])
                .output()
                .expect("prosodyctl (Debian's prosody package; scripts/test installs it)");
            assert!(registered.status.success(), "prosodyctl register {user}: {registered:?}");
        }
        let mut command = std::process::Command::new("prosody");
        command.arg("--config").arg(&path).arg("-F");
        let c2s: SocketAddr = ([127, 0, 0, 1], c2s_port).into();
        let log = dir.path().join("prosody.log");
        let process = start_listening(command, "prosody", c2s, &log).await;
        let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
        assert!(wait_for_port(http, 200).await, "prosody's HTTP port");
        XmppServer { c2s, http, process, _dir: dir }
    }

    /// Stops it (SIGTERM: it closes its streams first, as in production).
    pub fn stop(&mut self) {
        self.process.stop(Duration::from_secs(10));
    }
}

/// Runs `tests/clients/<script>` with Node (the client libraries installed
/// from `tests/clients/package-lock.json` once per test run, under
/// `target/`) and returns the JSON object it prints last.
pub async fn node_client(script: &str, args: &[&str]) -> serde_json::Value {
    let mut command = tokio::process::Command::new("node");
    command.arg("--experimental-websocket").arg(node_clients().join(script)).args(args);
    client_json(command, script, "node (scripts/test installs npm and Node)").await
}

/// Runs a test client to its end and returns the JSON object it prints
/// last; `missing` says what to install when the program is not there.
pub async fn client_json(mut command: tokio::process::Command, name: &str, missing: &str) -> serde_json::Value {
    let output = command.kill_on_drop(true).output().await.expect(missing);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().rev().find(|line| line.starts_with('{')).unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|_| panic!("{name} printed no JSON: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)))
}

/// `tests/clients` copied under `target/` with its packages installed
/// (`npm ci`), once per test process.
pub fn node_clients() -> PathBuf {
    static INSTALLED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients");
            let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-clients");
            std::fs::create_dir_all(&target).expect("create target/test-clients");
            for entry in std::fs::read_dir(&source).expect("tests/clients") {
                let entry = entry.expect("tests/clients entry");
                std::fs::copy(entry.path(), target.join(entry.file_name())).expect("copy a test client");
            }
            // Installed again whenever the lock file changed since.
            let lock = std::fs::read(target.join("package-lock.json")).expect("package-lock.json");
            let stamp = target.join("node_modules/.installed-from-lock");
            if std::fs::read(&stamp).ok().as_ref() != Some(&lock) {
                let installed = std::process::Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&target)
                    .status()
                    .expect("npm");
                assert!(installed.success(), "npm ci in target/test-clients failed");
                std::fs::write(&stamp, &lock).expect("write the install stamp");
            }
            target
        })
        .clone()
}

/// Sends one raw HTTP/1.x request and returns the status code and the
/// response head's headers (names lowercased).
pub async fn raw_status(addr: SocketAddr, request: &str) -> (u16, Vec<(String, String)>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send request");
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

/// nginx (Debian's package) on a free loopback port, proxying to a canto
/// server exactly as the seed document's example does, over plain http and
/// over https with a throwaway self-signed certificate. Stopped on drop.
pub struct NginxProxy {
    pub http: SocketAddr,
    pub https: SocketAddr,
    _process: ProcessGroup,
    _dir: tempfile::TempDir,
}

impl NginxProxy {
    pub async fn start(upstream: SocketAddr, host_header: &str) -> NginxProxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().display().to_string();
        let (http_port, https_port) = (free_port(), free_port());
        let made_cert = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
            .args(["-keyout", &format!("{root}/key.pem"), "-out", &format!("{root}/cert.pem")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run openssl");
        assert!(made_cert.success(), "openssl could not make a certificate");
        let config = format!(
            r#"user root;
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {root}/body; proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi; uwsgi_temp_path {root}/uwsgi; scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{http_port};
        listen 127.0.0.1:{https_port} ssl;
        ssl_certificate {root}/cert.pem;
        ssl_certificate_key {root}/key.pem;
        location / {{
            proxy_pass  http://{upstream};
            proxy_set_header Host "{host_header}";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            tcp_nodelay on;
        }}
    }}
}}
"#
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, config).expect("write nginx config");
        let mut command = std::process::Command::new("nginx");
        command.arg("-c").arg(&path);
        let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
        let https: SocketAddr = ([127, 0, 0, 1], https_port).into();
        // SIGTERM is nginx's fast shutdown: the master stops its workers
        // and exits; anything left is killed with the group.
        let what = "nginx (Debian's nginx package; scripts/test installs it)";
        let process = start_listening(command, what, https, &dir.path().join("error.log")).await;
        NginxProxy { http, https, _process: process, _dir: dir }
    }
}

/// Fetches `url` with curl from the loopback address `from` (so the proxy
/// sees a client other than itself) and parses the JSON answer.
pub fn curl_json(from: &str, url: &str) -> serde_json::Value {
    let output = std::process::Command::new("curl")
        .args(["-sk", "--max-time", "20", "--interface", from, url])
        .output()
        .expect("run curl");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{url} answered {:?}: {e}", String::from_utf8_lossy(&output.stdout)))
}

/// Serves `html` for every request on a fresh loopback port: the origin a
/// browser test's page comes from. Runs until the test's runtime ends.
pub async fn serve_page(html: String) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind page server");
    let addr = listener.local_addr().expect("page server address");
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
        html.len()
    );
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let read = stream.read(&mut buf).await.unwrap_or(0);
                if buf[..read].starts_with(b"GET /hold") {
                    // Headless Chromium's virtual time stands still while a
                    // request is pending: a page waiting on something that
                    // is not a request (a WebSocket) fetches this again and
                    // again until it is done, so the DOM is not dumped before.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

/// Loads `url` in headless Chromium (Debian's package; scripts/test
/// installs it), lets its scripts run, and returns the resulting DOM.
pub fn chromium_dom(url: &str) -> String {
    use std::io::Read;
    let profile = tempfile::tempdir().expect("browser profile dir");
    let mut command = std::process::Command::new("chromium");
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=15000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut browser = ProcessGroup::spawn(command, rustix::process::Signal::TERM).expect("run chromium");
    let mut dom = String::new();
    if let Some(mut stdout) = browser.child().stdout.take() {
        let _ = stdout.read_to_string(&mut dom);
    }
    // The browser has exited (its stdout closed); its helpers go with the group.
    browser.stop(Duration::from_secs(10));
    dom
}
