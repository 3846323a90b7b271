//! Builds the Python, JavaScript and C modules from source into
//! `target/languages/out`, with pinned tools kept in `target/languages`:
//!
//! - Python: componentize-py (PyPI) in a virtualenv;
//! - JavaScript: componentize-js (npm), versions fixed by `js/package-lock.json`;
//! - C: wit-bindgen's C generator (a build dependency), clang with a wasm32
//!   target and wasi-libc (Debian: clang-19 lld-19 wasi-libc
//!   libclang-rt-19-dev-wasm32), wrapped into a component by wit-component.
//!
//! The three languages build in parallel. One that fails is reported (a
//! cargo warning, and `PROBLEMS` for the tests) instead of failing the
//! whole workspace build.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// (module stem, world, source directory): each language builds both.
const MODULES: &[(&str, &str, &str)] =
    &[("whoami", "canto:http/module", "whoami"), ("options", "canto:http/module-with-metadata", "options")];

/// Modules built in Python only: (module stem, world, source directory).
const PYTHON_ONLY: &[(&str, &str, &str)] =
    &[("ws_echo", "canto:http/websocket-module", "ws_echo"), ("counter", "canto:http/module", "counter")];

type Built = Result<Vec<(String, PathBuf)>, String>;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let repo_root = manifest_dir.parent().and_then(Path::parent).expect("lives in guest-modules/languages");
    let wit = repo_root.join("wit");
    let work = repo_root.join("target").join("languages");
    let out = work.join("out");
    fs::create_dir_all(&out).expect("create target/languages/out");
    for watched in ["python", "js/whoami", "js/options", "js/package-lock.json", "c"] {
        println!("cargo:rerun-if-changed={}", manifest_dir.join(watched).display());
    }
    println!("cargo:rerun-if-changed={}", wit.display());
    println!("cargo:rerun-if-env-changed=CANTO_WASM_CC");
    println!("cargo:rerun-if-env-changed=PATH");

    let (python, javascript, c) = std::thread::scope(|scope| {
        let python = scope.spawn(|| build_python(&manifest_dir.join("python"), &wit, &work, &out));
        let javascript = scope.spawn(|| build_javascript(&manifest_dir.join("js"), &wit, &work, &out));
        let c = scope.spawn(|| build_c(&manifest_dir.join("c"), &wit, &work, &out));
        let join = |handle: std::thread::ScopedJoinHandle<'_, Built>| {
            handle.join().unwrap_or_else(|_| Err("the build thread panicked".into()))
        };
        (join(python), join(javascript), join(c))
    });

    let mut modules = Vec::new();
    let mut problems = Vec::new();
    for (language, built) in [("python", python), ("javascript", javascript), ("c", c)] {
        match built {
            Ok(list) => {
                for (name, path) in list {
                    modules.push(format!(
                        "LanguageModule {{ language: {language:?}, name: {name:?}, path: {:?} }}",
                        path.display().to_string()
                    ));
                }
            }
            Err(problem) => {
                println!("cargo:warning=canto-language-guests: {language} modules not built: {problem}");
                problems.push(format!("({language:?}, {problem:?})"));
            }
        }
    }
    let generated = format!(
        "/// Every module that built.\npub const MODULES: &[LanguageModule] = &[{}];\n\
         /// Languages that did not build: (language, why).\npub const PROBLEMS: &[(&str, &str)] = &[{}];\n",
        modules.join(", "),
        problems.join(", ")
    );
    let generated_path = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("languages.rs");
    fs::write(generated_path, generated).expect("write generated module list");
}

/// Runs a command; its output becomes the error when it fails.
fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let output = command.output().map_err(|error| format!("cannot run {shown}: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let tail: String = format!("{stdout}{stderr}")
        .lines()
        .rev()
        .take(15)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    Err(format!("{shown} failed ({}):\n{tail}", output.status))
}

fn build_python(sources: &Path, wit: &Path, work: &Path, out: &Path) -> Built {
    let venv = work.join("venv");
    let tool = venv.join("bin").join("componentize-py");
    let pinned = COMPONENTIZE_PY.split("==").nth(1).unwrap_or_default();
    let installed = Command::new(&tool).arg("--version").output().ok();
    let current = installed.is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains(pinned));
    if !current {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(venv.join("bin").join("pip")).args(["install", "-q", COMPONENTIZE_PY]))?;
    }
    let mut built = Vec::new();
    for (stem, world, dir) in MODULES.iter().chain(PYTHON_ONLY) {
        let name = format!("http_{stem}_py");
        let path = out.join(format!("{name}.wasm"));
        // componentize-py's embedded Python writes __pycache__ beside the
        // sources whatever PYTHONDONTWRITEBYTECODE says; a write under
        // guest-modules/ would make the next cargo command rebuild the
        // guests and the server. So it reads a copy under target/.
        let copy = work.join("python-sources").join(dir);
        fs::create_dir_all(&copy).map_err(|e| e.to_string())?;
        fs::copy(sources.join(dir).join("app.py"), copy.join("app.py")).map_err(|e| e.to_string())?;
        run(Command::new(&tool)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-d")
            .arg(wit)
            .args(["-w", world, "componentize", "-p"])
            .arg(&copy)
            .args(["app", "-o"])
            .arg(&path))?;
        built.push((name, path));
    }
    Ok(built)
}

fn build_javascript(sources: &Path, wit: &Path, work: &Path, out: &Path) -> Built {
    // npm installs into a copy of the manifest under target/, keeping the
    // source tree clean; `npm ci` installs exactly what the lock file says.
    let js = work.join("js");
    fs::create_dir_all(&js).map_err(|e| e.to_string())?;
    let lock = fs::read(sources.join("package-lock.json")).map_err(|e| e.to_string())?;
    let tool = js.join("node_modules").join(".bin").join("componentize-js");
    let up_to_date = fs::read(js.join("package-lock.json")).is_ok_and(|copy| copy == lock) && tool.exists();
    if !up_to_date {
        fs::copy(sources.join("package.json"), js.join("package.json")).map_err(|e| e.to_string())?;
        fs::write(js.join("package-lock.json"), &lock).map_err(|e| e.to_string())?;
        run(Command::new("npm").current_dir(&js).args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]))?;
    }
    let mut built = Vec::new();
    for (stem, world, dir) in MODULES {
        let name = format!("http_{stem}_js");
        let path = out.join(format!("{name}.wasm"));
        run(Command::new(&tool)
            .current_dir(&js)
            .arg(sources.join(dir).join("app.js"))
            .arg("--wit")
            .arg(wit)
            .args(["--world-name", world, "-o"])
            .arg(&path))?;
        built.push((name, path));
    }
    Ok(built)
}

fn build_c(sources: &Path, wit: &Path, work: &Path, out: &Path) -> Built {
    let compiler = find_clang()?;
    let mut built = Vec::new();
    for (stem, world, _) in MODULES {
        let generated = work.join("c").join(stem);
        generate_c_bindings(wit, world, &generated)?;
        let core = generated.join(format!("{stem}.core.wasm"));
        run(Command::new(&compiler)
            .args(["--target=wasm32-wasi", "-mexec-model=reactor", "-Os", "-Wall", "-Werror", "-Wno-unused-function"])
            .arg("-I")
            .arg(&generated)
            .arg("-I")
            .arg(sources)
            .arg("-o")
            .arg(&core)
            .arg(sources.join(format!("{stem}.c")))
            .arg(generated.join("canto.c"))
            .arg(generated.join("canto_component_type.o")))?;
        let core_bytes = fs::read(&core).map_err(|e| e.to_string())?;
        let component = wit_component::ComponentEncoder::default()
            .validate(true)
            .module(&core_bytes)
            .and_then(|encoder| encoder.encode())
            .map_err(|error| format!("wrapping {} into a component: {error:#}", core.display()))?;
        let name = format!("http_{stem}_c");
        let path = out.join(format!("{name}.wasm"));
        fs::write(&path, component).map_err(|e| e.to_string())?;
        built.push((name, path));
    }
    Ok(built)
}

/// clang with a wasm32 backend: $CC if set, else the newest clang-N found.
fn find_clang() -> Result<String, String> {
    if let Ok(cc) = env::var("CANTO_WASM_CC") {
        return Ok(cc);
    }
    for candidate in ["clang-19", "clang-18", "clang-17", "clang"] {
        if Command::new(candidate).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return Ok(candidate.to_string());
        }
    }
    Err("no clang found (Debian: apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32)".into())
}

/// `wit-bindgen c --world <world> --rename-world canto`: canto.c, canto.h
/// and canto_component_type.o in `dir`.
fn generate_c_bindings(wit: &Path, world: &str, dir: &Path) -> Result<(), String> {
    use wit_bindgen_core::wit_parser::Resolve;
    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_path(wit).map_err(|error| format!("reading {}: {error:#}", wit.display()))?;
    let world = resolve.select_world(&[package], Some(world)).map_err(|error| format!("{error:#}"))?;
    let options = wit_bindgen_c::Opts { rename_world: Some("canto".into()), ..Default::default() };
    let mut files = wit_bindgen_core::Files::default();
    options.build().generate(&mut resolve, world, &mut files).map_err(|error| format!("{error:#}"))?;
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    for (name, contents) in files.iter() {
        fs::write(dir.join(name), contents).map_err(|e| e.to_string())?;
    }
    Ok(())
}
