//! The Collatz page: controls, result list, stats and chart, kept in step
//! with the server through the event stream.

use leptos::{either::Either, prelude::*};

use crate::{
    api::{load_page, JsonBytes, Page},
    chart::Chart,
    controls::{CancelButton, IntervalPicker, NumberInput, RunningSwitch, UnwatchedPicker},
    notify::{AwayNotice, NotifySwitch},
    results::{ResultList, Stats},
    runs::RunList,
    search::RecordSearch,
    state::{Link, PageState},
    values::Values,
};

/// The page: loads the session's state (on the server, before the HTML is
/// sent, so a reload mid-run shows the list at once), then hands over to
/// [`Collatz`].
#[component]
pub fn CollatzPage() -> impl IntoView {
    // Effects run in the browser only, so this flips once the wasm has
    // hydrated the page; the end-to-end tests wait for it.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    let page = Resource::<_, JsonBytes>::new_with_options(|| (), |_| load_page(asked_run()), false);

    view! {
        <main class="page" data-hydrated=move || hydrated.get().to_string()>
            <header>
                <h1>
                    <a href="https://en.wikipedia.org/wiki/Collatz_conjecture">"Collatz Conjecture"</a>
                </h1>
                <p class="lede">"Enter a number below"</p>
            </header>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        Ok(page) => Either::Left(view! { <Collatz page/> }),
                        Err(error) => Either::Right(view! { <p class="fatal" role="alert">{error.to_string()}</p> }),
                    }
                })}
            </Suspense>
        </main>
    }
}

/// The run the page's address names (`?run=<id>`), if any: the one opened
/// when the page was last left (its address follows the run opened).
fn asked_run() -> Option<String> {
    #[cfg(feature = "ssr")]
    let query = use_context::<http::request::Parts>()
        .and_then(|parts| parts.uri.query().map(str::to_owned));
    #[cfg(not(feature = "ssr"))]
    let query = web_sys::window().and_then(|w| w.location().search().ok());
    query?
        .trim_start_matches('?')
        .split('&')
        .find_map(|pair| pair.strip_prefix("run="))
        .map(str::to_owned)
}

/// Everything below the heading, for one loaded session.
#[component]
fn Collatz(page: Page) -> impl IntoView {
    let attached = RwSignal::new(false);
    let rejoin = RwSignal::new(0);
    let state = PageState {
        snapshot: RwSignal::new(page.snapshot),
        link: RwSignal::new(Link::Connecting),
        attached,
        rejoin,
        max_digits: StoredValue::new(page.max_digits),
        window: StoredValue::new(page.window),
        send: crate::commands::sender(attached, rejoin),
        run: RwSignal::new(page.run),
        search: RwSignal::new(crate::search::newest_search(&page.runs)),
        runs: RwSignal::new(page.runs),
        max_input_chars: StoredValue::new(page.max_input_chars),
    };
    provide_context(state);
    provide_context(Values::new(state));
    #[cfg(feature = "hydrate")]
    crate::stream::subscribe(state);

    view! {
        <section class="controls" aria-label="Controls">
            <NumberInput/>
            <div class="row">
                <RunningSwitch/>
                <CancelButton/>
                <IntervalPicker/>
                <UnwatchedPicker/>
                <LinkIndicator/>
            </div>
            <NotifySwitch/>
            <AwayNotice/>
        </section>
        <Stats/>
        <Chart/>
        <ResultList/>
        <RecordSearch/>
        <RunList/>
    }
}

/// "Live" while the stream delivers, "Reconnecting…" while it is down.
#[component]
fn LinkIndicator() -> impl IntoView {
    let link = expect_context::<PageState>().link;
    let label = move || match link.get() {
        Link::Connecting => "Connecting…",
        Link::Live => "Live",
        Link::Reconnecting => "Reconnecting…",
    };
    let class = move || match link.get() {
        Link::Live => "link live",
        _ => "link down",
    };
    view! {
        <p class=class role="status" aria-live="polite" data-link=move || match link.get() {
            Link::Connecting => "connecting",
            Link::Live => "live",
            Link::Reconnecting => "reconnecting",
        }>
            <span class="dot" aria-hidden="true"></span>
            {label}
        </p>
    }
}
