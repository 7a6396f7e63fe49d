//! One module per route (routed in `crate::App`), plus the fallback `not_found`. To add a
//! page, follow the checklist in the crate docs (`app/src/lib.rs`).
pub mod compare;
pub mod not_found;
pub mod plans;
pub mod run_detail;
pub mod run_new;
pub mod runs;
pub mod share;
