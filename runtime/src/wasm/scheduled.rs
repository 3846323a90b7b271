//! A module's `scheduled-handler` export: one run in a fresh instance, with
//! the mount's grants and the request budgets. When runs happen is the
//! server's business (`server::schedule`).

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::WasmError;
use super::bindings::scheduled::ScheduledProviderPre;
use super::host_state::{InstanceState, MountIdentity, SandboxLimits};

/// A module's `scheduled-handler` export, found when it is loaded.
pub struct ScheduledSupport {
    pre: ScheduledProviderPre<InstanceState>,
}

impl ScheduledSupport {
    pub(super) fn find(pre: InstancePre<InstanceState>) -> Option<Self> {
        ScheduledProviderPre::new(pre).ok().map(|pre| Self { pre })
    }

    /// Runs `run` once; the module's answer is the seconds until the next
    /// run, or why this one failed.
    pub async fn run(
        &self,
        mount: Arc<MountIdentity>,
        sandbox: &SandboxLimits,
        (cpu, wall): (Duration, Duration),
    ) -> Result<Result<u32, String>, WasmError> {
        let module = mount.module.clone();
        let mut store = Store::new(self.pre.engine(), InstanceState::new(mount, None, sandbox));
        store.limiter(|state| &mut state.limits);
        super::engine::deadline(&mut store, cpu);
        let call = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            instance.canto_http_scheduled_handler().call_run(&mut store).await
        };
        super::websocket::settle(module, tokio::time::timeout(wall, call).await)
    }
}
