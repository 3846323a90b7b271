//! Modules' scheduled runs (`canto:http/scheduled-handler`): one task per
//! host and module that exports it, started once the module is mounted and
//! stopped when it no longer is (a reload) or the server stops. A run takes
//! a module slot as a request does, runs in a fresh instance with the
//! mount's grants, and is logged and counted like one; the module says when
//! it wants the next.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::mounts::ServerState;
use crate::metrics::ModuleOutcome;
use crate::routing::Mount;
use crate::wasm::{SandboxLimits, WasmError};

/// The first run, once a module is mounted.
const FIRST_RUN: Duration = Duration::from_secs(1);
/// The next try after a run that failed.
const AFTER_FAILURE: Duration = Duration::from_secs(60);
/// The longest a module may ask to wait.
const LONGEST_WAIT: u64 = 86_400;

/// A schedule's host and module.
type Key = (Arc<str>, Arc<str>);

/// Every running schedule, across reloads.
pub(crate) struct Schedules {
    /// `None` once the server is stopping: nothing is scheduled again (a
    /// reload finishing during shutdown must not start anything).
    tasks: Mutex<Option<HashMap<Key, JoinHandle<()>>>>,
}

impl Schedules {
    /// Starts a schedule for each mounted module that has one, and stops
    /// those whose module is no longer mounted. A module replaced by a new
    /// version keeps its schedule: each run uses the version mounted then.
    pub fn sync(&self, live: &Arc<ArcSwap<ServerState>>) {
        let state = live.load();
        let wanted: HashSet<Key> = state
            .hosts
            .mounts()
            .filter(|mount| mount.module.scheduled.is_some())
            .map(|mount| (Arc::clone(&mount.host), Arc::clone(&mount.module.name)))
            .collect();
        let Ok(mut guard) = self.tasks.lock() else { return };
        let Some(tasks) = guard.as_mut() else { return };
        tasks.retain(|key, task| {
            let keep = wanted.contains(key) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for key in wanted {
            tasks.entry(key.clone()).or_insert_with(|| {
                let span = tracing::info_span!("scheduled", vhost = %key.0, module = %key.1);
                tokio::spawn(run_schedule(Arc::clone(live), key).instrument(span))
            });
        }
    }

    /// Stops every schedule (the server is stopping).
    pub fn stop_all(&self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for (_, task) in tasks.take().into_iter().flatten() {
                task.abort();
            }
        }
    }
}

impl Default for Schedules {
    fn default() -> Self {
        Self { tasks: Mutex::new(Some(HashMap::new())) }
    }
}

impl Drop for Schedules {
    fn drop(&mut self) {
        self.stop_all();
    }
}

async fn run_schedule(live: Arc<ArcSwap<ServerState>>, (host, module): Key) {
    let mut wait = FIRST_RUN;
    loop {
        tokio::time::sleep(wait).await;
        let state = live.load_full();
        let Some(mount) = state.hosts.mounts().find(|m| m.host == host && m.module.name == module) else { return };
        wait = run_once(&state, mount).await;
    }
}

/// One run; says how long until the next.
async fn run_once(state: &ServerState, mount: &Mount) -> Duration {
    let module = &mount.module.name;
    let Some(handler) = &mount.module.scheduled else { return AFTER_FAILURE };
    let started = Instant::now();
    let Ok(_permits) = state.module_slots(mount).await else { return AFTER_FAILURE };
    let sandbox = SandboxLimits::from(&state.limits);
    let budgets = (state.limits.timeout, state.limits.wall_timeout);
    let result = handler.run(Arc::clone(&mount.identity), &sandbox, budgets).await;
    let outcome = result.as_ref().map_or_else(WasmError::outcome, |_| ModuleOutcome::Answered);
    state.metrics.module_run(module, outcome);
    let took = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(Ok(seconds)) => {
            let next = u64::from(seconds).clamp(1, LONGEST_WAIT);
            tracing::info!(target: "canto::access", "scheduled run of {module} done in {took:.1} ms; next in {next} s");
            Duration::from_secs(next)
        }
        Ok(Err(why)) => {
            tracing::warn!("scheduled run of {module} failed after {took:.1} ms: {why}; next try in {AFTER_FAILURE:?}");
            AFTER_FAILURE
        }
        Err(error) => {
            tracing::error!("scheduled run failed: {error}; next try in {AFTER_FAILURE:?}");
            AFTER_FAILURE
        }
    }
}
