//! `/runs`: every run, newest first.
use leptos::prelude::*;

use crate::api::list_runs;
use crate::components::StatusBadge;
use crate::fmt;

#[component]
pub fn RunsPage() -> impl IntoView {
    let runs = Resource::new(|| (), |_| list_runs());
    view! {
        <div class="runs">
            <div class="runs__head">
                <h1>"Runs"</h1>
                <a class="button" href="/runs/new">"New run"</a>
            </div>
            <Suspense fallback=|| view! { <p>"Loading runs…"</p> }>
                {move || Suspend::new(async move {
                    match runs.await {
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                        Ok(list) if list.is_empty() => view! {
                            <p class="runs__empty">"No runs yet. "<a href="/runs/new">"Start the first one"</a>"."</p>
                        }.into_any(),
                        Ok(list) => view! {
                            <table class="runs__table">
                                <thead><tr>
                                    <th>"Run"</th><th>"Status"</th><th>"Target"</th><th>"Started"</th>
                                    <th class="num">"Peak open"</th><th class="num">"Opened"</th><th class="num">"Failed"</th><th class="num">"Duration"</th>
                                </tr></thead>
                                <tbody>
                                    {list.into_iter().map(|r| view! {
                                        <tr data-run-id=r.id.clone() data-status=r.status.as_str()>
                                            <td><a href=format!("/runs/{}", r.id)>{r.name.clone()}</a></td>
                                            <td><StatusBadge status=r.status/></td>
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
                        }.into_any(),
                    }
                })}
            </Suspense>
        </div>
    }
}
