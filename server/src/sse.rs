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
    extract::State,
    http::HeaderMap,
    response::sse::{Event, KeepAlive, Sse},
    Extension,
};
use futures::{stream, Stream};
use shared::wire::{EventId, Update};
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{metrics::Metrics, session::Session, Runtime};

/// How soon a browser reconnects after the stream drops.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Opens the event stream of the request's session.
pub async fn events(
    State(runtime): State<Arc<Runtime>>,
    Extension(session): Extension<Arc<Session>>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Anything unreadable (or from an older server) gets a snapshot.
    let last = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<EventId>().ok());
    let subscriber = Subscriber::new(
        session,
        last,
        runtime
            .stream_lifetime
            .map(|lifetime| Instant::now() + lifetime),
        runtime.shutdown.clone(),
        runtime.metrics.clone(),
    );
    let updates = stream::unfold(subscriber, |mut subscriber| async move {
        let (id, update) = subscriber.next().await?;
        Some((Ok(subscriber.event(id, &update)), subscriber))
    });
    Sse::new(updates).keep_alive(KeepAlive::default())
}

/// One open stream: where its client is, and how to wait for more.
struct Subscriber {
    /// The session watched.
    session: Arc<Session>,
    /// Where the client is; `None` before its first snapshot.
    last: Option<EventId>,
    /// Rings on every new version.
    doorbell: watch::Receiver<u64>,
    /// Ends the stream on shutdown.
    shutdown: CancellationToken,
    /// When the stream ends by itself (the client reconnects and resumes).
    deadline: Option<Instant>,
    /// Counts subscribers and values sent.
    metrics: Arc<Metrics>,
}

impl Subscriber {
    fn new(
        session: Arc<Session>,
        last: Option<EventId>,
        deadline: Option<Instant>,
        shutdown: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Subscriber {
        session.subscribers().fetch_add(1, Ordering::Relaxed);
        metrics.subscribers.inc();
        Subscriber {
            doorbell: session.subscribe(),
            session,
            last,
            shutdown,
            deadline,
            metrics,
        }
    }

    /// The next update and its event id, waiting until there is one;
    /// `None` at shutdown.
    async fn next(&mut self) -> Option<(EventId, Update)> {
        loop {
            // Mark the doorbell seen *before* reading, so a version
            // published after the read still wakes the wait below.
            let rung = *self.doorbell.borrow_and_update();
            let last = self.last;
            // The lock is taken only when there is something to read.
            if last.is_none_or(|last| last.cursor.version != rung) {
                if let Some((id, update)) = self.session.update(|state| state.since(last)).await {
                    self.last = Some(id);
                    return Some((id, update));
                }
            }
            let expired = async {
                match self.deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.shutdown.cancelled() => return None,
                () = expired => return None,
                changed = self.doorbell.changed() => changed.ok()?,
            }
        }
    }

    /// The SSE event carrying `update`.
    fn event(&self, id: EventId, update: &Update) -> Event {
        let values = match update {
            Update::Snapshot(snapshot) => snapshot.run.as_ref().map_or(0, |run| run.recent.len()),
            Update::Delta(delta) => delta.appended.len(),
        };
        self.metrics.values_streamed.inc_by(values as u64);
        Event::default()
            .id(id.to_string())
            .retry(RECONNECT_AFTER)
            .json_data(update)
            .expect("updates serialise to JSON")
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.session.subscribers().fetch_sub(1, Ordering::Relaxed);
        self.metrics.subscribers.dec();
    }
}
