//! Host-side bindings to canto's WIT (`wit/canto.wit`).

/// canto's imports: `context`, `log`, `metrics`, `websocket`, `links`
/// (async: connecting and `receive` wait on the network) and `files`
/// (whose `respond` traps on a request it cannot honour); `wasi:keyvalue`
/// comes from [`keyvalue`].
pub mod imports {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "canto:http/imports",
        imports: {
            "canto:http/links.open": async,
            "canto:http/links.find": async,
            "canto:http/links.send": async,
            "canto:http/links.receive": async,
            "canto:http/links.close": async,
            "canto:http/links.park": async,
            "canto:http/links.lock": async,
            "canto:http/links.set-idle-timeout": async,
            "canto:http/links.state": async,
            "canto:http/links.set-state": async,
            "canto:http/links.connection": async,
            "canto:http/files.respond": trappable,
        },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "canto:http/files.file": crate::wasm::files::OpenFile,
            "wasi:keyvalue": super::keyvalue::wasi::keyvalue,
        },
    });
}

/// `wasi:keyvalue` 0.2.0-draft2 (store, atomics, batch): every call waits on
/// a backend outside the sandbox, and a stale handle traps.
pub mod keyvalue {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasi:keyvalue/imports@0.2.0-draft2",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::wasm::keyvalue::Bucket,
            "wasi:keyvalue/atomics.cas": crate::wasm::keyvalue::Cas,
        },
    });
}

/// The optional `canto:http/metadata` export.
pub mod metadata {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "canto:http/metadata-provider",
        exports: { default: async },
    });
}

/// The optional `canto:http/websocket-handler` export.
pub mod websocket {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "canto:http/websocket-provider",
        exports: { default: async },
        with: { "canto:http/websocket": super::imports::canto::http::websocket },
    });
}

/// The optional `canto:http/link-handler` export.
pub mod links {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "canto:http/link-provider",
        exports: { default: async },
        with: {
            "canto:http/websocket": super::imports::canto::http::websocket,
            "canto:http/links": super::imports::canto::http::links,
        },
    });
}

/// The optional `canto:http/parked-handler` export.
pub mod parked {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "canto:http/parked-provider",
        exports: { default: async },
        with: {
            "canto:http/websocket": super::imports::canto::http::websocket,
            "canto:http/links": super::imports::canto::http::links,
        },
    });
}

/// The optional `canto:http/scheduled-handler` export.
pub mod scheduled {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "canto:http/scheduled-provider",
        exports: { default: async },
    });
}
