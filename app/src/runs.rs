//! The session's runs: "New run", and the list named "Runs", newest first,
//! each with its start, state, steps, peak and when it began, and buttons of its own
//! ("Open run 27", "Pause run 27", "Remove run 27"). The run shown is
//! described from the page's own snapshot (live); the others from the
//! stream's list (at most a second old).

use leptos::prelude::*;
use shared::{
    group_digits,
    job::{JobBrief, Listed},
    wire::{Command, Status},
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
    let shown = move |listed: &Listed| {
        let shows = |run: &Option<String>| run.as_ref() == Some(&listed.id);
        state.run.with(shows) || state.search.with(shows)
    };
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
    // The Collatz run shown is described as the page shows it, step by step.
    let live = move || {
        let mut entry = entry.get();
        let is_main = state.run.with(|run| run.as_ref() == Some(&entry.id));
        if shown.get() && is_main {
            state.snapshot.with(|snapshot| {
                entry.status = snapshot.status;
                entry.failure = snapshot.failure;
                entry.started_at = snapshot.started_at;
                entry.steps = snapshot.run.as_ref().map_or(0, |run| run.steps);
                entry.run = snapshot.run.as_ref().map(|run| {
                    JobBrief::Collatz(shared::wire::RunBrief {
                        start: run.start.clone(),
                        peak: run.peak.clone(),
                    })
                });
            });
        }
        entry
    };
    // "run 27", "search 1–1,000", "run with no number yet".
    let name = move || match live().run {
        None => "with no number yet".to_owned(),
        Some(JobBrief::Collatz(run)) => group_digits(&run.start),
        Some(JobBrief::Search(search)) => range(search.from, search.to),
    };
    let noun = move || match live().run {
        Some(JobBrief::Search(_)) => "search",
        _ => "run",
    };
    let open = move |_| {
        let listed = entry.get_untracked();
        match listed.run {
            Some(JobBrief::Search(_)) => state.search.set(Some(listed.id)),
            _ => state.open(Some(listed.id)),
        }
    };
    let toggle = move |_| {
        let listed = live();
        let command = Command::SetRunning {
            running: listed.status != Status::Running,
        };
        state
            .send
            .run((Some(listed.id), command, crate::commands::ignore()));
    };
    let remove = move |_| {
        error.set(None);
        let id = entry.get_untracked().id;
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            match crate::api::remove_run(id.clone()).await {
                Ok(()) => {
                    state.runs.update(|runs| runs.retain(|run| run.id != id));
                    if state.search.get_untracked().as_ref() == Some(&id) {
                        state.search.set(None);
                    }
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
                <span class="run-start">{move || match live().run {
                    None => "No number yet".to_owned(),
                    Some(JobBrief::Collatz(run)) => group_digits(&run.start),
                    Some(JobBrief::Search(search)) => format!("Search {}", range(search.from, search.to)),
                }}</span>
                " · "
                <span class="run-state">{move || state_words(live().status)}</span>
            </span>
            <span class="run-facts">{move || facts(&live())}</span>
            <span class="run-actions">
                {move || (!shown.get()).then(|| view! {
                    <button type="button" on:click=open>{format!("Open {} {}", noun(), name())}</button>
                })}
                {move || pausable().then(|| view! {
                    <button type="button" on:click=toggle>
                        {format!("{} {} {}", if live().status == Status::Running { "Pause" } else { "Resume" }, noun(), name())}
                    </button>
                })}
                <button type="button" class="cancel" on:click=remove>{move || format!("Remove {} {}", noun(), name())}</button>
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

/// A search's range in words: "1–1,000,000".
fn range(from: u64, to: u64) -> String {
    format!(
        "{}–{}",
        group_digits(&from.to_string()),
        group_digits(&to.to_string())
    )
}

/// Its steps and peak (a search: starts checked and records), and when it
/// began: "111 steps · peak 9,232 · started 2 Dec 2026, 05:14 UTC".
fn facts(listed: &Listed) -> String {
    let facts = match &listed.run {
        None => return String::new(),
        Some(JobBrief::Collatz(run)) => format!(
            "{} steps · peak {}",
            group_digits(&listed.steps.to_string()),
            group_digits(&run.peak)
        ),
        Some(JobBrief::Search(search)) => format!(
            "{} of {} starts checked · {} records",
            group_digits(&search.checked.to_string()),
            group_digits(&(search.to - search.from + 1).to_string()),
            search.records
        ),
    };
    match listed.started_at {
        Some(at) => format!("{facts} · started {}", shared::when::utc(at)),
        None => facts,
    }
}
