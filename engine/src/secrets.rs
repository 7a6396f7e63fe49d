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
//!
//! Running a stored plan again: [`Plan::missing_secrets`] names each `<redacted>` field
//! (by a dotted key and a label), and [`Plan::fill_secrets`] takes their values for one
//! launch (issue 16 item 5); the new run stores the plan redacted again.

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

/// A secret the stored plan needs but did not keep (a typed-in value stored as
/// `<redacted>`): where it is in the plan (`key`, a dotted path such as
/// `auth.source.client_secret`) and what to call it when asking for it again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MissingSecret {
    /// Its path in the plan as JSON (object keys and array indexes joined by `.`): the
    /// key a run-again request's `secrets` map gives its value under.
    pub key: String,
    /// Which field it is, in words ("OAuth client secret for token endpoint …").
    pub label: String,
}

/// What to call the field at `path` of `plan` (JSON) when asking for it again.
fn secret_label(path: &[String], plan: &serde_json::Value) -> String {
    let at = |p: &str| plan.pointer(p).and_then(|v| v.as_str()).unwrap_or("?");
    let parts: Vec<&str> = path.iter().map(String::as_str).collect();
    match parts.as_slice() {
        ["auth", "source", "client_secret"] => format!(
            "OAuth client secret for token endpoint {}",
            at("/auth/source/token_url")
        ),
        ["auth", "source", "tokens", i] => {
            let n = i.parse::<usize>().map_or(0, |i| i + 1);
            format!("Token {n} of the plan's token list")
        }
        ["headers", name] => format!("Value of handshake header {name}"),
        ["target"] => format!("Credentials in the target URL {}", at("/target")),
        ["http_steps", i, field, rest @ ..] => {
            let n = i.parse::<usize>().map_or(0, |i| i + 1);
            let url = at(&format!("/http_steps/{i}/url"));
            match (*field, rest) {
                ("body", _) => format!("Body of HTTP step {n} ({url})"),
                ("headers", [name]) => format!("Header {name} of HTTP step {n} ({url})"),
                _ => format!("Credentials in the URL of HTTP step {n} ({url})"),
            }
        }
        _ => format!("Secret in plan field {}", parts.join(".")),
    }
}

/// Walks every string of `value`, calling `f(path, string)` on those that hold `<redacted>`.
fn walk_redacted(
    value: &mut serde_json::Value,
    path: &mut Vec<String>,
    f: &mut dyn FnMut(&[String], &mut String),
) {
    match value {
        serde_json::Value::String(s) if s.contains(REDACTED) => f(path, s),
        serde_json::Value::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                path.push(i.to_string());
                walk_redacted(v, path, f);
                path.pop();
            }
        }
        serde_json::Value::Object(o) => {
            for (k, v) in o.iter_mut() {
                path.push(k.clone());
                walk_redacted(v, path, f);
                path.pop();
            }
        }
        _ => {}
    }
}

impl Plan {
    /// The typed-in secrets this (stored) plan did not keep, in plan order: what a
    /// run-again must be given before the plan can run.
    pub fn missing_secrets(&self) -> Vec<MissingSecret> {
        let Ok(mut v) = serde_json::to_value(self) else {
            return Vec::new();
        };
        let shown = v.clone();
        let mut out = Vec::new();
        walk_redacted(&mut v, &mut Vec::new(), &mut |path, _| {
            out.push(MissingSecret {
                key: path.join("."),
                label: secret_label(path, &shown),
            })
        });
        out
    }

    /// Puts the values of `given` (by [`MissingSecret::key`]) where this plan says
    /// `<redacted>`. Every missing secret must be given and every key must name one;
    /// the errors (field `secrets.KEY`) say which are not, by label. The values are
    /// used for this launch only: the run stores [`Plan::redacted`] as always.
    pub fn fill_secrets(
        &mut self,
        given: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), Vec<crate::FieldError>> {
        let missing = self.missing_secrets();
        let mut errs: Vec<crate::FieldError> = missing
            .iter()
            .filter(|m| given.get(&m.key).is_none_or(|v| v.trim().is_empty()))
            .map(|m| crate::FieldError {
                field: format!("secrets.{}", m.key),
                message: format!(
                    "{} was typed in for the earlier run and not kept: give it again",
                    m.label
                ),
            })
            .collect();
        for k in given.keys() {
            if !missing.iter().any(|m| &m.key == k) {
                errs.push(crate::FieldError {
                    field: format!("secrets.{k}"),
                    message: format!("`{k}` is not a secret this plan is missing"),
                });
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let mut v = serde_json::to_value(&*self).map_err(|e| {
            vec![crate::FieldError {
                field: "secrets".into(),
                message: format!("the plan could not be read: {e}"),
            }]
        })?;
        walk_redacted(&mut v, &mut Vec::new(), &mut |path, s| {
            if let Some(value) = given.get(&path.join(".")) {
                *s = s.replace(REDACTED, value);
            }
        });
        *self = serde_json::from_value(v).map_err(|e| {
            vec![crate::FieldError {
                field: "secrets".into(),
                message: format!("the plan with these secrets is not valid: {e}"),
            }]
        })?;
        Ok(())
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

    fn oauth_plan(secret: &str) -> Plan {
        serde_json::from_value(serde_json::json!({
            "name": "oauth",
            "target": "ws://127.0.0.1:1/echo?access_token=tok-typed-1&tag=a",
            "stages": [{"duration": "1s", "connections": 1}],
            "headers": {"X-Api-Key": "KEY-VALUE-1"},
            "auth": {"source": {"type": "oauth2", "token_url": "http://127.0.0.1:1/oauth/token",
                "client_id": "c", "client_secret": secret}}
        }))
        .unwrap()
    }

    #[test]
    fn a_stored_plan_names_the_secrets_it_did_not_keep_and_takes_them_back() {
        let stored = oauth_plan("s3cret-typed").redacted();
        let missing = stored.missing_secrets();
        let keys: Vec<&str> = missing.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(
            keys,
            ["auth.source.client_secret", "headers.X-Api-Key", "target"]
        );
        assert_eq!(
            missing[0].label,
            "OAuth client secret for token endpoint http://127.0.0.1:1/oauth/token"
        );
        assert_eq!(missing[1].label, "Value of handshake header X-Api-Key");
        assert_eq!(
            missing[2].label,
            "Credentials in the target URL ws://127.0.0.1:1/echo?access_token=<redacted>&tag=a"
        );
        // A plan with nothing typed in misses nothing.
        let env: Plan = serde_json::from_value(serde_json::json!({
            "name": "e", "target": "ws://127.0.0.1:1/", "stages": [{"duration": "1s", "connections": 1}],
            "auth": {"source": {"type": "oauth2", "token_url": "http://h/t", "client_id": "c",
                "client_secret": {"env": "SOME_VAR"}}}
        }))
        .unwrap();
        assert!(env.redacted().missing_secrets().is_empty());

        // One missing and one unknown key: both named, nothing filled.
        let mut p = stored.clone();
        let given = std::collections::BTreeMap::from([
            ("auth.source.client_secret".to_string(), "again".to_string()),
            ("auth.nope".to_string(), "x".to_string()),
        ]);
        let errs = p.fill_secrets(&given).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "secrets.headers.X-Api-Key",
                "secrets.target",
                "secrets.auth.nope"
            ]
        );
        assert!(errs[0]
            .message
            .starts_with("Value of handshake header X-Api-Key"));
        assert_eq!(p, stored);

        // All given: the plan holds them, and redacting it again hides them again.
        let given = std::collections::BTreeMap::from([
            (
                "auth.source.client_secret".to_string(),
                "again-1".to_string(),
            ),
            ("headers.X-Api-Key".to_string(), "KEY-2".to_string()),
            ("target".to_string(), "tok-2".to_string()),
        ]);
        p.fill_secrets(&given).unwrap();
        assert!(p.missing_secrets().is_empty());
        match &p.auth.as_ref().unwrap().source {
            TokenSource::Oauth2 { client_secret, .. } => {
                assert_eq!(client_secret.resolve().as_deref(), Some("again-1"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.headers["X-Api-Key"], "KEY-2");
        assert_eq!(p.target, "ws://127.0.0.1:1/echo?access_token=tok-2&tag=a");
        assert_eq!(p.redacted(), stored);
    }
}
