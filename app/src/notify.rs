//! Told when done: a run of the session that finishes while its tab is
//! hidden (the one shown, or another in the list) marks the tab's title
//! and, when the visitor asked for it (and the browser allows it), raises a
//! notification; runs that finished since this browser last showed them
//! unfinished are said so on the next visit.
//!
//! Permission is asked only when the visitor turns the switch on (a user
//! gesture), and everything else on the page works when it is refused.

use leptos::prelude::*;
use shared::wire::Status;

use crate::state::PageState;

/// What the switch's note says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))] // set in the browser
pub enum Note {
    /// Off (the default, and what the server renders).
    Off,
    /// On, and the browser allows notifications.
    On,
    /// The visitor refused (or blocked) notifications for the site.
    Blocked,
    /// The browser has no notifications.
    Unsupported,
}

impl Note {
    fn text(self) -> &'static str {
        match self {
            Note::Off => "Off: a run that finishes while this tab is hidden marks the tab's title.",
            Note::On => "A notification comes when a run finishes while this tab is hidden.",
            Note::Blocked => {
                "This browser blocks notifications for this site: a run that finishes while this tab is hidden marks the tab's title instead."
            }
            Note::Unsupported => {
                "This browser has no notifications: a run that finishes while this tab is hidden marks the tab's title instead."
            }
        }
    }
}

/// What a finished run is called, in a notification and in the page.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
/// A run of the list that finished, in words: a Collatz run as
/// [`finished`] says, a search by its range and records.
pub fn finished_run(brief: &shared::job::JobBrief, steps: u64) -> String {
    match brief {
        shared::job::JobBrief::Collatz(run) => finished(&run.start, steps),
        shared::job::JobBrief::Search(search) => format!(
            "the search of {}–{} finished with {} records",
            shared::group_digits(&search.from.to_string()),
            shared::group_digits(&search.to.to_string()),
            search.records
        ),
    }
}

/// A Collatz run that finished, in words.
pub fn finished(start: &str, steps: u64) -> String {
    format!(
        "{} reached 1 in {} steps",
        shared::group_digits(start),
        shared::group_digits(&steps.to_string())
    )
}

/// The switch "Notify when finished", its note, and the watch on the run.
#[component]
pub fn NotifySwitch() -> impl IntoView {
    let state = expect_context::<PageState>();
    let note = RwSignal::new(Note::Off);
    #[cfg(feature = "hydrate")]
    browser::watch(state, note);
    #[cfg(not(feature = "hydrate"))]
    let _ = state;
    let toggle = move |_| {
        #[cfg(feature = "hydrate")]
        browser::toggle(note);
    };
    view! {
        <div class="switch-field notify">
            <button
                id="notify"
                type="button"
                role="switch"
                class="switch"
                aria-checked=move || (note.get() == Note::On).to_string()
                aria-describedby="notify-status"
                on:click=toggle
            >
                <span class="track" aria-hidden="true"><span class="thumb"></span></span>
                <span class="switch-label">"Notify when finished"</span>
            </button>
            <p id="notify-status" class="run-status">{move || note.get().text()}</p>
        </div>
    }
}

/// "27 reached 1 in 111 steps while you were away.", when runs this
/// browser last showed unfinished have finished since (several: "27 reached
/// 1 in 111 steps; 97 reached 1 in 118 steps while you were away.").
#[component]
pub fn AwayNotice() -> impl IntoView {
    let away = RwSignal::new(None::<String>);
    #[cfg(feature = "hydrate")]
    browser::away(expect_context::<PageState>(), away);
    move || {
        away.get().map(|text| {
            view! { <p class="away" role="status">{format!("{text} while you were away.")}</p> }
        })
    }
}

/// Whether `status` is one a run can still finish from.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn unfinished(status: Status) -> bool {
    matches!(status, Status::Running | Status::Paused)
}

#[cfg(feature = "hydrate")]
mod browser {
    use leptos::{prelude::*, wasm_bindgen::JsCast};
    use wasm_bindgen::{closure::Closure, JsValue};
    use web_sys::{Notification, NotificationOptions, NotificationPermission, Storage};

    use super::{finished, unfinished, Note};
    use crate::state::PageState;
    use shared::wire::Status;

    /// localStorage: "on" once the visitor turned notifications on.
    const WANTED: &str = "hailstone-notify";
    /// localStorage: the runs this browser last showed unfinished (the one
    /// shown and the others of the list), their ids separated by spaces.
    const UNFINISHED: &str = "hailstone-unfinished";
    /// What the title is prefixed with while a finished run is unseen.
    const MARK: &str = "✓ Finished · ";

    fn storage() -> Option<Storage> {
        window().local_storage().ok().flatten()
    }

    /// The browser's permission, or `None` without notifications.
    fn permission() -> Option<NotificationPermission> {
        js_sys::Reflect::has(&window(), &JsValue::from_str("Notification"))
            .unwrap_or(false)
            .then(Notification::permission)
    }

    /// What the note says, from the visitor's choice and the browser's.
    fn note(wanted: bool) -> Note {
        match permission() {
            None => Note::Unsupported,
            Some(NotificationPermission::Denied) => Note::Blocked,
            Some(NotificationPermission::Granted) if wanted => Note::On,
            Some(_) => Note::Off,
        }
    }

    fn remember(wanted: bool) {
        if let Some(storage) = storage() {
            let _ = storage.set_item(WANTED, if wanted { "on" } else { "off" });
        }
    }

    /// The switch clicked: off, or on (asking the browser first if it has
    /// not been asked: this click is the user gesture it requires).
    pub fn toggle(state: RwSignal<Note>) {
        if state.get_untracked() == Note::On {
            remember(false);
            state.set(Note::Off);
            return;
        }
        match permission() {
            Some(NotificationPermission::Default) => {
                let Ok(asked) = Notification::request_permission() else {
                    state.set(Note::Blocked);
                    return;
                };
                leptos::task::spawn_local(async move {
                    let _ = wasm_bindgen_futures::JsFuture::from(asked).await;
                    let granted = permission() == Some(NotificationPermission::Granted);
                    remember(granted);
                    state.set(note(granted));
                });
            }
            _ => {
                remember(true);
                state.set(note(true));
            }
        }
    }

    /// Sets the note from what was chosen before, and watches the run: when
    /// it finishes while the tab is hidden, marks the title and notifies;
    /// the title comes back when the tab is shown.
    pub fn watch(page: PageState, state: RwSignal<Note>) {
        let wanted = storage()
            .and_then(|s| s.get_item(WANTED).ok().flatten())
            .is_some_and(|v| v == "on");
        // After hydration, so the page hydrates as the server rendered it.
        Effect::new(move |_| state.set(note(wanted)));
        Effect::new(move |previous: Option<Option<(Status, String)>>| {
            let now = page.snapshot.with(|s| {
                s.run
                    .as_ref()
                    .map(|run| (s.status, run.start.clone(), run.steps))
            });
            let (status, start, steps) = now?;
            let before = previous.flatten();
            let just_finished = status == Status::Finished
                && before.is_some_and(|(s, was)| unfinished(s) && was == start);
            if just_finished {
                tell(state, "hailstone", &reached(&start), &in_steps(steps));
            }
            Some((status, start))
        });
        watch_others(page, state);
        remember_unfinished(page);
        let shown = Closure::<dyn FnMut()>::new(move || {
            if !document().hidden() {
                unmark_title();
            }
        });
        document()
            .add_event_listener_with_callback("visibilitychange", shown.as_ref().unchecked_ref())
            .expect("documents take listeners");
        shown.forget(); // as long as the page
    }

    /// The other runs of the list: one that finishes while the tab is
    /// hidden tells as the one shown does.
    fn watch_others(page: PageState, state: RwSignal<Note>) {
        Effect::new(move |previous: Option<Vec<(String, Status)>>| {
            let shown = page.run.get();
            let now = page.runs.with(|runs| {
                runs.iter()
                    .map(|run| (run.id.clone(), run.status))
                    .collect::<Vec<_>>()
            });
            let was = |id: &str| {
                previous
                    .as_ref()
                    .and_then(|before| before.iter().find(|(other, _)| other == id))
                    .map(|(_, status)| *status)
            };
            page.runs.with_untracked(|runs| {
                for run in runs.iter().filter(|run| Some(&run.id) != shown.as_ref()) {
                    let finished_now =
                        run.status == Status::Finished && was(&run.id).is_some_and(unfinished);
                    if let (true, Some(brief)) = (finished_now, &run.run) {
                        let (title, body) = match brief {
                            shared::job::JobBrief::Collatz(run_brief) => {
                                (reached(&run_brief.start), in_steps(run.steps))
                            }
                            shared::job::JobBrief::Search(search) => (
                                format!("Hailstone: {}", super::finished_run(brief, run.steps)),
                                format!("{} records", search.records),
                            ),
                        };
                        tell(state, &format!("hailstone-{}", run.id), &title, &body);
                    }
                }
            });
            now
        });
    }

    /// Keeps the ids of the runs unfinished (the one shown as its snapshot
    /// says, the others as the list does) for the next visit's notice.
    fn remember_unfinished(page: PageState) {
        let ids = Memo::new(move |_| {
            let shown = page.run.get();
            let mut ids = Vec::new();
            if let Some(id) = &shown {
                if unfinished(page.snapshot.with(|s| s.status)) {
                    ids.push(id.clone());
                }
            }
            page.runs.with(|runs| {
                let others = runs.iter().filter(|run| Some(&run.id) != shown.as_ref());
                ids.extend(
                    others
                        .filter(|run| unfinished(run.status))
                        .map(|run| run.id.clone()),
                );
            });
            ids.join(" ")
        });
        Effect::new(move |_| {
            if let Some(storage) = storage() {
                let _ = storage.set_item(UNFINISHED, &ids.get());
            }
        });
    }

    /// A run of `start` finished after `steps`: if the tab is hidden, its
    /// title is marked and, when wanted, a notification (one per `tag`) is
    /// raised.
    /// "Hailstone: 27 reached 1".
    fn reached(start: &str) -> String {
        format!("Hailstone: {} reached 1", shared::group_digits(start))
    }

    /// "in 111 steps".
    fn in_steps(steps: u64) -> String {
        format!("in {} steps", shared::group_digits(&steps.to_string()))
    }

    fn tell(state: RwSignal<Note>, tag: &str, title: &str, body: &str) {
        if !document().hidden() {
            return;
        }
        mark_title();
        if state.get_untracked() == Note::On {
            let options = NotificationOptions::new();
            options.set_body(body);
            options.set_tag(tag);
            let _ = Notification::new_with_options(title, &options);
        }
    }

    fn mark_title() {
        let title = document().title();
        if !title.starts_with(MARK) {
            document().set_title(&format!("{MARK}{title}"));
        }
    }

    fn unmark_title() {
        let title = document().title();
        if let Some(rest) = title.strip_prefix(MARK) {
            document().set_title(rest);
        }
    }

    /// The notice of runs that finished since this browser last showed
    /// them unfinished: the one shown, and others of the list (read before
    /// the watch writes what this page shows).
    pub fn away(page: PageState, away: RwSignal<Option<String>>) {
        let unfinished = storage()
            .and_then(|s| s.get_item(UNFINISHED).ok().flatten())
            .unwrap_or_default();
        let was_unfinished = |id: &str| unfinished.split(' ').any(|other| other == id);
        let mut told = Vec::new();
        let shown = page.run.get_untracked();
        if shown.as_deref().is_some_and(was_unfinished) {
            page.snapshot.with_untracked(|s| {
                if let (Status::Finished, Some(run)) = (s.status, &s.run) {
                    told.push(finished(&run.start, run.steps));
                }
            });
        }
        page.runs.with_untracked(|runs| {
            for run in runs.iter().filter(|run| Some(&run.id) != shown.as_ref()) {
                if let (Status::Finished, true, Some(brief)) =
                    (run.status, was_unfinished(&run.id), &run.run)
                {
                    told.push(super::finished_run(brief, run.steps));
                }
            }
        });
        let text = (!told.is_empty()).then(|| told.join("; "));
        // After hydration, so the page hydrates as the server rendered it.
        Effect::new(move |_| away.set(text.clone()));
    }
}
