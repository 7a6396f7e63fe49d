//! Attacks from outside, each as a test that must fail against the real server (issue:
//! "holds when attacked"). Run: `cargo test -p server --test security`.
#![allow(clippy::unwrap_used)]
mod common;
#[path = "security/security_support.rs"]
mod security_support;

#[path = "security/budgets.rs"]
mod budgets;
#[path = "security/canary.rs"]
mod canary;
#[path = "security/hostile.rs"]
mod hostile;
#[path = "security/outbound.rs"]
mod outbound;
#[path = "security/store.rs"]
mod store;
#[path = "security/web.rs"]
mod web;
