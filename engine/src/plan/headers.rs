//! Every header a plan sets, wherever it sets it (the handshake's `headers`, an HTTP
//! step's `headers`, `auth.header`), checked by one function: a plan cannot override a
//! header the transport writes itself (`Host`: another virtual host on an allowed
//! address; framing; the upgrade) nor give one twice. Pure; `validate.rs` calls it.

use super::*;

/// Where a plan's header goes: the WebSocket handshake, or an HTTP step's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeaderUse {
    Handshake,
    Http,
}

/// Headers the transport writes itself: a plan that set one would send it twice (two
/// `Host` lines) or switch what the request means (another virtual host, other framing,
/// another upgrade). `sec-websocket-protocol` has `subprotocols`; extensions are not
/// negotiated by the engine.
fn transport_header(name: &str, used: HeaderUse) -> bool {
    const ALWAYS: [&str; 9] = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "keep-alive",
        "proxy-connection",
    ];
    const HANDSHAKE: [&str; 5] = [
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    ];
    let lower = name.to_ascii_lowercase();
    ALWAYS.contains(&lower.as_str())
        || (used == HeaderUse::Handshake && HANDSHAKE.contains(&lower.as_str()))
}

/// The one check of headers a plan sets, wherever it sets them (`headers`, an HTTP
/// step's `headers`, `auth.header`): a name of letters, digits, `-` and `_`, not one the
/// transport writes, not given twice (names are case-insensitive); a value without line
/// breaks that parses as a template. Fields are `{at}.{name}`.
pub(super) fn check_headers<'a>(
    at: &str,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
    used: HeaderUse,
    errs: &mut Vec<FieldError>,
) {
    let mut seen: Vec<String> = Vec::new();
    for (k, v) in headers {
        let field = format!("{at}.{k}");
        let mut err = |message: String| {
            errs.push(FieldError {
                field: field.clone(),
                message,
            })
        };
        if let Some(problem) = header_name_problem(k, used) {
            err(problem);
        }
        let lower = k.to_ascii_lowercase();
        if seen.contains(&lower) {
            err(format!(
                "`{k}` is given twice (header names are case-insensitive): keep one"
            ));
        }
        seen.push(lower);
        if v.bytes().any(|b| b == b'\r' || b == b'\n') {
            err("header values must not contain line breaks".into());
        }
        if let Err(e) = Template::parse(v) {
            err(e);
        }
    }
}

/// What is wrong with header name `k` used as `used`, if anything.
pub(super) fn header_name_problem(k: &str, used: HeaderUse) -> Option<String> {
    if k.is_empty()
        || !k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        Some("header names may only use letters, digits, '-' and '_'".into())
    } else if transport_header(k, used) {
        Some(format!(
            "`{k}` is written by the engine itself and cannot be set by a plan{}",
            if k.eq_ignore_ascii_case("sec-websocket-protocol") {
                " (offer subprotocols with `subprotocols`)"
            } else {
                ""
            }
        ))
    } else {
        None
    }
}
