//! Shared helpers of the unit tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, sync::Arc};

pub use crate::host::FakeHost;
use crate::{
    app,
    control::{Collaborators, Controller, ControllerParts},
    events::EventBus,
    reconcile::StatusBoard,
    state::StateStore,
    step::{Step, StepName},
};

/// This build's steps, the services step keeping its files under `dir`
/// (never starting anything unless applied).
pub fn steps(dir: &Path) -> Vec<Arc<dyn Step>> {
    wired(
        dir,
        crate::storage::Storage::linux(&dir.join("state"), None),
    )
    .0
}

/// This build's steps with `storage`, and services keeping their files
/// under `dir`, with the collaborators over them ([`FakeHost`]; the
/// network over a fake host).
pub fn wired(dir: &Path, storage: crate::storage::Storage) -> (Vec<Arc<dyn Step>>, Collaborators) {
    let supervisor = tfagent_supervisor::Supervisor::new(
        tfagent_supervisor::SupervisorConfig {
            record_dir: dir.join("records"),
            log_dir: dir.join("logs"),
            cgroups: tfagent_supervisor::cgroup::CgroupLayout::None,
            cgroup_parent: "unused".into(),
        },
        tokio_util::sync::CancellationToken::new(),
    );
    let network = Arc::new(network_step());
    let (vip, vip_engine) = vip_step(dir, &supervisor, network.clone());
    app::Wiring {
        storage,
        network,
        services: crate::services::Services::new(
            supervisor,
            crate::services::ServicePaths::under(dir),
        ),
        vip,
        vip_engine,
        host: Arc::new(FakeHost),
    }
    .assemble()
}

/// A controller over a state dir, with this build's steps and [`FakeHost`];
/// its services keep their files in `<state_dir>.services`.
pub fn controller(state_dir: &Path) -> Arc<Controller> {
    let storage = crate::storage::Storage::linux(state_dir, None);
    let (steps, collaborators) = wired(&state_dir.with_extension("services"), storage);
    Arc::new(controller_over(state_dir, steps, collaborators))
}

/// A controller over `steps` and `collaborators`, its state in `state_dir`,
/// with a fresh status board and event bus and no remote API.
pub fn controller_over(
    state_dir: &Path,
    steps: Vec<Arc<dyn Step>>,
    collaborators: Collaborators,
) -> Controller {
    let (store, loaded) = StateStore::open(state_dir).unwrap();
    Controller::new(ControllerParts {
        store,
        loaded,
        steps,
        status: Arc::new(StatusBoard::new(&StepName::ORDER)),
        events: Arc::new(EventBus::default()),
        collaborators,
        remote_api: None,
    })
}

/// A vip step and its engine over fakes; the engine never runs (its task
/// is dropped): configuring it only records the config.
pub fn vip_step(
    dir: &Path,
    supervisor: &tfagent_supervisor::Supervisor,
    router: Arc<dyn crate::vip::VipRouter>,
) -> (crate::vip::VipStep, crate::vip::VipEngine) {
    let paths = crate::services::ServicePaths::under(dir);
    let settings = crate::vip::VipSettings {
        keepalived: "/nonexistent/keepalived".into(),
        dir: dir.join("vip"),
        readiness: crate::vip::default_readiness(&paths),
    };
    let fakes = crate::vip::fake::FakeParts::new(&crate::vip::fake::FakeMesh::default());
    let (engine, _task) = crate::vip::VipEngine::new(
        crate::vip::engine::EngineParts {
            router,
            ..fakes.engine_parts()
        },
        tokio_util::sync::CancellationToken::new(),
    );
    (
        crate::vip::VipStep::new(
            settings,
            Arc::new(supervisor.clone()),
            engine.clone(),
            fakes.files,
        ),
        engine,
    )
}

/// A network step over a fake host, with a fixed-seed-free fresh key.
pub fn network_step() -> crate::network::NetworkStep {
    crate::network::NetworkStep::new(
        crate::network::Backend::Userspace,
        Arc::new(tfagent_spec::KeyPair::generate()),
        crate::network::fake::FakeNet::default().host(),
    )
}
