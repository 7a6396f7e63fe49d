//! What a plan holds that must not leave the server: the one redaction rule, by name and
//! by value, that every way out uses (a run stores only `Plan::redacted`, which every
//! answer, export, report, share and event reads; evidence a target sends back is
//! scrubbed with the same values before it is kept).
//!
//! By name: token sources, header values whose name looks like a credential (or that
//! carry a template), HTTP-step bodies, URL user info and query values whose name looks
//! like a credential. By value: every secret value the plan knows (typed tokens and
//! client secrets, the values of the environment variables it reads, credential
//! headers, URL passwords and credential query values) is replaced wherever else it
//! appears — a script message, a name, another field.

use crate::plan::{Plan, Secret, TokenSource, REDACTED};

/// Header and query parameter names that carry credentials.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    const WORDS: [&str; 12] = [
        "auth",
        "token",
        "secret",
        "key",
        "cookie",
        "session",
        "password",
        "passwd",
        "pass",
        "credential",
        "signature",
        "sig",
    ];
    WORDS.iter().any(|w| n.contains(w)) || n == "code"
}

/// Values shorter than this are not scrubbed by value (they would mangle ordinary text).
const MIN_SECRET: usize = 4;

/// The secret values a run knows.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: Vec<String>,
}

impl Secrets {
    /// Adds a value (and, for `Bearer X`-like values, its last word). Of a templated
    /// value only the literal parts are known; short ones (`Bearer `) are left alone.
    pub fn add(&mut self, v: &str) {
        let v = v.trim();
        if v.contains("{{") {
            let parts: Vec<&str> = v
                .split("{{")
                .map(|p| p.rsplit_once("}}").map_or(p, |x| x.1))
                .filter(|p| p.trim().len() >= 8)
                .collect();
            for p in parts {
                self.add(p);
            }
            return;
        }
        if v.len() < MIN_SECRET || v == REDACTED {
            return;
        }
        if !self.values.iter().any(|x| x == v) {
            self.values.push(v.to_string());
        }
        if let Some((_, last)) = v.rsplit_once(' ') {
            self.add(last);
        }
    }

    /// Every secret value `plan` holds or reads (environment values are read now).
    pub fn of_plan(plan: &Plan) -> Secrets {
        let mut s = Secrets::default();
        if let Some(a) = &plan.auth {
            match &a.source {
                TokenSource::Static { tokens } => {
                    for t in tokens {
                        if let Some(v) = t.resolve() {
                            s.add(&v);
                        }
                    }
                }
                TokenSource::Oauth2 { client_secret, .. } => {
                    if let Some(v) = client_secret.resolve() {
                        s.add(&v);
                    }
                }
            }
        }
        for (_, name) in plan.env_names() {
            if let Ok(v) = std::env::var(&name) {
                s.add(&v);
            }
        }
        let headers = plan
            .headers
            .iter()
            .chain(plan.http_steps.iter().flat_map(|h| h.headers.iter()));
        for (k, v) in headers {
            if is_secret_name(k) {
                s.add(v);
            }
        }
        for url in std::iter::once(&plan.target).chain(plan.http_steps.iter().map(|h| &h.url)) {
            for v in url_secrets(url) {
                s.add(&v);
            }
        }
        s
    }

    /// `text` with every known secret value (raw or percent-encoded) replaced.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), REDACTED);
            }
            let encoded: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
            if encoded != *v && out.contains(encoded.as_str()) {
                out = out.replace(encoded.as_str(), REDACTED);
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// The user-info password and credential query values of a URL (templates allowed).
fn url_secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (before_query, query) = match url.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (url, None),
    };
    if let Some(authority) = before_query.split_once("://").map(|x| x.1) {
        let authority = authority.split('/').next().unwrap_or_default();
        if let Some((info, _)) = authority.rsplit_once('@') {
            out.push(info.split_once(':').map_or(info, |x| x.1).to_string());
            out.push(info.to_string());
        }
    }
    for pair in query.unwrap_or_default().split(['&', '#']) {
        if let Some((k, v)) = pair.split_once('=') {
            if is_secret_name(k) {
                out.push(v.to_string());
                out.extend(
                    url::form_urlencoded::parse(pair.as_bytes()).map(|(_, v)| v.into_owned()),
                );
            }
        }
    }
    out
}

/// `url` with its user info and credential query values replaced by `<redacted>`.
pub fn redact_url(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((a, q)) => (a.to_string(), Some(q)),
        None => (url.to_string(), None),
    };
    let mut out = match before_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://{REDACTED}@{host}{path}"),
                None => before_query.clone(),
            }
        }
        None => before_query.clone(),
    };
    if let Some(q) = query {
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_name(k) => format!("{k}={REDACTED}"),
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// Redacts by name the fields that hold credentials (see the module doc).
pub(crate) fn redact_by_name(p: &mut Plan) {
    if let Some(auth) = p.auth.as_mut() {
        match &mut auth.source {
            TokenSource::Static { tokens } => tokens.iter_mut().for_each(Secret::redact),
            TokenSource::Oauth2 { client_secret, .. } => client_secret.redact(),
        }
    }
    let secret_header = |k: &str, v: &str| is_secret_name(k) || v.contains("{{");
    for (k, v) in p.headers.iter_mut() {
        if secret_header(k, v) {
            *v = REDACTED.into();
        }
    }
    p.target = redact_url(&p.target);
    for step in p.http_steps.iter_mut() {
        step.url = redact_url(&step.url);
        for (k, v) in step.headers.iter_mut() {
            if secret_header(k, v) {
                *v = REDACTED.into();
            }
        }
        if step.body.is_some() {
            step.body = Some(REDACTED.into());
        }
    }
}

/// Replaces known secret values in every string of `value` (a plan as JSON).
pub(crate) fn scrub_json(value: &mut serde_json::Value, secrets: &Secrets) {
    match value {
        serde_json::Value::String(s) => {
            let clean = secrets.scrub(s);
            if clean != *s {
                *s = clean;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|v| scrub_json(v, secrets)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|v| scrub_json(v, secrets)),
        _ => {}
    }
}

impl Plan {
    /// The plan as stored: typed-in secrets replaced by `"<redacted>"`, env references
    /// kept. Headers whose name suggests a credential are redacted too.
    pub fn redacted(&self) -> Plan {
        let secrets = crate::secrets::Secrets::of_plan(self);
        let mut p = self.clone();
        crate::secrets::redact_by_name(&mut p);
        if secrets.is_empty() {
            return p;
        }
        // By value: a secret typed into a field of its own is also found wherever else
        // it was repeated (a script message, a name).
        match serde_json::to_value(&p) {
            Ok(mut v) => {
                crate::secrets::scrub_json(&mut v, &secrets);
                serde_json::from_value(v).unwrap_or(p)
            }
            Err(_) => p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_user_info_and_credential_query_values() {
        assert_eq!(
            redact_url("wss://user:pw@h:1/p?access_token=abc&x=1&tenant={{vu}}"),
            "wss://<redacted>@h:1/p?access_token=<redacted>&x=1&tenant={{vu}}"
        );
        assert_eq!(redact_url("ws://h:1/p"), "ws://h:1/p");
        let s = url_secrets("http://u:pw123@h/x?api_key=k%2Fey1&a=b");
        assert!(s.contains(&"pw123".to_string()), "{s:?}");
        assert!(s.contains(&"k/ey1".to_string()), "{s:?}");
    }

    #[test]
    fn values_are_scrubbed_raw_and_percent_encoded() {
        let mut s = Secrets::default();
        s.add("Bearer CANARY-123456");
        s.add("ab"); // too short to scrub
        assert_eq!(s.scrub("x CANARY-123456 y"), "x <redacted> y");
        assert_eq!(s.scrub("cap=CANARY-123456"), "cap=<redacted>");
        let mut e = Secrets::default();
        e.add("a b/c+d=secret");
        assert_eq!(e.scrub("q=a+b%2Fc%2Bd%3Dsecret"), "q=<redacted>");
        assert_eq!(s.scrub("ab"), "ab");
        assert!(is_secret_name("X-Apikey") && is_secret_name("Proxy-Authorization"));
        assert!(is_secret_name("Cookie") && !is_secret_name("X-Request-Id"));
    }
}
