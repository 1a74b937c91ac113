#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::Duration;

use tfagent_spec::{NodeSpec, ValidationContext, fixtures::example_document};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::{
    network::Backend,
    reconcile,
    services::ServicePaths,
    state::trial::{self, Trial},
    step::{StepError, StepName, StepOutcome},
    test_support::{FakeHost, controller, controller_over},
};

/// The spec the controller's reconciler would follow.
fn current(controller: &Controller) -> Option<Arc<Desired>> {
    controller.watch_desired().borrow().clone()
}

/// The example with a different node name per `n`, so each is a change.
fn variant(n: usize) -> SpecDocument {
    let mut document = example_document("agent");
    document.node_name = format!("variant-{n}");
    document
}

#[tokio::test]
async fn a_server_serves_its_kubeconfig_at_the_vip_and_an_agent_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    // Where the test controller's services keep their files.
    let paths = ServicePaths::under(&tmp.path().join("state.services"));
    let controller = controller(&tmp.path().join("state"));
    let refused = controller.kubeconfig().unwrap_err().to_string();
    assert!(refused.contains("no spec"), "{refused}");

    controller
        .apply(
            example_document("server-init"),
            ApplyMode::Apply,
            ApplyRights::All,
        )
        .await
        .unwrap();
    // k3s has not written it yet.
    let early = controller.kubeconfig().unwrap_err().to_string();
    assert!(early.contains("k3s up yet"), "{early}");
    std::fs::create_dir_all(&paths.config_dir).unwrap();
    std::fs::write(
        paths.k3s_kubeconfig(),
        "clusters:\n- cluster:\n    server: https://127.0.0.1:6443\n  name: default\nusers:\n- name: default\n  user:\n    client-key-data: S0VZ\n",
    )
    .unwrap();
    let text = controller.kubeconfig().unwrap();
    assert!(text.contains("server: https://10.100.0.250:6443"), "{text}");
    assert!(text.contains("client-key-data: S0VZ"), "{text}");

    controller
        .apply(
            example_document("agent"),
            ApplyMode::Apply,
            ApplyRights::All,
        )
        .await
        .unwrap();
    let agent = controller.kubeconfig().unwrap_err().to_string();
    assert!(agent.contains("only servers"), "{agent}");
}

#[tokio::test]
async fn concurrent_applies_get_distinct_consecutive_generations() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = controller(tmp.path());
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let controller = Arc::clone(&controller);
            tokio::spawn(async move {
                controller
                    .apply(variant(n), ApplyMode::Apply, ApplyRights::All)
                    .await
            })
        })
        .collect();
    let mut generations = Vec::new();
    for task in tasks {
        let outcome = task.await.unwrap().unwrap();
        assert!(outcome.changed);
        generations.push(outcome.generation);
    }
    generations.sort_unstable();
    assert_eq!(generations, (1..=16).collect::<Vec<_>>());

    // The stored spec is the one that got the last generation.
    let (generation, stored) = controller.redacted_spec().unwrap();
    assert_eq!(generation, 16);
    let reloaded = crate::state::read_stored(tmp.path()).unwrap().unwrap();
    assert_eq!(reloaded.generation, 16);
    assert_eq!(reloaded.spec.node_name.to_string(), stored.node_name);
}

#[tokio::test]
async fn a_try_whose_commit_fails_leaves_no_trial_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = controller(tmp.path());
    controller
        .apply(variant(1), ApplyMode::Apply, ApplyRights::All)
        .await
        .unwrap();
    let spec = tmp.path().join("spec.json");
    std::fs::remove_file(&spec).unwrap();
    std::fs::create_dir(&spec).unwrap();
    controller
        .apply(
            variant(2),
            ApplyMode::Try(Duration::from_secs(60)),
            ApplyRights::All,
        )
        .await
        .unwrap_err();
    assert!(
        trial::load(tmp.path(), &ValidationContext::default())
            .unwrap()
            .is_none(),
        "a record of generation 2 would revert the next spec stored as 2"
    );
    assert!(controller.status().trial.is_none());
}

#[tokio::test]
async fn a_failed_write_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = controller(tmp.path());
    controller
        .apply(variant(1), ApplyMode::Apply, ApplyRights::All)
        .await
        .unwrap();
    let mut desired = controller.watch_desired();
    desired.borrow_and_update();

    // A directory where the spec file goes makes the rename fail, even
    // for root (file permissions would not stop root).
    let spec = tmp.path().join("spec.json");
    std::fs::remove_file(&spec).unwrap();
    std::fs::create_dir(&spec).unwrap();
    let error = controller
        .apply(variant(2), ApplyMode::Apply, ApplyRights::All)
        .await
        .unwrap_err();
    assert!(matches!(error, ControlError::State(_)), "{error}");
    assert!(error.to_string().contains("spec.json"), "{error}");

    let (generation, document) = controller.redacted_spec().unwrap();
    assert_eq!((generation, document.node_name.as_str()), (1, "variant-1"));
    assert!(
        !desired.has_changed().unwrap(),
        "the reconciler was not told"
    );
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name != "spec.json" && name != "lock")
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[tokio::test]
async fn dry_run_never_stores_or_publishes() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = controller(tmp.path());
    let outcome = controller
        .apply(variant(1), ApplyMode::DryRun, ApplyRights::All)
        .await
        .unwrap();
    assert_eq!((outcome.generation, outcome.changed), (0, true));
    assert_eq!(outcome.plan.len(), StepName::ORDER.len());
    assert!(controller.redacted_spec().is_none());
    assert!(controller.subscribe().0.is_empty());
    assert!(!tmp.path().join("spec.json").exists());
}

#[tokio::test]
async fn a_refused_stored_spec_is_reported_and_generations_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("spec.json"),
        r#"{"generation": 41, "spec": {"node_name": "Bad_Name"}}"#,
    )
    .unwrap();
    let first = controller(tmp.path());
    let status = first.status();
    let refused = status.refused_spec.unwrap();
    assert!(refused.reason.contains("node_name"), "{}", refused.reason);
    assert_eq!(status.desired_generation, 0);
    drop(first);

    // Restarted before any new spec: still reported, still counted.
    let controller = controller(tmp.path());
    let refused = controller.status().refused_spec.unwrap();
    assert!(
        refused.reason.contains("earlier start"),
        "{}",
        refused.reason
    );
    assert!(refused.reason.contains("node_name"), "{}", refused.reason);
    assert_eq!(refused.generation, 41);

    let outcome = controller
        .apply(variant(1), ApplyMode::Apply, ApplyRights::All)
        .await
        .unwrap();
    assert_eq!(
        outcome.generation, 42,
        "never reuses the refused generation"
    );
    assert!(controller.status().refused_spec.is_none());
    assert!(!tmp.path().join("spec.json.refused").exists());
}

#[tokio::test]
async fn a_cancelled_apply_leaves_disk_and_memory_agreeing() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = controller(tmp.path());
    for n in 0..40 {
        let task = tokio::spawn({
            let controller = Arc::clone(&controller);
            async move {
                controller
                    .apply(variant(n), ApplyMode::Apply, ApplyRights::All)
                    .await
            }
        });
        // Give up on the call at varying points of its progress.
        for _ in 0..n % 8 {
            tokio::task::yield_now().await;
        }
        task.abort();
        let _ = task.await;
        let Some(stored) = current(&controller) else {
            continue;
        };
        // Re-applying the current spec waits for a commit still running.
        let settled = controller
            .apply(
                stored.spec.to_document(),
                ApplyMode::Apply,
                ApplyRights::All,
            )
            .await
            .unwrap();
        let memory = current(&controller).unwrap();
        assert_eq!(settled.generation, memory.generation);
        let on_disk = crate::state::read_stored(tmp.path()).unwrap();
        assert_eq!(on_disk.as_ref(), Some(memory.as_ref()), "after attempt {n}");
    }
}

/// A step that records its teardowns, and fails them when told.
#[derive(Debug)]
struct RecordingStep {
    name: StepName,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    fail: bool,
}

#[async_trait::async_trait]
impl Step for RecordingStep {
    fn name(&self) -> StepName {
        self.name
    }

    async fn plan(&self, _desired: &NodeSpec) -> Result<Vec<String>, StepError> {
        Ok(Vec::new())
    }

    /// Takes a while, so a reset can arrive in the middle of a pass.
    async fn converge(&self, _desired: &NodeSpec) -> Result<StepOutcome, StepError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("converge-start {}", self.name));
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.log
            .lock()
            .unwrap()
            .push(format!("converge-end {}", self.name));
        Ok(StepOutcome::UpToDate)
    }

    async fn teardown(&self, last: &NodeSpec) -> Result<Vec<String>, StepError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("{} {}", self.name, last.node_name));
        if self.fail {
            return Err(StepError::Apply {
                change: "take down".into(),
                source: "injected".into(),
            });
        }
        Ok(vec![format!("{} done", self.name)])
    }
}

fn recording_controller(
    dir: &std::path::Path,
    failing: Option<StepName>,
) -> (Controller, Arc<std::sync::Mutex<Vec<String>>>) {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let steps: Vec<Arc<dyn Step>> = StepName::ORDER
        .iter()
        .map(|&name| {
            Arc::new(RecordingStep {
                name,
                log: Arc::clone(&log),
                fail: failing == Some(name),
            }) as Arc<dyn Step>
        })
        .collect();
    let parts = fake::collaborators(Arc::new(FakeHost), &dir.with_extension("host"));
    (controller_over(dir, steps, parts), log)
}

#[tokio::test]
async fn a_reset_takes_the_steps_down_in_reverse_order_and_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (controller, log) = recording_controller(tmp.path(), None);
    controller
        .apply(variant(1), ApplyMode::Apply, ApplyRights::All)
        .await
        .unwrap();
    let outcome = controller.reset("variant-1").await.unwrap();
    assert_eq!(outcome.generation, 1);
    assert_eq!(
        *log.lock().unwrap(),
        [
            "addons variant-1",
            "vip variant-1",
            "services variant-1",
            "network variant-1",
            "storage variant-1"
        ]
    );
    assert_eq!(outcome.actions[0], "addons done");
    assert!(current(&controller).is_none());
    assert!(
        controller
            .status()
            .steps
            .iter()
            .all(|s| s.message.starts_with("reset"))
    );
    drop(controller);
    let (restarted, _) = recording_controller(tmp.path(), None);
    assert!(current(&restarted).is_none(), "the reset is on disk");
    let next = restarted
        .apply(variant(2), ApplyMode::Apply, ApplyRights::All)
        .await
        .unwrap();
    assert_eq!(next.generation, 2);
}

#[tokio::test]
async fn a_reset_waits_for_the_pass_under_way_and_no_pass_of_the_old_spec_follows() {
    let tmp = tempfile::tempdir().unwrap();
    let (controller, log) = recording_controller(tmp.path(), None);
    let controller = Arc::new(controller);
    let reconciler = reconcile::Reconciler::new(
        controller.steps.clone(),
        Arc::clone(&controller.status),
        Arc::new(EventBus::default()),
        Duration::from_millis(20),
    );
    let shutdown = CancellationToken::new();
    let reconciling = tokio::spawn(reconciler.run(controller.watch_desired(), shutdown.clone()));
    controller
        .apply(variant(1), ApplyMode::Apply, ApplyRights::All)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while !log
        .lock()
        .unwrap()
        .iter()
        .any(|e| e == "converge-end storage")
    {
        assert!(started.elapsed() < Duration::from_secs(10), "no pass");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // In the middle of a pass.
    controller.reset("variant-1").await.unwrap();
    let entries = log.lock().unwrap().clone();
    let teardown = entries
        .iter()
        .position(|e| e == "addons variant-1")
        .unwrap();
    assert_eq!(
        entries[teardown - 1],
        "converge-end addons",
        "the pass ended before the teardown began: {entries:?}"
    );
    // Resyncs come every 20 ms: none converges the forgotten spec.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(*log.lock().unwrap(), entries, "a pass ran after the reset");
    shutdown.cancel();
    reconciling.await.unwrap();
}

#[tokio::test]
async fn a_failed_teardown_keeps_the_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let (controller, log) = recording_controller(tmp.path(), Some(StepName::Services));
    controller
        .apply(variant(1), ApplyMode::Apply, ApplyRights::All)
        .await
        .unwrap();
    let error = controller.reset("variant-1").await.unwrap_err();
    assert!(
        matches!(
            error,
            ControlError::Reset {
                step: StepName::Services,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("stays stored"), "{error}");
    assert_eq!(log.lock().unwrap().len(), 3, "stops at the failing step");
    assert_eq!(current(&controller).unwrap().generation, 1);
    assert!(tmp.path().join("spec.json").exists());
}

#[tokio::test]
async fn a_reset_ends_a_trial_so_nothing_is_restored_later() {
    let tmp = tempfile::tempdir().unwrap();
    let (controller, _) = recording_controller(tmp.path(), None);
    controller
        .apply(variant(1), ApplyMode::Apply, ApplyRights::All)
        .await
        .unwrap();
    controller
        .apply(
            variant(2),
            ApplyMode::Try(Duration::from_millis(300)),
            ApplyRights::All,
        )
        .await
        .unwrap();
    controller.reset("variant-2").await.unwrap();
    assert!(!tmp.path().join(trial::TRIAL_FILE).exists());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        current(&controller).is_none(),
        "the trial's revert was called off"
    );
    assert!(controller.status().trial.is_none());
}

async fn wait_for_generation(controller: &Controller, generation: u64) -> Duration {
    let start = std::time::Instant::now();
    while current(controller).map(|c| c.generation) != Some(generation) {
        assert!(start.elapsed() < Duration::from_secs(10), "no revert");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn a_try_without_confirm_is_reverted_at_its_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = controller(tmp.path());
    let refused = controller
        .apply(
            variant(1),
            ApplyMode::Try(Duration::from_secs(1)),
            ApplyRights::All,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ControlError::Precondition(_)),
        "{refused}"
    );
    controller
        .apply(variant(1), ApplyMode::Apply, ApplyRights::All)
        .await
        .unwrap();
    let outcome = controller
        .apply(
            variant(2),
            ApplyMode::Try(Duration::from_millis(500)),
            ApplyRights::All,
        )
        .await
        .unwrap();
    assert_eq!((outcome.generation, outcome.changed), (2, true));
    assert!(tmp.path().join(trial::TRIAL_FILE).exists());
    assert_eq!(controller.status().trial.unwrap().generation, 2);
    // Nothing else is applied while a trial runs; the same spec is fine.
    let busy = controller
        .apply(variant(3), ApplyMode::Apply, ApplyRights::All)
        .await
        .unwrap_err();
    assert!(
        busy.to_string().contains("generation 2 is on trial"),
        "{busy}"
    );
    let again = controller
        .apply(variant(2), ApplyMode::Apply, ApplyRights::All)
        .await
        .unwrap();
    assert_eq!((again.generation, again.changed), (2, false));

    let waited = wait_for_generation(&controller, 3).await;
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    let (_, document) = controller.redacted_spec().unwrap();
    assert_eq!(document.node_name, "variant-1");
    let status = controller.status();
    assert!(status.trial.is_none());
    assert!(
        status
            .last_trial
            .unwrap()
            .contains("reverted as generation 3")
    );
    assert!(!tmp.path().join(trial::TRIAL_FILE).exists());
    let late = controller.confirm(2).await.unwrap_err();
    assert!(late.to_string().contains("reverted"), "{late}");
}

#[tokio::test]
async fn a_confirmed_try_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = controller(tmp.path());
    controller
        .apply(variant(1), ApplyMode::Apply, ApplyRights::All)
        .await
        .unwrap();
    controller
        .apply(
            variant(2),
            ApplyMode::Try(Duration::from_millis(300)),
            ApplyRights::All,
        )
        .await
        .unwrap();
    let wrong = controller.confirm(1).await.unwrap_err();
    assert!(wrong.to_string().contains("generation 2 is"), "{wrong}");
    assert_eq!(controller.confirm(2).await.unwrap(), 2);
    assert!(!tmp.path().join(trial::TRIAL_FILE).exists());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (generation, document) = controller.redacted_spec().unwrap();
    assert_eq!((generation, document.node_name.as_str()), (2, "variant-2"));
    assert!(controller.confirm(2).await.is_err());
    // Applies go on as usual after it.
    let next = controller
        .apply(variant(3), ApplyMode::Apply, ApplyRights::All)
        .await
        .unwrap();
    assert_eq!(next.generation, 3);
}

#[tokio::test]
async fn a_trial_left_by_an_earlier_run_is_reverted_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let first = controller(tmp.path());
        first
            .apply(variant(1), ApplyMode::Apply, ApplyRights::All)
            .await
            .unwrap();
        first
            .apply(variant(2), ApplyMode::Apply, ApplyRights::All)
            .await
            .unwrap();
    }
    // As if the agent died inside the window of a try of generation 2.
    let previous = variant(1).validate(&ValidationContext::default()).unwrap();
    let trial = Trial {
        generation: 2,
        deadline: SystemTime::now() + Duration::from_millis(300),
        previous,
    };
    trial::save(tmp.path(), &trial).unwrap();
    let restarted = controller(tmp.path());
    restarted.resume_trial().unwrap();
    assert_eq!(restarted.status().trial.unwrap().generation, 2);
    wait_for_generation(&restarted, 3).await;
    let (_, document) = restarted.redacted_spec().unwrap();
    assert_eq!(document.node_name, "variant-1");
}

#[tokio::test]
async fn the_nodes_own_key_is_refused_as_a_peer_and_shown_in_info() {
    let tmp = tempfile::tempdir().unwrap();
    let network = Arc::new(crate::test_support::network_step());
    let own = network.public_key();
    let mut parts = fake::collaborators(Arc::new(FakeHost), &tmp.path().join("host"));
    parts.mesh = network;
    let controller = controller_over(&tmp.path().join("state"), vec![], parts);
    let info = controller.info().await.unwrap();
    assert_eq!(info.wireguard_public_key, own);
    assert_eq!(info.wireguard_backend, Backend::Userspace);
    let mut document = variant(1);
    document.network.wireguard.peers[0].public_key = own.to_string();
    let error = controller
        .apply(document, ApplyMode::Apply, ApplyRights::All)
        .await
        .unwrap_err();
    assert!(matches!(error, ControlError::Invalid(_)), "{error}");
    assert!(error.to_string().contains("public_key"), "{error}");
}

/// Issue 18: apply refuses a volume or persisted path on the agent's state
/// dir, its parent, inside it, on its run dir, or through a symlink on the
/// host, naming the field; nothing is stored, so nothing reaches the host.
#[tokio::test]
async fn mount_targets_on_the_agents_own_dirs_or_through_symlinks_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let controller = controller(&state);
    let run = ServicePaths::under(&state.with_extension("services")).run_dir;
    std::fs::create_dir(tmp.path().join("real")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("real"), tmp.path().join("link")).unwrap();
    let text = |path: &std::path::Path| path.to_str().unwrap().to_owned();
    let cases = [
        (text(&state), "state dir"),
        (text(tmp.path()), "state dir"),
        (text(&state.join("x")), "state dir"),
        (text(&run), "run dir"),
        (text(&run.join("containerd")), "run dir"),
        (text(&tmp.path().join("link/data")), "is a symlink"),
        (text(&tmp.path().join("link")), "is a symlink"),
    ];
    for (path, needle) in cases {
        let mut volume = example_document("server-init");
        volume.storage.volumes.retain(|v| v.device.is_none());
        volume.storage.volumes[0].mount_point = path.clone();
        let mut persisted = volume.clone();
        persisted.storage.volumes[0].mount_point = "/srv/data".into();
        persisted.storage.persist.paths = vec![tfagent_spec::PersistPathDoc {
            path: path.clone(),
            ..Default::default()
        }];
        for (document, field) in [
            (volume, "storage.volumes[0].mount_point"),
            (persisted, "storage.persist.paths[0].path"),
        ] {
            let error = controller
                .apply(document, ApplyMode::Apply, ApplyRights::All)
                .await
                .unwrap_err();
            let shown = error.to_string();
            assert!(
                matches!(error, ControlError::Invalid(_))
                    && shown.contains(&format!("{field}: "))
                    && shown.contains(needle),
                "{path} as {field}: {shown}"
            );
        }
    }
    assert!(current(&controller).is_none());
}

#[tokio::test]
async fn operator_rights_never_change_a_binary_on_trial_or_after_one() {
    let tmp = tempfile::tempdir().unwrap();
    let parts = fake::collaborators(Arc::new(FakeHost), &tmp.path().join("host"));
    let controller = controller_over(&tmp.path().join("state"), vec![], parts);
    let operator = ApplyRights::NotRootFields;
    controller
        .apply(variant(1), ApplyMode::Apply, operator)
        .await
        .unwrap();
    let mut other = variant(2);
    other.services.containerd.binary = "/opt/containerd".into();
    for mode in [
        ApplyMode::DryRun,
        ApplyMode::Apply,
        ApplyMode::Try(Duration::from_secs(60)),
    ] {
        let error = controller
            .apply(other.clone(), mode, operator)
            .await
            .unwrap_err();
        assert!(
            matches!(error, ControlError::PermissionDenied(_)),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .starts_with("services.containerd.binary: "),
            "{error}"
        );
    }
    assert_eq!(current(&controller).unwrap().generation, 1);
    // An admin's change stands; an operator's spec keeping it is fine.
    controller
        .apply(other.clone(), ApplyMode::Apply, ApplyRights::All)
        .await
        .unwrap();
    other.node_name = "variant-3".into();
    let outcome = controller
        .apply(other, ApplyMode::Apply, operator)
        .await
        .unwrap();
    assert_eq!(outcome.generation, 3);
}

#[tokio::test]
async fn a_binary_the_host_refuses_is_refused_even_for_an_admin() {
    let tmp = tempfile::tempdir().unwrap();
    let parts = fake::collaborators(Arc::new(FakeHost), &tmp.path().join("host"));
    let controller = controller_over(&tmp.path().join("state"), vec![], parts);
    let mut document = variant(1);
    document.services.k3s.binary = "/untrusted/k3s".into();
    let error = controller
        .apply(document, ApplyMode::Apply, ApplyRights::All)
        .await
        .unwrap_err();
    assert!(matches!(error, ControlError::Invalid(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains("services.k3s.binary: not run as root: /untrusted is writable by others"),
        "{error}"
    );
}

#[test]
fn the_host_checks_the_default_binary_when_a_field_is_empty() {
    let mut document = variant(1);
    document.services.containerd.binary = String::new();
    document.services.k3s.binary = "/opt/k3s".into();
    assert_eq!(
        apply::effective_binaries(&document),
        ["/usr/bin/containerd", "/opt/k3s"]
    );
}
