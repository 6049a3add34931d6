//! The Collatz task kind: a trajectory stepped from a typed number to 1,
//! exact at any size, with its recent values in a window (the rest can be
//! recomputed from the start), its peak and a downsampled profile.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::{
    input::{parse_number, DEFAULT_MAX_DIGITS},
    magnitude,
    task::{self, Control, Task, Unrestorable},
    wire::{Command, CommandError, RunBrief, RunChange, RunView, Window},
    Number, Profile,
};

/// One session's state machine for Collatz runs.
pub type Collatz = task::Machine<Run>;
/// What a store keeps of a Collatz session.
pub type Saved = task::Saved<SavedRun>;
/// What a command of a Collatz session did.
pub type Outcome = task::Outcome<RunChange>;

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
    /// What a new run does while nobody watches it.
    pub unwatched: crate::wire::Unwatched,
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
            unwatched: crate::wire::Unwatched::Keep,
        }
    }
}

/// One trajectory: exact statistics always, recent values in a window.
#[derive(Debug, Clone)]
pub struct Run {
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
    /// The newest values as decimal strings, oldest first; ends with `current`.
    recent: VecDeque<String>,
    /// The bytes of digits in `recent`.
    held: usize,
    /// Every value's magnitude, downsampled, for the chart.
    profile: Profile,
}

/// What a store keeps of a session's run: enough to rebuild it exactly and
/// quickly (a trajectory is deterministic, so only the window is replayed,
/// from its first value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRun {
    /// The run's start, once a number was entered.
    pub start: Option<String>,
    /// Steps taken from `start`.
    pub steps: u64,
    /// Where to rebuild the run from without replaying it; absent in
    /// records from before it was kept (those replay from `start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
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

impl Default for Saved {
    /// A fresh session's record.
    fn default() -> Saved {
        Collatz::new(Settings::default()).saved()
    }
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
            start,
            steps: 0,
            held: text.len(),
            recent: VecDeque::from([text]),
            profile,
        }
    }

    /// The value the run started from.
    pub fn start(&self) -> &Number {
        &self.start
    }

    /// The newest value.
    pub fn current(&self) -> &Number {
        &self.current
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
    fn resume(&self, began: u64) -> Resume {
        Resume {
            first_step: self.steps + 1 - self.recent.len() as u64,
            first: self.recent.front().cloned().unwrap_or_default(),
            peak: self.peak.to_string(),
            peak_step: self.peak_step,
            profile: self.profile.clone(),
            began: Some(began),
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

    /// Rebuilds a run saved without [`Resume`]: replays it from its start.
    fn replay(start: Number, steps: u64, window: Window) -> Result<Run, Unrestorable> {
        let mut run = Run::new(start);
        for _ in 0..steps {
            if run.current.is_one() {
                return Err(Unrestorable("more steps than the trajectory has"));
            }
            run.advance(window);
        }
        Ok(run)
    }
}

impl Task for Run {
    type Settings = Settings;
    type Command = Command;
    type Input = str;
    type View = RunView;
    type Change = RunChange;
    type Summary = RunBrief;
    type Saved = SavedRun;
    type Work = ();
    type Plan = ();

    fn interval_ms(settings: &Settings) -> u32 {
        settings.interval_ms
    }

    fn unwatched(settings: &Settings) -> crate::wire::Unwatched {
        settings.unwatched
    }

    fn control(command: &Command) -> Control<'_, str> {
        match command {
            Command::SetNumber { text } => Control::Begin(text),
            Command::SetRunning { running } => Control::Running(*running),
            Command::SetInterval { ms } => Control::Interval(*ms),
            Command::SetUnwatched { policy } => Control::Unwatched(*policy),
            Command::Cancel => Control::Cancel,
        }
    }

    fn begin(settings: &Settings, text: &str) -> Result<Run, CommandError> {
        Ok(Run::new(parse_number(text, settings.max_digits)?))
    }

    fn done(&self) -> bool {
        self.current.is_one()
    }

    fn steps(&self) -> u64 {
        self.steps
    }

    fn step(&mut self, settings: &Settings) -> RunChange {
        let (value, new_peak) = self.advance(settings.window());
        RunChange {
            steps: self.steps,
            peak: new_peak.then(|| value.clone()),
            peak_step: new_peak.then_some(self.peak_step),
            appended: vec![value],
        }
    }

    fn summary(&self) -> RunBrief {
        RunBrief {
            start: self.start.to_string(),
            peak: self.peak.to_string(),
        }
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

    /// Built from the window of recent values: every value the page misses,
    /// in order.
    fn since(&self, from: Option<u64>) -> Option<RunChange> {
        // The first step the page lacks, and the window's first step.
        let first = from.map_or(0, |steps| steps + 1);
        let first_recent = self.steps + 1 - self.recent.len() as u64;
        let skip = usize::try_from(first.checked_sub(first_recent)?).ok()?;
        let appended: Vec<String> = self.recent.iter().skip(skip).cloned().collect();
        // A new run's peak is always sent; a running one's when it moved
        // since the page's position (the window holds it, as it holds every
        // step after that position).
        let peak = from.is_none_or(|steps| self.peak_step > steps).then(|| {
            self.peak_step
                .checked_sub(first_recent)
                .and_then(|at| self.recent.get(usize::try_from(at).ok()?))
                .cloned()
                .unwrap_or_else(|| self.peak.to_string())
        });
        Some(RunChange {
            appended,
            steps: self.steps,
            peak_step: peak.as_ref().map(|_| self.peak_step),
            peak,
        })
    }

    fn save(run: Option<(&Run, u64)>) -> SavedRun {
        match run {
            None => SavedRun::default(),
            Some((run, began)) => SavedRun {
                start: Some(run.start.to_string()),
                steps: run.steps,
                resume: Some(run.resume(began)),
            },
        }
    }

    /// Only the window is replayed when the record has [`Resume`]; an older
    /// one recomputes the run from its start.
    fn restore(
        settings: &Settings,
        saved: &SavedRun,
    ) -> Result<Option<(Run, Option<u64>)>, Unrestorable> {
        let Some(start) = &saved.start else {
            return Ok(None);
        };
        let number =
            Number::from_digits(start).ok_or(Unrestorable("start is not a positive number"))?;
        let window = settings.window();
        let run = match &saved.resume {
            Some(resume) => Run::rebuild(number, saved.steps, resume, window)?,
            None => Run::replay(number, saved.steps, window)?,
        };
        Ok(Some((run, saved.resume.as_ref().and_then(|r| r.began))))
    }
}

impl Collatz {
    /// The run's start and the steps taken from it, once a number was
    /// entered: what any of its values is recomputed from.
    pub fn trajectory(&self) -> Option<(&Number, u64)> {
        self.run().map(|run| (&run.start, run.steps))
    }

    /// The current value, once a number was entered.
    pub fn current(&self) -> Option<&Number> {
        self.run().map(|run| &run.current)
    }
}
