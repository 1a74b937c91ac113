#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;

use async_trait::async_trait;
use tfagent_spec::NodeSpec;

use super::*;
use crate::{events::Event, step::Capability};
use tfagent_spec::fixtures::example_spec;

/// What a fake step finds on its "host".
#[derive(Debug, Clone)]
enum Behaviour {
    UpToDate,
    Changes(usize),
    ObserveFails,
    ApplyFails,
}

#[derive(Debug)]
struct FakeStep {
    name: StepName,
    behaviour: Mutex<Behaviour>,
    log: Arc<Mutex<Vec<String>>>,
}

impl FakeStep {
    fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }
}

#[async_trait]
impl Capability for FakeStep {
    type Observed = Behaviour;
    type Change = String;

    fn step(&self) -> StepName {
        self.name
    }

    async fn observe(&self, _desired: &NodeSpec) -> Result<Behaviour, StepError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("observe {}", self.name));
        let behaviour = self.behaviour.lock().unwrap().clone();
        match behaviour {
            Behaviour::ObserveFails => Err(StepError::Observe {
                what: "the disks".into(),
                source: "no such device".into(),
            }),
            other => Ok(other),
        }
    }

    fn plan(_desired: &NodeSpec, observed: &Behaviour) -> Vec<String> {
        match observed {
            Behaviour::UpToDate | Behaviour::ObserveFails => vec![],
            Behaviour::Changes(n) => (0..*n).map(|i| format!("change {i}")).collect(),
            Behaviour::ApplyFails => vec!["doomed".into()],
        }
    }

    async fn apply(&self, _desired: &NodeSpec, changes: &[String]) -> Result<(), StepError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("apply {} x{}", self.name, changes.len()));
        if matches!(*self.behaviour.lock().unwrap(), Behaviour::ApplyFails) {
            return Err(StepError::Apply {
                change: changes[0].clone(),
                source: "device busy".into(),
            });
        }
        Ok(())
    }
}

struct Harness {
    steps: Vec<Arc<FakeStep>>,
    log: Arc<Mutex<Vec<String>>>,
    status: Arc<StatusBoard>,
    events: Arc<EventBus>,
    reconciler: Reconciler,
}

fn harness() -> Harness {
    let log = Arc::new(Mutex::new(Vec::new()));
    let steps: Vec<Arc<FakeStep>> = StepName::ORDER
        .iter()
        .map(|&name| {
            Arc::new(FakeStep {
                name,
                behaviour: Mutex::new(Behaviour::UpToDate),
                log: Arc::clone(&log),
            })
        })
        .collect();
    let status = Arc::new(StatusBoard::new(&StepName::ORDER));
    let events = Arc::new(EventBus::default());
    let dyn_steps: Vec<Arc<dyn Step>> = steps
        .iter()
        .map(|s| Arc::clone(s) as Arc<dyn Step>)
        .collect();
    let reconciler = Reconciler::new(
        dyn_steps,
        Arc::clone(&status),
        Arc::clone(&events),
        Duration::from_secs(60),
    );
    Harness {
        steps,
        log,
        status,
        events,
        reconciler,
    }
}

fn desired(generation: u64) -> Desired {
    Desired {
        generation,
        spec: example_spec("server-init"),
    }
}

fn step(h: &Harness, name: StepName) -> &FakeStep {
    h.steps.iter().find(|s| s.name == name).unwrap()
}

fn events_since(h: &Harness, after: u64) -> Vec<Event> {
    h.events
        .subscribe()
        .0
        .into_iter()
        .filter(|e| e.sequence > after)
        .collect()
}

#[tokio::test]
async fn steps_run_in_dependency_order() {
    let h = harness();
    assert!(h.reconciler.converge(&desired(1)).await);
    let log = h.log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            "observe storage",
            "observe network",
            "observe services",
            "observe vip",
            "observe addons"
        ]
    );
    for status in h.status.snapshot() {
        assert_eq!(status.condition, Condition::Converged);
        assert_eq!(status.converged_generation, 1);
    }
    assert_eq!(h.status.converged_generation(), 1);
}

#[tokio::test]
async fn a_plan_with_changes_is_applied_once() {
    let h = harness();
    step(&h, StepName::Network).set(Behaviour::Changes(3));
    assert!(h.reconciler.converge(&desired(1)).await);
    let applies: Vec<String> = h
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("apply"))
        .cloned()
        .collect();
    assert_eq!(applies, ["apply network x3"]);
    assert_eq!(
        h.status.get(StepName::Network).unwrap().message,
        "applied 3 change(s)"
    );
}

#[tokio::test]
async fn a_failed_step_blocks_the_later_ones_and_keeps_its_error() {
    let h = harness();
    step(&h, StepName::Network).set(Behaviour::ApplyFails);
    assert!(!h.reconciler.converge(&desired(1)).await);
    let network = h.status.get(StepName::Network).unwrap();
    assert_eq!(network.condition, Condition::Failed);
    assert_eq!(network.last_error.as_deref(), Some("doomed: device busy"));
    assert_eq!(network.converged_generation, 0);
    for later in [StepName::Services, StepName::Vip, StepName::Addons] {
        let status = h.status.get(later).unwrap();
        assert_eq!(status.condition, Condition::Blocked, "{later}");
        assert!(status.message.contains("network"));
    }
    assert!(
        !h.log.lock().unwrap().iter().any(|l| l.contains("services")),
        "blocked steps are not even planned"
    );
    assert_eq!(
        h.status.get(StepName::Storage).unwrap().condition,
        Condition::Converged
    );
    assert_eq!(h.status.converged_generation(), 0);

    // Once the fault is gone the next pass converges and clears the error.
    step(&h, StepName::Network).set(Behaviour::UpToDate);
    assert!(h.reconciler.converge(&desired(1)).await);
    let network = h.status.get(StepName::Network).unwrap();
    assert_eq!(network.condition, Condition::Converged);
    assert_eq!(network.last_error, None);
    assert_eq!(h.status.converged_generation(), 1);
}

#[tokio::test]
async fn an_observe_failure_is_a_failure() {
    let h = harness();
    step(&h, StepName::Storage).set(Behaviour::ObserveFails);
    assert!(!h.reconciler.converge(&desired(1)).await);
    let storage = h.status.get(StepName::Storage).unwrap();
    assert_eq!(storage.condition, Condition::Failed);
    assert!(storage.last_error.unwrap().contains("no such device"));
}

/// Counts what it is told.
#[derive(Debug, Default)]
struct CountingObserver(Mutex<Vec<(StepName, String)>>);

impl RunObserver for CountingObserver {
    fn step_ran(&self, step: StepName, result: Result<&StepOutcome, &StepError>, _took: Duration) {
        let result = match result {
            Ok(StepOutcome::UpToDate) => "up to date".to_owned(),
            Ok(StepOutcome::Applied { changes }) => format!("applied {changes}"),
            Err(error) => format!("failed: {error}"),
        };
        self.0.lock().unwrap().push((step, result));
    }
}

#[tokio::test]
async fn observers_hear_of_every_run_but_not_of_blocked_steps() {
    let mut h = harness();
    let observer = Arc::new(CountingObserver::default());
    h.reconciler = h.reconciler.with_observer(observer.clone());
    step(&h, StepName::Storage).set(Behaviour::Changes(2));
    step(&h, StepName::Services).set(Behaviour::ApplyFails);
    assert!(!h.reconciler.converge(&desired(1)).await);
    let heard = observer.0.lock().unwrap().clone();
    assert_eq!(
        heard,
        [
            (StepName::Storage, "applied 2".to_owned()),
            (StepName::Network, "up to date".to_owned()),
            (StepName::Services, "failed: doomed: device busy".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_repeated_failure_is_quiet_and_keeps_its_transition_time() {
    let h = harness();
    step(&h, StepName::Services).set(Behaviour::ApplyFails);
    assert!(!h.reconciler.converge(&desired(1)).await);
    let first = h.status.get(StepName::Services).unwrap();
    let last = h.events.subscribe().0.last().unwrap().sequence;

    assert!(!h.reconciler.converge(&desired(1)).await);
    let again = h.status.get(StepName::Services).unwrap();
    assert_eq!(again.condition, Condition::Failed);
    assert_eq!(again.last_transition, first.last_transition);
    assert!(
        again.last_run > first.last_run,
        "the retry is recorded as a run"
    );
    assert!(
        events_since(&h, last).is_empty(),
        "the same failure is not re-announced"
    );

    step(&h, StepName::Services).set(Behaviour::UpToDate);
    assert!(h.reconciler.converge(&desired(1)).await);
    let healed = events_since(&h, last);
    assert!(
        healed.iter().any(|e| matches!(
            &e.kind,
            EventKind::Step {
                step: StepName::Services,
                condition: Condition::Converged,
                ..
            }
        )),
        "{healed:#?}"
    );
    assert_ne!(
        h.status.get(StepName::Services).unwrap().last_transition,
        first.last_transition
    );
}

#[tokio::test]
async fn events_mark_new_generations_and_quiet_resyncs_publish_nothing() {
    let h = harness();
    h.reconciler.converge(&desired(1)).await;
    let first = events_since(&h, 0);
    assert_eq!(first.len(), 10, "start and outcome per step: {first:#?}");
    let last = first.last().unwrap().sequence;

    h.reconciler.converge(&desired(1)).await;
    assert!(
        events_since(&h, last).is_empty(),
        "a resync with nothing to do is quiet"
    );

    // Drift healed on a resync is always reported.
    step(&h, StepName::Storage).set(Behaviour::Changes(1));
    h.reconciler.converge(&desired(1)).await;
    let healed = events_since(&h, last);
    assert_eq!(healed.len(), 1, "{healed:#?}");
    assert!(matches!(
        &healed[0].kind,
        EventKind::Step {
            step: StepName::Storage,
            condition: Condition::Converged,
            ..
        }
    ));
    let last = healed[0].sequence;

    step(&h, StepName::Storage).set(Behaviour::UpToDate);
    h.reconciler.converge(&desired(2)).await;
    assert_eq!(
        events_since(&h, last).len(),
        10,
        "a new generation is reported in full"
    );
}

#[tokio::test(start_paused = true)]
async fn the_loop_follows_new_specs_retries_failures_and_stops() {
    let h = harness();
    let (tx, rx) = watch::channel(None::<Arc<Desired>>);
    let shutdown = CancellationToken::new();
    step(&h, StepName::Storage).set(Behaviour::ApplyFails);
    let status = Arc::clone(&h.status);
    let log = Arc::clone(&h.log);
    let storage = Arc::clone(&h.steps[0]);
    let task = tokio::spawn(h.reconciler.run(rx, shutdown.clone()));

    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        log.lock().unwrap().is_empty(),
        "nothing runs without a spec"
    );

    tx.send_replace(Some(Arc::new(desired(1))));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        status.get(StepName::Storage).unwrap().condition,
        Condition::Failed
    );

    // The retry after the first back-off converges once the fault is gone.
    storage.set(Behaviour::UpToDate);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status.converged_generation(), 1);

    tx.send_replace(Some(Arc::new(desired(2))));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(status.converged_generation(), 2);

    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failures_are_retried_with_doubling_back_off_capped_at_the_resync() {
    let h = harness();
    let reconciler = Reconciler::new(
        h.steps
            .iter()
            .map(|s| Arc::clone(s) as Arc<dyn Step>)
            .collect(),
        Arc::clone(&h.status),
        Arc::clone(&h.events),
        Duration::from_secs(8),
    );
    step(&h, StepName::Storage).set(Behaviour::ApplyFails);
    let runs = || {
        h.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| *l == "observe storage")
            .count()
    };
    let (tx, rx) = watch::channel(Some(Arc::new(desired(1))));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(reconciler.run(rx, shutdown.clone()));

    // Runs at 0 s, then after 1, 2, 4 and 8 s (capped), then every 8 s.
    let start = tokio::time::Instant::now();
    for (at, expected) in [(0.5, 1), (1.5, 2), (3.5, 3), (7.5, 4), (15.5, 5), (23.5, 6)] {
        tokio::time::sleep_until(start + Duration::from_secs_f64(at)).await;
        assert_eq!(runs(), expected, "at {at} s");
    }

    // A new spec runs at once and starts the back-off over.
    tx.send_replace(Some(Arc::new(desired(2))));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(runs(), 7);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(runs(), 8, "first retry after 1 s again");

    shutdown.cancel();
    task.await.unwrap();
}
