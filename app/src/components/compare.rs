//! Comparison views shared by `/compare`, share links and a run's "vs baseline" panel:
//! the metric table (value per run, change against the first with its verdict and, for
//! latency, whether it is beyond noise), the distribution-shift tests and the
//! behaviour sentences.
use engine::compare::{Comparison, MetricRow};
use leptos::prelude::*;

use crate::fmt;

fn cell(m: &MetricRow, i: usize) -> impl IntoView {
    let value = m.values.get(i).copied().flatten();
    let ci = m.intervals.get(i).copied().flatten();
    let change = m.changes.get(i).cloned().flatten();
    view! {
        <td class="num">
            {value.map(|v| fmt::metric(v, &m.unit)).unwrap_or_else(|| "—".into())}
            {ci.map(|(lo, hi)| view! {
                <span class="cmp__ci muted">{format!(" [{}–{}]", fmt::metric(lo, &m.unit), fmt::metric(hi, &m.unit))}</span>
            })}
            {change.map(|c| {
                let sig = c.significance.clone();
                view! {
                    <span class=format!("cmp__delta cmp__delta--{}", c.verdict) data-verdict=c.verdict>
                        {format!(" {}", fmt::change(c.abs, c.rel, &m.unit))}
                    </span>
                    {sig.map(|s| {
                        let word = if s.significant {
                            " significant"
                        } else if !s.tested {
                            " too few samples"
                        } else {
                            " within noise"
                        };
                        view! {
                            <span class=if s.significant { "cmp__sig cmp__sig--yes" } else { "cmp__sig" } title=s.method>
                                {word}
                            </span>
                        }
                    })}
                }
            })}
        </td>
    }
}

/// Metric rows (`keys` empty = all) with one column per run.
#[component]
pub fn MetricTable(
    comparison: Comparison,
    names: Vec<String>,
    #[prop(optional)] keys: &'static [&'static str],
) -> impl IntoView {
    let rows: Vec<MetricRow> = comparison
        .metrics
        .into_iter()
        .filter(|m| keys.is_empty() || keys.contains(&m.key.as_str()))
        .collect();
    let n = names.len();
    view! {
        <table class="cmp__table">
            <thead><tr>
                <th>"Metric"</th>
                {names.into_iter().enumerate().map(|(i, name)| view! {
                    <th class="num">{if i == 0 { format!("{name} (reference)") } else { name }}</th>
                }).collect_view()}
            </tr></thead>
            <tbody>
                {rows.into_iter().map(|m| view! {
                    <tr data-metric=m.key.clone()>
                        <td>{m.label.clone()}</td>
                        {(0..n).map(|i| cell(&m, i)).collect_view()}
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// What changed, in words: behaviour first (verdicts, levels, failure kinds), then the
/// latency shifts that matter.
#[component]
pub fn ChangeSummary(comparison: Comparison) -> impl IntoView {
    let empty = comparison.headlines.is_empty() && comparison.behaviour.is_empty();
    view! {
        <ul class="cmp__changes">
            {comparison.behaviour.into_iter().map(|b| view! { <li class="cmp__behaviour">{b}</li> }).collect_view()}
            {comparison.headlines.into_iter().map(|h| view! { <li class="cmp__headline">{h}</li> }).collect_view()}
            {empty.then(|| view! { <li class="muted">"No change in behaviour beyond the numbers below."</li> })}
        </ul>
    }
}

/// Mann–Whitney rows: is the whole latency distribution shifted?
#[component]
pub fn ShiftTable(comparison: Comparison, names: Vec<String>) -> impl IntoView {
    if comparison.shifts.is_empty() {
        return None;
    }
    Some(view! {
        <table class="cmp__table cmp__shifts">
            <thead><tr>
                <th>"Distribution"</th><th>"Run"</th><th class="num">"samples (ref / run)"</th>
                <th class="num">"P(run slower)"</th><th class="num">"p (Mann–Whitney)"</th><th>"verdict"</th>
            </tr></thead>
            <tbody>
                {comparison.shifts.into_iter().map(move |s| {
                    let name = names.get(s.run).cloned().unwrap_or_default();
                    let verdict = match s.verdict.as_str() {
                        "slower" => "slower",
                        "faster" => "faster",
                        _ => "no meaningful shift",
                    };
                    view! {
                        <tr data-metric=s.metric>
                            <td>{s.metric.clone()}</td>
                            <td>{name}</td>
                            <td class="num">{format!("{} / {}", fmt::count(s.n_a), fmt::count(s.n_b))}</td>
                            <td class="num">{format!("{:.2}", s.prob_slower)}</td>
                            <td class="num">{if s.p_value < 0.0001 { "< 0.0001".to_string() } else { format!("{:.4}", s.p_value) }}</td>
                            <td>{verdict}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    })
}
