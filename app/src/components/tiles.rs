//! Summary tiles and tables of a run, fed by the latest `Snapshot` (live) or the stored
//! `Summary` (finished). Values carry `data-metric` so tests can read them.
use leptos::prelude::*;

use engine::report::LatencyStats;
use engine::Totals;

use crate::fmt;

/// What the tiles show, from a snapshot or a summary.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TileData {
    pub elapsed_ms: u64,
    pub target: Option<u32>,
    pub open: u64,
    pub peak_open: u64,
    pub totals: Totals,
    /// A finished run: the first tile shows its peak against the planned peak (open now
    /// is 0 and says nothing).
    pub finished: bool,
    /// A live probe: the experiment running (open and target are its own, counters and
    /// peak the whole probe's).
    pub experiment: Option<u32>,
}

impl TileData {
    /// The tiles of a finished run (the run page and the HTML report alike).
    pub fn finished(s: &engine::Summary, planned_peak: u32) -> TileData {
        TileData {
            elapsed_ms: s.duration_ms,
            target: Some(planned_peak),
            open: s.peak_open,
            peak_open: s.peak_open,
            totals: s.totals.clone(),
            finished: true,
            experiment: None,
        }
    }
}

#[component]
fn Tile(
    label: &'static str,
    metric: &'static str,
    #[prop(into)] value: Signal<String>,
    #[prop(optional)] sub: Option<Signal<String>>,
) -> impl IntoView {
    view! {
        <div class="tile">
            <div class="tile__label">{label}</div>
            <div class="tile__value" data-metric=metric>{move || value.get()}</div>
            {sub.map(|s| view! { <div class="tile__sub">{move || s.get()}</div> })}
        </div>
    }
}

#[component]
pub fn Tiles(#[prop(into)] data: Signal<TileData>) -> impl IntoView {
    let d = move || data.get();
    view! {
        <div class="tiles">
            <div class="tile">
                <div class="tile__label">{move || if d().finished { "Peak open / planned" } else { "Open / target" }}</div>
                <div class="tile__value" data-metric="open">{move || { let d = d(); match d.target { Some(t) => format!("{} / {}", fmt::count(d.open), fmt::count(u64::from(t))), None => fmt::count(d.open) } }}</div>
                <div class="tile__sub" data-tile-experiment=move || d().experiment.map(|n| n.to_string())>{move || { let d = d(); match (d.finished, d.experiment) { (true, _) => "all closed at the end".to_string(), (false, Some(n)) => format!("experiment {n} · probe peak {}", fmt::count(d.peak_open)), (false, None) => format!("peak {}", fmt::count(d.peak_open)) } }}</div>
            </div>
            <Tile label="Connects ok" metric="opened" value=Signal::derive(move || fmt::count(d().totals.opened))
                sub=Signal::derive(move || format!("{} attempted", fmt::count(d().totals.attempted)))/>
            <Tile label="Connects failed" metric="failed" value=Signal::derive(move || fmt::count(d().totals.failed))
                sub=Signal::derive(move || format!("{} dropped after open", fmt::count(d().totals.dropped)))/>
            <Tile label="Messages sent / received" metric="messages"
                value=Signal::derive(move || format!("{} / {}", fmt::count(d().totals.msgs_sent), fmt::count(d().totals.msgs_received)))
                sub=Signal::derive(move || format!("{} expect timeouts", fmt::count(d().totals.expect_timeouts)))/>
            <Tile label="Elapsed" metric="elapsed" value=Signal::derive(move || fmt::ms(d().elapsed_ms))/>
        </div>
    }
}

/// Failures and closes by kind.
#[component]
pub fn FailureTable(#[prop(into)] totals: Signal<Totals>) -> impl IntoView {
    let rows = move || {
        let t = totals.get();
        let mut rows: Vec<(String, String, u64)> = t
            .failures
            .iter()
            .map(|(k, v)| ("handshake / connect".to_string(), k.clone(), *v))
            .collect();
        rows.extend(
            t.closes
                .iter()
                .map(|(k, v)| ("session end".to_string(), k.clone(), *v)),
        );
        rows
    };
    view! {
        <table class="failures">
            <thead><tr><th>"Stage"</th><th>"Outcome"</th><th class="num">"Count"</th></tr></thead>
            <tbody>
                {move || {
                    let r = rows();
                    if r.is_empty() {
                        view! { <tr><td colspan="3" class="muted">"No failures or closes yet."</td></tr> }.into_any()
                    } else {
                        r.into_iter().map(|(stage, kind, n)| {
                            let label = kind.clone();
                            view! {
                                <tr data-outcome=kind><td>{stage}</td><td class="mono">{label}</td><td class="num">{fmt::count(n)}</td></tr>
                            }
                        }).collect_view().into_any()
                    }
                }}
            </tbody>
        </table>
    }
}

/// Percentiles by metric.
#[component]
pub fn LatencyTable(
    #[prop(into)] latency: Signal<std::collections::BTreeMap<String, LatencyStats>>,
) -> impl IntoView {
    view! {
        <table class="latency">
            <thead><tr><th>"Metric"</th><th class="num">"count"</th><th class="num">"p50"</th><th class="num">"p90"</th><th class="num">"p95"</th><th class="num">"p99"</th><th class="num">"p99.9"</th><th class="num">"max"</th></tr></thead>
            <tbody>
                {move || {
                    let rows = latency.get();
                    // A live second with no handshakes or replies has nothing to time.
                    let none = rows.is_empty().then(|| view! {
                        <tr class="latency__none"><td colspan="8" class="muted">"Nothing timed in this window (no handshakes or replies)."</td></tr>
                    });
                    let rows = rows.into_iter().map(|(k, s)| view! {
                        <tr><td class="mono">{k}</td><td class="num">{fmt::count(s.count)}</td><td class="num">{fmt::us(s.p50_us)}</td><td class="num">{fmt::us(s.p90_us)}</td>
                        <td class="num">{fmt::us(s.p95_us)}</td><td class="num">{fmt::us(s.p99_us)}</td><td class="num">{fmt::us(s.p999_us)}</td><td class="num">{fmt::us(s.max_us)}</td></tr>
                    }).collect_view();
                    view! { {none} {rows} }
                }}
            </tbody>
        </table>
    }
}

/// Handshake outcomes per client identity along one dimension (token slots, source
/// addresses, per-connection header or query values).
#[component]
pub fn IdentityTable(
    dim: String,
    ids: std::collections::BTreeMap<String, engine::report::IdentityTotals>,
) -> impl IntoView {
    let class = if dim == engine::report::DIM_TOKEN {
        "identities tokens".to_string()
    } else {
        format!("identities identities--{}", dim.replace(':', "-"))
    };
    let head = engine::diagnose::per_words(&dim);
    view! {
        <table class=class data-dim=dim>
            <thead><tr><th>{head}</th><th class="num">"attempted"</th><th class="num">"opened"</th><th class="num">"open at end"</th><th class="num">"refused"</th><th class="num">"401/403"</th><th class="num">"other failures"</th></tr></thead>
            <tbody>
                {ids.into_iter().map(|(id, t)| { let label = id.clone(); view! {
                    <tr data-identity=id><td class="mono">{label}</td><td class="num">{fmt::count(t.attempted)}</td><td class="num">{fmt::count(t.opened)}</td>
                    <td class="num">{fmt::count(t.open())}</td><td class="num">{fmt::count(t.rejected)}</td><td class="num">{fmt::count(t.auth_failed)}</td><td class="num">{fmt::count(t.other_failed)}</td></tr>
                }}).collect_view()}
            </tbody>
        </table>
    }
}

/// The agents of a run split over processes: each one's share now (live) or at its end,
/// and a lost one with the reason.
#[component]
pub fn AgentTable(
    #[prop(into)] agents: Signal<Vec<engine::report::AgentStatus>>,
    lost: Vec<engine::report::LostAgent>,
) -> impl IntoView {
    view! {
        <table class="agents">
            <thead><tr><th>"Agent"</th><th class="num">"pid"</th><th class="num">"open / target"</th><th class="num">"CPU"</th><th class="num">"open files"</th><th class="num">"last tick"</th><th>"state"</th></tr></thead>
            <tbody>
                {move || agents.get().into_iter().map(|a| {
                    let why = lost.iter().find(|l| l.agent == a.agent).map(|l| l.reason.clone());
                    let state = if a.lost {
                        format!("lost: {}", why.unwrap_or_default())
                    } else if a.done {
                        "done".to_string()
                    } else {
                        "running".to_string()
                    };
                    let class = if a.lost { "agents__row agents__row--lost" } else { "agents__row" };
                    view! {
                        <tr class=class data-agent=a.agent.to_string()>
                            <td class="mono">{format!("#{}", a.agent)}</td>
                            <td class="num mono">{a.pid.to_string()}</td>
                            <td class="num">{format!("{} / {}", fmt::count(a.open), fmt::count(u64::from(a.target)))}</td>
                            <td class="num">{format!("{:.0} %", a.cpu_pct)}</td>
                            <td class="num">{fmt::count(a.open_files)}</td>
                            <td class="num">{format!("#{} · {:.1} s ago", a.last_seq, a.last_tick_age_ms as f64 / 1000.0)}</td>
                            <td>{state}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}
