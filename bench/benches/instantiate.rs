//! The per-request cost of the wasm sandbox, in process (no sockets): what
//! canto pays for each request on top of its native pipeline.
//!
//! - `store`: a fresh `Store` with its WASI and `wasi:http` state, dropped.
//! - `instantiate`: that plus instantiating the pre-linked component (a
//!   pooling-allocator slot, imports, the memory reset when it is dropped).
//! - `request`: canto's whole module call, `Invocation::run` on a GET, with
//!   the response body read to its end: what a request to a module costs
//!   beyond HTTP parsing and the socket.
//! - `request_reused`: the same with `http_module_instance_reuse`, the
//!   instance kept between requests.
//!
//! `http_files` serves a 4 KiB file from a granted directory, as the static
//! scenario of `bench/suite.py` does over sockets.
//!
//! One tokio thread, so the figures are CPU cost without cross-thread
//! wake-ups (the server's multi-thread runtime adds those).
//!
//! Run with `cargo bench -p canto-bench --bench instantiate`.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use canto::config::{Config, ModuleLimits};
use canto::wasm::{
    Answered, IdleInstances, InstanceState, Invocation, LoadedModule, MountIdentity, RequestFacts, SandboxLimits,
    linker,
};

/// Each module, where it is mounted, and the path it is asked for.
const MODULES: [(&str, &str, &str, &str); 3] = [
    ("http_hello", canto_guests::HTTP_HELLO, "/hello", "/hello/"),
    ("http_plain", canto_guests::HTTP_PLAIN, "/hello", "/hello/"),
    ("http_files", canto_guests::HTTP_FILES, "/files", "/files/4k.txt"),
];

fn limits() -> ModuleLimits {
    match Config::builtin_default(&canto::builtin::names()) {
        Ok(config) => config.limits,
        Err(error) => panic!("the built-in default config does not load: {error}"),
    }
}

/// A mount of `module`; `http_files` is granted `www` as its `http_files_dir`.
fn mount(module: &str, www: &std::path::Path) -> Arc<MountIdentity> {
    let mut grants = canto::config::Grants::default();
    let mut options = std::collections::BTreeMap::new();
    if module == "http_files" {
        grants.read_dirs.push(www.to_path_buf());
        options.insert("http_files_dir".to_string(), serde_json::Value::from(www.display().to_string()).to_string());
    }
    Arc::new(MountIdentity {
        module: Arc::from(module),
        host: Arc::from("localhost"),
        options,
        granted_dirs: canto::wasm::files::GrantedDirs::open(&grants, module),
        grants,
        stores: Default::default(),
        store_refusal_logged: Default::default(),
        metrics: None,
        websockets: None,
        links: None,
        parks: false,
    })
}

/// What the server establishes about a request for `path` to a module
/// mounted at `base`.
fn facts(base: &str, path: &str, metrics: &Arc<canto::metrics::Metrics>) -> RequestFacts {
    RequestFacts {
        host: Arc::from("localhost"),
        base_path: Arc::from(base),
        base_url: Arc::from(format!("http://localhost:5280{base}")),
        client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
        secure: false,
        raw_path_with_query: Arc::from(path),
        sendfile: None,
        metrics: Arc::clone(metrics),
    }
}

fn per_request(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let limits = limits();
    let sandbox = SandboxLimits::from(&limits);
    let engine = canto::wasm::engine::build(&limits).expect("the wasm engine");
    let linker = linker(&engine).expect("the module linker");
    let instances = Arc::new(tokio::sync::Semaphore::new(limits.pool_size as usize));
    let www = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(www.path().join("4k.txt"), [b'x'; 4096]).expect("the 4 KiB file");
    let metrics = Arc::new(canto::metrics::Metrics::default());

    for (name, path, base, request_path) in MODULES {
        let bytes = std::fs::read(path).expect("guest modules are built by canto-guests");
        let component = wasmtime::component::Component::new(&engine, &bytes).expect("the module compiles");
        let pre = ProxyPre::new(linker.instantiate_pre(&component).expect("the module links")).expect("wasi:http");
        let module =
            Arc::new(runtime.block_on(LoadedModule::load(&engine, &linker, name, &bytes, &limits)).expect("loads"));
        let identity = mount(name, www.path());

        let mut group = c.benchmark_group(name);
        group.bench_function("store", |b| {
            b.iter(|| {
                Store::new(
                    &engine,
                    InstanceState::new(Arc::clone(&identity), Some(facts(base, request_path, &metrics)), &sandbox),
                )
            });
        });
        group.bench_function("instantiate", |b| {
            b.to_async(&runtime).iter(|| async {
                let state =
                    InstanceState::new(Arc::clone(&identity), Some(facts(base, request_path, &metrics)), &sandbox);
                let mut store = Store::new(&engine, state);
                store.set_epoch_deadline(1_000_000);
                pre.instantiate_async(&mut store).await.expect("instantiates");
            });
        });
        // A fresh instance per request (the default), and reused instances
        // (`http_module_instance_reuse`).
        let idle_budget = Arc::new(tokio::sync::Semaphore::new(4));
        for (label, reuse) in [("request", None), ("request_reused", IdleInstances::new(1000, &idle_budget))] {
            group.bench_function(label, |b| {
                b.to_async(&runtime).iter(|| async {
                    let permits = [
                        Arc::clone(&module.concurrency).acquire_owned().await.expect("a module permit"),
                        Arc::clone(&instances).acquire_owned().await.expect("a pool permit"),
                    ];
                    let invocation = Invocation {
                        module: Arc::clone(&module),
                        mount: Arc::clone(&identity),
                        facts: facts(base, request_path, &metrics),
                        sandbox,
                        timeout: limits.timeout,
                        wall_timeout: limits.wall_timeout,
                        max_response_bytes: limits.max_response_bytes,
                        permits,
                        reuse: reuse.clone(),
                    };
                    let request = http::Request::get(format!("http://localhost{request_path}"))
                        .body(Empty::<Bytes>::new())
                        .expect("a request");
                    let Ok(Answered::Now(response)) = invocation.run(request).await else {
                        panic!("the module answers")
                    };
                    assert_eq!(response.status(), 200, "{name} answers {request_path}");
                    let body = response.into_body().collect().await.expect("a whole body").to_bytes();
                    assert!(!body.is_empty());
                });
            });
        }
        group.finish();
    }
}

criterion_group!(benches, per_request);
criterion_main!(benches);
