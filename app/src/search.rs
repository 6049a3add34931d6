//! The "Record search" region: a range From…To, the "Searching" switch,
//! the progress bar "Search progress" (starts checked, percent, rate, time
//! left), the table "Records" (each start opens as a Collatz run) and
//! "Download records". It follows one search run of the session (the
//! newest, or the one opened from the list of runs) on a stream of its own.

use leptos::prelude::*;
use shared::{
    group_digits,
    job::{JobBrief, Listed, Snapshot},
    records::Shown as ShownRecord,
    search::{parse_range, SearchView},
    wire::{Command, Status},
};

use crate::state::PageState;

/// The newest search of a session's runs (which come newest first).
pub fn newest_search(runs: &[Listed]) -> Option<String> {
    runs.iter()
        .find(|listed| matches!(listed.run, Some(JobBrief::Search(_))))
        .map(|listed| listed.id.clone())
}

/// What the region shows: the search's state as its stream last said,
/// and the rate measured from it.
#[derive(Clone, Copy)]
struct Shown {
    /// The search's state; `None` until its stream's first message.
    snapshot: RwSignal<Option<Snapshot>>,
    /// Starts checked per second lately, while it runs.
    rate: RwSignal<Option<f64>>,
    /// Bumped to reopen the stream (it missed an update).
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    reopen: RwSignal<u64>,
}

impl Shown {
    /// The search, once its state is known and it is one.
    fn search(&self) -> Option<SearchView> {
        self.snapshot
            .with(|snapshot| snapshot.as_ref()?.run.as_ref()?.search().cloned())
    }

    /// Where the search stands (idle until known).
    fn status(&self) -> Status {
        self.snapshot
            .with(|snapshot| snapshot.as_ref().map_or(Status::Idle, |s| s.status))
    }
}

/// The region.
#[component]
pub fn RecordSearch() -> impl IntoView {
    let state = expect_context::<PageState>();
    let shown = Shown {
        snapshot: RwSignal::new(None),
        rate: RwSignal::new(None),
        reopen: RwSignal::new(0),
    };
    let from = RwSignal::new(String::new());
    let to = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    // The session's newest search is shown until another is opened.
    Effect::new(move |_| {
        if state.search.get().is_none() {
            if let Some(newest) = state.runs.with(|runs| newest_search(runs)) {
                state.search.set(Some(newest));
            }
        }
    });
    // The fields show the search's range, unless the user is changing it.
    Effect::new(move |previous: Option<Option<(u64, u64)>>| {
        let range = shown.search().map(|search| (search.from, search.to));
        if range != previous.flatten() {
            if let Some((first, last)) = range {
                from.set(group_digits(&first.to_string()));
                to.set(group_digits(&last.to_string()));
            }
        }
        range
    });
    #[cfg(feature = "hydrate")]
    stream::follow(state, shown);

    let range = move || {
        parse_range(
            &from.get_untracked(),
            &to.get_untracked(),
            state.max_input_chars.get_value(),
        )
    };
    let toggle = move |_| {
        error.set(None);
        let on = shown.status() != Status::Running;
        let search = state.search.get_untracked();
        match (on, search) {
            (false, Some(run)) => state.send.run((
                Some(run),
                Command::SetRunning { running: false },
                report(error),
            )),
            (false, None) => {}
            (true, run) => match range() {
                Err(refused) => error.set(Some(refused.to_string())),
                Ok(asked) => start(state, shown, run, asked, error),
            },
        }
    };
    // A new range while it searches: a raised To goes on, any other starts over.
    let changed = move |_| {
        error.set(None);
        match range() {
            Err(refused) => error.set(Some(refused.to_string())),
            Ok(asked) => {
                let searching = shown.status() == Status::Running;
                let same = shown.search().is_some_and(|s| (s.from, s.to) == asked);
                if let (true, false, Some(run)) = (searching, same, state.search.get_untracked()) {
                    start(state, shown, Some(run), asked, error);
                }
            }
        }
    };
    let max_chars = state.max_input_chars.get_value();
    view! {
        <section class="search" aria-labelledby="search-heading">
            <h2 id="search-heading">"Record search"</h2>
            <p class="hint">
                "Starts whose trajectory takes more steps (delay records) or climbs higher (peak records) than every smaller start of the range."
            </p>
            <div class="row">
                <div class="field">
                    <label for="search-from">"From"</label>
                    <input id="search-from" type="text" inputmode="numeric" autocomplete="off" maxlength=max_chars
                        prop:value=from on:input=move |e| from.set(event_target_value(&e)) on:change=changed/>
                </div>
                <div class="field">
                    <label for="search-to">"To"</label>
                    <input id="search-to" type="text" inputmode="numeric" autocomplete="off" maxlength=max_chars
                        prop:value=to on:input=move |e| to.set(event_target_value(&e)) on:change=changed/>
                </div>
            </div>
            <p class="error" role="alert">{error}</p>
            <div class="switch-field">
                <button id="searching" type="button" role="switch" class="switch"
                    aria-checked=move || (shown.status() == Status::Running).to_string()
                    aria-describedby="search-status" on:click=toggle>
                    <span class="track" aria-hidden="true"><span class="thumb"></span></span>
                    <span class="switch-label">"Searching"</span>
                </button>
                <p id="search-status" class="run-status" data-status=move || shown.status().name()>
                    {move || describe(shown)}
                </p>
            </div>
            <div class="row">
                <CancelSearch shown error/>
                <SearchUnwatched shown error/>
            </div>
            <Progress shown/>
            <RecordTable shown error/>
            {move || {
                let run = state.search.get()?;
                shown.search()?;
                Some(view! {
                    <a class="download" href=format!("/records.csv?run={run}") download="">"Download records"</a>
                })
            }}
        </section>
    }
}

/// What an answer that failed says, in the region's error line.
fn report(error: RwSignal<Option<String>>) -> crate::commands::Reply {
    Box::new(move |answer| {
        if let Err(refused) = answer {
            error.set(Some(refused.to_string()));
        }
    })
}

/// Searches `asked` in run `run` (or, with none yet, in a new run of the
/// session, made first), and switches it on.
fn start(
    state: PageState,
    shown: Shown,
    run: Option<String>,
    asked: (u64, u64),
    error: RwSignal<Option<String>>,
) {
    #[cfg(feature = "hydrate")]
    leptos::task::spawn_local(async move {
        let (first, last) = (asked.0.to_string(), asked.1.to_string());
        let run = match run {
            Some(run) => run,
            None => match stream::new_search_run(state).await {
                Ok(run) => {
                    state.search.set(Some(run.clone()));
                    run
                }
                Err(refused) => return error.set(Some(refused.to_string())),
            },
        };
        if let Err(refused) = crate::api::send_search(first, last, Some(run.clone())).await {
            return error.set(Some(refused.to_string()));
        }
        // A paused search keeps its pause when given a range: it is asked
        // to go on as well.
        if shown.status() != Status::Running {
            state.send.run((
                Some(run),
                Command::SetRunning { running: true },
                report(error),
            ));
        }
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = (state, shown, run, asked, error);
}

/// "Cancel search": ends the search where it is, for good (the switch only
/// pauses it); its records stay.
#[component]
fn CancelSearch(shown: Shown, error: RwSignal<Option<String>>) -> impl IntoView {
    let state = expect_context::<PageState>();
    let cancellable = move || shown.search().is_some() && shown.status().cancellable();
    let cancel = move |_| {
        if let Some(run) = state.search.get_untracked() {
            state.send.run((Some(run), Command::Cancel, report(error)));
        }
    };
    view! {
        <button type="button" class="cancel" disabled=move || !cancellable() on:click=cancel>
            "Cancel search"
        </button>
    }
}

/// What happens to the search while no page of it is open, as the main
/// view's "When no page is open" does for its run.
#[component]
fn SearchUnwatched(shown: Shown, error: RwSignal<Option<String>>) -> impl IntoView {
    let state = expect_context::<PageState>();
    let current = move || {
        shown
            .snapshot
            .with(|snapshot| snapshot.as_ref().map(|s| s.unwatched).unwrap_or_default())
    };
    let pick = move |policy| {
        if let Some(run) = state.search.get_untracked() {
            state
                .send
                .run((Some(run), Command::SetUnwatched { policy }, report(error)));
        }
    };
    view! {
        <crate::controls::UnwatchedSelect id="search-unwatched" label="While no page is open"
            current=Signal::derive(current)
            disabled=Signal::derive(move || shown.search().is_none())
            pick/>
    }
}

/// The line beside the switch.
fn describe(shown: Shown) -> String {
    let Some(snapshot) = shown.snapshot.get() else {
        return "Choose a range, then switch Searching on.".to_owned();
    };
    match snapshot.status {
        Status::Idle => "Choose a range, then switch Searching on.".to_owned(),
        Status::Running => "Searching…".to_owned(),
        Status::Paused => "Paused.".to_owned(),
        Status::Finished => "Finished: every start of the range is checked.".to_owned(),
        Status::Cancelled => "Cancelled.".to_owned(),
        Status::Failed => format!(
            "Stopped: {}. Switch it on to try again.",
            snapshot.failure.unwrap_or_default()
        ),
    }
}

/// The progress bar and its words.
#[component]
fn Progress(shown: Shown) -> impl IntoView {
    let search = Memo::new(move |_| shown.search().map(|s| (s.checked, s.starts())));
    let percent = move || {
        search
            .get()
            .map_or(0.0, |(checked, starts)| tenths(checked, starts))
    };
    let words = move || {
        let Some((checked, starts)) = search.get() else {
            return "No search yet.".to_owned();
        };
        let mut words = format!(
            "{} of {} starts checked ({:.1} %)",
            group_digits(&checked.to_string()),
            group_digits(&starts.to_string()),
            tenths(checked, starts)
        );
        if let (Some(rate), Status::Running) = (shown.rate.get(), shown.status()) {
            words.push_str(&format!(
                " · {} starts/s",
                group_digits(&format!("{rate:.0}"))
            ));
            if rate >= 1.0 {
                let left = (starts - checked) as f64 / rate;
                words.push_str(&format!(" · about {} left", duration(left)));
            }
        }
        words
    };
    view! {
        <div class="progress-field">
            <div class="progress" role="progressbar" aria-label="Search progress"
                aria-valuemin="0" aria-valuemax="100" aria-valuenow=move || format!("{:.1}", percent())
                aria-valuetext=words>
                <span class="bar" style=move || format!("width: {:.1}%", percent())></span>
            </div>
            <p class="progress-words">{words}</p>
        </div>
    }
}

/// `part` of `whole` in percent, cut to tenths (100 only when whole).
fn tenths(part: u64, whole: u64) -> f64 {
    let tenths = u128::from(part) * 1000 / u128::from(whole.max(1));
    tenths as f64 / 10.0
}

/// Seconds in words: "45 s", "3 min 20 s", "2 h 5 min".
fn duration(seconds: f64) -> String {
    let seconds = seconds.round() as u64;
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
    }
}

/// The records found so far, newest last.
#[component]
fn RecordTable(shown: Shown, error: RwSignal<Option<String>>) -> impl IntoView {
    let records = Memo::new(move |_| shown.search().map(|s| s.records).unwrap_or_default());
    view! {
        <div class="table-scroll">
        <table class="records" aria-label="Records">
            <thead>
                <tr>
                    <th scope="col">"Start"</th>
                    <th scope="col">"Steps"</th>
                    <th scope="col">"Peak"</th>
                    <th scope="col">"Kind"</th>
                </tr>
            </thead>
            <tbody>
                <For
                    each=move || records.get()
                    key=|record| (record.start, record.kind)
                    children=move |record| view! { <RecordRow record error/> }
                />
            </tbody>
        </table>
        </div>
    }
}

/// One record; its start opens as a Collatz run of the session.
#[component]
fn RecordRow(record: ShownRecord, error: RwSignal<Option<String>>) -> impl IntoView {
    let state = expect_context::<PageState>();
    let start = group_digits(&record.start.to_string());
    let open = {
        let text = record.start.to_string();
        move |_| {
            error.set(None);
            #[cfg(feature = "hydrate")]
            {
                let text = text.clone();
                leptos::task::spawn_local(async move {
                    match stream::open_as_run(text).await {
                        Ok(run) => state.open(Some(run)),
                        Err(refused) => error.set(Some(refused.to_string())),
                    }
                });
            }
            #[cfg(not(feature = "hydrate"))]
            let _ = (&text, state);
        }
    };
    view! {
        <tr>
            <td>
                <button type="button" class="record-start" on:click=open>
                    <span class="visually-hidden">"Open "</span>{start.clone()}<span class="visually-hidden">" as a run"</span>
                </button>
            </td>
            <td>{group_digits(&record.steps.to_string())}</td>
            <td>{group_digits(&record.peak)}</td>
            <td>{record.kind.name()}</td>
        </tr>
    }
}

/// The region's stream and the calls that make runs, in the browser.
#[cfg(feature = "hydrate")]
mod stream {
    use std::{cell::RefCell, rc::Rc};

    use leptos::{
        prelude::*,
        wasm_bindgen::{closure::Closure, JsCast},
    };
    use send_wrapper::SendWrapper;
    use shared::{
        job::{JobBrief, Update as Message},
        wire::{Command, RunsOf},
    };
    use web_sys::{EventSource, MessageEvent};

    use super::Shown;
    use crate::{api::AppError, state::PageState};

    /// An open stream and the callbacks it holds (dropped with it).
    struct Open {
        source: EventSource,
        _on_message: Closure<dyn FnMut(MessageEvent)>,
        _on_runs: Closure<dyn FnMut(MessageEvent)>,
    }

    impl Drop for Open {
        fn drop(&mut self) {
            self.source.close();
        }
    }

    /// Follows the search the region shows: a stream per search, reopened
    /// when it missed an update, closed with the page.
    pub fn follow(state: PageState, shown: Shown) {
        let slot = SendWrapper::new(Rc::new(RefCell::new(None::<Open>)));
        let kept = SendWrapper::new(Rc::clone(&slot));
        Effect::new(move |previous: Option<Option<String>>| {
            let run = state.search.get();
            shown.reopen.track();
            if previous.flatten() != run {
                shown.snapshot.set(None);
                shown.rate.set(None);
            }
            slot.borrow_mut().take();
            if let Some(run) = &run {
                *slot.borrow_mut() = open(state, shown, run);
            }
            run
        });
        on_cleanup(move || {
            kept.borrow_mut().take();
        });
    }

    fn open(state: PageState, shown: Shown, run: &str) -> Option<Open> {
        let source = EventSource::new(&format!("/events?run={run}")).ok()?;
        // Recent rates: (milliseconds, starts checked) of the last seconds.
        let samples = Rc::new(RefCell::new(std::collections::VecDeque::<(f64, u64)>::new()));
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let Some(text) = event.data().as_string() else {
                return;
            };
            let Ok(update) = serde_json::from_slice::<Message>(text.as_bytes()) else {
                return;
            };
            let in_step = match update {
                Message::Snapshot(snapshot) => {
                    shown.snapshot.set(Some(snapshot));
                    true
                }
                Message::Delta(delta) => shown
                    .snapshot
                    .try_update(|snapshot| {
                        snapshot.as_mut().is_some_and(|snapshot| {
                            snapshot.apply(&delta, state.window.get_value()).is_ok()
                        })
                    })
                    .unwrap_or(false),
            };
            if !in_step {
                shown.reopen.update(|n| *n += 1);
                return;
            }
            measure(shown, &mut samples.borrow_mut());
        });
        let asked = run.to_owned();
        let on_runs =
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let Some(runs) = event.data().as_string().and_then(|text| {
                    serde_json::from_slice::<RunsOf<JobBrief>>(text.as_bytes()).ok()
                }) else {
                    return;
                };
                // The server follows another run: this search is gone.
                if runs.selected != asked {
                    state.search.set(super::newest_search(&runs.runs));
                }
            });
        source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let _ = source.add_event_listener_with_callback("runs", on_runs.as_ref().unchecked_ref());
        Some(Open {
            source,
            _on_message: on_message,
            _on_runs: on_runs,
        })
    }

    /// Takes the rate of the last five seconds from the updates' progress.
    fn measure(shown: Shown, samples: &mut std::collections::VecDeque<(f64, u64)>) {
        let Some(search) = shown.search() else { return };
        let now = js_sys::Date::now();
        if samples
            .back()
            .is_some_and(|&(_, checked)| checked > search.checked)
        {
            samples.clear(); // another range began
        }
        samples.push_back((now, search.checked));
        while samples.front().is_some_and(|&(at, _)| now - at > 5000.0) {
            samples.pop_front();
        }
        let rate = match (samples.front(), samples.back()) {
            (Some(&(t0, c0)), Some(&(t1, c1))) if t1 - t0 >= 500.0 => {
                Some((c1 - c0) as f64 * 1000.0 / (t1 - t0))
            }
            _ => None,
        };
        if rate.is_some() || shown.rate.get_untracked().is_some() {
            shown.rate.set(rate);
        }
    }

    /// A new run of the session for a search; a visitor without a session
    /// gets one first (its first run stays without a number).
    pub async fn new_search_run(state: PageState) -> Result<String, AppError> {
        if !state.attached.get_untracked() {
            crate::api::send_command(Command::SetRunning { running: false }, None).await?;
            state.rejoin.update(|n| *n += 1);
        }
        crate::api::new_run().await
    }

    /// A new Collatz run of the session from `start`; its id.
    pub async fn open_as_run(start: String) -> Result<String, AppError> {
        let run = crate::api::new_run().await?;
        crate::api::send_command(Command::SetNumber { text: start }, Some(run.clone())).await?;
        Ok(run)
    }
}
