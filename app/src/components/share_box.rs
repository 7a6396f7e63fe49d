//! "Share link": creates (or finds) the read-only link for a run or a comparison,
//! shows it, and can revoke it. Used by the run page and the compare page.
use leptos::prelude::*;

use crate::api::{CreateShare, RevokeShare, ShareLink};

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
                // The server's `--public-url` when it has one, else the address this
                // browser used (which may be one colleagues cannot reach).
                let url = l.public_url.clone().unwrap_or_else(|| format!("{}{}", window_origin(), l.url));
                let copied = RwSignal::new(false);
                let to_copy = url.clone();
                let hint = share_hint(&l, &window_host());
                view! {
                    <input class="run-actions__share mono" readonly value=url.clone() data-share-url=url size="60" aria-label="share link"/>
                    <button type="button" class="button button--quiet" data-action="copy-share"
                        on:click=move |_| { copy_text(&to_copy); copied.set(true); }>
                        {move || if copied.get() { "Copied" } else { "Copy" }}
                    </button>
                    <ActionForm action=revoke attr:class="run-actions__form">
                        <input type="hidden" name="share_id" value=l.id/>
                        <button type="submit" class="button button--quiet" data-action="revoke-share">"Revoke"</button>
                    </ActionForm>
                    {hint.map(|h| view! { <p class="share-hint" data-share-hint="">{h}</p> })}
                }.into_any()
            }
            (None, _) => ().into_any(),
        }}
        {move || error().map(|m| view! { <span class="error">{m}</span> })}
    }
}

/// Why a colleague may not be able to open the link, if they may not.
fn share_hint(link: &ShareLink, browser_host: &str) -> Option<&'static str> {
    let loopback = |h: &str| {
        let h = h.rsplit_once(':').map_or(h, |(host, _)| host);
        h == "localhost" || h.starts_with("127.") || h == "[::1]"
    };
    if link.local_only {
        Some("Only this machine can open this link: the server listens on a loopback address. To share it, start socketswarm with --listen 0.0.0.0:3000 --public-url http://NAME:3000 (the name colleagues use).")
    } else if link.public_url.is_none() && loopback(browser_host) {
        Some("This link names 127.0.0.1 / localhost, which is each colleague's own machine. Start socketswarm with --public-url http://NAME:3000 to get links they can open.")
    } else {
        None
    }
}

/// Puts `text` on the clipboard (after hydration; the input can be copied by hand).
fn copy_text(text: &str) {
    #[cfg(feature = "hydrate")]
    {
        if let Some(w) = web_sys::window() {
            let _ = w.navigator().clipboard().write_text(text);
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = text;
}

/// The host (and port) this page was loaded from (empty before hydration).
fn window_host() -> String {
    #[cfg(feature = "hydrate")]
    {
        if let Some(w) = web_sys::window() {
            return w.location().host().unwrap_or_default();
        }
    }
    String::new()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ShareKind;

    fn link(public_url: Option<&str>, local_only: bool) -> ShareLink {
        ShareLink {
            id: "s".into(),
            kind: ShareKind::Run,
            url: "/share/s".into(),
            public_url: public_url.map(Into::into),
            local_only,
        }
    }

    #[test]
    fn hints_say_when_colleagues_cannot_open_the_link() {
        assert!(
            share_hint(&link(None, true), "127.0.0.1:3000").is_some_and(|h| h.contains("--listen"))
        );
        assert!(share_hint(&link(None, false), "localhost:3000")
            .is_some_and(|h| h.contains("--public-url")));
        assert!(share_hint(&link(None, false), "[::1]:3000").is_some());
        assert_eq!(
            share_hint(&link(None, false), "swarm.example.com:3000"),
            None
        );
        assert_eq!(
            share_hint(
                &link(Some("https://swarm.example.com/share/s"), false),
                "127.0.0.1:3000"
            ),
            None
        );
    }
}
