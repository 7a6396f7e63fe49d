//! Reusable views.
pub mod status;
pub mod tiles;

pub use status::StatusBadge;
pub use tiles::{FailureTable, LatencyTable, Tiles};
