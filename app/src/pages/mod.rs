//! One module per route.
pub mod not_found;
pub mod run_detail;
pub mod run_new;
pub mod runs;
