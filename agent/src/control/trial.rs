//! Try mode: a spec stored on trial is reverted to the one before it unless
//! confirmed by its deadline. The record is persisted (`state::trial`), so a
//! restarted agent still reverts.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use tfagent_spec::{NodeSpec, ValidationContext};
use tokio::sync::{Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use super::{commit::Committer, error::ControlError};
use crate::state::{
    Desired,
    trial::{self, Trial},
};

/// Longest trial window.
pub const MAX_TRY_TIMEOUT: Duration = Duration::from_secs(3600);

/// Refuses a trial window outside 1 s ..= [`MAX_TRY_TIMEOUT`].
pub fn check_timeout(timeout: Duration) -> Result<(), ControlError> {
    if timeout.is_zero() || timeout > MAX_TRY_TIMEOUT {
        return Err(ControlError::BadRequest(format!(
            "try_timeout: must be between 1s and {}s",
            MAX_TRY_TIMEOUT.as_secs()
        )));
    }
    Ok(())
}

/// A spec on trial, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialStatus {
    pub generation: u64,
    pub deadline: SystemTime,
}

/// The spec on trial, if any, and how to call its revert off.
#[derive(Debug)]
pub struct Trials {
    state_dir: PathBuf,
    committer: Arc<Committer>,
    /// Serialises trial starts, confirmations, reverts, resets and plain
    /// applies.
    lock: Mutex<()>,
    pending: std::sync::Mutex<Option<(Trial, CancellationToken)>>,
    last: std::sync::Mutex<Option<String>>,
}

impl Trials {
    pub fn new(committer: Arc<Committer>) -> Self {
        Self {
            state_dir: committer.store().dir().to_owned(),
            committer,
            lock: Mutex::new(()),
            pending: std::sync::Mutex::new(None),
            last: std::sync::Mutex::new(None),
        }
    }

    /// Held while a spec is stored, confirmed, reverted or reset.
    pub async fn serialise(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    pub fn pending(&self) -> Option<Trial> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(t, _)| t.clone())
    }

    pub fn status(&self) -> Option<TrialStatus> {
        self.pending().map(|t| TrialStatus {
            generation: t.generation,
            deadline: t.deadline,
        })
    }

    /// What became of the last trial that ended, one line.
    pub fn last(&self) -> Option<String> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_last(&self, text: String) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
    }

    /// Stores `spec` on trial: `current` is kept, and restored unless
    /// [`Self::confirm`] arrives within `timeout`. The caller holds
    /// [`Self::serialise`].
    pub async fn start(
        self: &Arc<Self>,
        current: &Desired,
        spec: NodeSpec,
        timeout: Duration,
    ) -> Result<(u64, bool), ControlError> {
        check_timeout(timeout)?;
        if current.spec == spec {
            return Ok((current.generation, false));
        }
        // Recorded before the spec is stored: a crash in between reverts to
        // what is still current, which changes nothing.
        let mut trial = Trial {
            generation: current.generation + 1,
            deadline: SystemTime::now() + timeout,
            previous: current.spec.clone(),
        };
        self.save(&trial).await?;
        let (generation, changed) = match self.committer.commit(spec).await {
            Ok(committed) => committed,
            Err(error) => {
                // Nothing went on trial: a record left behind would revert
                // a later spec of the same generation.
                if let Err(clear) = self.clear_record().await {
                    warn!(error = %clear, "cannot remove the trial record");
                }
                return Err(error);
            }
        };
        if generation != trial.generation {
            trial.generation = generation;
            self.save(&trial).await?;
        }
        info!(
            generation,
            timeout_secs = timeout.as_secs(),
            "spec stored on trial"
        );
        self.arm(trial);
        Ok((generation, changed))
    }

    /// Takes up a trial persisted by an earlier run: its revert runs at its
    /// deadline, at once when that has passed.
    pub fn resume(self: &Arc<Self>, context: &ValidationContext) -> Result<(), ControlError> {
        if let Some(trial) = trial::load(&self.state_dir, context)? {
            info!(generation = trial.generation, "a spec is still on trial");
            self.arm(trial);
        }
        Ok(())
    }

    /// Keeps the spec on trial as `generation`.
    pub async fn confirm(&self, generation: u64) -> Result<u64, ControlError> {
        let _serialised = self.serialise().await;
        let Some(pending) = self.pending() else {
            return Err(ControlError::Precondition(match self.last() {
                Some(last) => format!("no spec is on trial ({last})"),
                None => "no spec is on trial".into(),
            }));
        };
        if pending.generation != generation {
            return Err(ControlError::Precondition(format!(
                "generation {generation} is not on trial; generation {} is",
                pending.generation
            )));
        }
        self.clear_record().await?;
        self.cancel_pending();
        info!(generation, "spec on trial confirmed");
        self.set_last(format!("generation {generation} was confirmed"));
        Ok(generation)
    }

    /// Calls off the pending trial, on disk and in memory (a reset: the
    /// spec it replaced must not come back). The caller holds
    /// [`Self::serialise`].
    pub async fn abandon(&self) -> Result<(), ControlError> {
        self.cancel_pending();
        self.clear_record().await
    }

    async fn save(&self, trial: &Trial) -> Result<(), ControlError> {
        let dir = self.state_dir.clone();
        let trial = trial.clone();
        tokio::task::spawn_blocking(move || trial::save(&dir, &trial))
            .await
            .map_err(ControlError::internal("saving the trial"))??;
        Ok(())
    }

    /// Removes the trial record from the state dir.
    async fn clear_record(&self) -> Result<(), ControlError> {
        let dir = self.state_dir.clone();
        tokio::task::spawn_blocking(move || trial::clear(&dir))
            .await
            .map_err(ControlError::internal("clearing the trial"))??;
        Ok(())
    }

    /// Forgets the pending trial and stops its timer.
    fn cancel_pending(&self) {
        if let Some((_, cancel)) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            cancel.cancel();
        }
    }

    /// Records `trial` as pending and starts its revert timer.
    fn arm(self: &Arc<Self>, trial: Trial) {
        let cancel = CancellationToken::new();
        let generation = trial.generation;
        let wait = trial
            .deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some((trial, cancel.clone()));
        let trials = Arc::clone(self);
        tokio::spawn(
            async move {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = tokio::time::sleep(wait) => {
                        if let Err(error) = trials.revert(generation).await {
                            warn!(%error, "cannot revert the spec on trial; retried at the next start");
                        }
                    }
                }
            }
            // Outlives the request that started it: no parent span.
            .instrument(tracing::info_span!(parent: None, "trial", generation)),
        );
    }

    /// Restores the spec a trial replaced, unless it was confirmed meanwhile.
    async fn revert(self: &Arc<Self>, generation: u64) -> Result<(), ControlError> {
        let _serialised = self.serialise().await;
        let Some(pending) = self.pending().filter(|t| t.generation == generation) else {
            return Ok(());
        };
        // The trial ends as the restored spec is stored, before anyone sees
        // it: status never shows the restored generation still on trial.
        let trials = Arc::clone(self);
        let (reverted_to, _) = self
            .committer
            .commit_then(pending.previous, move |reverted_to| {
                // A record left behind only reverts, at the next start, to
                // the spec that is current again: harmless, so it is logged.
                if let Err(error) = trial::clear(&trials.state_dir) {
                    warn!(%error, "cannot remove the trial record");
                }
                *trials.pending.lock().unwrap_or_else(|p| p.into_inner()) = None;
                trials.set_last(format!(
                    "generation {generation} was not confirmed in time and was reverted as generation {reverted_to}"
                ));
            })
            .await?;
        warn!(
            generation,
            reverted_to, "the spec on trial was not confirmed in time; reverted"
        );
        Ok(())
    }
}
