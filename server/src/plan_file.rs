//! Plan files: a `Plan` from TOML or JSON text (errors say where), and a `Plan` as a
//! commented TOML file meant to live in git (what "Export TOML" downloads and
//! `/api/plans/import` reads back).

use engine::Plan;

/// Reads a plan from TOML, or JSON when the text starts with `{`.
pub fn parse(text: &str) -> Result<Plan, String> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("plan (JSON): {e}"))
    } else {
        toml::from_str(text).map_err(|e| toml_error(text, &e))
    }
}

/// One line that says where: `plan (TOML): line 50, column 10: unclosed array table,
/// expected `]``. (The toml crate's own text is a multi-line snippet with a gutter,
/// which reads as noise once a page or a JSON answer folds it into one line.)
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end().replace('\n', "; ");
    let Some(span) = e.span() else {
        return format!("plan (TOML): {message}");
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("plan (TOML): line {line}, column {column}: {message}")
}

/// Comments put above a top-level key or table of the exported file.
const COMMENTS: [(&str, &str); 18] = [
    (
        "name",
        "Shown in the runs list; runs of this plan are grouped under it.",
    ),
    ("target", "ws:// or wss:// URL the swarm connects to."),
    (
        "max_connect_rate",
        "Cap on new connections per second (open model).",
    ),
    (
        "connect_timeout",
        "A handshake slower than this counts as a timeout.",
    ),
    (
        "source_addrs",
        "Local 127.x addresses to spread connections over (ports per address are limited).",
    ),
    (
        "insecure_tls",
        "Accept self-signed certificates (test targets only).",
    ),
    (
        "abort_on_fail",
        "Stop the run as soon as a threshold fails.",
    ),
    (
        "abort_grace",
        "How long a failing threshold may stay failed before the run stops.",
    ),
    (
        "[[stages]]",
        "Ramp linearly to `connections` over `duration`, then the next stage.",
    ),
    (
        "[headers]",
        "Extra handshake headers (credentials are redacted in answers; prefer {{env.NAME}}).",
    ),
    (
        "[vars]",
        "Per-session variables, rendered once when a connection starts: {{var.NAME}}.",
    ),
    ("[[script]]", "What each connection does once open."),
    (
        "[[responders]]",
        "Answer matching messages for the whole session (a protocol's ping, acks).",
    ),
    (
        "[reconnect]",
        "Retry failed handshakes and drops (mode = \"never\" measures raw).",
    ),
    (
        "[auth]",
        "Where tokens come from and how connections share them.",
    ),
    (
        "[probe]",
        "\"Find my limit\": the experiments run one after another.",
    ),
    (
        "[[http_steps]]",
        "HTTP calls made before connecting (e.g. create a session), per connection.",
    ),
    (
        "[thresholds]",
        "Pass/fail, evaluated at the end (exit code 99 from `socketswarm run`).",
    ),
];

/// The plan as commented TOML: the plan as given (a saved plan's download holds its
/// values, secrets included, so the file runs as the page runs it; the page's own
/// editor gets the redacted plan).
pub fn to_toml(plan: &Plan) -> Result<String, String> {
    let body = toml::to_string_pretty(plan).map_err(|e| format!("plan as TOML: {e}"))?;
    let mut out = String::from(
        "# socketswarm plan (exported). Check it with `socketswarm plan check FILE`, run it\n\
         # with `socketswarm run FILE`, or import it on the Plans page. It holds the plan's\n\
         # values as stored, secrets included: before it goes into git, give secrets as\n\
         # { env = \"NAME\" } or \"{{env.NAME}}\". A value a run did not keep is a\n\
         # placeholder: the plan does not run until it is given again.\n\n",
    );
    let mut seen = std::collections::BTreeSet::new();
    for line in body.lines() {
        let key = if line.starts_with('[') {
            line.trim().to_string()
        } else {
            line.split('=').next().unwrap_or("").trim().to_string()
        };
        let top_level = line.starts_with('[') || !line.starts_with(' ');
        if top_level && seen.insert(key.clone()) {
            if let Some((_, c)) = COMMENTS.iter().find(|(k, _)| *k == key) {
                if line.starts_with('[') && !out.ends_with("\n\n") {
                    out.push('\n');
                }
                out.push_str("# ");
                out.push_str(c);
                out.push('\n');
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_toml_is_commented_and_reads_back_equal() {
        let plan = parse(crate::cli::TEMPLATE).expect("template parses");
        let text = to_toml(&plan).expect("exports");
        assert!(text.contains("# Ramp linearly"), "{text}");
        assert!(text.contains("# ws:// or wss://"), "{text}");
        assert_eq!(parse(&text).expect("reads back"), plan);
    }

    #[test]
    fn errors_say_where() {
        let e = parse("name = \"x\"\ntarget = 5\n").unwrap_err();
        assert!(e.starts_with("plan (TOML): line 2, column 10: "), "{e}");
        assert!(
            !e.contains('\n') && !e.contains(" | "),
            "one line, no gutter: {e}"
        );
        let e = parse("name = \"x\"\n\n[[stages]\nbroken\n").unwrap_err();
        assert!(e.starts_with("plan (TOML): line 3, column 10: "), "{e}");
        assert!(e.contains("unclosed array table"), "{e}");
        let e = parse("{\"name\": 1}").unwrap_err();
        assert!(e.contains("column"), "{e}");
    }
}
