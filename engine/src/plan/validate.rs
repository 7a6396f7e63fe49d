//! `Plan::validate`: every field checked against the server's `Limits`, each problem a
//! `FieldError` naming the field, the value and the limit. Pure.

use super::headers::{check_headers, header_name_problem, HeaderUse};
use super::*;

const MAX_STAGES: usize = 64;
const MAX_STEPS: usize = 256;
const MAX_HEADERS: usize = 64;
const MAX_HEADER_BYTES: usize = 8 * 1024;
const MAX_NAME: usize = 200;
const MAX_AGENTS: u32 = 64;

impl Plan {
    /// Peak number of connections over all stages (a probe's bound for probe runs).
    pub fn peak_connections(&self) -> u32 {
        crate::schedule::peak(&self.stages)
            .max(self.probe.as_ref().map_or(0, |p| p.max_connections))
            .max(self.sessions.as_ref().map_or(0, Sessions::peak_guests))
    }

    /// How many agents this plan runs on where one process holds `per_process`
    /// connections: what it asks for, else as many as its size needs (1 when it fits).
    pub fn agents_needed(&self, per_process: u32) -> u32 {
        self.agents
            .and_then(Agents::count)
            .unwrap_or_else(|| self.peak_connections().div_ceil(per_process.max(1)).max(1))
    }

    /// Total planned duration.
    pub fn duration(&self) -> Duration {
        crate::schedule::total_duration(&self.stages).max(
            self.sessions
                .as_ref()
                .map_or(Duration::ZERO, Sessions::duration),
        )
    }

    /// Checks every field against `limits`; returns all problems together.
    pub fn validate(&self, limits: &Limits) -> Result<(), Vec<FieldError>> {
        let mut errs = Vec::new();
        let mut errs_sessions = Vec::new();
        let mut errs_headers = Vec::new();
        let mut err = |field: &str, message: String| {
            errs.push(FieldError {
                field: field.into(),
                message,
            })
        };
        if self.name.trim().is_empty() {
            err("name", "must not be empty".into());
        } else if self.name.len() > MAX_NAME {
            err(
                "name",
                format!("is {} bytes long; the limit is {MAX_NAME}", self.name.len()),
            );
        }
        // One reading of the URL (`crate::plan_url`): templates in the path and query
        // only, nothing two parsers read two ways.
        if let Err(e) = TargetUrl::parse(&self.target) {
            err("target", e);
        } else if let Err(e) = Template::parse(&self.target) {
            err("target", e);
        }
        if let Some(probe) = &self.probe {
            for p in probe.validate(limits) {
                err(&p.field, p.message);
            }
        } else if let Some(sessions) = &self.sessions {
            if !self.stages.is_empty() {
                err(
                    "stages",
                    "leave stages empty when `sessions` sets the load (arrivals and stays)".into(),
                );
            }
            sessions.validate(limits, &mut errs_sessions);
        } else if self.stages.is_empty() {
            err(
                "stages",
                "needs at least one stage, e.g. {\"duration\":\"10s\",\"connections\":50}".into(),
            );
        }
        if self.stages.len() > MAX_STAGES {
            err(
                "stages",
                format!(
                    "has {} stages; the limit is {MAX_STAGES}",
                    self.stages.len()
                ),
            );
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.connections > limits.max_connections {
                err(
                    &format!("stages[{i}].connections"),
                    format!(
                        "{} is above this server's limit of {} connections per run (its --max-connections; a run larger than one process holds is split over agent processes up to it).",
                        s.connections, limits.max_connections
                    ),
                );
            }
        }
        let total = self.duration();
        if !self.stages.is_empty() && total.is_zero() {
            err(
                "stages",
                "total duration is 0s; give at least one stage a duration".into(),
            );
        }
        if total > limits.max_duration.0 {
            err(
                "stages",
                format!(
                    "total duration {} is above the limit of {}",
                    Dur(total),
                    limits.max_duration
                ),
            );
        }
        let peak = self.peak_connections();
        // Agents on loopback each get a source address of their own.
        let sources = self
            .source_addrs
            .len()
            .max(self.agents.and_then(Agents::count).unwrap_or(1) as usize)
            .max(1) as u64;
        if let Some(n) = self.agents.and_then(Agents::count) {
            if !(1..=MAX_AGENTS).contains(&n) {
                err("agents", format!("{n} must be between 1 and {MAX_AGENTS}"));
            }
        }
        if u64::from(peak) > u64::from(limits.ports_per_source) * sources {
            err(
                "source_addrs",
                format!(
                    "{peak} connections to one target need more than the ~{} ephemeral ports one source address has; add {} more source addresses (e.g. 127.0.0.2, 127.0.0.3 on loopback)",
                    limits.ports_per_source,
                    (u64::from(peak)).div_ceil(u64::from(limits.ports_per_source)) - sources
                ),
            );
        }
        if let Some(rate) = self.max_connect_rate {
            if !(rate.is_finite() && rate > 0.0 && rate <= limits.max_connect_rate) {
                err(
                    "max_connect_rate",
                    format!(
                        "{rate} must be above 0 and at most {} per second",
                        limits.max_connect_rate
                    ),
                );
            }
        }
        if self.connect_timeout.0 < Duration::from_millis(10)
            || self.connect_timeout.0 > Duration::from_secs(300)
        {
            err(
                "connect_timeout",
                format!("{} must be between 10ms and 5m", self.connect_timeout),
            );
        }
        if self.headers.len() > MAX_HEADERS {
            err(
                "headers",
                format!(
                    "has {} headers; the limit is {MAX_HEADERS}",
                    self.headers.len()
                ),
            );
        }
        let header_bytes: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum();
        if header_bytes > MAX_HEADER_BYTES {
            err(
                "headers",
                format!("are {header_bytes} bytes in all; the limit is {MAX_HEADER_BYTES}"),
            );
        }
        check_headers(
            "headers",
            self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            HeaderUse::Handshake,
            &mut errs_headers,
        );
        for (i, p) in self.subprotocols.iter().enumerate() {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
                err(
                    &format!("subprotocols[{i}]"),
                    format!("`{p}` is not a valid subprotocol token"),
                );
            }
        }
        let mut steps = 0usize;
        validate_steps(&self.script, "script", limits, &mut steps, &mut errs);
        if steps > MAX_STEPS {
            errs.push(FieldError {
                field: "script".into(),
                message: format!("has {steps} steps; the limit is {MAX_STEPS}"),
            });
        }
        if let Some(auth) = &self.auth {
            validate_auth(auth, &self.headers, &mut errs);
            if let Some(r) = &auth.rotation {
                r.validate(auth, limits, &mut errs);
            }
        }
        validate_http_steps(self, &mut errs);
        self.validate_session(limits, &mut errs);
        for (metric, expr) in &self.thresholds {
            if let Err(e) = crate::thresholds::parse(metric, expr) {
                errs.push(FieldError {
                    field: format!("thresholds.{metric}"),
                    message: e,
                });
            }
        }
        if let Reconnect::Backoff {
            max_attempts,
            initial,
            max,
            ..
        } = &self.reconnect
        {
            if let MaxAttempts::Count(n @ (0 | 1001..)) = max_attempts {
                errs.push(FieldError {
                    field: "reconnect.max_attempts".into(),
                    message: format!("{n} must be between 1 and 1000, or \"unlimited\""),
                });
            }
            if initial.0.is_zero() || initial > max {
                errs.push(FieldError {
                    field: "reconnect.initial".into(),
                    message: format!("{initial} must be above 0 and at most reconnect.max ({max})"),
                });
            }
        }
        errs.extend(errs_sessions);
        errs.extend(errs_headers);
        // A placeholder stands for a value hidden when the plan was shown: running it
        // would send `<redacted>` (see `crate::secrets`).
        errs.extend(self.placeholders());
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

fn validate_http_steps(plan: &Plan, errs: &mut Vec<FieldError>) {
    let mut captured: Vec<&str> = Vec::new();
    for (i, step) in plan.http_steps.iter().enumerate() {
        let f = |x: &str| format!("http_steps[{i}].{x}");
        if !["GET", "POST", "PUT", "DELETE"].contains(&step.method.as_str()) {
            errs.push(FieldError {
                field: f("method"),
                message: format!("`{}` must be GET, POST, PUT or DELETE", step.method),
            });
        }
        match crate::plan_url::PlanUrl::parse(&step.url, &["http", "https"]) {
            Err(e) => errs.push(FieldError {
                field: f("url"),
                message: e,
            }),
            Ok(_) => {
                if let Err(e) = Template::parse(&step.url) {
                    errs.push(FieldError {
                        field: f("url"),
                        message: e,
                    });
                }
            }
        }
        check_headers(
            &f("headers"),
            step.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            HeaderUse::Http,
            errs,
        );
        if let Some(Err(e)) = step.body.as_deref().map(Template::parse) {
            errs.push(FieldError {
                field: f("body"),
                message: e,
            });
        }
        captured.extend(step.capture.keys().map(String::as_str));
        for (var, path) in &step.capture {
            if let Err(e) = crate::capture::JsonPath::parse(path) {
                errs.push(FieldError {
                    field: f(&format!("capture.{var}")),
                    message: e,
                });
            }
        }
    }
    captured.extend(plan.vars.keys().map(String::as_str));
    // Every {{var.NAME}} must be captured by some step.
    let mut uses: Vec<(String, Template)> = Vec::new();
    if let Ok(t) = Template::parse(&plan.target) {
        uses.push(("target".into(), t));
    }
    for (k, v) in &plan.headers {
        if let Ok(t) = Template::parse(v) {
            uses.push((format!("headers.{k}"), t));
        }
    }
    for (field, t) in uses {
        for name in t.var_names() {
            if !captured.contains(&name) {
                errs.push(FieldError {
                    field: field.clone(),
                    message: format!(
                        "`{{{{var.{name}}}}}` is not defined by `vars` or any http_steps[].capture (captures from messages come after the handshake)"
                    ),
                });
            }
        }
    }
}

fn validate_auth(auth: &Auth, headers: &BTreeMap<String, String>, errs: &mut Vec<FieldError>) {
    let mut err = |field: &str, message: String| {
        errs.push(FieldError {
            field: field.into(),
            message,
        })
    };
    match &auth.source {
        TokenSource::Static { tokens } => {
            if tokens.is_empty() {
                err("auth.source.tokens", "needs at least one token".into());
            }
            for (i, t) in tokens.iter().enumerate() {
                if let Some(problem) = t.problem() {
                    err(&format!("auth.source.tokens[{i}]"), problem);
                } else if t.resolve().is_some_and(|v| v.contains(['\r', '\n'])) {
                    // A token goes into a header line: a line break would add headers.
                    err(
                        &format!("auth.source.tokens[{i}]"),
                        "must not contain a line break (CR or LF)".into(),
                    );
                }
            }
        }
        TokenSource::Oauth2 {
            token_url,
            client_id,
            client_secret,
            ..
        } => {
            if token_url.contains("{{") {
                err(
                    "auth.source.token_url",
                    format!("`{token_url}`: templates are not allowed in the token URL"),
                );
            } else if let Err(e) = crate::plan_url::PlanUrl::parse(token_url, &["http", "https"]) {
                err("auth.source.token_url", e);
            }
            if client_id.is_empty() {
                err("auth.source.client_id", "must not be empty".into());
            }
            if let Some(problem) = client_secret.problem() {
                err("auth.source.client_secret", problem);
            }
        }
    }
    match auth.policy {
        TokenPolicy::Pool { size } if size == 0 || size > 100_000 => err(
            "auth.policy.size",
            format!("{size} must be between 1 and 100000"),
        ),
        TokenPolicy::PerConnections { connections: 0 } => {
            err("auth.policy.connections", "must be at least 1".into())
        }
        _ => {}
    }
    if !auth.header.is_empty() {
        if let Some(problem) = header_name_problem(&auth.header, HeaderUse::Handshake) {
            err("auth.header", problem);
        } else if headers.keys().any(|k| k.eq_ignore_ascii_case(&auth.header)) {
            err(
                "auth.header",
                format!(
                    "`{}` is also in `headers`: the handshake would carry it twice; keep one",
                    auth.header
                ),
            );
        }
        if auth.value.bytes().any(|b| b == b'\r' || b == b'\n') {
            err(
                "auth.value",
                "header values must not contain line breaks".into(),
            );
        }
    }
    if let Err(e) = Template::parse(&auth.value) {
        err("auth.value", e);
    }
}

fn validate_steps(
    steps: &[Step],
    path: &str,
    limits: &Limits,
    count: &mut usize,
    errs: &mut Vec<FieldError>,
) {
    for (i, step) in steps.iter().enumerate() {
        *count += 1;
        let field = format!("{path}[{i}]");
        let mut err = |suffix: &str, message: String| {
            errs.push(FieldError {
                field: format!("{field}{suffix}"),
                message,
            })
        };
        match step {
            Step::Send(text) | Step::SendBinary(text) => {
                if text.len() > limits.max_message_bytes {
                    err(
                        ".send",
                        format!(
                            "message is {} bytes; the limit is {}",
                            text.len(),
                            limits.max_message_bytes
                        ),
                    );
                }
                if let Err(e) = Template::parse(text) {
                    err(".send", e);
                }
                if let Step::SendBinary(hex) = step {
                    if !hex.contains("{{")
                        && (hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()))
                    {
                        err(".send_binary", "must be hex digits, two per byte".into());
                    }
                }
            }
            Step::Expect(e) => {
                let at = format!("{field}.expect");
                session::validate_match(&e.match_spec(), &at, false, errs);
                session::validate_captures(&e.capture, &at, errs);
                let mut err = |suffix: &str, message: String| {
                    errs.push(FieldError {
                        field: format!("{field}{suffix}"),
                        message,
                    })
                };
                if e.timeout.0.is_zero() || e.timeout.0 > Duration::from_secs(600) {
                    err(
                        ".expect.timeout",
                        format!("{} must be above 0 and at most 10m", e.timeout),
                    );
                }
            }
            Step::Wait(_) | Step::Close => {}
            Step::Ping(t) => {
                if t.0.is_zero() {
                    err(".ping", "timeout must be above 0".into());
                }
            }
            Step::Repeat(r) => {
                if r.every.0 < Duration::from_millis(1) {
                    err(".repeat.every", format!("{} must be at least 1ms", r.every));
                }
                if r.steps.is_empty() {
                    err(".repeat.steps", "must not be empty".into());
                }
                if r.steps.iter().any(|s| matches!(s, Step::Repeat(_))) {
                    err(".repeat.steps", "repeat blocks cannot be nested".into());
                } else {
                    validate_steps(
                        &r.steps,
                        &format!("{field}.repeat.steps"),
                        limits,
                        count,
                        errs,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn templates_stay_out_of_the_authority() {
        for url in [
            "http://{{token}}@127.0.0.1:9/x",
            "http://127.0.0.1:{{vu}}/x",
            "http://h{{var.x}}/x",
            "{{var.u}}/x",
        ] {
            assert!(
                crate::plan_url::PlanUrl::parse(url, &["http"]).is_err(),
                "{url}"
            );
        }
        for url in ["http://127.0.0.1:9/x/{{vu}}?a={{token}}", "http://h:1"] {
            assert!(
                crate::plan_url::PlanUrl::parse(url, &["http"]).is_ok(),
                "{url}"
            );
        }
        assert!(crate::plan_url::PlanUrl::parse("ws://h:1?x={{uuid}}", &["ws"]).is_ok());
    }

    #[test]
    fn every_env_read_is_listed_with_its_field() {
        let plan: Plan = serde_json::from_str(
            r#"{"target":"ws://h:1/x?k={{env.A}}","stages":[{"duration":"1s","connections":1}],
                "headers":{"X-K":"{{env.B}}"},
                "script":[{"repeat":{"every":"1s","steps":[{"send":"{{env.C}}"}]}}],
                "http_steps":[{"method":"POST","url":"http://h:2/s","body":"{{env.D}}"}],
                "auth":{"source":{"type":"oauth2","token_url":"http://h:3/t","client_id":"c","client_secret":{"env":"E"}}}}"#,
        )
        .unwrap();
        let names: Vec<(String, String)> = plan.env_names();
        let expect = [
            ("target", "A"),
            ("headers.X-K", "B"),
            ("script[0].repeat.steps[0]", "C"),
            ("http_steps[0].body", "D"),
            ("auth.source.client_secret", "E"),
        ];
        for (f, n) in expect {
            assert!(
                names.contains(&(f.to_string(), n.to_string())),
                "{f} {n}: {names:?}"
            );
        }
    }

    #[test]
    fn plans_keep_templates_out_of_hosts_and_line_breaks_out_of_tokens() {
        let plan: Plan = serde_json::from_str(
            r#"{"target":"ws://{{env.H}}:1/x","stages":[{"duration":"1s","connections":1}],
                "http_steps":[{"method":"GET","url":"http://{{token}}@127.0.0.1:9/x"}],
                "auth":{"source":{"type":"static","tokens":["abc\r\nX-Injected: 1"]}}}"#,
        )
        .unwrap();
        let errs = plan.validate(&Limits::default()).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"target"), "{errs:?}");
        assert!(fields.contains(&"http_steps[0].url"), "{errs:?}");
        assert!(fields.contains(&"auth.source.tokens[0]"), "{errs:?}");
    }
}
