//! `/plans`: saved plans (run, edit, duplicate, delete, export/import TOML).
//! `/plans/new` and `/plans/{id}`: the plan as a commented TOML file in an editor, its
//! runs and its baseline. Every button is an `ActionForm` (works before hydration).
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::api::{
    get_plan, list_plans, ApiError, DeletePlan, DuplicatePlan, PlanDetail, RunPlan, SavePlan,
};
use crate::components::{LoadError, StatusBadge, TextArea};
use crate::fmt;

#[component]
pub fn PlansPage() -> impl IntoView {
    let plans = Resource::new(|| (), |_| list_plans());
    let run = ServerAction::<RunPlan>::new();
    view! {
        <div class="plans">
            <div class="runs__head">
                <h1>"Plans"</h1>
                <a class="button" href="/plans/new">"New plan"</a>
            </div>
            <p class="muted">"Saved plans are what you run again and again: edit one, run it, compare the run with the plan's baseline. Export a plan as a commented TOML file to keep it in git; paste one into New plan (or POST it to /api/plans) to import it."</p>
            <Suspense fallback=|| view! { <p>"Loading plans…"</p> }>
                {move || Suspend::new(async move {
                    match plans.await {
                        Err(e) => view! { <LoadError error=e/> }.into_any(),
                        Ok(list) if list.is_empty() => view! {
                            <p class="runs__empty">"No saved plans yet. "<a href="/plans/new">"Write one"</a>", or open a run and press “Save as plan”."</p>
                        }.into_any(),
                        Ok(list) => view! {
                            <table class="runs__table">
                                <thead><tr>
                                    <th>"Plan"</th><th>"Target"</th><th class="num">"Runs"</th><th>"Last run"</th><th>"Edited"</th><th></th>
                                </tr></thead>
                                <tbody>
                                    {list.into_iter().map(|p| {
                                        let pid = p.id.clone();
                                        let plan_href = format!("/plans/{}", p.id);
                                        let runs_href = format!("/runs?plan={}", p.id);
                                        view! {
                                        <tr data-plan-id=p.id>
                                            <td><a href=plan_href>{p.name.clone()}</a>
                                                {p.baseline_run_id.is_some().then(|| view! { <span class="tag tag--baseline">"baseline set"</span> })}
                                            </td>
                                            <td class="mono">{p.target.clone()}</td>
                                            <td class="num"><a href=runs_href>{p.runs}</a></td>
                                            <td>{p.last_status.map(|s| view! { <StatusBadge status=s/> })}
                                                {p.last_run_at_ms.map(|t| format!(" {}", fmt::timestamp(t)))}</td>
                                            <td>{fmt::timestamp(p.updated_at_ms)}</td>
                                            <td>
                                                <ActionForm action=run attr:class="run-actions__form">
                                                    <input type="hidden" name="id" value=pid/>
                                                    <button type="submit" class="button button--quiet">"Run"</button>
                                                </ActionForm>
                                            </td>
                                        </tr>
                                    }}).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                    }
                })}
            </Suspense>
            {move || run.value().get().and_then(|r| r.err()).map(|e| view! { <p class="error">{e.to_string()}</p> })}
        </div>
    }
}

#[component]
pub fn NewPlanPage() -> impl IntoView {
    view! {
        <h1>"New plan"</h1>
        <p class="muted">"Write or paste a plan file (TOML or JSON). Secrets: prefer { env = \"NAME\" }; typed-in values are stored on this server and never shown again."</p>
        <PlanEditor id=String::new() text=engine::plan::TEMPLATE.to_string() on_saved=None/>
    }
}

/// The TOML editor with Save; errors name the field (or the line of a syntax error).
#[component]
fn PlanEditor(id: String, text: String, on_saved: Option<Callback<()>>) -> impl IntoView {
    let save = ServerAction::<SavePlan>::new();
    Effect::new(move |_| {
        if let (Some(Ok(_)), Some(cb)) = (save.value().get(), on_saved) {
            cb.run(());
        }
    });
    let errors = move || match save.value().get() {
        Some(Err(ApiError::Validation(errs))) => errs
            .into_iter()
            // "text" is the editor itself: its errors already say where (line, column).
            .map(|e| match e.field.as_str() {
                "text" => e.message,
                field => format!("{field}: {}", e.message),
            })
            .collect(),
        Some(Err(e)) => vec![e.to_string()],
        _ => Vec::new(),
    };
    let area = NodeRef::<leptos::html::Textarea>::new();
    // "Load a plan file": reads a local .toml/.json into the editor (then Save).
    let on_file = move |ev: leptos::ev::Event| {
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast;
            let file = ev
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
                .and_then(|input| input.files())
                .and_then(|files| files.get(0));
            if let Some(file) = file {
                leptos::task::spawn_local(async move {
                    if let Ok(v) = wasm_bindgen_futures::JsFuture::from(file.text()).await {
                        if let (Some(text), Some(el)) = (v.as_string(), area.get_untracked()) {
                            el.set_value(&text);
                        }
                    }
                });
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (ev, area);
    };
    view! {
        <ActionForm action=save attr:class="plan-editor">
            <input type="hidden" name="id" value=id/>
            <label class="plan-editor__file">"Load a plan file (.toml or .json): "
                <input type="file" accept=".toml,.json,application/toml,application/json" on:change=on_file data-action="load-file"/>
            </label>
            <TextArea field_ref=area name="text" class="plan-json__text plan-editor__text" rows=26 no_spellcheck=true text=text/>
            <button type="submit" class="button" data-action="save-plan">"Save plan"</button>
            <ul class="plan-editor__errors">
                {move || errors().into_iter().map(|e| view! { <li class="error field__error">{e}</li> }).collect_view()}
            </ul>
        </ActionForm>
    }
}

#[component]
pub fn PlanPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let plan = Resource::new(id, get_plan);
    view! {
        <Transition fallback=|| view! { <p>"Loading plan…"</p> }>
            {move || Suspend::new(async move {
                match plan.await {
                    Ok(p) => view! { <PlanView plan=p on_saved=Callback::new(move |_| plan.refetch())/> }.into_any(),
                    Err(e) => view! { <h1>"Plan"</h1><LoadError error=e/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn PlanView(plan: PlanDetail, on_saved: Callback<()>) -> impl IntoView {
    let run = ServerAction::<RunPlan>::new();
    let dup = ServerAction::<DuplicatePlan>::new();
    let del = ServerAction::<DeletePlan>::new();
    let id = StoredValue::new(plan.id.clone());
    let hidden = move || view! { <input type="hidden" name="id" value=id.get_value()/> };
    let error = move || {
        crate::components::first_error([
            run.value().get().and_then(|r| r.err()),
            dup.value().get().and_then(|r| r.err()),
            del.value().get().and_then(|r| r.err()),
        ])
    };
    let baseline = plan.baseline_run_id.clone();
    let n_runs = plan.runs.len();
    // The newest finished run that is not the baseline, against the baseline.
    let compare_href = baseline.as_ref().and_then(|b| {
        plan.runs
            .iter()
            .find(|r| r.id != *b && !r.status.is_live())
            .map(|r| format!("/compare?runs={b},{}", r.id))
    });
    view! {
        <div class="plan-detail" data-plan-id=plan.id>
            <div class="run-detail__head">
                <h1>{plan.name.clone()}</h1>
            </div>
            <p class="run-detail__meta">
                <span class="mono">{plan.plan.target.clone()}</span>
                {format!(" · peak {} connections over {} · edited {}", plan.plan.peak_connections(), engine::plan::Dur(plan.plan.duration()), fmt::timestamp(plan.updated_at_ms))}
            </p>
            <div class="run-actions">
                <ActionForm action=run attr:class="run-actions__form">
                    {hidden()}
                    <button type="submit" class="button" data-action="run-plan">"Run this plan"</button>
                </ActionForm>
                <ActionForm action=dup attr:class="run-actions__form">
                    {hidden()}
                    <button type="submit" class="button button--quiet" data-action="duplicate">"Duplicate"</button>
                </ActionForm>
                <a class="button button--quiet" href=format!("/api/plans/{}/plan.toml", plan.id) download="" rel="external">"Export TOML"</a>
                <details class="run-actions__more run-actions__danger">
                    <summary>"Delete…"</summary>
                    <p>{format!("This deletes the saved plan. Its {n_runs} runs stay in the runs list.")}</p>
                    <ActionForm action=del attr:class="run-actions__form">
                        {hidden()}
                        <button type="submit" class="button button--danger" data-action="delete-plan">"Delete this plan"</button>
                    </ActionForm>
                </details>
                {move || error().map(|m| view! { <p class="error">{m}</p> })}
            </div>
            <h2>"Plan file"</h2>
            <PlanEditor id=plan.id.clone() text=plan.toml.clone() on_saved=Some(on_saved)/>
            <h2>"Runs of this plan"</h2>
            {compare_href.map(|h| view! { <p><a href=h>"Compare the latest run with the baseline"</a></p> })}
            {if plan.runs.is_empty() {
                view! { <p class="muted">"Not run yet."</p> }.into_any()
            } else {
                view! {
                    <table class="runs__table">
                        <thead><tr><th>"Run"</th><th>"Status"</th><th>"Started"</th><th class="num">"Peak open"</th><th class="num">"Failed"</th><th></th></tr></thead>
                        <tbody>
                            {plan.runs.into_iter().map(|r| {
                                let is_base = baseline.as_deref() == Some(r.id.as_str());
                                view! {
                                    <tr data-run-id=r.id>
                                        <td><a href=format!("/runs/{}", r.id)>{r.name}</a></td>
                                        <td><StatusBadge status=r.status/></td>
                                        <td>{fmt::timestamp(r.created_at_ms)}</td>
                                        <td class="num">{r.peak_open.map(|n| fmt::count(n as u64)).unwrap_or_default()}</td>
                                        <td class="num">{r.failed.map(|n| fmt::count(n as u64)).unwrap_or_default()}</td>
                                        <td>{is_base.then(|| view! { <span class="tag tag--baseline">"baseline"</span> })}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </div>
    }
}
