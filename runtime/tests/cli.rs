//! The `canto` binary itself: `check config`, exit codes, and shutdown on
//! SIGTERM. Everything else is tested in-process by the `tests/` crate.

#![expect(clippy::unwrap_used, reason = "test set-up unwraps; a failure is a test failure")]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn canto() -> Command {
    Command::new(env!("CARGO_BIN_EXE_canto"))
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".cfg.lua").tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[test]
fn check_config_reports_warnings_and_what_would_be_served() {
    let config = config_file("http_port = 1\nVirtualHost \"a.test\"\n  modules_enabled = { \"http_whoami\" }\n");
    let output = canto().args(["check", "config", "--config"]).arg(config.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains(":1:13: unknown option 'http_port' (did you mean 'http_ports'?)"), "{stdout}");
    assert!(stdout.contains("VirtualHost \"a.test\""), "{stdout}");
    assert!(stdout.contains("http_whoami          http://a.test:5280/whoami/"), "{stdout}");
    assert!(stdout.ends_with("config OK\n"), "{stdout}");
}

#[test]
fn check_config_fails_on_errors_with_their_location() {
    let config = config_file("http_ports = { \"eighty\" }\n");
    let output = canto().args(["check", "config", "-c"]).arg(config.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(78), "{stdout}");
    assert!(stdout.contains(":1:16: http_ports: expected a port number, found a string"), "{stdout}");
}

#[test]
fn the_server_refuses_a_bad_config_before_serving() {
    let config = config_file("VirtualHost \"a\"\n  modules_enabled = { \"http_missing\" }\n");
    let output = canto().arg("--config").arg(config.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains(":2:23: module 'http_missing' not found"), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    let config = config_file("http_ports = { 0 }\nhttp_interfaces = { \"127.0.0.1\" }\nVirtualHost \"localhost\"\n");
    let mut child = canto().arg("--config").arg(config.path()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert!(Instant::now() < deadline, "server did not start");
        assert!(stderr.read_line(&mut line).unwrap() > 0, "server exited early");
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("shutdown complete"), "{rest}");
}
