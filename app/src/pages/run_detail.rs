//! `/runs/{id}`: one run. Server-rendered from the store (works without JavaScript, so
//! share links read anywhere); after hydration a live run follows its SSE stream.
//! `RunView` also renders share links (`shared` = the share id): read-only, downloads
//! through `/share/{id}/...`, no actions and no links into the rest of the instance.
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::api::{get_run, CancelRun, RunDetail, RunStatus};
use crate::components::run_actions::{BaselinePanel, RunActions};
use crate::components::run_sections::{EnvSection, RunSections};
use crate::components::steer::SteerPanel;
use crate::components::tiles::TileData;
use crate::components::{LoadError, StatusBadge};
use crate::fmt;

#[component]
pub fn RunDetailPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let run = Resource::new(id, get_run);
    view! {
        <Transition fallback=|| view! { <p>"Loading run…"</p> }>
            {move || Suspend::new(async move {
                match run.await {
                    Ok(d) => view! { <RunView detail=d on_done=Callback::new(move |_| run.refetch()) shared=None/> }.into_any(),
                    Err(e) => view! { <h1>"Run"</h1><LoadError error=e/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
pub fn RunView(detail: RunDetail, on_done: Callback<()>, shared: Option<String>) -> impl IntoView {
    let is_shared = shared.is_some();
    let status = detail.status;
    let live = RwSignal::new(detail.last.clone());
    let summary = detail.summary.clone();
    let is_live = status.is_live();
    let summary_for_tiles = summary.clone();
    let planned_peak = detail.plan.peak_connections();
    // Progress against the plan's length (a probe's length depends on what it finds).
    let planned_ms = if detail.plan.probe.is_some() {
        0
    } else {
        detail.plan.duration().as_millis() as u64
    };
    let data = Signal::derive(move || match (&summary_for_tiles, live.get()) {
        (Some(s), _) => TileData::finished(s, planned_peak),
        (None, Some(snap)) => TileData {
            elapsed_ms: snap.elapsed_ms,
            target: Some(snap.target),
            open: snap.open,
            peak_open: snap.peak_open,
            experiment: snap
                .probe
                .as_ref()
                .and_then(|p| p.current.as_ref())
                .map(|c| c.index),
            totals: snap.totals,
            finished: false,
        },
        (None, None) => TileData::default(),
    });
    // A queued run starts while its page is open: its first tick says it is running.
    let shown_status = Signal::derive(move || match status {
        RunStatus::Queued if live.read().is_some() => RunStatus::Running,
        s => s,
    });
    // Chart columns: the stored ticks, extended by live ones.
    let series = RwSignal::new(detail.series.clone());
    Effect::new(move |_| {
        if let Some(s) = live.get() {
            series.update(|se| se.push(&s));
        }
    });
    // The verdict, recomputed as ticks arrive (the same pure function the API uses).
    let summary_for_diag = summary.clone();
    let diagnosis = Memo::new(move |_| {
        let s = series.read();
        (!s.t.is_empty()).then(|| engine::diagnose::for_run(&s, summary_for_diag.as_ref()))
    });
    let summary_for_latency = summary.clone();
    let latency = Signal::derive(move || match &summary_for_latency {
        Some(s) => s.latency.clone(),
        None => live.get().map(|s| s.latency).unwrap_or_default(),
    });
    // Downloads and the live stream: under the share link on share pages.
    let downloads = match shared {
        Some(sid) => format!("/share/{sid}"),
        None => format!("/api/runs/{}", detail.id),
    };
    #[cfg(feature = "hydrate")]
    {
        if is_live {
            // Only the ticks after those this page was rendered with.
            let url = format!("{downloads}/events?after={}", detail.series.last_seq);
            Effect::new(move |prev: Option<()>| {
                if prev.is_none() {
                    crate::live::follow(&url, live, move || on_done.run(()));
                }
            });
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = on_done;
    let cancel = ServerAction::<CancelRun>::new();
    // Steering changes: the stored ones, and those made from this page since.
    let steering = RwSignal::new(detail.plan.steering.clone());
    let steerable = is_live
        && !is_shared
        && detail.plan.probe.is_none()
        && detail.plan.sessions.is_none()
        && detail.plan.agents.is_none();
    let plan_json = serde_json::to_string_pretty(&detail.plan).unwrap_or_default();
    // Pass/fail: on the summary once finished, on the newest tick while live.
    let plan_thresholds = detail.plan.thresholds.clone();
    let summary_for_thresholds = summary.clone();
    let thresholds = Signal::derive(move || {
        if plan_thresholds.is_empty() {
            return Vec::new();
        }
        match &summary_for_thresholds {
            Some(s) => engine::thresholds::evaluate(&plan_thresholds, s),
            None => live.with(|snap| {
                snap.as_ref()
                    .map(|snap| {
                        let so_far = engine::Summary {
                            totals: snap.totals.clone(),
                            latency: snap.latency.clone(),
                            ..Default::default()
                        };
                        engine::thresholds::evaluate(&plan_thresholds, &so_far)
                    })
                    .unwrap_or_default()
            }),
        }
    });
    let run_id = detail.id.clone();
    let histograms = detail.histograms.clone();
    let env = detail.env.clone();
    let baseline = detail.baseline.clone();
    // The agents of a run split over processes: live from the newest tick, or as they
    // ended.
    let final_agents = summary
        .as_ref()
        .map(|s| s.agents.clone())
        .unwrap_or_default();
    let lost_agents = summary
        .as_ref()
        .map(|s| s.lost_agents.clone())
        .unwrap_or_default();
    let last_agents = detail
        .last
        .as_ref()
        .map(|s| s.agents.clone())
        .unwrap_or_default();
    let agents = Signal::derive(move || {
        if !final_agents.is_empty() {
            return final_agents.clone();
        }
        live.with(|s| s.as_ref().map(|s| s.agents.clone()))
            .unwrap_or_else(|| last_agents.clone())
    });
    let actions = (!is_shared)
        .then(|| view! { <RunActions detail=detail.clone() on_change=on_done/> }.into_any());
    view! {
        <div class="run-detail" data-run-id=detail.id>
            <div class="run-detail__head">
                <h1>{detail.name.clone()}</h1>
                <StatusBadge status=shown_status/>
                {(is_live && !is_shared).then(move || view! {
                    <ActionForm action=cancel attr:class="run-detail__cancel">
                        <input type="hidden" name="id" value=run_id.clone()/>
                        <button type="submit" class="button button--danger">"Cancel"</button>
                    </ActionForm>
                })}
            </div>
            <p class="run-detail__meta">
                <span class="mono">{detail.plan.target.clone()}</span>
                " · created "{fmt::timestamp(detail.created_at_ms)}
                {detail.finished_at_ms.map(|f| format!(" · finished {}", fmt::timestamp(f)))}
                {summary.as_ref().and_then(|s| s.end_reason).map(|r| format!(" · ended: {r:?}").to_lowercase())}
                {detail.plan_id.clone().map(|p| view! {
                    " · plan "<a href=format!("/plans/{p}")>{detail.plan_name.clone().unwrap_or_else(|| "saved plan".into())}</a>
                })}
                {detail.is_baseline.then(|| view! { " · " <span class="tag tag--baseline">"baseline"</span> })}
            </p>
            {(!detail.tags.is_empty() || !detail.note.is_empty()).then(|| view! {
                <div class="run-detail__meta-user">
                    {detail.tags.iter().map(|t| {
                        let href = (!is_shared).then(|| format!("/runs?tag={}", crate::api::encode(t)));
                        view! { <a class="tag" href=href>{t.clone()}</a> }
                    }).collect_view()}
                    {(!detail.note.is_empty()).then(|| view! { <p class="run-detail__note">{detail.note.clone()}</p> })}
                </div>
            })}
            {detail.error.clone().map(|e| view! { <p class="error">{e}</p> })}
            {(is_live && planned_ms > 0).then(move || view! { <RunProgress elapsed=Signal::derive(move || data.read().elapsed_ms) planned_ms=crate::components::steer::planned_ms(planned_ms, steering)/> })}
            {is_live.then(|| view! {
                <p class="run-detail__downloads">
                    <a class="button button--quiet" href=format!("{downloads}/series.csv") download="" rel="external" data-download="live-csv">"CSV so far (per second)"</a>
                </p>
            })}
            {summary.is_some().then(|| view! {
                <p class="run-detail__downloads">
                    <a class="button button--quiet" href=format!("{downloads}/report.html") download="" rel="external">"Download HTML report"</a>
                    " "
                    <a class="button button--quiet" href=format!("{downloads}/export.json") rel="external">"JSON export"</a>
                    " "
                    <a class="button button--quiet" href=format!("{downloads}/series.csv") download="" rel="external">"CSV (per second)"</a>
                </p>
            })}
            {actions}
            <RunSections
                tiles=data
                diagnosis
                live=is_live
                agents
                lost_agents
                series
                histograms
                summary
                latency
                thresholds
                plan_json
                env=env.map(|env| EnvSection { env, created: detail.created_at_ms, started: detail.started_at_ms, finished: detail.finished_at_ms })
                probe=Signal::derive(move || live.read().as_ref().and_then(|s| s.probe.clone()))
                steering=Signal::from(steering)
                before_charts=steerable.then(|| view! { <SteerPanel run_id=detail.id.clone() events=steering/> }.into_any())
                after_tiles=baseline.map(|b| view! { <BaselinePanel baseline=b run_name=detail.name.clone() run_id=detail.id.clone()/> }.into_any())
            />
        </div>
    }
}

/// "0:12 of 0:40 planned · 30 %" with a bar, while a run is live.
#[component]
fn RunProgress(elapsed: Signal<u64>, planned_ms: Signal<u64>) -> impl IntoView {
    let pct = move || {
        let planned_ms = planned_ms.get();
        (elapsed.get().min(planned_ms) * 100 / planned_ms.max(1)) as u32
    };
    view! {
        <div class="run-progress" data-progress="">
            <progress max="100" value=pct aria-label="elapsed of the planned duration"></progress>
            <span class="run-progress__text">
                {move || format!("{} of {} planned · {} %", fmt::clock(elapsed.get()), fmt::clock(planned_ms.get()), pct())}
            </span>
        </div>
    }
}
