//! The judgement itself: is a value a plan brings in safe to show? Deny by default: a
//! value is shown only when the plan marks its name public, or when it is known safe by
//! its shape (and, for a credential-like name, only structure is written literally).
//! Names never reveal a value; they can only hide one.
//!
//! - **Marked public**: the plan's `public` list names it (a header, query parameter,
//!   variable or feeder column name, case-insensitive; `path` for URL paths,
//!   `subprotocols` for the offered subprotocols).
//! - **Credential names** (`Authorization`, `Cookie`, `X-Api-Key`, `access_token`,
//!   `client_secret`, `password`, `jwt`, `sig`, …, matched on the words of the name):
//!   shown only when the value is a template whose literal text is structure alone —
//!   an auth scheme word (`Bearer {{token}}`) or parameter names (`sid={{var.sid}}`).
//!   A value written out under such a name is hidden whatever it looks like.
//! - **Other names**: shown when the literal text (template references such as
//!   `{{vu}}`, `{{uuid}}`, `{{var.x}}`, `{{env.X}}` count for nothing: they show where
//!   a value comes from, not the value) looks like words, numbers, durations and
//!   versions rather than a key: no run of mixed letters and digits longer than 4
//!   (`hunter2`, `9f1e77`, a UUID or a JWT fail), no number longer than 13 digits, and
//!   at most [`MAX_SHOWN_BITS`] of estimated guessing entropy (about 12 bits a word,
//!   10 a number: three words pass, a four-word passphrase does not).
//!
//! Structured values are judged part by part with the same rule: query strings and
//! form bodies by parameter, JSON bodies by key, cookies by `name=`.

/// Estimated entropy above which a value is taken for a key (bits).
pub const MAX_SHOWN_BITS: f64 = 40.0;

/// Longest run of mixed letters and digits still taken for a word (`v12`, `h264`, `utf8`).
const MAX_MIXED_WORD: usize = 4;

/// Words (of a name) that make it a credential's name, matched whole.
const CREDENTIAL_WORDS: &[&str] = &[
    "auth",
    "authorization",
    "authentication",
    "token",
    "tokens",
    "secret",
    "secrets",
    "password",
    "passwd",
    "pwd",
    "pass",
    "passphrase",
    "passcode",
    "pin",
    "otp",
    "key",
    "apikey",
    "cookie",
    "cookies",
    "credential",
    "credentials",
    "signature",
    "sig",
    "jwt",
    "sid",
    "sessionid",
    "sessionkey",
    "hmac",
    "bearer",
    "private",
];

/// Parts that make a one-word name a credential's (`accesstoken`, `clientsecret`).
const CREDENTIAL_PARTS: &[&str] = &[
    "token",
    "secret",
    "passw",
    "apikey",
    "credential",
    "signature",
    "cookie",
    "auth",
];

/// Literal words a credential value may hold around its template: auth schemes.
const AUTH_SCHEMES: &[&str] = &[
    "bearer",
    "basic",
    "token",
    "digest",
    "negotiate",
    "apikey",
    "hmac",
    "dpop",
];

/// The plan's `public` list, as the rule reads it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Public<'a>(pub &'a [String]);

impl Public<'_> {
    /// Does the plan mark `name` public?
    pub fn names(&self, name: &str) -> bool {
        self.0.iter().any(|p| p.eq_ignore_ascii_case(name))
    }
}

/// The words of a name: split at anything not a letter or digit and at camelCase
/// humps, lower case (`X-Api-Key` → x, api, key; `sessionToken` → session, token).
fn name_words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Is `name` the name of a credential (see the module doc)? `code` (an OAuth
/// authorization code) counts when it is the whole name.
pub fn is_credential_name(name: &str) -> bool {
    let words = name_words(name);
    name.eq_ignore_ascii_case("code")
        || words.iter().any(|w| {
            CREDENTIAL_WORDS.contains(&w.as_str())
                || (words.len() == 1 && CREDENTIAL_PARTS.iter().any(|p| w.contains(p)))
        })
}

/// A value with its template references taken out: the literal text (references
/// become a space, so they also separate words) and whether it had any. Text that is
/// not a template (an unclosed `{{`) is all literal.
pub(crate) fn literal_of(value: &str) -> (String, bool) {
    let mut out = String::new();
    let mut rest = value;
    let mut refs = false;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push(' ');
        refs = true;
        rest = &rest[open + 2 + close + 2..];
    }
    out.push_str(rest);
    (out, refs)
}

/// The runs of ASCII letters and digits in `text`, each with whether `=` follows it,
/// camelCase humps split.
fn words(text: &str) -> Vec<(&str, bool)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_alphanumeric() {
            // A hump: lower (or digit) then upper starts a new word.
            if i > start && b[i].is_ascii_uppercase() && b[i - 1].is_ascii_lowercase() {
                break;
            }
            i += 1;
        }
        out.push((&text[start..i], b.get(i) == Some(&b'=')));
    }
    out
}

/// Guessing entropy of one word, in bits; `None` for a word that looks like a key.
fn word_bits(w: &str) -> Option<f64> {
    let letters = w.bytes().filter(u8::is_ascii_alphabetic).count();
    let digits = w.len() - letters;
    if letters == 0 {
        // A number: up to 13 digits (counts, ids, millisecond timestamps); card and
        // account numbers are longer.
        return (w.len() <= 13).then_some(10.0);
    }
    if digits > 0 {
        // Digits then a short unit (`60s`, `200ms`, `10kb`) …
        let unit = w.trim_start_matches(|c: char| c.is_ascii_digit());
        if unit.len() <= 3 && unit.bytes().all(|c| c.is_ascii_alphabetic()) && unit.len() < w.len()
        {
            return word_bits(&w[..w.len() - unit.len()]).map(|b| b + 5.0);
        }
        // … or a short tag (`v2`, `h264`, `utf8`); anything longer is a key.
        return (w.len() <= MAX_MIXED_WORD).then_some(12.0);
    }
    let lower = w.bytes().all(|c| c.is_ascii_lowercase());
    let upper = w.bytes().all(|c| c.is_ascii_uppercase());
    let capitalized =
        w.as_bytes()[0].is_ascii_uppercase() && w.bytes().skip(1).all(|c| c.is_ascii_lowercase());
    let vowels = w.bytes().filter(|c| b"aeiouAEIOU".contains(c)).count();
    // Words of up to 10 letters, longer ones only with the vowels of a language (random
    // letters have about one in five).
    let wordlike = w.len() <= 10 || vowels * 10 >= w.len() * 3;
    if (lower || capitalized) && w.len() <= 16 && wordlike {
        // A dictionary-like word: about 12 bits (a diceware word is 12.9).
        Some(12.0)
    } else if upper && w.len() <= 5 {
        // An acronym or code (`US`, `JSON`).
        Some(10.0)
    } else {
        // Random letters: 4.7 bits each (26 letters), or 5.7 mixed case.
        Some(w.len() as f64 * if lower || upper { 4.7 } else { 5.7 })
    }
}

/// The words of `text` that look like keys (or random letters), at least 4 long: the
/// parts of a hidden value worth scrubbing on their own where they are echoed.
pub(crate) fn keylike_words(text: &str) -> Vec<&str> {
    // Whole alphanumeric runs (no camelCase split): a key is echoed whole.
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() >= 4)
        .filter(|w| match word_bits(w) {
            None => true,
            Some(b) => b > 12.0,
        })
        .collect()
}

/// Is literal `text` known safe by its shape (words, numbers, durations, versions)?
pub fn safe_shape(text: &str) -> bool {
    let mut bits = 0.0;
    for (w, _) in words(text) {
        match word_bits(w) {
            Some(b) => bits += b,
            None => return false,
        }
    }
    bits <= MAX_SHOWN_BITS
}

/// Is a credential-named value's literal text structure only (see the module doc)?
pub(crate) fn structure_only(literal: &str) -> bool {
    words(literal)
        .iter()
        .all(|(w, param)| *param || AUTH_SCHEMES.contains(&w.to_ascii_lowercase().as_str()))
}

/// May the value of `name` (a header, query parameter, variable, feeder column …) be
/// shown? The one rule (see the module doc).
pub fn shown(name: &str, value: &str, public: Public<'_>) -> bool {
    if public.names(name) {
        return true;
    }
    let (literal, refs) = literal_of(value);
    if literal.trim().is_empty() {
        return true;
    }
    if is_credential_name(name) {
        refs && structure_only(&literal)
    } else {
        safe_shape(&literal)
    }
}

/// May an HTTP-step body be shown? JSON is judged key by key, a form body parameter by
/// parameter, anything else as one value named `body`.
pub fn body_shown(body: &str, public: Public<'_>) -> bool {
    if public.names("body") {
        return true;
    }
    let json_text = json_stand_in(body);
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&json_text) {
        return json_shown("body", &v, public);
    }
    let (literal, _) = literal_of(body);
    if literal.contains('=') && !literal.contains(char::is_whitespace) {
        return body
            .split('&')
            .filter(|p| !p.is_empty())
            .all(|pair| match pair.split_once('=') {
                Some((k, v)) => shown(&decode(k), &decode(v), public),
                None => shown("body", pair, public),
            });
    }
    shown("body", body, public)
}

/// Marks where a template reference stood inside a JSON string (taken out again before
/// the value is judged).
const REF_MARK: &str = "{{ref}}";

/// `body` as parseable JSON: a reference inside a string stays (as [`REF_MARK`]), one
/// outside becomes `0` (`{"n": {{vu}}}`).
pub(crate) fn json_stand_in(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = body;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("{{") {
            if let Some(close) = rest[2..].find("}}") {
                out.push_str(if in_string { REF_MARK } else { "0" });
                rest = &rest[2 + close + 2..];
                continue;
            }
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

pub(crate) fn json_shown(name: &str, v: &serde_json::Value, public: Public<'_>) -> bool {
    use serde_json::Value as V;
    match v {
        V::String(s) => shown(name, s, public),
        V::Number(_) | V::Bool(_) => !is_credential_name(name) || public.names(name),
        V::Null => true,
        V::Array(a) => a.iter().all(|x| json_shown(name, x, public)),
        V::Object(o) => o.iter().all(|(k, x)| json_shown(k, x, public)),
    }
}

/// Percent-decoded (and `+` as space, as forms write it); invalid UTF-8 kept lossily.
pub(crate) fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Public<'static> = Public(&[]);

    #[test]
    fn harmless_values_are_shown_whatever_their_names() {
        for (name, value) in [
            ("session_cap", "150"),
            ("deploymentId", "demo-deployment"),
            ("idle", "60s"),
            ("reply_delay", "200ms"),
            ("transport", "websocket"),
            ("EIO", "4"),
            ("v", "2.1.0"),
            ("region", "eu-west-1"),
            ("Accept-Language", "en-US"),
            ("tag", "via-token"),
            ("guest", "guest-{{vu}}-{{uuid}}"),
            ("X-Request-Id", "{{uuid}}"),
            ("subprotocols", "graphql-transport-ws"),
            ("subprotocols", "v12.stomp"),
            ("format", "JSON"),
            ("ts", "1733650000123"),
            ("keyboard", "us"),
            ("session_id", "42"),
        ] {
            assert!(shown(name, value, NONE), "{name}={value} hidden");
        }
    }

    #[test]
    fn secret_shaped_values_are_hidden_whatever_their_names() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJndWVzdCJ9.q7ZfT3kPx9LmW2vBn8sRt";
        for (name, value) in [
            ("jwt", jwt),
            ("q", jwt),
            ("X-Trace", "3f2a9c1e-8b7d-4e0f-a1b2-c3d4e5f60718"),
            ("p", "hunter2"),
            ("x", "a1b2-c3d4-e5f6-g7h8"),
            ("x", "qzxwvbnmklpoiuyt"),
            ("x", "qZxWvBnMkLpOiUyT"),
            ("x", "correct-horse-battery-staple"),
            ("x", "4111111111111111"),
            ("X-Plain", "CANARY-c4n4ry-9f1e77{{vu}}"),
            (
                "subprotocols",
                "base64url.bearer.authorization.k8s.io.ZXlKaGJHY2k",
            ),
        ] {
            assert!(!shown(name, value, NONE), "{name}={value} shown");
        }
    }

    #[test]
    fn credential_names_show_only_structure() {
        for (name, value) in [
            ("Authorization", "Bearer {{token}}"),
            ("Cookie", "sid={{var.sid}}"),
            ("X-Api-Key", "{{env.API_KEY}}"),
            ("access_token", "{{token}}"),
        ] {
            assert!(shown(name, value, NONE), "{name}={value} hidden");
        }
        for (name, value) in [
            ("Authorization", "Basic dXNlcjpwYXNz"),
            ("Authorization", "Bearer abc"),
            ("password", "letmein"),
            ("pin", "1234"),
            ("api_key", "demo"),
            ("X-Api-Key", "{{vu}}-demo"),
            ("Cookie", "theme=dark; sid={{var.sid}}"),
            ("clientSecret", "x"),
            ("accesstoken", "abc"),
            ("code", "abc"),
        ] {
            assert!(!shown(name, value, NONE), "{name}={value} shown");
        }
        assert!(!is_credential_name("session_cap"));
        assert!(!is_credential_name("keyboard"));
        assert!(is_credential_name("X-Amz-Security-Token"));
        assert!(is_credential_name("sessionToken"));
    }

    #[test]
    fn marked_public_names_are_shown() {
        let public = ["deploymentId".to_string(), "X-API-KEY".to_string()];
        let p = Public(&public);
        assert!(shown(
            "deploymentid",
            "3f2a9c1e-8b7d-4e0f-a1b2-c3d4e5f60718",
            p
        ));
        assert!(shown("X-Api-Key", "demo-key-9f1e77", p));
        assert!(!shown("other", "3f2a9c1e-8b7d-4e0f-a1b2-c3d4e5f60718", p));
    }

    #[test]
    fn bodies_are_judged_by_their_parts() {
        assert!(body_shown(
            r#"{"user":"guest-{{vu}}","n":{{vu}},"ok":true}"#,
            NONE
        ));
        assert!(body_shown(r#"{"token":"{{var.t}}","lang":"en"}"#, NONE));
        assert!(!body_shown(
            r#"{"user":"guest","password":"letmein"}"#,
            NONE
        ));
        assert!(!body_shown(r#"{"secret":"CANARY-c4n4ry-9f1e77"}"#, NONE));
        assert!(!body_shown(r#"{"pin":1234}"#, NONE));
        assert!(body_shown("a=1&b=two", NONE));
        assert!(!body_shown("user=a&password=hunter", NONE));
        assert!(!body_shown("sk_live_9fQ2xLm7Rt4Vb8Nw", NONE));
        assert!(body_shown("hello there", NONE));
    }
}
