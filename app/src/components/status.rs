//! The run status badge.
use leptos::prelude::*;

use crate::api::RunStatus;

#[component]
pub fn StatusBadge(#[prop(into)] status: Signal<RunStatus>) -> impl IntoView {
    view! {
        <span class=move || format!("badge badge--{}", status.get().as_str()) data-status=move || status.get().as_str()>
            {move || status.get().as_str()}
        </span>
    }
}
