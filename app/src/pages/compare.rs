//! `/compare?runs=a,b,...` (2 to 4 finished runs; the oldest is the reference): what
//! changed in words, the metric table with changes and significance, distribution
//! shifts, and charts overlaid on elapsed time. Also rendered by comparison share links.
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::{compare_runs, CompareView};
use crate::charts::{self, RUN_COLORS};
use crate::components::compare::{ChangeSummary, MetricTable, ShiftTable};
use crate::components::{Chart, LoadError, ShareBox, StatusBadge};
use crate::fmt;

#[component]
pub fn ComparePage() -> impl IntoView {
    let query = use_query_map();
    // `?runs=a,b` or `?runs=a&runs=b` (the runs list's checkboxes).
    let ids = move || query.read().get_all("runs").unwrap_or_default().join(",");
    let view_res = Resource::new(ids, compare_runs);
    view! {
        <h1>"Compare runs"</h1>
        <Suspense fallback=|| view! { <p>"Loading runs…"</p> }>
            {move || Suspend::new(async move {
                match view_res.await {
                    Ok(v) => view! { <CompareBody view=v shared=false/> }.into_any(),
                    Err(e) => view! {
                        <LoadError error=e/>
                        <p><a href="/runs">"Pick 2 to 4 runs in the runs list"</a>" and press “Compare selected”."</p>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
pub fn CompareBody(view: CompareView, shared: bool) -> impl IntoView {
    let names: Vec<String> = view.runs.iter().map(|r| r.name.clone()).collect();
    // Same names (the usual case: one plan run twice) get their start time added.
    let labels: Vec<String> = view
        .runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if names.iter().filter(|n| **n == r.name).count() > 1 {
                format!("#{} {}", i + 1, r.name)
            } else {
                r.name.clone()
            }
        })
        .collect();
    let refs: Vec<(String, &engine::Series)> = labels
        .iter()
        .cloned()
        .zip(view.runs.iter().map(|r| &r.series))
        .collect();
    let open = charts::overlay(&refs, "open connections", &|s| {
        s.open.iter().map(|v| Some(*v)).collect()
    });
    let rate = charts::overlay(&refs, "opened / s", &|s| {
        s.opened_rate.iter().map(|v| Some(*v)).collect()
    });
    let failed = charts::overlay(&refs, "failed / s", &charts::failed_total);
    let p95 = charts::overlay(&refs, "ms", &|s| {
        charts::latency_col(s, "ws_connecting", "p95")
    });
    let ids = view
        .runs
        .iter()
        .map(|r| r.id.clone())
        .collect::<Vec<_>>()
        .join(",");
    let ids_for_share = ids.clone();
    view! {
        <div class="compare" data-runs=ids>
            <div class="cmp__runs">
                {view.runs.iter().enumerate().map(|(i, r)| {
                    let label = labels[i].clone();
                    view! {
                        <div class=format!("cmp__run cmp__run--{}", i % RUN_COLORS.len())>
                            <div class="cmp__run-name">
                                {if shared {
                                    view! { <strong>{label}</strong> }.into_any()
                                } else {
                                    view! { <a href=format!("/runs/{}", r.id)>{label}</a> }.into_any()
                                }}
                                {(i == 0).then(|| view! { <span class="muted">" reference"</span> })}
                            </div>
                            <div><StatusBadge status=r.status/>{format!(" {}", fmt::timestamp(r.created_at_ms))}</div>
                            <div class="mono muted">{r.target.clone()}</div>
                            <div class="cmp__verdict">{r.verdict.clone()}</div>
                            {r.also.iter().map(|a| view! { <div class="cmp__verdict cmp__also">"Also: " {a.clone()}</div> }).collect_view()}
                        </div>
                    }
                }).collect_view()}
            </div>
            {(!shared).then(|| view! {
                <div class="run-actions">
                    <ShareBox kind="compare" ids=ids_for_share.clone()/>
                </div>
            })}
            <section class="run-detail__section">
                <h2>"What changed"</h2>
                <ChangeSummary comparison=view.comparison.clone()/>
            </section>
            <section class="run-detail__section">
                <h2>"Metrics"</h2>
                <p class="muted">"Change against the reference. Latency percentiles show their 95 % confidence interval [low–high] from the stored histograms; a change is significant when the intervals do not overlap and it is at least 5 %."</p>
                <MetricTable comparison=view.comparison.clone() names=labels.clone()/>
            </section>
            <section class="run-detail__section">
                <h2>"Latency distributions"</h2>
                <ShiftTable comparison=view.comparison names=labels.clone()/>
            </section>
            <section class="run-detail__charts">
                <Chart title="Open connections" id="cmp-open" spec=Signal::derive(move || open.clone())/>
                <Chart title="Connections opened per second" id="cmp-rate" spec=Signal::derive(move || rate.clone())/>
                <Chart title="Failed handshakes per second" id="cmp-failed" spec=Signal::derive(move || failed.clone())/>
                <Chart title="Connect latency p95 per second" id="cmp-p95" spec=Signal::derive(move || p95.clone())/>
            </section>
        </div>
    }
}
