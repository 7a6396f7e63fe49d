//! What a plan holds that must not leave the server: the one redaction rule, deny by
//! default, that every way out uses. A run stores only [`Plan::redacted`], which every
//! answer, export, report, share and event reads; evidence a target sends back is
//! scrubbed of every secret value the run knows ([`Secrets`]) before it is kept.
//!
//! **The rule** (`rule.rs`, one function: [`rule::shown`]): every value a plan brings in
//! — header values, query values, URL user info and path segments, subprotocols,
//! `vars`, HTTP-step bodies, token sources, the environment values it reads, and any
//! future source of values such as data feeders — is secret unless it is known safe:
//! its name is marked public by the plan (`public = ["deploymentId"]`), or its literal
//! text looks like words, numbers, durations or versions and its name is not a
//! credential's. Names never show a value; they only hide one. `redact.rs` applies the
//! rule to each field of a plan; [`Secrets::of_plan`] collects the hidden values so
//! they are also scrubbed wherever else they appear.
//!
//! **To bring a new kind of value into plans** (a feeder's rows, a new header field):
//! judge each value with [`rule::shown`]`(name, value, Public(&plan.public))`; hide it in
//! `redact.rs` when it is not shown; add it to [`Secrets`] with
//! [`Secrets::add_hidden`] when it is not shown (or with [`Secrets::add`] when it is a
//! secret in full, like a token), so a target's echo of it is scrubbed; and say in
//! `docs/security.md` under which name users mark it public.
//!
//! **Redaction never changes what a plan does** (`missing.rs`): a hidden value becomes
//! the placeholder `<redacted>` only in what is shown and stored with a run; running or
//! checking a plan that still holds one is an error naming the field
//! ([`Plan::placeholders`], part of `Plan::validate`); running a stored plan again takes
//! each missing value by its key ([`Plan::missing_secrets`], [`Plan::fill_secrets`]).

pub mod rule;

mod missing;
mod redact;

pub use missing::MissingSecret;
pub use redact::redact_url;
pub use rule::{is_credential_name, shown, Public};

use crate::plan::{Plan, REDACTED};

/// Values shorter than this are not scrubbed by value (they would mangle ordinary text).
const MIN_SECRET: usize = 4;

/// The secret values a run knows.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: Vec<String>,
}

impl Secrets {
    /// Adds a value that is secret in full (a token, a client secret, an environment
    /// value), and, for `Bearer X`-like values, its last word. Of a templated value only
    /// the literal parts are known.
    pub fn add(&mut self, v: &str) {
        let v = v.trim();
        if v.contains("{{") {
            self.add_hidden(v);
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

    /// Adds a value the rule hid (it may be a template): each literal stretch between
    /// template references that is more than structure (`Bearer `, `sid=`), and each
    /// key-like word in it on its own, so an echo of just the key is scrubbed too.
    pub fn add_hidden(&mut self, v: &str) {
        let mut rest = v;
        let mut chunks = Vec::new();
        while let Some(open) = rest.find("{{") {
            let Some(close) = rest[open + 2..].find("}}") else {
                break;
            };
            chunks.push(&rest[..open]);
            rest = &rest[open + 2 + close + 2..];
        }
        chunks.push(rest);
        for chunk in chunks {
            let c = chunk.trim();
            if c.is_empty() || rule::structure_only(c) {
                continue;
            }
            self.add(c);
            for w in rule::keylike_words(c) {
                self.add(w);
            }
        }
    }

    /// Adds the hidden parts of an HTTP-step body (JSON by key, a form by parameter).
    pub(crate) fn add_body(&mut self, body: &str, public: Public<'_>) {
        fn walk(s: &mut Secrets, name: &str, v: &serde_json::Value, public: Public<'_>) {
            use serde_json::Value as V;
            match v {
                V::String(text) if !shown(name, text, public) => s.add_hidden(text),
                V::Number(n) if !rule::json_shown(name, v, public) => s.add(&n.to_string()),
                V::Array(a) => a.iter().for_each(|x| walk(s, name, x, public)),
                V::Object(o) => o.iter().for_each(|(k, x)| walk(s, k, x, public)),
                _ => {}
            }
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&rule::json_stand_in(body)) {
            walk(self, "body", &v, public);
        } else if body.contains('=') {
            for pair in body.split('&') {
                if let Some((k, v)) = pair.split_once('=') {
                    if !shown(&rule::decode(k), &rule::decode(v), public) {
                        self.add_hidden(v);
                        self.add_hidden(&rule::decode(v));
                    }
                }
            }
        } else {
            self.add_hidden(body);
        }
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

    /// `e` with every known secret value scrubbed from its texts (bodies, header values,
    /// `Retry-After` values, close reasons). The coordinator applies it to every tick an
    /// agent sends, so an agent that echoes a secret it was sent cannot get it stored.
    pub fn scrub_evidence(&self, e: &mut crate::report::Evidence) {
        if self.is_empty() {
            return;
        }
        for bodies in e.bodies.values_mut() {
            for b in bodies.iter_mut() {
                *b = self.scrub(b);
            }
        }
        for v in e.rate_limit_headers.values_mut() {
            *v = self.scrub(v);
        }
        let retry = std::mem::take(&mut e.retry_after);
        for (k, n) in retry {
            *e.retry_after.entry(self.scrub(&k)).or_default() += n;
        }
        let closes = std::mem::take(&mut e.close_reasons);
        for (code, reasons) in closes {
            for (reason, n) in reasons {
                *e.close_reasons
                    .entry(code)
                    .or_default()
                    .entry(self.scrub(&reason))
                    .or_default() += n;
            }
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
    /// The plan as stored and shown: every value the rule hides replaced by
    /// `"<redacted>"` (environment references kept as references), and every hidden
    /// value also replaced wherever else it was repeated (a script message, a name).
    pub fn redacted(&self) -> Plan {
        let secrets = Secrets::of_plan(self);
        let mut p = self.clone();
        redact::redact_fields(&mut p);
        if secrets.is_empty() {
            return p;
        }
        match serde_json::to_value(&p) {
            Ok(mut v) => {
                scrub_json(&mut v, &secrets);
                serde_json::from_value(v).unwrap_or(p)
            }
            Err(_) => p,
        }
    }
}

#[cfg(test)]
mod tests;
