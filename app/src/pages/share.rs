//! `/share/{id}`: what a share link shows: one run's report or one comparison,
//! read-only, with no way into the rest of the instance.
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::api::{get_shared, SharedView};
use crate::components::LoadError;
use crate::pages::compare::CompareBody;
use crate::pages::run_detail::RunView;

#[component]
pub fn SharePage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let shared = Resource::new(id, get_shared);
    view! {
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                let sid = id();
                match shared.await {
                    Ok(SharedView::Run(d)) => view! {
                        <p class="share__banner muted">"Shared, read-only report."</p>
                        <RunView detail=*d on_done=Callback::new(move |_| shared.refetch()) shared=Some(sid)/>
                    }.into_any(),
                    Ok(SharedView::Compare(v)) => view! {
                        <p class="share__banner muted">"Shared, read-only comparison."</p>
                        <h1>"Comparison"</h1>
                        <CompareBody view=v shared=true/>
                    }.into_any(),
                    Err(e) => view! { <h1>"Shared report"</h1><LoadError error=e/> }.into_any(),
                }
            })}
        </Transition>
    }
}
