//! `<Chart>`: a figure whose plot is drawn by uPlot after hydration. Server-rendered
//! pages show the caption and an empty frame; the tables carry the numbers.
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
    #[cfg(not(feature = "hydrate"))]
    let _ = spec;
    view! {
        <figure class="chart" data-chart=id>
            <figcaption class="chart__title">{title}</figcaption>
            <div class="chart__plot" node_ref=node></div>
        </figure>
    }
}
