//! Command line and environment: one clap model, validated once at startup. Every flag
//! has an env fallback (see `.env.sample`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub mod k8s;

#[derive(Debug, Parser)]
#[command(
    name = "socketswarm",
    version,
    about = "Load-test WebSocket services with swarms of real connections",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `server=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    pub log: String,
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `serve` is the default command; its flags work without naming it.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The web app: UI + JSON API + embedded sandbox target (default).
    Serve(Box<ServeArgs>),
    /// The sandbox target alone, to measure against another process.
    Target(TargetArgs),
    /// One agent of a run split over processes or machines: dials its coordinator.
    Agent(crate::agents::agent::AgentArgs),
    /// Run a plan file headless (CI): progress, summary, diagnosis, thresholds.
    /// Exit 0 = passed, 99 = a threshold failed, 2 = could not run.
    Run(RunArgs),
    /// Plan files: `init` writes a commented template, `check` validates one.
    #[command(subcommand)]
    Plan(PlanCommand),
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Plan file (.toml or .json).
    pub plan: PathBuf,
    /// Outputs: `json=FILE` (versioned export), `junit=FILE` (one case per threshold).
    #[arg(long = "out")]
    pub out: Vec<String>,
    /// Also write the self-contained HTML report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Upload the finished run to this socketswarm instance (e.g. http://127.0.0.1:3000).
    #[arg(long)]
    pub server: Option<String>,
    /// Access token for `--server`, sent as a bearer token.
    #[arg(long, env = "SOCKETSWARM_TOKEN")]
    pub token: Option<String>,
    /// Progress period in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub tick_ms: u64,
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Write a commented plan template (to FILE, or stdout).
    Init { file: Option<PathBuf> },
    /// Validate a plan file with the same messages as the UI and API.
    Check { file: PathBuf },
    /// Print the plan's JSON Schema (for editors; also in docs/plan.schema.json).
    Schema,
    /// Print the JSON Schema of the run export (docs/export.schema.json).
    ExportSchema,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address for the UI and API.
    #[arg(long, env = "SOCKETSWARM_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// SQLite database file (created on first start; migrations applied at start).
    #[arg(long, env = "SOCKETSWARM_DATABASE", default_value = "socketswarm.db")]
    pub database: PathBuf,
    /// Embedded sandbox target address, or `off`.
    #[arg(long, env = "SOCKETSWARM_SANDBOX", default_value = "127.0.0.1:9001")]
    pub sandbox: String,
    /// The sandbox's `wss://` listener (self-signed certificate), or `off`.
    #[arg(
        long,
        env = "SOCKETSWARM_SANDBOX_TLS",
        default_value = "127.0.0.1:9443"
    )]
    pub sandbox_tls: String,
    /// Development override: serve the site (`pkg/` with wasm, js, css) from this
    /// directory, as it changes, instead of the copy embedded in the binary at build
    /// time (e.g. `--site-root target/site` after `scripts/build.sh`).
    #[arg(long, env = "SOCKETSWARM_SITE_ROOT")]
    pub site_root: Option<PathBuf>,
    /// Runs allowed at once; more are queued.
    #[arg(long, env = "SOCKETSWARM_MAX_CONCURRENT_RUNS", default_value_t = 1)]
    pub max_concurrent_runs: usize,
    /// Most connections per run, in all. A run larger than one process can hold (its
    /// open-file limit) is split over local agent processes automatically.
    #[arg(long, env = "SOCKETSWARM_MAX_CONNECTIONS", default_value_t = 200_000)]
    pub max_connections: u32,
    /// Longest run, e.g. `1h`.
    #[arg(long, env = "SOCKETSWARM_MAX_DURATION", default_value = "1h")]
    pub max_duration: String,
    /// Snapshot period in milliseconds.
    #[arg(long, env = "SOCKETSWARM_TICK_MS", default_value_t = 1000)]
    pub tick_ms: u64,
    /// Largest message a plan may send, in bytes.
    #[arg(long, env = "SOCKETSWARM_MAX_MESSAGE_BYTES", default_value_t = 1 << 20)]
    pub max_message_bytes: usize,
    /// Access token (24+ characters, 10+ different ones, e.g. `openssl rand -hex 24`):
    /// required for every page and API call except share links (browser: asked once,
    /// kept in a cookie; API: `Authorization: Bearer`). Required to listen on a
    /// non-loopback address.
    #[arg(long, env = "SOCKETSWARM_ACCESS_TOKEN", hide_env_values = true)]
    pub access_token: Option<String>,
    /// Where runs may send traffic: host names (`localhost`, `*.staging.example.com`),
    /// IPs or CIDRs (`10.1.2.0/24`), each with an optional `:PORT`. Repeat or separate
    /// with commas. Empty = anywhere.
    #[arg(
        long = "allow-target",
        env = "SOCKETSWARM_ALLOW_TARGETS",
        value_delimiter = ','
    )]
    pub allow_target: Vec<String>,
    /// Connections one process holds before a run is split over local agent processes
    /// (default: what its open-file limit allows). For tests and benchmarks.
    #[arg(long, env = "SOCKETSWARM_MAX_PROCESS_CONNECTIONS", hide = true)]
    pub max_process_connections: Option<u32>,
    /// The program local agents run (`socketswarm agent`); default: this one. For tests
    /// whose process is not `socketswarm`.
    #[arg(long, env = "SOCKETSWARM_AGENT_EXE", hide = true)]
    pub agent_exe: Option<PathBuf>,
    /// Server environment variables plans may read (`{{env.NAME}}`, `{"env": "NAME"}`):
    /// names or prefixes ending in `*`, separated with commas. Empty = none.
    /// `SOCKETSWARM_*` (this server's own settings) is never readable.
    #[arg(
        long = "allow-env",
        env = "SOCKETSWARM_ALLOW_ENV",
        value_delimiter = ','
    )]
    pub allow_env: Vec<String>,
    /// On a first start (empty database) with the sandbox on, save a starter plan aimed
    /// at it.
    #[arg(long, env = "SOCKETSWARM_STARTER_PLAN", default_value_t = true, action = clap::ArgAction::Set)]
    pub starter_plan: bool,
    /// The URL people and proxies reach this server at, e.g.
    /// `https://socketswarm.example.com` (scheme, host, optional port; no path). Its
    /// host and port are accepted in `Host` besides the listen address: requests naming
    /// any other host get 421 (DNS rebinding guard).
    #[arg(long, env = "SOCKETSWARM_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Listen on a non-loopback address WITHOUT an access token, or put the sandbox
    /// target on one (it has no token at all). Anyone who can reach the port can aim
    /// load anywhere the allowlist permits, or use the sandbox. Logged loudly.
    #[arg(long, env = "SOCKETSWARM_ALLOW_REMOTE", default_value_t = false)]
    pub allow_remote: bool,
    // --- Limits against exhaustion (security: "holds when attacked"). Each bounds one
    // resource an outsider (or a share link) could otherwise take without limit.
    /// Milliseconds a client may take to send a request's headers, and to send the next
    /// request on a kept-alive connection; then the connection is closed (half-sent
    /// requests would otherwise hold a socket forever).
    #[arg(long, env = "SOCKETSWARM_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// Most HTTP connections at once; past it new connections are answered 503 and
    /// closed. At most what `--max-connections` leaves of the open-file limit (but at
    /// least 256, or a quarter of a smaller limit), so HTTP clients never take the
    /// sockets a run needs.
    #[arg(long, env = "SOCKETSWARM_MAX_HTTP_CONNECTIONS", default_value_t = 1024)]
    pub max_http_connections: usize,
    /// Most live event streams (SSE) at once, all runs and share links together.
    #[arg(long, env = "SOCKETSWARM_MAX_EVENT_STREAMS", default_value_t = 256)]
    pub max_event_streams: usize,
    /// Most live event streams at once through one share link.
    #[arg(long, env = "SOCKETSWARM_MAX_STREAMS_PER_SHARE", default_value_t = 8)]
    pub max_streams_per_share: usize,
    /// Exports, HTML reports and CSVs built at once (each reads a whole run); others
    /// wait up to 10 s, then get 503 with `Retry-After`.
    #[arg(long, env = "SOCKETSWARM_MAX_CONCURRENT_EXPORTS", default_value_t = 2)]
    pub max_concurrent_exports: usize,
    /// Runs waiting for a free slot at most; past it launching answers 429.
    #[arg(long, env = "SOCKETSWARM_MAX_QUEUED_RUNS", default_value_t = 32)]
    pub max_queued_runs: usize,
    /// Largest body `POST /api/runs/import` reads, in bytes.
    #[arg(long, env = "SOCKETSWARM_MAX_IMPORT_BYTES", default_value_t = 64 << 20)]
    pub max_import_bytes: usize,
    /// Most ticks one imported run may hold.
    #[arg(long, env = "SOCKETSWARM_MAX_IMPORT_TICKS", default_value_t = 100_000)]
    pub max_import_ticks: usize,
    /// Bytes this process holds at most for targets at once: WebSocket messages still
    /// arriving (past the first 4 KiB of each) and HTTP-step and token answers being
    /// read, over all runs. A message or answer that would pass it ends its session or
    /// attempt (`session_memory_budget`, `memory_budget`) instead of growing memory.
    #[arg(long, env = "SOCKETSWARM_MAX_INFLIGHT_BYTES", default_value_t = engine::budget::DEFAULT_LIMIT)]
    pub max_inflight_bytes: usize,
    /// Where runs split over agents get them (`--agents-on`), and the `--k8s-*` flags
    /// for agent pods (`config::k8s`).
    #[command(flatten)]
    pub k8s: k8s::K8sArgs,
}

#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "SOCKETSWARM_TARGET_LISTEN",
        default_value = "127.0.0.1:9001"
    )]
    pub listen: SocketAddr,
    /// Also serve `wss://` (self-signed certificate) here.
    #[arg(long, env = "SOCKETSWARM_TARGET_TLS_LISTEN")]
    pub tls_listen: Option<SocketAddr>,
    /// Serve the port from this many processes (`SO_REUSEPORT`; the kernel spreads
    /// connections over them), so one process's open-file limit is not the wall. Limits
    /// such as `cap=` then count per process.
    #[arg(long, env = "SOCKETSWARM_TARGET_PROCESSES", default_value_t = 1)]
    pub processes: u32,
    /// With `--processes`: where the counters of all of them are served as one
    /// (`GET /stats`); each process's own port answers with its own.
    #[arg(long, env = "SOCKETSWARM_TARGET_STATS_LISTEN")]
    pub stats_listen: Option<SocketAddr>,
    /// Internal: a helper process of `--processes` (shares the port, prints its own
    /// counters' address).
    #[arg(long, hide = true)]
    pub helper: bool,
}

/// How to make a token that passes [`weak_token`], for the refusals.
pub(crate) const STRONG_TOKEN: &str = "Use at least 24 characters with at least 10 different ones, no repeated pattern or run like `abcd…`, and no whitespace, `;` or `,`: e.g. `openssl rand -hex 24`.";

/// Shortest access token accepted (characters).
const TOKEN_MIN_CHARS: usize = 24;
/// Fewest different characters an access token must have.
const TOKEN_MIN_DISTINCT: usize = 10;

/// Why `token` (the access token, the agent pool token) is too weak to guard a load
/// generator (`None` = strong enough). The rules refuse what a person types when asked for a password (`aaaaaaaaaaaaaaaa`,
/// `abcabcabc…`, `0123456789…`) and accept anything `openssl rand -hex 24` prints. Login
/// attempts are throttled too (see `http::throttle`), but a token that can be guessed
/// in a few thousand tries must not get that far.
pub(crate) fn weak_token(token: &str) -> Option<&'static str> {
    let chars: Vec<char> = token.chars().collect();
    let mut distinct = chars.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if chars.len() < TOKEN_MIN_CHARS {
        Some("it is shorter than 24 characters")
    } else if chars
        .iter()
        .any(|c| c.is_whitespace() || c.is_control() || *c == ';' || *c == ',')
    {
        Some("it holds whitespace, a control character, `;` or `,`")
    } else if distinct.len() < TOKEN_MIN_DISTINCT {
        Some("it has fewer than 10 different characters")
    } else if repeats_a_pattern(&chars) {
        Some("it repeats a shorter pattern")
    } else if mostly_a_run(&chars) {
        Some("it is mostly a run like `abcd…` or `1234…`")
    } else {
        None
    }
}

/// True when the text is a shorter pattern over and over (`abcabcab`): some period of
/// at most half its length predicts every character.
fn repeats_a_pattern(chars: &[char]) -> bool {
    (1..=chars.len() / 2).any(|p| (p..chars.len()).all(|i| chars[i] == chars[i - p]))
}

/// True when more than half of the steps between neighbours go up or down by one code
/// point (`abcdef…`, `98765…`). Random hex does that about one step in eight.
fn mostly_a_run(chars: &[char]) -> bool {
    let steps = chars
        .windows(2)
        .filter(|w| u32::from(w[0]).abs_diff(u32::from(w[1])) == 1)
        .count();
    steps * 2 > chars.len().saturating_sub(1)
}

/// The problem with a sandbox listener on `addr`, if any: like the UI, it stays on
/// loopback unless `--allow-remote` says otherwise. No access token helps here: the
/// sandbox has none (anyone who reaches it can hold connections and read `/stats`).
fn sandbox_problem(flag: &str, env: &str, addr: SocketAddr, allow_remote: bool) -> Option<String> {
    (!addr.ip().is_loopback() && !allow_remote).then(|| {
        format!(
            "{flag} ({env}): {addr} is not a loopback address, and the sandbox target has no access token: anyone who reaches it can hold connections on this machine and read its /stats. Use 127.0.0.1, `off`, or pass --allow-remote to accept that risk."
        )
    })
}

/// Validated settings derived from `ServeArgs`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub sandbox: Option<SocketAddr>,
    pub sandbox_tls: Option<SocketAddr>,
    pub max_duration: std::time::Duration,
    pub allowlist: crate::allow::Allowlist,
    pub env_allow: crate::allow::EnvAllow,
    /// `--public-url`, checked.
    pub public_url: Option<url::Url>,
    /// Agent pods' settings with `--agents-on kubernetes`.
    pub kube: Option<crate::agents::k8s::KubeSettings>,
    /// The agent pool's token with `--agents-on joined`.
    pub pool_token: Option<String>,
}

impl Settings {
    /// Sandbox listeners reachable from other machines (only with `--allow-remote`):
    /// `(flag, address)`, for the loud warning at every start.
    pub fn exposed_sandboxes(&self) -> Vec<(&'static str, SocketAddr)> {
        [
            ("--sandbox", self.sandbox),
            ("--sandbox-tls", self.sandbox_tls),
        ]
        .into_iter()
        .filter_map(|(flag, a)| a.filter(|a| !a.ip().is_loopback()).map(|a| (flag, a)))
        .collect()
    }
}

impl ServeArgs {
    /// Checks every setting; reports all problems together.
    pub fn validate(&self) -> Result<Settings, String> {
        let mut problems = Vec::new();
        let sandbox = match self.sandbox.as_str() {
            "off" | "" => None,
            s => match s.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    problems.push(format!(
                        "--sandbox: `{s}` is not an address like 127.0.0.1:9001 (or `off`)"
                    ));
                    None
                }
            },
        };
        let sandbox_tls = match self.sandbox_tls.as_str() {
            "off" | "" => None,
            s => match s.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    problems.push(format!(
                        "--sandbox-tls: `{s}` is not an address like 127.0.0.1:9443 (or `off`)"
                    ));
                    None
                }
            },
        };
        for (flag, env, addr) in [
            ("--sandbox", "SOCKETSWARM_SANDBOX", sandbox),
            ("--sandbox-tls", "SOCKETSWARM_SANDBOX_TLS", sandbox_tls),
        ] {
            if let Some(p) = addr.and_then(|a| sandbox_problem(flag, env, a, self.allow_remote)) {
                problems.push(p);
            }
        }
        let max_duration = engine::plan::parse_duration(&self.max_duration).unwrap_or_else(|e| {
            problems.push(format!("--max-duration: {e}"));
            std::time::Duration::from_secs(3600)
        });
        if let Some(dir) = self.site_root.as_ref().filter(|d| !d.is_dir()) {
            problems.push(format!(
                "--site-root: `{}` is not a directory (leave it out to serve the site built into the binary)",
                dir.display()
            ));
        }
        if self.max_concurrent_runs == 0 {
            problems.push("--max-concurrent-runs: must be at least 1".into());
        }
        if !self.listen.ip().is_loopback() && !self.allow_remote && self.access_token.is_none() {
            problems.push(format!(
                "--listen: {} is not a loopback address, so anyone who reaches it could aim load anywhere. Set --access-token (SOCKETSWARM_ACCESS_TOKEN), listen on 127.0.0.1, or pass --allow-remote to accept that risk.",
                self.listen
            ));
        }
        if let Some(why) = self.access_token.as_deref().and_then(weak_token) {
            problems.push(format!(
                "--access-token (SOCKETSWARM_ACCESS_TOKEN) is too weak: {why}. {STRONG_TOKEN}"
            ));
        }
        if !(16..=64 * 1024 * 1024).contains(&self.max_message_bytes) {
            problems.push(format!(
                "--max-message-bytes: {} must be between 16 and 67108864",
                self.max_message_bytes
            ));
        }
        let allowlist = crate::allow::Allowlist::parse(&self.allow_target).unwrap_or_else(|p| {
            problems.push(p);
            crate::allow::Allowlist::default()
        });
        let env_allow = crate::allow::EnvAllow::parse(&self.allow_env).unwrap_or_else(|p| {
            problems.push(p);
            crate::allow::EnvAllow::default()
        });
        let public_url = self.public_url.as_deref().and_then(|u| {
            parse_public_url(u)
                .map_err(|e| problems.push(format!("--public-url (SOCKETSWARM_PUBLIC_URL): {e}")))
                .ok()
        });
        self.check_exhaustion_limits(&mut problems);
        let kube = self.k8s.settings(&mut problems);
        let pool_token = self.k8s.pool_token(&mut problems);
        if !(50..=60_000).contains(&self.tick_ms) {
            problems.push(format!(
                "--tick-ms: {} must be between 50 and 60000",
                self.tick_ms
            ));
        }
        if problems.is_empty() {
            Ok(Settings {
                sandbox,
                sandbox_tls,
                max_duration,
                allowlist,
                env_allow,
                public_url,
                kube,
                pool_token,
            })
        } else {
            Err(problems.join("\n"))
        }
    }
}

impl ServeArgs {
    /// The limits against exhaustion: each must leave the server usable (0 would refuse
    /// everything, a huge value would be no limit).
    fn check_exhaustion_limits(&self, problems: &mut Vec<String>) {
        let mut within = |flag: &str, value: u64, min: u64, max: u64| {
            if !(min..=max).contains(&value) {
                problems.push(format!("--{flag}: {value} must be between {min} and {max}"));
            }
        };
        within("header-timeout-ms", self.header_timeout_ms, 100, 600_000);
        within(
            "max-inflight-bytes",
            self.max_inflight_bytes as u64,
            1 << 20,
            1 << 40,
        );
        within(
            "max-http-connections",
            self.max_http_connections as u64,
            4,
            1 << 20,
        );
        within(
            "max-event-streams",
            self.max_event_streams as u64,
            1,
            1 << 16,
        );
        within(
            "max-streams-per-share",
            self.max_streams_per_share as u64,
            1,
            1 << 16,
        );
        within(
            "max-concurrent-exports",
            self.max_concurrent_exports as u64,
            1,
            64,
        );
        within("max-queued-runs", self.max_queued_runs as u64, 0, 10_000);
        within(
            "max-import-bytes",
            self.max_import_bytes as u64,
            1024,
            1 << 30,
        );
        within(
            "max-import-ticks",
            self.max_import_ticks as u64,
            1,
            10_000_000,
        );
    }
}

/// Checks a `--public-url` value: an `http`/`https` URL with a host and nothing a
/// server's address cannot have (credentials, a path, a query or a fragment).
pub fn parse_public_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    let problem = if !matches!(url.scheme(), "http" | "https") {
        Some("use http:// or https://")
    } else if url.host().is_none() {
        Some("it has no host")
    } else if !url.username().is_empty() || url.password().is_some() {
        Some("it must not hold a user name or password")
    } else if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        Some("give only the scheme, host and port (no path, query or fragment)")
    } else {
        None
    };
    match problem {
        Some(p) => Err(format!(
            "`{text}`: {p}, e.g. https://socketswarm.example.com"
        )),
        None => Ok(url),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_public_url, weak_token};

    #[test]
    fn guessable_tokens_are_weak_and_random_ones_are_not() {
        for weak in [
            "aaaaaaaaaaaaaaaa",
            "short-but-varied-123",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "abcabcabcabcabcabcabcabcabcabcabc",
            "0123456789012345678901234567",
            "abcdefghijklmnopqrstuvwxyz",
            "zyxwvutsrqponmlkjihgfedcba98",
            "has a space in it 0123456789",
            "semi;colon-0123456789abcdefgh",
        ] {
            assert!(weak_token(weak).is_some(), "{weak:?} passed");
        }
        for strong in [
            "3f9a1c07be52d8e46a0b9c3d17f25e8a4b6c0d9e2f7a1b3c",
            "t0k3n-for-the-tests-0123",
            "e2e-access-token-0123456789",
        ] {
            assert_eq!(weak_token(strong), None, "{strong:?}");
        }
    }

    #[test]
    fn public_urls_are_checked() {
        for bad in [
            "swarm.example.com",
            "ftp://swarm.example.com",
            "https://user:pw@swarm.example.com",
            "https://swarm.example.com/app",
            "https://swarm.example.com/?x=1",
        ] {
            assert!(parse_public_url(bad).is_err(), "{bad}");
        }
        assert!(parse_public_url("https://swarm.example.com/").is_ok());
        assert!(parse_public_url("http://[::1]:8080").is_ok());
    }
}
