//! Applying the rule to a plan: what a stored (shown) plan keeps of each field
//! ([`Plan::redacted`]) and every secret value a run knows ([`Secrets::of_plan`]), so
//! the same values are scrubbed wherever else they appear — in another field, a script
//! message, a name, or what a target sends back.
//!
//! Fields, by kind (the rule is `super::rule`):
//! - URLs (target, HTTP steps, the token endpoint): user info always hidden; each path
//!   segment (name `path`) and query value (its parameter's name) judged;
//! - handshake headers, the auth header's value (named by `auth.header`), HTTP-step
//!   headers, `vars`, subprotocols (name `subprotocols`): judged;
//! - HTTP-step bodies: judged by their parts, hidden whole;
//! - typed-in tokens and client secrets: always hidden (`{"env": …}` references stay);
//! - OAuth `client_id`, `scope` and `audience` are public by OAuth's own rules.

use super::rule::{body_shown, decode, literal_of, safe_shape, shown, Public};
use super::Secrets;
use crate::plan::{Plan, Secret, TokenSource, REDACTED};
use crate::plan_url::PlanUrl;

/// The schemes a plan's URLs use.
pub(crate) const SCHEMES: &[&str] = &["ws", "wss", "http", "https"];

/// `url` as shown: user info hidden, path segments and query values judged. A URL that
/// does not parse (stored before the parser refused it) is hidden whole unless it is
/// harmless as text.
pub fn redact_url(url: &str, public: Public<'_>) -> String {
    let Ok(u) = PlanUrl::parse(url, SCHEMES) else {
        return if safe_shape(&literal_of(url).0) {
            url.to_string()
        } else {
            REDACTED.to_string()
        };
    };
    u.rebuild(
        u.userinfo.as_ref().map(|_| REDACTED),
        &mut |segment| {
            if shown("path", &decode(segment), public) {
                segment.to_string()
            } else {
                REDACTED.to_string()
            }
        },
        &mut |k, v| {
            if shown(&decode(k), &decode(v), public) {
                v.to_string()
            } else {
                REDACTED.to_string()
            }
        },
    )
}

/// The secret values of `url`: its user info (whole, and the password alone) and every
/// hidden path segment and query value (as written and percent-decoded).
fn url_secrets(url: &str, public: Public<'_>, s: &mut Secrets) {
    let Ok(u) = PlanUrl::parse(url, SCHEMES) else {
        if !safe_shape(&literal_of(url).0) {
            s.add_hidden(url);
        }
        return;
    };
    if let Some(info) = &u.userinfo {
        s.add(info);
        s.add(&decode(info));
        if let Some((_, pw)) = info.split_once(':') {
            s.add(pw);
            s.add(&decode(pw));
        }
    }
    for segment in u.path.split('/') {
        if !shown("path", &decode(segment), public) {
            s.add_hidden(segment);
            s.add_hidden(&decode(segment));
        }
    }
    for (k, v) in u.query_pairs() {
        if !shown(&decode(k), &decode(v), public) {
            s.add_hidden(v);
            s.add_hidden(&decode(v));
        }
    }
}

/// `v`, or the placeholder when the rule hides it under `name`.
fn judged(name: &str, v: &mut String, public: Public<'_>) {
    if !shown(name, v, public) {
        *v = REDACTED.into();
    }
}

/// Hides, field by field, what the rule hides (see the module doc).
pub(super) fn redact_fields(p: &mut Plan) {
    let public_names = p.public.clone();
    let public = Public(&public_names);
    p.target = redact_url(&p.target, public);
    for (k, v) in p.headers.iter_mut() {
        judged(k, v, public);
    }
    for v in p.subprotocols.iter_mut() {
        judged("subprotocols", v, public);
    }
    for (k, v) in p.vars.iter_mut() {
        judged(k, v, public);
    }
    if let Some(auth) = p.auth.as_mut() {
        match &mut auth.source {
            TokenSource::Static { tokens } => tokens.iter_mut().for_each(Secret::redact),
            TokenSource::Oauth2 {
                client_secret,
                token_url,
                ..
            } => {
                client_secret.redact();
                *token_url = redact_url(token_url, public);
            }
        }
        let header = auth.header.clone();
        judged(&header, &mut auth.value, public);
    }
    for step in p.http_steps.iter_mut() {
        step.url = redact_url(&step.url, public);
        for (k, v) in step.headers.iter_mut() {
            judged(k, v, public);
        }
        if let Some(body) = step.body.as_mut() {
            if !body_shown(body, public) {
                *body = REDACTED.into();
            }
        }
    }
}

/// Adds the value of `name` when the rule hides it.
fn judged_secret(name: &str, v: &str, public: Public<'_>, s: &mut Secrets) {
    if !shown(name, v, public) {
        s.add_hidden(v);
    }
}

impl Secrets {
    /// Every secret value `plan` holds or reads (environment values are read now).
    pub fn of_plan(plan: &Plan) -> Secrets {
        let mut s = Secrets::default();
        let public = Public(&plan.public);
        if let Some(a) = &plan.auth {
            match &a.source {
                TokenSource::Static { tokens } => {
                    for t in tokens {
                        if let Some(v) = t.resolve() {
                            s.add(&v);
                        }
                    }
                }
                TokenSource::Oauth2 {
                    client_secret,
                    token_url,
                    ..
                } => {
                    if let Some(v) = client_secret.resolve() {
                        s.add(&v);
                    }
                    url_secrets(token_url, public, &mut s);
                }
            }
            judged_secret(&a.header, &a.value, public, &mut s);
        }
        for (_, name) in plan.env_names() {
            if let Ok(v) = std::env::var(&name) {
                s.add(&v);
            }
        }
        url_secrets(&plan.target, public, &mut s);
        for (k, v) in &plan.headers {
            judged_secret(k, v, public, &mut s);
        }
        for v in &plan.subprotocols {
            judged_secret("subprotocols", v, public, &mut s);
        }
        for (k, v) in &plan.vars {
            judged_secret(k, v, public, &mut s);
        }
        for step in &plan.http_steps {
            url_secrets(&step.url, public, &mut s);
            for (k, v) in &step.headers {
                judged_secret(k, v, public, &mut s);
            }
            if let Some(body) = step.body.as_deref().filter(|b| !body_shown(b, public)) {
                s.add_body(body, public);
            }
        }
        s
    }
}
