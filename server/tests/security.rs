//! Attacks from outside, each as a test that must fail against the real server (issue: "holds when attacked"). Run: `cargo test -p server --test security`.
#![allow(clippy::unwrap_used)]
mod common;
#[path = "security/store.rs"]
mod store;
