//! "Share link": creates (or finds) the read-only link for a run or a comparison,
//! shows it, and can revoke it. Used by the run page and the compare page.
use leptos::prelude::*;

use crate::api::{CreateShare, RevokeShare};

/// `kind`: `run` or `compare`; `ids`: the run id(s), comma-separated.
#[component]
pub fn ShareBox(kind: &'static str, ids: String) -> impl IntoView {
    let share = ServerAction::<CreateShare>::new();
    let revoke = ServerAction::<RevokeShare>::new();
    let link = move || share.value().get().and_then(|r| r.ok());
    let revoked = move || {
        matches!(revoke.value().get(), Some(Ok(())))
            && revoke.version().get() >= share.version().get()
    };
    let error = move || {
        super::first_error([
            share.value().get().and_then(|r| r.err()),
            revoke.value().get().and_then(|r| r.err()),
        ])
    };
    view! {
        <ActionForm action=share attr:class="run-actions__form">
            <input type="hidden" name="kind" value=kind/>
            <input type="hidden" name="ids" value=ids/>
            <button type="submit" class="button button--quiet" data-action="share">"Share link"</button>
        </ActionForm>
        {move || match (link(), revoked()) {
            (Some(_), true) => view! { <span class="muted" data-share-revoked="">"Link revoked."</span> }.into_any(),
            (Some(l), false) => {
                let url = format!("{}{}", window_origin(), l.url);
                view! {
                    <input class="run-actions__share mono" readonly value=url.clone() data-share-url=url size="60"/>
                    <ActionForm action=revoke attr:class="run-actions__form">
                        <input type="hidden" name="share_id" value=l.id/>
                        <button type="submit" class="button button--quiet" data-action="revoke-share">"Revoke"</button>
                    </ActionForm>
                }.into_any()
            }
            (None, _) => ().into_any(),
        }}
        {move || error().map(|m| view! { <span class="error">{m}</span> })}
    }
}

/// The page's origin for absolute links (empty before hydration).
fn window_origin() -> String {
    #[cfg(feature = "hydrate")]
    {
        if let Some(w) = web_sys::window() {
            return w.location().origin().unwrap_or_default();
        }
    }
    String::new()
}
