//! The New-run form's line-per-entry text areas: session variables (`name = template`)
//! and captures (`name = $.json.path` or `name = /regex(group)/`). Blank lines and lines
//! starting with `#` are skipped; every bad line is one error naming its line, so a
//! textarea with three typos reports three lines at once.

use std::collections::BTreeMap;

use engine::capture::{valid_var_name, JsonPath};
use engine::plan::Capture;
use engine::FieldError;

/// The numbered `name = value` lines of `text` (1-based), skipping blanks and comments;
/// a line without `=` is an error of `field`.
fn entries<'a>(
    field: &str,
    text: &'a str,
    shape: &str,
    errs: &mut Vec<FieldError>,
) -> Vec<(usize, &'a str, &'a str)> {
    let mut out: Vec<(usize, &str, &str)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut bad = |message: String| {
            errs.push(FieldError {
                field: field.into(),
                message: format!("line {n}: {message}"),
            })
        };
        let Some((name, value)) = line.split_once('=') else {
            bad(format!("`{line}` is not `{shape}`"));
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if !valid_var_name(name) {
            bad(format!(
                "`{name}` is not a variable name (1 to 64 letters, digits, '_' or '-')"
            ));
        } else if out.iter().any(|(_, seen, _)| *seen == name) {
            bad(format!("`{name}` is set twice"));
        } else if value.is_empty() {
            bad(format!("`{name}` has nothing after `=`"));
        } else {
            out.push((n, name, value));
        }
    }
    out
}

/// `name = template` lines -> the plan's `vars` (templates are checked by the plan's
/// own validation, which names the variable).
pub(super) fn vars(text: &str, errs: &mut Vec<FieldError>) -> BTreeMap<String, String> {
    entries("vars", text, "name = template", errs)
        .into_iter()
        .map(|(_, name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// `name = $.json.path` or `name = /regex/` (group 1) or `name = /regex/N` (group N)
/// lines -> an expect's `capture`.
pub(super) fn captures(text: &str, errs: &mut Vec<FieldError>) -> BTreeMap<String, Capture> {
    let mut out = BTreeMap::new();
    let shape = "name = $.json.path` or `name = /regex(group)/";
    for (n, name, value) in entries("captures", text, shape, errs) {
        // A bad line still defines its name (as the whole message), so later uses of
        // `{{var.NAME}}` are not reported as a second, derived error.
        out.insert(
            name.to_string(),
            Capture {
                json: Some("$".into()),
                ..Default::default()
            },
        );
        let mut bad = |message: String| {
            errs.push(FieldError {
                field: "captures".into(),
                message: format!("line {n}: {message}"),
            })
        };
        let capture = if let Some(body) = value.strip_prefix('/') {
            let Some((re, group)) = body.rsplit_once('/') else {
                bad(format!("`{value}` needs a closing `/`"));
                continue;
            };
            let group = match group.trim() {
                "" => None,
                g => match g.parse::<u32>() {
                    Ok(g) => Some(g),
                    Err(_) => {
                        bad(format!("`{g}` after the regex is not a group number"));
                        continue;
                    }
                },
            };
            if re.is_empty() {
                bad("the regex is empty".into());
                continue;
            }
            Capture {
                json: None,
                regex: Some(re.to_string()),
                group,
            }
        } else {
            if let Err(e) = JsonPath::parse(value) {
                bad(if e.contains(value) {
                    e
                } else {
                    format!("`{value}` {e}")
                });
                continue;
            }
            Capture {
                json: Some(value.to_string()),
                regex: None,
                group: None,
            }
        };
        out.insert(name.to_string(), capture);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(errs: &[FieldError]) -> Vec<String> {
        errs.iter()
            .map(|e| e.message.split(':').next().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn vars_are_name_equals_template_and_every_bad_line_names_itself() {
        let mut errs = Vec::new();
        let v = vars(
            "guest = {{uuid}}\n\n# a comment\nroom = r-{{vu}} = x\n",
            &mut errs,
        );
        assert_eq!(errs, Vec::new());
        assert_eq!(v["guest"], "{{uuid}}");
        assert_eq!(v["room"], "r-{{vu}} = x", "only the first `=` splits");
        let v = vars(
            "ok = 1\nno equals\nbad name = x\nok = 2\nempty =\n",
            &mut errs,
        );
        assert_eq!(v.len(), 1);
        assert_eq!(lines_of(&errs), ["line 2", "line 3", "line 4", "line 5"]);
        assert!(errs.iter().all(|e| e.field == "vars"));
        assert!(errs[2].message.contains("set twice"), "{errs:?}");
    }

    #[test]
    fn captures_are_json_paths_or_regexes_with_an_optional_group() {
        let mut errs = Vec::new();
        let c = captures(
            "id = $.body.id\nn = /n=(\\d+)/\nall = /x\\/y/0\n",
            &mut errs,
        );
        assert_eq!(errs, Vec::new());
        assert_eq!(c["id"].json.as_deref(), Some("$.body.id"));
        assert_eq!(c["n"].regex.as_deref(), Some("n=(\\d+)"));
        assert_eq!(c["n"].group, None);
        assert_eq!(c["all"].regex.as_deref(), Some("x\\/y"));
        assert_eq!(c["all"].group, Some(0));
        let c = captures("a = /open\nb = /x/y\nc = $..\nd = //\n", &mut errs);
        assert!(
            c.values().all(|c| c.json.as_deref() == Some("$")),
            "bad lines leave placeholders: {c:?}"
        );
        assert_eq!(lines_of(&errs), ["line 1", "line 2", "line 3", "line 4"]);
        assert!(errs.iter().all(|e| e.field == "captures"));
    }
}
