//! Redaction never changes what a plan does: the placeholder `<redacted>` stands for a
//! hidden value only in what is shown and stored with a run. A plan that still holds
//! one cannot be run or checked ([`Plan::placeholders`], called by `Plan::validate`:
//! each is an error naming its field); running a stored plan again takes each hidden
//! value by its key ([`Plan::missing_secrets`], [`Plan::fill_secrets`]).
//!
//! Keys: the field's path in the plan as JSON (object keys and array indexes joined by
//! `.`, e.g. `headers.X-Api-Key`, `subprotocols.1`); a text holding several
//! placeholders (a URL with user info and a hidden query value) has one key per
//! placeholder, `PATH#1`, `PATH#2`, … in the order they appear.

use crate::plan::{Plan, REDACTED};
use crate::FieldError;

/// A secret the stored plan needs but did not keep: where it is in the plan (`key`)
/// and what to call it when asking for it again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MissingSecret {
    /// Its path in the plan as JSON (object keys and array indexes joined by `.`,
    /// `#N` for the N-th placeholder of a text holding several): the key a run-again
    /// request's `secrets` map gives its value under.
    pub key: String,
    /// Which field it is, in words ("OAuth client secret for token endpoint …").
    pub label: String,
}

/// Walks every string of `value`, calling `f(path, string)` on those that hold
/// `<redacted>`.
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

/// The field's name as validation writes it (`http_steps[0].headers.X-K`).
fn field_name(path: &[String]) -> String {
    let mut out = String::new();
    for p in path {
        if p.parse::<usize>().is_ok() {
            out.push_str(&format!("[{p}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(p);
        }
    }
    out
}

/// What the placeholder at byte `at` of URL `text` stands for.
fn url_part(text: &str, at: usize) -> String {
    let before = &text[..at];
    if before.ends_with("://") {
        "The user info (user:password)".into()
    } else if let Some(name) = before
        .strip_suffix('=')
        .map(|b| b.rsplit(['?', '&']).next().unwrap_or(b))
    {
        format!("The value of query parameter `{name}`")
    } else {
        "A path segment".into()
    }
}

/// What to call placeholder `n` (of `count`, at byte `at`) of the field at `path` of
/// `plan` (JSON) when asking for it again.
fn secret_label(path: &[String], plan: &serde_json::Value, text: &str, at: usize) -> String {
    let get = |p: &str| plan.pointer(p).and_then(|v| v.as_str()).unwrap_or("?");
    let parts: Vec<&str> = path.iter().map(String::as_str).collect();
    match parts.as_slice() {
        ["auth", "source", "client_secret"] => format!(
            "OAuth client secret for token endpoint {}",
            get("/auth/source/token_url")
        ),
        ["auth", "source", "token_url"] => {
            format!("{} in the token endpoint URL {text}", url_part(text, at))
        }
        ["auth", "source", "tokens", i] => {
            let n = i.parse::<usize>().map_or(0, |i| i + 1);
            format!("Token {n} of the plan's token list")
        }
        ["auth", "value"] => format!("Value of the auth header {}", get("/auth/header")),
        ["headers", name] => format!("Value of handshake header {name}"),
        ["vars", name] => format!("Value of variable `{name}`"),
        ["subprotocols", i] => {
            let n = i.parse::<usize>().map_or(0, |i| i + 1);
            format!("Subprotocol {n}")
        }
        ["target"] => format!("{} in the target URL {text}", url_part(text, at)),
        ["http_steps", i, field, rest @ ..] => {
            let n = i.parse::<usize>().map_or(0, |i| i + 1);
            let url = get(&format!("/http_steps/{i}/url"));
            match (*field, rest) {
                ("body", _) => format!("Body of HTTP step {n} ({url})"),
                ("headers", [name]) => format!("Header {name} of HTTP step {n} ({url})"),
                _ => format!("{} in the URL of HTTP step {n} ({url})", url_part(text, at)),
            }
        }
        _ => format!("Secret in plan field {}", parts.join(".")),
    }
}

/// Byte offsets of each placeholder in `s`.
fn placeholder_offsets(s: &str) -> Vec<usize> {
    s.match_indices(REDACTED).map(|(i, _)| i).collect()
}

impl Plan {
    /// The hidden values this (stored) plan did not keep, in plan order: what a run
    /// again must be given before the plan can run.
    pub fn missing_secrets(&self) -> Vec<MissingSecret> {
        let Ok(mut v) = serde_json::to_value(self) else {
            return Vec::new();
        };
        let shown = v.clone();
        let mut out = Vec::new();
        walk_redacted(&mut v, &mut Vec::new(), &mut |path, s| {
            let offsets = placeholder_offsets(s);
            let key = path.join(".");
            for (n, at) in offsets.iter().enumerate() {
                out.push(MissingSecret {
                    key: if offsets.len() == 1 {
                        key.clone()
                    } else {
                        format!("{key}#{}", n + 1)
                    },
                    label: secret_label(path, &shown, s, *at),
                });
            }
        });
        out
    }

    /// Every field still holding the placeholder, as validation errors naming it: a
    /// plan with one does not run (it would send `<redacted>` as the value).
    pub fn placeholders(&self) -> Vec<FieldError> {
        let Ok(mut v) = serde_json::to_value(self) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        walk_redacted(&mut v, &mut Vec::new(), &mut |path, s| {
            // A typed-in token or client secret that was not kept says so in its own
            // check (`Secret::problem`).
            let secret_field = matches!(
                path.iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .as_slice(),
                ["auth", "source", "tokens", _] | ["auth", "source", "client_secret"]
            );
            if secret_field && s == REDACTED {
                return;
            }
            out.push(FieldError {
                field: field_name(path),
                message: format!(
                    "holds `{REDACTED}`: a value hidden when this plan was shown, not the value itself; give the value again (or `{{{{env.NAME}}}}`)"
                ),
            });
        });
        out
    }

    /// Puts the values of `given` (by [`MissingSecret::key`]) where this plan says
    /// `<redacted>`. Every missing secret must be given and every key must name one; the
    /// errors (field `secrets.KEY`) say which are not, by label. The values are used for
    /// this launch only: the run stores [`Plan::redacted`] as always.
    pub fn fill_secrets(
        &mut self,
        given: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), Vec<FieldError>> {
        let missing = self.missing_secrets();
        let mut errs: Vec<FieldError> = missing
            .iter()
            .filter(|m| given.get(&m.key).is_none_or(|v| v.trim().is_empty()))
            .map(|m| FieldError {
                field: format!("secrets.{}", m.key),
                message: format!(
                    "{} was hidden when the earlier run was stored and not kept: give it again",
                    m.label
                ),
            })
            .collect();
        for k in given.keys() {
            if !missing.iter().any(|m| &m.key == k) {
                errs.push(FieldError {
                    field: format!("secrets.{k}"),
                    message: format!("`{k}` is not a secret this plan is missing"),
                });
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let mut v = serde_json::to_value(&*self).map_err(|e| {
            vec![FieldError {
                field: "secrets".into(),
                message: format!("the plan could not be read: {e}"),
            }]
        })?;
        walk_redacted(&mut v, &mut Vec::new(), &mut |path, s| {
            let key = path.join(".");
            let pieces: Vec<&str> = s.split(REDACTED).collect();
            let count = pieces.len() - 1;
            let mut out = String::new();
            for (n, piece) in pieces.iter().enumerate() {
                out.push_str(piece);
                if n < count {
                    let k = if count == 1 {
                        key.clone()
                    } else {
                        format!("{key}#{}", n + 1)
                    };
                    out.push_str(given.get(&k).map_or(REDACTED, String::as_str));
                }
            }
            *s = out;
        });
        *self = serde_json::from_value(v).map_err(|e| {
            vec![FieldError {
                field: "secrets".into(),
                message: format!("the plan with these secrets is not valid: {e}"),
            }]
        })?;
        Ok(())
    }
}
