//! `/runs/new`: the "New run" form. Works as a plain POST before hydration.
//! `/runs/new?from=RUN` is "Edit and run again": the form prefilled with that run's plan
//! when the form can show all of it (`RunForm::from_plan`), and the JSON plan editor
//! with the plan as stored, asking for the typed-in secrets the run did not keep.
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::{
    get_form_defaults, get_run, ApiError, LaunchPlanJson, LaunchRun, RerunEdited, RunDetail,
};
use crate::components::TextArea;
use crate::form::RunForm;

/// The messages for form field `name`, joined (a textarea may have several bad lines).
fn error_of(errors: Signal<Vec<(String, String)>>, name: &'static str) -> Signal<Option<String>> {
    Signal::derive(move || {
        let all: Vec<String> = errors
            .get()
            .into_iter()
            .filter(|(f, _)| f == name)
            .map(|(_, m)| m)
            .collect();
        (!all.is_empty()).then(|| all.join("; "))
    })
}

/// An invalid field's `aria-invalid` and `aria-describedby` (its error's id), and the
/// error itself.
fn error_view(name: &'static str, err: Signal<Option<String>>) -> impl IntoView {
    move || {
        err.get().map(
            |m| view! { <span class="field__error" id=format!("{name}-error") data-field=name>{m}</span> },
        )
    }
}

fn invalid(err: Signal<Option<String>>) -> impl Fn() -> Option<&'static str> + Send + Sync {
    move || err.get().map(|_| "true")
}

fn described_by(
    name: &'static str,
    err: Signal<Option<String>>,
) -> impl Fn() -> Option<String> + Send + Sync {
    move || err.get().map(|_| format!("{name}-error"))
}

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
    /// Shown in the empty input.
    #[prop(optional)]
    placeholder: Option<&'static str>,
    /// Shown instead of `hint` (e.g. "type it again" for a secret a run did not keep).
    #[prop(optional)]
    note: Option<String>,
) -> impl IntoView {
    let err = error_of(errors, name);
    view! {
        <label class="field">
            <span class="field__label">{label}</span>
            <input class="field__input" type=kind.unwrap_or("text") autocomplete="off" name=format!("form[{name}]") value=value
                placeholder=placeholder aria-invalid=invalid(err) aria-describedby=described_by(name, err)/>
            <span class="field__hint">{note.filter(|n| !n.is_empty()).unwrap_or_else(|| hint.to_string())}</span>
            {error_view(name, err)}
        </label>
    }
}

/// A multi-line field: one entry a line.
#[component]
fn LinesField(
    label: &'static str,
    name: &'static str,
    /// The textarea's HTML name, `form[NAME]` (TextArea takes a static name).
    input: &'static str,
    errors: Signal<Vec<(String, String)>>,
    hint: &'static str,
    placeholder: &'static str,
) -> impl IntoView {
    let err = error_of(errors, name);
    view! {
        <label class="field">
            <span class="field__label">{label}</span>
            <TextArea name=input class="field__input field__lines" rows=3 no_spellcheck=true text=String::new()
                attr:placeholder=placeholder attr:aria-invalid=invalid(err) attr:aria-describedby=described_by(name, err)/>
            <span class="field__hint">{hint}</span>
            {error_view(name, err)}
        </label>
    }
}

/// A choice among fixed options (`(value, label)`, the first selected).
#[component]
fn Choice(
    label: &'static str,
    name: &'static str,
    options: &'static [(&'static str, &'static str)],
    errors: Signal<Vec<(String, String)>>,
    #[prop(optional)] hint: &'static str,
    /// The option selected at first (empty: the first).
    #[prop(optional)]
    selected: String,
) -> impl IntoView {
    let err = error_of(errors, name);
    view! {
        <label class="field">
            <span class="field__label">{label}</span>
            <select class="field__input" name=format!("form[{name}]") aria-invalid=invalid(err) aria-describedby=described_by(name, err)>
                {options.iter().map(|(value, text)| view! { <option value=*value selected=*value == selected>{*text}</option> }).collect_view()}
            </select>
            <span class="field__hint">{hint}</span>
            {error_view(name, err)}
        </label>
    }
}

/// After a failed submit: open the sections holding invalid fields and focus the first
/// (in page order), so keyboard and screen-reader users land on what to fix.
#[cfg(feature = "hydrate")]
fn focus_first_invalid() {
    use wasm_bindgen::JsCast;
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    let selector = ".run-form [aria-invalid=\"true\"]";
    if let Ok(all) = doc.query_selector_all(selector) {
        for i in 0..all.length() {
            let el = all
                .item(i)
                .and_then(|n| n.dyn_into::<web_sys::Element>().ok());
            if let Some(Ok(Some(details))) = el.map(|e| e.closest("details")) {
                let _ = details.set_attribute("open", "");
            }
        }
    }
    if let Ok(Some(first)) = doc.query_selector(selector) {
        if let Ok(first) = first.dyn_into::<web_sys::HtmlElement>() {
            let _ = first.focus();
        }
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

/// The form's first values: the defaults, or (editing a run) that run's plan when the
/// form can show all of it; `true` when it is the run's plan.
fn initial_form(target: String, from: Option<&RunDetail>) -> (RunForm, bool) {
    let defaults = RunForm {
        name: "smoke".into(),
        target,
        connections: "50".into(),
        ramp_secs: "5".into(),
        hold_secs: "10".into(),
        message_every_secs: "1".into(),
        arrival_rate: "5".into(),
        arrivals_secs: "30".into(),
        stay_secs: "10".into(),
        stay_min_secs: "5".into(),
        stay_max_secs: "15".into(),
        stay_sigma: "1".into(),
        ..RunForm::default()
    };
    let Some(mut f) = from.and_then(|d| RunForm::from_plan(&d.plan)) else {
        return (defaults, false);
    };
    // The fields the run's model does not use keep their defaults.
    for (mine, default) in [
        (&mut f.connections, defaults.connections),
        (&mut f.ramp_secs, defaults.ramp_secs),
        (&mut f.hold_secs, defaults.hold_secs),
        (&mut f.arrival_rate, defaults.arrival_rate),
        (&mut f.arrivals_secs, defaults.arrivals_secs),
        (&mut f.stay_secs, defaults.stay_secs),
        (&mut f.stay_min_secs, defaults.stay_min_secs),
        (&mut f.stay_max_secs, defaults.stay_max_secs),
        (&mut f.stay_sigma, defaults.stay_sigma),
    ] {
        if mine.is_empty() {
            *mine = default;
        }
    }
    (f, true)
}

/// A secret field's first value and note: empty, saying to type it again, when the run
/// being edited did not keep it.
fn secret_field(text: &str) -> (String, Option<String>) {
    if text == engine::plan::REDACTED {
        (
            String::new(),
            Some("typed in for the run you are editing and not kept: type it again".into()),
        )
    } else {
        (text.to_string(), None)
    }
}

#[component]
pub fn NewRunPage() -> impl IntoView {
    let defaults = Resource::new(|| (), |_| get_form_defaults());
    let query = use_query_map();
    let from = Resource::new(
        move || query.with(|q| q.get("from")),
        |from| async move {
            match from {
                Some(id) => get_run(id).await.map(Some),
                None => Ok(None),
            }
        },
    );
    let launch = ServerAction::<LaunchRun>::new();
    let launch_json = ServerAction::<LaunchPlanJson>::new();
    let rerun_edited = ServerAction::<RerunEdited>::new();
    let json_error = move || match (launch_json.value().get(), rerun_edited.value().get()) {
        (Some(Err(e)), _) | (_, Some(Err(e))) => Some(e.to_string()),
        _ => None,
    };
    let errors = Signal::derive(move || match launch.value().get() {
        Some(Err(ApiError::Validation(errs))) => {
            errs.into_iter().map(|e| (e.field, e.message)).collect()
        }
        _ => Vec::new(),
    });
    Effect::new(move |_| {
        if !errors.with(Vec::is_empty) {
            #[cfg(feature = "hydrate")]
            leptos::leptos_dom::helpers::request_animation_frame(focus_first_invalid);
        }
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
                let source: Option<RunDetail> = from.await.ok().flatten();
                let target = d.as_ref().map(|d| d.target.clone()).unwrap_or_default();
                let target_for_json = target.clone();
                let max = d.as_ref().map(|d| d.limits.max_connections).unwrap_or(0);
                let (init, fits) = initial_form(target, source.as_ref());
                let open_model = init.model == "open";
                let chatty = !init.message.is_empty() || !init.expect_json_field.is_empty();
                let (bearer, bearer_note) = secret_field(&init.bearer_token);
                let (client_secret, secret_note) = secret_field(&init.client_secret);
                let editing = source.as_ref().map(|d| {
                    let how = if fits {
                        "The form below holds its plan; change what you need and launch."
                    } else {
                        "The form cannot show all of its plan: edit it as JSON below."
                    };
                    view! {
                        <p class="run-form__from" data-from=d.id.clone()>
                            "Edit and run again: "<a href=format!("/runs/{}", d.id)>{d.name.clone()}</a>". "{how}
                        </p>
                    }
                });
                let json_part = match source {
                    Some(d) => {
                        let text = serde_json::to_string_pretty(&d.plan).unwrap_or_default();
                        view! {
                            <details class="plan-json" open=!fits>
                                <summary>"This run's plan as JSON (everything it holds)"</summary>
                                <ActionForm action=rerun_edited attr:class="run-form run-form--json">
                                    <input type="hidden" name="id" value=d.id.clone()/>
                                    <TextArea name="plan_json" attr:aria-label="The plan as JSON" class="plan-json__text" rows=18 no_spellcheck=true text=text/>
                                    {d.missing_secrets.into_iter().map(|m| view! {
                                        <label class="field">
                                            <span class="field__label">{m.label}</span>
                                            <input class="field__input" type="password" autocomplete="off" required
                                                name=format!("secrets[{}]", m.key) data-secret=m.key/>
                                            <span class="field__hint">"typed in for this run and not kept: type it again (used for the new run only)"</span>
                                        </label>
                                    }).collect_view()}
                                    <button type="submit" class="button">"Launch this plan"</button>
                                    {move || json_error().map(|m| view! { <p class="error plan-json__error">{m}</p> })}
                                </ActionForm>
                            </details>
                        }.into_any()
                    }
                    None => view! {
                        <details class="plan-json">
                            <summary>"Advanced: the whole plan as JSON (scripts, tokens, TLS, probes)"</summary>
                            <ActionForm action=launch_json attr:class="run-form run-form--json">
                                <TextArea name="plan_json" attr:aria-label="The plan as JSON" class="plan-json__text" rows=18 no_spellcheck=true text=example_plan(&target_for_json)/>
                                <button type="submit" class="button">"Launch this plan"</button>
                                {move || json_error().map(|m| view! { <p class="error plan-json__error">{m}</p> })}
                            </ActionForm>
                        </details>
                    }.into_any(),
                };
                view! {
                    {editing}
                    <ActionForm action=launch attr:class="run-form">
                        <Field label="Name" name="name" value=init.name errors/>
                        <Field label="Target URL" name="target" value=init.target errors hint="ws:// URL. The built-in sandbox takes ?cap=N, ?rate=R&burst=B, ?drop_after=30s, ?delay=50ms …"/>
                        <Field label="Connections" name="connections" value=init.connections errors hint="per run (below this server's open-file limit)"/>
                        <Field label="Ramp-up (s)" name="ramp_secs" value=init.ramp_secs errors/>
                        <Field label="Hold (s)" name="hold_secs" value=init.hold_secs errors/>
                        <Field label="Message every (s)" name="message_every_secs" value=init.message_every_secs errors hint="each connection sends a message and times the echo; 0 = idle"/>
                        <Field label="Max new connections / s" name="max_connect_rate" value=init.max_connect_rate errors hint="empty = as fast as the ramp asks"/>
                        <label class="field field--check">
                            <span class="field__label">"Reconnect"</span>
                            <span><input type="checkbox" name="form[reconnect]" value="on" checked=init.reconnect == "on"/>
                            " retry refused handshakes and dropped sessions with backoff (honours Retry-After) until the run ends, as real clients do; off measures raw behaviour"</span>
                        </label>
                        <details class="run-form__section" open=open_model>
                            <summary>"Session model (optional)"</summary>
                            <Choice label="Model" name="model" errors selected=init.model options=&[
                                ("closed", "Ramp and hold (closed model)"),
                                ("open", "Arrivals (open model)"),
                            ] hint="closed: the connections, ramp-up and hold above; open: guests arrive at a rate and leave after their stay (the fields below)"/>
                            <Field label="Arrivals / s" name="arrival_rate" value=init.arrival_rate errors hint="new guests per second"/>
                            <Field label="Arrivals for (s)" name="arrivals_secs" value=init.arrivals_secs errors hint="how long guests keep arriving: the run's length"/>
                            <Choice label="Stay" name="stay" errors selected=init.stay options=&[
                                ("exponential", "Exponential (mean)"),
                                ("fixed", "Fixed"),
                                ("uniform", "Uniform (shortest to longest)"),
                                ("log_normal", "Log-normal (median, spread)"),
                            ] hint="how long each guest stays before leaving by itself"/>
                            <Field label="Stay (s)" name="stay_secs" value=init.stay_secs errors hint="fixed: every stay; exponential: the mean; log-normal: the median"/>
                            <Field label="Shortest stay (s)" name="stay_min_secs" value=init.stay_min_secs errors hint="uniform only"/>
                            <Field label="Longest stay (s)" name="stay_max_secs" value=init.stay_max_secs errors hint="uniform only"/>
                            <Field label="Spread (σ)" name="stay_sigma" value=init.stay_sigma errors hint="log-normal only; 0.5 to 1.5 is typical of time on a site"/>
                        </details>
                        <details class="run-form__section">
                            <summary>"Session variables (optional)"</summary>
                            <LinesField label="Variables" name="vars" input="form[vars]" errors placeholder="guest = {{uuid}}"
                                hint="one name = template a line, rendered when a connection starts; use as {{var.name}}"/>
                        </details>
                        <details class="run-form__section" open=chatty>
                            <summary>"Message and reply (optional)"</summary>
                            <Field label="Message" name="message" value=init.message errors placeholder="{\"to\":\"{{var.guest}}\",\"text\":\"hi\"}"
                                hint="sent every \"Message every\" seconds; empty = the echo heartbeat"/>
                            <Field label="Reply JSON field" name="expect_json_field" value=init.expect_json_field errors placeholder="$.to"
                                hint="wait for the reply with this field (other messages are skipped and counted); empty = don't wait"/>
                            <Field label="Reply field equals" name="expect_equals" value=init.expect_equals errors placeholder="{{var.guest}}"
                                hint="correlate: only the reply whose field has this value; empty = any"/>
                            <LinesField label="Captures" name="captures" input="form[captures]" errors placeholder="id = $.body.id"
                                hint="from the reply, one name = $.json.path or name = /regex(group)/ a line; use as {{var.name}} in later messages"/>
                        </details>
                        <fieldset class="run-form__tokens">
                            <legend>"Tokens (optional)"</legend>
                            <Field label="Bearer token" name="bearer_token" value=bearer note=bearer_note.unwrap_or_default() errors kind="password" hint="sent as Authorization: Bearer …; env:NAME reads the server's environment"/>
                            <Field label="OAuth token URL" name="token_url" value=init.token_url errors hint="client credentials grant; or leave empty"/>
                            <Field label="Client id" name="client_id" value=init.client_id errors/>
                            <Field label="Client secret" name="client_secret" value=client_secret note=secret_note.unwrap_or_default() errors kind="password" hint="a value (stored redacted) or env:NAME"/>
                            <Field label="Connections per token" name="connections_per_token" value=init.connections_per_token errors hint="empty = one token for all; 1 = a token each; N = a new token every N"/>
                            <Choice label="Token rotation" name="rotation" errors selected=init.rotation options=&[
                                ("off", "Off"),
                                ("reauth", "Re-authenticate on the open socket"),
                                ("reconnect", "Close and reconnect"),
                            ] hint="OAuth only: before its token expires, a connection sends the message below, or reconnects with the new token"/>
                            <Field label="Re-auth message" name="rotation_message" value=init.rotation_message errors placeholder="{\"action\":\"refresh\",\"token\":\"{{token}}\"}"
                                hint="for re-authenticate; {{token}} is the new token"/>
                        </fieldset>
                        <p class="run-form__limit">{format!("Limit: {max} connections per run.")}</p>
                        <button type="submit" class="button">"Launch"</button>
                        {move || other_error().map(|m| view! { <p class="error">{m}</p> })}
                        {move || (!errors.get().is_empty()).then(|| view! { <p class="error">"Please fix the fields marked above."</p> })}
                    </ActionForm>
                    {json_part}
                }
            })}
        </Suspense>
    }
}
