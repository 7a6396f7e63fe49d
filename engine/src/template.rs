//! Templates in headers, query and messages: `{{vu}}` (connection index), `{{attempt}}`,
//! `{{uuid}}`, `{{now_ms}}`, `{{env.NAME}}`. Parsed once (unknown variables are plan
//! errors), rendered per use.

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Vu,
    Attempt,
    Uuid,
    NowMs,
    Env(String),
    /// The connection's token (plans with `auth`).
    Token,
    /// A value captured by an HTTP step (`{{var.NAME}}`).
    Var(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Values a template is rendered with.
pub struct Vars<'a> {
    pub vu: u64,
    pub attempt: u32,
    /// Produces a fresh UUID string (injected so this module stays pure).
    pub uuid: &'a dyn Fn() -> String,
    pub now_ms: u64,
    /// The connection's token, empty without `auth`.
    pub token: &'a str,
    /// Values captured by the plan's HTTP steps for this attempt.
    pub vars: &'a [(String, String)],
}

impl Template {
    /// Parses `text`; the error names the unknown variable and the known ones.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("unclosed `{{{{` in `{text}`"))?;
            let name = after[..close].trim();
            parts.push(match name {
                "vu" => Part::Vu,
                "attempt" => Part::Attempt,
                "uuid" => Part::Uuid,
                "now_ms" => Part::NowMs,
                "token" => Part::Token,
                n if n.starts_with("env.") && n.len() > 4 => Part::Env(n[4..].to_string()),
                n if n.starts_with("var.") && n.len() > 4 => Part::Var(n[4..].to_string()),
                other => {
                    return Err(format!(
                        "unknown template variable `{{{{{other}}}}}`; known: {{{{vu}}}}, {{{{attempt}}}}, {{{{uuid}}}}, {{{{now_ms}}}}, {{{{token}}}}, {{{{var.NAME}}}}, {{{{env.NAME}}}}"
                    ))
                }
            });
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Names of the `{{var.NAME}}` variables used.
    pub fn var_names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(n) => Some(n.as_str()),
            _ => None,
        })
    }

    /// True when rendering always gives the same text.
    pub fn is_constant(&self) -> bool {
        self.parts
            .iter()
            .all(|p| matches!(p, Part::Lit(_) | Part::Env(_)))
    }

    /// Renders with `vars`; `{{env.NAME}}` reads the process environment (empty if unset).
    pub fn render(&self, vars: &Vars<'_>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Vu => out.push_str(&vars.vu.to_string()),
                Part::Attempt => out.push_str(&vars.attempt.to_string()),
                Part::Uuid => out.push_str(&(vars.uuid)()),
                Part::NowMs => out.push_str(&vars.now_ms.to_string()),
                Part::Env(name) => out.push_str(&std::env::var(name).unwrap_or_default()),
                Part::Token => out.push_str(vars.token),
                Part::Var(name) => {
                    if let Some((_, v)) = vars.vars.iter().find(|(k, _)| k == name) {
                        out.push_str(v);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_variable() {
        std::env::set_var("SOCKETSWARM_TEST_TPL", "sekrit");
        let t = Template::parse(
            "u{{vu}}-a{{ attempt }}-{{uuid}}-{{now_ms}}-{{env.SOCKETSWARM_TEST_TPL}}",
        )
        .unwrap();
        let uuid = || "U".to_string();
        let s = t.render(&Vars {
            vu: 7,
            attempt: 2,
            uuid: &uuid,
            now_ms: 99,
            token: "t",
            vars: &[],
        });
        assert_eq!(s, "u7-a2-U-99-sekrit");
        assert!(!t.is_constant());
        assert!(Template::parse("plain").unwrap().is_constant());
    }

    #[test]
    fn unknown_and_unclosed_are_errors() {
        assert!(Template::parse("{{user}}")
            .unwrap_err()
            .contains("`{{user}}`"));
        assert!(Template::parse("x {{vu").unwrap_err().contains("unclosed"));
    }
}
