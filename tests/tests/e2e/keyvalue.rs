//! Shared state (`wasi:keyvalue`, `http_stores`): counters that count every
//! increment under concurrency, on one server, across two processes
//! sharing a SQLite file, and across two nodes behind HAProxy sharing
//! Redis; grants and per-host namespaces; a store that goes away.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use futures::StreamExt;

use super::*;
use canto_language_guests::MODULES;
use canto_tests::daemons::{Haproxy, RedisServer};
use canto_tests::node::CantoNode;

/// What `n` POSTs to `url`, `in_flight` at a time, got back: the values
/// answered with 200, and how many did not get one.
struct Tally {
    values: Vec<i64>,
    failed: usize,
}

async fn post_many(client: &reqwest::Client, url: &str, n: usize, in_flight: usize) -> Tally {
    let answers: Vec<Option<i64>> = futures::stream::iter(0..n)
        .map(|_| async move {
            let response = client.post(url).send().await.ok()?;
            if response.status() != 200 {
                return None;
            }
            response.text().await.ok()?.trim().parse().ok()
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let failed = answers.iter().filter(|a| a.is_none()).count();
    Tally { values: answers.into_iter().flatten().collect(), failed }
}

async fn read_counter(client: &reqwest::Client, url: &str) -> i64 {
    let response = client.get(url).send().await.expect("read counter");
    assert_eq!(response.status(), 200, "{url}");
    response.text().await.expect("body").trim().parse().expect("a number")
}

fn client_for(host: &str, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder().resolve(host, addr).timeout(Duration::from_secs(30)).build().expect("build http client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_and_swaps_all_count_in_the_default_store() {
    let python = MODULES.iter().find(|m| m.name == "http_counter_py").expect("the Python counter was built");
    let server = TestServer::start_with(
        "http_module_grants = { counter = { stores = { \"default\" } }, counter_py = { stores = { \"default\" } } }\n\
         VirtualHost \"kv.test\"\n    modules_enabled = { \"http_counter\", \"http_counter_py\" }\n",
        &[(python.name, python.path)],
    )
    .await;
    let client = server.client(&["kv.test"]);

    // Each increment answers the value it made: 1..=1000, each once.
    let tally = post_many(&client, &server.url("kv.test", "/counter/n/hits"), 1000, 64).await;
    assert_eq!(tally.failed, 0);
    let answered: BTreeSet<i64> = tally.values.iter().copied().collect();
    assert_eq!(answered, (1..=1000).collect(), "every increment saw a distinct value");
    assert_eq!(read_counter(&client, &server.url("kv.test", "/counter/n/hits")).await, 1000);

    // Compare-and-swap: 100 appends racing on one key, none lost.
    let appends = futures::stream::iter(0..100)
        .map(|_| client.post(server.url("kv.test", "/counter/append/log")).body("x").send())
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    assert!(appends.iter().all(|r| r.as_ref().is_ok_and(|r| r.status() == 200)));
    let log = client.get(server.url("kv.test", "/counter/n/log")).send().await.unwrap().text().await.unwrap();
    assert_eq!(log.trim(), "x".repeat(100));

    // Batches and listing.
    let stored = client.post(server.url("kv.test", "/counter/many")).body("b1=one\nb2=two\n").send().await.unwrap();
    assert_eq!(stored.text().await.unwrap(), "stored 2\n");
    let many = server.get("kv.test", "/counter/many?b1,b2,b3").await.text().await.unwrap();
    assert_eq!(many, "b1=one\nb2=two\nb3 absent\n");
    assert_eq!(server.get("kv.test", "/counter/keys").await.text().await.unwrap(), "b1\nb2\nhits\nlog\n");
    client.delete(server.url("kv.test", "/counter/many?b1,b2")).send().await.unwrap();
    assert_eq!(server.get("kv.test", "/counter/keys").await.text().await.unwrap(), "hits\nlog\n");

    // An increment of text is the module's error to handle, not a trap.
    let not_a_number = client.post(server.url("kv.test", "/counter/n/log")).send().await.unwrap();
    assert_eq!(not_a_number.status(), 503);
    assert!(not_a_number.text().await.unwrap().contains("not a whole number"));

    // The Python module shares the store (same host, same store).
    let py = post_many(&client, &server.url("kv.test", "/counter_py/n/hits"), 5, 5).await;
    assert_eq!(py.failed, 0);
    assert_eq!(read_counter(&client, &server.url("kv.test", "/counter/n/hits")).await, 1005);
    assert_eq!(read_counter(&client, &server.url("kv.test", "/counter_py/n/hits")).await, 1005);

    let file = server.dir.path().join("data").join("http_stores.sqlite");
    assert!(file.exists(), "the default store lives under data_path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_are_granted_per_module_and_keys_kept_per_host() {
    let server = TestServer::start(
        "http_stores = { shared = { backend = \"sqlite\"; path = \"shared.sqlite\"; per_host = false; max_value_size = 8 } }\n\
         http_module_grants = { counter = { stores = { \"default\", \"shared\" } } }\n\
         VirtualHost \"a.kv.test\"\n    modules_enabled = { \"http_counter\", \"http_whoami\" }\n\
         VirtualHost \"b.kv.test\"\n    modules_enabled = { \"http_counter\" }\n\
         VirtualHost \"c.kv.test\"\n    modules_enabled = { \"http_counter\" }\n    counter_store = \"shared\"\n\
         VirtualHost \"d.kv.test\"\n    modules_enabled = { \"http_counter\" }\n    counter_store = \"shared\"\n",
    )
    .await;
    let client = server.client(&["a.kv.test", "b.kv.test", "c.kv.test", "d.kv.test"]);
    let bump = |host: &'static str, times: usize| {
        let (client, url) = (client.clone(), server.url(host, "/counter/n/visits"));
        async move { assert_eq!(post_many(&client, &url, times, 4).await.failed, 0) }
    };
    bump("a.kv.test", 3).await;
    bump("b.kv.test", 1).await;
    bump("c.kv.test", 2).await;
    bump("d.kv.test", 5).await;
    // `default` is per host: a and b keep their own counts.
    assert_eq!(read_counter(&client, &server.url("a.kv.test", "/counter/n/visits")).await, 3);
    assert_eq!(read_counter(&client, &server.url("b.kv.test", "/counter/n/visits")).await, 1);
    // `shared` says per_host = false: c and d count together.
    assert_eq!(read_counter(&client, &server.url("c.kv.test", "/counter/n/visits")).await, 7);
    assert_eq!(read_counter(&client, &server.url("d.kv.test", "/counter/n/visits")).await, 7);

    // The store's limits are the module's errors, and nothing is stored.
    let fits = client.put(server.url("c.kv.test", "/counter/n/note")).body("12345678").send().await.unwrap();
    assert_eq!(fits.status(), 200);
    let over = client.put(server.url("c.kv.test", "/counter/n/note")).body("123456789").send().await.unwrap();
    assert_eq!(over.status(), 503);
    assert_eq!(over.text().await.unwrap(), "store: value of 9 bytes is over the store's max_value_size (8)\n");
    let long_key = format!("/counter/n/{}", "k".repeat(1025));
    let refused = client.get(server.url("a.kv.test", &long_key)).send().await.unwrap();
    assert!(refused.text().await.unwrap().contains("over the store's max_key_size (1024)"));
    assert_eq!(server.get("d.kv.test", "/counter/n/note").await.text().await.unwrap(), "12345678\n");

    // Granted: opens. Declared but not granted to this module, or not
    // declared at all: refused, and the log says what to grant.
    assert_eq!(server.get("a.kv.test", "/counter/open/shared").await.status(), 200);
    let refused = server.get("a.kv.test", "/counter/open/elsewhere").await;
    assert_eq!(refused.status(), 403);
    wait_for_log(&["opening store 'elsewhere' refused", "http_module_grants.counter.stores", "host=a.kv.test"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_granted_no_store_opens_none() {
    let server = TestServer::start(
        "http_module_grants = { hello = { stores = { \"default\" } } }\n\
         VirtualHost \"nogrant.kv.test\"\n    modules_enabled = { \"http_counter\" }\n",
    )
    .await;
    let response = server.get("nogrant.kv.test", "/counter/n/x").await;
    assert_eq!(response.status(), 403);
    assert_eq!(response.text().await.unwrap(), "store: access denied\n");
    let none = server.get("nogrant.kv.test", "/counter/none").await;
    assert_eq!(none.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_store_that_goes_away_costs_its_module_a_503_until_it_returns() {
    let mut redis = RedisServer::start().await;
    let server = TestServer::start(&format!(
        "http_stores = {{ shared = {{ backend = \"redis\"; url = \"{}\"; timeout = 1 }} }}\n\
         http_module_grants = {{ counter = {{ stores = {{ \"shared\" }} }} }}\n\
         VirtualHost \"redis.kv.test\"\n    modules_enabled = {{ \"http_counter\", \"http_hello\", \"http_openmetrics\" }}\n    counter_store = \"shared\"\n",
        redis.url()
    ))
    .await;
    let client = server.client(&["redis.kv.test"]);
    let url = server.url("redis.kv.test", "/counter/n/hits");
    let tally = post_many(&client, &url, 500, 32).await;
    assert_eq!(tally.failed, 0);
    assert_eq!(tally.values.iter().copied().collect::<BTreeSet<_>>(), (1..=500).collect());

    // Overflow is the module's error, as on SQLite, not the store failing.
    let big = server.url("redis.kv.test", "/counter/n/big?by=9223372036854775807");
    assert_eq!(client.post(&big).send().await.unwrap().status(), 200);
    let over = client.post(&big).send().await.unwrap();
    assert_eq!(over.status(), 503);
    assert!(over.text().await.unwrap().contains("overflow"));

    redis.stop();
    let started = std::time::Instant::now();
    let down = client.post(&url).send().await.unwrap();
    assert_eq!(down.status(), 503);
    assert!(down.text().await.unwrap().starts_with("store: store shared:"));
    assert!(started.elapsed() < Duration::from_secs(5), "the store's timeout bounds the wait");
    // Everything else keeps serving.
    assert_eq!(server.get("redis.kv.test", "/hello/").await.status(), 200);
    wait_for_log(&["store call failed", "store=shared", "unavailable"]).await;

    redis.restart().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let response = client.post(&url).send().await.unwrap();
        if response.status() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "canto did not reconnect to Redis");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = server.get("redis.kv.test", "/metrics").await.text().await.unwrap();
    let count = |prefix: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert!(count("canto_store_operations_total{store=\"shared\",operation=\"increment\"}") >= 502.0, "{metrics}");
    assert!(
        count("canto_store_errors_total{store=\"shared\",operation=\"increment\",reason=\"unavailable\"}") >= 1.0,
        "{metrics}"
    );
    assert!(count("canto_store_duration_seconds_count{store=\"shared\"}") >= 502.0, "{metrics}");
    let overflowed = "canto_store_errors_total{store=\"shared\",operation=\"increment\",reason=\"not_a_number\"}";
    assert_eq!(count(overflowed), 1.0, "{metrics}");
}

/// The same plugin directory for every node: the guest modules.
fn node_plugins(dir: &std::path::Path) -> std::path::PathBuf {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for (name, path) in canto_guests::ALL {
        std::fs::copy(path, plugins.join(format!("mod_{name}.wasm"))).unwrap();
    }
    plugins
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_sharing_one_sqlite_file_count_every_increment() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = node_plugins(dir.path());
    let config = format!(
        "data_path = {:?}\nhttp_module_grants = {{ counter = {{ stores = {{ \"default\" }} }} }}\n\
         VirtualHost \"localhost\"\n    modules_enabled = {{ \"http_counter\" }}\n",
        dir.path().join("data").display().to_string()
    );
    let one = CantoNode::start(dir.path(), "one", &config, &plugins).await;
    let two = CantoNode::start(dir.path(), "two", &config, &plugins).await;
    let (client_one, client_two) = (client_for("localhost", one.addr), client_for("localhost", two.addr));
    let url_one = format!("http://localhost:{}/counter/n/shared", one.addr.port());
    let url_two = format!("http://localhost:{}/counter/n/shared", two.addr.port());
    let (a, b) = tokio::join!(post_many(&client_one, &url_one, 5000, 64), post_many(&client_two, &url_two, 5000, 64));
    assert_eq!((a.failed, b.failed), (0, 0), "{}\n{}", one.log_text(), two.log_text());
    let all: BTreeSet<i64> = a.values.iter().chain(&b.values).copied().collect();
    assert_eq!(all, (1..=10_000).collect(), "each increment saw a distinct value across both processes");
    assert_eq!(read_counter(&client_one, &url_one).await, 10_000);
    assert_eq!(read_counter(&client_two, &url_two).await, 10_000);
    assert!(dir.path().join("data").join("http_stores.sqlite-wal").exists(), "the file is in WAL mode");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_behind_haproxy_share_redis_and_lose_no_acknowledged_increment() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let plugins = node_plugins(dir.path());
    let config = format!(
        "data_path = {:?}\nhttp_stores = {{ shared = {{ backend = \"redis\"; url = \"{}\" }} }}\n\
         http_module_grants = {{ counter = {{ stores = {{ \"shared\" }} }} }}\n\
         VirtualHost \"localhost\"\n    modules_enabled = {{ \"http_counter\", \"http_hello\" }}\n    counter_store = \"shared\"\n",
        dir.path().join("data").display().to_string(),
        redis.url()
    );
    let one = CantoNode::start(dir.path(), "one", &config, &plugins).await;
    let mut two = CantoNode::start(dir.path(), "two", &config, &plugins).await;
    let proxy = Haproxy::start(&[one.addr, two.addr], "localhost", "/hello/").await;
    let client = client_for("localhost", proxy.addr());
    let url = |key: &str| format!("http://localhost:{}/counter/n/{key}", proxy.addr().port());

    // Both nodes up: exactly one count per increment, spread over both.
    let tally = post_many(&client, &url("steady"), 10_000, 200).await;
    assert_eq!(tally.failed, 0, "{}\n{}", one.log_text(), two.log_text());
    assert_eq!(tally.values.iter().copied().collect::<BTreeSet<_>>(), (1..=10_000).collect());
    assert_eq!(read_counter(&client, &url("steady")).await, 10_000);
    let served = |node: &CantoNode| node.log_text().matches("POST /counter/n/steady").count();
    assert!(served(&one) > 2000 && served(&two) > 2000, "round robin: {} and {}", served(&one), served(&two));

    // One node killed mid-load: HAProxy moves traffic to the other; every
    // increment a client saw acknowledged is in the store.
    let load = {
        let (client, url) = (client.clone(), url("failover"));
        tokio::spawn(async move { post_many(&client, &url, 10_000, 200).await })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while read_counter(&client, &url("failover")).await < 3000 {
        assert!(std::time::Instant::now() < deadline && !load.is_finished(), "the load never reached 3,000");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    two.kill();
    let tally = load.await.unwrap();
    let stored = read_counter(&client, &url("failover")).await;
    let acknowledged = tally.values.len() as i64;
    assert!(stored >= acknowledged, "acknowledged {acknowledged} increments but the store holds {stored}");
    let highest = tally.values.iter().copied().max().unwrap_or(0);
    assert!(stored >= highest, "a client saw {highest} acknowledged but the store holds {stored}");
    assert!(stored <= 10_000, "{stored} counted from 10,000 requests");
    assert!(tally.failed < 1000, "{} requests failed: HAProxy should move traffic to the live node", tally.failed);
    assert!(tally.values.iter().copied().collect::<BTreeSet<_>>().len() == tally.values.len(), "no value twice");
    let after = post_many(&client, &url("after"), 200, 20).await;
    assert_eq!(after.failed, 0, "the surviving node serves everything");
}
