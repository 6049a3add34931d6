//! `GET /events`: a session's updates as server-sent events.
//!
//! The first event is a snapshot, or, on a reconnect with `Last-Event-ID`,
//! one delta with exactly the values missed (a snapshot if the session's
//! window no longer holds them all). After that, each event brings the
//! client from where it is to the newest state: a subscriber that falls
//! behind gets one bigger delta, never a growing queue. Each event's `id` is
//! the [`Cursor`] it brings the client to.

use std::{
    convert::Infallible,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use axum::{
    extract::{Request, State},
    http::{header, StatusCode},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use futures::{stream, StreamExt};
use shared::{
    task::{Machine, Task},
    wire::{EventId, ListedOf, RunsOf, UpdateOf},
};
use tokio::{sync::watch, time::Instant};

use crate::{
    http::client_address,
    rosters::Roster,
    runtime::Runtime,
    session::{Session, Update},
};

/// How soon a stream whose session could not catch up with the store tries
/// again.
const CATCH_UP_RETRY: Duration = Duration::from_millis(250);

/// How soon a browser reconnects after the stream drops.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// How often, at most, a stream sends the list when only the other runs'
/// steps and peaks moved on (their pages show them live; the list is a
/// summary). One process hears of every run added, removed or changing
/// state (its session's roster rings), so a stream of a session of several
/// runs looks at the list then, and otherwise only this often.
const LIST_PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// How often a stream looks at its session's list of runs in a cluster,
/// where the bells of other nodes' runs do not reach the roster and knowing
/// the session's runs is a read of Redis: a run added or changing state on
/// another node shows within this.
const LIST_EVERY_IN_CLUSTER: Duration = Duration::from_secs(5);

/// A session of one run is looked at again only when a run is added (or
/// removed), or after this at the latest: its page sees the run's state
/// from its own stream.
const LIST_UNTIL_RUNG: Duration = Duration::from_secs(60);

/// A stream sends its session's list at most once per this when runs
/// change state: a stream whose run steps at least this often sends it with
/// its own next update after that (no wake-up of its own, one write for
/// both); another is woken for it.
const LIST_MOVED_WITHIN: Duration = Duration::from_secs(1);

/// A list another stream of the session read this recently is used as it
/// is (a session's streams read its runs once per change, not once each).
const LIST_SHARED_FOR: Duration = Duration::from_millis(500);

/// The runs of `listed` that differ from those `sent`, when both hold the
/// same runs in the same order (a page applies them to the list it shows);
/// `None` when the whole list must go.
fn changed<S: Clone + PartialEq>(
    sent: Option<&[ListedOf<S>]>,
    listed: &[ListedOf<S>],
) -> Option<Vec<ListedOf<S>>> {
    let sent = sent?;
    let same_runs =
        sent.len() == listed.len() && sent.iter().zip(listed).all(|(sent, now)| sent.id == now.id);
    same_runs.then(|| {
        sent.iter()
            .zip(listed)
            .filter(|(sent, now)| sent != now)
            .map(|(_, now)| now.clone())
            .collect()
    })
}

/// Opens the event stream of the request's session. A visitor without a
/// session gets the idle state once (with incarnation 0) and then only
/// keep-alives: its page reopens the stream once its first command has
/// created a session.
pub async fn events<T: Task>(State(runtime): State<Arc<Runtime<T>>>, request: Request) -> Response {
    let client = client_address(&request, runtime.http.client_address_header.as_ref());
    let session = request.extensions().get::<Arc<Session<T>>>().cloned();
    let too_many = |message: &'static str| {
        runtime.metrics.streams_refused.inc();
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "10")],
            message,
        )
            .into_response()
    };
    let Some(slot) = runtime.streams.open(client) else {
        return too_many("Too many pages of this site are open from your address; close some.");
    };
    // A node that cannot reach Redis cannot say what is committed: the page
    // shows "Reconnecting…" and tries again.
    if runtime.store_is_down() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "2")],
            "The session store cannot be reached; the page reconnects by itself.",
        )
            .into_response();
    }
    if let Some(session) = &session {
        let open = session.subscribers().load(Ordering::Relaxed);
        if open >= runtime.streams.per_session {
            return too_many("Too many pages of this session are open; close some.");
        }
    }
    // Anything unreadable (or from an older server) gets a snapshot.
    let last = request
        .headers()
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<EventId>().ok());
    let deadline = runtime
        .stream_lifetime
        .map(|lifetime| Instant::now() + lifetime);
    let stream = match session {
        Some(session) => {
            let subscriber = Subscriber::new(session, last, deadline, runtime);
            stream::unfold(subscriber, |mut subscriber| async move {
                let event = match subscriber.next().await? {
                    Out::Update(id, update) => subscriber.event(id, &update),
                    Out::Runs(runs) => Event::default()
                        .event("runs")
                        .json_data(runs)
                        .expect("runs serialise to JSON"),
                };
                Some((Ok::<_, Infallible>(event), subscriber))
            })
            .left_stream()
        }
        None => {
            let (id, idle) = no_session::<T>(&runtime);
            let first = Event::default()
                .id(id.to_string())
                .retry(RECONNECT_AFTER)
                .json_data(idle)
                .expect("updates serialise to JSON");
            // A stopping server's streams end first: their pages resume on
            // another node while this one hands its runs over.
            let shutdown = runtime.draining.clone();
            let end = async move {
                match deadline {
                    Some(deadline) => tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    },
                    None => shutdown.cancelled().await,
                }
            };
            stream::once(async { Ok(first) })
                .chain(stream::once(end).filter_map(|()| async { None }))
                .right_stream()
        }
    };
    // The slot is freed when the stream is dropped.
    let stream = stream.map(move |event| {
        let _ = &slot;
        event
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The state of no session, as a visitor without one (or whose session is
/// gone) is sent it, with incarnation 0.
fn no_session<T: Task>(runtime: &Runtime<T>) -> (EventId, Update<T>) {
    let idle = Machine::<T>::new(runtime.sessions.settings());
    let id = EventId {
        incarnation: 0,
        cursor: idle.cursor(),
    };
    (id, UpdateOf::Snapshot(idle.snapshot()))
}

/// One open stream: where its client is, and how to wait for more.
struct Subscriber<T: Task> {
    /// The session watched.
    session: Arc<Session<T>>,
    /// Where the client is; `None` before its first snapshot.
    last: Option<EventId>,
    /// Rings on every new version.
    doorbell: watch::Receiver<u64>,
    /// When the stream ends by itself (the client reconnects and resumes).
    deadline: Option<Instant>,
    /// Shutdown (which ends the stream), metrics, the registry's clock.
    runtime: Arc<Runtime<T>>,
    /// Cluster mode: whether Redis answers (the stream ends when not).
    store_up: Option<watch::Receiver<bool>>,
    /// The session's runs as last sent (`None`: not yet).
    listed: Option<Arc<Vec<ListedOf<T::Summary>>>>,
    /// Fires when the list is looked at next: one timer for the stream's
    /// life, reset each time (not a timer per wake-up).
    list_tick: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// What the session's streams share: the list last read, and the bell
    /// of a run added or removed.
    roster: Arc<Roster<T::Summary>>,
    /// That bell; when it rings, the list is looked at at once.
    roster_rung: watch::Receiver<()>,
    /// The roster's bell of a run that changed state; listened to only
    /// while the session has several runs (not `alone`).
    roster_moved: watch::Receiver<()>,
    /// The list last looked at held only this stream's run.
    alone: bool,
    /// A run of the session changed state since the list was last looked
    /// at: it is, with this stream's next update (see [`LIST_MOVED_WITHIN`]).
    list_moved: bool,
    /// The bell rang since the list was last looked at.
    list_due: bool,
    /// When the list was last sent.
    listed_at: Instant,
    /// The reconnection delay was sent (on the first event: a browser
    /// keeps it for the stream's `EventSource`, so later events omit it).
    retry_sent: bool,
}

/// What a stream sends next: its run's update, or the session's runs.
enum Out<T: Task> {
    Update(EventId, Update<T>),
    Runs(RunsOf<T::Summary>),
}

impl<T: Task> Subscriber<T> {
    fn new(
        session: Arc<Session<T>>,
        last: Option<EventId>,
        deadline: Option<Instant>,
        runtime: Arc<Runtime<T>>,
    ) -> Subscriber<T> {
        session.subscribers().fetch_add(1, Ordering::Relaxed);
        runtime.metrics.subscribers.inc();
        let roster = runtime.rosters.join(session.id().session);
        Subscriber {
            roster_rung: roster.bell(),
            roster_moved: roster.moved(),
            alone: false,
            list_moved: false,
            roster,
            list_due: false,
            doorbell: session.subscribe(),
            store_up: runtime.store_up(),
            session,
            last,
            deadline,
            runtime,
            listed: None,
            list_tick: Box::pin(tokio::time::sleep_until(Instant::now())),
            listed_at: Instant::now(),
            retry_sent: false,
        }
    }

    /// The session's runs, if they changed since last sent. A session
    /// whose one run is this stream's is not read again: its page shows
    /// that run from the stream itself.
    async fn runs(&mut self) -> Option<RunsOf<T::Summary>> {
        let one_process = self.runtime.cluster().is_none();
        let every = if one_process {
            LIST_PROGRESS_EVERY
        } else {
            LIST_EVERY_IN_CLUSTER
        };
        self.list_tick.as_mut().reset(Instant::now() + every);
        self.list_due = false;
        self.list_moved = false;
        // Whatever rang before this look is seen by it.
        self.roster_moved.mark_unchanged();
        let own = self.session.id();
        let alone =
            |listed: &[ListedOf<T::Summary>]| listed.len() == 1 && listed[0].id == own.to_string();
        let listed = match self.roster.fresh(LIST_SHARED_FOR) {
            Ok(listed) => listed,
            Err(reading) => {
                let ids = self.runtime.run_ids(own.session).await.ok()?;
                if ids == [own] && self.listed.as_deref().is_some_and(|sent| alone(sent)) {
                    self.alone = true;
                    self.rest_if(one_process);
                    return None;
                }
                let (runs, _) = self.runtime.load_runs(ids).await.ok()?;
                let listed = Arc::new(crate::http::listed(&runs).await);
                self.roster.keep(listed.clone(), reading);
                listed
            }
        };
        self.alone = alone(&listed);
        if self.alone {
            self.rest_if(one_process);
        }
        let states = |listed: &[ListedOf<T::Summary>]| {
            listed
                .iter()
                .map(|run| (run.id.clone(), run.status, run.failure, run.started_at))
                .collect::<Vec<_>>()
        };
        let unchanged = match &self.listed {
            Some(sent) if **sent == *listed => true,
            Some(sent) => {
                states(sent) == states(&listed) && self.listed_at.elapsed() < LIST_PROGRESS_EVERY
            }
            None => false,
        };
        if unchanged {
            return None;
        }
        let runs = changed(self.listed.as_deref().map(Vec::as_slice), &listed);
        self.listed = Some(listed.clone());
        self.listed_at = Instant::now();
        Some(RunsOf {
            selected: own.to_string(),
            partial: runs.is_some(),
            runs: runs.unwrap_or_else(|| listed.to_vec()),
        })
    }

    /// A session of one run, in one process: its list is looked at again
    /// when the roster rings (or after [`LIST_UNTIL_RUNG`]).
    fn rest_if(&mut self, one_process: bool) {
        if one_process {
            self.list_tick
                .as_mut()
                .reset(Instant::now() + LIST_UNTIL_RUNG);
        }
    }

    /// Whether the list is to be looked at now: never sent yet, a run was
    /// added or removed, its tick came, or a run changed state and the
    /// stream's own update is ready to go with it.
    fn list_wanted(&mut self, update_ready: bool) -> bool {
        // A state change is heard when the stream wakes for anything else,
        // too (a stream whose run steps often is not woken for it).
        if !self.alone && self.roster_moved.has_changed().unwrap_or(false) {
            self.roster_moved.mark_unchanged();
            self.moved();
        }
        self.listed.is_none()
            || self.list_due
            || self.list_tick.is_elapsed()
            || (self.list_moved && update_ready && self.listed_at.elapsed() >= LIST_MOVED_WITHIN)
    }

    /// Another run of the session changed state: the list is sent once a
    /// list was last sent [`LIST_MOVED_WITHIN`] ago, with the next update of
    /// a run that steps that often (its tick is only the backstop), else by
    /// the tick.
    fn moved(&mut self) {
        self.list_moved = true;
        let mut due = (self.listed_at + LIST_MOVED_WITHIN).max(Instant::now());
        if self.session.steps_within(LIST_MOVED_WITHIN) {
            due += LIST_MOVED_WITHIN;
        }
        if self.list_tick.deadline() > due {
            self.list_tick.as_mut().reset(due);
        }
    }

    /// Follows `run` instead (the one followed was removed): the page is
    /// sent its snapshot and the list that says so.
    fn switch_to(&mut self, run: Arc<Session<T>>) {
        self.session.subscribers().fetch_sub(1, Ordering::Relaxed);
        run.subscribers().fetch_add(1, Ordering::Relaxed);
        self.doorbell = run.subscribe();
        self.session = run;
        self.last = None;
        self.listed = None;
    }

    /// The next update and its event id, waiting until there is one;
    /// `None` once the server is stopping (it drains).
    async fn next(&mut self) -> Option<Out<T>> {
        loop {
            // Mark the doorbell seen *before* reading, so a version
            // published after the read still wakes the wait below.
            let rung = *self.doorbell.borrow_and_update();
            let last = self.last;
            if self.session.is_retired() {
                // Removed (or expired) while its session lives on: the
                // stream follows the session's default run instead.
                let session = self.session.id().session;
                if let Ok(Some(run)) = self.runtime.default_run(session).await {
                    if run.id() != self.session.id() && !run.is_retired() {
                        self.switch_to(run);
                        continue;
                    }
                }
                // The session is gone (a cluster's Redis lost it): the page
                // is told with the state of no session, as a visitor's
                // first stream is, and the stream ends.
                if self.last.is_some_and(|last| last.incarnation == 0) {
                    return None;
                }
                let (id, idle) = no_session(&self.runtime);
                self.last = Some(id);
                return Some(Out::Update(id, idle));
            }
            let update_ready = last.is_none_or(|last| last.cursor.version != rung);
            if last.is_some() && self.list_wanted(update_ready) {
                if let Some(runs) = self.runs().await {
                    return Some(Out::Runs(runs));
                }
            }
            // The lock is taken only when there is something to read: a new
            // version here, or one another node committed.
            if self.session.is_behind() || update_ready {
                if let Some((id, update)) = self.session.since(last).await {
                    self.last = Some(id);
                    return Some(Out::Update(id, update));
                }
            }
            let expired = async {
                match self.deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            let store_down = async {
                match &mut self.store_up {
                    Some(up) => {
                        let _ = up.wait_for(|up| !*up).await;
                    }
                    None => std::future::pending().await,
                }
            };
            // A copy that could not catch up (the store failed for a moment)
            // tries again soon: no bell may ring for what it missed.
            let behind = self.session.is_behind();
            let woken_by_moves = !self.alone && !self.session.steps_within(LIST_MOVED_WITHIN);
            tokio::select! {
                () = self.runtime.draining.cancelled() => return None,
                () = expired => return None,
                () = store_down => return None,
                changed = self.doorbell.changed() => changed.ok()?,
                () = tokio::time::sleep(CATCH_UP_RETRY), if behind => {}
                () = &mut self.list_tick, if last.is_some() && !self.list_tick.is_elapsed() => {}
                Ok(()) = self.roster_rung.changed() => self.list_due = true,
                Ok(()) = self.roster_moved.changed(), if woken_by_moves => self.moved(),
            }
        }
    }

    /// The SSE event carrying `update`.
    fn event(&mut self, id: EventId, update: &Update<T>) -> Event {
        self.runtime
            .metrics
            .values_streamed
            .inc_by(update.values() as u64);
        let mut event = Event::default().id(id.to_string());
        if !std::mem::replace(&mut self.retry_sent, true) {
            event = event.retry(RECONNECT_AFTER);
        }
        event.json_data(update).expect("updates serialise to JSON")
    }
}

impl<T: Task> Drop for Subscriber<T> {
    fn drop(&mut self) {
        self.session.subscribers().fetch_sub(1, Ordering::Relaxed);
        self.runtime.metrics.subscribers.dec();
        // Unwatched from now: the idle clock starts when the page leaves.
        self.runtime.sessions.touch(&self.session);
    }
}

#[cfg(test)]
mod tests {
    use shared::wire::{ListedOf, Status};

    use super::changed;

    fn run(id: &str, status: Status, steps: u64) -> ListedOf<()> {
        ListedOf {
            id: id.into(),
            status,
            steps,
            failure: None,
            started_at: None,
            run: None,
        }
    }

    #[test]
    fn only_the_runs_that_changed_go_while_the_runs_stay_the_same() {
        let sent = [run("b", Status::Running, 1), run("a", Status::Running, 5)];
        let now = [run("b", Status::Running, 1), run("a", Status::Paused, 6)];
        assert_eq!(changed(None, &now), None, "nothing sent yet: all of it");
        assert_eq!(
            changed(Some(&sent), &now),
            Some(vec![run("a", Status::Paused, 6)])
        );
        let added = [run("c", Status::Idle, 0), sent[0].clone(), sent[1].clone()];
        assert_eq!(changed(Some(&sent), &added), None, "a run added");
        assert_eq!(changed(Some(&sent), &sent[..1]), None, "a run removed");
        let reordered = [sent[1].clone(), sent[0].clone()];
        assert_eq!(changed(Some(&sent), &reordered), None, "another order");
    }
}
