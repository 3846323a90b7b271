//! Third-party daemons the store tests run canto against: Redis (a shared
//! store several nodes use) and HAProxy (a load balancer in front of
//! several nodes). Each runs in a process group of its own, on a free
//! loopback port, with its output in a log file in its own directory, and
//! is stopped and reaped when dropped, even when the test failed.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{ProcessGroup, free_port};

/// Starts `command` in a process group of its own, stopped with SIGTERM,
/// with its stdout and stderr appended to `log`, and waits until it
/// listens on `addr`. If it exits first, or does not listen within 10 s,
/// stops it and fails with that log.
async fn start_logged(mut command: Command, what: &str, addr: SocketAddr, log: &Path) -> ProcessGroup {
    let stdout = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("open a daemon's log file");
    let stderr = stdout.try_clone().expect("duplicate a daemon's log file handle");
    command.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
    let mut process = ProcessGroup::spawn(command, rustix::process::Signal::TERM)
        .unwrap_or_else(|error| panic!("cannot run {what}: {error}"));
    let mut exited = None;
    for _ in 0..200 {
        if let Ok(Some(status)) = process.child().try_wait() {
            exited = Some(status);
            break;
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return process;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(process);
    let log = std::fs::read_to_string(log).unwrap_or_default();
    match exited {
        Some(status) => panic!("{what} exited ({status}) before listening on {addr}:\n{log}"),
        None => panic!("{what} did not start listening on {addr}:\n{log}"),
    }
}

/// `/usr/sbin/<name>` when it is there (not every user's PATH has
/// `/usr/sbin`), else `<name>` from PATH.
fn system_program(name: &str) -> Command {
    let sbin = Path::new("/usr/sbin").join(name);
    Command::new(if sbin.exists() { sbin.into_os_string() } else { name.into() })
}

/// Redis 7.0 (Debian's redis-server package; scripts/test installs it) on a
/// free loopback port, in memory only: no snapshots, no append-only file,
/// so a restart starts empty. Its log is `redis.log` in its directory
/// ([`RedisServer::log`]). Stopped and reaped on drop.
pub struct RedisServer {
    port: u16,
    /// None while stopped; declared before `dir`, so it stops first.
    process: Option<ProcessGroup>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts redis-server on a free loopback port (never 6379, so never a
    /// system instance's) and waits until it accepts connections.
    pub async fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut redis = RedisServer { port: free_port(), process: None, dir };
        redis.launch().await;
        redis
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// `redis://127.0.0.1:<port>/0`, as a store's `url`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Everything it has logged so far, for a failing assertion's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Stops it (SIGTERM; SIGKILL after 10 s) and reaps it: when this
    /// returns, the process is gone and its port refuses connections, as
    /// when a store's server goes away. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(Duration::from_secs(10));
        }
        assert!(
            std::net::TcpStream::connect(self.addr()).is_err(),
            "port {} still accepts connections after redis-server was stopped",
            self.port
        );
    }

    /// Starts it again on the same port (stopping it first if it runs) and
    /// waits until it accepts connections. It starts empty: nothing is
    /// persisted.
    pub async fn restart(&mut self) {
        self.stop();
        self.launch().await;
    }

    async fn launch(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            // "": to stdout, which goes to the log file.
            .args(["--logfile", ""]);
        let what = "redis-server (Debian's redis-server package; scripts/test installs it)";
        let log = self.dir.path().join("redis.log");
        self.process = Some(start_logged(command, what, self.addr(), &log).await);
    }
}

/// The most connections HAProxy is configured for: 20,000, or fewer where
/// the file descriptor limit it may raise itself to (the hard limit; it
/// refuses to start when `maxconn` needs more) cannot hold two descriptors
/// per connection plus its own listeners and checks.
fn haproxy_maxconn() -> u64 {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum.unwrap_or(u64::MAX);
    20_000.min(limit.saturating_sub(256) / 2)
}

/// HAProxy 2.6 (Debian's haproxy package; scripts/test installs it) on a
/// free loopback port, balancing HTTP round robin over `backends` (canto
/// nodes) and health-checking each every 500 ms, so a node that dies is
/// taken out of rotation within about a second. Runs in the foreground;
/// what it prints (config warnings, servers going DOWN and UP) goes to
/// `haproxy.log` in its directory ([`Haproxy::log`]). Stopped (SIGTERM, its
/// immediate stop) and reaped on drop.
pub struct Haproxy {
    addr: SocketAddr,
    _process: ProcessGroup,
    dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts HAProxy in front of `backends` (IPv4 addresses), checking
    /// each with `GET <health_path>` and `Host: <health_host>` (up when it
    /// answers 200). Fails with HAProxy's own words if it rejects the
    /// config (`haproxy -c`); returns once the frontend accepts connections.
    pub async fn start(backends: &[SocketAddr], health_host: &str, health_path: &str) -> Haproxy {
        assert!(!backends.is_empty(), "HAProxy needs at least one backend");
        for word in [health_host, health_path] {
            assert!(!word.is_empty() && !word.contains(char::is_whitespace), "not one config word: {word:?}");
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let maxconn = haproxy_maxconn();
        let servers: String =
            backends.iter().enumerate().map(|(i, backend)| format!("    server node{i} {backend}\n")).collect();
        // Retries: only a connection that fails (refused: the node is dead
        // but not yet marked DOWN) is tried again, up to 3 times, each
        // time on another server ("redispatch 1": on every retry, not only
        // the last, without the 1 s pause a retry to the same server
        // takes). That request never reached a node, so resending it is
        // safe. `empty-response` or `response-timeout` would resend a POST
        // a node may already have acted on: with them a node killed
        // mid-load counted increments twice (10,118 of 10,000). The client
        // sees an error for those instead; the tests count only the
        // increments that were acknowledged.
        //
        // Health checks time out after 2 s rather than `inter` (500 ms),
        // so that a node slow under load is not taken for a dead one; a
        // dead node refuses the check at once and is DOWN after two
        // checks ("fall 2").
        let config = format!(
            r#"global
    maxconn {maxconn}

defaults
    mode http
    maxconn {maxconn}
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 2s
    retries 3
    option redispatch 1
    retry-on conn-failure

frontend canto
    bind {addr}
    default_backend nodes

backend nodes
    balance roundrobin
    option httpchk
    http-check send meth GET uri {health_path} ver HTTP/1.1 hdr Host {health_host}
    http-check expect status 200
    default-server check inter 500ms fall 2 rise 1
{servers}"#
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, &config).expect("write haproxy config");
        let what = "haproxy (Debian's haproxy package; scripts/test installs it)";
        let checked = system_program("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap_or_else(|error| panic!("cannot run {what}: {error}"));
        assert!(
            checked.status.success(),
            "haproxy rejected its config:\n{}{}\n{config}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
        // -db: in the foreground, not a daemon, not master-worker.
        let mut command = system_program("haproxy");
        command.arg("-f").arg(&path).arg("-db");
        let process = start_logged(command, what, addr, &dir.path().join("haproxy.log")).await;
        Haproxy { addr, _process: process, dir }
    }

    /// The frontend, where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything it has printed so far, for a failing assertion's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}
