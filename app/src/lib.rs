//! # app: the pages
//!
//! Routes, components, wire types and server functions. Compiled twice: with `ssr` into
//! the server (renders pages, runs server fns against [`api::RunService`], which the
//! server's `runs::service::Runs` implements) and with `hydrate` into the browser's wasm (makes the
//! same pages live). It never sees engine internals, only the pure model (`engine`
//! without `runtime` in the browser build).
//!
//! Module map:
//! - [`api`]        wire types (`RunListItem`, `RunDetail`, `ApiError`), the `RunService`
//!   trait the server implements, and the server fns of runs; `api/history.rs` those
//!   of the history workflow (runs list, tags, saved plans, compare, share links).
//! - [`charts`]     chart specs from a run's `Series` (pure; drawn by uPlot).
//! - [`form`]       the "New run" form -> `Plan` (pure, unit-tested).
//! - [`fmt`]        number/time formatting for views (pure).
//! - [`pages`]      one module per route.
//! - [`components`] reusable views: `run_sections` (a run's body, shared with the HTML
//!   report), tiles and tables, charts, the diagnosis panel, compare tables, run
//!   actions, the share box, the status badge, `TextArea`, `LoadError`.
//! - `live`         (hydrate) EventSource -> signal of the latest `Snapshot`.
//!
//! # Adding a page (a newcomer's checklist)
//!
//! 1. **The page**: `app/src/pages/NAME.rs` with a `#[component] pub fn NamePage()`,
//!    declared in `pages/mod.rs`. Load its data with a `Resource` over a server fn
//!    inside `<Transition>`/`Suspend` and show failures with
//!    [`components::LoadError`] (it also sets the answer's status: 404, 400, …). Forms
//!    are `ActionForm`s or plain GET forms, so the page works before hydration.
//! 2. **The route**: a `<Route path=path!("/…") view=pages::NAME::NamePage
//!    ssr=SsrMode::Async/>` in [`App`] below (update the router's doc comment). The
//!    server needs nothing more: `generate_route_list(app::App)` in
//!    `server/src/http/mod.rs` serves every route here. *Not enforced*: a page that no
//!    route names still builds. If it belongs to a section of the top bar, add it to
//!    `Section::of` and its test `one_top_bar_section_per_page`.
//! 3. **Its data — one name per operation**, from the server fn to the route handler:
//!    a `#[server] pub async fn NAME` in `api.rs` (or `api/history.rs`) calling
//!    `service()?.NAME(…)`; the method `NAME` on [`api::RunService`]; wire types beside it
//!    (`Serialize + Deserialize`, *compiler-enforced* by `#[server]`). The server fn is
//!    served under `/api/…` without registering it (`leptos_routes_with_context`).
//! 4. **The server side**: *compiler-enforced* — `impl RunService for Runs` in
//!    `server/src/runs/service.rs` stops building until it has the new method, a
//!    one-line delegation to `NAME` on the service it belongs to: `Reads`
//!    (`runs/reads.rs`: one run's detail and ticks), `Launch` (`runs/launch.rs`:
//!    validate, launch, cancel), `History` (`runs/history.rs`: runs list, tags,
//!    compare, share links) or `Plans` (`runs/plans.rs`: saved plans, baselines); row
//!    conversions in `runs/views.rs`; SQL only in `server/src/store/` (`store/mod.rs`,
//!    `store/history.rs`, sorting included).
//! 5. **The JSON route**, for the API and the CLI: in the `router()` of
//!    `server/src/http/runs.rs` or `server/src/http/history.rs`, a handler `NAME`
//!    calling `st.runs.SERVICE.NAME(…)` (e.g. `st.runs.history.search_runs(q)`).
//!    *Not enforced*: every path needs the access token unless
//!    `http::access`'s `is_public` lets it through (a share-like page must be added
//!    there, with a case in its tests).
//! 6. **Its styles**: a `/* ---- NAME ---- */` section in `style/main.css`, classes
//!    only. *Not enforced*: the page's CSP (`content_security_policy` below) has no
//!    `'unsafe-inline'` for styles, so a `style=` attribute builds and is silently
//!    ignored by the browser (the e2e harness collects the violation).
//! 7. **Tests** (*not enforced*): the status a page answers with in
//!    `server/tests/api.rs` (`pages_answer_with_the_status_of_what_they_show`), the JSON
//!    route in `server/tests/` (e.g. `history.rs`), and a browser test
//!    `e2e/NAME.test.mjs` (`startServer`, `browser` from `e2e/harness.mjs`; wait for
//!    `html[data-hydrated]`; assert `cspViolations` and `pageErrors` stay empty). Run:
//!    `scripts/build.sh && node --test e2e/`.
//! 8. **Docs** (*not enforced*): the README's *Using it* (the page) and *Through the
//!    JSON API* (the route).

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
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::{path, SsrMode};

/// Where the shell links the site's files. The server provides it as context from the
/// site it serves: content-hashed URLs when the site is embedded in the binary, the
/// plain paths otherwise (the default).
#[derive(Clone, Debug, Default)]
pub struct SiteUrls {
    /// Plain path (`/pkg/socketswarm.css`) -> the URL to link it by.
    pub hashed: std::sync::Arc<std::collections::HashMap<String, String>>,
    /// The server has no built site (no CSS, JavaScript or wasm): pages say so.
    pub missing: bool,
}

impl SiteUrls {
    /// The URL of the site file at plain `path`.
    pub fn of(&self, path: &str) -> String {
        self.hashed
            .get(path)
            .cloned()
            .unwrap_or_else(|| path.to_string())
    }
}

/// The HTML document around the app (server side). Links come from the `SiteUrls` in
/// context (the stylesheet is linked here, not by `App`: only the server knows its URL).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let urls = use_context::<SiteUrls>().unwrap_or_default();
    let missing = urls.missing.then(|| {
        view! {
            <p class="site-missing" role="alert">
                "This socketswarm binary was built without its site (no CSS, JavaScript or \
                 wasm), so pages are neither styled nor live. Build it with scripts/build.sh, \
                 or start it with --site-root DIR."
            </p>
        }
    });
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href=urls.of("/favicon.svg") type="image/svg+xml"/>
                <link rel="stylesheet" href=urls.of("/pkg/uplot.css")/>
                // After uPlot's, as before: the app's rules win.
                <link rel="stylesheet" id="leptos" href=urls.of("/pkg/socketswarm.css")/>
                <script src=urls.of("/pkg/uplot.js")></script>
                <script src=urls.of("/charts.js")></script>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            // The notice goes after the app: hydration starts at the body's first node,
            // and even an absent notice leaves a placeholder node where it would be.
            <body>
                <App/>
                {missing}
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
/// post only here. Styles only from this origin's stylesheets: no `<style>` element or
/// `style` attribute in the markup works, so injected markup cannot restyle the page or
/// read it out through CSS selectors. uPlot sizes its charts through the CSSOM
/// (`el.style.width = …`), which CSP does not govern, and the run colours are classes.
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
         style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    if let Ok(v) = http::HeaderValue::from_str(&csp) {
        resp.insert_header(http::header::CONTENT_SECURITY_POLICY, v);
    }
}

/// The header: brand and navigation, or just the name on share pages.
/// The part of the app a page belongs to, for the top bar's highlight: one at a time
/// (`/runs/new` is "New run", not also "Runs"; a run and a comparison are "Runs").
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Section {
    Runs,
    Plans,
    NewRun,
}

impl Section {
    fn of(path: &str) -> Option<Self> {
        let path = path.trim_end_matches('/');
        if path == "/runs/new" {
            Some(Self::NewRun)
        } else if path.is_empty()
            || path == "/runs"
            || path.starts_with("/runs/")
            || path == "/compare"
        {
            Some(Self::Runs)
        } else if path == "/plans" || path.starts_with("/plans/") {
            Some(Self::Plans)
        } else {
            None
        }
    }
}

#[component]
fn TopBar() -> impl IntoView {
    let location = leptos_router::hooks::use_location();
    let shared = move || location.pathname.read().starts_with("/share/");
    let current = move |section: Section| {
        (Section::of(&location.pathname.read()) == Some(section)).then_some("page")
    };
    view! {
        <header class="topbar">
            <Show
                when=move || !shared()
                fallback=|| view! { <span class="topbar__brand">"socketswarm"</span> }
            >
                <A href="/" attr:class="topbar__brand">"socketswarm"</A>
                <nav class="topbar__nav">
                    <a href="/runs" aria-current=move || current(Section::Runs)>"Runs"</a>
                    <a href="/plans" aria-current=move || current(Section::Plans)>"Plans"</a>
                    <a href="/runs/new" aria-current=move || current(Section::NewRun)>"New run"</a>
                </nav>
            </Show>
        </header>
    }
}

#[cfg(test)]
mod tests {
    use super::Section;

    #[test]
    fn one_top_bar_section_per_page() {
        assert_eq!(Section::of("/runs/new"), Some(Section::NewRun));
        assert_eq!(Section::of("/runs"), Some(Section::Runs));
        assert_eq!(Section::of("/runs/0d3f"), Some(Section::Runs));
        assert_eq!(Section::of("/compare"), Some(Section::Runs));
        assert_eq!(Section::of("/plans/new"), Some(Section::Plans));
        assert_eq!(Section::of("/plans/"), Some(Section::Plans));
        assert_eq!(Section::of("/"), Some(Section::Runs));
        assert_eq!(Section::of("/login"), None);
        assert_eq!(Section::of("/runsx"), None);
    }
}
