//! The HTTP surface: `/api/...` JSON + SSE (one `router()` per resource module, merged
//! here), `/metrics` for Prometheus, the Leptos pages and server fns, static files, and
//! the tracing layer.
mod access;
mod conns;
mod events;
mod history;
pub mod hosts;
mod limits;
mod metrics;
mod pace;
mod runs;
mod serve;
mod state;
pub mod throttle;

pub use conns::Conns;
pub use limits::HttpLimits;
pub use serve::{serve, ServeLimits};
pub use state::AppState;

use axum::http::{header, HeaderValue};
use axum::Router;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::site::{self, Site};

/// The `Content-Security-Policy` of responses that are not app pages: nothing inline runs
/// and no inline style applies (the login page uses the app's stylesheet only).
const CSP_DEFAULT: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The `Content-Security-Policy` of a downloaded HTML report served by us: its inline
/// scripts and styles run, but it can load and send nothing.
pub(crate) const CSP_REPORT: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The whole app.
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(app::App);
    let service = state.service.clone();
    let urls = state.site.urls();
    let context = move || {
        provide_context(service.clone());
        provide_context(urls.clone());
    };
    let leptos_options = state.leptos_options.clone();
    let shell = move || app::shell(leptos_options.clone());
    let pages = Router::new()
        .merge(runs::router())
        .merge(events::router())
        .merge(access::router())
        .merge(history::router())
        .merge(metrics::router())
        .merge(state.hub.pool.clone().list_router())
        .leptos_routes_with_context(&state, routes, context.clone(), shell.clone());
    // Unknown paths get the app's 404 page. The embedded site answers before the router
    // (from memory, see `site`); `--site-root` is served from disk by Leptos' handler.
    let pages = match &state.site {
        Site::Embedded(index) => pages
            .fallback(leptos_axum::render_app_to_stream_with_context(
                context, shell,
            ))
            .layer(axum::middleware::from_fn_with_state(
                index.clone(),
                site::serve_embedded,
            )),
        Site::Dir(_) => pages.fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(context, app::shell)),
    };
    pages
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            // Pages set their own, with the nonce of their inline scripts (`app::App`);
            // everything else (login page, API, assets) allows no inline script at all.
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP_DEFAULT),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            // Not `no-referrer`: under it browsers send `Origin: null` on same-origin
            // form posts. `same-origin` still sends nothing to other sites.
            HeaderValue::from_static("same-origin"),
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::guard,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
