//! What the agent keeps on disk about itself: the desired spec and its
//! generation ([`StateStore`]), the record of a spec on trial ([`trial`]),
//! and the atomic file writes they and the steps use ([`StagedFile`]).

mod atomic;
mod store;
pub mod trial;

pub use atomic::StagedFile;
#[cfg(test)]
pub use store::read_stored;
pub use store::{Desired, Loaded, RefusedSpec, StateError, StateStore};
