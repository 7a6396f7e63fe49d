//! `<ProbePanel>`: a probe run as its user follows it (issue 16) — which experiment is
//! running ("experiment 3 of 6: 40 connects/s for 3 s") and what each finished one
//! showed (offered vs accepted, failures, its reading). The engine computes all of it
//! (`engine::report::ProbeProgress`); this only renders. Values carry `data-probe-*`
//! attributes so tests can read them.
use leptos::prelude::*;

use engine::report::{ExperimentResult, ProbeProgress, UNIT_CONNECTS_PER_SECOND};

/// Whole numbers as such, others to one decimal.
fn n(v: f64) -> String {
    if v.fract() == 0.0 || v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// "40/s" or "40 open", in the experiment's unit.
fn amount(r: &ExperimentResult, v: f64) -> String {
    if r.unit == UNIT_CONNECTS_PER_SECOND {
        format!("{}/s", n(v))
    } else {
        format!("{} open", n(v))
    }
}

#[component]
pub fn ProbePanel(#[prop(into)] probe: Signal<Option<ProbeProgress>>) -> impl IntoView {
    view! {
        <Show when=move || probe.read().is_some()>
            <section class="run-detail__section probe" data-probe="">
                <h2>"Probe experiments"</h2>
                {move || probe.get().and_then(|p| p.current.map(|c| view! {
                    <p class="probe__now" data-probe-current=c.index.to_string()>
                        <span class="probe__pulse" aria-hidden="true"></span>
                        <strong>{format!("Experiment {} of {}: ", c.index, p.planned.max(c.index))}</strong>
                        {c.what}
                    </p>
                }))}
                <div class="probe__scroll">
                <table class="probe__table">
                    <thead><tr>
                        <th>"#"</th><th>"Experiment"</th><th class="num">"Offered"</th>
                        <th class="num">"Accepted"</th><th class="num">"Failures"</th><th>"Reading"</th>
                    </tr></thead>
                    <tbody>
                        {move || probe.get().map(|p| p.done).unwrap_or_default().into_iter().map(|r| view! {
                            <tr data-probe-result=r.experiment.index.to_string() data-found=r.found.map(|f| f.to_string())>
                                <td class="num probe__index">{r.experiment.index}</td>
                                <td>{r.experiment.what.clone()}</td>
                                <td class="num" data-label="offered ">{amount(&r, r.offered)}</td>
                                <td class="num" data-label="accepted ">{amount(&r, r.accepted)}</td>
                                <td class="num" data-label="failures ">{crate::fmt::count(r.failures)}</td>
                                <td class=if r.found.is_some() { "probe__verdict probe__verdict--found" } else { "probe__verdict" }>{r.verdict.clone()}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
                </div>
            </section>
        </Show>
    }
}
