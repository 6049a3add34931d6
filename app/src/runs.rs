//! The session's runs: "New run", and the list named "Runs", newest first,
//! each with its start, state, steps, peak and when it began, and buttons of its own
//! ("Open run 27", "Pause run 27", "Remove run 27"). The run shown is
//! described from the page's own snapshot (live); the others from the
//! stream's list (at most a second old).

use leptos::prelude::*;
use shared::{
    group_digits,
    wire::{Command, Listed, Status},
};

use crate::state::PageState;

/// "New run" and the list of runs.
#[component]
pub fn RunList() -> impl IntoView {
    let state = expect_context::<PageState>();
    let error = RwSignal::new(None::<String>);
    let add = move |_| {
        error.set(None);
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            match crate::api::new_run().await {
                Ok(run) => state.open(Some(run)),
                Err(refused) => error.set(Some(refused.to_string())),
            }
        });
    };
    let shown = move |listed: &Listed| state.run.with(|run| run.as_ref() == Some(&listed.id));
    view! {
        <section class="runs" aria-labelledby="runs-heading">
            <div class="runs-head">
                <h2 id="runs-heading">"Runs"</h2>
                <button type="button" class="new-run" on:click=add disabled=move || !state.attached.get()>
                    "New run"
                </button>
            </div>
            <p class="error" role="alert">{error}</p>
            <ul class="run-list" aria-label="Runs">
                <For
                    each=move || state.runs.get()
                    key=|listed| listed.id.clone()
                    children=move |listed| {
                        let id = listed.id.clone();
                        let entry = Memo::new(move |_| {
                            state
                                .runs
                                .with(|runs| runs.iter().find(|run| run.id == id).cloned())
                                .unwrap_or_else(|| listed.clone())
                        });
                        view! { <RunItem entry shown=Signal::derive(move || shown(&entry.get())) error/> }
                    }
                />
            </ul>
        </section>
    }
}

/// One run of the list.
#[component]
fn RunItem(
    entry: Memo<Listed>,
    shown: Signal<bool>,
    error: RwSignal<Option<String>>,
) -> impl IntoView {
    let state = expect_context::<PageState>();
    // The run shown is described as the page shows it, step by step.
    let live = move || {
        let mut entry = entry.get();
        if shown.get() {
            state.snapshot.with(|snapshot| {
                entry.status = snapshot.status;
                entry.failure = snapshot.failure;
                entry.started_at = snapshot.started_at;
                entry.steps = snapshot.run.as_ref().map_or(0, |run| run.steps);
                entry.run = snapshot.run.as_ref().map(|run| shared::wire::RunBrief {
                    start: run.start.clone(),
                    peak: run.peak.clone(),
                });
            });
        }
        entry
    };
    let name = move || {
        live().run.map_or_else(
            || "with no number yet".to_owned(),
            |run| group_digits(&run.start),
        )
    };
    let open = move |_| state.open(Some(entry.get_untracked().id));
    let toggle = move |_| {
        let listed = live();
        let command = Command::SetRunning {
            running: listed.status != Status::Running,
        };
        state
            .send
            .run((Some(listed.id), command, Callback::new(|_| {})));
    };
    let remove = move |_| {
        error.set(None);
        let id = entry.get_untracked().id;
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            match crate::api::remove_run(id.clone()).await {
                Ok(()) => {
                    state.runs.update(|runs| runs.retain(|run| run.id != id));
                    if state.run.get_untracked().as_ref() == Some(&id) {
                        let next = state
                            .runs
                            .with_untracked(|runs| runs.first().map(|run| run.id.clone()));
                        state.open(next);
                    }
                }
                Err(refused) => error.set(Some(refused.to_string())),
            }
        });
        #[cfg(not(feature = "hydrate"))]
        let _ = id;
    };
    let pausable = move || matches!(live().status, Status::Running | Status::Paused);
    view! {
        <li class="run-item" aria-current=move || shown.get().then_some("true") data-status=move || live().status.name()>
            <span class="run-what">
                <span class="run-start">{move || live().run.map_or_else(|| "No number yet".to_owned(), |run| group_digits(&run.start))}</span>
                " · "
                <span class="run-state">{move || state_words(live().status)}</span>
            </span>
            <span class="run-facts">{move || facts(&live())}</span>
            <span class="run-actions">
                {move || (!shown.get()).then(|| view! {
                    <button type="button" on:click=open>{format!("Open run {}", name())}</button>
                })}
                {move || pausable().then(|| view! {
                    <button type="button" on:click=toggle>
                        {format!("{} run {}", if live().status == Status::Running { "Pause" } else { "Resume" }, name())}
                    </button>
                })}
                <button type="button" class="cancel" on:click=remove>{move || format!("Remove run {}", name())}</button>
            </span>
        </li>
    }
}

/// A run's state in a word or two.
fn state_words(status: Status) -> &'static str {
    match status {
        Status::Idle => "Not started",
        Status::Running => "Running",
        Status::Paused => "Paused",
        Status::Finished => "Finished",
        Status::Cancelled => "Cancelled",
        Status::Failed => "Failed",
    }
}

/// Its steps, peak and start: "111 steps · peak 9,232 · started 2 Dec
/// 2026, 05:14 UTC".
fn facts(listed: &Listed) -> String {
    let steps = group_digits(&listed.steps.to_string());
    let Some(run) = &listed.run else {
        return String::new();
    };
    let facts = format!("{steps} steps · peak {}", group_digits(&run.peak));
    match listed.started_at {
        Some(at) => format!("{facts} · started {}", shared::when::utc(at)),
        None => facts,
    }
}
