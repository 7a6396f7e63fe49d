//! # app: the pages
//!
//! Routes, components, wire types and server functions. Compiled twice: with `ssr` into
//! the server (renders pages, runs server fns against [`api::RunService`]) and with
//! `hydrate` into the browser's wasm (makes the same pages live). It never sees engine
//! internals, only the pure model (`engine` without `runtime` in the browser build).
//!
//! Module map:
//! - [`api`]        wire types (`RunListItem`, `RunDetail`, `ApiError`), the `RunService`
//!   trait the server implements, and the server fns the pages call.
//! - [`charts`]     chart specs from a run's `Series` (pure; drawn by uPlot).
//! - [`form`]       the "New run" form -> `Plan` (pure, unit-tested).
//! - [`fmt`]        number/time formatting for views (pure).
//! - `pages/`       one file per route.
//! - `components/`  stat tiles, status badge, failure table.
//! - `live`         (hydrate) EventSource -> signal of the latest `Snapshot`.

#![recursion_limit = "256"]

pub mod api;
pub mod charts;
pub mod components;
pub mod fmt;
pub mod form;
#[cfg(feature = "hydrate")]
mod live;
pub mod pages;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::{path, SsrMode};

/// The HTML document around the app (server side).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <link rel="stylesheet" href="/pkg/uplot.css"/>
                <script src="/pkg/uplot.js"></script>
                <script src="/charts.js"></script>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The router: `/` and `/runs` (list), `/runs/new`, `/runs/{id}`, `/plans`,
/// `/plans/new`, `/plans/{id}`, `/compare?runs=...`, `/share/{id}`. Every route renders
/// `Async` (whole page, data included) so pages and share links read without JavaScript.
/// Share pages show no navigation: a share link leads nowhere else.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    #[cfg(feature = "ssr")]
    content_security_policy();
    // `<html data-hydrated>` once the page is interactive (tests wait for it).
    #[cfg(feature = "hydrate")]
    Effect::new(|_| {
        if let Some(el) = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.document_element())
        {
            let _ = el.set_attribute("data-hydrated", "true");
        }
    });
    view! {
        <Stylesheet id="leptos" href="/pkg/socketswarm.css"/>
        <Title text="socketswarm"/>
        <Router>
            <TopBar/>
            <main class="page">
                <Routes fallback=|| view! { <pages::not_found::NotFound/> }>
                    <Route path=path!("/") view=pages::runs::RunsPage ssr=SsrMode::Async/>
                    <Route path=path!("/runs") view=pages::runs::RunsPage ssr=SsrMode::Async/>
                    <Route path=path!("/runs/new") view=pages::run_new::NewRunPage ssr=SsrMode::Async/>
                    <Route path=path!("/runs/:id") view=pages::run_detail::RunDetailPage ssr=SsrMode::Async/>
                    <Route path=path!("/plans") view=pages::plans::PlansPage ssr=SsrMode::Async/>
                    <Route path=path!("/plans/new") view=pages::plans::NewPlanPage ssr=SsrMode::Async/>
                    <Route path=path!("/plans/:id") view=pages::plans::PlanPage ssr=SsrMode::Async/>
                    <Route path=path!("/compare") view=pages::compare::ComparePage ssr=SsrMode::Async/>
                    <Route path=path!("/share/:id") view=pages::share::SharePage ssr=SsrMode::Async/>
                </Routes>
            </main>
        </Router>
    }
}

/// The page's `Content-Security-Policy`: scripts only from this origin or carrying this
/// response's nonce (Leptos puts it on its own inline hydration scripts), WebAssembly
/// allowed, connections (server functions, SSE) only to this origin, never framed, forms
/// post only here. Inline `style` attributes stay allowed (uPlot and the run colours).
#[cfg(feature = "ssr")]
fn content_security_policy() {
    let (Some(nonce), Some(resp)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) else {
        return;
    };
    let csp = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    if let Ok(v) = http::HeaderValue::from_str(&csp) {
        resp.insert_header(http::header::CONTENT_SECURITY_POLICY, v);
    }
}

/// The header: brand and navigation, or just the name on share pages.
#[component]
fn TopBar() -> impl IntoView {
    let location = leptos_router::hooks::use_location();
    let shared = move || location.pathname.read().starts_with("/share/");
    view! {
        <header class="topbar">
            <Show
                when=move || !shared()
                fallback=|| view! { <span class="topbar__brand">"socketswarm"</span> }
            >
                <A href="/" attr:class="topbar__brand">"socketswarm"</A>
                <nav class="topbar__nav">
                    <A href="/runs">"Runs"</A>
                    <A href="/plans">"Plans"</A>
                    <A href="/runs/new">"New run"</A>
                </nav>
            </Show>
        </header>
    }
}
