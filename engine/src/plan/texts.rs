//! What a plan reads from outside itself: every templated text with its field
//! (`Plan::templated_texts`, which validation and session checks walk) and every server
//! environment variable it reads (`Plan::env_names`, which the redaction rule and
//! validation use). Pure.

use super::*;

impl Plan {
    /// Every templated text of the plan with its field (target, headers, script
    /// messages and matchers, HTTP steps, the auth header value).
    pub fn templated_texts(&self) -> Vec<(String, &str)> {
        fn steps<'a>(prefix: &str, list: &'a [Step], out: &mut Vec<(String, &'a str)>) {
            for (i, s) in list.iter().enumerate() {
                let f = format!("{prefix}[{i}]");
                match s {
                    Step::Send(t) | Step::SendBinary(t) => out.push((f, t.as_str())),
                    Step::Expect(e) => {
                        for (name, t) in e.match_spec().templates() {
                            out.push((format!("{f}.expect.{name}"), t));
                        }
                    }
                    Step::Repeat(r) => steps(&format!("{f}.repeat.steps"), &r.steps, out),
                    _ => {}
                }
            }
        }
        let mut out = vec![("target".to_string(), self.target.as_str())];
        for (k, v) in &self.headers {
            out.push((format!("headers.{k}"), v.as_str()));
        }
        for (k, v) in &self.vars {
            out.push((format!("vars.{k}"), v.as_str()));
        }
        steps("script", &self.script, &mut out);
        for (i, r) in self.responders.iter().enumerate() {
            for (name, t) in r.match_spec().templates() {
                out.push((format!("responders[{i}].{name}"), t));
            }
            if let Some(t) = &r.reply {
                out.push((format!("responders[{i}].reply"), t.as_str()));
            }
        }
        for (i, h) in self.http_steps.iter().enumerate() {
            out.push((format!("http_steps[{i}].url"), h.url.as_str()));
            for (k, v) in &h.headers {
                out.push((format!("http_steps[{i}].headers.{k}"), v.as_str()));
            }
            if let Some(b) = &h.body {
                out.push((format!("http_steps[{i}].body"), b.as_str()));
            }
        }
        if let Some(a) = &self.auth {
            out.push(("auth.value".into(), a.value.as_str()));
            if let Some(r) = &a.rotation {
                out.extend(r.templates());
            }
        }
        out
    }

    /// Every server environment variable the plan reads, with the field that reads it:
    /// `{{env.NAME}}` in templates and `{"env": "NAME"}` secrets.
    pub fn env_names(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (field, text) in self.templated_texts() {
            if let Ok(t) = Template::parse(text) {
                out.extend(t.env_names().map(|n| (field.clone(), n.to_string())));
            }
        }
        if let Some(a) = &self.auth {
            match &a.source {
                TokenSource::Static { tokens } => {
                    for (i, t) in tokens.iter().enumerate() {
                        if let Secret::Env { env } = t {
                            out.push((format!("auth.source.tokens[{i}]"), env.clone()));
                        }
                    }
                }
                TokenSource::Oauth2 { client_secret, .. } => {
                    if let Secret::Env { env } = client_secret {
                        out.push(("auth.source.client_secret".into(), env.clone()));
                    }
                }
            }
        }
        out
    }
}
