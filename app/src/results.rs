//! The run's statistics and the result list.

use leptos::prelude::*;
use shared::group_digits;

use crate::page::PageState;

/// Start, current value, steps and peak of the run.
#[component]
pub fn Stats() -> impl IntoView {
    let state = expect_context::<PageState>();
    let stat = move |pick: fn(&shared::wire::RunView) -> String| {
        move || {
            state
                .snapshot
                .with(|s| s.run.as_ref().map_or_else(|| "–".to_owned(), pick))
        }
    };
    view! {
        <section class="stats" aria-label="Statistics">
            <dl>
                <div><dt>"Start"</dt><dd data-stat="start">{stat(|run| group_digits(&run.start))}</dd></div>
                <div><dt>"Current"</dt><dd data-stat="current">{stat(|run| group_digits(run.current()))}</dd></div>
                <div><dt>"Steps"</dt><dd data-stat="steps">{stat(|run| group_digits(&run.steps.to_string()))}</dd></div>
                <div><dt>"Peak"</dt><dd data-stat="peak">{stat(|run| group_digits(&run.peak))}</dd></div>
            </dl>
        </section>
    }
}

/// The **Results** list: the run's values in order, each numbered by its
/// step. Only the newest values are in the page (the DOM stays small on
/// long runs); the count says how many there are in all.
#[component]
pub fn ResultList() -> impl IntoView {
    let state = expect_context::<PageState>();
    let rows = move || {
        state.snapshot.with(|s| {
            s.run.as_ref().map_or_else(Vec::new, |run| {
                let first = run.first_recent_step();
                run.recent
                    .iter()
                    .enumerate()
                    .map(|(i, value)| (first + i as u64, value.clone()))
                    .collect::<Vec<_>>()
            })
        })
    };
    let total = move || {
        state
            .snapshot
            .with(|s| s.run.as_ref().map_or(0, |run| run.steps + 1))
    };
    // What the list holds against what the run has: they differ once older
    // values have left the window.
    let shown = move || {
        state
            .snapshot
            .with(|s| s.run.as_ref().map_or(0, |run| run.recent.len() as u64))
    };
    let count = move || match (shown(), total()) {
        (_, 0) => "No values yet.".to_owned(),
        (_, 1) => "1 value.".to_owned(),
        (shown, total) if shown == total => format!("{} values.", group_digits(&total.to_string())),
        (shown, total) => format!(
            "The newest {} of {} values.",
            group_digits(&shown.to_string()),
            group_digits(&total.to_string())
        ),
    };
    view! {
        <section class="results" aria-labelledby="results-heading">
            <h2 id="results-heading">"Results"</h2>
            <p class="count" data-count=total>{count}</p>
            <div class="scroller" tabindex="0" aria-label="Results, scrollable">
                <ol role="list" aria-label="Results">
                    <For each=rows key=|(step, value)| (*step, value.clone()) let((step, value))>
                        <li value=step.to_string()>{value}</li>
                    </For>
                </ol>
            </div>
        </section>
    }
}
