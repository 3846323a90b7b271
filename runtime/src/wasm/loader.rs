//! Loading modules: each is compiled once per content version (read from
//! its file, or built in) and kept by content hash, so a reload that finds
//! a module unchanged reuses it, and a recent version swapped back in costs
//! no compile either.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::Linker;

use super::{InstanceState, LoadedModule, WasmError};
use crate::config::{Config, Location, ModuleSource};

/// Module versions kept loaded beyond the ones in use, so swapping back
/// (a rollback, or alternating deploys) costs no compile.
const SPARE_VERSIONS: usize = 8;

/// The modules a config enables, by (name, source).
pub type LoadedModules = HashMap<(String, ModuleSource), Arc<LoadedModule>>;

/// Why modules could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot start the wasm engine: {0:#}")]
    Engine(wasmtime::Error),
    #[error(transparent)]
    Module(#[from] WasmError),
    #[error("{at}: cannot read module {module} from {}: {source}", path.display())]
    ReadModule {
        at: Location,
        module: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Compiles modules once per content version.
pub struct ModuleLoader {
    engine: Engine,
    linker: Linker<InstanceState>,
    /// Loaded modules by (name, source, content hash).
    cache: HashMap<(String, ModuleSource, u64), Arc<LoadedModule>>,
}

/// Module name → content hash of the version being served.
pub type Versions = BTreeMap<String, u64>;

impl ModuleLoader {
    pub fn new(config: &Config) -> Result<Self, LoadError> {
        let engine = super::engine::build(&config.limits).map_err(LoadError::Engine)?;
        let linker = super::linker(&engine)?;
        Ok(Self { engine, linker, cache: HashMap::new() })
    }

    /// Every module the config enables, each loaded once however many hosts
    /// use it; unchanged ones come from the cache. On error the cache is
    /// left as it was.
    pub async fn load_all(&mut self, config: &Config) -> Result<(LoadedModules, Versions), LoadError> {
        let mut loaded = LoadedModules::new();
        let mut versions = Versions::new();
        let mut cache = HashMap::new();
        for host in &config.hosts {
            for enabled in &host.modules {
                let key = (enabled.name.clone(), enabled.source.clone());
                if loaded.contains_key(&key) {
                    continue;
                }
                let bytes = match &enabled.source {
                    ModuleSource::File(path) => {
                        tokio::fs::read(path).await.map_err(|source| LoadError::ReadModule {
                            at: enabled.at.clone(),
                            module: enabled.name.clone(),
                            path: path.clone(),
                            source,
                        })?
                    }
                    ModuleSource::Builtin => crate::builtin::bytes(&enabled.name).unwrap_or_default().to_vec(),
                };
                let hash = content_hash(&bytes);
                let cache_key = (enabled.name.clone(), enabled.source.clone(), hash);
                let module = match self.cache.get(&cache_key) {
                    Some(module) if module.concurrency_limit != config.limits.max_concurrency => {
                        Arc::new(module.with_concurrency(config.limits.max_concurrency))
                    }
                    Some(module) => Arc::clone(module),
                    None => {
                        let module =
                            LoadedModule::load(&self.engine, &self.linker, &enabled.name, &bytes, &config.limits)
                                .await?;
                        tracing::info!(module = enabled.name, version = %format!("{hash:016x}"), source = ?enabled.source, "loaded module");
                        Arc::new(module)
                    }
                };
                cache.insert(cache_key, Arc::clone(&module));
                versions.insert(enabled.name.clone(), hash);
                loaded.insert(key, module);
            }
        }
        let spare: Vec<_> =
            self.cache.drain().filter(|(key, _)| !cache.contains_key(key)).take(SPARE_VERSIONS).collect();
        cache.extend(spare);
        self.cache = cache;
        Ok((loaded, versions))
    }
}

fn content_hash(bytes: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}
