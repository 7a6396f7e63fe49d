//! Headless use for CI: `socketswarm run PLAN`, `socketswarm plan init|check`.
//!
//! `run` drives the engine in this process (no web server, no database), prints a live
//! progress line (rewritten in place on a terminal, one line per tick otherwise), then a
//! summary, the diagnosis and the thresholds. Exit codes: 0 all thresholds passed (or
//! none), 99 a threshold failed, 2 the run could not be made (bad plan, setup error).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use app::api::RunStatus;
use engine::plan::Agents;
use engine::swarm::{SwarmConfig, Update};
use engine::thresholds::ThresholdResult;
use engine::{Limits, Plan, Series, Snapshot, Summary};
use tokio_util::sync::CancellationToken;

use crate::export::ExportDoc;

/// Exit code when a threshold failed (as k6).
pub const EXIT_THRESHOLDS: i32 = 99;
/// Exit code when the run could not be made.
pub const EXIT_CANNOT_RUN: i32 = 2;

/// Reads a plan from JSON or TOML (by extension); errors say where.
pub fn read_plan(path: &Path) -> Result<Plan, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    if is_toml {
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    } else {
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// The limits a headless run is checked against: as the server's defaults (a run past
/// what one process holds is split over local agent processes).
pub fn local_limits() -> Limits {
    Limits {
        max_connections: 200_000,
        ..Limits::default()
    }
}

/// Where a headless run makes its load: in this process, or — when the plan asks for
/// agents or is larger than this process can hold — in local agent processes that join
/// a coordinator endpoint this process opens on loopback.
async fn headless_fleet(
    plan: &mut Plan,
    rt: &tokio::runtime::Handle,
) -> Result<std::sync::Arc<dyn engine::swarm::Fleet>, String> {
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let per_process = crate::agents::per_process(nofile);
    if plan.agents.is_none() && plan.peak_connections() > per_process {
        plan.agents = Some(Agents::Count(plan.agents_needed(per_process).max(2)));
    }
    let n = match plan.agents {
        None => 1,
        Some(Agents::Count(n)) => n,
        Some(Agents::All(_)) => return Err("agents: `\"all\"` means every agent joined to a server's pool; a headless run has none (give a number, or run it on `socketswarm serve --agents-on joined`)".into()),
    };
    if n <= 1 {
        // The user's own plan from their own shell: no allowlist.
        return Ok(std::sync::Arc::new(engine::swarm::InProcess::one(None, rt)));
    }
    // The agents' endpoint on loopback, over TLS with a certificate made for this run
    // (the agents are given its pin).
    let identity = crate::agents::channel::Identity::generate()?;
    let hub = std::sync::Arc::new(crate::agents::hub::Hub::with_pool(
        None,
        String::new(),
        identity.pin.clone(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("could not open the agents' endpoint: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("could not open the agents' endpoint: {e}"))?;
    let app: axum::Router = hub.clone().router();
    // Ends with this process (a headless run is one run).
    crate::agents::channel::serve(listener, app, &identity, CancellationToken::new())?;
    Ok(std::sync::Arc::new(crate::agents::local::JoinedFleet::new(
        n,
        std::sync::Arc::new(crate::agents::local::LocalProcesses::new(
            None,
            identity.pin.clone(),
            Vec::new(),
        )),
        hub,
        &crate::agents::channel::loopback_url(addr),
        Vec::new(),
        rt,
    )))
}

/// `plan check`: parse and validate; prints what is wrong, field by field.
pub fn check(path: &Path) -> i32 {
    match read_plan(path).and_then(|p| {
        p.validate(&local_limits()).map(|_| p).map_err(|errs| {
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
    }) {
        Ok(p) => {
            println!(
                "ok: `{}` — peak {} connections over {} to {}",
                p.name,
                p.peak_connections(),
                engine::plan::Dur(p.duration()),
                p.target
            );
            0
        }
        Err(e) => {
            eprintln!("{e}");
            EXIT_CANNOT_RUN
        }
    }
}

/// The plan's JSON Schema, pretty-printed (what `plan schema` prints and
/// `docs/plan.schema.json` holds).
pub fn schema() -> String {
    serde_json::to_string_pretty(&engine::plan::json_schema()).unwrap_or_default()
}

/// The commented template `plan init` writes (also the starter plan and the New-plan
/// editor's starting text).
pub const TEMPLATE: &str = engine::plan::TEMPLATE;

/// `plan init`: writes the template (to stdout with no file).
pub fn init(path: Option<&Path>) -> i32 {
    match path {
        None => {
            print!("{TEMPLATE}");
            0
        }
        Some(p) if p.exists() => {
            eprintln!("{} exists; not overwriting it", p.display());
            EXIT_CANNOT_RUN
        }
        Some(p) => match std::fs::write(p, TEMPLATE) {
            Ok(()) => {
                println!("wrote {}", p.display());
                0
            }
            Err(e) => {
                eprintln!("{}: {e}", p.display());
                EXIT_CANNOT_RUN
            }
        },
    }
}

/// Where `--out` writes.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    pub json: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    /// `--report FILE.html`.
    pub report: Option<PathBuf>,
    /// `--server URL`: upload the finished run there (with `--token` as a bearer).
    pub server: Option<String>,
    pub token: Option<String>,
}

impl Outputs {
    /// Parses `json=FILE` / `junit=FILE` entries.
    pub fn parse(entries: &[String]) -> Result<Outputs, String> {
        let mut o = Outputs::default();
        for e in entries {
            match e.split_once('=') {
                Some(("json", f)) if !f.is_empty() => o.json = Some(f.into()),
                Some(("junit", f)) if !f.is_empty() => o.junit = Some(f.into()),
                _ => return Err(format!("--out `{e}`: use json=FILE or junit=FILE")),
            }
        }
        Ok(o)
    }
}

/// `[######------]  50%` for terminals.
fn bar(elapsed_ms: u64, planned_ms: u64) -> String {
    let frac = if planned_ms == 0 {
        1.0
    } else {
        (elapsed_ms as f64 / planned_ms as f64).clamp(0.0, 1.0)
    };
    let filled = (frac * 20.0).round() as usize;
    format!(
        "[{}{}] {:>3.0}%",
        "#".repeat(filled),
        "-".repeat(20 - filled),
        frac * 100.0
    )
}

/// One finished probe experiment, for the terminal: "experiment 3: 40 connects/s for
/// 3 s … — offered 40, accepted 20, 57 failures: rate limited at ≈ 20/s".
fn experiment_line(r: &engine::report::ExperimentResult) -> String {
    let per_s = if r.unit == engine::report::UNIT_CONNECTS_PER_SECOND {
        "/s"
    } else {
        ""
    };
    format!(
        "experiment {}: {} — offered {:.1}{per_s}, accepted {:.1}{per_s}, {} failures: {}",
        r.experiment.index, r.experiment.what, r.offered, r.accepted, r.failures, r.verdict
    )
}

fn progress_line(s: &Snapshot) -> String {
    let t = &s.totals;
    let fails: Vec<String> = t.failures.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let p95 = |m: &str| {
        s.latency
            .get(m)
            .map(|l| app::fmt::us(l.p95_us))
            .unwrap_or_else(|| "-".into())
    };
    let experiment = s
        .probe
        .as_ref()
        .and_then(|p| {
            p.current
                .as_ref()
                .map(|c| format!("exp {}/{}  ", c.index, p.planned))
        })
        .unwrap_or_default();
    format!(
        "[{:>7}] {experiment}open {}/{}  connects ok {} failed {}{}  drops {}  msgs {}/{}  p95 connect {} rtt {}",
        app::fmt::ms(s.elapsed_ms),
        s.open,
        s.target,
        t.opened,
        t.failed,
        if fails.is_empty() { String::new() } else { format!(" ({})", fails.join(", ")) },
        t.dropped,
        t.msgs_sent,
        t.msgs_received,
        p95("ws_connecting"),
        p95("ws_rtt"),
    )
}

fn print_summary(
    plan: &Plan,
    s: &Summary,
    d: &engine::diagnose::Diagnosis,
    results: &[ThresholdResult],
) {
    let t = &s.totals;
    println!(
        "\n== {} — {} in {}",
        plan.name,
        plan.target,
        app::fmt::ms(s.duration_ms)
    );
    println!(
        "connections  attempted {}  opened {}  failed {}  peak open {}  dropped {}",
        t.attempted, t.opened, t.failed, s.peak_open, t.dropped
    );
    for (k, v) in &t.failures {
        println!("  failure    {k:<22} {v}");
    }
    for (k, v) in &t.closes {
        println!("  session    {k:<22} {v}");
    }
    println!(
        "messages     sent {}  received {}  expect timeouts {}",
        t.msgs_sent, t.msgs_received, t.expect_timeouts
    );
    if t.msgs_skipped + t.capture_misses + t.auto_matched > 0 {
        println!(
            "correlation  skipped {}  capture misses {}  responders matched {}  replied {}",
            t.msgs_skipped, t.capture_misses, t.auto_matched, t.auto_replies
        );
    }
    if t.arrivals + t.departures > 0 {
        println!(
            "sessions     arrivals {}  departures {}",
            t.arrivals, t.departures
        );
    }
    if t.rotations + t.rotation_failures > 0 {
        println!(
            "tokens       rotations {}  rotation failures {}",
            t.rotations, t.rotation_failures
        );
    }
    println!(
        "{:<22}{:>10}{:>10}{:>10}{:>10}{:>10}",
        "latency", "p50", "p95", "p99", "max", "count"
    );
    for (k, l) in &s.latency {
        println!(
            "  {k:<20}{:>10}{:>10}{:>10}{:>10}{:>10}",
            app::fmt::us(l.p50_us),
            app::fmt::us(l.p95_us),
            app::fmt::us(l.p99_us),
            app::fmt::us(l.max_us),
            l.count
        );
    }
    if let Some(p) = &s.probe {
        println!("probe experiments");
        for r in &p.done {
            println!("  {}", experiment_line(r));
        }
    }
    // The verdict, then each other limit the run hit.
    println!();
    for (label, x) in std::iter::once(("diagnosis", d)).chain(d.also.iter().map(|x| ("also", x))) {
        println!("{label}: {}", x.headline);
        println!("  {}", x.meta_line());
        if let Some(a) = x.alternatives_line() {
            println!("  also fits: {a}");
        }
        if let Some(t) = &x.separate_by {
            println!("  to tell them apart: {t}");
        }
        for v in &x.verdicts {
            println!("  * {}", v.meta_line());
        }
        for e in &x.evidence {
            println!("  - {e}");
        }
    }
    if !results.is_empty() {
        println!("\nthresholds:");
        for r in results {
            let actual = r.actual_text();
            println!(
                "  {} {} {}  (actual {actual})",
                if r.passed { "✓" } else { "✗" },
                r.metric,
                r.expression
            );
        }
    }
}

/// Posts an export to a running instance; returns the run's URL there.
async fn upload(base: &str, token: Option<&str>, body: &ExportDoc) -> Result<String, String> {
    let base = base.trim_end_matches('/');
    let mut req = reqwest::Client::new()
        .post(format!("{base}/api/runs/import"))
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {}", v["message"].as_str().unwrap_or("")));
    }
    Ok(format!("{base}{}", v["url"].as_str().unwrap_or("")))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: one test case per threshold.
pub fn junit(plan: &Plan, s: &Summary, results: &[ThresholdResult]) -> String {
    let failures = results.iter().filter(|r| !r.passed).count();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"socketswarm: {}\" tests=\"{}\" failures=\"{failures}\" time=\"{:.3}\">\n",
        xml_escape(&plan.name),
        results.len(),
        s.duration_ms as f64 / 1000.0
    );
    for r in results {
        out.push_str(&format!(
            "    <testcase classname=\"thresholds\" name=\"{} {}\">",
            xml_escape(&r.metric),
            xml_escape(&r.expression)
        ));
        if !r.passed {
            let actual = r.actual_text();
            out.push_str(&format!(
                "<failure message=\"actual {}\"/>",
                xml_escape(&actual)
            ));
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// `run`: the whole headless run; returns the exit code.
pub async fn run(path: &Path, outputs: &Outputs, tick: Duration) -> i32 {
    engine::install_crypto_provider();
    let mut plan = match read_plan(path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("could not run: {e}");
            return EXIT_CANNOT_RUN;
        }
    };
    // The load on its own runtime, the ticks on this one (engine::load_runtime).
    let load = match engine::load_runtime::LoadRuntime::start("load", 2) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("could not run: could not start the load runtime: {e}");
            return EXIT_CANNOT_RUN;
        }
    };
    let fleet = match headless_fleet(&mut plan, load.handle()).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("could not run: {e}");
            return EXIT_CANNOT_RUN;
        }
    };
    if let Err(errs) = plan.validate(&local_limits()) {
        eprintln!("could not run: the plan is invalid:");
        for e in errs {
            eprintln!("  {e}");
        }
        return EXIT_CANNOT_RUN;
    }
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    let cfg = SwarmConfig {
        tick,
        ..SwarmConfig::default()
    };
    let mut updates =
        match engine::swarm::start_plan(plan.clone(), cfg, cancel, load.handle(), fleet).await {
            Ok(u) => u,
            Err(e) => {
                eprintln!("could not run: {e}");
                return EXIT_CANNOT_RUN;
            }
        };
    let tty = std::io::stderr().is_terminal();
    let planned_ms = match &plan.probe {
        Some(p) => p.max_duration.0.as_millis() as u64,
        None => plan.duration().as_millis() as u64,
    };
    let mut ticks = Vec::new();
    let mut summary = None;
    let mut experiments_told = 0;
    while let Some(u) = updates.recv().await {
        match u {
            Update::Tick(s) => {
                let line = progress_line(&s);
                let mut err = std::io::stderr();
                // A probe's experiments as they finish, each on its own line.
                let done = s.probe.as_ref().map_or(&[][..], |p| &p.done[..]);
                for r in done.iter().skip(experiments_told) {
                    let clear = if tty { "\r\x1b[2K" } else { "" };
                    let _ = writeln!(err, "{clear}{}", experiment_line(r));
                }
                experiments_told = experiments_told.max(done.len());
                if tty {
                    let _ = write!(err, "\r\x1b[2K{} {line}", bar(s.elapsed_ms, planned_ms));
                } else {
                    let _ = writeln!(err, "{line}");
                }
                let _ = err.flush();
                ticks.push(s);
            }
            Update::Finished(s) => summary = Some(s),
        }
    }
    if tty {
        eprintln!();
    }
    let Some(summary) = summary else {
        eprintln!("could not run: the engine ended without a summary");
        return EXIT_CANNOT_RUN;
    };
    let series = Series::from_snapshots(&ticks);
    let diagnosis = engine::diagnose::for_run(&series, Some(&summary));
    let results = engine::thresholds::evaluate(&plan.thresholds, &summary);
    print_summary(&plan, &summary, &diagnosis, &results);
    let mut code = if results.iter().all(|r| r.passed) && summary.aborted_by.is_none() {
        0
    } else {
        EXIT_THRESHOLDS
    };
    if let Some(why) = &summary.aborted_by {
        println!("\naborted early (abort_on_fail): {why}");
    }
    let status = RunStatus::ended(summary.end_reason);
    let export = ExportDoc::new(
        &plan,
        status,
        summary.clone(),
        diagnosis.clone(),
        results.clone(),
        series.clone(),
        ticks,
    );
    let input = crate::report::ReportInput {
        plan: &plan,
        status,
        summary: &summary,
        diagnosis: &diagnosis,
        series: &series,
        thresholds: &results,
        created_at_ms: None,
        env: None,
    };
    let files = [
        (
            &outputs.json,
            serde_json::to_string_pretty(&export).unwrap_or_default(),
        ),
        (&outputs.junit, junit(&plan, &summary, &results)),
        (
            &outputs.report,
            if outputs.report.is_some() {
                crate::report::html(&input)
            } else {
                String::new()
            },
        ),
    ];
    for (path, text) in files {
        if let Some(p) = path {
            if let Err(e) = std::fs::write(p, text) {
                eprintln!("could not write {}: {e}", p.display());
                code = EXIT_CANNOT_RUN;
            }
        }
    }
    if let Some(base) = &outputs.server {
        match upload(base, outputs.token.as_deref(), &export).await {
            Ok(url) => println!("\nuploaded: {url}"),
            Err(e) => {
                eprintln!("could not upload to {base}: {e}");
                code = EXIT_CANNOT_RUN;
            }
        }
    }
    code
}
