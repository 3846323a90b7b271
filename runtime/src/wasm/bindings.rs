//! Host-side bindings to canto's WIT (`wit/canto.wit`).

/// canto's imports: `context`, `log`, `metrics` and `websocket`.
pub mod imports {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "canto:http/imports",
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
