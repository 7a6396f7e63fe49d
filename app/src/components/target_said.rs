//! `<TargetSaidPanel>`: what the target answered (status lines with their bodies, close
//! codes with the reasons their frames gave, refusals and stalls, with counts and first/last second), the rate-limit
//! headers and `Retry-After` values it sent. Rendered by `RunSections` right below the
//! verdict, so the verdict sits beside its own evidence on the run page, the share page
//! and the HTML report alike. The model is `engine::said::target_said` (pure, tested).
use leptos::prelude::*;

use engine::report::Evidence;
use engine::said::{target_said, Answer};
use engine::{Series, Totals};

use crate::fmt;

/// "3 s" (the tick's elapsed second), or "–" when the series has no column for it.
fn second(s: Option<f64>) -> String {
    s.map_or_else(|| "–".into(), |s| format!("{s:.0} s"))
}

fn answer_row(a: Answer) -> impl IntoView {
    let (key, stage) = (a.key.clone(), a.stage.clone());
    view! {
        <tr data-said=key data-stage=stage>
            <td>
                <span class="said__line">{a.said}</span>
                <span class="muted said__key mono">{a.key}</span>
                {(!a.bodies.is_empty()).then(|| view! {
                    <ul class="said__bodies">
                        {a.bodies.into_iter().map(|b| view! { <li><q class="mono">{b}</q></li> }).collect_view()}
                    </ul>
                })}
                {(!a.reasons.is_empty()).then(|| view! {
                    <ul class="said__bodies said__reasons">
                        {a.reasons.into_iter().map(|(r, n)| {
                            let text = r.clone();
                            view! {
                                <li data-reason=r><q class="mono">{text}</q>" "<span class="muted">{format!("×{}", fmt::count(n))}</span></li>
                            }
                        }).collect_view()}
                    </ul>
                })}
            </td>
            <td>{a.stage}</td>
            <td class="num">{fmt::count(a.count)}</td>
            <td class="num">{second(a.first_s)}</td>
            <td class="num">{second(a.last_s)}</td>
        </tr>
    }
}

#[component]
pub fn TargetSaidPanel(
    /// Cumulative totals (live: the newest tick's).
    #[prop(into)]
    totals: Signal<Totals>,
    #[prop(into)] series: Signal<Series>,
    /// The evidence the summary kept (empty while live: bodies and headers come with
    /// the summary).
    evidence: Evidence,
) -> impl IntoView {
    let said = Memo::new(move |_| target_said(&totals.read(), &evidence, &series.read()));
    view! {
        <section class="run-detail__section said" id="target-said">
            <h2>"What the target said"</h2>
            {move || {
                let s = said.get();
                if s.is_empty() {
                    return view! { <p class="muted said__none">"Nothing but open WebSockets: no refusals, no closes from the target."</p> }.into_any();
                }
                let retry = (!s.retry_after.is_empty()).then(|| view! {
                    <p class="said__retry">
                        <strong>"Retry-After: "</strong>
                        {s.retry_after.iter().map(|(v, n)| format!("{v} s ×{}", fmt::count(*n))).collect::<Vec<_>>().join(", ")}
                    </p>
                });
                let headers = (!s.rate_limit_headers.is_empty()).then(|| view! {
                    <dl class="said__headers">
                        {s.rate_limit_headers.iter().map(|(k, v)| view! {
                            <div><dt class="mono">{k.clone()}</dt><dd class="mono">{v.clone()}</dd></div>
                        }).collect_view()}
                    </dl>
                });
                view! {
                    <div class="table-scroll">
                        <table class="said__table">
                            <thead><tr><th>"Answer"</th><th>"Stage"</th><th class="num">"Count"</th><th class="num">"First"</th><th class="num">"Last"</th></tr></thead>
                            <tbody>{s.answers.into_iter().map(answer_row).collect_view()}</tbody>
                        </table>
                    </div>
                    {retry}
                    {headers}
                }.into_any()
            }}
        </section>
    }
    .into_any()
}
