//! Steering on the run page: the **Steer** panel of a live run (level, connect rate,
//! extend the hold, end it now; each a button that calls the `steer_run` server fn, the
//! same service as `POST /api/runs/{id}/steer`) and the **Changes** list (every recorded
//! change: when, what, from → to). The changes also mark the connections chart
//! (`charts::steering_marks`). Needs hydration to act; without JavaScript the panel
//! says so and the list still reads.
use engine::steer::SteerEvent;
use leptos::prelude::*;

use crate::api::{SteerRequest, SteerRun};
use crate::fmt;

/// The Steer panel. `events` gets each applied change appended (the chart and the
/// Changes list read it).
#[component]
pub fn SteerPanel(run_id: String, events: RwSignal<Vec<SteerEvent>>) -> impl IntoView {
    let action = ServerAction::<SteerRun>::new();
    let level = RwSignal::new(String::new());
    let rate = RwSignal::new(String::new());
    let extend = RwSignal::new(String::from("30"));
    // A number field that does not read is said here, not sent.
    let local_error = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        if let Some(Ok(event)) = action.value().get() {
            events.update(|e| {
                if !e.contains(&event) {
                    e.push(event);
                }
            });
        }
    });
    let send = move |req: Result<SteerRequest, String>| match req {
        Ok(req) => {
            local_error.set(None);
            action.dispatch(SteerRun {
                id: run_id.clone(),
                req,
            });
        }
        Err(e) => local_error.set(Some(e)),
    };
    let num = |text: String, what: &str| -> Result<f64, String> {
        text.trim()
            .parse::<f64>()
            .map_err(|_| format!("{what}: type a number"))
    };
    let status = move || {
        if let Some(e) = local_error.get() {
            return Some(view! { <p class="steer__error" role="alert">{e}</p> }.into_any());
        }
        match action.value().get() {
            Some(Ok(e)) => Some(
                view! { <p class="steer__ok" role="status">{format!("Applied at {}: {}", fmt::clock(e.at_ms), e.describe())}</p> }
                    .into_any(),
            ),
            Some(Err(e)) => Some(view! { <p class="steer__error" role="alert">{e.to_string()}</p> }.into_any()),
            None => None,
        }
    };
    let send_level = send.clone();
    let send_rate = send.clone();
    let send_extend = send.clone();
    let send_end = send;
    view! {
        <section class="run-detail__section steer" aria-labelledby="steer-title" data-steer="">
            <h2 id="steer-title">"Steer"</h2>
            <noscript><p class="muted">"Steering needs JavaScript (or use POST /api/runs/{id}/steer)."</p></noscript>
            <div class="steer__rows">
                <div class="steer__row">
                    <label for="steer-level">"Level (connections)"</label>
                    <input id="steer-level" name="level" type="number" min="0" step="1" inputmode="numeric"
                        class="field__input" prop:value=level on:input=move |ev| level.set(event_target_value(&ev))/>
                    <button type="button" class="button" data-steer-level=""
                        disabled=move || action.pending().get()
                        on:click=move |_| send_level(num(level.get_untracked(), "level").and_then(|v| {
                            if v.fract() != 0.0 { Err("level: a whole number of connections".into()) }
                            else { Ok(SteerRequest { level: Some(v as i64), ..Default::default() }) }
                        }))>"Set level"</button>
                </div>
                <div class="steer__row">
                    <label for="steer-rate">"Connect rate (per second)"</label>
                    <input id="steer-rate" name="rate" type="number" min="0" step="any" inputmode="decimal"
                        class="field__input" prop:value=rate on:input=move |ev| rate.set(event_target_value(&ev))/>
                    <button type="button" class="button" data-steer-rate=""
                        disabled=move || action.pending().get()
                        on:click=move |_| send_rate(num(rate.get_untracked(), "rate").map(|v| SteerRequest { rate: Some(v), ..Default::default() }))>"Set rate"</button>
                </div>
                <div class="steer__row">
                    <label for="steer-extend">"Extend the hold by (s)"</label>
                    <input id="steer-extend" name="extend_s" type="number" min="1" step="any" inputmode="decimal"
                        class="field__input" prop:value=extend on:input=move |ev| extend.set(event_target_value(&ev))/>
                    <button type="button" class="button" data-steer-extend=""
                        disabled=move || action.pending().get()
                        on:click=move |_| send_extend(num(extend.get_untracked(), "extend").map(|v| SteerRequest { extend_s: Some(v), ..Default::default() }))>"Extend"</button>
                </div>
                <div class="steer__row steer__row--end">
                    <span class="steer__hint">"Ends the hold now; the planned ramp-down follows and the run completes normally."</span>
                    <button type="button" class="button button--quiet" data-steer-end=""
                        disabled=move || action.pending().get()
                        on:click=move |_| send_end(Ok(SteerRequest { end_hold: Some(true), ..Default::default() }))>"End hold now"</button>
                </div>
            </div>
            {status}
        </section>
    }
}

/// The planned length after the changes: the newest extend or end-hold says it.
pub fn planned_ms(plan_ms: u64, events: RwSignal<Vec<SteerEvent>>) -> Signal<u64> {
    use engine::steer::SteerKind;
    Signal::derive(move || {
        events.with(|ev| {
            ev.iter()
                .rev()
                .find(|e| matches!(e.kind, SteerKind::Extend | SteerKind::EndHold))
                .and_then(|e| e.to)
                .map_or(plan_ms, |secs| (secs * 1000.0) as u64)
        })
    })
}

/// The Changes list: every steering change of the run, oldest first.
#[component]
pub fn SteerTimeline(#[prop(into)] events: Signal<Vec<SteerEvent>>) -> impl IntoView {
    view! {
        <Show when=move || !events.read().is_empty()>
            <section class="run-detail__section steer-timeline" data-steer-timeline="">
                <h2>"Changes"</h2>
                <table class="table">
                    <thead><tr><th scope="col">"at"</th><th scope="col">"change"</th></tr></thead>
                    <tbody>
                        {move || events.get().into_iter().map(|e| view! {
                            <tr data-steer-kind=format!("{:?}", e.kind).to_lowercase()>
                                <td class="mono">{fmt::clock(e.at_ms)}</td>
                                <td>{e.describe()}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </section>
        </Show>
    }
}
