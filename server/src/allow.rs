//! The target allowlist (`--allow-target`): which hosts, ports and networks a run may
//! send traffic to (its WebSocket target, its OAuth token endpoint and its HTTP steps),
//! so a shared instance cannot be aimed anywhere. Empty = no restriction.
//!
//! Entries: `localhost` (any port), `localhost:9001`, `*.staging.example.com`,
//! `127.0.0.0/8`, `10.1.2.0/24:443`, `[::1]:9001`, `[fd00::/8]`. A name is allowed by a
//! name entry, or when every address it resolves to is inside a network entry.

use std::net::IpAddr;

use engine::{FieldError, Plan};

#[derive(Debug, Clone, PartialEq)]
enum Host {
    /// Exact name, or `*.suffix` (any subdomain of suffix).
    Name(String),
    Net(IpAddr, u8),
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    host: Host,
    port: Option<u16>,
    text: String,
}

/// Parsed `--allow-target` entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allowlist(Vec<Rule>);

fn parse_net(s: &str) -> Result<(IpAddr, u8), String> {
    let (ip, bits) = match s.split_once('/') {
        Some((ip, bits)) => (ip, Some(bits)),
        None => (s, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("`{ip}` is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        None => max,
        Some(b) => b
            .parse::<u8>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(|| format!("`/{b}` is not a prefix length 0..={max}"))?,
    };
    Ok((ip, bits))
}

fn parse_rule(entry: &str) -> Result<Rule, String> {
    let e = entry.trim().to_ascii_lowercase();
    if e.is_empty() {
        return Err("empty entry".into());
    }
    // Split off `:port` (IPv6 must be bracketed to carry one).
    let (host, port) = if let Some(rest) = e.strip_prefix('[') {
        let (inner, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{entry}`: missing `]`"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("`{entry}`: expected `:PORT` after `]`")),
        };
        (inner.to_string(), port.map(str::to_string))
    } else if e.matches(':').count() > 1 {
        (e.clone(), None) // bare IPv6 (network), no port
    } else {
        match e.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.to_string())),
            None => (e.clone(), None),
        }
    };
    let port = match port.as_deref() {
        None | Some("*") => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("`{entry}`: `{p}` is not a port 1..=65535"))?,
        ),
    };
    let host = match parse_net(&host) {
        Ok((ip, bits)) => Host::Net(ip, bits),
        Err(m) if host.contains('/') => return Err(format!("`{entry}`: {m}")),
        Err(_) => {
            let name = host.strip_prefix("*.").unwrap_or(&host);
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !ok {
                return Err(format!(
                    "`{entry}`: not a host name, `*.domain`, IP or CIDR"
                ));
            }
            Host::Name(host.clone())
        }
    };
    Ok(Rule {
        host,
        port,
        text: entry.trim().to_string(),
    })
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl Allowlist {
    /// Parses every entry; all problems are reported together.
    pub fn parse(entries: &[String]) -> Result<Allowlist, String> {
        let mut rules = Vec::new();
        let mut problems = Vec::new();
        for e in entries
            .iter()
            .flat_map(|e| e.split(','))
            .filter(|e| !e.trim().is_empty())
        {
            match parse_rule(e) {
                Ok(r) => rules.push(r),
                Err(m) => problems.push(format!("--allow-target: {m}")),
            }
        }
        if problems.is_empty() {
            Ok(Allowlist(rules))
        } else {
            Err(problems.join("\n"))
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries as given (for messages and the config endpoint).
    pub fn entries(&self) -> Vec<String> {
        self.0.iter().map(|r| r.text.clone()).collect()
    }

    /// May a connection for `host` (as a plan names it) go to `addr`? A name entry
    /// trusts the name (and its port); a network entry must contain the address itself.
    /// This is the engine's check on the address it actually connects to.
    fn allows_addr(&self, host: &str, addr: std::net::SocketAddr) -> bool {
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        let is_ip = host.parse::<IpAddr>().is_ok();
        self.0
            .iter()
            .filter(|r| r.port.is_none_or(|p| p == addr.port()))
            .any(|r| match &r.host {
                Host::Name(n) if !is_ip => match n.strip_prefix("*.") {
                    Some(suffix) => host.ends_with(&format!(".{suffix}")),
                    None => &host == n,
                },
                Host::Name(_) => false,
                Host::Net(net, bits) => in_net(addr.ip(), *net, *bits),
            })
    }

    /// Is `host:port` allowed? Names not matched by a name entry are resolved and must
    /// land inside network entries with every address.
    async fn allows(&self, host: &str, port: u16) -> bool {
        let rules: Vec<&Rule> = self
            .0
            .iter()
            .filter(|r| r.port.is_none_or(|p| p == port))
            .collect();
        let ip: Option<IpAddr> = host.trim_matches(['[', ']']).parse().ok();
        for r in &rules {
            match (&r.host, ip) {
                (Host::Name(n), None) => {
                    let hit = match n.strip_prefix("*.") {
                        Some(suffix) => host.ends_with(&format!(".{suffix}")),
                        None => host == n,
                    };
                    if hit {
                        return true;
                    }
                }
                (Host::Net(net, bits), Some(ip)) if in_net(ip, *net, *bits) => return true,
                _ => {}
            }
        }
        if ip.is_some() || !rules.iter().any(|r| matches!(r.host, Host::Net(..))) {
            return false;
        }
        let Ok(addrs) = tokio::net::lookup_host((host, port)).await else {
            return false;
        };
        let addrs: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
        !addrs.is_empty()
            && addrs.iter().all(|a| {
                rules.iter().any(|r| match r.host {
                    Host::Net(net, bits) => in_net(*a, net, bits),
                    Host::Name(_) => false,
                })
            })
    }

    /// Checks every address a plan sends traffic to; errors name the field.
    pub async fn check_plan(&self, plan: &Plan) -> Result<(), Vec<FieldError>> {
        if self.is_empty() {
            return Ok(());
        }
        let mut urls = vec![("target".to_string(), plan.target.clone())];
        if let Some(engine::plan::TokenSource::Oauth2 { token_url, .. }) =
            plan.auth.as_ref().map(|a| &a.source)
        {
            urls.push(("auth.source.token_url".into(), token_url.clone()));
        }
        for (i, s) in plan.http_steps.iter().enumerate() {
            urls.push((format!("http_steps[{i}].url"), s.url.clone()));
        }
        let mut errs = Vec::new();
        for (field, url) in urls {
            // The one parser's reading: what is connected to is what is checked.
            match engine::outbound::host_port(&url) {
                Err(message) => errs.push(FieldError { field, message }),
                Ok((host, port)) if !self.allows(&host, port).await => errs.push(FieldError {
                    field,
                    message: format!(
                        "{host}:{port} is not in this server's target allowlist ({}); ask its operator or use an allowed target",
                        self.entries().join(", ")
                    ),
                }),
                Ok(_) => {}
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

impl engine::outbound::Outbound for Allowlist {
    fn allows(&self, host: &str, addr: std::net::SocketAddr) -> bool {
        self.allows_addr(host, addr)
    }
    fn describe(&self) -> String {
        self.entries().join(", ")
    }
}

/// Which server environment variables plans may read (`--allow-env`): `{{env.NAME}}`
/// in templates and `{"env": "NAME"}` secrets. Entries are names or prefixes ending in
/// `*` (`LOADTEST_*`). Empty = none: a plan cannot read the server's environment unless
/// the operator says which part of it is meant for plans. The server's own settings
/// (`SOCKETSWARM_*`, the access token among them) are never readable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvAllow(Vec<String>);

impl EnvAllow {
    pub fn parse(entries: &[String]) -> Result<EnvAllow, String> {
        let mut out = Vec::new();
        for e in entries.iter().flat_map(|e| e.split(',')).map(str::trim) {
            if e.is_empty() {
                continue;
            }
            let name = e.strip_suffix('*').unwrap_or(e);
            let ok =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(format!(
                    "--allow-env: `{e}` is not a variable name or a prefix ending in `*` (e.g. LOADTEST_*)"
                ));
            }
            out.push(e.to_string());
        }
        Ok(EnvAllow(out))
    }

    fn allows(&self, name: &str) -> bool {
        !name.starts_with("SOCKETSWARM_")
            && self.0.iter().any(|e| match e.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => e == name,
            })
    }

    /// Every environment variable `plan` reads must be allowed; errors name the field.
    pub fn check_plan(&self, plan: &Plan) -> Result<(), Vec<FieldError>> {
        let errs: Vec<FieldError> = plan
            .env_names()
            .into_iter()
            .filter(|(_, name)| !self.allows(name))
            .map(|(field, name)| FieldError {
                field,
                message: if name.starts_with("SOCKETSWARM_") {
                    format!("`{name}`: the server's own settings cannot be read by plans")
                } else if self.0.is_empty() {
                    format!("`{name}`: this server lets plans read no environment variables; its operator can allow some with --allow-env {name} (or a prefix such as LOADTEST_*)")
                } else {
                    format!("`{name}` is not among the environment variables this server lets plans read ({}); its operator can add it with --allow-env", self.0.join(", "))
                },
            })
            .collect();
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_read_only_the_environment_the_operator_allows() {
        let plan: Plan = serde_json::from_str(
            r#"{"target":"ws://127.0.0.1:9/echo?cap={{env.SECRET}}","stages":[{"duration":"1s","connections":1}],
                "headers":{"X-K":"{{env.LOADTEST_KEY}}","X-T":"{{env.SOCKETSWARM_ACCESS_TOKEN}}"}}"#,
        )
        .unwrap();
        let none = EnvAllow::default().check_plan(&plan).unwrap_err();
        assert_eq!(none.len(), 3);
        assert!(none[0].message.contains("--allow-env SECRET"), "{none:?}");
        let some = EnvAllow::parse(&["LOADTEST_*".into(), "SOCKETSWARM_*".into()]).unwrap();
        let errs = some.check_plan(&plan).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["target", "headers.X-T"], "{errs:?}");
        assert!(errs[1].message.contains("own settings"));
        assert!(EnvAllow::parse(&["A B".into()]).is_err());
    }

    #[test]
    fn the_engine_checks_the_address_it_connects_to() {
        let a = list(&[
            "127.0.0.1:9001",
            "localhost",
            "*.staging.example.com",
            "10.1.2.0/24",
        ]);
        let at = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        assert!(a.allows_addr("127.0.0.1", at("127.0.0.1:9001")));
        assert!(!a.allows_addr("127.0.0.1", at("127.0.0.1:9002")));
        // A name allowed by a network entry is judged by the address it resolved to.
        assert!(!a.allows_addr("rebind.test", at("127.0.0.2:9001")));
        assert!(a.allows_addr("rebind.test", at("10.1.2.3:80")));
        // Name entries trust the name.
        assert!(a.allows_addr("localhost", at("127.0.0.1:1")));
        assert!(a.allows_addr("ws.staging.example.com", at("192.0.2.1:443")));
    }

    fn list(e: &[&str]) -> Allowlist {
        Allowlist::parse(&e.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[tokio::test]
    async fn names_networks_and_ports() {
        let a = list(&[
            "localhost:9001",
            "*.staging.example.com",
            "10.1.2.0/24:443",
            "[::1]",
        ]);
        assert!(a.allows("localhost", 9001).await);
        assert!(!a.allows("localhost", 9002).await);
        assert!(a.allows("ws.staging.example.com", 80).await);
        assert!(!a.allows("staging.example.com.evil.io", 80).await);
        assert!(a.allows("10.1.2.77", 443).await);
        assert!(!a.allows("10.1.3.1", 443).await);
        assert!(!a.allows("10.1.2.77", 80).await);
        assert!(a.allows("::1", 1234).await);
        assert!(!a.allows("8.8.8.8", 53).await);
    }

    #[tokio::test]
    async fn names_resolve_into_networks() {
        // localhost resolves to 127.0.0.1 and possibly ::1: both networks allow it.
        let a = list(&["127.0.0.0/8", "::1"]);
        assert!(a.allows("localhost", 9001).await);
        assert!(a.allows("127.3.4.5", 1).await);
        // A name that does not resolve is refused, not waved through.
        assert!(!a.allows("no-such-host.invalid", 80).await);
    }

    #[test]
    fn bad_entries_are_named() {
        let e = Allowlist::parse(&["10.0.0.0/33".into(), "host:99999".into(), "a b".into()])
            .unwrap_err();
        assert!(e.contains("`/33`"), "{e}");
        assert!(e.contains("`99999`"), "{e}");
        assert!(e.contains("`a b`"), "{e}");
        assert_eq!(list(&["a.example,b.example:80"]).entries().len(), 2);
    }

    #[tokio::test]
    async fn plans_are_checked_on_every_address_they_use() {
        let a = list(&["127.0.0.1:9001"]);
        let mut plan: Plan = serde_json::from_str(
            r#"{"name":"x","target":"ws://127.0.0.1:9001/echo","stages":[{"duration":"1s","connections":1}],
                "http_steps":[{"method":"POST","url":"http://10.9.9.9:80/session/{{vu}}"}]}"#,
        )
        .unwrap();
        let errs = a.check_plan(&plan).await.unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "http_steps[0].url");
        assert!(
            errs[0].message.contains("10.9.9.9:80 is not in"),
            "{}",
            errs[0].message
        );
        plan.http_steps.clear();
        assert!(a.check_plan(&plan).await.is_ok());
        plan.target = "ws://127.0.0.1:9002/echo".into();
        assert_eq!(a.check_plan(&plan).await.unwrap_err()[0].field, "target");
        assert!(Allowlist::default().check_plan(&plan).await.is_ok());
    }
}
