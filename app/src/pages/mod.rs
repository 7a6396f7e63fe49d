//! One module per route.
pub mod compare;
pub mod not_found;
pub mod plans;
pub mod run_detail;
pub mod run_new;
pub mod runs;
pub mod share;
