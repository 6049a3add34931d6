//! Hailstone's user interface: one page, rendered on the server (`ssr`) and
//! hydrated in the browser (`hydrate`).

pub mod api;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    StaticSegment,
};

/// The HTML document around [`App`], rendered by the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="stylesheet" id="leptos" href=options.css_path()/>
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

/// The application: the Collatz page at `/`.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();

    view! {
        <Title text="Hailstone · Collatz Conjecture"/>
        <Router>
            <Routes fallback=|| view! { <p class="not-found">"Page not found."</p> }>
                <Route path=StaticSegment("") view=CollatzPage/>
            </Routes>
        </Router>
    }
}

/// The Collatz page.
#[component]
fn CollatzPage() -> impl IntoView {
    // Effects run in the browser only, so this flips once the wasm has
    // hydrated the page; the end-to-end tests wait for it.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));

    view! {
        <main class="page" data-hydrated=move || hydrated.get().to_string()>
            <h1>
                <a href="https://en.wikipedia.org/wiki/Collatz_conjecture">"Collatz Conjecture"</a>
            </h1>
            <p>"Enter a number below"</p>
        </main>
    }
}

/// The browser's entry point, called by the script that `HydrationScripts` emits.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
