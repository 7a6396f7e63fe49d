//! The built site: the wasm and its JS glue, CSS, uPlot, `public/` (favicon, charts.js).
//!
//! By default it is the copy `build.rs` embedded in the binary, served from memory, so
//! `socketswarm` runs from any directory (issue 15). `--site-root DIR` serves a directory
//! from disk instead, as it changes (development: edit CSS, reload).
//!
//! Embedded files answer at two URLs:
//! - the content-hashed one the pages link, always under `/pkg/`
//!   (`/pkg/socketswarm.<hash>.css`, `/pkg/charts.<hash>.js`): `Cache-Control: public,
//!   max-age=31536000, immutable`, since a new build has new names;
//! - the plain one (`/pkg/socketswarm.css`, `/favicon.svg`): `no-cache` with an `ETag`,
//!   so links outside the pages (the login page, bookmarks) revalidate.
//!
//! Invariants: the JS glue and the wasm share one hash (Leptos names both from one
//! `output_name`, so the page asks for `/pkg/socketswarm.<hash>.{js,wasm}`); a binary
//! built without a site still starts, serves pages without CSS or JavaScript and says
//! so on every page (`app::SiteUrls::missing`) and in its log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The wasm-bindgen output's name (`LEPTOS_OUTPUT_NAME` in `.cargo/config.toml`).
pub const OUTPUT_NAME: &str = "socketswarm";

/// One file of the site, as `build.rs` embedded it.
#[derive(Debug)]
pub(crate) struct EmbeddedFile {
    /// Plain URL path, e.g. `/pkg/socketswarm.css`.
    pub(crate) path: &'static str,
    /// Content-hashed URL path, e.g. `/pkg/socketswarm.0123456789abcdef.css`.
    pub(crate) hashed: &'static str,
    /// 16 hex digits of the content's SHA-256 (also the `ETag`).
    pub(crate) hash: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) bytes: &'static [u8],
}

mod embedded {
    use super::EmbeddedFile;
    include!(concat!(env!("OUT_DIR"), "/site.rs"));
}

/// `Cache-Control` of content-hashed URLs: a new build has new URLs.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of plain URLs: use the copy only after revalidating its `ETag`.
const REVALIDATE: &str = "no-cache";

/// Where the site comes from.
#[derive(Clone, Debug)]
pub enum Site {
    /// The copy in the binary, looked up by plain or hashed path.
    Embedded(Arc<Index>),
    /// `--site-root DIR`: served from disk by Leptos' file handler, plain URLs only.
    Dir(PathBuf),
}

/// The embedded files by URL path; `true` for a hashed (immutable) URL.
#[derive(Debug, Default)]
pub struct Index {
    by_path: HashMap<&'static str, (&'static EmbeddedFile, bool)>,
}

impl Index {
    fn of(files: &'static [EmbeddedFile]) -> Self {
        let mut by_path = HashMap::with_capacity(files.len() * 2);
        for f in files {
            by_path.insert(f.path, (f, false));
            by_path.insert(f.hashed, (f, true));
        }
        Self { by_path }
    }

    fn get(&self, path: &str) -> Option<(&'static EmbeddedFile, bool)> {
        self.by_path.get(path).copied()
    }
}

impl Site {
    /// The embedded site, or `dir` when given (`--site-root`).
    pub fn new(dir: Option<&Path>) -> Self {
        match dir {
            Some(d) => Self::Dir(d.to_path_buf()),
            None => Self::Embedded(Arc::new(Index::of(embedded::FILES))),
        }
    }

    /// Whether there is a site to hydrate pages with (the wasm is there).
    pub fn is_built(&self) -> bool {
        let wasm = format!("/pkg/{OUTPUT_NAME}.wasm");
        match self {
            Self::Embedded(index) => index.get(&wasm).is_some(),
            Self::Dir(d) => d.join(wasm.trim_start_matches('/')).is_file(),
        }
    }

    /// The Leptos `output_name`: `socketswarm.<hash>` when embedded, so the hydration
    /// scripts ask for the immutable `/pkg/socketswarm.<hash>.{js,wasm}`.
    pub fn output_name(&self) -> String {
        match self {
            Self::Embedded(index) => index.get(&format!("/pkg/{OUTPUT_NAME}.wasm")).map_or_else(
                || OUTPUT_NAME.to_string(),
                |(f, _)| format!("{OUTPUT_NAME}.{}", f.hash),
            ),
            Self::Dir(_) => OUTPUT_NAME.to_string(),
        }
    }

    /// The URLs the shell links (hashed when embedded).
    pub fn urls(&self) -> app::SiteUrls {
        let hashed = match self {
            Self::Embedded(_) => embedded::FILES
                .iter()
                .map(|f| (f.path.to_string(), f.hashed.to_string()))
                .collect(),
            Self::Dir(_) => HashMap::new(),
        };
        app::SiteUrls {
            hashed: Arc::new(hashed),
            missing: !self.is_built(),
        }
    }

    /// For the start-up log.
    pub fn describe(&self) -> String {
        match self {
            Self::Embedded(_) => {
                let bytes: usize = embedded::FILES.iter().map(|f| f.bytes.len()).sum();
                format!(
                    "embedded in the binary ({} files, {} KiB, from {})",
                    embedded::FILES.len(),
                    bytes / 1024,
                    embedded::SITE_DIR
                )
            }
            Self::Dir(d) => format!("from {} (--site-root)", d.display()),
        }
    }

    /// The Leptos `site_root` (only its file handler reads it, and only for `Dir`).
    pub fn root(&self) -> String {
        match self {
            Self::Dir(d) => d.display().to_string(),
            // Never a real directory: nothing is read from disk.
            Self::Embedded(_) => String::new(),
        }
    }
}

/// Middleware: answers `GET`/`HEAD` for an embedded file from memory; everything else
/// goes on to the router (and an unknown `/pkg/...` to the app's 404 page).
pub async fn serve_embedded(State(index): State<Arc<Index>>, req: Request, next: Next) -> Response {
    let found = matches!(*req.method(), Method::GET | Method::HEAD)
        .then(|| index.get(req.uri().path()))
        .flatten();
    match found {
        Some((file, immutable)) => answer(file, immutable, req.method(), req.headers()),
        None => next.run(req).await,
    }
}

fn answer(
    file: &'static EmbeddedFile,
    immutable: bool,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let etag = format!("\"{}\"", file.hash);
    let cache = if immutable { IMMUTABLE } else { REVALIDATE };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let body = if *method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(Bytes::from_static(file.bytes))
        };
        let mut r = Response::new(body);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(file.content_type),
        );
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(file.bytes.len()));
        r
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    static FILES: &[EmbeddedFile] = &[EmbeddedFile {
        path: "/pkg/x.css",
        hashed: "/pkg/x.00112233aabbccdd.css",
        hash: "00112233aabbccdd",
        content_type: "text/css; charset=utf-8",
        bytes: b"body{}",
    }];

    fn get(path: &str, headers: &[(&str, &str)]) -> Option<Response> {
        let index = Index::of(FILES);
        let (f, immutable) = index.get(path)?;
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        Some(answer(f, immutable, &Method::GET, &h))
    }

    #[test]
    fn hashed_urls_are_immutable_and_plain_ones_revalidate() {
        let r = get("/pkg/x.00112233aabbccdd.css", &[]).expect("hashed url served");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[header::CACHE_CONTROL], IMMUTABLE);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");
        assert_eq!(r.headers()[header::CONTENT_LENGTH], "6");
        let r = get("/pkg/x.css", &[]).expect("plain url served");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(r.headers()[header::ETAG], "\"00112233aabbccdd\"");
        assert!(get("/pkg/y.css", &[]).is_none());
    }

    #[test]
    fn a_matching_etag_is_not_modified() {
        let r = get(
            "/pkg/x.css",
            &[("if-none-match", "\"nope\", \"00112233aabbccdd\"")],
        )
        .expect("served");
        assert_eq!(r.status(), 304);
        let r = get("/pkg/x.css", &[("if-none-match", "\"nope\"")]).expect("served");
        assert_eq!(r.status(), 200);
    }
}
