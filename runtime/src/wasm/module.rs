//! A loaded module: compiled once, linked once against the host's imports,
//! pre-instantiated, with its declared metadata read at load time.

use std::sync::Arc;

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::WasmError;
use super::bindings::{imports, metadata};
use super::host_state::{InstanceState, SandboxLimits};
use super::links::{LinkSupport, ParkedSupport};
use super::scheduled::ScheduledSupport;
use super::websocket::WebsocketSupport;

/// What a module declared about itself (or Prosody's defaults).
#[derive(Clone, Debug, Default)]
pub struct ModuleMetadata {
    /// Where it mounts when `http_paths` does not say.
    pub default_path: Option<String>,
    pub cors: Option<CorsDefaults>,
    /// Config options it reads through `context.config-option`.
    pub options: Vec<String>,
    /// Whether `/base` reaches it instead of redirecting to `/base/`.
    pub serve_bare_path: bool,
    /// Whether it enforces its own body limit instead of `http_max_content_size`.
    pub streaming_uploads: bool,
}

/// CORS defaults a module asks for.
#[derive(Clone, Debug)]
pub struct CorsDefaults {
    pub methods: Vec<String>,
    pub headers: Vec<String>,
    pub credentials: bool,
}

/// A module ready to serve: compiled, linked, pre-instantiated.
pub struct LoadedModule {
    pub name: Arc<str>,
    pub metadata: ModuleMetadata,
    pub(super) proxy: ProxyPre<InstanceState>,
    /// Its WebSocket handler, if it exports one.
    pub websocket: Option<Arc<WebsocketSupport>>,
    /// Its link handler, if it exports one.
    pub links: Option<Arc<LinkSupport>>,
    /// Its handler for parked requests, if it exports one.
    pub parked: Option<Arc<ParkedSupport>>,
    /// Its scheduled handler, if it exports one.
    pub scheduled: Option<Arc<ScheduledSupport>>,
    /// One permit per request this module may run at once.
    pub concurrency: Arc<tokio::sync::Semaphore>,
    /// The permits `concurrency` was made with (`http_module_max_concurrency`).
    pub concurrency_limit: u32,
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule").field("name", &self.name).field("metadata", &self.metadata).finish()
    }
}

/// The linker every module is instantiated through: all of WASI 0.2 (so
/// ordinary toolchains' output instantiates; the sandbox grants nothing),
/// `wasi:http`, and canto's own imports.
pub fn linker(engine: &Engine) -> Result<Linker<InstanceState>, WasmError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(WasmError::Linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(WasmError::Linker)?;
    // canto's own interfaces one by one: the world's add_to_linker would
    // also add the WASI interfaces `files` uses, which are linked above.
    use imports::canto::http::{context, files, links, log, metrics, websocket};
    type Own = wasmtime::component::HasSelf<InstanceState>;
    context::add_to_linker::<_, Own>(&mut linker, |state| state).map_err(WasmError::Linker)?;
    log::add_to_linker::<_, Own>(&mut linker, |state| state).map_err(WasmError::Linker)?;
    metrics::add_to_linker::<_, Own>(&mut linker, |state| state).map_err(WasmError::Linker)?;
    websocket::add_to_linker::<_, Own>(&mut linker, |state| state).map_err(WasmError::Linker)?;
    links::add_to_linker::<_, Own>(&mut linker, |state| state).map_err(WasmError::Linker)?;
    files::add_to_linker::<_, Own>(&mut linker, |state| state).map_err(WasmError::Linker)?;
    use super::bindings::keyvalue::wasi::keyvalue::{atomics, batch, store};
    store::add_to_linker::<_, Own>(&mut linker, |state| state).map_err(WasmError::Linker)?;
    atomics::add_to_linker::<_, Own>(&mut linker, |state| state).map_err(WasmError::Linker)?;
    batch::add_to_linker::<_, Own>(&mut linker, |state| state).map_err(WasmError::Linker)?;
    Ok(linker)
}

impl LoadedModule {
    /// Compiles and links a component. Fails if it does not export
    /// `wasi:http/incoming-handler`, imports something canto does not
    /// provide, or its metadata export traps.
    pub async fn load(
        engine: &Engine,
        linker: &Linker<InstanceState>,
        name: &str,
        bytes: &[u8],
        limits: &crate::config::ModuleLimits,
    ) -> Result<Self, WasmError> {
        let module = Arc::<str>::from(name);
        let component = {
            let engine = engine.clone();
            let bytes = bytes.to_vec();
            // Compiling is CPU-heavy; keep it off the async workers.
            tokio::task::spawn_blocking(move || Component::new(&engine, bytes))
                .await
                .map_err(|e| WasmError::Compile { module: module.clone(), cause: wasmtime::Error::msg(e.to_string()) })?
                .map_err(|cause| WasmError::Compile { module: module.clone(), cause })?
        };
        let pre =
            linker.instantiate_pre(&component).map_err(|cause| WasmError::Link { module: module.clone(), cause })?;
        let metadata_pre = metadata::MetadataProviderPre::new(pre.clone()).ok();
        let sandbox = SandboxLimits::from(limits);
        let websocket = WebsocketSupport::load(engine, &module, pre.clone(), &sandbox).await?.map(Arc::new);
        let links = LinkSupport::find(pre.clone()).map(Arc::new);
        let parked = ParkedSupport::find(pre.clone()).map(Arc::new);
        let scheduled = ScheduledSupport::find(pre.clone()).map(Arc::new);
        let proxy = ProxyPre::new(pre).map_err(|_| WasmError::NotAnHttpModule { module: module.clone() })?;

        let metadata = match metadata_pre {
            Some(metadata_pre) => read_metadata(engine, &module, metadata_pre, limits).await?,
            None => ModuleMetadata::default(),
        };
        let concurrency = Arc::new(tokio::sync::Semaphore::new(limits.max_concurrency as usize));
        Ok(Self {
            name: module,
            metadata,
            proxy,
            websocket,
            links,
            parked,
            scheduled,
            concurrency,
            concurrency_limit: limits.max_concurrency,
        })
    }

    /// The same compiled module with a fresh share of `limit` concurrent
    /// requests, for a reload that changed `http_module_max_concurrency`.
    /// Requests already running keep the old share until they finish.
    pub fn with_concurrency(&self, limit: u32) -> Self {
        Self {
            name: Arc::clone(&self.name),
            metadata: self.metadata.clone(),
            proxy: self.proxy.clone(),
            websocket: self.websocket.clone(),
            links: self.links.clone(),
            parked: self.parked.clone(),
            scheduled: self.scheduled.clone(),
            concurrency: Arc::new(tokio::sync::Semaphore::new(limit as usize)),
            concurrency_limit: limit,
        }
    }
}

async fn read_metadata(
    engine: &Engine,
    module: &Arc<str>,
    pre: metadata::MetadataProviderPre<InstanceState>,
    limits: &crate::config::ModuleLimits,
) -> Result<ModuleMetadata, WasmError> {
    let mount = super::websocket::loading_mount(module);
    let mut store = Store::new(engine, InstanceState::new(mount, None, &SandboxLimits::from(limits)));
    store.limiter(|state| &mut state.limits);
    super::engine::deadline(&mut store, std::time::Duration::from_secs(5));
    let describe = async {
        let instance = pre.instantiate_async(&mut store).await?;
        instance.canto_http_metadata().call_describe(&mut store).await
    };
    let info = describe.await.map_err(|cause| WasmError::Metadata { module: module.clone(), cause })?;
    Ok(ModuleMetadata {
        default_path: info.default_path,
        cors: info.cors.map(|c| CorsDefaults { methods: c.methods, headers: c.headers, credentials: c.credentials }),
        options: info.options,
        serve_bare_path: info.serve_bare_path,
        streaming_uploads: info.streaming_uploads,
    })
}
