//! Host-side bindings to canto's WIT (`wit/canto.wit`).

/// canto's imports: `canto:http/context` and `canto:http/log`.
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
