//! Who may do what, as one middleware in front of every route:
//!
//! 0. Names and paths, before anything else: a request must name this server in `Host`
//!    (see [`super::hosts`]; else 421, against DNS rebinding), and its path must be
//!    routable as written (no `.`/`..`/empty segments; else 400, see [`unroutable`]).
//! 1. Cross-site request forgery: a state-changing request (anything but GET, HEAD,
//!    OPTIONS) whose `Origin` is not this server, or whose `Sec-Fetch-Site` is not
//!    `same-origin`/`none`, is refused with 403 — with or without an access token, so a
//!    web page cannot make a browser on this machine launch load at 127.0.0.1:3000.
//!    Clients that are not browsers (curl, the CLI) send neither header.
//! 2. Access token (`--access-token`): every request needs the token, as the
//!    `socketswarm_token` cookie (set by the `/login` form: HttpOnly, SameSite=Strict)
//!    or an `Authorization: Bearer` header. Without it, pages redirect to `/login` and
//!    the API and `/metrics` answer 401. Open without a token: the login page, static assets,
//!    `/api/health`, and share links (`/share/{id}`, their downloads, `/api/shares/{id}`
//!    and the `share_view` server fn), each of which reaches only what it names.
//!    Wrong tokens are throttled per client address (see [`super::throttle`]): after a
//!    few, 429 with `Retry-After` and a lockout that doubles with each failure; the
//!    right token always passes.
//! 3. Slow clients: a request that carries the token marks its connection as the
//!    owner's (`conns`: connections without it can never take every slot, and one
//!    admitted into the owner's reserve is served only with the token). Every request
//!    open without the token has a body deadline (`pace::Paced`: the header timeout,
//!    plus its size at `pace::MIN_RATE`); the public routes that take a body (the login
//!    form, the share view) have theirs read here, whole, at most `PUBLIC_BODY` bytes,
//!    before anything else runs: too slow is 408, too large 413, and the connection is
//!    closed.

use crate::secret::{bearer, same};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{header, request::Parts, Extensions, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::conns::{Admit, ConnMark};
use super::hosts::HostAllowlist;
use super::pace::{self, Paced, SmallBody};
use super::throttle::Verdict;
use super::AppState;

/// The largest body a public route takes (a login form, a share view's arguments).
const PUBLIC_BODY: usize = 16 << 10;

/// Name of the session cookie.
pub(super) const COOKIE: &str = "socketswarm_token";

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
}

/// Requests anyone may make, token or not: reads of the login page, static assets,
/// health and share links; the login form; and the share links' own server fn (it
/// answers only for a valid share id). Nothing else that changes state. Routes match
/// whole segments (a share id is one segment, its downloads are named), never a prefix,
/// and only paths that passed [`unroutable`] get here.
fn is_public(method: &Method, path: &str) -> bool {
    if *method == Method::POST {
        return path == "/login" || path == "/api/share_view";
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    matches!(*method, Method::GET | Method::HEAD)
        && match segments.as_slice() {
            ["login"] | ["api", "health"] | ["favicon.svg"] | ["charts.js"] => true,
            // The built site's files (the file server refuses traversal on its own).
            ["pkg", files @ ..] => !files.is_empty() && files.iter().all(|f| !f.is_empty()),
            ["share", sid]
            | ["share", sid, "report.html" | "export.json" | "series.csv" | "events"]
            | ["api", "shares", sid] => !sid.is_empty(),
            _ => false,
        }
}

/// Why the request path cannot be taken as it is written (`None` = fine): it does not
/// start with `/`, or has a `.` or `..` segment (raw or percent-encoded, `%2e`), an
/// empty segment (`//`), or a separator hidden in a segment (`%2f`, `%5c`, `\`). The
/// guard and the router read the path as written while browsers, proxies and file
/// servers would resolve it, so the two could disagree about which route it is:
/// `/share/../runs` passed the guard as a share link and rendered the private Runs page
/// (attack 8h). No link of the app has such a path, so they are refused outright.
fn unroutable(path: &str) -> Option<&'static str> {
    let Some(rest) = path.strip_prefix('/') else {
        return Some("the path does not start with `/`");
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    for (i, raw) in segments.iter().enumerate() {
        let seg = raw.to_ascii_lowercase();
        if seg.is_empty() && i < last {
            return Some("the path has an empty segment (`//`)");
        }
        if matches!(seg.replace("%2e", ".").as_str(), "." | "..") {
            return Some("the path has a `.` or `..` segment");
        }
        if seg.contains("%2f") || seg.contains("%5c") || seg.contains('\\') {
            return Some("a path segment holds an encoded `/` or a `\\`");
        }
    }
    None
}

/// The first name in the request that is not this server's, if any: its `Host` header
/// and the authority of its URI (absolute-form requests, HTTP/2) must both be ours, and
/// a request with neither is refused too (`None` = fine).
fn misdirected(req: &Request, hosts: &HostAllowlist) -> Option<String> {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let authority = req.uri().authority().map(|a| a.as_str());
    if host.is_none() && authority.is_none() {
        return Some("(none)".into());
    }
    host.into_iter()
        .chain(authority)
        .find(|h| !hosts.allows(h))
        .map(str::to_string)
}

/// 421 for a request naming another host, in one line that says what to do.
fn misdirected_answer(host: &str, hosts: &HostAllowlist) -> Response {
    let shown: String = host
        .chars()
        .take(100)
        .flat_map(char::escape_default)
        .collect();
    (
        StatusCode::MISDIRECTED_REQUEST,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "421 Misdirected Request: this server does not answer to the host `{shown}`, only to {}; if it is reached by that name, start it with --public-url (SOCKETSWARM_PUBLIC_URL).\n",
            hosts.describe()
        ),
    )
        .into_response()
}

/// 400 for a path that [`unroutable`] refused.
fn bad_path(why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "bad_request", "message": format!("{why}: not routed")})),
    )
        .into_response()
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn presented(headers: &HeaderMap, token: &str) -> bool {
    bearer(headers).is_some_and(|b| same(b.trim().as_bytes(), token.as_bytes()))
        || cookie_token(headers).is_some_and(|c| same(c.as_bytes(), token.as_bytes()))
}

/// Whether the request offers a token at all: an `Authorization` header (of any kind)
/// or the session cookie. Only those count as login attempts.
fn offers_token(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION) || cookie_token(headers).is_some()
}

/// The client's address (the TCP peer) that login attempts are counted under. Requests
/// that did not come through the listener (router tests) share the unspecified address.
fn client_ip(extensions: &Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// [`client_ip`] as an extractor, for the login form.
struct ClientIp(IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(client_ip(&parts.extensions)))
    }
}

/// A lockout as `Retry-After` seconds (rounded up, at least 1).
fn retry_secs(wait: Duration) -> u64 {
    wait.as_millis()
        .div_ceil(1000)
        .max(1)
        .try_into()
        .unwrap_or(u64::MAX)
}

/// 429 for a token offered while its address is locked out.
fn locked_out(wait: Duration) -> Response {
    let secs = retry_secs(wait);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, secs.to_string())],
        Json(json!({"error": "too_many_attempts", "message": format!("too many wrong access tokens from this address: try again in {secs} s")})),
    )
        .into_response()
}

/// Why a state-changing request looks cross-site (`None` = fine). Browsers set
/// `Sec-Fetch-Site` themselves (pages cannot forge it), so when it is present it decides;
/// otherwise a present `Origin` must be this server.
fn cross_site(headers: &HeaderMap) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return (site != "same-origin" && site != "none")
            .then(|| format!("Sec-Fetch-Site is `{site}`"));
    }
    let origin = headers.get(header::ORIGIN)?.to_str().unwrap_or("null");
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    if origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
        return Some(format!("Origin `{origin}` is not this server (`{host}`)"));
    }
    None
}

fn forbidden(why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(
            json!({"error": "forbidden", "message": format!("cross-site request refused: {why}")}),
        ),
    )
        .into_response()
}

/// The middleware (see the module docs).
pub(super) async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(host) = misdirected(&req, &st.hosts) {
        tracing::warn!(host, path = req.uri().path(), "foreign Host: refused (421)");
        return misdirected_answer(&host, &st.hosts);
    }
    if let Some(why) = unroutable(req.uri().path()) {
        tracing::warn!(path = req.uri().path(), "{why}: refused");
        return bad_path(why);
    }
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method {
        if let Some(why) = cross_site(req.headers()) {
            tracing::warn!(path = req.uri().path(), "{why}: refused");
            return forbidden(&why);
        }
    }
    let Some(token) = st.access_token.as_deref() else {
        // Open without a token: every body is paced.
        return next.run(paced(req, &st)).await;
    };
    let with_token = presented(req.headers(), token);
    let mark = req.extensions().get::<Arc<ConnMark>>().cloned();
    if mark.is_some_and(|m| m.request(with_token) == Admit::Refuse) {
        return reserved();
    }
    let path = req.uri().path();
    if is_public(req.method(), path) && !with_token {
        return public(req, next, &st).await;
    }
    if is_public(req.method(), path) {
        return next.run(req).await;
    }
    let client = client_ip(req.extensions());
    let offered = offers_token(req.headers());
    if offered || with_token {
        match st.throttle.judge(client, with_token, Instant::now()) {
            Verdict::Right => return next.run(req).await,
            Verdict::LockedOut(wait) => return locked_out(wait),
            Verdict::Wrong => tracing::warn!(%client, path, "wrong access token"),
        }
    }
    // Scripts and scrapers get 401, not a login page (`/metrics` is read by Prometheus).
    if path.starts_with("/api/") || path == "/metrics" || unsafe_method {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({"error": "unauthorized", "message": "this server needs its access token: `Authorization: Bearer TOKEN`, or log in at /login"})),
        )
            .into_response();
    }
    let next_path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    Redirect::to(&format!("/login?next={}", app::api::encode(&next_path))).into_response()
}

/// `req` with its body paced (see the module docs).
fn paced(req: Request, st: &AppState) -> Request {
    let grace = st.limits.body_grace;
    req.map(|body| Paced::wrap(body, grace))
}

/// A public route for a client without the token: a body is read here, whole and by
/// its deadline, before the route runs.
async fn public(req: Request, next: Next, st: &AppState) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(paced(req, st)).await;
    }
    let (parts, body) = paced(req, st).into_parts();
    let deadline = st.limits.body_grace + Duration::from_secs(1);
    match pace::read_small(body, PUBLIC_BODY, deadline).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(SmallBody::Slow) => crate::error::AppError::slow_body().into_response(),
        Err(SmallBody::TooLarge) => {
            let mut r = crate::error::AppError::too_large(PUBLIC_BODY).into_response();
            r.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            r
        }
        Err(SmallBody::Broken) => (
            StatusCode::BAD_REQUEST,
            [(header::CONNECTION, "close")],
            Json(json!({"error": "bad_request", "message": "the request body could not be read"})),
        )
            .into_response(),
    }
}

/// 503 on a connection admitted into the owner's reserve without the token.
fn reserved() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::CONNECTION, "close"),
            (header::RETRY_AFTER, "1"),
        ],
        Json(json!({"error": "busy", "message": "every HTTP connection slot open to clients without the access token is taken; the last ones are kept for requests that carry it"})),
    )
        .into_response()
}

/// Where to go after login: a path on this server, else `/`.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if is_local_path(n) => n.to_string(),
        _ => "/".into(),
    }
}

/// `/` alone or `/` then a character that is neither `/` nor `\`, with no control
/// character, whitespace or backslash anywhere. Browsers parse `Location` leniently
/// (WHATWG URL): they drop tabs and newlines anywhere and read `\` as `/`, so
/// `/\t/evil.example/` or `/\evil.example` become `//evil.example/`, another host
/// (attack 8d). Percent-encoded characters are fine: they stay in the path.
fn is_local_path(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next() == Some('/')
        && !matches!(chars.next(), Some('/' | '\\'))
        && !n
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
    #[serde(default)]
    failed: bool,
}

/// The login form's message after a wrong token.
const WRONG_TOKEN: &str = "That is not this server's token.";

/// The login form, going back to `next`, with an error line if any.
fn page(next: &str, error: Option<&str>) -> Html<String> {
    let esc = crate::report::esc;
    Html(format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>socketswarm · log in</title><link rel="icon" href="/favicon.svg"><link rel="stylesheet" href="/pkg/socketswarm.css"></head>
<body><header class="topbar"><span class="topbar__brand">socketswarm</span></header>
<main class="page"><h1>Access token</h1>
<p class="muted">This socketswarm instance is shared; its operator gave you an access token. It is kept in a cookie for this browser only.</p>
<form class="run-form" method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<label class="field"><span class="field__label">Token</span><input class="field__input" type="password" name="token" autocomplete="current-password" autofocus></label>
{err}<button class="button" type="submit">Log in</button></form></main></body></html>"#,
        next = esc(next),
        err = error
            .map(|e| format!(r#"<p class="error">{}</p>"#, esc(e)))
            .unwrap_or_default()
    ))
}

async fn login_page(q: axum::extract::Query<LoginQuery>) -> Html<String> {
    page(
        &safe_next(q.next.as_deref()),
        q.failed.then_some(WRONG_TOKEN),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

/// The login form again, with 429 and `Retry-After`, while the address is locked out.
fn login_locked_out(next: &str, wait: Duration) -> Response {
    let secs = retry_secs(wait);
    let why = format!("Too many wrong tokens from this address: try again in {secs} s.");
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, secs.to_string())],
        page(next, Some(&why)),
    )
        .into_response()
}

async fn login(
    State(st): State<AppState>,
    ClientIp(client): ClientIp,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    let Some(token) = st.access_token.as_deref() else {
        return Redirect::to(&next).into_response();
    };
    let right = same(f.token.trim().as_bytes(), token.as_bytes());
    match st.throttle.judge(client, right, Instant::now()) {
        Verdict::Right => {}
        Verdict::LockedOut(wait) => return login_locked_out(&next, wait),
        Verdict::Wrong => {
            tracing::warn!(%client, "login with a wrong access token");
            return Redirect::to(&format!(
                "/login?failed=true&next={}",
                app::api::encode(&next)
            ))
            .into_response();
        }
    }
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, next)
        .header(
            header::SET_COOKIE,
            format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000"),
        )
        .body(Body::empty())
        .unwrap_or_default()
}

async fn logout() -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, "/login")
        .header(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )
        .body(Body::empty())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cross_site_posts_are_recognised() {
        assert!(
            cross_site(&headers(&[])).is_none(),
            "curl sends neither header"
        );
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:3000"),
            ("origin", "http://127.0.0.1:3000")
        ]))
        .is_none());
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:3000"),
            ("origin", "http://evil.example")
        ]))
        .is_some());
        assert!(
            cross_site(&headers(&[
                ("host", "127.0.0.1:3000"),
                ("origin", "http://127.0.0.1:8080")
            ]))
            .is_some(),
            "another local port is another origin"
        );
        assert!(cross_site(&headers(&[("host", "127.0.0.1:3000"), ("origin", "null")])).is_some());
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])).is_some());
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-origin")])).is_none());
        assert!(
            cross_site(&headers(&[
                ("sec-fetch-site", "same-origin"),
                ("origin", "null")
            ]))
            .is_none(),
            "a same-origin form under a strict referrer policy sends Origin: null"
        );
    }

    #[test]
    fn tokens_come_from_bearer_or_cookie() {
        let t = "0123456789abcdef";
        assert!(presented(
            &headers(&[("authorization", "Bearer 0123456789abcdef")]),
            t
        ));
        assert!(presented(
            &headers(&[("cookie", "a=b; socketswarm_token=0123456789abcdef")]),
            t
        ));
        assert!(!presented(
            &headers(&[("cookie", "socketswarm_token=0123456789abcdeX")]),
            t
        ));
        assert!(!presented(
            &headers(&[("authorization", "Basic 0123456789abcdef")]),
            t
        ));
        assert!(!presented(&headers(&[]), t));
    }

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(safe_next(Some("/runs?tag=a")), "/runs?tag=a");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        for evil in [
            "/\t/evil.example/",
            "/\\evil",
            "/x\\y",
            "/\n/e",
            "/ /e",
            "/\u{0}",
            "/\u{a0}/e",
        ] {
            assert_eq!(safe_next(Some(evil)), "/", "{evil:?}");
        }
        assert_eq!(safe_next(Some("/")), "/");
        assert_eq!(safe_next(Some("/runs/a%20b?q=%09")), "/runs/a%20b?q=%09");
        assert_eq!(safe_next(None), "/");
        let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
        assert!(is_public(&get, "/share/abc") && is_public(&get, "/pkg/socketswarm.wasm"));
        assert!(!is_public(&get, "/runs") && !is_public(&get, "/api/runs"));
        assert!(is_public(&post, "/login") && is_public(&post, "/api/share_view"));
        assert!(
            !is_public(&delete, "/api/shares/abc"),
            "revoking a link needs the token"
        );
        assert!(!is_public(&post, "/api/runs"));
        assert!(is_public(&get, "/share/abc/series.csv") && is_public(&get, "/api/shares/abc"));
        for private in [
            "/share/abc/runs",
            "/share/",
            "/api/shares/a/b",
            "/pkg/",
            "/loginx",
        ] {
            assert!(!is_public(&get, private), "{private}");
        }
    }

    #[test]
    fn paths_with_dot_segments_are_not_routed() {
        for bad in [
            "/share/../runs",
            "/share/%2e%2E/runs",
            "/share/.%2e",
            "/./runs",
            "/share//runs",
            "//runs",
            "/share/a%2f..%2fruns",
            "/share/a%5Cb",
            "/share/a\\b",
            "*",
        ] {
            assert!(unroutable(bad).is_some(), "{bad}");
        }
        for good in [
            "/",
            "/runs",
            "/runs/",
            "/share/abc/report.html",
            "/pkg/a.b.js",
            "/x/..y",
        ] {
            assert_eq!(unroutable(good), None, "{good}");
        }
    }
}
