//! One session's Collatz state machine: pure, synchronous, exact.
//!
//! Every change goes through [`Collatz::apply`] (a user's command) or
//! [`Collatz::step`] (the background task), and each change that is made
//! returns the [`Delta`] that describes it, with a version one higher than
//! the last. The runtime holds the machine under a lock, publishes those
//! deltas, and spawns a task when [`Outcome::start_task`] says so.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::{
    input::{parse_number, DEFAULT_MAX_DIGITS},
    magnitude,
    wire::{
        Command, CommandError, Cursor, Delta, RunView, Snapshot, Status, Window, MAX_INTERVAL_MS,
    },
    Number, Profile,
};

/// Fixed choices of a session, from the server's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Milliseconds between steps until the user picks another interval.
    pub interval_ms: u32,
    /// The most digits a typed number may have.
    pub max_digits: usize,
    /// How many recent values a session keeps (the rest can be recomputed).
    pub window: usize,
    /// The most bytes of digits those values may take (at least one value
    /// is always kept).
    pub window_bytes: usize,
}

impl Settings {
    /// The window a session keeps, and the page follows.
    pub fn window(&self) -> Window {
        Window {
            values: self.window,
            bytes: self.window_bytes,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            interval_ms: 500,
            max_digits: DEFAULT_MAX_DIGITS,
            window: 256,
            window_bytes: 16384,
        }
    }
}

/// A session's state.
#[derive(Debug, Clone)]
pub struct Collatz {
    /// Fixed at creation.
    settings: Settings,
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
    /// The current run, once a number was entered.
    run: Option<Run>,
}

/// One trajectory: exact statistics always, recent values in a window.
#[derive(Debug, Clone)]
struct Run {
    /// The value the run started from.
    start: Number,
    /// The newest value.
    current: Number,
    /// Steps taken from `start`.
    steps: u64,
    /// The largest value so far.
    peak: Number,
    /// The step at which `peak` was first reached.
    peak_step: u64,
    /// The version at which this run was first published: a client at this
    /// version or later has this run; an older one has another.
    began: u64,
    /// The newest values as decimal strings, oldest first; ends with `current`.
    recent: VecDeque<String>,
    /// The bytes of digits in `recent`.
    held: usize,
    /// Every value's magnitude, downsampled, for the chart.
    profile: Profile,
}

/// What a durable store keeps of a session: enough to rebuild it exactly
/// and quickly (a trajectory is deterministic, so only the window is
/// replayed, from its first value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// The run's start, once a number was entered.
    pub start: Option<String>,
    /// Steps taken from `start`.
    pub steps: u64,
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
    /// Where to rebuild the run from without replaying it; absent in
    /// records from before it was kept (those replay from `start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
}

impl Default for Saved {
    /// A fresh session's record.
    fn default() -> Saved {
        Saved {
            start: None,
            steps: 0,
            status: Status::Idle,
            interval_ms: Settings::default().interval_ms,
            version: 0,
            generation: 0,
            incarnation: 0,
            reserved: 0,
            resume: None,
        }
    }
}

/// The parts of a run that are expensive to recompute: rebuilding from them
/// replays only the window (its first value to the current one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The step of the window's first value.
    pub first_step: u64,
    /// The window's first value.
    pub first: String,
    /// The largest value so far.
    pub peak: String,
    /// The step at which it was first reached.
    pub peak_step: u64,
    /// The chart's profile of every value so far.
    pub profile: Profile,
    /// The version at which the run was first published; absent in records
    /// from before it was kept. Only an exact [`Collatz::reload`] uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub began: Option<u64>,
}

/// A saved state that cannot be rebuilt (a damaged or foreign record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrestorable(pub &'static str);

/// What [`Collatz::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The change to publish, if anything changed.
    pub delta: Option<Delta>,
    /// Spawn a background task for this generation.
    pub start_task: Option<u64>,
}

/// Why [`Collatz::step`] made no step: the task that asked must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The task belongs to an older generation.
    Stale,
    /// The run is not running (paused, finished or idle).
    NotRunning,
}

impl Run {
    fn new(start: Number) -> Run {
        let text = start.to_string();
        let mut profile = Profile::new();
        profile.push(magnitude(&text));
        Run {
            current: start.clone(),
            peak: start.clone(),
            peak_step: 0,
            began: 0,
            start,
            steps: 0,
            held: text.len(),
            recent: VecDeque::from([text]),
            profile,
        }
    }

    /// Takes one step; returns the new value and whether it is a new peak.
    fn advance(&mut self, window: Window) -> (String, bool) {
        self.current.step();
        self.steps += 1;
        let text = self.current.to_string();
        self.profile.push(magnitude(&text));
        self.push_recent(text.clone(), window);
        let new_peak = self.current > self.peak;
        if new_peak {
            self.peak = self.current.clone();
            self.peak_step = self.steps;
        }
        (text, new_peak)
    }

    /// Adds the newest value to the window, dropping the oldest that no
    /// longer fit.
    fn push_recent(&mut self, text: String, window: Window) {
        self.held += text.len();
        self.recent.push_back(text);
        window.trim(&mut self.recent, &mut self.held);
    }

    /// What rebuilding this run needs besides its start and steps.
    fn resume(&self) -> Resume {
        Resume {
            first_step: self.steps + 1 - self.recent.len() as u64,
            first: self.recent.front().cloned().unwrap_or_default(),
            peak: self.peak.to_string(),
            peak_step: self.peak_step,
            profile: self.profile.clone(),
            began: Some(self.began),
        }
    }

    /// Rebuilds a run saved with `resume`: replays the window only.
    fn rebuild(
        start: Number,
        steps: u64,
        resume: &Resume,
        window: Window,
    ) -> Result<Run, Unrestorable> {
        let first = Number::from_digits(&resume.first).ok_or(Unrestorable(
            "the window's first value is not a positive number",
        ))?;
        let peak = Number::from_digits(&resume.peak)
            .ok_or(Unrestorable("the peak is not a positive number"))?;
        if resume.first_step > steps || resume.peak_step > steps {
            return Err(Unrestorable("a step beyond the run"));
        }
        if resume.profile.count != steps + 1 {
            return Err(Unrestorable("the profile does not cover the run"));
        }
        let mut run = Run {
            current: first.clone(),
            steps: resume.first_step,
            peak,
            peak_step: resume.peak_step,
            began: 0,
            start,
            held: resume.first.len(),
            recent: VecDeque::from([resume.first.clone()]),
            profile: resume.profile.clone(),
        };
        while run.steps < steps {
            if run.current.is_one() {
                return Err(Unrestorable("more steps than the trajectory has"));
            }
            // The peak and profile already count these values.
            run.current.step();
            run.steps += 1;
            let text = run.current.to_string();
            run.push_recent(text, window);
        }
        Ok(run)
    }

    fn view(&self) -> RunView {
        RunView {
            start: self.start.to_string(),
            steps: self.steps,
            peak: self.peak.to_string(),
            peak_step: self.peak_step,
            recent: self.recent.clone(),
            profile: self.profile.clone(),
        }
    }
}

impl Collatz {
    /// A fresh session: idle, version 0.
    pub fn new(settings: Settings) -> Collatz {
        Collatz {
            settings,
            status: Status::Idle,
            interval_ms: settings.interval_ms,
            generation: 0,
            version: 0,
            incarnation: 0,
            run: None,
        }
    }

    /// The same state under another incarnation.
    pub fn with_incarnation(self, incarnation: u64) -> Collatz {
        Collatz {
            incarnation,
            ..self
        }
    }

    /// The incarnation (see [`Collatz::restore`]).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// What a store keeps of this state.
    pub fn saved(&self) -> Saved {
        Saved {
            start: self.run.as_ref().map(|run| run.start.to_string()),
            steps: self.run.as_ref().map_or(0, |run| run.steps),
            status: self.status,
            interval_ms: self.interval_ms,
            version: self.version,
            generation: self.generation,
            incarnation: self.incarnation,
            reserved: self.version,
            resume: self.run.as_ref().map(Run::resume),
        }
    }

    /// Rebuilds a saved state, with its version raised past its reservation
    /// (or, for a record without one, by `version_gap`: more than the
    /// changes that may have been published after it was saved), so
    /// versions never go backwards, and a new `incarnation`. Only
    /// the window is replayed when the record has [`Resume`]; an older one
    /// recomputes the run from its start.
    pub fn restore(
        settings: Settings,
        saved: &Saved,
        version_gap: u64,
        incarnation: u64,
    ) -> Result<Collatz, Unrestorable> {
        let run = match &saved.start {
            None => None,
            Some(start) => {
                let number = Number::from_digits(start)
                    .ok_or(Unrestorable("start is not a positive number"))?;
                match &saved.resume {
                    Some(resume) => Some(Run::rebuild(
                        number,
                        saved.steps,
                        resume,
                        settings.window(),
                    )?),
                    None => {
                        let mut run = Run::new(number);
                        for _ in 0..saved.steps {
                            if run.current.is_one() {
                                return Err(Unrestorable("more steps than the trajectory has"));
                            }
                            run.advance(settings.window());
                        }
                        Some(run)
                    }
                }
            }
        };
        let finished = run.as_ref().is_some_and(|run| run.current.is_one());
        let status = match (saved.status, &run) {
            (_, None) => Status::Idle,
            (_, Some(_)) if finished => Status::Finished,
            (Status::Idle | Status::Finished, Some(_)) => {
                return Err(Unrestorable("a run that is neither idle nor at 1"))
            }
            (status, Some(_)) => status,
        };
        if saved.interval_ms > MAX_INTERVAL_MS {
            return Err(Unrestorable("interval out of range"));
        }
        // Above anything published after this save: past its reservation,
        // or, for a record without one, `version_gap` past its version.
        let version = if saved.reserved > saved.version {
            saved.reserved + 1
        } else {
            saved.version + version_gap
        };
        Ok(Collatz {
            settings,
            status,
            interval_ms: saved.interval_ms,
            generation: saved.generation,
            version,
            incarnation,
            // Clients from before the restart may hold an older run under
            // the same versions: they are treated as having another run.
            run: run.map(|run| Run {
                began: version,
                ..run
            }),
        })
    }

    /// Rebuilds a saved state exactly as it was saved: the same version,
    /// incarnation and run, so a client's position in it keeps its meaning.
    /// What each node of a cluster holds of a session it shares.
    pub fn reload(settings: Settings, saved: &Saved) -> Result<Collatz, Unrestorable> {
        let mut machine = Collatz::restore(settings, saved, 0, saved.incarnation)?;
        let began = saved.resume.as_ref().and_then(|resume| resume.began);
        if let (Some(run), Some(began)) = (&mut machine.run, began) {
            run.began = began;
        }
        Ok(machine)
    }

    /// The fixed choices it was made with.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Where the run stands.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The current generation (see [`Collatz::step`]).
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

    /// The run's start and the steps taken from it, once a number was
    /// entered: what any of its values is recomputed from.
    pub fn trajectory(&self) -> Option<(&Number, u64)> {
        self.run.as_ref().map(|run| (&run.start, run.steps))
    }

    /// The current value, once a number was entered.
    pub fn current(&self) -> Option<&Number> {
        self.run.as_ref().map(|run| &run.current)
    }

    /// The whole visible state.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            version: self.version,
            status: self.status,
            interval_ms: self.interval_ms,
            run: self.run.as_ref().map(Run::view),
        }
    }

    /// Applies a user's command. A refused command changes nothing.
    pub fn apply(&mut self, command: &Command) -> Result<Outcome, CommandError> {
        let (status_before, interval_before) = (self.status, self.interval_ms);
        let mut start_task = None;
        let mut restart = false;
        match command {
            Command::SetNumber { text } => {
                let number = parse_number(text, self.settings.max_digits)?;
                let finished = number.is_one();
                self.run = Some(Run::new(number));
                restart = true;
                let status = match self.status {
                    _ if finished => Status::Finished,
                    // The user's pause is respected: the new run waits.
                    Status::Paused => Status::Paused,
                    // Idle, finished or running: the run (re)starts running;
                    // a running task carries on with the new run.
                    Status::Idle | Status::Finished | Status::Running => Status::Running,
                };
                start_task = self.enter(status);
            }
            Command::SetRunning { running: true } => {
                if self.status == Status::Paused {
                    start_task = self.enter(Status::Running);
                }
            }
            Command::SetRunning { running: false } => {
                if self.status == Status::Running {
                    self.enter(Status::Paused);
                }
            }
            Command::SetInterval { ms } => {
                if *ms > MAX_INTERVAL_MS {
                    return Err(CommandError::Interval {
                        max_ms: MAX_INTERVAL_MS,
                    });
                }
                self.interval_ms = *ms;
            }
        }
        let changed =
            restart || self.status != status_before || self.interval_ms != interval_before;
        let delta = changed.then(|| match (restart, &self.run) {
            (true, Some(run)) => {
                let start = run.start.to_string();
                self.publish(true, vec![start.clone()], Some(start))
            }
            _ => self.publish(false, Vec::new(), None),
        });
        if let (true, Some(run)) = (restart, &mut self.run) {
            run.began = self.version;
        }
        Ok(Outcome { delta, start_task })
    }

    /// Where a client that has this state stands.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            version: self.version,
            steps: self.run.as_ref().map_or(0, |run| run.steps),
        }
    }

    /// What a client at `cursor` needs to reach this state, as one delta,
    /// built from the window of recent values: every value it misses, in
    /// order. `None` when it is up to date, when it is ahead (it saw another
    /// process), or when the window no longer holds all it misses: it then
    /// needs a snapshot.
    pub fn delta_since(&self, cursor: Cursor) -> Option<Delta> {
        if cursor.version >= self.version {
            return None;
        }
        let Some(run) = self.run.as_ref() else {
            // No run yet, so the client has none either: only the settings
            // changed.
            return Some(self.delta_from(cursor.version, false, Vec::new(), None));
        };
        let same_run = cursor.version >= run.began;
        if same_run && cursor.steps > run.steps {
            return None; // not a state this run was ever in
        }
        // The first step the client lacks, and the window's first step.
        let from = if same_run { cursor.steps + 1 } else { 0 };
        let first_recent = run.steps + 1 - run.recent.len() as u64;
        let skip = usize::try_from(from.checked_sub(first_recent)?).ok()?;
        let appended: Vec<String> = run.recent.iter().skip(skip).cloned().collect();
        // A new run's peak is always sent; a running one's when it moved
        // since the cursor (the window holds it, as it holds every step
        // after the cursor).
        let peak = (!same_run || run.peak_step > cursor.steps).then(|| {
            run.peak_step
                .checked_sub(first_recent)
                .and_then(|at| run.recent.get(usize::try_from(at).ok()?))
                .cloned()
                .unwrap_or_else(|| run.peak.to_string())
        });
        Some(self.delta_from(cursor.version, !same_run, appended, peak))
    }

    /// One step of the background task of `generation`. Refused unless that
    /// generation is current and the run is running; the task must then stop.
    pub fn step(&mut self, generation: u64) -> Result<Delta, Refused> {
        if generation != self.generation {
            return Err(Refused::Stale);
        }
        let (Status::Running, Some(run)) = (self.status, self.run.as_mut()) else {
            return Err(Refused::NotRunning);
        };
        let (value, new_peak) = run.advance(self.settings.window());
        let peak = new_peak.then(|| value.clone());
        if run.current.is_one() {
            self.enter(Status::Finished);
        }
        Ok(self.publish(false, vec![value], peak))
    }

    /// The task of `generation` died without finishing: pause the run, so
    /// the switch never says running while nothing runs. Nothing happens if
    /// that task was already stale.
    pub fn halt(&mut self, generation: u64) -> Option<Delta> {
        if generation != self.generation || self.status != Status::Running {
            return None;
        }
        self.enter(Status::Paused);
        Some(self.publish(false, Vec::new(), None))
    }

    /// Records a change: bumps the version and describes the new state.
    fn publish(&mut self, restart: bool, appended: Vec<String>, peak: Option<String>) -> Delta {
        let base = self.version;
        self.version += 1;
        self.delta_from(base, restart, appended, peak)
    }

    /// A delta from version `base` to this state, with the given values.
    fn delta_from(
        &self,
        base: u64,
        restart: bool,
        appended: Vec<String>,
        peak: Option<String>,
    ) -> Delta {
        Delta {
            base,
            version: self.version,
            status: self.status,
            interval_ms: self.interval_ms,
            restart,
            appended,
            steps: self.run.as_ref().map_or(0, |run| run.steps),
            peak_step: peak
                .as_ref()
                .and(self.run.as_ref())
                .map(|run| run.peak_step),
            peak,
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
        if was_running || status == Status::Running {
            self.generation += 1;
        }
        (status == Status::Running).then_some(self.generation)
    }
}
