//! One browser's session: its state behind a `tokio::sync::Mutex` and the
//! lock section every change goes through.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Arc,
};

use shared::{
    trajectory::{Marks, Page, PageError},
    wire::{Command, CommandError, Delta, EventId, Snapshot, Status, Update},
    Collatz, Number, Outcome, Refused,
};
use std::time::Duration;

use tokio::{
    sync::{watch, Mutex},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

pub use crate::id::SessionId;
use crate::store::{Receipt, Store};

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
    /// Whether its run is running, as the last lock section left it: read
    /// without the lock when choosing a session to evict.
    running: AtomicBool,
    /// Set when the registry lets the session go (expired or evicted): a
    /// request that found it just before must not store it again.
    retired: AtomicBool,
    /// When a request last touched the session, in the registry's clock.
    last_seen: AtomicU64,
    /// Marks of the run's trajectory that older values are recomputed
    /// from: made on the first request for them, at most
    /// [`shared::trajectory::MARKS`] values, replaced when the run changes.
    /// Outside the lock, so paging never holds up a step.
    marks: Arc<std::sync::Mutex<Option<Marks>>>,
}

/// A running session saves a checkpoint after at least this many versions
/// and [`CHECKPOINT_PERIOD`] (and when its run stops), so a restart redoes
/// at most 32 steps or one second of steps, whichever is more. As fast as
/// possible, that is one save a second per session rather than one per
/// batch.
pub const CHECKPOINT_EVERY: u64 = 32;
/// See [`CHECKPOINT_EVERY`].
pub const CHECKPOINT_PERIOD: Duration = Duration::from_secs(1);

/// Each save reserves this many versions past its own, which may be
/// published before the next save; a rebuild resumes above the reservation,
/// so versions never go backwards. A running task checkpoints again (and
/// waits for it) well before using half of it.
pub const VERSION_RESERVE: u64 = 1 << 20;

/// How far a restored session's version is raised when its record has no
/// reservation (records from before reservations were kept): past any
/// version the old checkpointing (every 32 versions) could have published
/// without storing it.
pub const RESTORE_VERSION_GAP: u64 = 2 * CHECKPOINT_EVERY + 1;

/// What the store keeps of `machine`, with its reservation of versions.
pub fn record(machine: &Collatz) -> shared::Saved {
    shared::Saved {
        reserved: machine.version() + VERSION_RESERVE,
        ..machine.saved()
    }
}

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
    /// When a checkpoint was last enqueued (tokio's clock: tests pause it).
    saved_at: Instant,
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
    /// Up to `max` steps of the task of `generation`, published as one
    /// delta. A checkpoint is enqueued in the store every
    /// [`CHECKPOINT_EVERY`] versions and when the run ends; its receipt is
    /// returned for the task to await *after* the lock section, so no lock
    /// is held while the disk works.
    pub fn step(
        &mut self,
        generation: u64,
        max: usize,
    ) -> Result<(Delta, Option<Receipt<()>>), Refused> {
        let mut delta = self.machine.step(generation)?;
        for _ in 1..max {
            match self.machine.step(generation) {
                Ok(next) => delta = delta.merge(next),
                Err(_) => break,
            }
        }
        self.retire_stale_task();
        let since = delta.version - self.saved_version;
        let due = delta.status != Status::Running
            || since >= VERSION_RESERVE / 2
            || (since >= CHECKPOINT_EVERY && self.saved_at.elapsed() >= CHECKPOINT_PERIOD);
        Ok((delta, due.then(|| self.checkpoint())))
    }

    /// The task of `generation` died, or its checkpoint could not be
    /// stored: pause its run. The pause is saved without waiting; if the
    /// store fails it keeps trying, so a restart does not bring the run
    /// back running.
    pub fn halt(&mut self, generation: u64) {
        if self.machine.halt(generation).is_some() {
            self.saved_version = self.machine.version();
            self.saved_at = Instant::now();
            self.store.keep(self.id, record(&self.machine));
        }
        self.retire_stale_task();
    }

    /// A rebuilt session that was running and has no task yet: the task to
    /// spawn for it.
    pub fn resume(&mut self) -> Option<Started> {
        (self.machine.status() == Status::Running && self.task.is_none())
            .then(|| self.start_task(self.machine.generation()))
    }

    /// Makes the token of a new task of `generation` and remembers it.
    fn start_task(&mut self, generation: u64) -> Started {
        let cancel = self.shutdown.child_token();
        self.task = Some((generation, cancel.clone()));
        Started { generation, cancel }
    }

    /// Enqueues the state as it is now in the store; failures are logged
    /// there.
    fn checkpoint(&mut self) -> Receipt<()> {
        self.saved_version = self.machine.version();
        self.saved_at = Instant::now();
        self.store.save(self.id, record(&self.machine))
    }

    /// What a subscriber at `last` needs next, with the event id it brings
    /// it to: nothing when it is up to date, one delta with everything it
    /// missed when the window still holds it, and a snapshot otherwise (and
    /// always when `last` names another incarnation).
    pub fn since(&self, last: Option<EventId>) -> Option<(EventId, Update)> {
        let incarnation = self.machine.incarnation();
        let cursor = last
            .filter(|last| last.incarnation == incarnation)
            .map(|last| last.cursor);
        let update = match cursor {
            Some(cursor) if cursor == self.machine.cursor() => return None,
            Some(cursor) => match self.machine.delta_since(cursor) {
                Some(delta) => Update::Delta(delta),
                None => Update::Snapshot(self.machine.snapshot()),
            },
            None => Update::Snapshot(self.machine.snapshot()),
        };
        let id = EventId {
            incarnation,
            cursor: update.cursor(),
        };
        Some((id, update))
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
        let running = machine.status() == Status::Running;
        Session {
            id,
            state: Mutex::new(State {
                machine,
                task: None,
                id,
                store,
                saved_version: version,
                saved_at: Instant::now(),
                shutdown,
            }),
            doorbell: watch::Sender::new(version),
            interval: watch::Sender::new(interval_ms),
            subscribers: AtomicUsize::new(0),
            running: AtomicBool::new(running),
            retired: AtomicBool::new(false),
            last_seen: AtomicU64::new(now),
            marks: Arc::default(),
        }
    }

    /// Its identifier.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Applies a user's command in the lock section. The change is made on a
    /// copy and kept only once the store has it: the lock is held across
    /// that one await (the save), so memory never runs ahead of the store
    /// and nothing unsaved is acknowledged or published. When the command
    /// starts a run, `spawn` gets the task to start, still inside the lock
    /// section (so no page sees "running" before the task exists). Returns
    /// the version that shows the command's effect.
    pub async fn command(
        &self,
        command: &Command,
        spawn: impl FnOnce(Started),
    ) -> Result<u64, CommandError> {
        let mut state = self.state.lock().await;
        // Checked in the lock section: the registry retires a session only
        // while its lock is free, so either this command finished first or
        // it sees the flag.
        if self.retired.load(Ordering::Acquire) {
            return Err(CommandError::Ended);
        }
        let before = state.machine.version();
        let mut next = state.machine.clone();
        let Outcome { delta, start_task } = next.apply(command)?;
        if delta.is_some() {
            state
                .store
                .save(self.id, record(&next))
                .await
                .map_err(|error| {
                    tracing::error!(%error, session = %self.id.short(), "could not save the session");
                    CommandError::Unsaved
                })?;
            state.saved_version = next.version();
        }
        state.machine = next;
        state.retire_stale_task();
        if let Some(generation) = start_task {
            spawn(state.start_task(generation));
        }
        let version = state.machine.version();
        self.note_change(&state);
        drop(state);
        if version != before {
            self.announce(version);
        }
        Ok(version)
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
            self.note_change(&state);
        }
        (result, (after != before).then_some(after))
    }

    /// Wakes the task if the interval changed, and notes whether the run is
    /// running (called in the lock section).
    fn note_change(&self, state: &State) {
        self.running
            .store(state.machine.status() == Status::Running, Ordering::Relaxed);
        let interval_ms = state.machine.interval_ms();
        self.interval.send_if_modified(|current| {
            let changed = *current != interval_ms;
            *current = interval_ms;
            changed
        });
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

    /// The run's start and the steps taken from it, once there is a run.
    pub async fn trajectory(&self) -> Option<(Number, u64)> {
        let state = self.state.lock().await;
        let (start, steps) = state.machine.trajectory()?;
        Some((start.clone(), steps))
    }

    /// `count` values of the run from step `from`, recomputed exactly from
    /// the run's marks on the blocking pool (a page far into a long run of
    /// big numbers walks up to a stride of steps).
    pub async fn values(&self, from: u64, count: u64) -> Result<Page, PageError> {
        let (start, steps) = self.trajectory().await.ok_or(PageError::NoRun)?;
        let marks = self.marks.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let mut marks = marks.lock().unwrap_or_else(|p| p.into_inner());
            let marks = match &mut *marks {
                Some(kept) if *kept.start() == start => kept,
                other => other.insert(Marks::new(start)),
            };
            let values = marks.page(from, count, steps)?;
            Ok(Page {
                start: marks.start().to_string(),
                from,
                values,
            })
        })
        .await;
        // The closure does not panic; a cancelled pool (shutdown) has no run.
        answer.unwrap_or(Err(PageError::NoRun))
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

    /// Whether its run was running when last changed.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// When a request last touched it (or its last page closed).
    pub fn last_seen(&self) -> u64 {
        self.last_seen.load(Ordering::Relaxed)
    }

    /// If nobody watches it, nothing runs, and it was last touched at or
    /// before `cutoff`, retires it (see [`Session::retire`]) and returns
    /// true. A session whose lock is held is busy.
    pub fn retire_if_idle_since(&self, cutoff: u64) -> bool {
        if self.subscribers.load(Ordering::Relaxed) > 0
            || self.last_seen.load(Ordering::Relaxed) > cutoff
        {
            return false;
        }
        match self.state.try_lock() {
            Ok(state) if state.machine.status() != Status::Running => {
                self.retired.store(true, Ordering::Release);
                true
            }
            _ => false,
        }
    }

    /// Lets the session go (evicted): its task stops, and a command that
    /// found it before is refused with [`CommandError::Ended`] rather than
    /// storing it again.
    pub async fn retire(&self) {
        let mut state = self.state.lock().await;
        self.retired.store(true, Ordering::Release);
        if let Some((_, cancel)) = state.task.take() {
            cancel.cancel();
        }
    }
}
