//! The one reading of a plan's URL (a WebSocket target, an HTTP step, a token endpoint):
//! what the allowlist checks, what is connected to and what a run shows are this parse,
//! never a second one.
//!
//! A URL is accepted only when every reader takes it the same way. WHATWG parsers (the
//! `url` crate, browsers, reqwest) read `\` as `/`, drop tabs and newlines, end the
//! authority at `?` or `#`, and rewrite hosts (`127.1`, `0x7f.1`, full-width digits,
//! upper case); a hand-written split would read `ws://127.0.0.2:1\@127.0.0.1:2/` as
//! user info then host 127.0.0.1 where the connection goes to 127.0.0.2. So:
//! - no control character, whitespace, `\` or non-ASCII anywhere (percent-encode them),
//!   no fragment (`#…` is never sent), no `.`/`..` path segment;
//! - templates (`{{…}}`) only in the path and query;
//! - the host written as the `url` crate writes it (`127.0.0.1`, `[::1]`, lower-case
//!   punycode names), and the `url` crate's own parse of the whole text must agree with
//!   this one on scheme, user info, host and port — or the URL is refused as ambiguous.
//!
//! Everything else reads parts from here: [`PlanUrl::resource`] is the request target
//! sent, [`PlanUrl::host`] and [`PlanUrl::port`] what is resolved and pinned,
//! [`PlanUrl::shown`] what pages print (user info and hidden query values replaced).

/// A plan URL split once. Templates stay as written in `path` and `query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanUrl {
    /// Lower case: `ws`, `wss`, `http`, `https`.
    pub scheme: String,
    /// `user:password` as written (percent-encoded), if any.
    pub userinfo: Option<String>,
    /// The host as connected to: a name, an IPv4 address or an IPv6 address without
    /// brackets.
    pub host: String,
    /// The port written, if any.
    pub explicit_port: Option<u16>,
    /// From the first `/` after the authority, as written (empty when there is none:
    /// the request target is then `/`), templates intact.
    pub path: String,
    /// After `?`, templates intact.
    pub query: Option<String>,
}

/// What a `.` or `..` path segment, a control character and their kind look like to
/// the user, for the refusal.
fn refuse(text: &str, why: &str) -> String {
    let shown: String = text.chars().flat_map(char::escape_default).collect();
    format!("`{shown}`: {why}")
}

impl PlanUrl {
    /// Parses `text` as one of `schemes` (lower case). The error says what is wrong and
    /// how to write it.
    pub fn parse(text: &str, schemes: &[&str]) -> Result<PlanUrl, String> {
        if let Some(c) = text
            .chars()
            .find(|c| c.is_control() || c.is_whitespace() || *c == '\\' || !c.is_ascii())
        {
            let what = match c {
                '\\' => "a backslash, which browsers and HTTP clients read as `/`".to_string(),
                c if c.is_whitespace() || c.is_control() => format!(
                    "{} (U+{:04X}), which URL parsers drop or read differently",
                    if c == ' ' {
                        "a space"
                    } else {
                        "a control character"
                    },
                    c as u32
                ),
                c => format!("`{c}`, which is not ASCII"),
            };
            return Err(refuse(
                text,
                &format!("holds {what}; percent-encode it (`%20`, `%5C`, …)"),
            ));
        }
        let (scheme, rest) = text.split_once("://").ok_or_else(|| {
            refuse(
                text,
                &format!("not a URL; expected {}://host:port/path", schemes[0]),
            )
        })?;
        let scheme = scheme.to_ascii_lowercase();
        if !schemes.contains(&scheme.as_str()) {
            let want: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
            return Err(refuse(
                text,
                &format!(
                    "scheme `{scheme}` is not supported; use {}",
                    want.join(" or ")
                ),
            ));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains("{{") || authority.contains("}}") {
            return Err(refuse(
                text,
                "templates may only appear in the path and query, not in the scheme, user, host or port",
            ));
        }
        if tail.contains('#') {
            return Err(refuse(
                text,
                "a fragment (`#…`) is never sent to the server; leave it out (or percent-encode `#` as %23)",
            ));
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, authority),
        };
        let (host_text, port_text) = split_host_port(hostport)
            .ok_or_else(|| refuse(text, &format!("`{hostport}` is not host:port")))?;
        if host_text.is_empty() {
            return Err(refuse(text, "it has no host"));
        }
        let explicit_port = match port_text {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|n| *n > 0 && !p_has_sign(p))
                    .ok_or_else(|| refuse(text, &format!("`{p}` is not a port 1..=65535")))?,
            ),
        };
        let canonical = url::Host::parse(host_text)
            .map(|h| match h {
                url::Host::Ipv6(a) => format!("[{a}]"),
                other => other.to_string(),
            })
            .map_err(|e| refuse(text, &format!("`{host_text}` is not a host ({e})")))?;
        if !host_text.eq_ignore_ascii_case(&canonical) {
            return Err(refuse(
                text,
                &format!("the host `{host_text}` is read as `{canonical}`; write it that way"),
            ));
        }
        let (path, query) = match tail.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (tail, None),
        };
        if path.split('/').any(|s| {
            matches!(
                s.to_ascii_lowercase().replace("%2e", ".").as_str(),
                "." | ".."
            )
        }) {
            return Err(refuse(
                text,
                "a `.` or `..` path segment is resolved differently by different clients; write the path without it",
            ));
        }
        let parsed = PlanUrl {
            scheme,
            userinfo,
            host: canonical
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase(),
            explicit_port,
            path: path.into(),
            query,
        };
        parsed.agrees_with_whatwg(text)?;
        Ok(parsed)
    }

    /// The second reader: the `url` crate's parse of the text (templates stood in for)
    /// must see the same scheme, user info, host and port.
    fn agrees_with_whatwg(&self, text: &str) -> Result<(), String> {
        let probe = text.replace("{{", "x").replace("}}", "x");
        let u =
            url::Url::parse(&probe).map_err(|e| refuse(text, &format!("is not a URL ({e})")))?;
        let their_host = match u.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string().to_ascii_lowercase(),
            None => String::new(),
        };
        let (mine_user, mine_pw) = match self.userinfo.as_deref() {
            Some(u) => match u.split_once(':') {
                Some((a, b)) => (a, Some(b)),
                None => (u, None),
            },
            None => ("", None),
        };
        let same = u.scheme() == self.scheme
            && their_host == self.host
            && u.port_or_known_default() == Some(self.port())
            && u.username() == mine_user
            && u.password() == mine_pw;
        if same {
            Ok(())
        } else {
            Err(refuse(
                text,
                &format!(
                    "URL parsers disagree about where it goes ({}://{}:{} here, {}://{}:{} for a browser); write it unambiguously",
                    self.scheme,
                    self.host,
                    self.port(),
                    u.scheme(),
                    their_host,
                    u.port_or_known_default().unwrap_or(0)
                ),
            ))
        }
    }

    /// The port connected to: the one written, else the scheme's.
    pub fn port(&self) -> u16 {
        self.explicit_port.unwrap_or(match self.scheme.as_str() {
            "wss" | "https" => 443,
            _ => 80,
        })
    }

    /// TLS (`wss`, `https`).
    pub fn tls(&self) -> bool {
        matches!(self.scheme.as_str(), "wss" | "https")
    }

    /// The host as written in a URL or a `Host` header (IPv6 in brackets).
    pub fn host_text(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// `host[:port]` as the `Host` header says it (the port only when not the scheme's).
    pub fn authority(&self) -> String {
        match self.explicit_port.filter(|p| {
            *p != match self.scheme.as_str() {
                "wss" | "https" => 443,
                _ => 80,
            }
        }) {
            Some(p) => format!("{}:{p}", self.host_text()),
            None => self.host_text(),
        }
    }

    /// Path and query: the request target, templates intact.
    pub fn resource(&self) -> String {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        match &self.query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        }
    }

    /// The query's `name=value` pairs as written (percent-encoded, templates intact);
    /// a pair without `=` has an empty value.
    pub fn query_pairs(&self) -> Vec<(&str, &str)> {
        self.query
            .as_deref()
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect()
    }

    /// The URL as written back from its parts, with the user info replaced by
    /// `userinfo`, each path segment by `segment(text)` and each query value by
    /// `value(name, value)` (the display of a URL with its secrets hidden).
    pub fn rebuild(
        &self,
        userinfo: Option<&str>,
        segment: &mut dyn FnMut(&str) -> String,
        value: &mut dyn FnMut(&str, &str) -> String,
    ) -> String {
        let mut out = format!("{}://", self.scheme);
        if let Some(u) = userinfo {
            out.push_str(u);
            out.push('@');
        }
        out.push_str(&self.host_text());
        if let Some(p) = self.explicit_port {
            out.push_str(&format!(":{p}"));
        }
        if !self.path.is_empty() {
            let segments: Vec<String> = self.path.split('/').map(&mut *segment).collect();
            out.push_str(&segments.join("/"));
        }
        if let Some(q) = &self.query {
            out.push('?');
            let pairs: Vec<String> = q
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => format!("{k}={}", value(k, v)),
                    None => p.to_string(),
                })
                .collect();
            out.push_str(&pairs.join("&"));
        }
        out
    }
}

fn p_has_sign(p: &str) -> bool {
    p.starts_with('+') || p.starts_with('-')
}

/// `host` and the port text of `host[:port]` (IPv6 in brackets).
fn split_host_port(hostport: &str) -> Option<(&str, Option<&str>)> {
    if hostport.starts_with('[') {
        let close = hostport.find(']')?;
        let (host, rest) = hostport.split_at(close + 1);
        match rest {
            "" => Some((host, None)),
            r => r.strip_prefix(':').map(|p| (host, Some(p))),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) if !p.contains(':') => Some((h, Some(p))),
            Some(_) => None,
            None => Some((hostport, None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: &[&str] = &["ws", "wss"];
    const HTTP: &[&str] = &["http", "https"];

    #[test]
    fn plain_urls_split_into_what_is_connected() {
        let u = PlanUrl::parse("ws://127.0.0.1:9001/echo?cap=5&t={{vu}}", WS).unwrap();
        assert_eq!((u.host.as_str(), u.port()), ("127.0.0.1", 9001));
        assert_eq!(u.resource(), "/echo?cap=5&t={{vu}}");
        assert_eq!(u.authority(), "127.0.0.1:9001");
        let u = PlanUrl::parse("wss://[::1]/", WS).unwrap();
        assert_eq!((u.host.as_str(), u.port(), u.tls()), ("::1", 443, true));
        assert_eq!(u.authority(), "[::1]");
        let u = PlanUrl::parse("ws://h.example", WS).unwrap();
        assert_eq!(u.resource(), "/");
        let u = PlanUrl::parse("ws://h.example?x=1", WS).unwrap();
        assert_eq!(u.resource(), "/?x=1");
        let u = PlanUrl::parse("http://u:p%40ss@Api.Example.com:8080/s", HTTP).unwrap();
        assert_eq!(u.userinfo.as_deref(), Some("u:p%40ss"));
        assert_eq!(u.host, "api.example.com");
        assert_eq!(u.authority(), "api.example.com:8080");
    }

    #[test]
    fn urls_read_two_ways_are_refused() {
        for bad in [
            "ws://127.0.0.2:18090\\@127.0.0.1:18095/echo",
            "ws://127.0.0.2:18090#@127.0.0.1:18095/echo",
            "ws://127.0.0.2:18090\t@127.0.0.1:18095/echo",
            "ws://127.0.0.1:1/echo\nx",
            " ws://127.0.0.1:1/",
            "ws://127.1:9001/",
            "ws://2130706433:9001/",
            "ws://0177.0.0.1:9001/",
            "ws://0x7f.0.0.1:9001/",
            "ws://１２７.０.０.１:9001/",
            "ws://[0:0:0:0:0:0:0:1]:1/",
            "ws://h:1/a/../b",
            "ws://h:1/%2e%2e/b",
            "ws://h:99999/",
            "ws://h:+80/",
            "ws://{{vu}}.h:1/",
            "ws://h:1/x#frag",
            "ftp://h/",
            "h:1/x",
        ] {
            assert!(PlanUrl::parse(bad, WS).is_err(), "{bad:?} accepted");
        }
        // A `?` before the `@` ends the authority for every reader alike; shown as is.
        let text = "ws://127.0.0.2:18090?@127.0.0.1:18095/echo";
        let u = PlanUrl::parse(text, WS).unwrap();
        assert_eq!(u.host, "127.0.0.2");
        assert_eq!(u.resource(), "/?@127.0.0.1:18095/echo");
        assert_eq!(
            u.rebuild(None, &mut |s| s.into(), &mut |_, v| v.into()),
            text
        );
        let e = PlanUrl::parse("ws://127.0.0.2:1\\@127.0.0.1:2/", WS).unwrap_err();
        assert!(e.contains("backslash"), "{e}");
        let e = PlanUrl::parse("ws://127.1:9001/", WS).unwrap_err();
        assert!(e.contains("127.0.0.1"), "{e}");
    }

    #[test]
    fn rebuilding_shows_what_is_connected() {
        let u = PlanUrl::parse("ws://user:pw@127.0.0.1:1/p?a=1&k=v&f", WS).unwrap();
        let shown = u.rebuild(Some("<redacted>"), &mut |s| s.into(), &mut |k, v| {
            if k == "k" {
                "<redacted>".into()
            } else {
                v.into()
            }
        });
        assert_eq!(shown, "ws://<redacted>@127.0.0.1:1/p?a=1&k=<redacted>&f");
        let u = PlanUrl::parse("ws://127.0.0.2:1/@127.0.0.1:2/echo", WS).unwrap();
        assert_eq!(
            u.rebuild(None, &mut |s| s.into(), &mut |_, v| v.into()),
            "ws://127.0.0.2:1/@127.0.0.1:2/echo"
        );
    }
}
