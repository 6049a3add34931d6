//! The controls: the number input, the Running switch, the step interval,
//! and what happens to the run while no page of it is open.

use std::time::Duration;

use leptos::prelude::*;
use shared::{
    input::check_number,
    wire::{Command, Status, Unwatched},
};

use crate::state::{describe, PageState};

/// How long typing must pause before the number is sent.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// The **Number** input: sent 500 ms after the last keystroke, or at once
/// on Enter; validated here first with the server's own rules. A server
/// update never overwrites what the user is typing.
#[component]
pub fn NumberInput() -> impl IntoView {
    let state = expect_context::<PageState>();
    let start = move || {
        state
            .snapshot
            .with(|s| s.run.as_ref().map(|run| run.start.clone()))
    };
    let draft = RwSignal::new(untrack(start).unwrap_or_default());
    let error = RwSignal::new(None::<String>);
    // Typed but not yet sent.
    let dirty = StoredValue::new(false);
    let focused = StoredValue::new(false);
    let timer = StoredValue::new(None::<TimeoutHandle>);
    // Which send the shown error belongs to: only the latest counts.
    let sent = StoredValue::new(0u64);
    // The run shown when the user typed: what is typed is for it.
    let target = StoredValue::new(None::<String>);

    let cancel_timer = move || {
        if let Some(handle) = timer.get_value() {
            handle.clear();
            timer.set_value(None);
        }
    };
    let commit = move || {
        cancel_timer();
        if !dirty.get_value() {
            return;
        }
        dirty.set_value(false);
        let text = draft.get_untracked();
        if let Err(reason) = check_number(&text, state.max_digits.get_value()) {
            error.set(Some(reason.to_string()));
            return;
        }
        let this = sent.get_value() + 1;
        sent.set_value(this);
        let reply: crate::commands::Reply = Box::new(move |answer| {
            if sent.try_get_value() == Some(this) {
                error.set(answer.err().map(|e| e.to_string()));
            }
        });
        state
            .send
            .run((target.get_value(), Command::SetNumber { text }, reply));
    };
    let on_input = move |event| {
        // Sent to the run shown while typing, whatever is open by then.
        target.set_value(state.run.get_untracked());
        draft.set(event_target_value(&event));
        dirty.set_value(true);
        error.set(None);
        cancel_timer();
        timer.set_value(set_timeout_with_handle(commit, DEBOUNCE).ok());
    };
    let on_keydown = move |event: leptos::ev::KeyboardEvent| {
        if event.key() == "Enter" {
            event.prevent_default();
            commit();
        }
    };
    // Follow a run started elsewhere (another tab), and show the start of
    // a run opened, unless the user is busy here.
    Effect::new(move |previous: Option<(Option<String>, Option<String>)>| {
        let (run, start) = (state.run.get(), start());
        let busy = focused.get_value() || dirty.get_value();
        match previous {
            Some((shown, _)) if shown != run && !busy => {
                draft.set(start.clone().unwrap_or_default());
                error.set(None);
            }
            Some(_) if !busy => {
                if let Some(start) = &start {
                    draft.set(start.clone());
                }
            }
            _ => {}
        }
        (run, start)
    });

    view! {
        <div class="field">
            <label for="number">"Number"</label>
            <input
                id="number"
                name="number"
                type="text"
                inputmode="numeric"
                autocomplete="off"
                spellcheck="false"
                placeholder="27"
                aria-describedby="number-error"
                aria-invalid=move || error.with(Option::is_some).to_string()
                prop:value=move || draft.get()
                on:input=on_input
                on:keydown=on_keydown
                on:focus=move |_| focused.set_value(true)
                on:blur=move |_| focused.set_value(false)
            />
            <p id="number-error" class="error" aria-live="polite">
                {move || error.get()}
            </p>
        </div>
    }
}

/// The **Running** switch, showing the server's status.
#[component]
pub fn RunningSwitch() -> impl IntoView {
    let state = expect_context::<PageState>();
    let status = move || state.snapshot.with(|s| s.status);
    let running = move || status() == Status::Running;
    let toggle = move |_| {
        let command = Command::SetRunning {
            running: !running(),
        };
        state.command(command);
    };
    view! {
        <div class="switch-field">
            <button
                id="running"
                type="button"
                role="switch"
                class="switch"
                aria-checked=move || running().to_string()
                aria-describedby="run-status"
                on:click=toggle
            >
                <span class="track" aria-hidden="true"><span class="thumb"></span></span>
                <span class="switch-label">"Running"</span>
            </button>
            <p id="run-status" class="run-status" data-status=move || status().name()>
                {move || state.snapshot.with(describe)}
            </p>
        </div>
    }
}

/// "Cancel run": ends a running, paused or failed run for good (the switch
/// only pauses it). Its values stay; a new number starts a new run.
#[component]
pub fn CancelButton() -> impl IntoView {
    let state = expect_context::<PageState>();
    let cancellable = move || state.snapshot.with(|s| s.status.cancellable());
    let cancel = move |_| state.command(Command::Cancel);
    view! {
        <button type="button" class="cancel" disabled=move || !cancellable() on:click=cancel>
            "Cancel run"
        </button>
    }
}

/// The intervals offered, in milliseconds, and their labels.
const INTERVALS: [(u32, &str); 7] = [
    (1000, "1 s"),
    (500, "0.5 s"),
    (250, "0.25 s"),
    (100, "0.1 s"),
    (20, "20 ms"),
    (1, "1 ms"),
    (0, "As fast as possible"),
];

/// The step interval.
#[component]
pub fn IntervalPicker() -> impl IntoView {
    let state = expect_context::<PageState>();
    let current = move || state.snapshot.with(|s| s.interval_ms);
    let on_change = move |event| {
        if let Ok(ms) = event_target_value(&event).parse::<u32>() {
            state.command(Command::SetInterval { ms });
        }
    };
    view! {
        <div class="field interval">
            <label for="interval">"Step every"</label>
            <select id="interval" name="interval" on:change=on_change prop:value=move || current().to_string()>
                {move || {
                    let current = current();
                    let known = INTERVALS.iter().any(|(ms, _)| *ms == current);
                    let custom = (!known).then(|| view! { <option value=current.to_string()>{format!("{current} ms")}</option> });
                    view! {
                        {custom}
                        {INTERVALS
                            .iter()
                            .map(|(ms, label)| view! {
                                <option value=ms.to_string() selected=*ms == current>{*label}</option>
                            })
                            .collect_view()}
                    }
                }}
            </select>
        </div>
    }
}

/// The policies offered for a run nobody watches, and their labels.
const UNWATCHED: [(Unwatched, &str); 7] = [
    (Unwatched::Keep, "Keep running"),
    (Unwatched::Pause { minutes: 1 }, "Pause after 1 min"),
    (Unwatched::Pause { minutes: 10 }, "Pause after 10 min"),
    (Unwatched::Pause { minutes: 60 }, "Pause after 1 h"),
    (Unwatched::Cancel { minutes: 1 }, "Cancel after 1 min"),
    (Unwatched::Cancel { minutes: 10 }, "Cancel after 10 min"),
    (Unwatched::Cancel { minutes: 60 }, "Cancel after 1 h"),
];

/// An option's value: `keep`, `pause-10`, `cancel-60`.
fn unwatched_value(policy: Unwatched) -> String {
    match policy {
        Unwatched::Keep => "keep".into(),
        Unwatched::Pause { minutes } => format!("pause-{minutes}"),
        Unwatched::Cancel { minutes } => format!("cancel-{minutes}"),
    }
}

/// The policy an option's value names.
fn unwatched_policy(value: &str) -> Option<Unwatched> {
    let (then, minutes) = match value.split_once('-') {
        Some((then, minutes)) => (then, minutes.parse().ok()?),
        None => (value, 0),
    };
    match then {
        "keep" => Some(Unwatched::Keep),
        "pause" => Some(Unwatched::Pause { minutes }),
        "cancel" => Some(Unwatched::Cancel { minutes }),
        _ => None,
    }
}

/// What happens to the run while no page of it is open.
#[component]
pub fn UnwatchedPicker() -> impl IntoView {
    let state = expect_context::<PageState>();
    view! {
        <UnwatchedSelect id="unwatched" label="When no page is open"
            current=Signal::derive(move || state.snapshot.with(|s| s.unwatched))
            disabled=Signal::stored(false)
            pick=move |policy| state.command(Command::SetUnwatched { policy })/>
    }
}

/// A select of the policies for a run nobody watches, showing `current`
/// (a policy the list does not offer, say from `Leptos.toml`, as an option
/// of its own) and calling `pick` with the one chosen.
#[component]
pub fn UnwatchedSelect(
    id: &'static str,
    label: &'static str,
    #[prop(into)] current: Signal<Unwatched>,
    #[prop(into)] disabled: Signal<bool>,
    pick: impl Fn(Unwatched) + Send + Sync + 'static,
) -> impl IntoView {
    let on_change = move |event| {
        if let Some(policy) = unwatched_policy(&event_target_value(&event)) {
            pick(policy);
        }
    };
    view! {
        <div class="field interval">
            <label for=id>{label}</label>
            <select id=id name=id on:change=on_change prop:value=move || unwatched_value(current.get())
                disabled=move || disabled.get()>
                {move || {
                    let current = current.get();
                    let known = UNWATCHED.iter().any(|(policy, _)| *policy == current);
                    let custom = (!known).then(|| {
                        let label = match current {
                            Unwatched::Pause { minutes } => format!("Pause after {minutes} min"),
                            Unwatched::Cancel { minutes } => format!("Cancel after {minutes} min"),
                            Unwatched::Keep => "Keep running".to_owned(),
                        };
                        view! { <option value=unwatched_value(current)>{label}</option> }
                    });
                    view! {
                        {custom}
                        {UNWATCHED
                            .iter()
                            .map(|(policy, label)| view! {
                                <option value=unwatched_value(*policy) selected=*policy == current>{*label}</option>
                            })
                            .collect_view()}
                    }
                }}
            </select>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offered_policy_reads_back_from_its_value() {
        for (policy, _) in UNWATCHED {
            assert_eq!(unwatched_policy(&unwatched_value(policy)), Some(policy));
        }
        assert_eq!(unwatched_policy("pause-x"), None);
        assert_eq!(unwatched_policy("later"), None);
    }
}
