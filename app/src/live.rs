//! (hydrate only) Follows a live run: an `EventSource` on its events stream whose
//! `snapshot` events update a signal and whose `done` event closes it and asks the page
//! to refetch the stored result. Closed on unmount.

use engine::Snapshot;
use leptos::prelude::*;
use wasm_bindgen::{closure::Closure, JsCast};
use web_sys::{EventSource, MessageEvent};

/// Subscribes; `on_done` runs once when the server says the run has finished.
/// `url`: `/api/runs/{id}/events`, or `/share/{id}/events` on a share link.
pub(crate) fn follow(url: &str, live: RwSignal<Option<Snapshot>>, on_done: impl Fn() + 'static) {
    let Ok(es) = EventSource::new(url) else {
        return;
    };
    let on_snapshot = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
        if let Some(text) = ev.data().as_string() {
            if let Ok(s) = serde_json::from_str::<Snapshot>(&text) {
                live.try_set(Some(s));
            }
        }
    });
    let _ = es.add_event_listener_with_callback("snapshot", on_snapshot.as_ref().unchecked_ref());
    on_snapshot.forget();
    let closer = es.clone();
    let on_end = Closure::<dyn FnMut(MessageEvent)>::new(move |_: MessageEvent| {
        closer.close();
        on_done();
    });
    let _ = es.add_event_listener_with_callback("done", on_end.as_ref().unchecked_ref());
    on_end.forget();
    let guard = send_wrapper::SendWrapper::new(es);
    on_cleanup(move || guard.close());
}
