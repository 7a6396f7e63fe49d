//! What a user can do with a run (not shown on share links): run again (asking for
//! the typed-in secrets the run did not keep), edit and run again (the New-run page
//! prefilled), save as plan / baseline, share, tags and note, delete (behind a
//! confirmation). Each is an
//! `ActionForm`, so it also works as a plain POST before hydration. Plus the baseline
//! panel and the environment section of the run page.
use leptos::prelude::*;

use crate::api::{
    BaselineView, DeleteRun, Rerun, RunDetail, RunEnv, SaveRunAsPlan, SetBaseline, UpdateRunMeta,
};
use crate::components::compare::{ChangeSummary, MetricTable};
use crate::components::{ShareBox, TextArea};
use crate::fmt;

/// `on_change` runs after an action that stays on this page (baseline, tags and note)
/// so the page refetches the run.
#[component]
pub fn RunActions(detail: RunDetail, on_change: Callback<()>) -> impl IntoView {
    let rerun = ServerAction::<Rerun>::new();
    let save_plan = ServerAction::<SaveRunAsPlan>::new();
    let baseline = ServerAction::<SetBaseline>::new();
    let meta = ServerAction::<UpdateRunMeta>::new();
    let delete = ServerAction::<DeleteRun>::new();
    Effect::new(move |_| {
        let done = matches!(baseline.value().get(), Some(Ok(_)))
            || matches!(meta.value().get(), Some(Ok(_)));
        if done {
            on_change.run(());
        }
    });
    let id = StoredValue::new(detail.id.clone());
    let finished = !detail.status.is_live();
    let has_summary = detail.summary.is_some();
    let error = move || {
        super::first_error([
            rerun.value().get().and_then(|r| r.err()),
            save_plan.value().get().and_then(|r| r.err()),
            baseline.value().get().and_then(|r| r.err()),
            meta.value().get().and_then(|r| r.err()),
            delete.value().get().and_then(|r| r.err()),
        ])
    };
    let ticks = detail.series.t.len();
    let tags = detail.tags.join(", ");
    let note = detail.note.clone();
    let hidden = move || view! { <input type="hidden" name="id" value=id.get_value()/> };
    let missing = detail.missing_secrets.clone();
    let edit_href = format!("/runs/new?from={}", detail.id);
    view! {
        <div class="run-actions">
            {finished.then(|| if missing.is_empty() {
                view! {
                    <ActionForm action=rerun attr:class="run-actions__form">
                        {hidden()}
                        <button type="submit" class="button" data-action="rerun">"Run again"</button>
                    </ActionForm>
                }.into_any()
            } else {
                // The plan held hidden values, which runs never keep: ask for them
                // here (used for the new run only; the API takes the same `secrets`).
                let (note, button) = if missing.len() == 1 {
                    ("This run's plan had a secret typed in, and runs never keep one. Type it again to run it; it is used for the new run only and not stored.", "Run again with this secret")
                } else {
                    ("This run's plan held values kept secret (typed-in secrets, and values that look like keys), and runs never keep them. Type them again to run it; they are used for the new run only and not stored.", "Run again with these secrets")
                };
                view! {
                    <details class="run-actions__more run-actions__rerun">
                        <summary data-action="rerun-open">"Run again…"</summary>
                        <ActionForm action=rerun attr:class="run-actions__secrets">
                            {hidden()}
                            <p class="muted">{note}</p>
                            {missing.iter().map(|m| view! {
                                <label class="field">
                                    <span class="field__label">{m.label.clone()}</span>
                                    <input class="field__input" type="password" autocomplete="off" required
                                        name=format!("secrets[{}]", m.key) data-secret=m.key.clone()/>
                                </label>
                            }).collect_view()}
                            <button type="submit" class="button" data-action="rerun">{button}</button>
                        </ActionForm>
                    </details>
                }.into_any()
            })}
            {finished.then(|| view! {
                <a class="button button--quiet" href=edit_href data-action="edit-rerun">"Edit and run again"</a>
            })}
            {match (&detail.plan_id, detail.is_baseline) {
                (None, _) => view! {
                    <ActionForm action=save_plan attr:class="run-actions__form">
                        {hidden()}
                        <button type="submit" class="button button--quiet" data-action="save-plan">"Save as plan"</button>
                    </ActionForm>
                }.into_any(),
                (Some(_), is_baseline) => has_summary.then(|| view! {
                    <ActionForm action=baseline attr:class="run-actions__form">
                        {hidden()}
                        <input type="hidden" name="on" value=if is_baseline { "false" } else { "true" }/>
                        <button type="submit" class="button button--quiet" data-action="baseline">
                            {if is_baseline { "Clear baseline" } else { "Set as plan baseline" }}
                        </button>
                    </ActionForm>
                }).into_any(),
            }}
            <ShareBox kind="run" ids=detail.id/>
            <details class="run-actions__more">
                <summary>"Tags and note"</summary>
                <ActionForm action=meta attr:class="run-actions__meta">
                    {hidden()}
                    <label class="field"><span class="field__label">"Tags"</span>
                        <input class="field__input" name="tags" value=tags placeholder="baseline, after-fix, v2.3"/>
                    </label>
                    <label class="field"><span class="field__label">"Note"</span>
                        <TextArea class="field__input" name="note" rows=3 text=note/>
                    </label>
                    <button type="submit" class="button button--quiet" data-action="save-meta">"Save"</button>
                </ActionForm>
            </details>
            {finished.then(|| view! {
                <details class="run-actions__more run-actions__danger">
                    <summary>"Delete…"</summary>
                    <p>{format!("This deletes the run, its {ticks} stored seconds, its tags and its share links. It cannot be undone.")}</p>
                    <ActionForm action=delete attr:class="run-actions__form">
                        {hidden()}
                        <button type="submit" class="button button--danger" data-action="delete">"Delete this run permanently"</button>
                    </ActionForm>
                </details>
            })}
            {move || error().map(|m| view! { <p class="error">{m}</p> })}
        </div>
    }
}

/// This run against its plan's baseline.
#[component]
pub fn BaselinePanel(baseline: BaselineView, run_name: String, run_id: String) -> impl IntoView {
    const KEYS: &[&str] = &[
        "peak_open",
        "opened",
        "failure_rate",
        "drops",
        "ws_connecting.p95",
        "ws_rtt.p95",
    ];
    let names = vec![format!("baseline: {}", baseline.name), run_name];
    let compare_href = format!(
        "/compare?runs={}",
        [baseline.run_id.clone(), run_id].join(",")
    );
    view! {
        <section class="run-detail__section baseline">
            <h2>"Against the plan's baseline"</h2>
            <p class="muted">
                "Baseline: "<a href=format!("/runs/{}", baseline.run_id)>{baseline.name.clone()}</a>
                {format!(" of {} · ", fmt::timestamp(baseline.created_at_ms))}
                <a href=compare_href>"full comparison"</a>
            </p>
            <ChangeSummary comparison=baseline.comparison.clone()/>
            <MetricTable comparison=baseline.comparison names keys=KEYS/>
        </section>
    }
}

/// Where and when the run ran.
#[component]
pub fn Environment(
    env: RunEnv,
    created: i64,
    started: Option<i64>,
    finished: Option<i64>,
) -> impl IntoView {
    view! {
        <section class="run-detail__section">
            <h2>"Environment"</h2>
            <table class="kv"><tbody>
                <tr><th>"socketswarm"</th><td>{env.version}</td></tr>
                <tr><th>"Host"</th><td>{format!("{} ({}, {} CPUs)", env.host, env.os, env.cpus)}</td></tr>
                <tr><th>"Open-file limit"</th><td>{fmt::count(env.nofile)}" (sockets one process can hold)"</td></tr>
                <tr><th>"Created"</th><td>{fmt::timestamp(created)}</td></tr>
                <tr><th>"Started"</th><td>{started.map(fmt::timestamp).unwrap_or_else(|| "—".into())}</td></tr>
                <tr><th>"Ended"</th><td>{finished.map(fmt::timestamp).unwrap_or_else(|| "—".into())}</td></tr>
            </tbody></table>
        </section>
    }
}
