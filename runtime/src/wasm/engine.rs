//! The one wasmtime [`Engine`] every module runs on: component model,
//! epoch interruption driven by a ticker thread, and the pooling allocator
//! when this machine's address space allows it.

use std::time::Duration;

use wasmtime::{
    Cache, CacheConfig, Config, Enabled, Engine, InstanceAllocationStrategy, Memory, MemoryType,
    PoolingAllocationConfig, Store, UpdateDeadline,
};

use super::InstanceState;
use crate::config::ModuleLimits;

/// How often the epoch advances. Guests yield to tokio at each tick, and
/// deadlines are counted in ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Builds the engine and starts its epoch ticker (which stops when the
/// engine is dropped).
pub fn build(limits: &ModuleLimits) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    if pooling_is_available() {
        let instances = limits.pool_size;
        let mut pool = PoolingAllocationConfig::default();
        // One component instance holds several core instances, memories and
        // tables (wasm-hosts.md §2: 500 live instances exhausted 1000 core
        // instances), so those totals are multiples of the instance count.
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(4))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(2))
            .total_stacks(instances)
            .max_memory_size(usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX))
            // Warm slots keep their resident pages; bound how many there are.
            .max_unused_warm_slots((instances / 10).min(32))
            // Resetting an instance's memory with madvise costs TLB-shootdown
            // IPIs across cores, which dominated a profile of the hello
            // benchmark: reset the pages a request dirtied in place instead
            // (PAGEMAP_SCAN on Linux 6.7+), and batch what is decommitted.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(128 << 10)
            .decommit_batch_size(64);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    } else {
        tracing::warn!(
            "pooling allocator unavailable (address space too small); modules instantiate on demand, which is slower"
        );
    }
    match compile_cache() {
        Ok(cache) => {
            tracing::debug!("compiled modules are cached in {}", cache.directory().display());
            config.cache(Some(cache));
        }
        Err(error) => tracing::warn!("no compile cache, modules are compiled on every start: {error:#}"),
    }
    let engine = Engine::new(&config)?;
    start_epoch_ticker(engine.weak());
    Ok(engine)
}

/// wasmtime's on-disk compile cache, so restarts and reloads of modules it
/// has seen skip compiling: `$CANTO_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/canto`, else `~/.cache/canto`.
fn compile_cache() -> wasmtime::Result<Cache> {
    let dir = std::env::var_os("CANTO_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| std::path::PathBuf::from(d).join("canto")))
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/canto")))
        .ok_or_else(|| wasmtime::Error::msg("no cache directory: set CANTO_CACHE_DIR or HOME"))?;
    let mut config = CacheConfig::new();
    config.with_directory(dir);
    Cache::new(config)
}

/// Pooling reserves a large slab of virtual memory up front; probe for it
/// as `wasmtime serve` does, so small-VA machines still start.
fn pooling_is_available() -> bool {
    let mut config = Config::new();
    config.wasm_memory64(true).memory_reservation(1 << 42);
    let Ok(engine) = Engine::new(&config) else { return false };
    let mut store = Store::new(&engine, ());
    Memory::new(&mut store, MemoryType::new64(0, None)).is_ok()
}

fn start_epoch_ticker(engine: wasmtime::EngineWeak) {
    let spawned = std::thread::Builder::new().name("canto-epoch".into()).spawn(move || {
        while let Some(engine) = engine.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(EPOCH_TICK);
        }
    });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the epoch thread; module deadlines will not be enforced");
    }
}

/// Ticks in a wall-clock budget, at least one.
pub fn ticks(budget: Duration) -> u64 {
    (budget.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// Gives a guest its CPU budget: it yields to other tasks at every epoch
/// tick and is interrupted once `budget` of running time is used.
pub fn deadline(store: &mut Store<InstanceState>, budget: Duration) {
    let budget = ticks(budget);
    let mut used = 0;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        used += 1;
        if used >= budget {
            return Ok(UpdateDeadline::Interrupt);
        }
        // Yield through tokio's queue so a busy guest shares the worker.
        Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
    });
}
