//! One browser's session: its state behind a `tokio::sync::Mutex` and the
//! lock section every change goes through.

use std::{
    any::Any,
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
};

use shared::{
    task::{Machine, Outcome, Refused, Standing, Task},
    wire::{CommandError, DeltaOf, EventId, Failure, SnapshotOf, Status, UpdateOf},
};
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

pub use crate::id::{RunId, SessionId};
use crate::{
    backend::{Change, CommitError, Heard, Ledger, Op},
    rosters::Rosters,
    store::Receipt,
};

/// What a page of a session of kind `T` is sent.
pub type Update<T> = UpdateOf<<T as Task>::View, <T as Task>::Change>;

/// One browser's session, running tasks of kind `T`.
pub struct Session<T: Task> {
    /// Its identifier, also the cookie's value.
    id: RunId,
    /// The state; changed only through [`Session::update`].
    state: Mutex<State<T>>,
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
    /// The minutes its policy lets it run with nobody watching, 0 when it
    /// keeps running, as the last lock section left it: read without the
    /// lock when looking for runs nobody watches.
    unwatched_minutes: AtomicU32,
    /// Set when the registry lets the session go (expired or evicted): a
    /// request that found it just before must not store it again.
    retired: AtomicBool,
    /// Set while a new session waits for its first command's answer: it
    /// never gives way at the cap or expires meanwhile (it would count as
    /// idle, and its visitor be told 200 for a session that is gone).
    pinned: AtomicBool,
    /// Set when this copy must read the store before it is next used: a
    /// commit met a newer version, bells may have been missed, or a bell's
    /// change did not follow the copy.
    behind: AtomicBool,
    /// Changes other nodes committed, as their bells told, not applied yet
    /// (at most [`INBOX`]; beyond, the store is read instead). Applied in
    /// the lock section when they follow the copy exactly.
    inbox: std::sync::Mutex<std::collections::VecDeque<Heard<T::Command, T::Work>>>,
    /// When a request last touched the session, in the registry's clock
    /// (milliseconds).
    last_seen: AtomicU64,
    /// Told when the run changes state, for the lists of its session's
    /// pages.
    rosters: Arc<Rosters<T::Summary>>,
    /// What the task kind's own routes keep beside the state, outside the
    /// lock, so they never hold up a step (Collatz: the marks its pages of
    /// older values are recomputed from). Made on first use.
    aside: std::sync::OnceLock<Box<dyn Any + Send + Sync>>,
}

/// What the lock guards: the state machine, the token of the one task
/// allowed to run, and the ledger its changes are committed through.
pub struct State<T: Task> {
    /// The session's state machine. What its run keeps of recent changes
    /// (Collatz: a window of values) is also what a slow or reconnecting
    /// subscriber is brought up to date from: there is no separate log of
    /// updates.
    machine: Machine<T>,
    /// The live task's generation and its cancellation token.
    task: Option<(u64, CancellationToken)>,
    /// Where changes are committed: one process's store, or the cluster's
    /// Redis. The code of this file does not depend on which.
    ledger: Ledger<T>,
    /// Cancelled on shutdown; each task's token is a child of it.
    shutdown: CancellationToken,
    /// Where the run stood after the last change: when that changes, the
    /// session's streams are told (see [`Rosters::moved`]).
    standing: Standing,
}

/// What a command started: a task to spawn, with its generation and token.
pub struct Started {
    /// The generation the task steps for.
    pub generation: u64,
    /// Cancelled when the task is no longer wanted (stop, shutdown).
    pub cancel: CancellationToken,
    /// How long ago the run's last step was (a run taken over from another
    /// node): the first step is due one interval after it, so the run keeps
    /// its beat across the handover.
    pub since_step: std::time::Duration,
}

/// What a task's batch of steps did.
pub struct Stepped<C, P> {
    /// The change published.
    pub delta: DeltaOf<C>,
    /// One process's checkpoint, to await after the lock section: no lock
    /// is held while the disk works.
    pub checkpoint: Option<Receipt<()>>,
    /// The work of the next steps, planned from the state they left (see
    /// `Task::plan`); none for a kind whose steps do their own.
    pub plans: Vec<P>,
}

/// Why a task's batch of steps was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepError {
    /// The machine refused: the task is stale or the run is not running.
    Refused(Refused),
    /// Not committed (see [`CommitError`]); the state is as it was.
    Commit(CommitError),
}

impl<T: Task> State<T> {
    /// A rebuilt session that was running and has no task yet: the task to
    /// spawn for it.
    pub fn resume(&mut self) -> Option<Started> {
        (self.machine.status() == Status::Running && self.task.is_none() && self.ledger.owns_run())
            .then(|| self.start_task(self.machine.generation()))
    }

    /// Makes the token of a new task of `generation` and remembers it.
    fn start_task(&mut self, generation: u64) -> Started {
        let cancel = self.shutdown.child_token();
        self.task = Some((generation, cancel.clone()));
        Started {
            generation,
            cancel,
            since_step: std::time::Duration::ZERO,
        }
    }

    /// What a subscriber at `last` needs next, with the event id it brings
    /// it to: nothing when it is up to date, one delta with everything it
    /// missed when the window still holds it, and a snapshot otherwise (and
    /// always when `last` names another incarnation).
    pub fn since(&self, last: Option<EventId>) -> Option<(EventId, Update<T>)> {
        let incarnation = self.machine.incarnation();
        let cursor = last
            .filter(|last| last.incarnation == incarnation)
            .map(|last| last.cursor);
        let update = match cursor {
            Some(cursor) if cursor == self.machine.cursor() => return None,
            Some(cursor) => match self.machine.delta_since(cursor) {
                Some(delta) => UpdateOf::Delta(delta),
                None => UpdateOf::Snapshot(self.machine.snapshot()),
            },
            None => UpdateOf::Snapshot(self.machine.snapshot()),
        };
        let id = EventId {
            incarnation,
            cursor: update.cursor(),
        };
        Some((id, update))
    }

    /// Whether a subscriber at `last` has seen a later version of this
    /// incarnation than this copy has.
    fn is_behind(&self, last: Option<EventId>) -> bool {
        last.is_some_and(|last| {
            last.incarnation == self.machine.incarnation()
                && last.cursor.version > self.machine.version()
        })
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

/// How many times a command is tried when other nodes keep committing
/// first (each try catches up with them).
const COMMAND_TRIES: usize = 8;

/// The most changes heard from other nodes that wait for the lock section;
/// a session further behind reads the store.
const INBOX: usize = 64;

/// The scheduler rings a timed run's steps at the next tick.
impl<T: Task> crate::scheduler::Doorbell for Session<T> {
    fn ring(&self, version: u64) {
        self.announce(version);
    }
}

impl<T: Task> Session<T> {
    /// A session with the given state (fresh, or loaded) and its ledger.
    pub fn new(
        id: RunId,
        machine: Machine<T>,
        ledger: Ledger<T>,
        now: u64,
        shutdown: CancellationToken,
        rosters: Arc<Rosters<T::Summary>>,
    ) -> Session<T> {
        let version = machine.version();
        let standing = machine.standing();
        let interval_ms = machine.interval_ms();
        let running = machine.status() == Status::Running;
        let machine_minutes = machine.unwatched().minutes().unwrap_or(0);
        Session {
            id,
            state: Mutex::new(State {
                machine,
                task: None,
                ledger,
                shutdown,
                standing,
            }),
            doorbell: watch::Sender::new(version),
            interval: watch::Sender::new(interval_ms),
            subscribers: AtomicUsize::new(0),
            running: AtomicBool::new(running),
            unwatched_minutes: AtomicU32::new(machine_minutes),
            retired: AtomicBool::new(false),
            pinned: AtomicBool::new(false),
            behind: AtomicBool::new(false),
            inbox: Default::default(),
            last_seen: AtomicU64::new(now),
            rosters,
            aside: std::sync::OnceLock::new(),
        }
    }

    /// Its identifier.
    pub fn id(&self) -> RunId {
        self.id
    }

    /// Applies a user's command in the lock section. The change is made on a
    /// copy and kept only once the ledger has committed it: the lock is held
    /// across that one await, so memory never runs ahead of the store and
    /// nothing uncommitted is acknowledged or published. When another node
    /// committed first, the session catches up and the command is tried
    /// again on the newer state. When the command starts a run, `spawn` gets
    /// the task to start, still inside the lock section (so no page sees
    /// "running" before the task exists). Returns the version that shows the
    /// command's effect.
    pub async fn command(
        &self,
        command: &T::Command,
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
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|since| since.as_secs());
        for _ in 0..COMMAND_TRIES {
            self.catch_up(&mut state)
                .await
                .map_err(|e| self.refusal(e))?;
            let base = state.machine.version();
            let mut next = state.machine.clone();
            let Outcome { delta, start_task } = next.apply_at(command, at)?;
            if delta.is_some() {
                let op = Op::Command {
                    command: command.clone(),
                    takes_task: start_task.is_some(),
                    at,
                };
                let change = Change {
                    base,
                    after: &next,
                    op: &op,
                };
                let committed = self.read_again_if_dropped(state.ledger.commit(change));
                if let Err(error) = committed.await {
                    self.refused(&mut state, &error);
                    if error == CommitError::Conflict {
                        continue;
                    }
                    return Err(self.refusal(error));
                }
            }
            state.machine = next;
            state.retire_stale_task();
            if let Some(generation) = start_task {
                spawn(state.start_task(generation));
            }
            let version = state.machine.version();
            self.note_change(&mut state);
            drop(state);
            if version != before {
                self.announce(version);
            }
            return Ok(version);
        }
        tracing::warn!(session = %self.id.short(), "other nodes kept changing the session; command refused");
        Err(CommandError::Unsaved)
    }

    /// What a command is answered when its change could not be committed.
    fn refusal(&self, error: CommitError) -> CommandError {
        match error {
            CommitError::Gone => CommandError::Ended,
            CommitError::Damaged(_) => CommandError::StoreDamaged,
            error => {
                tracing::warn!(%error, session = %self.id.short(), "a command could not be committed");
                CommandError::Unsaved
            }
        }
    }

    /// In the lock section: what a change the ledger refused means for this
    /// copy, whichever change it was.
    fn refused(&self, state: &mut State<T>, error: &CommitError) {
        match error {
            // Another node committed first, or an answer lost on the way
            // may hide a commit that was made: the store is read before the
            // next use.
            CommitError::Conflict | CommitError::Unavailable(_) | CommitError::Damaged(_) => {
                self.behind.store(true, Ordering::Release);
            }
            // Another node owns the run now: this node's task ends, and the
            // state is read again.
            CommitError::Fenced => {
                self.behind.store(true, Ordering::Release);
                if let Some((_, cancel)) = state.task.take() {
                    cancel.cancel();
                }
            }
            // Gone from the store: the session is let go of; its streams
            // wake to end.
            CommitError::Gone => {
                self.retired.store(true, Ordering::Release);
                self.doorbell.send_modify(|_| {});
            }
        }
    }

    /// Up to `max` steps of the task of `generation` in the lock section
    /// (or, given `work` done outside it, one step per piece of work),
    /// published as one delta once the ledger has them, and the plans of
    /// up to `ways` next steps. When the ledger
    /// commits before publishing (a cluster), the steps are made on a copy,
    /// so a refused commit leaves the state as it was. The caller announces
    /// the new version ([`Session::announce`]): as fast as possible, a task
    /// tells subscribers at most once a millisecond.
    pub async fn step(
        &self,
        generation: u64,
        max: usize,
        work: Vec<T::Work>,
        ways: usize,
    ) -> Result<Stepped<T::Change, T::Plan>, StepError> {
        let mut guard = self.state.lock().await;
        // Only the live task steps: one stopped or handed over meanwhile
        // (its token cancelled while it waited for the lock) does not.
        if guard.task.as_ref().map(|(g, _)| *g) != Some(generation) {
            return Err(StepError::Refused(Refused::Stale));
        }
        self.catch_up(&mut guard).await.map_err(StepError::Commit)?;
        let state = &mut *guard;
        let copy = state.ledger.commits_first().then(|| state.machine.clone());
        let steps = if work.is_empty() { max } else { work.len() };
        let mut pieces = work.iter().cloned();
        let mut piece = || pieces.next().unwrap_or_default();
        let mut delta = state
            .machine
            .step_with(generation, piece())
            .map_err(StepError::Refused)?;
        for _ in 1..steps {
            match state.machine.step_with(generation, piece()) {
                Ok(next) => delta = delta.merge(next),
                Err(_) => break,
            }
        }
        let count = delta.version - delta.base;
        let mut work = work;
        work.truncate(usize::try_from(count).unwrap_or(usize::MAX));
        let op = Op::Steps {
            generation,
            count,
            work,
        };
        let change = Change {
            base: delta.base,
            after: &state.machine,
            op: &op,
        };
        match state.ledger.commit(change).await {
            Ok(checkpoint) => {
                state.retire_stale_task();
                self.note_change(state);
                let plans = match state.machine.run() {
                    Some(run) if !run.done() => run.plan(&state.machine.settings(), ways),
                    _ => Vec::new(),
                };
                Ok(Stepped {
                    delta,
                    checkpoint,
                    plans,
                })
            }
            Err(error) => {
                if let Some(copy) = copy {
                    state.machine = copy;
                }
                self.refused(state, &error);
                Err(StepError::Commit(error))
            }
        }
    }

    /// The task of `generation` died, or its checkpoint could not be
    /// stored (`failure`): its run is failed, so the switch never says
    /// running while nothing runs and the page says why. One process saves
    /// it without waiting (and keeps trying); a node commits it while it
    /// still owns the run.
    pub async fn halt(&self, generation: u64, failure: Failure) {
        let mut state = self.state.lock().await;
        let mut next = state.machine.clone();
        if next.halt(generation, failure).is_some() {
            let op = Op::Halt {
                generation,
                failure,
            };
            if let Err(error) = self.keep_committed(&mut state, next, op).await {
                tracing::error!(%error, session = %self.id.short(), "could not record the failure of a task");
            }
        }
        state.retire_stale_task();
        let version = state.machine.version();
        self.note_change(&mut state);
        drop(state);
        self.announce(version);
    }

    /// Nobody watched the running run for as long as its policy allows: it
    /// is paused or cancelled as the policy says, committed like a
    /// command (in a cluster, only by the node that owns the run). Returns
    /// whether it was.
    pub async fn lapse(&self) -> bool {
        let mut state = self.state.lock().await;
        if self.retired.load(Ordering::Acquire) || !state.ledger.owns_run() {
            return false;
        }
        if self.catch_up(&mut state).await.is_err() {
            return false;
        }
        let generation = state.machine.generation();
        let mut next = state.machine.clone();
        if next.lapse(generation).is_none() {
            return false;
        }
        let op = Op::Lapse { generation };
        if let Err(error) = self.keep_committed(&mut state, next, op).await {
            tracing::warn!(%error, session = %self.id.short(), "could not pause or cancel an unwatched run");
            return false;
        }
        state.retire_stale_task();
        let version = state.machine.version();
        self.note_change(&mut state);
        drop(state);
        self.announce(version);
        true
    }

    /// In the lock section: commits `next`, made from the state by `op`,
    /// and keeps it once committed; refused, the state stays as it was.
    async fn keep_committed(
        &self,
        state: &mut State<T>,
        next: Machine<T>,
        op: Op<T::Command, T::Work>,
    ) -> Result<(), CommitError> {
        let change = Change {
            base: state.machine.version(),
            after: &next,
            op: &op,
        };
        match state.ledger.commit(change).await {
            Ok(_) => {
                state.machine = next;
                Ok(())
            }
            Err(error) => {
                self.refused(state, &error);
                Err(error)
            }
        }
    }

    /// This node took over the session's run (its owner stopped renewing
    /// the lease, or handed it over; epoch `epoch`, its last step
    /// `since_step` ago): reads the state again (unless this copy was
    /// loaded after the lease was taken) and returns the task to spawn, if
    /// the run still runs.
    pub async fn adopt(
        &self,
        epoch: u64,
        since_step: std::time::Duration,
        read_again: bool,
    ) -> Option<Started> {
        let mut state = self.state.lock().await;
        state.ledger.adopt(epoch);
        if read_again {
            self.behind.store(true, Ordering::Release);
        }
        if let Err(error) = self.catch_up(&mut state).await {
            tracing::warn!(%error, session = %self.id.short(), "could not read a session taken over");
            return None;
        }
        // A task of an earlier lease of this node is stale: its commits
        // would be refused.
        if let Some((_, cancel)) = state.task.take() {
            cancel.cancel();
        }
        state.resume().map(|started| Started {
            since_step,
            ..started
        })
    }

    /// Hands the run over to another node (this one is stopping): its
    /// task stops, and the lease is released, so another node takes the
    /// run at once. Returns whether there was a run to hand over.
    pub async fn hand_over(&self) -> bool {
        let mut state = self.state.lock().await;
        if let Some((_, cancel)) = state.task.take() {
            cancel.cancel();
        }
        if !state.ledger.owns_run() {
            return false;
        }
        match state.ledger.release().await {
            Ok(()) => true,
            Err(error) => {
                // The lease lapses by itself: the run is taken over after it.
                tracing::warn!(%error, session = %self.id.short(), "could not hand a run over");
                false
            }
        }
    }

    /// How often the task must renew its lease when it commits nothing.
    pub async fn renew_every(&self) -> Option<std::time::Duration> {
        self.state.lock().await.ledger.renew_every()
    }

    /// Renews the lease of the run (a long step interval commits too
    /// seldom to keep it). Outside the lock section's change: only the
    /// ledger is touched.
    pub async fn renew(&self) -> Result<(), CommitError> {
        let mut state = self.state.lock().await;
        let renewed = state.ledger.renew().await;
        if let Err(error) = &renewed {
            self.refused(&mut state, error);
        }
        renewed
    }

    /// Another node committed a change (its bell rang). Newer than what this
    /// copy published, it is kept for the next lock section, and the
    /// session's streams are woken to apply it.
    pub fn notice(&self, heard: Heard<T::Command, T::Work>) {
        if heard.version <= *self.doorbell.borrow() {
            return;
        }
        {
            let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
            if inbox.len() < INBOX {
                inbox.push_back(heard);
            } else {
                inbox.clear();
                self.behind.store(true, Ordering::Release);
            }
        }
        self.doorbell.send_modify(|_| {});
    }

    /// Bells may have been missed (the connection to Redis dropped), or
    /// Redis restarted: the session reads the store again before it is
    /// next used.
    pub fn distrust(&self) {
        self.behind.store(true, Ordering::Release);
        self.doorbell.send_modify(|_| {});
    }

    /// Whether others committed changes this copy has not applied yet.
    pub fn is_behind(&self) -> bool {
        self.behind.load(Ordering::Acquire)
            || !self
                .inbox
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
    }

    /// Whether the session was let go of (expired, evicted, or gone from
    /// the store): its streams end.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// In the lock section: brings the state up to date with what others
    /// committed, and announces it. Changes heard from bells are applied when
    /// they follow the copy exactly; the store is read when one does not, or
    /// when the copy must be read again ([`Session::distrust`], a conflict).
    async fn catch_up(&self, state: &mut State<T>) -> Result<(), CommitError> {
        let heard: Vec<Heard<T::Command, T::Work>> = self
            .inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        // Cleared before reading: a bell that rings meanwhile sets it again.
        let mut read = self.behind.swap(false, Ordering::AcqRel);
        let mut next: Option<Machine<T>> = None;
        for change in heard {
            let copy = next.as_ref().unwrap_or(&state.machine);
            if change.version <= copy.version() {
                continue; // this copy made it, or has it already
            }
            if read || change.base != copy.version() {
                read = true;
                break;
            }
            let mut replayed = copy.clone();
            if !change.op.replay(&mut replayed) || replayed.version() != change.version {
                read = true;
                break;
            }
            next = Some(replayed);
        }
        if read {
            let copy = next.as_ref().unwrap_or(&state.machine);
            match self
                .read_again_if_dropped(state.ledger.catch_up(copy))
                .await
            {
                Ok(Some(machine)) => next = Some(machine),
                Ok(None) => {}
                Err(error) => {
                    self.refused(state, &error);
                    return Err(error);
                }
            }
        }
        if let Some(machine) = next {
            state.machine = machine;
            state.retire_stale_task();
            self.note_change(state);
            self.announce(state.machine.version());
        }
        Ok(())
    }

    /// Awaits `store` (a read or a commit) in a lock section. A lock
    /// section can be dropped at this await (its stream's browser left, its
    /// request was cut off) after bells were taken from the inbox, or with
    /// a commit sent but not answered: then the copy is read again before
    /// its next use, as after a lost connection.
    async fn read_again_if_dropped<A>(&self, store: impl std::future::Future<Output = A>) -> A {
        /// Distrusts the copy when dropped armed.
        struct Armed<'a, T: Task>(Option<&'a Session<T>>);
        impl<T: Task> Drop for Armed<'_, T> {
            fn drop(&mut self) {
                if let Some(session) = self.0 {
                    session.distrust();
                }
            }
        }
        let mut armed = Armed(Some(self));
        let answer = store.await;
        armed.0 = None;
        answer
    }

    /// What a subscriber at `last` needs next (see [`State::since`]), read
    /// after catching up with other nodes. A copy that cannot catch up
    /// (Redis is down) answers from what it has.
    pub async fn since(&self, last: Option<EventId>) -> Option<(EventId, Update<T>)> {
        let mut state = self.state.lock().await;
        let _ = self.catch_up(&mut state).await;
        if state.is_behind(last) {
            // The subscriber saw more than this copy has (on another node):
            // it is never sent an older state of the same incarnation; the
            // copy reads the store again and the stream waits for it.
            self.behind.store(true, Ordering::Release);
            return None;
        }
        state.since(last)
    }

    /// The lock section (Reflex's `async with self`): waits for the
    /// session's lock, which queues fairly, then runs `change` on the latest
    /// state with every other handler excluded. The closure is synchronous,
    /// so the lock is never held across an `.await`. After the lock is
    /// released, subscribers are told of the new version, if there is one.
    pub async fn update<R>(&self, change: impl FnOnce(&mut State<T>) -> R) -> R {
        let mut state = self.state.lock().await;
        let before = state.machine.version();
        let result = change(&mut state);
        let after = state.machine.version();
        if after != before {
            self.note_change(&mut state);
            drop(state);
            self.announce(after);
        }
        result
    }

    /// Wakes the task if the interval changed, and notes whether the run is
    /// running (called in the lock section).
    fn note_change(&self, state: &mut State<T>) {
        let standing = state.machine.standing();
        if std::mem::replace(&mut state.standing, standing) != standing {
            self.rosters.moved(self.id.session);
        }
        self.running
            .store(state.machine.status() == Status::Running, Ordering::Relaxed);
        let minutes = state.machine.unwatched().minutes().unwrap_or(0);
        self.unwatched_minutes.store(minutes, Ordering::Relaxed);
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

    /// A copy of the state machine (what a new session is stored as).
    pub async fn machine(&self) -> Machine<T> {
        self.state.lock().await.machine.clone()
    }

    /// The state now.
    pub async fn snapshot(&self) -> SnapshotOf<T::View> {
        self.read(Machine::snapshot).await
    }

    /// What `read` finds in the state now, caught up with other nodes (a
    /// copy that cannot catch up answers from what it has). A short lock
    /// section: `read` is synchronous.
    pub async fn read<R>(&self, read: impl FnOnce(&Machine<T>) -> R) -> R {
        let mut state = self.state.lock().await;
        let _ = self.catch_up(&mut state).await;
        read(&state.machine)
    }

    /// What the task kind's routes keep beside this session (see the
    /// field), made on first use. A session holds one type of it.
    pub fn aside<A: Default + Send + Sync + 'static>(&self) -> &A {
        self.aside
            .get_or_init(|| Box::new(A::default()))
            .downcast_ref()
            .expect("a session's kind keeps one type beside it")
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

    /// Whether its run, as last changed, steps at least once per `period`
    /// (so its streams wake that often anyway).
    pub fn steps_within(&self, period: std::time::Duration) -> bool {
        self.is_running() && u128::from(*self.interval.borrow()) <= period.as_millis()
    }

    /// The minutes its policy lets it run unwatched when last changed;
    /// `None` when it keeps running.
    pub fn unwatched_minutes(&self) -> Option<u32> {
        Some(self.unwatched_minutes.load(Ordering::Relaxed)).filter(|m| *m > 0)
    }

    /// When a request last touched it (or its last page closed).
    pub fn last_seen(&self) -> u64 {
        self.last_seen.load(Ordering::Relaxed)
    }

    /// Pins a new session until its first command is answered (see
    /// [`Session::unpin`]).
    pub fn pin(&self) {
        self.pinned.store(true, Ordering::Release);
    }

    /// Its first command was answered: from now on it may give way or
    /// expire like any other.
    pub fn unpin(&self, now: u64) {
        self.touch(now);
        self.pinned.store(false, Ordering::Release);
    }

    /// Whether it waits for its first command's answer.
    pub fn is_pinned(&self) -> bool {
        self.pinned.load(Ordering::Acquire)
    }

    /// If nobody watches it, nothing runs, and it was last touched at or
    /// before `cutoff`, retires it (see [`Session::retire`]) and returns
    /// true. A session whose lock is held, or that is pinned, is busy.
    pub fn retire_if_idle_since(&self, cutoff: u64) -> bool {
        if self.subscribers.load(Ordering::Relaxed) > 0
            || self.is_pinned()
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
        self.retire_locked(&mut state);
    }

    /// Lets the session go once `delete` (its removal from the store,
    /// started in its lock section) succeeded: no step of its task can be
    /// stored after the removal, so none brings it back. On failure the
    /// session goes on as it was.
    pub async fn retire_deleted<E, F>(&self, delete: impl FnOnce() -> F) -> Result<(), E>
    where
        F: std::future::Future<Output = Result<(), E>>,
    {
        let mut state = self.state.lock().await;
        delete().await?;
        self.retire_locked(&mut state);
        Ok(())
    }

    fn retire_locked(&self, state: &mut State<T>) {
        self.retired.store(true, Ordering::Release);
        if let Some((_, cancel)) = state.task.take() {
            cancel.cancel();
        }
        self.doorbell.send_modify(|_| {});
    }
}
