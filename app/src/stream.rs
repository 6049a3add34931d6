//! The browser's end of `/events`: one `EventSource` per page, for the run
//! it shows (`?run=`), opened after hydration, reopened when another run is
//! opened, and closed in `on_cleanup`. Updates fold into the page's snapshot
//! signal; a gap (a delta that does not follow) reopens the stream for a
//! fresh snapshot. `runs` events bring the session's list of runs and the
//! run the stream follows.

use std::{cell::RefCell, rc::Rc};

use leptos::{
    prelude::*,
    wasm_bindgen::{closure::Closure, JsCast},
};
use send_wrapper::SendWrapper;
use shared::{
    job::JobBrief,
    wire::{EventId, RunsOf, Update as Message},
};
use wasm_bindgen::JsValue;
use web_sys::{BroadcastChannel, EventSource, MessageEvent};

use crate::state::{Link, PageState};

/// How long to wait before reopening a stream the browser gave up on.
const REOPEN_AFTER_MS: u64 = 1000;

/// The open stream and the callbacks it holds (dropped with it).
struct Open {
    source: EventSource,
    /// The run it follows: the one it was opened for, or the one the server
    /// said it follows.
    run: Option<String>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_runs: Closure<dyn FnMut(MessageEvent)>,
    _on_open: Closure<dyn FnMut(web_sys::Event)>,
    _on_error: Closure<dyn FnMut(web_sys::Event)>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.source.close();
    }
}

type Slot = Rc<RefCell<Option<Open>>>;

/// The channel by which the tabs of one browser tell each other that a
/// session was started (they share its cookie).
const CHANNEL: &str = "hailstone-session";

/// Opens the page's stream now and closes it when the page goes away. A
/// page that follows no session reopens its stream when its own first
/// command started one, or another tab of the browser says it did.
pub fn subscribe(state: PageState) {
    let slot: Slot = Rc::new(RefCell::new(None));
    open(state, &slot);
    let channel = BroadcastChannel::new(CHANNEL).ok();
    let on_started = {
        let slot = Rc::downgrade(&slot);
        Closure::<dyn FnMut(MessageEvent)>::new(move |_| {
            if let (false, Some(slot)) = (state.attached.get_untracked(), slot.upgrade()) {
                reopen(state, &slot, 0);
            }
        })
    };
    if let Some(channel) = &channel {
        channel.set_onmessage(Some(on_started.as_ref().unchecked_ref()));
    }
    let rejoined = {
        let slot = SendWrapper::new(Rc::downgrade(&slot));
        let channel = SendWrapper::new(channel.clone());
        move |previous: Option<u64>| {
            let rejoin = state.rejoin.get();
            if previous.is_some() {
                if let Some(slot) = slot.upgrade() {
                    reopen(state, &slot, 0);
                }
                if let Some(channel) = channel.as_ref() {
                    let _ = channel.post_message(&JsValue::from_str("started"));
                }
            }
            rejoin
        }
    };
    Effect::new(rejoined);
    // Another run opened: its stream replaces this one.
    let opened = {
        let slot = SendWrapper::new(Rc::downgrade(&slot));
        move |_| {
            let run = state.run.get();
            let Some(slot) = slot.upgrade() else { return };
            let follows = slot.borrow().as_ref().map(|open| open.run.clone());
            if follows.is_some_and(|follows| follows != run) {
                reopen(state, &slot, 0);
            }
        }
    };
    Effect::new(opened);
    // The address names the run shown, so a reload (or a bookmark) opens it.
    Effect::new(move |_| {
        let path = match state.run.get() {
            Some(run) => format!("/?run={run}"),
            None => "/".to_owned(),
        };
        if let Some(history) = web_sys::window().and_then(|w| w.history().ok()) {
            let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&path));
        }
    });
    let kept = SendWrapper::new((slot, channel, on_started));
    on_cleanup(move || {
        let (slot, channel, _on_started) = &*kept;
        slot.borrow_mut().take();
        if let Some(channel) = channel {
            channel.close();
        }
    });
}

fn open(state: PageState, slot: &Slot) {
    state.link.set(Link::Connecting);
    let run = state.run.get_untracked();
    let url = match &run {
        Some(run) => format!("/events?run={run}"),
        None => "/events".to_owned(),
    };
    let Ok(source) = EventSource::new(&url) else {
        state.link.set(Link::Reconnecting);
        return;
    };
    let on_message = {
        let slot = Rc::downgrade(slot);
        Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let Some(text) = event.data().as_string() else {
                return;
            };
            // Read from bytes, as everything the page reads (see
            // `api::JsonBytes`): each type's reading is compiled once.
            let Ok(update) = serde_json::from_slice::<Message>(text.as_bytes()) else {
                return;
            };
            // Incarnation 0: the stream follows no session (yet).
            let attached = event
                .last_event_id()
                .parse::<EventId>()
                .is_ok_and(|id| id.incarnation != 0);
            if state.attached.get_untracked() != attached {
                state.attached.set(attached);
            }
            if !attached && state.run.get_untracked().is_some() {
                // The session is gone: the page follows none.
                follow(&slot, None);
                state.run.set(None);
                state.runs.set(Vec::new());
            }
            state.link.set(Link::Live);
            let in_step = match update {
                Message::Snapshot(snapshot) => {
                    state.snapshot.set(snapshot);
                    true
                }
                Message::Delta(delta) => state
                    .snapshot
                    .try_update(|snapshot| snapshot.apply(&delta, state.window.get_value()).is_ok())
                    .unwrap_or(false),
            };
            if !in_step {
                // Missed something: start over from a snapshot.
                if let Some(slot) = slot.upgrade() {
                    reopen(state, &slot, 0);
                }
            }
        })
    };
    let on_runs =
        {
            let slot = Rc::downgrade(slot);
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let Some(runs) = event.data().as_string().and_then(|text| {
                    serde_json::from_slice::<RunsOf<JobBrief>>(text.as_bytes()).ok()
                }) else {
                    return;
                };
                // The run the server follows (the one asked for, or, when that
                // is gone, the session's default): the page shows it. Unless
                // the page has just asked for another (its stream opens next):
                // a list this stream sent meanwhile must not take it back.
                let shown = state.run.get_untracked();
                let leaving = slot
                    .upgrade()
                    .and_then(|slot| slot.borrow().as_ref().map(|open| open.run != shown))
                    .unwrap_or(true);
                if shown.as_ref() != Some(&runs.selected) && !leaving {
                    follow(&slot, Some(runs.selected.clone()));
                    state.run.set(Some(runs.selected.clone()));
                }
                state.runs.update(|shown| runs.apply(shown));
            })
        };
    let on_open = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| state.link.set(Link::Live));
    let on_error = {
        let slot = Rc::downgrade(slot);
        Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            state.link.set(Link::Reconnecting);
            // CONNECTING: the browser retries by itself, with Last-Event-ID.
            // CLOSED: it gave up (an error status); try again later.
            if let Some(slot) = slot.upgrade() {
                let closed = slot
                    .borrow()
                    .as_ref()
                    .is_some_and(|open| open.source.ready_state() == EventSource::CLOSED);
                if closed {
                    reopen(state, &slot, REOPEN_AFTER_MS);
                }
            }
        })
    };
    source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    let _ = source.add_event_listener_with_callback("runs", on_runs.as_ref().unchecked_ref());
    source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    *slot.borrow_mut() = Some(Open {
        source,
        run,
        _on_message: on_message,
        _on_runs: on_runs,
        _on_open: on_open,
        _on_error: on_error,
    });
}

/// Notes that the open stream follows `run` (so opening it is not asked
/// again).
fn follow(slot: &std::rc::Weak<RefCell<Option<Open>>>, run: Option<String>) {
    if let Some(slot) = slot.upgrade() {
        if let Some(open) = slot.borrow_mut().as_mut() {
            open.run = run;
        }
    }
}

/// Closes the current stream and opens a fresh one after `delay_ms`.
fn reopen(state: PageState, slot: &Slot, delay_ms: u64) {
    let old = slot.borrow_mut().take();
    if let Some(old) = &old {
        old.source.close();
    }
    // This may run inside one of the old stream's callbacks, which must not
    // be dropped while they run: drop them later, in the timeout.
    let slot = Rc::downgrade(slot);
    let restart = move || {
        drop(old);
        if let Some(slot) = slot.upgrade() {
            open(state, &slot);
        }
    };
    set_timeout(restart, std::time::Duration::from_millis(delay_ms));
}
