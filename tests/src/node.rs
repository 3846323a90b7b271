//! canto as a separate process, for what one process cannot show: several
//! nodes sharing a store, a node killed mid-load. The binary is the one
//! `cargo test --workspace` built beside this test (the runtime's own tests
//! need it).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::ProcessGroup;

/// `target/<profile>/canto`, next to the `deps/` this test runs from.
pub fn canto_binary() -> PathBuf {
    let test = std::env::current_exe().expect("path of the running test");
    let profile_dir = test.parent().and_then(Path::parent).expect("tests run from target/<profile>/deps");
    let binary = profile_dir.join("canto");
    assert!(binary.exists(), "{} is missing: run the tests with `cargo test --workspace`", binary.display());
    binary
}

/// A canto process serving `config`; its log goes to `log` in its
/// directory. Stopped (SIGTERM, then SIGKILL) and reaped when dropped.
pub struct CantoNode {
    pub addr: SocketAddr,
    process: ProcessGroup,
    pub log: PathBuf,
}

impl CantoNode {
    /// Writes `config` (after an http port of 0 on 127.0.0.1, no https, and
    /// the plugin directory `plugins`) into `dir` and starts canto on it;
    /// returns once it listens.
    pub async fn start(dir: &Path, name: &str, config: &str, plugins: &Path) -> CantoNode {
        let config_path = dir.join(format!("{name}.cfg.lua"));
        let text = format!(
            "http_ports = {{ 0 }}\nhttp_interfaces = {{ \"127.0.0.1\" }}\nhttps_ports = {{ }}\nplugin_paths = {{ {:?} }}\n{config}",
            plugins.display().to_string()
        );
        std::fs::write(&config_path, text).expect("write node config");
        let log = dir.join(format!("{name}.log"));
        let mut command = Command::new(canto_binary());
        command.arg("--config").arg(&config_path).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut process = ProcessGroup::spawn(command, rustix::process::Signal::TERM).expect("start canto");
        let stderr = process.child().stderr.take().expect("piped stderr");
        let (found, listening) = tokio::sync::oneshot::channel();
        let log_path = log.clone();
        // Reads the log until the server says where it listens, then keeps
        // copying it to the file so the server never blocks on the pipe.
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(&log_path).expect("create node log");
            let mut found = Some(found);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                use std::io::Write;
                let _ = writeln!(file, "{line}");
                if let Some(rest) = line.split("listening on http://").nth(1)
                    && let Some(found) = found.take()
                {
                    let _ = found.send(rest.trim().to_string());
                }
            }
        });
        let addr = match tokio::time::timeout(Duration::from_secs(30), listening).await {
            Ok(Ok(addr)) => addr.parse().expect("listening address"),
            _ => panic!("canto node {name} did not start: {}", std::fs::read_to_string(&log).unwrap_or_default()),
        };
        CantoNode { addr, process, log }
    }

    /// Kills it at once (SIGKILL), as a crashed machine would stop.
    pub fn kill(&mut self) {
        let _ = self.process.child().kill();
        self.process.stop(Duration::from_secs(5));
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
