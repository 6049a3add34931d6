//! One browser's session: its state behind a `tokio::sync::Mutex` and the
//! lock section every change goes through.

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
};

use shared::{
    wire::{Command, CommandError, Cursor, Delta, Snapshot, Status, Update},
    Collatz, Outcome, Refused,
};
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError};

/// A session's identifier: 128 random bits, written as 32 hex digits in the
/// cookie. Unguessable, so one browser can never name another's session.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(u128);

impl SessionId {
    /// A fresh identifier from the operating system's random source.
    pub fn random() -> SessionId {
        SessionId(rand::random())
    }

    /// Reads an identifier written by [`Display`](fmt::Display); `None` for
    /// anything else.
    pub fn parse(text: &str) -> Option<SessionId> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(text, 16).ok().map(SessionId)
    }

    /// The first eight hex digits: enough to tell sessions apart in a log,
    /// too few to take one over.
    pub fn short(&self) -> String {
        format!("{:08x}", self.0 >> 96)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.short())
    }
}

/// One browser's session.
pub struct Session {
    /// Its identifier, also the cookie's value.
    id: SessionId,
    /// The state; changed only through [`Session::update`].
    state: Mutex<State>,
    /// Holds the latest published version; subscribers wait on it. Only a
    /// doorbell: the data is in the state.
    doorbell: watch::Sender<u64>,
    /// The step interval, set in the lock section whenever it changes, so a
    /// task sleeping a long interval wakes at once when the user picks a
    /// shorter one.
    interval: watch::Sender<u32>,
    /// Open event streams, so an idle session with a page open is kept.
    subscribers: AtomicUsize,
    /// When a request last touched the session, in the registry's clock.
    last_seen: AtomicU64,
}

/// A running session saves a checkpoint at least every this many versions,
/// so a restart redoes at most this many steps.
pub const CHECKPOINT_EVERY: u64 = 32;

/// How far a restored session's version is raised: past any version that
/// can have been published without being stored. A batch of steps (at most
/// `CHECKPOINT_EVERY`) may start just under a checkpoint, and if that
/// checkpoint then fails, the pause that follows is one more version.
pub const RESTORE_VERSION_GAP: u64 = 2 * CHECKPOINT_EVERY + 1;

/// What the lock guards: the state machine, the token of the one task
/// allowed to run, and where the state is saved.
pub struct State {
    /// The session's Collatz state machine. Its window of recent values is
    /// also what a slow or reconnecting subscriber is brought up to date
    /// from: there is no separate log of updates.
    machine: Collatz,
    /// The live task's generation and its cancellation token.
    task: Option<(u64, CancellationToken)>,
    /// The session's id, its key in the store.
    id: SessionId,
    /// Where the state is saved.
    store: Arc<dyn Store>,
    /// The version saved last.
    saved_version: u64,
    /// Cancelled on shutdown; each task's token is a child of it.
    shutdown: CancellationToken,
}

/// What a command started: a task to spawn, with its generation and token.
pub struct Started {
    /// The generation the task steps for.
    pub generation: u64,
    /// Cancelled when the task is no longer wanted (stop, shutdown).
    pub cancel: CancellationToken,
}

impl State {
    /// Applies a user's command. The change is made on a copy and kept
    /// only once it is stored, so memory never runs ahead of the store and
    /// nothing unsaved is acknowledged or published. When the command starts
    /// a run, returns the task to spawn; the previous task's token is
    /// cancelled.
    pub fn apply(&mut self, command: &Command) -> Result<(u64, Option<Started>), CommandError> {
        let mut next = self.machine.clone();
        let Outcome { delta, start_task } = next.apply(command)?;
        if delta.is_some() {
            save(&*self.store, self.id, &next).map_err(|_| CommandError::Unsaved)?;
            self.saved_version = next.version();
        }
        self.machine = next;
        self.retire_stale_task();
        let started = start_task.map(|generation| self.start_task(generation));
        Ok((self.machine.version(), started))
    }

    /// Up to `max` steps of the task of `generation`, published as one
    /// delta; checkpointed every [`CHECKPOINT_EVERY`] versions and when the
    /// run ends. If the checkpoint cannot be written, the run is paused.
    pub fn step(&mut self, generation: u64, max: usize) -> Result<Delta, Refused> {
        let mut delta = self.machine.step(generation)?;
        for _ in 1..max {
            match self.machine.step(generation) {
                Ok(next) => delta = delta.merge(next),
                Err(_) => break,
            }
        }
        self.retire_stale_task();
        let due = delta.status != Status::Running
            || delta.version >= self.saved_version + CHECKPOINT_EVERY;
        if due && self.checkpoint().is_err() {
            self.halt(generation);
        }
        Ok(delta)
    }

    /// The task of `generation` died: pause its run (and try to store that).
    pub fn halt(&mut self, generation: u64) {
        if self.machine.halt(generation).is_some() {
            let _ = self.checkpoint();
        }
        self.retire_stale_task();
    }

    /// A restored session that was running: the task to spawn for it.
    pub fn resume(&mut self) -> Option<Started> {
        (self.machine.status() == Status::Running)
            .then(|| self.start_task(self.machine.generation()))
    }

    /// Makes the token of a new task of `generation` and remembers it.
    fn start_task(&mut self, generation: u64) -> Started {
        let cancel = self.shutdown.child_token();
        self.task = Some((generation, cancel.clone()));
        Started { generation, cancel }
    }

    /// Stores the state as it is now.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        save(&*self.store, self.id, &self.machine)?;
        self.saved_version = self.machine.version();
        Ok(())
    }

    /// What a subscriber at `cursor` needs next: nothing when it is up to
    /// date, one delta with everything it missed when the window still holds
    /// it, and a snapshot otherwise.
    pub fn since(&self, cursor: Option<Cursor>) -> Option<Update> {
        match cursor {
            Some(cursor) if cursor == self.machine.cursor() => None,
            Some(cursor) => match self.machine.delta_since(cursor) {
                Some(delta) => Some(Update::Delta(delta)),
                None => Some(Update::Snapshot(self.machine.snapshot())),
            },
            None => Some(Update::Snapshot(self.machine.snapshot())),
        }
    }

    /// Retires the token of a task of an older generation, so that a
    /// stopped task wakes and ends at once.
    fn retire_stale_task(&mut self) {
        if let Some((generation, cancel)) = &self.task {
            if *generation != self.machine.generation() {
                cancel.cancel();
                self.task = None;
            }
        }
    }
}

/// Stores `machine` as session `id`'s state; failures are logged here, once.
fn save(store: &dyn Store, id: SessionId, machine: &Collatz) -> Result<(), StoreError> {
    store.save(id, &machine.saved()).inspect_err(
        |error| tracing::error!(%error, session = %id.short(), "could not save the session"),
    )
}

impl Session {
    /// A session with the given state (fresh, or restored from the store).
    pub fn new(
        id: SessionId,
        machine: Collatz,
        now: u64,
        store: Arc<dyn Store>,
        shutdown: CancellationToken,
    ) -> Session {
        let version = machine.version();
        let interval_ms = machine.interval_ms();
        Session {
            id,
            state: Mutex::new(State {
                machine,
                task: None,
                id,
                store,
                saved_version: version,
                shutdown,
            }),
            doorbell: watch::Sender::new(version),
            interval: watch::Sender::new(interval_ms),
            subscribers: AtomicUsize::new(0),
            last_seen: AtomicU64::new(now),
        }
    }

    /// Its identifier.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The lock section (Reflex's `async with self`): waits for the
    /// session's lock, which queues fairly, then runs `change` on the latest
    /// state with every other handler excluded. The closure is synchronous,
    /// so the lock is never held across an `.await`. After the lock is
    /// released, subscribers are told of the new version, if there is one.
    pub async fn update<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        let (result, version) = self.update_unannounced(change).await;
        if let Some(version) = version {
            self.announce(version);
        }
        result
    }

    /// The lock section, leaving it to the caller to [`announce`] the new
    /// version (which it returns, if there is one) after the lock is
    /// released: the background task, stepping as fast as possible, tells
    /// subscribers at most once a millisecond.
    ///
    /// [`announce`]: Session::announce
    pub async fn update_unannounced<R>(
        &self,
        change: impl FnOnce(&mut State) -> R,
    ) -> (R, Option<u64>) {
        let mut state = self.state.lock().await;
        let before = state.machine.version();
        let result = change(&mut state);
        let after = state.machine.version();
        if after != before {
            let interval_ms = state.machine.interval_ms();
            self.interval.send_if_modified(|current| {
                let changed = *current != interval_ms;
                *current = interval_ms;
                changed
            });
        }
        (result, (after != before).then_some(after))
    }

    /// Tells subscribers that `version` is published. Another change may
    /// have taken the lock and rung first: the doorbell only ever moves
    /// forward, so it always shows the newest version announced
    /// (subscribers rely on it to skip the lock).
    pub fn announce(&self, version: u64) {
        self.doorbell.send_if_modified(|rung| {
            let newer = version > *rung;
            if newer {
                *rung = version;
            }
            newer
        });
    }

    /// The state now.
    pub async fn snapshot(&self) -> Snapshot {
        self.state.lock().await.machine.snapshot()
    }

    /// A receiver that wakes on every published version.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.doorbell.subscribe()
    }

    /// A receiver that wakes whenever the step interval changes.
    pub fn watch_interval(&self) -> watch::Receiver<u32> {
        self.interval.subscribe()
    }

    /// Counts open event streams.
    pub fn subscribers(&self) -> &AtomicUsize {
        &self.subscribers
    }

    /// Notes that a request touched the session at `now`.
    pub fn touch(&self, now: u64) {
        self.last_seen.store(now, Ordering::Relaxed);
    }

    /// True when nobody watches it, nothing runs, and it was last touched
    /// at or before `cutoff`. A session whose lock is held is busy.
    pub fn is_idle_since(&self, cutoff: u64) -> bool {
        if self.subscribers.load(Ordering::Relaxed) > 0
            || self.last_seen.load(Ordering::Relaxed) > cutoff
        {
            return false;
        }
        match self.state.try_lock() {
            Ok(state) => state.machine.status() != Status::Running,
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_forgeries() {
        let id = SessionId::random();
        assert_eq!(SessionId::parse(&id.to_string()), Some(id));
        assert_ne!(SessionId::random(), id);
        for bad in [
            "",
            "xyz",
            &"g".repeat(32),
            &"0".repeat(31),
            &"0".repeat(33),
            "+0000000000000000000000000000000",
        ] {
            assert_eq!(SessionId::parse(bad), None, "{bad}");
        }
        assert_eq!(id.short().len(), 8);
        assert!(id.to_string().starts_with(&id.short()));
    }
}
