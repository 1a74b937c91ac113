//! The step over its fakes: what it writes, starts, restarts and stops.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::{
    fake::{FakeFiles, FakeSupervisor},
    *,
};
use crate::step::{Step, StepOutcome};
use tfagent_spec::fixtures::example_spec;

fn step() -> (
    Services<FakeSupervisor, FakeFiles>,
    FakeSupervisor,
    FakeFiles,
) {
    let (supervisor, files) = (FakeSupervisor::default(), FakeFiles::default());
    let step = Services::with_ports(supervisor.clone(), files.clone(), ServicePaths::default());
    (step, supervisor, files)
}

#[tokio::test]
async fn a_fresh_node_gets_its_files_then_containerd_then_k3s_and_nothing_more() {
    let (step, supervisor, files) = step();
    let spec = example_spec("server-init");
    assert_eq!(
        step.converge(&spec).await.unwrap(),
        StepOutcome::Applied { changes: 5 }
    );
    assert_eq!(
        files.take_calls(),
        [
            "write /run/tfagent/services/containerd.toml (600)",
            "write /run/tfagent/services/k3s-token (600)",
            "write /run/tfagent/services/k3s-config.yaml (600)",
        ]
    );
    assert_eq!(supervisor.take_calls(), ["start containerd", "start k3s"]);
    let token = files.contents(&step.paths().k3s_token()).unwrap();
    assert_eq!(
        token,
        format!("{}\n", spec.cluster.token.expose()).as_bytes()
    );

    // Unchanged: nothing is written or started again.
    assert_eq!(step.converge(&spec).await.unwrap(), StepOutcome::UpToDate);
    assert!(files.take_calls().is_empty());
    assert!(supervisor.take_calls().is_empty());
}

#[tokio::test]
async fn files_are_written_only_when_they_differ() {
    let (step, supervisor, files) = step();
    let spec = example_spec("agent");
    step.converge(&spec).await.unwrap();
    files.take_calls();
    supervisor.take_calls();

    // A new token: its file only; k3s reads it at its next start.
    let mut new_token = spec.clone();
    new_token.cluster.token = tfagent_spec::Secret::new("another-token-value-0123456789");
    step.converge(&new_token).await.unwrap();
    assert_eq!(
        files.take_calls(),
        ["write /run/tfagent/services/k3s-token (600)"]
    );
    assert!(supervisor.take_calls().is_empty());

    // Changed behind the agent's back, in mode only: written again.
    let path = step.paths().containerd_config();
    files.disk().files.get_mut(&path).unwrap().1 = 0o666;
    step.converge(&new_token).await.unwrap();
    assert_eq!(
        files.take_calls(),
        ["write /run/tfagent/services/containerd.toml (600)"]
    );
    assert!(supervisor.take_calls().is_empty());
}

#[tokio::test]
async fn a_changed_definition_restarts_and_changed_policies_update_in_place() {
    let (step, supervisor, files) = step();
    let spec = example_spec("server-init");
    step.converge(&spec).await.unwrap();
    supervisor.take_calls();
    files.take_calls();

    let mut more_sans = spec.clone();
    more_sans
        .cluster
        .tls_sans
        .push("api.example.org".parse().unwrap());
    let plan = Step::plan(&step, &more_sans).await.unwrap();
    assert_eq!(
        plan,
        [
            "write /run/tfagent/services/k3s-config.yaml (600)",
            "restart k3s with its new definition"
        ]
    );
    step.converge(&more_sans).await.unwrap();
    assert_eq!(
        files.take_calls(),
        ["write /run/tfagent/services/k3s-config.yaml (600)"]
    );
    assert_eq!(supervisor.take_calls(), ["restart k3s"]);

    // containerd runs with another stop timeout: its policies are updated,
    // the process is left alone.
    {
        let mut state = supervisor.state();
        let mut def = (*state.defs[0]).clone();
        def.stop_timeout = Duration::from_secs(1);
        state.defs[0] = Arc::new(def);
    }
    let plan = Step::plan(&step, &more_sans).await.unwrap();
    assert_eq!(plan, ["update containerd's policies"]);
    step.converge(&more_sans).await.unwrap();
    assert_eq!(supervisor.take_calls(), ["update containerd"]);
    assert!(files.take_calls().is_empty());
}

#[tokio::test]
async fn a_failed_start_names_the_change_after_the_files_are_written() {
    let (step, supervisor, files) = step();
    supervisor.state().refuse = Some("k3s".into());
    let error = step
        .converge(&example_spec("server-init"))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("start k3s: supervising k3s: "), "{error}");
    assert_eq!(files.take_calls().len(), 3);
    assert_eq!(supervisor.take_calls(), ["start containerd"]);

    supervisor.state().refuse = None;
    files.disk().refuse = Some(step.paths().k3s_token());
    files.disk().files.clear();
    let error = step
        .converge(&example_spec("server-init"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("write /run/tfagent/services/k3s-token (600): writing "),
        "{error}"
    );
    // Nothing after the failed write ran.
    assert_eq!(
        files.take_calls(),
        ["write /run/tfagent/services/containerd.toml (600)"]
    );
    assert!(supervisor.take_calls().is_empty());
}

#[tokio::test]
async fn teardown_stops_k3s_before_containerd_then_removes_the_files() {
    let (step, supervisor, files) = step();
    let spec = example_spec("server-init");
    step.converge(&spec).await.unwrap();
    supervisor.take_calls();
    files.take_calls();
    // Something else the supervisor runs stays.
    supervisor
        .ensure(tfagent_supervisor::ServiceDef::new(
            "keepalived".parse().unwrap(),
            vec!["/usr/sbin/keepalived".into()],
        ))
        .unwrap();
    supervisor.take_calls();

    let done = Step::teardown(&step, &spec).await.unwrap();
    assert_eq!(
        done,
        [
            "stop k3s",
            "stop containerd",
            "remove /run/tfagent/services/containerd.toml",
            "remove /run/tfagent/services/k3s-token",
            "remove /run/tfagent/services/k3s-config.yaml",
        ]
    );
    assert_eq!(supervisor.take_calls(), ["stop k3s", "stop containerd"]);
    assert_eq!(supervisor.names(), ["keepalived"]);
    assert!(files.disk().files.is_empty());

    // Again: nothing left to take back.
    assert!(Step::teardown(&step, &spec).await.unwrap().is_empty());
    assert!(supervisor.take_calls().is_empty());
}

#[tokio::test]
async fn resume_adopts_only_what_an_earlier_agent_left_running() {
    let supervisor = FakeSupervisor::default();
    let spec = example_spec("server-init");
    let paths = ServicePaths::default();
    assert!(resume(&supervisor, &spec, &paths).is_empty());

    // k3s alone cannot be adopted: containerd, its dependency, is not.
    supervisor.state().left_running.insert("k3s".into());
    assert!(resume(&supervisor, &spec, &paths).is_empty());

    supervisor.state().left_running.insert("containerd".into());
    let resumed = resume(&supervisor, &spec, &paths);
    assert_eq!(
        resumed.iter().map(ServiceName::as_str).collect::<Vec<_>>(),
        ["containerd", "k3s"]
    );
    assert_eq!(supervisor.take_calls(), ["adopt containerd", "adopt k3s"]);

    // Adopted, they are the step's: its pass changes nothing but files.
    let step = Services::with_ports(supervisor.clone(), FakeFiles::default(), paths);
    step.converge(&spec).await.unwrap();
    assert!(supervisor.take_calls().is_empty());
    assert!(resume(&supervisor, &spec, step.paths()).is_empty());
}
