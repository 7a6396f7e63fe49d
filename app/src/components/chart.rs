//! `<Chart>`: a figure whose plot is drawn by uPlot after hydration. Server-rendered
//! pages show the caption and an empty frame; the tables carry the numbers. In the HTML
//! report (no wasm) each chart carries its spec for the report's script ([`EmbedSpecs`]).
use leptos::prelude::*;

use crate::charts::ChartSpec;

#[cfg(feature = "hydrate")]
mod js {
    use wasm_bindgen::prelude::*;

    #[wasm_bindgen]
    extern "C" {
        #[wasm_bindgen(js_namespace = socketswarmCharts, js_name = render, catch)]
        pub(super) fn render(el: &web_sys::HtmlElement, spec: &str) -> Result<(), JsValue>;
    }
}

/// Provided only by the HTML report's renderer (`server::report`): each chart then
/// writes its spec beside its plot (`<script type="application/json" class="chart__spec">`)
/// for the report's own script to draw, since a report has no wasm. Pages never provide
/// it (they draw after hydration), so page markup and hydration are unchanged.
#[derive(Debug, Clone, Copy)]
pub struct EmbedSpecs;

/// JSON safe to embed in a `<script>`. Escaping `</` alone is not enough: `<!--` then
/// `<script` switches the HTML parser into the "script data double escaped" state, where
/// the next `</script>` no longer ends the element and the rest of the page becomes
/// script (an imported outcome named `<!--<script>` blanked every chart). So every `<`,
/// `>` and `&` becomes a `\uXXXX` escape, which means the same inside a JSON string and
/// can never start markup; U+2028/U+2029 too, for JavaScript engines older than ES2019.
/// Characters outside strings are JSON punctuation, so escaping the whole text is safe.
pub fn script_json(v: &impl serde::Serialize) -> String {
    use std::fmt::Write as _;
    let json = serde_json::to_string(v).unwrap_or_else(|_| "null".into());
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

#[component]
pub fn Chart(
    title: &'static str,
    #[prop(into)] spec: Signal<ChartSpec>,
    #[prop(optional)] id: &'static str,
) -> impl IntoView {
    let node = NodeRef::<leptos::html::Div>::new();
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        let spec = spec.get();
        if let (Some(el), Ok(json)) = (node.get(), serde_json::to_string(&spec)) {
            let _ = js::render(&el, &json);
        }
    });
    let embedded = use_context::<EmbedSpecs>().map(|_| script_json(&spec.get_untracked()));
    view! {
        <figure class="chart" data-chart=id>
            <figcaption class="chart__title">{title}</figcaption>
            <div class="chart__plot" node_ref=node></div>
            {embedded.map(|json| view! { <script type="application/json" class="chart__spec" inner_html=json></script> })}
        </figure>
    }
}

#[cfg(test)]
mod tests {
    use super::script_json;

    #[test]
    fn script_json_cannot_open_or_close_markup() {
        let j = script_json(&["<!--<script>", "</script>&", "\u{2028}\u{2029}"]);
        assert_eq!(
            j,
            r#"["\u003c!--\u003cscript\u003e","\u003c/script\u003e\u0026","\u2028\u2029"]"#
        );
        let back: Vec<String> = serde_json::from_str(&j).unwrap_or_default();
        assert_eq!(back, ["<!--<script>", "</script>&", "\u{2028}\u{2029}"]);
    }
}
