//! The README's run command, exactly as the README writes it, on a fresh
//! port 5280: it must serve the demo answers the README shows. An edit to
//! the README that breaks the command, or the answers, fails here.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use canto_tests::ProcessGroup;

use super::*;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the repository").to_path_buf()
}

/// The first `sh` block under "## The two commands": its first line is
/// the run command, its `curl` lines the demo (command, comment).
fn run_block(readme: &str) -> (String, Vec<(String, String)>) {
    let section = readme.split("\n## The two commands\n").nth(1).expect("README has '## The two commands'");
    let block = section.split("```sh\n").nth(1).and_then(|b| b.split("\n```").next()).expect("an sh block");
    let mut lines = block.lines().filter(|line| !line.trim().is_empty());
    let run = lines.next().expect("the run command").trim().to_string();
    let demo = lines
        .filter(|line| line.starts_with("curl "))
        .map(|line| match line.split_once(" # ") {
            Some((command, comment)) => (command.trim().to_string(), comment.trim().to_string()),
            None => (line.trim().to_string(), String::new()),
        })
        .collect();
    (run, demo)
}

/// A shell as a user's would be: without what `cargo test` sets for
/// the test process.
fn user_shell(line: &str) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(line).current_dir(repository());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        let from_cargo = name == "CARGO"
            || name == "OUT_DIR"
            || (name.starts_with("CARGO_") && name != "CARGO_HOME" && !name.starts_with("CARGO_TARGET_DIR"))
            || name.starts_with("RUST_TEST");
        if from_cargo {
            command.env_remove(&name);
        }
    }
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_run_command_serves_the_demo_it_shows() {
    let readme = std::fs::read_to_string(repository().join("README.md")).expect("read README.md");
    let (run, demo) = run_block(&readme);
    assert_eq!(demo.len(), 3, "the README shows three demo requests: {demo:?}");

    // Something else on 5280 would answer in the server's place.
    for busy in ["127.0.0.1:5280", "[::1]:5280"] {
        assert!(TcpStream::connect(busy).await.is_err(), "{busy} is taken: stop what listens there first");
    }
    let output = tempfile::NamedTempFile::new().unwrap();
    let mut command = user_shell(&run);
    command.stdin(Stdio::null()).stdout(output.reopen().unwrap()).stderr(output.reopen().unwrap());
    // SIGINT to the group, as Ctrl-C in the terminal does.
    let mut server = ProcessGroup::spawn(command, rustix::process::Signal::INT).expect("run the README command");
    let log = || std::fs::read_to_string(output.path()).unwrap_or_default();

    // It may have to build first (on a fresh clone it does).
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(900);
    loop {
        if let Ok(response) = client.get("http://localhost:5280/hello/").send().await
            && response.status() == 200
        {
            break;
        }
        if let Ok(Some(status)) = server.child().try_wait() {
            panic!("`{run}` exited ({status}) before serving:\n{}", log());
        }
        assert!(std::time::Instant::now() < deadline, "`{run}` never served /hello/:\n{}", log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    if log().contains("Compiling wasmtime ") {
        // Not a failure: scripts/test builds the release server before the
        // tests, so only a `cargo test` run on its own gets here.
        eprintln!("warning: `{run}` built wasmtime: run scripts/test, which builds it first");
    }
    for (line, comment) in &demo {
        let answer = tokio::task::spawn_blocking({
            let line = line.clone();
            move || user_shell(&line).output().expect("run curl")
        })
        .await
        .unwrap();
        assert!(answer.status.success(), "`{line}` failed: {}", String::from_utf8_lossy(&answer.stderr));
        let body = String::from_utf8_lossy(&answer.stdout).into_owned();
        if line.contains("/hello/") {
            assert_eq!(body.trim(), comment, "`{line}` answers what its comment says");
        } else if line.contains("/whoami/") {
            let who: serde_json::Value = serde_json::from_str(&body).expect("whoami answers JSON");
            assert_eq!((who["host"].as_str(), who["path"].as_str()), (Some("localhost"), Some("/whoami/")));
        } else if line.contains("/echo/") {
            let file = line.split('@').nth(1).and_then(|rest| rest.split_whitespace().next()).expect("@file");
            let sent = std::fs::read_to_string(repository().join(file)).unwrap();
            assert!(body == sent, "`{line}` did not stream {file} back ({} bytes of {})", body.len(), sent.len());
        } else {
            panic!("a demo line the test does not know: {line}");
        }
    }

    let status = tokio::task::spawn_blocking(move || server.stop(Duration::from_secs(30))).await.unwrap();
    let log = log();
    assert!(log.contains("shutdown complete"), "Ctrl-C stops the server gracefully:\n{log}");
    assert!(status.is_some(), "{log}");
}
