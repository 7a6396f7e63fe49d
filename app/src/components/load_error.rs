//! What a page shows when its data could not be loaded.
use leptos::prelude::*;

use crate::api::ApiError;

/// The error, said plainly. Rendered on the server it also sets the page's status
/// (an unknown run or revoked share link is a 404, a bad comparison a 400).
#[component]
pub fn LoadError(error: ApiError) -> impl IntoView {
    let status = error.status();
    #[cfg(feature = "ssr")]
    crate::api::set_status(status);
    view! { <p class="error" data-status=status>{move || error.to_string()}</p> }
}
