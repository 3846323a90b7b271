use super::*;

const TRAP: &str = "VirtualHost \"trap.test\"\nmodules_enabled = { \"http_trap\" }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_module_costs_one_500_and_the_next_request_succeeds() {
    let server = TestServer::start(TRAP).await;
    let response = server.get("trap.test", "/trap/panic").await;
    assert_eq!(response.status(), 500);
    let page = response.text().await.unwrap();
    assert!(!page.contains("asked to trap"), "guest internals must not reach the client");
    wait_for_log(&["module failed", "module=http_trap", "host=trap.test"]).await;
    // The guest's own stderr (its panic message) lands in the log, tagged.
    wait_for_log(&["http_trap was asked to trap", "module=http_trap", "stream=\"stderr\""]).await;

    let response = server.get("trap.test", "/trap/ok").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "alive\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_that_never_answers_gets_500() {
    let server = TestServer::start("VirtualHost \"silent.test\"\nmodules_enabled = { \"http_trap\" }\n").await;
    assert_eq!(server.get("silent.test", "/trap/silent").await.status(), 500);
    wait_for_log(&["returned without setting a response", "module=http_trap", "host=silent.test"]).await;
    assert_eq!(server.get("silent.test", "/trap/ok").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_that_is_not_a_component_stops_startup_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mod_http_garbage.wasm"), b"not wasm at all").unwrap();
    let config = format!(
        "plugin_paths = {{ {:?} }}\nVirtualHost \"g.test\"\nmodules_enabled = {{ \"http_garbage\" }}\n",
        dir.path().display().to_string()
    );
    let error = TestServer::try_start(&config).await.err().expect("garbage must not load");
    assert!(error.contains("module http_garbage: not a valid WebAssembly component"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_names_file_line_and_column() {
    let error = TestServer::try_start("VirtualHost \"x\"\n  http_paths = { files = function() end }\n")
        .await
        .err()
        .expect("functions are not config");
    assert!(error.contains("prosody.cfg.lua:7:26: functions are not supported in a config"), "{error}");
}
