//! Templates in headers, query and messages: `{{vu}}` (connection index), `{{vu % N}}`
//! (the connection index modulo N: N identities, e.g. `key-{{vu % 3}}`), `{{attempt}}`,
//! `{{uuid}}`, `{{now_ms}}`, `{{env.NAME}}`. Parsed once (unknown variables are plan
//! errors), rendered per use.

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Vu,
    /// `{{vu % N}}`: the connection index modulo N (N ≥ 1).
    VuMod(u64),
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
                n if n.starts_with("vu") && n[2..].trim_start().starts_with('%') => {
                    let m = n[2..].trim_start()[1..].trim();
                    match m.parse::<u64>() {
                        Ok(m) if m >= 1 => Part::VuMod(m),
                        _ => {
                            return Err(format!(
                                "`{{{{{n}}}}}`: after `vu %` comes a whole number of at least 1, e.g. `{{{{vu % 3}}}}`"
                            ))
                        }
                    }
                }
                "attempt" => Part::Attempt,
                "uuid" => Part::Uuid,
                "now_ms" => Part::NowMs,
                "token" => Part::Token,
                n if n.starts_with("env.") && n.len() > 4 => Part::Env(n[4..].to_string()),
                n if n.starts_with("var.") && n.len() > 4 => Part::Var(n[4..].to_string()),
                other => {
                    return Err(format!(
                        "unknown template variable `{{{{{other}}}}}`; known: {{{{vu}}}}, {{{{vu % N}}}}, {{{{attempt}}}}, {{{{uuid}}}}, {{{{now_ms}}}}, {{{{token}}}}, {{{{var.NAME}}}}, {{{{env.NAME}}}}"
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

    /// Names of the `{{env.NAME}}` variables used.
    pub fn env_names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Env(n) => Some(n.as_str()),
            _ => None,
        })
    }

    /// Names of the `{{var.NAME}}` variables used.
    pub fn var_names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(n) => Some(n.as_str()),
            _ => None,
        })
    }

    /// True when the text depends on the connection only (`{{vu}}`, `{{vu % N}}`, and
    /// constants), not on the attempt, time, token or captured values: such a value is an
    /// identity of the connection (an API key, a tenant) the diagnosis can count by.
    pub fn is_per_connection(&self) -> bool {
        !self.is_constant()
            && self
                .parts
                .iter()
                .all(|p| matches!(p, Part::Lit(_) | Part::Env(_) | Part::Vu | Part::VuMod(_)))
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
                Part::VuMod(m) => out.push_str(&(vars.vu % m).to_string()),
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
    fn vu_modulo_names_n_identities() {
        let t = Template::parse("key-{{vu % 3}}").unwrap();
        let uuid = || String::new();
        let at = |vu| {
            t.render(&Vars {
                vu,
                attempt: 1,
                uuid: &uuid,
                now_ms: 0,
                token: "",
                vars: &[],
            })
        };
        assert_eq!(
            (at(0), at(4), at(5)),
            ("key-0".into(), "key-1".into(), "key-2".into())
        );
        assert!(t.is_per_connection());
        assert!(Template::parse("{{vu%2}}").unwrap().is_per_connection());
        assert!(!Template::parse("{{uuid}}").unwrap().is_per_connection());
        assert!(!Template::parse("x").unwrap().is_per_connection());
        for bad in ["{{vu % 0}}", "{{vu % x}}", "{{vu %}}"] {
            assert!(
                Template::parse(bad).unwrap_err().contains("whole number"),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_and_unclosed_are_errors() {
        assert!(Template::parse("{{user}}")
            .unwrap_err()
            .contains("`{{user}}`"));
        assert!(Template::parse("x {{vu").unwrap_err().contains("unclosed"));
    }
}
