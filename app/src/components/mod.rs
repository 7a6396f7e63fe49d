//! Reusable views.
pub mod chart;
pub mod compare;
pub mod diagnosis;
pub mod load_error;
pub mod probe;
pub mod run_actions;
pub mod run_sections;
pub mod share_box;
pub mod status;
pub mod steer;
pub mod target_said;
pub mod text_area;
pub mod tiles;

pub use chart::Chart;
pub use diagnosis::DiagnosisPanel;
pub use load_error::LoadError;
pub use share_box::ShareBox;
pub use status::StatusBadge;
pub use text_area::TextArea;
pub use tiles::{AgentTable, FailureTable, IdentityTable, LatencyTable, Tiles};

/// The first failed action's message, of a view's several actions.
pub(crate) fn first_error<const N: usize>(
    errs: [Option<crate::api::ApiError>; N],
) -> Option<String> {
    errs.into_iter().flatten().next().map(|e| e.to_string())
}
