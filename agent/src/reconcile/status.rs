//! Observed condition of each reconcile step, as `GetStatus` reports it.

use std::{
    sync::{RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::SystemTime,
};

use crate::step::{Condition, StepName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepStatus {
    pub step: StepName,
    pub condition: Condition,
    pub message: String,
    /// The generation this step last converged to (0: never).
    pub converged_generation: u64,
    /// The generation of the last run, whatever its outcome (0: none).
    pub run_generation: u64,
    /// Kept until the step converges again.
    pub last_error: Option<String>,
    pub last_transition: SystemTime,
    pub last_run: Option<SystemTime>,
}

/// One entry per step, in reconcile order. Written only by the reconciler;
/// the lock is never held across I/O.
#[derive(Debug)]
pub struct StatusBoard {
    steps: RwLock<Vec<StepStatus>>,
    /// Held through each reconcile pass and through a reset, so the two
    /// never run at once.
    pass: tokio::sync::Mutex<()>,
}

impl StatusBoard {
    pub fn new(steps: &[StepName]) -> Self {
        let now = SystemTime::now();
        Self {
            steps: RwLock::new(
                steps
                    .iter()
                    .map(|&step| StepStatus {
                        step,
                        condition: Condition::Pending,
                        message: "no spec applied yet".into(),
                        converged_generation: 0,
                        run_generation: 0,
                        last_error: None,
                        last_transition: now,
                        last_run: None,
                    })
                    .collect(),
            ),
            pass: tokio::sync::Mutex::new(()),
        }
    }

    /// Serialises reconcile passes and resets.
    pub fn pass_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.pass
    }

    fn read(&self) -> RwLockReadGuard<'_, Vec<StepStatus>> {
        // Entries are replaced whole, so a poisoned lock still holds valid data.
        self.steps.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Vec<StepStatus>> {
        self.steps.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> Vec<StepStatus> {
        self.read().clone()
    }

    pub fn get(&self, step: StepName) -> Option<StepStatus> {
        self.read().iter().find(|s| s.step == step).cloned()
    }

    /// Highest generation every step has converged to.
    pub fn converged_generation(&self) -> u64 {
        self.read()
            .iter()
            .map(|s| s.converged_generation)
            .min()
            .unwrap_or(0)
    }

    /// Notes a run for `generation` without changing the condition.
    pub fn mark_run(&self, step: StepName, generation: u64) {
        let mut steps = self.write();
        if let Some(entry) = steps.iter_mut().find(|s| s.step == step) {
            entry.last_run = Some(SystemTime::now());
            entry.run_generation = generation;
        }
    }

    /// Records a step's new condition.
    pub fn record(&self, step: StepName, condition: Condition, message: String, outcome: Outcome) {
        let now = SystemTime::now();
        let mut steps = self.write();
        let Some(entry) = steps.iter_mut().find(|s| s.step == step) else {
            return;
        };
        if entry.condition != condition {
            entry.last_transition = now;
        }
        entry.condition = condition;
        entry.message = message;
        match outcome {
            Outcome::Running(generation) => {
                entry.last_run = Some(now);
                entry.run_generation = generation;
            }
            Outcome::Converged(generation) => {
                entry.converged_generation = generation;
                entry.last_error = None;
            }
            Outcome::Failed(error) => entry.last_error = Some(error),
            Outcome::Unchanged => {}
        }
    }
}

/// What a [`StatusBoard::record`] call also updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The step starts a run for this generation now.
    Running(u64),
    Converged(u64),
    Failed(String),
    Unchanged,
}
