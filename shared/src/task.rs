//! A kind of background task, and the machine that runs any of them.
//!
//! A [`Task`] is what a developer writes for a new kind of run: its state,
//! how a command begins one (and validates its input), one step, when it is
//! done, what the page is shown of it and what changed, and what a store
//! keeps. [`Machine`] is everything else, the same for every kind: the
//! status (idle, running, paused, finished, cancelled, failed), the step interval, the
//! generation that fences its one stepper, the version of every change, the
//! incarnation, and saving and rebuilding with versions that never go back.
//! Nothing here names a task kind.

use std::fmt;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::wire::{
    self, CommandError, Cursor, DeltaOf, Failure, ListedOf, SnapshotOf, Status, Unwatched,
    MAX_INTERVAL_MS,
};

/// What a command asks of a run, as the machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control<'a, I: ?Sized> {
    /// Begin a new run from this input (validated by [`Task::begin`]).
    Begin(&'a I),
    /// The Running switch.
    Running(bool),
    /// Milliseconds between two steps.
    Interval(u32),
    /// End the run where it is (running or paused), for good.
    Cancel,
    /// What happens to the run while no page of it is open.
    Unwatched(Unwatched),
}

/// A kind of background task: one run's own state and rules. Pure and
/// synchronous: the runtime calls it under the run's lock.
pub trait Task: Clone + fmt::Debug + Send + Sync + Sized + 'static {
    /// Fixed choices for its runs, from the server's configuration.
    type Settings: Copy + fmt::Debug + PartialEq + Send + Sync + 'static;
    /// A user's command, as it travels.
    type Command: Clone + fmt::Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync;
    /// What a command gives to begin a run (what the user typed).
    type Input: ?Sized;
    /// A run as the page shows it.
    type View: wire::View<Self::Change>;
    /// What one or more changes did to a run, as the page is sent it.
    type Change: wire::Change;
    /// A run as a list of a session's runs shows it (a line, not the whole
    /// run).
    type Summary: Clone + fmt::Debug + PartialEq + Eq + Serialize + DeserializeOwned + Send + Sync;
    /// What a store keeps of a session's run (or of its absence), enough to
    /// rebuild it exactly.
    type Saved: Clone + fmt::Debug + PartialEq + Eq + Serialize + DeserializeOwned + Send + Sync;
    /// What a step is given that was worked out before it, outside the
    /// run's lock (CPU-bound work, on the tasks' threads); `()` for a kind
    /// whose steps are cheap enough to make under the lock. A cluster keeps
    /// it with the step, so other nodes take the step without the work.
    type Work: Clone
        + fmt::Debug
        + Default
        + PartialEq
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static;
    /// What such work needs, cut from the run under its lock (a cluster
    /// sends it to whichever node does it).
    type Plan: fmt::Debug + Serialize + DeserializeOwned + Send + 'static;

    /// The step interval a session starts with.
    fn interval_ms(settings: &Self::Settings) -> u32;
    /// What a new run does while nobody watches it: by default it keeps
    /// running.
    fn unwatched(_settings: &Self::Settings) -> Unwatched {
        Unwatched::Keep
    }
    /// What `command` asks.
    fn control(command: &Self::Command) -> Control<'_, Self::Input>;
    /// A new run from `input`, or why it cannot be one.
    fn begin(settings: &Self::Settings, input: &Self::Input) -> Result<Self, CommandError>;
    /// Whether the run has reached its end (no step may follow).
    fn done(&self) -> bool;
    /// How far it has gone: grows by one with every step (a page's
    /// position in the run).
    fn steps(&self) -> u64;
    /// One step; the run is not done.
    fn step(&mut self, settings: &Self::Settings) -> Self::Change;
    /// The work of up to `ways` next steps, to be done at once on as many
    /// threads outside the run's lock; none (the default) when each step
    /// does its own under the lock.
    fn plan(&self, _settings: &Self::Settings, _ways: usize) -> Vec<Self::Plan> {
        Vec::new()
    }
    /// Does a plan's work: pure, on any thread, outside the run's lock.
    fn work(_plan: Self::Plan) -> Self::Work {
        Self::Work::default()
    }
    /// One step with the work done for it (planned from this state or an
    /// earlier one of the same run); a step given no work, or work that no
    /// longer fits, does its own. The run is not done.
    fn step_with(&mut self, settings: &Self::Settings, _work: Self::Work) -> Self::Change {
        self.step(settings)
    }
    /// Goes on with the run where it is when `input` only extends it (a
    /// search whose end is raised): what changed, or `None` (the default)
    /// when `input` begins a new run. Refusing `input` is [`Task::begin`]'s.
    fn extend(&mut self, _settings: &Self::Settings, _input: &Self::Input) -> Option<Self::Change> {
        None
    }
    /// The whole run, for a page.
    fn view(&self) -> Self::View;
    /// The run in a line, for a list of runs.
    fn summary(&self) -> Self::Summary;
    /// What a page at `from` steps of this run needs to reach it (`None`:
    /// a page that has not got this run yet, from its beginning), or `None`
    /// when what it misses is no longer held.
    fn since(&self, from: Option<u64>) -> Option<Self::Change>;
    /// What a store keeps of `run`, begun at version `began`.
    fn save(run: Option<(&Self, u64)>) -> Self::Saved;
    /// The run `saved` holds and the version it began at, if it kept it.
    fn restore(
        settings: &Self::Settings,
        saved: &Self::Saved,
    ) -> Result<Option<(Self, Option<u64>)>, Unrestorable>;
}

/// A saved state that cannot be rebuilt (a damaged or foreign record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrestorable(pub &'static str);

/// What a durable store keeps of a session: the machine's own fields and
/// its run's saved form, side by side in one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved<R> {
    /// The run, in its kind's saved form.
    #[serde(flatten)]
    pub run: R,
    /// Where the run stood.
    pub status: Status,
    /// Milliseconds between steps.
    pub interval_ms: u32,
    /// The version when saved.
    pub version: u64,
    /// The generation when saved.
    pub generation: u64,
    /// The incarnation when saved.
    #[serde(default)]
    pub incarnation: u64,
    /// The highest version that may be published before the next save: a
    /// rebuild resumes above it, so versions never go backwards whatever
    /// was published after this save. 0 in records from before it was kept.
    #[serde(default)]
    pub reserved: u64,
    /// Why the run failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// What happens while nobody watches (absent: it keeps running).
    #[serde(default, skip_serializing_if = "Unwatched::is_keep")]
    pub unwatched: Unwatched,
    /// When the run began, in Unix seconds (absent in records from before
    /// it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    /// The version the status, interval or policy last changed at, so a
    /// node that reloads the record names them to the clients it must
    /// (absent in records from before it was kept: to every client before
    /// `version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<u64>,
}

/// What [`Machine::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<C> {
    /// The change to publish, if anything changed.
    pub delta: Option<DeltaOf<C>>,
    /// Spawn a background task for this generation.
    pub start_task: Option<u64>,
}

impl<C> Default for Outcome<C> {
    /// Nothing changed, no task to start.
    fn default() -> Self {
        Outcome {
            delta: None,
            start_task: None,
        }
    }
}

/// Why [`Machine::step`] made no step: the task that asked must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The task belongs to an older generation.
    Stale,
    /// The run is not running (paused, finished or idle).
    NotRunning,
}

/// Where a run stands, as a list of runs shows it: its state, why it
/// failed, and when it began (see [`Machine::standing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Its state.
    pub status: Status,
    /// Why it failed, while it is [`Status::Failed`].
    pub failure: Option<Failure>,
    /// When it began, in Unix seconds.
    pub started_at: Option<u64>,
}

/// One session's state machine, for runs of kind `T`. Every change goes
/// through [`Machine::apply`] (a user's command) or [`Machine::step`] (the
/// background task), and each change returns the [`DeltaOf`] that describes
/// it, with a version one higher than the last.
#[derive(Debug, Clone)]
pub struct Machine<T: Task> {
    /// Fixed at creation.
    settings: T::Settings,
    /// Where the run stands.
    status: Status,
    /// Milliseconds between steps.
    interval_ms: u32,
    /// Changes whenever `Running` is entered or left, so a task started for
    /// an older generation is recognised and refused.
    generation: u64,
    /// Grows by one with every change.
    version: u64,
    /// Chosen at random whenever the session is rebuilt from storage, so a
    /// client's position in an earlier incarnation (which may have seen
    /// versions that were never stored) is never taken for one in this one.
    incarnation: u64,
    /// The current run, once one began.
    run: Option<T>,
    /// The version at which the run was first published: a client at this
    /// version or later has this run; an older one has another.
    began: u64,
    /// Why the run failed, while it is [`Status::Failed`].
    failure: Option<Failure>,
    /// What happens to the run while nobody watches it.
    unwatched: Unwatched,
    /// When the run began, in Unix seconds, as the command that began it
    /// was stamped ([`Machine::apply_at`]); `None` before, or unstamped.
    started_at: Option<u64>,
    /// The settings as of `version`, and the version they last changed
    /// at: a delta names them only for a client that may not have them.
    told: Told,
}

/// A machine's settings beside its run, as the deltas tell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Told {
    /// Where the run stands, and why it failed.
    standing: (Status, Option<Failure>),
    /// Milliseconds between steps.
    interval_ms: u32,
    /// What happens to the run while nobody watches it.
    unwatched: Unwatched,
    /// The version any of them last changed at: a client at this version
    /// or later has them all.
    changed_at: u64,
}

impl Told {
    /// Whether `now` differs from these, whenever they were told.
    fn differs(&self, now: &Told) -> bool {
        (self.standing, self.interval_ms, self.unwatched)
            != (now.standing, now.interval_ms, now.unwatched)
    }
}

impl<T: Task> Machine<T> {
    /// A fresh session: idle, version 0.
    pub fn new(settings: T::Settings) -> Machine<T> {
        let interval_ms = T::interval_ms(&settings);
        let unwatched = T::unwatched(&settings);
        Machine {
            settings,
            status: Status::Idle,
            interval_ms,
            generation: 0,
            version: 0,
            incarnation: 0,
            run: None,
            began: 0,
            failure: None,
            unwatched,
            started_at: None,
            told: Told {
                standing: (Status::Idle, None),
                interval_ms,
                unwatched,
                changed_at: 0,
            },
        }
    }

    /// The same state under another incarnation.
    pub fn with_incarnation(self, incarnation: u64) -> Machine<T> {
        Machine {
            incarnation,
            ..self
        }
    }

    /// The incarnation (see [`Machine::restore`]).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// What a store keeps of this state.
    pub fn saved(&self) -> Saved<T::Saved> {
        Saved {
            run: T::save(self.run.as_ref().map(|run| (run, self.began))),
            status: self.status,
            interval_ms: self.interval_ms,
            version: self.version,
            generation: self.generation,
            incarnation: self.incarnation,
            reserved: self.version,
            failure: self.failure,
            unwatched: self.unwatched,
            started_at: self.started_at,
            settled_at: Some(self.told.changed_at),
        }
    }

    /// Rebuilds a saved state, with its version raised past its reservation
    /// (or, for a record without one, by `version_gap`: more than the
    /// changes that may have been published after it was saved), so
    /// versions never go backwards, and a new `incarnation`.
    pub fn restore(
        settings: T::Settings,
        saved: &Saved<T::Saved>,
        version_gap: u64,
        incarnation: u64,
    ) -> Result<Machine<T>, Unrestorable> {
        Ok(Machine::rebuild(settings, saved, version_gap, incarnation)?.0)
    }

    /// Rebuilds a saved state exactly as it was saved: the same version,
    /// incarnation and run, so a client's position in it keeps its meaning.
    /// What each node of a cluster holds of a session it shares.
    pub fn reload(
        settings: T::Settings,
        saved: &Saved<T::Saved>,
    ) -> Result<Machine<T>, Unrestorable> {
        let (mut machine, began) = Machine::rebuild(settings, saved, 0, saved.incarnation)?;
        if let Some(began) = began {
            machine.began = began;
        }
        if let Some(settled_at) = saved.settled_at {
            machine.told.changed_at = settled_at.min(machine.version);
        }
        Ok(machine)
    }

    /// [`Machine::restore`], and the version the run began at if the record
    /// kept it.
    fn rebuild(
        settings: T::Settings,
        saved: &Saved<T::Saved>,
        version_gap: u64,
        incarnation: u64,
    ) -> Result<(Machine<T>, Option<u64>), Unrestorable> {
        let (run, began) = match T::restore(&settings, &saved.run)? {
            Some((run, began)) => (Some(run), began),
            None => (None, None),
        };
        let status = match (saved.status, &run) {
            (_, None) => Status::Idle,
            (_, Some(run)) if run.done() => Status::Finished,
            (Status::Idle | Status::Finished, Some(_)) => {
                return Err(Unrestorable("a run that is neither idle nor at its end"))
            }
            (status, Some(_)) => status,
        };
        let failure = (status == Status::Failed).then(|| saved.failure.unwrap_or_default());
        if saved.interval_ms > MAX_INTERVAL_MS {
            return Err(Unrestorable("interval out of range"));
        }
        if saved.unwatched.check().is_err() {
            return Err(Unrestorable("the unwatched policy is out of range"));
        }
        // Above anything published after this save: past its reservation,
        // or, for a record without one, `version_gap` past its version.
        let version = if saved.reserved > saved.version {
            saved.reserved + 1
        } else {
            saved.version + version_gap
        };
        let started_at = run.as_ref().and(saved.started_at);
        let machine = Machine {
            settings,
            status,
            interval_ms: saved.interval_ms,
            generation: saved.generation,
            version,
            incarnation,
            run,
            // Clients from before the restart may hold an older run under
            // the same versions: they are treated as having another run.
            began: version,
            failure,
            unwatched: saved.unwatched,
            started_at,
            told: Told {
                standing: (status, failure),
                interval_ms: saved.interval_ms,
                unwatched: saved.unwatched,
                // A client from before may have had any settings.
                changed_at: version,
            },
        };
        Ok((machine, began))
    }

    /// The fixed choices it was made with.
    pub fn settings(&self) -> T::Settings {
        self.settings
    }

    /// Where the run stands.
    pub fn status(&self) -> Status {
        self.status
    }

    /// What a list of runs shows of where the run stands (it changes far
    /// less often than its steps).
    pub fn standing(&self) -> Standing {
        Standing {
            status: self.status,
            failure: self.failure,
            started_at: self.started_at,
        }
    }

    /// The current generation (see [`Machine::step`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The version of the latest change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Milliseconds between steps.
    pub fn interval_ms(&self) -> u32 {
        self.interval_ms
    }

    /// The current run, once one began.
    pub fn run(&self) -> Option<&T> {
        self.run.as_ref()
    }

    /// The whole visible state.
    pub fn snapshot(&self) -> SnapshotOf<T::View> {
        SnapshotOf {
            version: self.version,
            status: self.status,
            interval_ms: self.interval_ms,
            failure: self.failure,
            unwatched: self.unwatched,
            started_at: self.started_at,
            run: self.run.as_ref().map(T::view),
        }
    }

    /// What happens to the run while nobody watches it.
    pub fn unwatched(&self) -> Unwatched {
        self.unwatched
    }

    /// Nobody watched the running run of `generation` for as long as its
    /// policy allows: it is paused or cancelled, as the policy says.
    /// Nothing happens if that run is not running any more (or never was
    /// to lapse).
    pub fn lapse(&mut self, generation: u64) -> Option<DeltaOf<T::Change>> {
        if generation != self.generation || self.status != Status::Running {
            return None;
        }
        match self.unwatched {
            Unwatched::Keep => return None,
            Unwatched::Pause { .. } => self.enter(Status::Paused),
            Unwatched::Cancel { .. } => self.enter(Status::Cancelled),
        };
        let change = self.unchanged();
        Some(self.publish(false, change))
    }

    /// The machine as a list of runs shows it, under the id `id`.
    pub fn listed(&self, id: String) -> ListedOf<T::Summary> {
        ListedOf {
            id,
            status: self.status,
            steps: self.run.as_ref().map_or(0, T::steps),
            failure: self.failure,
            started_at: self.started_at,
            run: self.run.as_ref().map(T::summary),
        }
    }

    /// Applies a user's command, unstamped (see [`Machine::apply_at`]).
    pub fn apply(&mut self, command: &T::Command) -> Result<Outcome<T::Change>, CommandError> {
        self.apply_at(command, None)
    }

    /// Applies a user's command; a run it begins is said to have begun
    /// `at` (Unix seconds: the machine keeps no clock, so every copy of a
    /// session is stamped alike). A refused command changes nothing.
    pub fn apply_at(
        &mut self,
        command: &T::Command,
        at: Option<u64>,
    ) -> Result<Outcome<T::Change>, CommandError> {
        let before = (self.status, self.interval_ms, self.unwatched);
        let mut start_task = None;
        let mut restart = false;
        // What an input that extends the run changed (see `Task::extend`).
        let mut extended = None;
        match T::control(command) {
            Control::Begin(input) => {
                extended = match self.run.as_mut() {
                    Some(run) => run.extend(&self.settings, input),
                    None => None,
                };
                if extended.is_none() {
                    self.run = Some(T::begin(&self.settings, input)?);
                    self.started_at = at;
                    restart = true;
                }
                let done = self.run.as_ref().is_some_and(T::done);
                let status = match self.status {
                    _ if done => Status::Finished,
                    // The user's pause is respected: the new run waits.
                    Status::Paused => Status::Paused,
                    // Idle, ended or running: the run (re)starts running;
                    // a running task carries on with the new run.
                    Status::Idle
                    | Status::Finished
                    | Status::Cancelled
                    | Status::Failed
                    | Status::Running => Status::Running,
                };
                start_task = self.enter(status);
            }
            Control::Running(true) => {
                // A failed run is tried again.
                if matches!(self.status, Status::Paused | Status::Failed) {
                    start_task = self.enter(Status::Running);
                }
            }
            Control::Running(false) => {
                if self.status == Status::Running {
                    self.enter(Status::Paused);
                }
            }
            Control::Cancel => {
                if self.status.cancellable() {
                    self.enter(Status::Cancelled);
                }
            }
            Control::Interval(ms) => {
                if ms > MAX_INTERVAL_MS {
                    return Err(CommandError::Interval {
                        max_ms: MAX_INTERVAL_MS,
                    });
                }
                self.interval_ms = ms;
            }
            Control::Unwatched(policy) => {
                policy.check()?;
                self.unwatched = policy;
            }
        }
        let changed = restart
            || extended.is_some()
            || (self.status, self.interval_ms, self.unwatched) != before;
        let delta = changed.then(|| {
            let change = match (restart, &self.run, extended) {
                (true, Some(run), _) => run.since(None).expect("a new run is held whole"),
                (_, _, Some(change)) => change,
                _ => self.unchanged(),
            };
            self.publish(restart, change)
        });
        if restart {
            self.began = self.version;
        }
        Ok(Outcome { delta, start_task })
    }

    /// Where a client that has this state stands.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            version: self.version,
            steps: self.run.as_ref().map_or(0, T::steps),
        }
    }

    /// What a client at `cursor` needs to reach this state, as one delta.
    /// `None` when it is up to date, when it is ahead (it saw another
    /// process), or when the run no longer holds all it misses: it then
    /// needs a snapshot.
    pub fn delta_since(&self, cursor: Cursor) -> Option<DeltaOf<T::Change>> {
        if cursor.version >= self.version {
            return None;
        }
        let Some(run) = self.run.as_ref() else {
            // No run yet, so the client has none either: only the settings
            // changed.
            return Some(self.delta_from(cursor.version, false, T::Change::default()));
        };
        let same_run = cursor.version >= self.began;
        if same_run && cursor.steps > run.steps() {
            return None; // not a state this run was ever in
        }
        let change = run.since(same_run.then_some(cursor.steps))?;
        Some(self.delta_from(cursor.version, !same_run, change))
    }

    /// One step of the background task of `generation`. Refused unless that
    /// generation is current and the run is running; the task must then stop.
    pub fn step(&mut self, generation: u64) -> Result<DeltaOf<T::Change>, Refused> {
        self.step_with(generation, T::Work::default())
    }

    /// [`Machine::step`], with the work done for it outside the lock (see
    /// [`Task::plan`]).
    pub fn step_with(
        &mut self,
        generation: u64,
        work: T::Work,
    ) -> Result<DeltaOf<T::Change>, Refused> {
        if generation != self.generation {
            return Err(Refused::Stale);
        }
        let (Status::Running, Some(run)) = (self.status, self.run.as_mut()) else {
            return Err(Refused::NotRunning);
        };
        let change = run.step_with(&self.settings, work);
        if run.done() {
            self.enter(Status::Finished);
        }
        Ok(self.publish(false, change))
    }

    /// The task of `generation` stopped without finishing, for `failure`:
    /// the run is failed, so the switch never says running while nothing
    /// runs, and the page says why. Nothing happens if that task was
    /// already stale.
    pub fn halt(&mut self, generation: u64, failure: Failure) -> Option<DeltaOf<T::Change>> {
        if generation != self.generation || self.status != Status::Running {
            return None;
        }
        self.enter(Status::Failed);
        self.failure = Some(failure);
        let change = self.unchanged();
        Some(self.publish(false, change))
    }

    /// The change of a run nothing was added to (its settings changed).
    fn unchanged(&self) -> T::Change {
        self.run
            .as_ref()
            .and_then(|run| run.since(Some(run.steps())))
            .unwrap_or_default()
    }

    /// Records a change: bumps the version and describes the new state.
    fn publish(&mut self, restart: bool, change: T::Change) -> DeltaOf<T::Change> {
        let base = self.version;
        self.version += 1;
        let now = Told {
            standing: (self.status, self.failure),
            interval_ms: self.interval_ms,
            unwatched: self.unwatched,
            changed_at: self.version,
        };
        if self.told.differs(&now) {
            self.told = now;
        }
        self.delta_from(base, restart, change)
    }

    /// A delta from version `base` to this state, with the given change,
    /// naming the settings when they changed after `base`.
    fn delta_from(&self, base: u64, restart: bool, change: T::Change) -> DeltaOf<T::Change> {
        let told = self.told.changed_at > base;
        DeltaOf {
            base,
            version: self.version,
            status: told.then_some(self.status),
            interval_ms: told.then_some(self.interval_ms),
            failure: self.failure.filter(|_| told),
            unwatched: told.then_some(self.unwatched),
            started_at: self.started_at.filter(|_| restart),
            restart,
            change,
        }
    }

    /// Moves to `status`, bumping the generation whenever `Running` is
    /// entered or left. Returns the generation of the task to start when
    /// `Running` is entered. The caller bumps the version.
    fn enter(&mut self, status: Status) -> Option<u64> {
        if status == self.status {
            return None;
        }
        let was_running = self.status == Status::Running;
        self.status = status;
        self.failure = None; // set again by `halt` when it fails the run
        if was_running || status == Status::Running {
            self.generation += 1;
        }
        (status == Status::Running).then_some(self.generation)
    }
}
