//! Stores accepted specs as generations, and forgets them on reset. Commits
//! run in their own task so that a caller who goes away (a cancelled RPC)
//! cannot leave the disk and memory disagreeing.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tfagent_spec::NodeSpec;
use tokio::sync::{Mutex, watch};
use tracing::{Instrument, Span, info, warn};

use super::error::ControlError;
use crate::{
    events::{EventBus, EventKind},
    state::{Desired, Loaded, RefusedSpec, StateError, StateStore},
};

/// What a caller of [`Committer::commit_then`] records once its spec is
/// stored.
type Stored = Box<dyn FnOnce(u64) + Send>;

#[derive(Debug)]
pub struct Committer {
    store: StateStore,
    /// Serialises commits so generations grow by exactly one per change.
    lock: Mutex<()>,
    desired: watch::Sender<Option<Arc<Desired>>>,
    /// Why the spec on disk was refused at startup, until one is accepted.
    refused: std::sync::Mutex<Option<RefusedSpec>>,
    events: Arc<EventBus>,
    /// The generation the last reset forgot: later specs count on from it.
    reset_floor: AtomicU64,
}

impl Committer {
    pub fn new(store: StateStore, loaded: Loaded, events: Arc<EventBus>) -> Self {
        if let Some(refused) = &loaded.refused {
            warn!(
                reason = %refused.reason,
                moved_to = %refused.moved_to.display(),
                "the stored spec was refused; waiting for a new one"
            );
        }
        let reset_floor = store.reset_generation().into();
        Self {
            store,
            lock: Mutex::new(()),
            desired: watch::Sender::new(loaded.desired.map(Arc::new)),
            refused: std::sync::Mutex::new(loaded.refused),
            events,
            reset_floor,
        }
    }

    pub fn store(&self) -> &StateStore {
        &self.store
    }

    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The spec the reconciler follows.
    pub fn current(&self) -> Option<Arc<Desired>> {
        self.desired.borrow().clone()
    }

    pub fn watch(&self) -> watch::Receiver<Option<Arc<Desired>>> {
        self.desired.subscribe()
    }

    pub fn refused(&self) -> Option<RefusedSpec> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stores `spec` as the next generation unless it equals the current
    /// one, in a task of its own. Returns the generation and whether it is
    /// new.
    pub async fn commit(self: &Arc<Self>, spec: NodeSpec) -> Result<(u64, bool), ControlError> {
        self.commit_with(spec, None).await
    }

    /// [`Self::commit`], calling `stored` with the generation once the spec
    /// is on disk and before anyone sees it, so what the caller records
    /// about it is never seen out of step with the spec. `stored` may block:
    /// it runs off the async threads.
    pub async fn commit_then(
        self: &Arc<Self>,
        spec: NodeSpec,
        stored: impl FnOnce(u64) + Send + 'static,
    ) -> Result<(u64, bool), ControlError> {
        self.commit_with(spec, Some(Box::new(stored))).await
    }

    async fn commit_with(
        self: &Arc<Self>,
        spec: NodeSpec,
        stored: Option<Stored>,
    ) -> Result<(u64, bool), ControlError> {
        let commit = Arc::clone(self).commit_now(spec, stored);
        tokio::spawn(commit.instrument(Span::current()))
            .await
            .map_err(ControlError::internal("storing the spec"))?
    }

    async fn commit_now(
        self: Arc<Self>,
        spec: NodeSpec,
        stored: Option<Stored>,
    ) -> Result<(u64, bool), ControlError> {
        let _serialised = self.lock.lock().await;
        let current = self.current();
        if let Some(current) = current.as_ref().filter(|c| c.spec == spec) {
            let generation = current.generation;
            if let Some(stored) = stored {
                tokio::task::spawn_blocking(move || stored(generation))
                    .await
                    .map_err(ControlError::internal("storing the spec"))?;
            }
            return Ok((generation, false));
        }
        // A spec refused at startup still used up its generation number.
        let floor = self
            .refused()
            .map_or(0, |r| r.generation)
            .max(self.reset_floor.load(Ordering::SeqCst));
        let desired = Desired {
            generation: current.map_or(0, |c| c.generation).max(floor) + 1,
            spec,
        };
        let this = Arc::clone(&self);
        let to_save = desired.clone();
        let had_refused = self.refused().is_some();
        let span = Span::current();
        tokio::task::spawn_blocking(move || {
            span.in_scope(|| {
                this.store.save(&to_save)?;
                if let Some(stored) = stored {
                    stored(to_save.generation);
                }
                if had_refused {
                    this.store.clear_refused()?;
                }
                Ok::<_, StateError>(())
            })
        })
        .await
        .map_err(ControlError::internal("saving the spec"))??;
        let generation = desired.generation;
        info!(generation, node = %desired.spec.node_name, "spec accepted");
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = None;
        // Published before the reconciler hears of it, so the acceptance
        // comes before the step events of its generation.
        self.events.publish(generation, EventKind::SpecAccepted);
        self.desired.send_replace(Some(Arc::new(desired)));
        Ok((generation, true))
    }

    /// Forgets the stored spec of `generation`, on disk then in memory.
    pub async fn forget(self: &Arc<Self>, generation: u64) -> Result<(), ControlError> {
        let _serialised = self.lock.lock().await;
        let this = Arc::clone(self);
        let span = Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| this.store.forget(generation)))
            .await
            .map_err(ControlError::internal("forgetting the spec"))??;
        self.reset_floor.fetch_max(generation, Ordering::SeqCst);
        self.desired.send_replace(None);
        Ok(())
    }
}
