//! `http_module_instance_reuse`: what carries over between the requests
//! of a reused instance, and what never does.

use super::*;

/// The trap module's per-instance request count, after letting the
/// previous request's instance settle back into the idle set (its task
/// puts it back just after the response is complete; the client can
/// see the response first).
async fn served(server: &TestServer, host: &str) -> String {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let response = server.get(host, "/trap/count").await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_every_request_gets_a_fresh_instance() {
    let server = TestServer::start("VirtualHost \"fresh.test\"\nmodules_enabled = { \"http_trap\" }\n").await;
    for _ in 0..3 {
        assert_eq!(served(&server, "fresh.test").await, "served 1\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_instance_serves_its_limit_then_is_retired() {
    let server = TestServer::start(
        "http_module_instance_reuse = { trap = 3 }\nVirtualHost \"r.test\"\nmodules_enabled = { \"http_trap\" }\n",
    )
    .await;
    let mut counts = Vec::new();
    for _ in 0..7 {
        counts.push(served(&server, "r.test").await);
    }
    let expected: Vec<String> = [1, 2, 3, 1, 2, 3, 1].iter().map(|n| format!("served {n}\n")).collect();
    assert_eq!(counts, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_discards_the_instance_and_the_next_request_starts_fresh() {
    let server = TestServer::start(
        "http_module_instance_reuse = 100\nVirtualHost \"t.test\"\nmodules_enabled = { \"http_trap\" }\n",
    )
    .await;
    assert_eq!(served(&server, "t.test").await, "served 1\n");
    assert_eq!(served(&server, "t.test").await, "served 2\n");
    assert_eq!(server.get("t.test", "/trap/panic").await.status(), 500);
    assert_eq!(served(&server, "t.test").await, "served 1\n", "a trapped instance must not serve again");
    // One that returned without answering also finished cleanly: kept.
    assert_eq!(server.get("t.test", "/trap/silent").await.status(), 500);
    assert_eq!(served(&server, "t.test").await, "served 3\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_keeps_a_request_is_dropped_which_ends_that_request() {
    let server = TestServer::start(
        "http_module_instance_reuse = 100\nVirtualHost \"h.test\"\nmodules_enabled = { \"http_trap\" }\n",
    )
    .await;
    assert_eq!(served(&server, "h.test").await, "served 1\n");
    // Returning while still holding the response slot: were the instance
    // kept, the client would wait until it retired.
    let held = tokio::time::timeout(Duration::from_secs(5), server.get("h.test", "/trap/hold")).await;
    assert_eq!(held.expect("a held request must end when its instance is dropped").status(), 500);
    assert_eq!(served(&server, "h.test").await, "served 1\n", "the instance that held a request is gone");
}

#[test]
fn an_app_name_no_host_enables_is_a_warning_with_a_suggestion() {
    let config = canto::Config::from_text(
            std::path::Path::new("/etc/prosody/prosody.cfg.lua"),
            "http_module_instance_reuse = { helo = 10, hello = 10 }\nVirtualHost \"a\"\nmodules_enabled = { \"http_hello\" }\n",
            &canto::builtin::names(),
        )
        .unwrap();
    assert_eq!(
        config.warnings,
        vec![
            "/etc/prosody/prosody.cfg.lua:1:30: http_module_instance_reuse: no enabled module is called 'helo' \
                 (did you mean 'hello'?)"
                .to_string()
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_do_not_share_instances_and_unlisted_apps_stay_fresh() {
    let server = TestServer::start(
        "http_module_instance_reuse = { trap = 10 }\n\
             VirtualHost \"a.test\"\nmodules_enabled = { \"http_trap\" }\n\
             VirtualHost \"b.test\"\nmodules_enabled = { \"http_trap\" }\n",
    )
    .await;
    assert_eq!(served(&server, "a.test").await, "served 1\n");
    assert_eq!(served(&server, "a.test").await, "served 2\n");
    // b.test's instance carries b.test's options and grants: its own.
    assert_eq!(served(&server, "b.test").await, "served 1\n");
    assert_eq!(served(&server, "a.test").await, "served 3\n");

    let unlisted = TestServer::start(
        "http_module_instance_reuse = { hello = 10 }\nVirtualHost \"u.test\"\nmodules_enabled = { \"http_trap\" }\n",
    )
    .await;
    assert_eq!(served(&unlisted, "u.test").await, "served 1\n");
    assert_eq!(served(&unlisted, "u.test").await, "served 1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_on_a_reused_instance_gets_the_whole_cpu_budget() {
    // 600 ms of computing per request against a 1 s budget: a budget
    // carried over from the previous request would run out on the second.
    let server = TestServer::start(
        "http_module_instance_reuse = 100\nhttp_module_timeout = 1\n\
             VirtualHost \"b.test\"\nmodules_enabled = { \"http_trap\" }\n",
    )
    .await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(server.get("b.test", "/trap/burn").await.status(), 200);
    }
    assert_eq!(served(&server, "b.test").await, "served 4\n", "all on one instance");
}
