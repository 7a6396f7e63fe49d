//! Attacks from outside, each as a test that must fail against the real server (issue:
//! "holds when attacked"). Run: `cargo test -p server --test security`.
#![allow(clippy::unwrap_used)]
mod common;
#[path = "security/security_support.rs"]
mod security_support;

#[path = "security/agents.rs"]
mod agents;
#[path = "security/budgets.rs"]
mod budgets;
#[path = "security/canary.rs"]
mod canary;
#[path = "security/headers.rs"]
mod headers;
#[path = "security/hostile.rs"]
mod hostile;
#[path = "security/outbound.rs"]
mod outbound;
#[path = "security/proxy.rs"]
mod proxy;
#[path = "security/secrets.rs"]
mod secrets;
#[path = "security/store.rs"]
mod store;
#[path = "security/urls.rs"]
mod urls;
#[path = "security/web.rs"]
mod web;
