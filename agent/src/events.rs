//! The node's event feed: accepted specs and reconcile step transitions.
//! A bounded history is kept for `tfagentctl events`; live subscribers get a
//! bounded channel and learn when they fell behind.

use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard},
    time::SystemTime,
};

use tokio::sync::broadcast;

use crate::step::{Condition, StepName};

/// Events kept for late readers.
pub const HISTORY: usize = 256;
/// Events buffered per live subscriber before it is told it lagged.
pub const SUBSCRIBER_BUFFER: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    SpecAccepted,
    /// A step's condition changed (a run started, converged, failed or
    /// was blocked), or a repeat run had news.
    Step {
        step: StepName,
        condition: Condition,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub sequence: u64,
    pub time: SystemTime,
    pub generation: u64,
    pub kind: EventKind,
}

#[derive(Debug)]
struct History {
    next_sequence: u64,
    recent: VecDeque<Event>,
}

#[derive(Debug)]
pub struct EventBus {
    history: Mutex<History>,
    live: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            history: Mutex::new(History {
                next_sequence: 1,
                recent: VecDeque::with_capacity(HISTORY),
            }),
            live: broadcast::channel(SUBSCRIBER_BUFFER).0,
        }
    }
}

impl EventBus {
    fn history(&self) -> MutexGuard<'_, History> {
        // A panic while holding this lock cannot leave History inconsistent.
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn publish(&self, generation: u64, kind: EventKind) {
        let mut history = self.history();
        let event = Event {
            sequence: history.next_sequence,
            time: SystemTime::now(),
            generation,
            kind,
        };
        history.next_sequence += 1;
        if history.recent.len() == HISTORY {
            history.recent.pop_front();
        }
        history.recent.push_back(event.clone());
        // Sent under the lock so a subscriber sees history then live events
        // with no gap and no duplicate. No receivers is not an error.
        let _ = self.live.send(event);
    }

    /// The recent events, and a receiver for every later one.
    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let history = self.history();
        (
            history.recent.iter().cloned().collect(),
            self.live.subscribe(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn history_then_live_without_gap() {
        let bus = EventBus::default();
        bus.publish(1, EventKind::SpecAccepted);
        let (recent, mut live) = bus.subscribe();
        bus.publish(
            1,
            EventKind::Step {
                step: StepName::Storage,
                condition: Condition::Progressing,
                message: String::new(),
            },
        );
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].sequence, 1);
        assert_eq!(live.recv().await.unwrap().sequence, 2);
    }

    #[test]
    fn history_is_bounded() {
        let bus = EventBus::default();
        for _ in 0..HISTORY + 10 {
            bus.publish(1, EventKind::SpecAccepted);
        }
        let (recent, _) = bus.subscribe();
        assert_eq!(recent.len(), HISTORY);
        assert_eq!(recent[0].sequence, 11);
        assert_eq!(recent.last().unwrap().sequence, (HISTORY + 10) as u64);
    }
}
