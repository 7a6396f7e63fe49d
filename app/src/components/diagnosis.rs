//! The diagnosis panel: which limit the run hit, how sure we are, and why.
use engine::diagnose::{Diagnosis, LimitKind};
use leptos::prelude::*;

/// Where the run turned, in words (shown after the evidence, here and in the HTML report).
pub fn knee_lines(d: &Diagnosis) -> Vec<String> {
    let k = &d.knee;
    let mut out = Vec::new();
    if let (Some(t), Some(open)) = (k.first_rejection_s, k.open_at_first_rejection) {
        out.push(format!(
            "First rejection at t = {t:.0} s with {open:.0} open, at {:.1} attempts/s.",
            k.attempt_rate_at_first_rejection.unwrap_or(0.0)
        ));
    }
    if let (Some(t), Some(open)) = (k.pct1_s, k.open_at_pct1) {
        out.push(format!(
            "Rejections passed 1 % of attempts at t = {t:.0} s ({open:.0} open)."
        ));
    }
    if let (Some(t), Some(open)) = (k.pct50_s, k.open_at_pct50) {
        out.push(format!(
            "Rejections passed 50 % of attempts at t = {t:.0} s ({open:.0} open)."
        ));
    }
    out
}

#[component]
pub fn DiagnosisPanel(
    #[prop(into)] diagnosis: Signal<Option<Diagnosis>>,
    live: bool,
) -> impl IntoView {
    move || {
        diagnosis.get().map(|d| {
            let kind = d.kind.key();
            let level = d.level.map(|l| l.to_string()).unwrap_or_default();
            let per = d.per.clone().unwrap_or_default();
            let how = d.enforcement.as_ref().map_or("", |e| e.how.key());
            let tone = if d.kind == LimitKind::None { "ok" } else { "limit" };
            let evidence: Vec<String> = d.evidence.iter().cloned().chain(knee_lines(&d)).collect();
            let alternatives = d.alternatives_line();
            view! {
                <section class=format!("diagnosis diagnosis--{tone}") data-kind=kind data-level=level data-per=per data-enforcement=how
                    data-confidence=format!("{:.2}", d.confidence)>
                    <h2 class="diagnosis__title">{if live { "Diagnosis (live, so far)" } else { "Diagnosis" }}</h2>
                    <p class="diagnosis__headline">{d.headline.clone()}</p>
                    <p class="diagnosis__meta">{d.meta_line()}</p>
                    {alternatives.map(|a| view! { <p class="diagnosis__alternatives">"Also fits: " {a}</p> })}
                    {d.separate_by.clone().map(|t| view! { <p class="diagnosis__separate"><strong>"To tell them apart: "</strong>{t}</p> })}
                    <ul class="diagnosis__evidence">
                        {evidence.into_iter().map(|e| view! { <li>{e}</li> }).collect_view()}
                    </ul>
                    {(!d.also.is_empty()).then(|| view! {
                        <div class="diagnosis__also">
                            <h3>"Also found"</h3>
                            <ul>
                                {d.also.iter().map(|x| view! {
                                    <li data-kind=x.kind.key()>
                                        <strong>{x.headline.clone()}</strong>" "
                                        <span class="diagnosis__meta">{x.meta_line()}</span>
                                        <ul class="diagnosis__evidence">
                                            {x.evidence.iter().map(|e| view! { <li>{e.clone()}</li> }).collect_view()}
                                        </ul>
                                    </li>
                                }).collect_view()}
                            </ul>
                        </div>
                    })}
                    {(!d.verdicts.is_empty()).then(|| view! {
                        <ul class="diagnosis__verdicts">
                            {d.verdicts.iter().map(|v| view! {
                                <li data-kind=v.kind.key() data-per=v.per.clone().unwrap_or_default()>{v.meta_line()}</li>
                            }).collect_view()}
                        </ul>
                    })}
                </section>
            }
        })
    }
}
