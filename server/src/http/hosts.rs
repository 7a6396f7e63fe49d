//! The names this server answers to. A page on `http://rebind.example:3000` whose name
//! is rebound to 127.0.0.1 talks to us as its own origin: the browser sends `Host:
//! rebind.example:3000`, a matching `Origin` and `Sec-Fetch-Site: same-origin`, so the
//! cross-site check passes and, without a token, the page can launch runs and read them
//! (DNS rebinding, attack 5). The name in `Host` is the one thing such a page cannot
//! choose, so every request must name this server as it is reachable:
//! - the listen address as bound (`127.0.0.1:3000`); on loopback also `localhost:3000`
//!   and `[::1]:3000`;
//! - on an unspecified address (`0.0.0.0`, `::`), any IP address with the bound port:
//!   a literal address is not a name anyone can rebind;
//! - the host and port of `--public-url` (the name a proxy or DNS gives it).
//!
//! Without a port, `Host` means the scheme's default port (80, or 443 for an https
//! public URL).

use std::net::{IpAddr, SocketAddr};

/// The accepted `Host` values, built once at startup.
#[derive(Debug, Clone)]
pub struct HostAllowlist {
    /// Exact `host[:port]` values, lowercase, in the order they are explained.
    names: Vec<String>,
    /// Bound to an unspecified address: any IP literal with this port is accepted.
    any_ip_on_port: Option<u16>,
}

impl HostAllowlist {
    /// The names of a server bound to `bound` and reachable at `public` (if set).
    pub fn new(bound: SocketAddr, public: Option<&url::Url>) -> Self {
        let port = bound.port();
        let mut names = Vec::new();
        let mut add = |host: String, port: u16, default_port: u16| {
            if port == default_port {
                names.push(host.clone());
            }
            names.push(format!("{host}:{port}"));
        };
        let ip = bound.ip();
        if ip.is_loopback() {
            for host in ["127.0.0.1", "localhost", "[::1]"] {
                add(host.into(), port, 80);
            }
        } else if ip.is_unspecified() {
            // Browsers resolve `localhost` themselves: no page can rebind it.
            add("localhost".into(), port, 80);
        } else {
            add(host_of(ip), port, 80);
        }
        if let Some(url) = public {
            if let (Some(host), Some(p), Some(default)) = (
                public_host(url),
                url.port_or_known_default(),
                default_port(url.scheme()),
            ) {
                add(host, p, default);
            }
        }
        names.dedup();
        Self {
            names,
            any_ip_on_port: ip.is_unspecified().then_some(port),
        }
    }

    /// Whether `host` (a `Host` header or URI authority) names this server.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.names.contains(&host)
            || self
                .any_ip_on_port
                .is_some_and(|port| ip_literal_port(&host) == Some(port))
    }

    /// The accepted names, for the refusal message and the startup log.
    pub fn describe(&self) -> String {
        let mut all = self.names.join(", ");
        if let Some(port) = self.any_ip_on_port {
            if !all.is_empty() {
                all.push_str(", ");
            }
            all.push_str(&format!("any IP address with port {port}"));
        }
        all
    }
}

/// An IP address as it appears in `Host` (IPv6 in brackets).
fn host_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// The public URL's host as it appears in `Host`, lowercase.
fn public_host(url: &url::Url) -> Option<String> {
    Some(match url.host()? {
        url::Host::Domain(d) => d.to_ascii_lowercase(),
        url::Host::Ipv4(a) => a.to_string(),
        url::Host::Ipv6(a) => format!("[{a}]"),
    })
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// The port of a `Host` that is an IP literal (`10.0.0.5:3000`, `[fe80::1]:3000`, or
/// without a port: 80); `None` for a name.
fn ip_literal_port(host: &str) -> Option<u16> {
    if let Ok(addr) = host.parse::<SocketAddr>() {
        return Some(addr.port());
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>().ok().map(|_| 80)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(bound: &str, public: Option<&str>) -> HostAllowlist {
        let url =
            public.map(|p| crate::config::parse_public_url(p).unwrap_or_else(|e| panic!("{e}")));
        HostAllowlist::new(
            bound.parse().unwrap_or_else(|e| panic!("{e}")),
            url.as_ref(),
        )
    }

    #[test]
    fn loopback_answers_to_its_local_names_only() {
        let l = list("127.0.0.1:3000", None);
        for ok in ["127.0.0.1:3000", "LOCALHOST:3000", "[::1]:3000"] {
            assert!(l.allows(ok), "{ok}");
        }
        for no in [
            "rebind.example:3000",
            "127.0.0.1:3001",
            "127.0.0.1",
            "localhost",
            "",
            "127.0.0.2:3000",
        ] {
            assert!(!l.allows(no), "{no}");
        }
        assert!(list("127.0.0.1:80", None).allows("localhost"));
    }

    #[test]
    fn the_public_url_adds_its_name_and_any_address_accepts_ip_literals() {
        let l = list("0.0.0.0:3000", Some("https://Swarm.example.com"));
        for ok in [
            "swarm.example.com",
            "swarm.example.com:443",
            "localhost:3000",
            "10.1.2.3:3000",
            "[fe80::1]:3000",
        ] {
            assert!(l.allows(ok), "{ok}");
        }
        for no in [
            "swarm.example.com:3000",
            "10.1.2.3:3001",
            "evil.example:3000",
        ] {
            assert!(!l.allows(no), "{no}");
        }
        let l = list("10.0.0.5:3000", Some("http://swarm.internal:8080"));
        assert!(l.allows("10.0.0.5:3000") && l.allows("swarm.internal:8080"));
        assert!(!l.allows("localhost:3000") && !l.allows("swarm.internal"));
    }
}
