//! Builds the guest-modules workspace for wasm32-wasip2 and generates
//! constants naming each module (see `src/lib.rs`).
//!
//! The nested cargo uses its own target directory so it never waits on the
//! outer build's lock, and the environment the outer cargo sets for build
//! scripts is cleared so host flags do not leak into the wasm build.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Guests the server ships built in (embedded in the binary): (the module
/// name configs use, the guest it is). The demo modules, and Prosody's XMPP
/// transports under Prosody's names.
const BUILT_IN: &[(&str, &str)] = &[
    ("http_hello", "http_hello"),
    ("http_whoami", "http_whoami"),
    ("http_echo", "http_echo"),
    ("websocket", "http_xmpp_websocket"),
    ("bosh", "http_xmpp_bosh"),
    ("http_file_share", "http_file_share"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let guests_dir = manifest_dir.parent().expect("artifacts lives in guest-modules/");
    let repo_root = guests_dir.parent().expect("guest-modules lives in the repository root");
    let target_dir = repo_root.join("target").join("guests");

    println!("cargo:rerun-if-changed={}", guests_dir.display());
    println!("cargo:rerun-if-changed={}", repo_root.join("wit").display());
    println!("cargo:rerun-if-changed={}", repo_root.join("rust-toolchain.toml").display());

    let members = workspace_members(guests_dir);
    build_guests(guests_dir, &target_dir);

    let wasm_dir = target_dir.join("wasm32-wasip2").join("release");
    let mut generated = Vec::new();
    let mut all = Vec::new();
    for name in &members {
        let path = wasm_dir.join(format!("{name}.wasm"));
        assert!(path.exists(), "guest {name} did not produce {}", path.display());
        let constant = name.to_uppercase();
        generated.push(format!("/// `{name}.wasm`, built from `guest-modules/`."));
        generated.push(format!("pub const {constant}: &str = {:?};", path.display().to_string()));
        all.push(format!("({name:?}, {constant})"));
    }
    generated.push("/// Every guest module: (module name, path to its .wasm).".into());
    generated.push(format!("pub const ALL: &[(&str, &str)] = &[{}];", all.join(", ")));
    let built_in: Vec<String> = BUILT_IN
        .iter()
        .map(|(name, guest)| {
            let path = wasm_dir.join(format!("{guest}.wasm"));
            format!("({name:?}, include_bytes!({:?}) as &[u8])", path.display().to_string())
        })
        .collect();
    generated
        .push("/// The modules built into the server (the demo modules the built-in default config serves,".into());
    generated.push("/// and Prosody's XMPP transports): (module name, component bytes).".into());
    generated.push(format!("pub const BUILT_IN: &[(&str, &[u8])] = &[{}];", built_in.join(", ")));
    let generated = generated.join("\n") + "\n";

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("guests.rs");
    fs::write(out, generated).expect("write generated guest list");
}

/// Members that are libraries the guests share, not guests.
const LIBRARIES: &[&str] = &["sdk", "xmpp_stream", "http_serving"];

/// Names of the cdylib guests: every member except the shared libraries.
fn workspace_members(guests_dir: &Path) -> Vec<String> {
    let manifest = fs::read_to_string(guests_dir.join("Cargo.toml")).expect("read guest-modules/Cargo.toml");
    let members_line = manifest
        .lines()
        .find(|line| line.trim_start().starts_with("members"))
        .expect("guest-modules/Cargo.toml lists its members on one line");
    members_line
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|member| !LIBRARIES.contains(member))
        .map(|member| format!("http_{member}"))
        .collect()
}

/// Installs the wasm32-wasip2 target if this toolchain lacks it: on a
/// machine where rustup does not auto-install what rust-toolchain.toml
/// lists, this keeps `cargo run` and the tests one command each.
fn ensure_wasm_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc).args(["--print", "sysroot"]).output().ok();
    let sysroot = sysroot.map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string()).unwrap_or_default();
    if Path::new(&sysroot).join("lib/rustlib/wasm32-wasip2").is_dir() {
        return;
    }
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", "wasm32-wasip2"]);
    if let Ok(toolchain) = env::var("RUSTUP_TOOLCHAIN") {
        rustup.args(["--toolchain", &toolchain]);
    }
    let installed = rustup.status().is_ok_and(|status| status.success());
    assert!(installed, "the wasm32-wasip2 target is missing and `rustup target add wasm32-wasip2` failed");
}

fn build_guests(guests_dir: &Path, target_dir: &Path) {
    ensure_wasm_target();
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(guests_dir)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(target_dir);
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let outer_only = key.starts_with("CARGO_")
            || key.starts_with("RUSTC")
            || key == "RUSTFLAGS"
            || key == "RUSTDOCFLAGS"
            || key == "TARGET"
            || key == "HOST"
            || key == "OUT_DIR"
            || key == "OPT_LEVEL"
            || key == "PROFILE"
            || key == "DEBUG"
            || key == "NUM_JOBS";
        // Keep the jobserver so the nested build shares the outer -j limit.
        if outer_only && key != "CARGO_MAKEFLAGS" && key != "CARGO_HOME" {
            command.env_remove(key);
        }
    }
    let status = command.status().expect("run cargo to build guest modules");
    assert!(status.success(), "building guest-modules for wasm32-wasip2 failed");
}
