//! `/runs/new`: the "New run" form. Works as a plain POST before hydration.
use leptos::prelude::*;

use crate::api::{get_form_defaults, ApiError, LaunchPlanJson, LaunchRun};
use crate::components::TextArea;

#[component]
fn Field(
    label: &'static str,
    name: &'static str,
    value: String,
    errors: Signal<Vec<(String, String)>>,
    #[prop(optional)] hint: &'static str,
    /// The input's type (default `text`; `password` for secrets).
    #[prop(optional)]
    kind: Option<&'static str>,
) -> impl IntoView {
    let key = name.to_string();
    let err = move || {
        errors
            .get()
            .into_iter()
            .find(|(f, _)| *f == key)
            .map(|(_, m)| m)
    };
    view! {
        <label class="field">
            <span class="field__label">{label}</span>
            <input class="field__input" type=kind.unwrap_or("text") autocomplete="off" name=format!("form[{name}]") value=value/>
            <span class="field__hint">{hint}</span>
            {move || err().map(|m| view! { <span class="field__error" data-field=name>{m}</span> })}
        </label>
    }
}

/// A starting point for the JSON form: the sandbox's mock OAuth and a per-token cap.
fn example_plan(target: &str) -> String {
    let base = target.trim_end_matches("/echo");
    let http = base.replacen("ws://", "http://", 1);
    let plan = serde_json::json!({
        "name": "tokens against a per-token cap",
        "target": format!("{base}/echo?auth=bearer&token_cap=20"),
        "stages": [{"duration": "10s", "connections": 60}, {"duration": "10s", "connections": 60}],
        "auth": {
            "source": {"type": "oauth2", "token_url": format!("{http}/oauth/token?ttl=5m"), "client_id": "loadtest", "client_secret": "the sandbox accepts any secret"},
            "policy": {"mode": "per_connections", "connections": 30}
        },
        "script": [{"repeat": {"every": "1s", "steps": [{"send": "ping {{vu}}"}, {"expect": {"contains": "ping {{vu}}"}}]}}]
    });
    serde_json::to_string_pretty(&plan).unwrap_or_default()
}

#[component]
pub fn NewRunPage() -> impl IntoView {
    let defaults = Resource::new(|| (), |_| get_form_defaults());
    let launch = ServerAction::<LaunchRun>::new();
    let launch_json = ServerAction::<LaunchPlanJson>::new();
    let json_error = move || match launch_json.value().get() {
        Some(Err(e)) => Some(e.to_string()),
        _ => None,
    };
    let errors = Signal::derive(move || match launch.value().get() {
        Some(Err(ApiError::Validation(errs))) => {
            errs.into_iter().map(|e| (e.field, e.message)).collect()
        }
        _ => Vec::new(),
    });
    let other_error = move || match launch.value().get() {
        Some(Err(ApiError::Validation(_))) | Some(Ok(_)) | None => None,
        Some(Err(e)) => Some(e.to_string()),
    };
    view! {
        <h1>"New run"</h1>
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                let d = defaults.await.ok();
                let target = d.as_ref().map(|d| d.target.clone()).unwrap_or_default();
                let target_for_json = target.clone();
                let max = d.as_ref().map(|d| d.limits.max_connections).unwrap_or(0);
                view! {
                    <ActionForm action=launch attr:class="run-form">
                        <Field label="Name" name="name" value="smoke".into() errors/>
                        <Field label="Target URL" name="target" value=target errors hint="ws:// URL. The built-in sandbox takes ?cap=N, ?rate=R&burst=B, ?drop_after=30s, ?delay=50ms …"/>
                        <Field label="Connections" name="connections" value="50".into() errors hint="per run (below this server's open-file limit)"/>
                        <Field label="Ramp-up (s)" name="ramp_secs" value="5".into() errors/>
                        <Field label="Hold (s)" name="hold_secs" value="10".into() errors/>
                        <Field label="Message every (s)" name="message_every_secs" value="1".into() errors hint="each connection sends a message and times the echo; 0 = idle"/>
                        <Field label="Max new connections / s" name="max_connect_rate" value=String::new() errors hint="empty = as fast as the ramp asks"/>
                        <label class="field field--check">
                            <span class="field__label">"Reconnect"</span>
                            <span><input type="checkbox" name="form[reconnect]" value="on"/>
                            " retry refused handshakes and dropped sessions with backoff (honours Retry-After) until the run ends, as real clients do; off measures raw behaviour"</span>
                        </label>
                        <fieldset class="run-form__tokens">
                            <legend>"Tokens (optional)"</legend>
                            <Field label="Bearer token" name="bearer_token" value=String::new() errors kind="password" hint="sent as Authorization: Bearer …; env:NAME reads the server's environment"/>
                            <Field label="OAuth token URL" name="token_url" value=String::new() errors hint="client credentials grant; or leave empty"/>
                            <Field label="Client id" name="client_id" value=String::new() errors/>
                            <Field label="Client secret" name="client_secret" value=String::new() errors kind="password" hint="a value (stored redacted) or env:NAME"/>
                            <Field label="Connections per token" name="connections_per_token" value=String::new() errors hint="empty = one token for all; 1 = a token each; N = a new token every N"/>
                        </fieldset>
                        <p class="run-form__limit">{format!("Limit: {max} connections per run.")}</p>
                        <button type="submit" class="button">"Launch"</button>
                        {move || other_error().map(|m| view! { <p class="error">{m}</p> })}
                        {move || (!errors.get().is_empty()).then(|| view! { <p class="error">"Please fix the fields marked above."</p> })}
                    </ActionForm>
                    <details class="plan-json">
                        <summary>"Advanced: the whole plan as JSON (scripts, tokens, TLS, probes)"</summary>
                        <ActionForm action=launch_json attr:class="run-form run-form--json">
                            <TextArea name="plan_json" class="plan-json__text" rows=18 no_spellcheck=true text=example_plan(&target_for_json)/>
                            <button type="submit" class="button">"Launch this plan"</button>
                            {move || json_error().map(|m| view! { <p class="error plan-json__error">{m}</p> })}
                        </ActionForm>
                    </details>
                }
            })}
        </Suspense>
    }
}
