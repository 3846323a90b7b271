//! Modules written in Python, JavaScript and C, behind the same server as
//! their Rust originals.

use super::*;
use canto_language_guests::{MODULES, PROBLEMS};

/// Every language's modules, as (name, path) for the plugin directory;
/// fails when a toolchain was missing at build time.
fn all_modules() -> Vec<(&'static str, &'static str)> {
    assert!(PROBLEMS.is_empty(), "languages that did not build (scripts/test installs their tools): {PROBLEMS:?}");
    for language in ["python", "javascript", "c"] {
        let both = |m: &&canto_language_guests::LanguageModule| {
            m.language == language && (m.name.starts_with("http_whoami") || m.name.starts_with("http_options"))
        };
        assert_eq!(MODULES.iter().filter(both).count(), 2, "{language} should give whoami and options");
    }
    MODULES.iter().map(|m| (m.name, m.path)).collect()
}

fn named(prefix: &str) -> Vec<&'static str> {
    MODULES.iter().map(|m| m.name).filter(|name| name.starts_with(prefix)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_answers_identical_json_in_every_language() {
    let extra = all_modules();
    let whoamis = named("http_whoami_");
    let enabled: Vec<String> =
        std::iter::once("http_whoami").chain(whoamis.iter().copied()).map(|n| format!("{n:?}")).collect();
    let config = format!("VirtualHost \"lang.test\"\n  modules_enabled = {{ {} }}\n", enabled.join(", "));
    let server = TestServer::start_with(&config, &extra).await;
    let client = server.client(&["lang.test"]);
    // A method outside the standard set, an escaped path, a query, and a
    // client address through a trusted proxy: every field has work to do.
    let ask = |mount: String| {
        let request = client
            .request(
                reqwest::Method::from_bytes(b"PURGE").unwrap(),
                server.url("lang.test", &format!("/{mount}/a%22b/c?q=1")),
            )
            .header("x-forwarded-for", "203.0.113.9")
            .header("x-forwarded-proto", "https");
        async move {
            let response = request.send().await.expect("request");
            assert_eq!(response.status(), 200, "{mount}");
            let text = response.text().await.expect("body");
            // The mount name is the one expected difference.
            text.replace(&format!("/{mount}"), "/whoami")
        }
    };
    let reference = ask("whoami".into()).await;
    let json: serde_json::Value = serde_json::from_str(&reference).expect("Rust whoami answers JSON");
    assert_eq!(json["method"], "PURGE");
    assert_eq!(json["ip"], "203.0.113.9");
    for name in whoamis {
        let mount = name.trim_start_matches("http_").to_string();
        assert_eq!(ask(mount).await, reference, "{name} answers differently from the Rust whoami");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_reach_modules_in_every_language() {
    let extra = all_modules();
    let options = named("http_options_");
    let enabled: Vec<String> = options.iter().map(|n| format!("{n:?}")).collect();
    // All declare /opts as their default path: mount each on its own.
    let paths: Vec<String> = options
        .iter()
        .map(|n| {
            let app = n.trim_start_matches("http_");
            format!("{app} = \"/{app}\"")
        })
        .collect();
    let config = format!(
        "greeting = \"hi there\"\nsecret = \"hunter2\"\nhttp_paths = {{ {} }}\nVirtualHost \"optlang.test\"\n  modules_enabled = {{ {} }}\n",
        paths.join(", "),
        enabled.join(", ")
    );
    let server = TestServer::start_with(&config, &extra).await;
    for name in options {
        let app = name.trim_start_matches("http_");
        let response = server.get("optlang.test", &format!("/{app}")).await;
        assert_eq!(response.status(), 200, "{name}");
        // Declared options only: `secret` is set but not declared.
        assert_eq!(response.text().await.unwrap(), "greeting=\"hi there\"\nsecret=unset\n", "{name}");
        wait_for_log(&["options requested", &format!("module={name}"), "host=optlang.test"]).await;
    }
}
