//! `/runs`: every run with its verdict, filtered (plan, target, status, verdict, tag, name,
//! dates), sorted and paged by the query string, so every view of the list is a link. Tick runs and
//! "Compare selected" opens `/compare?runs=...`. Plain GET forms: works without JS.
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::{search_runs, RunPage, RunQuery, RunStatus};
use crate::components::{LoadError, StatusBadge};
use crate::fmt;
use engine::diagnose::LimitKind;

fn query_from(map: &leptos_router::params::ParamsMap) -> RunQuery {
    let s = |k: &str| map.get(k).filter(|v| !v.is_empty());
    RunQuery {
        plan: s("plan"),
        target: s("target"),
        status: s("status"),
        tag: s("tag"),
        verdict: s("verdict"),
        q: s("q"),
        from: s("from"),
        to: s("to"),
        sort: s("sort"),
        dir: s("dir"),
        // Unparseable numbers fall back to the defaults here; the API names them.
        page: s("page").and_then(|v| v.parse().ok()),
        per_page: s("per_page").and_then(|v| v.parse().ok()),
    }
}

#[component]
pub fn RunsPage() -> impl IntoView {
    let query = use_query_map();
    let runs = Resource::new(move || query_from(&query.read()), search_runs);
    view! {
        <div class="runs">
            <div class="runs__head">
                <h1>"Runs"</h1>
                <a class="button" href="/runs/new">"New run"</a>
            </div>
            <Suspense fallback=|| view! { <p>"Loading runs…"</p> }>
                {move || Suspend::new(async move {
                    match runs.await {
                        Err(e) => view! {
                            <LoadError error=e/>
                            <p><a href="/runs" class="runs__clear">"Clear the filters"</a></p>
                        }.into_any(),
                        Ok(page) => view! { <RunsList page/> }.into_any(),
                    }
                })}
            </Suspense>
        </div>
    }
}

/// A header that sorts by `key` (toggling direction when already sorted by it).
fn sort_link(q: &RunQuery, key: &str, label: &'static str) -> impl IntoView {
    let current = q.sort.as_deref().unwrap_or("created") == key;
    let desc = q.dir.as_deref() != Some("asc");
    let mut next = q.clone();
    next.sort = Some(key.to_string());
    next.dir = Some(if current && desc { "asc" } else { "desc" }.to_string());
    let arrow = if current {
        if desc {
            " ▾"
        } else {
            " ▴"
        }
    } else {
        ""
    };
    view! { <a class="runs__sort" href=format!("/runs?{}", next.to_query_string(1))>{label}{arrow}</a> }
}

#[component]
fn RunsList(page: RunPage) -> impl IntoView {
    let q = page.query.clone();
    let filtered = q.plan.is_some()
        || q.target.is_some()
        || q.status.is_some()
        || q.tag.is_some()
        || q.verdict.is_some()
        || q.q.is_some()
        || q.from.is_some()
        || q.to.is_some();
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let prev = (page.page > 1).then(|| format!("/runs?{}", q.to_query_string(page.page - 1)));
    let next =
        (page.page < page.pages).then(|| format!("/runs?{}", q.to_query_string(page.page + 1)));
    let empty = page.runs.is_empty();
    view! {
        <form class="runs__filters" method="get" action="/runs">
            <input name="q" placeholder="name contains" value=v(&q.q)/>
            <select name="plan">
                <option value="">"any plan"</option>
                {page.plans.iter().map(|p| view! {
                    <option value=p.id.clone() selected=q.plan.as_deref() == Some(p.id.as_str())>{p.name.clone()}</option>
                }).collect_view()}
            </select>
            <input name="target" placeholder="target contains" value=v(&q.target)/>
            <select name="status">
                <option value="">"any status"</option>
                {RunStatus::ALL.iter().map(|st| {
                    let s = st.as_str();
                    view! { <option value=s selected=q.status.as_deref() == Some(s)>{s}</option> }
                }).collect_view()}
            </select>
            <select name="verdict" aria-label="verdict">
                <option value="">"any verdict"</option>
                {LimitKind::ALL.iter().map(|k| {
                    let key = k.key();
                    view! { <option value=key selected=q.verdict.as_deref() == Some(key)>{k.words()}</option> }
                }).collect_view()}
            </select>
            <select name="tag">
                <option value="">"any tag"</option>
                {page.tags.iter().map(|t| view! {
                    <option value=t.clone() selected=q.tag.as_deref() == Some(t.as_str())>{t.clone()}</option>
                }).collect_view()}
            </select>
            <label class="runs__date">"from "<input type="date" name="from" value=v(&q.from)/></label>
            <label class="runs__date">"to "<input type="date" name="to" value=v(&q.to)/></label>
            {q.sort.clone().map(|s| view! { <input type="hidden" name="sort" value=s/> })}
            {q.dir.clone().map(|d| view! { <input type="hidden" name="dir" value=d/> })}
            <button type="submit" class="button button--quiet">"Filter"</button>
            {filtered.then(|| view! { <a href="/runs" class="runs__clear">"clear"</a> })}
        </form>
        {if empty {
            view! {
                <p class="runs__empty">
                    {if filtered { "No runs match these filters. " } else { "No runs yet. " }}
                    <a href="/runs/new">"Start one"</a>"."
                </p>
            }.into_any()
        } else {
            view! {
                <form id="compare-form" method="get" action="/compare" class="runs__compare">
                    <button type="submit" class="button button--quiet">"Compare selected"</button>
                    <span class="muted">" tick 2 to 4 finished runs; the oldest is the reference"</span>
                </form>
                <table class="runs__table">
                    <thead><tr>
                        <th></th>
                        <th>{sort_link(&q, "name", "Run")}</th><th>"Status"</th><th>"Verdict"</th><th>"Plan"</th><th>"Target"</th>
                        <th>{sort_link(&q, "created", "Started")}</th>
                        <th class="num">{sort_link(&q, "peak", "Peak open")}</th>
                        <th class="num">{sort_link(&q, "opened", "Opened")}</th>
                        <th class="num">{sort_link(&q, "failed", "Failed")}</th>
                        <th class="num">{sort_link(&q, "duration", "Duration")}</th>
                    </tr></thead>
                    <tbody>
                        {page.runs.into_iter().map(|r| view! {
                            <tr data-run-id=r.id.clone() data-status=r.status.as_str()>
                                <td><input type="checkbox" name="runs" value=r.id.clone() form="compare-form" aria-label="select for comparison"/></td>
                                <td>
                                    <a href=format!("/runs/{}", r.id)>{r.name.clone()}</a>
                                    {r.tags.iter().map(|t| view! {
                                        <a class="tag" href=format!("/runs?tag={}", crate::api::encode(t))>{t.clone()}</a>
                                    }).collect_view()}
                                    {(!r.note.is_empty()).then(|| view! { <span class="runs__note muted" title=r.note.clone()>" ✎"</span> })}
                                </td>
                                <td><StatusBadge status=r.status/></td>
                                <td class="runs__verdict" data-verdict=r.verdict.clone()>{r.verdict_text.clone()}</td>
                                <td>{r.plan_id.clone().map(|p| view! {
                                    <a href=format!("/plans/{p}")>{r.plan_name.clone().unwrap_or_else(|| "plan".into())}</a>
                                })}</td>
                                <td class="mono">{r.target.clone()}</td>
                                <td>{fmt::timestamp(r.created_at_ms)}</td>
                                <td class="num">{r.peak_open.map(|n| fmt::count(n as u64)).unwrap_or_default()}</td>
                                <td class="num">{r.opened.map(|n| fmt::count(n as u64)).unwrap_or_default()}</td>
                                <td class="num">{r.failed.map(|n| fmt::count(n as u64)).unwrap_or_default()}</td>
                                <td class="num">{r.duration_ms.map(|d| fmt::ms(d as u64)).unwrap_or_default()}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            }.into_any()
        }}
        <nav class="runs__pages">
            {prev.map(|h| view! { <a href=h rel="prev">"← previous"</a> })}
            <span class="muted">{format!(" page {} of {} · {} run{} ", page.page, page.pages, page.total, if page.total == 1 { "" } else { "s" })}</span>
            {next.map(|h| view! { <a href=h rel="next">"next →"</a> })}
        </nav>
    }
}
