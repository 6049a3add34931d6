//! Hailstone's user interface: one page, rendered on the server (`ssr`) and
//! hydrated in the browser (`hydrate`).

pub mod api;
mod chart;
mod commands;
mod controls;
mod notify;
mod page;
mod results;
mod runs;
mod search;
mod state;
#[cfg(feature = "hydrate")]
mod stream;
mod values;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, HashedStylesheet, MetaTags, Title};

pub use page::CollatzPage;

/// The HTML document around [`App`], rendered by the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <meta name="description" content="Watch the Collatz sequence of any number, stepped by a background task on the server."/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <HashedStylesheet options=options.clone() id="leptos"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The application: one page. The server renders it only once every
/// resource is ready (`render_app_async`), so a reload mid-run shows the list
/// in the first HTML.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();

    view! {
        <Title text="Hailstone · Collatz Conjecture"/>
        <CollatzPage/>
    }
}

/// The browser's entry point, called by the script that `HydrationScripts` emits.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
