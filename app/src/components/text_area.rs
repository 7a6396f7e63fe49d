//! `<TextArea>`: a `<textarea>` whose text is always text. tachys 0.2 writes a
//! textarea's children into server-rendered HTML without escaping them (the trailing
//! `false` of `textarea` in tachys `src/html/element/elements.rs`), so a run note or a
//! saved plan holding `</textarea><h1>…<meta http-equiv=refresh …>` became live markup
//! on `/runs/{id}` and `/plans/{id}` (attack 4). Every textarea in the app is this one.
use leptos::prelude::*;

/// A multi-line text field showing `text`.
#[component]
pub fn TextArea(
    /// The form field's name.
    name: &'static str,
    /// What the field holds when the page is rendered.
    #[prop(into)]
    text: String,
    class: &'static str,
    rows: u32,
    /// Turn the browser's spell checker off (plans are code, not prose).
    #[prop(optional)]
    no_spellcheck: bool,
    /// For views that read or replace the text after hydration.
    #[prop(optional)]
    field_ref: NodeRef<leptos::html::Textarea>,
) -> impl IntoView {
    view! {
        <textarea node_ref=field_ref name=name class=class rows=rows spellcheck=no_spellcheck.then_some("false")>{shown(text)}</textarea>
    }
}

/// On the server, the text as HTML: `&`, `<` and `>` escaped, which the browser decodes
/// back (a textarea's content is RCDATA: entities are decoded, tags are not parsed), so
/// the field holds exactly `text`.
#[cfg(feature = "ssr")]
fn shown(text: String) -> String {
    if !text.contains(['&', '<', '>']) {
        return text;
    }
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// In the browser, the text as it is: it becomes a text node, never parsed as HTML, and
/// hydration claims the text node the server sent without rewriting it.
#[cfg(not(feature = "ssr"))]
fn shown(text: String) -> String {
    text
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;

    #[test]
    fn markup_in_the_text_is_escaped_on_the_server() {
        let html = Owner::new().with(|| {
            view! { <TextArea name="note" text="</textarea><h1>&amp;" class="c" rows=2/> }.to_html()
        });
        assert!(
            html.contains("&lt;/textarea&gt;&lt;h1&gt;&amp;amp;</textarea>"),
            "{html}"
        );
        assert!(!html.contains("<h1>"), "{html}");
    }
}
