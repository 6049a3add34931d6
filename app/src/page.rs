//! The Collatz page: controls, result list, stats and chart, kept in step
//! with the server through the event stream.

use leptos::prelude::*;
use shared::wire::{Snapshot, Status};

use crate::{
    api::{load_page, Page},
    chart::Chart,
    controls::{IntervalPicker, NumberInput, RunningSwitch},
    results::{ResultList, Stats},
};

/// The state of the event stream, shown as a live indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))] // set by the stream, in the browser
pub enum Link {
    /// Not yet open (before hydration, or while opening).
    Connecting,
    /// Open and delivering updates.
    Live,
    /// Dropped; the browser is reconnecting.
    Reconnecting,
}

/// What every part of the page reads and writes.
#[derive(Clone, Copy)]
pub struct PageState {
    /// The session as the server last described it.
    pub snapshot: RwSignal<Snapshot>,
    /// The event stream's state.
    pub link: RwSignal<Link>,
    /// Whether the stream follows a session (a visitor has none until the
    /// first command starts one).
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))] // the stream's, in the browser
    pub attached: RwSignal<bool>,
    /// Bumped when a command succeeded while the stream followed no
    /// session: the command started one, so the stream reopens to follow it.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    pub rejoin: RwSignal<u64>,
    /// The most digits a number may have (the server's setting).
    pub max_digits: StoredValue<usize>,
    /// The recent values kept, as the server keeps them.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    pub window: StoredValue<shared::wire::Window>,
    /// Sends a command; commands of one page leave in the order given.
    pub send: Callback<crate::commands::Queued>,
}

/// The page: loads the session's state (on the server, before the HTML is
/// sent, so a reload mid-run shows the list at once), then hands over to
/// [`Collatz`].
#[component]
pub fn CollatzPage() -> impl IntoView {
    // Effects run in the browser only, so this flips once the wasm has
    // hydrated the page; the end-to-end tests wait for it.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    let page = Resource::new(|| (), |_| load_page());

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
                        Ok(page) => view! { <Collatz page/> }.into_any(),
                        Err(error) => view! { <p class="fatal" role="alert">{error.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </main>
    }
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
    };
    provide_context(state);
    #[cfg(feature = "hydrate")]
    crate::stream::subscribe(state);

    view! {
        <section class="controls" aria-label="Controls">
            <NumberInput/>
            <div class="row">
                <RunningSwitch/>
                <IntervalPicker/>
                <LinkIndicator/>
            </div>
        </section>
        <Stats/>
        <Chart/>
        <ResultList/>
    }
    // Erased, so the type of the whole page stays shallow enough for the
    // compiler's default recursion limit in every crate that renders it.
    .into_any()
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
        <p class=class role="status" aria-live="polite" data-link=move || format!("{:?}", link.get()).to_lowercase()>
            <span class="dot" aria-hidden="true"></span>
            {label}
        </p>
    }
}

/// The status line under the switch.
pub fn describe(status: Status, steps: u64) -> String {
    match status {
        Status::Idle => "Enter a number to start.".to_owned(),
        Status::Running => format!("{} steps so far", shared::group_digits(&steps.to_string())),
        Status::Paused => "Paused".to_owned(),
        Status::Finished => format!(
            "Reached 1 in {} steps.",
            shared::group_digits(&steps.to_string())
        ),
    }
}
