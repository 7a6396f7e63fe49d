//! Command line and environment: one clap model, validated once at startup. Every flag
//! has an env fallback (see `.env.sample`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    Serve(ServeArgs),
    /// The sandbox target alone, to measure against another process.
    Target(TargetArgs),
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
    /// Directory with the built site (`pkg/` with wasm, js, css).
    #[arg(long, env = "SOCKETSWARM_SITE_ROOT", default_value = "target/site")]
    pub site_root: String,
    /// Runs allowed at once; more are queued.
    #[arg(long, env = "SOCKETSWARM_MAX_CONCURRENT_RUNS", default_value_t = 1)]
    pub max_concurrent_runs: usize,
    /// Most connections per run (capped below the open-file limit at startup).
    #[arg(long, env = "SOCKETSWARM_MAX_CONNECTIONS", default_value_t = 19_000)]
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
    /// Access token (16+ characters): required for every page and API call except
    /// share links (browser: asked once, kept in a cookie; API: `Authorization: Bearer`).
    /// Required to listen on a non-loopback address.
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
    /// On a first start (empty database) with the sandbox on, save a starter plan aimed
    /// at it.
    #[arg(long, env = "SOCKETSWARM_STARTER_PLAN", default_value_t = true, action = clap::ArgAction::Set)]
    pub starter_plan: bool,
    /// Listen on a non-loopback address WITHOUT an access token. Anyone who can reach
    /// the port can aim load anywhere the allowlist permits. Logged loudly.
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
}

/// Validated settings derived from `ServeArgs`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub sandbox: Option<SocketAddr>,
    pub sandbox_tls: Option<SocketAddr>,
    pub max_duration: std::time::Duration,
    pub allowlist: crate::allow::Allowlist,
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
        let max_duration = engine::plan::parse_duration(&self.max_duration).unwrap_or_else(|e| {
            problems.push(format!("--max-duration: {e}"));
            std::time::Duration::from_secs(3600)
        });
        if self.max_concurrent_runs == 0 {
            problems.push("--max-concurrent-runs: must be at least 1".into());
        }
        if !self.listen.ip().is_loopback() && !self.allow_remote && self.access_token.is_none() {
            problems.push(format!(
                "--listen: {} is not a loopback address, so anyone who reaches it could aim load anywhere. Set --access-token (SOCKETSWARM_ACCESS_TOKEN), listen on 127.0.0.1, or pass --allow-remote to accept that risk.",
                self.listen
            ));
        }
        if let Some(t) = &self.access_token {
            if t.trim().chars().count() < 16
                || t.chars().any(|c| c.is_whitespace() || c == ';' || c == ',')
            {
                problems.push("--access-token: use at least 16 characters, without spaces, `;` or `,` (e.g. `openssl rand -hex 16`)".into());
            }
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
        self.check_exhaustion_limits(&mut problems);
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
