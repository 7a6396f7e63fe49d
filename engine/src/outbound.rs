//! Where a run may connect, enforced on the addresses actually connected.
//!
//! The server checks a plan's URLs when it accepts the plan, but names resolve again
//! later (a queued run starts minutes after), redirects point elsewhere, and rendered
//! templates could say anything. So the engine enforces the operator's policy itself, at
//! the start of each run: every host a run uses (its WebSocket target, its OAuth token
//! endpoint, its HTTP steps) is resolved once, only the addresses the policy allows are
//! kept, and every connection of the run goes to those pinned addresses — the WebSocket
//! connects to them, the HTTP clients are told to resolve each host to them and never
//! follow redirects, and a rendered URL whose host is not one of the pinned ones is not
//! sent. Templates cannot reach the scheme, userinfo, host or port of a URL (plan
//! validation refuses them there). No proxy is ever used: a proxy resolves names and
//! connects where it likes, past the pinning.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// The operator's outbound policy (the server's `--allow-target` list implements it).
pub trait Outbound: Send + Sync + std::fmt::Debug {
    /// May the run connect to `addr` for `host` (as the plan names it)?
    fn allows(&self, host: &str, addr: SocketAddr) -> bool;
    /// The policy in words, for refusals ("127.0.0.0/8, localhost:9001").
    fn describe(&self) -> String;
}

/// A run's policy: `None` lets it connect anywhere (the CLI, an instance without an
/// allowlist).
pub type Policy = Option<Arc<dyn Outbound>>;

/// `host:port` of a plan URL (any of its schemes), read by the one parser
/// (`crate::plan_url`): IPv6 without brackets.
pub fn host_port(url: &str) -> Result<(String, u16), String> {
    crate::plan_url::PlanUrl::parse(url, &["ws", "wss", "http", "https"]).map(|u| {
        let port = u.port();
        (u.host, port)
    })
}

/// Resolves `host:port` and keeps the addresses `policy` allows; an error names the
/// field, what it resolved to and the policy.
pub(crate) async fn pin(
    field: &str,
    host: &str,
    port: u16,
    policy: &Policy,
) -> Result<Vec<SocketAddr>, String> {
    let all: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("{field}: could not resolve `{host}`: {e}"))?
        .collect();
    if all.is_empty() {
        return Err(format!("{field}: `{host}` resolves to no address"));
    }
    let Some(p) = policy else {
        return Ok(all);
    };
    let kept: Vec<SocketAddr> = all.iter().copied().filter(|a| p.allows(host, *a)).collect();
    if kept.is_empty() {
        let seen: Vec<String> = all.iter().map(|a| a.ip().to_string()).collect();
        return Err(format!(
            "{field}: {host}:{port} resolves to {}, which is not in this server's target allowlist ({})",
            seen.join(", "),
            p.describe()
        ));
    }
    Ok(kept)
}

/// The hosts of a run's HTTP requests (token endpoint, HTTP steps), each pinned to its
/// allowed addresses.
#[derive(Debug, Default, Clone)]
pub(crate) struct Pinned {
    /// host → (port, addresses).
    hosts: BTreeMap<String, (u16, Vec<SocketAddr>)>,
}

impl Pinned {
    /// Pins the host of every URL (field, url) given.
    pub(crate) async fn resolve(
        urls: &[(String, String)],
        policy: &Policy,
    ) -> Result<Pinned, String> {
        let mut hosts = BTreeMap::new();
        for (field, url) in urls {
            let (host, port) = host_port(url).map_err(|e| format!("{field}: {e}"))?;
            if hosts.contains_key(&host) {
                continue;
            }
            let addrs = pin(field, &host, port, policy).await?;
            hosts.insert(host, (port, addrs));
        }
        Ok(Pinned { hosts })
    }

    /// A client builder whose connections go only to the pinned addresses, that never
    /// follows a redirect (a 3xx is the request's answer) and never uses a proxy: the
    /// proxy variables of the environment (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`,
    /// lower case too) would send the request — a token request's client secret
    /// included — to a host off the allowlist that resolves names itself. Every run's
    /// HTTP request (HTTP steps, token endpoints) is built here.
    pub(crate) fn client(&self, base: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        let mut b = base.no_proxy().redirect(reqwest::redirect::Policy::none());
        for (host, (_, addrs)) in &self.hosts {
            b = b.resolve_to_addrs(host, addrs);
        }
        b
    }

    /// True when a rendered URL goes to a pinned host and port (its host could only have
    /// changed through a template, which validation keeps out of hosts; this is the
    /// second lock).
    pub(crate) fn covers(&self, url: &str) -> bool {
        // A rendered URL, read as the HTTP client will read it.
        let read = url::Url::parse(url.trim()).ok().and_then(|u| {
            let host = match u.host()? {
                url::Host::Domain(d) => d.to_ascii_lowercase(),
                url::Host::Ipv4(ip) => ip.to_string(),
                url::Host::Ipv6(ip) => ip.to_string(),
            };
            Some((host, u.port_or_known_default()?))
        });
        match read.ok_or(()) {
            Ok((host, port)) => self.hosts.get(&host).is_some_and(|(p, _)| *p == port),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Only(SocketAddr);
    impl Outbound for Only {
        fn allows(&self, _host: &str, addr: SocketAddr) -> bool {
            addr == self.0
        }
        fn describe(&self) -> String {
            self.0.to_string()
        }
    }

    #[tokio::test]
    async fn only_allowed_addresses_are_pinned() {
        let ok: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let policy: Policy = Some(Arc::new(Only(ok)));
        assert_eq!(
            pin("target", "127.0.0.1", 9, &policy).await.unwrap(),
            vec![ok]
        );
        let e = pin("target", "127.0.0.2", 9, &policy).await.unwrap_err();
        assert!(e.contains("resolves to 127.0.0.2, which is not"), "{e}");
        let p = Pinned::resolve(
            &[(
                "http_steps[0].url".into(),
                "http://127.0.0.1:9/a/{{vu}}".into(),
            )],
            &policy,
        )
        .await
        .unwrap();
        assert!(p.covers("http://127.0.0.1:9/other"));
        assert!(!p.covers("http://127.0.0.1:10/other"));
        assert!(!p.covers("http://127.0.0.2:9/"));
        assert!(
            Pinned::resolve(&[("u".into(), "http://127.0.0.2:9/".into())], &policy)
                .await
                .is_err()
        );
    }
}
