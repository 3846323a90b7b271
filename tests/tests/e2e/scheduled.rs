//! Modules' scheduled runs (`canto:http/scheduled-handler`): in a fresh
//! instance with the module's grants, as often as the module asks, logged
//! and counted like requests, and only while the module is mounted.

use super::*;

fn site(host: &str, dir: &std::path::Path, options: &str) -> String {
    format!(
        "http_module_grants = {{ tick = {{ dirs_rw = {{ \"{0}\" }}, env = {{ TICK_DIR = \"{0}\" }} }} }}\n{options}\nVirtualHost \"{host}\"\n    modules_enabled = {{ \"http_tick\", \"http_hello\", \"http_openmetrics\" }}\n",
        dir.display()
    )
}

/// The module's count of runs, as it answers a GET.
async fn ticks(server: &TestServer, host: &str) -> usize {
    let text = server.get(host, "/tick/").await.text().await.unwrap();
    text.trim().strip_prefix("ticks=").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_module_runs_with_its_grants_until_it_is_unmounted() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&site("tick.test", dir.path(), "")).await;
    let started = std::time::Instant::now();
    while ticks(&server, "tick.test").await < 3 {
        assert!(started.elapsed() < Duration::from_secs(15), "three runs, a second apart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Each run wrote to the directory granted to the module, and was logged
    // and counted as a run of it.
    assert!(std::fs::read_to_string(dir.path().join("ticks")).unwrap().lines().count() >= 3);
    wait_for_log(&["scheduled run of http_tick done", "vhost=tick.test"]).await;
    wait_for_log(&["tick 2 on tick.test", "module=http_tick"]).await;
    let metrics = server.get("tick.test", "/metrics").await.text().await.unwrap();
    let runs = metrics.lines().find_map(|l| l.strip_prefix("canto_module_instantiations_total{module=\"http_tick\"} "));
    assert!(runs.and_then(|v| v.parse::<f64>().ok()).is_some_and(|n| n >= 3.0), "{metrics}");

    // Unmounted by a reload: no more runs.
    server.rewrite_config(&site("tick.test", dir.path(), "").replace("\"http_tick\", ", ""));
    server.reload.reload().await;
    wait_for_log(&["module http_tick removed"]).await;
    let stopped_at = std::fs::read_to_string(dir.path().join("ticks")).unwrap().lines().count();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(std::fs::read_to_string(dir.path().join("ticks")).unwrap().lines().count(), stopped_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_scheduled_run_is_logged_and_costs_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&site("trapping-tick.test", dir.path(), "tick_trap = true")).await;
    wait_for_log(&["scheduled run failed", "vhost=trapping-tick.test", "http_tick"]).await;
    assert_eq!(server.get("trapping-tick.test", "/hello/").await.status(), 200);
    let failing = TestServer::start(&site("failing-tick.test", dir.path(), "tick_fail = true")).await;
    wait_for_log(&["scheduled run of http_tick failed", "asked to fail", "vhost=failing-tick.test"]).await;
    assert_eq!(failing.get("failing-tick.test", "/hello/").await.status(), 200);
}
