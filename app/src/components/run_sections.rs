//! `<RunSections>`: everything a run shows below its head — tiles, diagnosis, what the
//! target said, agents,
//! charts, latency distributions, failures, identities, latency percentiles,
//! thresholds, plan and environment. The run page renders it (live or finished), and the downloadable HTML
//! report renders the very same component to a string (`server::report`), so the two
//! list the same sections with the same tables and cannot drift. Page-only parts (the
//! baseline panel) come in through `after_tiles`.
//!
//! To add a section: add it here (both get it), and if it needs data the report does
//! not have yet, add it to `server::report::ReportInput` too.
use std::collections::BTreeMap;

use leptos::prelude::*;

use engine::compare::HistogramView;
use engine::diagnose::Diagnosis;
use engine::report::{
    AgentStatus, LatencyStats, LostAgent, ProbeProgress, UNIT_CONNECTIONS, UNIT_CONNECTS_PER_SECOND,
};
use engine::thresholds::ThresholdResult;
use engine::{Series, Summary};

use crate::api::RunEnv;
use crate::charts;
use crate::components::probe::ProbePanel;
use crate::components::run_actions::Environment;
use crate::components::target_said::TargetSaidPanel;
use crate::components::tiles::TileData;
use crate::components::{
    AgentTable, Chart, DiagnosisPanel, FailureTable, IdentityTable, LatencyTable, Tiles,
};

/// Where and when a run ran, for its Environment section.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvSection {
    pub env: RunEnv,
    pub created: i64,
    pub started: Option<i64>,
    pub finished: Option<i64>,
}

/// The title of a latency distribution chart.
fn histogram_title(metric: &str) -> &'static str {
    match metric {
        "ws_connecting" => "Connect (TCP + TLS + upgrade)",
        "ws_rtt" => "Message round trip",
        "tls_handshake" => "TLS handshake",
        "token_fetch" => "Token fetch",
        "ws_ping" => "Ping round trip",
        _ => "First message",
    }
}

#[component]
pub fn RunSections(
    #[prop(into)] tiles: Signal<TileData>,
    #[prop(into)] diagnosis: Signal<Option<Diagnosis>>,
    /// The run is still going (the diagnosis says "so far").
    live: bool,
    #[prop(into)] agents: Signal<Vec<AgentStatus>>,
    lost_agents: Vec<LostAgent>,
    /// The per-second columns the charts draw.
    #[prop(into)]
    series: Signal<Series>,
    /// Whole-run latency distributions (finished runs).
    histograms: Vec<HistogramView>,
    /// The stored summary (finished runs): evidence and identities.
    summary: Option<Summary>,
    #[prop(into)] latency: Signal<BTreeMap<String, LatencyStats>>,
    /// The plan's thresholds judged on the summary (finished runs), or on the newest
    /// tick while live (counters so far, latency of the last second).
    #[prop(into)]
    thresholds: Signal<Vec<ThresholdResult>>,
    /// The plan as pretty JSON, secrets redacted.
    plan_json: String,
    env: Option<EnvSection>,
    #[prop(default = None)] after_tiles: Option<AnyView>,
    /// Above the charts, after the verdict and its evidence: the Steer panel of a live run
    /// (its changes are drawn on the connections chart right below).
    #[prop(default = None)]
    before_charts: Option<AnyView>,
    /// A live probe's progress (the newest tick's); a finished run's is its summary's.
    #[prop(optional, into)]
    probe: MaybeProp<ProbeProgress>,
    /// Steering changes: the Changes list, and markers on the connections chart (see
    /// `components::steer`).
    #[prop(optional)]
    steering: Option<Signal<Vec<engine::steer::SteerEvent>>>,
) -> impl IntoView {
    let totals = Signal::derive(move || tiles.get().totals);
    let has_failures = Signal::derive(move || {
        series.with(|s| !s.failed_rate.is_empty() || !s.drop_rate.is_empty())
    });
    let finished = summary.is_some();
    let stored_probe = summary.as_ref().and_then(|s| s.probe.clone());
    let whole_probe = stored_probe.is_some();
    let probe = Signal::derive(move || stored_probe.clone().or_else(|| probe.get()));
    let (evidence, identities) = summary
        .map(|s| {
            let ids = s.identities();
            (s.evidence, ids)
        })
        .unwrap_or_default();
    view! {
        <Tiles data=tiles/>
        {after_tiles}
        <ProbePanel probe/>
        <DiagnosisPanel diagnosis live/>
        <TargetSaidPanel totals series evidence/>
        <Show when=move || !agents.read().is_empty()>
            <section class="run-detail__section">
                <h2>"Agents"</h2>
                <AgentTable agents lost=lost_agents.clone()/>
            </section>
        </Show>
        {before_charts}
        {steering.map(|events| view! { <crate::components::steer::SteerTimeline events/> })}
        <section class="run-detail__charts">
            <Chart title="Open connections vs target" id="connections" spec=Signal::derive(move || {
                let mut spec = charts::with_found(charts::connections(&series.read(), diagnosis.read().as_ref()), &series.read(), probe.read().as_ref(), UNIT_CONNECTIONS);
                if let Some(events) = steering {
                    spec.marks = charts::steering_marks(&events.read());
                }
                spec
            })/>
            <Chart title="Connects per second (failures stacked by class)" id="connect-rate" spec=Signal::derive(move || charts::with_found(charts::connect_rate(&series.read(), diagnosis.read().as_ref()), &series.read(), probe.read().as_ref(), UNIT_CONNECTS_PER_SECOND))/>
            <Chart title="Latency percentiles per second" id="latency" spec=Signal::derive(move || charts::latency(&series.read()))/>
            <Chart title="Messages per second" id="messages" spec=Signal::derive(move || charts::messages(&series.read()))/>
            <Show when=move || has_failures.get()>
                <Chart title="Failures per second by class (drops dashed)" id="failures" spec=Signal::derive(move || charts::failures(&series.read()).unwrap_or_default())/>
            </Show>
        </section>
        {(!histograms.is_empty()).then(|| view! {
            <section class="run-detail__section run-detail__histograms">
                <h2>"Latency distributions (whole run)"</h2>
                <div class="run-detail__hist-grid">
                    {histograms.into_iter().map(|h| {
                        let spec = charts::histogram(&h);
                        let title = histogram_title(&h.metric);
                        view! { <Chart title id="histogram" spec=Signal::derive(move || spec.clone())/> }
                    }).collect_view()}
                </div>
            </section>
        }.into_any())}
        {view! { <section class="run-detail__section">
            <h2>"Failures and session ends"</h2>
            <FailureTable totals/>
            {move || {
                let n = totals.read().gave_up;
                (n > 0).then(|| view! {
                    <p class="gave-up" data-gave-up=n.to_string()>
                        <strong>{format!("{} connections gave up. ", crate::fmt::count(n))}</strong>
                        "Their reconnect policy ran out of attempts in a row (the plan's "
                        <code>"reconnect.max_attempts"</code>
                        "), so they stopped trying before the run ended: from then on the open count stays below the target and the charts go quiet. Real clients keep retrying while their user waits: set "
                        <code>"max_attempts"</code>" to "<code>"\"unlimited\""</code>" (the New-run form's reconnect does)."
                    </p>
                })
            }}
        </section> }.into_any()}
        {identities.into_iter().map(|(dim, ids)| view! {
            <section class="run-detail__section">
                <h2>{format!("Handshakes per {}", engine::diagnose::per_words(&dim))}</h2>
                <IdentityTable dim ids/>
            </section>
        }).collect_view()}
        <section class="run-detail__section">
            <h2>{if finished { "Latency (whole run)" } else { "Latency (last second)" }}{whole_probe.then_some(view! { <span class="muted">" · all experiments"</span> })}</h2>
            <LatencyTable latency/>
        </section>
        {view! { <Show when=move || !thresholds.read().is_empty()>
            <section class="run-detail__section">
                <h2>"Thresholds"{live.then_some(view! { <span class="muted">" (live: counters so far, latency of the last second)"</span> })}</h2>
                <table class="thresholds"><tbody>
                    {move || thresholds.get().into_iter().map(|th| view! {
                        <tr data-passed=th.passed.to_string()>
                            <td>{if th.passed { "✓ passed" } else { "✗ failed" }}</td>
                            <td class="mono">{format!("{} {}", th.metric, th.expression)}</td>
                            <td class="num">{th.actual_text()}</td>
                        </tr>
                    }).collect_view()}
                </tbody></table>
            </section>
        </Show> }.into_any()}
        <section class="run-detail__section">
            <h2>"Plan"<span class="muted">" (secrets redacted)"</span></h2>
            <pre class="plan">{plan_json}</pre>
        </section>
        {env.map(|e| view! { <Environment env=e.env created=e.created started=e.started finished=e.finished/> }.into_any())}
    }
    // Type-erased: the page's and the report's view types stay within the compiler's
    // query depth.
    .into_any()
}
