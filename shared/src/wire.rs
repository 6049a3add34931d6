//! What travels between the browser and the server, as JSON.
//!
//! Numbers travel as decimal strings: a JSON number loses precision past
//! 2^53, and a float would creep in. The server streams one [`Snapshot`]
//! first, then [`Delta`]s that carry only what changed.

use std::{collections::VecDeque, fmt, str::FromStr};

use serde::{
    de::{value::MapAccessDeserializer, DeserializeOwned, MapAccess},
    Deserialize, Serialize,
};

use crate::{input::InputError, magnitude, tagged::TagFirst, Profile};

/// The longest step interval a user may choose, in milliseconds.
pub const MAX_INTERVAL_MS: u32 = 10_000;

/// A user's command, sent from the browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// The text of the number input, validated on arrival.
    SetNumber {
        /// What the user typed.
        text: String,
    },
    /// The Running switch.
    SetRunning {
        /// On or off.
        running: bool,
    },
    /// Milliseconds between two steps; 0 is as fast as possible.
    SetInterval {
        /// The new interval.
        ms: u32,
    },
    /// What happens to the run while no page of it is open.
    SetUnwatched {
        /// Keep running, or pause or cancel after some minutes.
        policy: Unwatched,
    },
    /// "Cancel run": the run ends where it is, kept but never stepped again.
    Cancel,
}

/// Why a command was refused; the state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum CommandError {
    /// The typed number is not acceptable.
    Number {
        /// The reason.
        reason: InputError,
    },
    /// The interval is out of range.
    Interval {
        /// The most allowed.
        max_ms: u32,
    },
    /// The wait of an unwatched-run policy is out of range.
    Unwatched {
        /// The most minutes allowed.
        max_minutes: u32,
    },
    /// The change could not be stored, so it was not made.
    Unsaved,
    /// The session ended (expired or evicted) while the command was on its
    /// way; nothing was changed.
    Ended,
    /// The server's store is damaged: no change can be saved until its
    /// operator repairs it; nothing was changed.
    StoreDamaged,
    /// A bound of a search's range is not acceptable.
    Range {
        /// Which bound.
        field: Bound,
        /// The reason.
        reason: InputError,
    },
    /// A search's From is above its To.
    Backwards,
}

/// A bound of a search's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// The first start.
    From,
    /// The last start.
    To,
}

impl Bound {
    /// Its label on the page.
    pub fn label(self) -> &'static str {
        match self {
            Bound::From => "From",
            Bound::To => "To",
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Number { reason } => reason.fmt(f),
            CommandError::Interval { max_ms } => {
                write!(f, "The step interval can be at most {max_ms} ms.")
            }
            CommandError::Unwatched { max_minutes } => {
                write!(f, "Choose a wait of 1 to {max_minutes} minutes.")
            }
            CommandError::Unsaved => {
                f.write_str("Your change could not be saved, so it was not made; please try again.")
            }
            CommandError::Ended => {
                f.write_str("Your session had ended, so nothing was changed; please try again.")
            }
            CommandError::Range { field, reason } => write!(f, "{}: {reason}", field.label()),
            CommandError::Backwards => f.write_str("From must not be above To."),
            CommandError::StoreDamaged => f.write_str(
                "The server's store of sessions is damaged, so no change can be saved until \
                 its operator repairs it; nothing was changed.",
            ),
        }
    }
}

impl std::error::Error for CommandError {}

impl From<InputError> for CommandError {
    fn from(reason: InputError) -> Self {
        CommandError::Number { reason }
    }
}

/// Where a session's run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// No number entered yet.
    Idle,
    /// The background task is stepping.
    Running,
    /// The user switched it off; the run is kept.
    Paused,
    /// The run reached 1.
    Finished,
    /// The user cancelled the run: it is kept as it was, and never steps
    /// again (a new number starts a new run).
    Cancelled,
    /// Its task stopped for a reason of the server's (the [`Failure`]): the
    /// run is kept as it was; the Running switch tries again.
    Failed,
}

impl Status {
    /// Whether "Cancel run" ends a run in this state: a run not yet ended.
    pub fn cancellable(self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::Failed)
    }

    /// Whether the run is over for good (it finished, or was cancelled):
    /// nothing brings it back. Every other run counts as live.
    pub fn has_ended(self) -> bool {
        matches!(self, Status::Finished | Status::Cancelled)
    }

    /// Its name, as it travels (`"running"`): for attributes and records.
    pub fn name(self) -> &'static str {
        match self {
            Status::Idle => "idle",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Finished => "finished",
            Status::Cancelled => "cancelled",
            Status::Failed => "failed",
        }
    }
}

/// Why a run failed, in words its user can read. Read leniently: a reason
/// this version does not know (a newer node's, in a rolling deploy) is
/// [`Failure::Unnamed`], so the run is read, not taken for damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The store refused its steps: they could not be saved.
    StoreRefused,
    /// Its task stopped on an error of the server's own.
    Crashed,
    /// It took as many steps as the server lets one run take.
    StepLimit,
    /// A reason this version of the server cannot name.
    Unnamed,
}

impl<'de> Deserialize<'de> for Failure {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(match name.as_ref() {
            "store_refused" => Failure::StoreRefused,
            "crashed" => Failure::Crashed,
            "step_limit" => Failure::StepLimit,
            _ => Failure::Unnamed,
        })
    }
}

impl Default for Failure {
    /// What a failed run saved without its reason (none is) failed of.
    fn default() -> Self {
        Failure::Crashed
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Failure::StoreRefused => "the server could not save its steps",
            Failure::Crashed => "the server stopped its task on an internal error",
            Failure::StepLimit => "it took as many steps as the server lets one run take",
            Failure::Unnamed => "the server stopped it for a reason this version cannot name",
        })
    }
}

impl Failure {
    /// Whether switching the run on again may get further (not after its
    /// step limit: the next step would be over it).
    pub fn may_retry(&self) -> bool {
        !matches!(self, Failure::StepLimit)
    }
}

/// What happens to a run while no page of it is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "then", rename_all = "snake_case")]
pub enum Unwatched {
    /// It keeps running (the default).
    #[default]
    Keep,
    /// It is paused after this many minutes with no page open.
    Pause {
        /// Minutes, 1 to [`MAX_UNWATCHED_MINUTES`].
        minutes: u32,
    },
    /// It is cancelled after this many minutes with no page open.
    Cancel {
        /// Minutes, 1 to [`MAX_UNWATCHED_MINUTES`].
        minutes: u32,
    },
}

/// The longest a policy may wait: a day.
pub const MAX_UNWATCHED_MINUTES: u32 = 24 * 60;

impl Unwatched {
    /// Whether the run keeps running (what an absent policy means).
    pub fn is_keep(&self) -> bool {
        *self == Unwatched::Keep
    }

    /// How many minutes with no page open it waits, unless it keeps
    /// running.
    pub fn minutes(&self) -> Option<u32> {
        match self {
            Unwatched::Keep => None,
            Unwatched::Pause { minutes } | Unwatched::Cancel { minutes } => Some(*minutes),
        }
    }

    /// Refuses a wait outside 1 to [`MAX_UNWATCHED_MINUTES`] minutes.
    pub fn check(&self) -> Result<(), CommandError> {
        match self.minutes() {
            Some(minutes) if !(1..=MAX_UNWATCHED_MINUTES).contains(&minutes) => {
                Err(CommandError::Unwatched {
                    max_minutes: MAX_UNWATCHED_MINUTES,
                })
            }
            _ => Ok(()),
        }
    }
}

/// The whole visible state of a session at one version, with its run as
/// a page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotOf<V> {
    /// The version this snapshot shows; the SSE event id.
    pub version: u64,
    /// Where the run stands.
    pub status: Status,
    /// Milliseconds between steps.
    pub interval_ms: u32,
    /// Why the run failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// What happens while nobody watches (absent: it keeps running).
    #[serde(default, skip_serializing_if = "Unwatched::is_keep")]
    pub unwatched: Unwatched,
    /// When the current run began, in Unix seconds, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    /// The current run; `None` before the first one began.
    pub run: Option<V>,
}

/// A run as the list of a session's runs shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedOf<S> {
    /// The run's id, as requests name it.
    pub id: String,
    /// Where it stands.
    pub status: Status,
    /// Its steps so far.
    pub steps: u64,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// When it began, in Unix seconds, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    /// Its kind's line; `None` before it was given its input.
    pub run: Option<S>,
}

/// A session's runs, as its pages are sent them: the run this page shows,
/// and every run, newest first, or only those that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunsOf<S> {
    /// The id of the run the page's stream follows.
    pub selected: String,
    /// Every run of the session, newest first; or, when `partial`, only the
    /// runs that changed since the list this stream last sent.
    pub runs: Vec<ListedOf<S>>,
    /// `runs` holds only runs that changed: the others, and the order, stand
    /// as the stream last sent them (a run added or removed sends them all).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

impl<S> RunsOf<S> {
    /// The list after this event, given the one shown before it.
    pub fn apply(self, shown: &mut Vec<ListedOf<S>>) {
        if !self.partial {
            *shown = self.runs;
            return;
        }
        for run in self.runs {
            if let Some(row) = shown.iter_mut().find(|row| row.id == run.id) {
                *row = run;
            }
        }
    }
}

/// A Collatz run in a line: where it began and how high it climbed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunBrief {
    /// Its start.
    pub start: String,
    /// Its peak so far.
    pub peak: String,
}

/// A Collatz session's runs.
pub type Runs = RunsOf<RunBrief>;
/// A Collatz run in a session's list.
pub type Listed = ListedOf<RunBrief>;

/// A Collatz session's whole visible state.
pub type Snapshot = SnapshotOf<RunView>;
/// What changed in a Collatz session between two versions.
pub type Delta = DeltaOf<RunChange>;
/// One message of a Collatz session's update stream.
pub type Update = UpdateOf<RunView, RunChange>;

/// What one or more changes did to a run of some task kind, as a page is
/// sent it.
pub trait Change:
    Clone + fmt::Debug + PartialEq + Eq + Default + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The run's steps afterwards.
    fn steps(&self) -> u64;
    /// How many of the run's values it carries (counted as streamed).
    fn values(&self) -> usize;
    /// `self` then `next` (which follows it in the same run), as one.
    fn merge(&mut self, next: Self);
}

/// A run of some task kind as a page shows it, brought up to date by the
/// changes `C` it is sent.
pub trait View<C>:
    Clone + fmt::Debug + PartialEq + Eq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// Its steps.
    fn steps(&self) -> u64;
    /// How many of the run's values it carries (counted as streamed).
    fn values(&self) -> usize;
    /// A new run, from the change that began it, keeping what `window`
    /// allows.
    fn begin(change: &C, window: Window) -> Self;
    /// Applies a change that follows it, keeping what `window` allows.
    fn apply(&mut self, change: &C, window: Window);
}

/// A run as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunView {
    /// The value the run started from.
    pub start: String,
    /// Steps taken: the list holds `steps + 1` values.
    pub steps: u64,
    /// The largest value so far.
    pub peak: String,
    /// The step at which the peak was first reached.
    #[serde(default)]
    pub peak_step: u64,
    /// The newest values, oldest first; the last one is the current value.
    /// Older ones are dropped (the trajectory can be recomputed from `start`).
    pub recent: VecDeque<String>,
    /// The whole trajectory, downsampled, for the chart.
    pub profile: Profile,
}

impl RunView {
    /// The current value.
    pub fn current(&self) -> &str {
        self.recent
            .back()
            .map_or(self.start.as_str(), String::as_str)
    }

    /// The step index of `recent[0]`.
    pub fn first_recent_step(&self) -> u64 {
        self.steps + 1 - self.recent.len() as u64
    }
}

/// What changed between two versions: the machine's state afterwards and
/// what the run's kind says changed (its fields sit beside these in the
/// JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaOf<C> {
    /// The version this delta applies on top of.
    pub base: u64,
    /// The version it brings the state to; the SSE event id.
    pub version: u64,
    /// Where the run stands afterwards, when that changed since `base`
    /// (absent: as before). A step's delta names none of these settings
    /// unless the step changed one: they are most of a small event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// The step interval afterwards, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u32>,
    /// With `status`: why the run failed, when it is failed (absent: it did
    /// not fail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// What happens while nobody watches, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unwatched: Option<Unwatched>,
    /// A new run began: the page's run is replaced by the one `change`
    /// begins.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart: bool,
    /// When the new run began (Unix seconds), in a delta that restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    /// What changed in the run.
    #[serde(flatten)]
    pub change: C,
}

impl<C: Change> DeltaOf<C> {
    /// One delta with the effect of `self` then `next` (which must follow
    /// it): how a slow subscriber's backlog becomes one message.
    pub fn merge(mut self, next: DeltaOf<C>) -> DeltaOf<C> {
        debug_assert_eq!(self.version, next.base, "deltas merge in order");
        if next.restart {
            return DeltaOf {
                base: self.base,
                ..next
            };
        }
        self.version = next.version;
        if next.status.is_some() {
            self.status = next.status;
            self.failure = next.failure;
        }
        self.interval_ms = next.interval_ms.or(self.interval_ms);
        self.unwatched = next.unwatched.or(self.unwatched);
        self.change.merge(next.change);
        self
    }

    /// Whether the run is running afterwards, for a run that was running at
    /// `base` (a step's delta names the status only when it ends the run).
    pub fn still_running(&self) -> bool {
        self.status.is_none_or(|status| status == Status::Running)
    }
}

/// What changed in a Collatz run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunChange {
    /// Values added to the list, in order (after a restart, the first is
    /// the new run's start).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub appended: Vec<String>,
    /// Steps taken in the run afterwards.
    pub steps: u64,
    /// The new peak, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak: Option<String>,
    /// The step of the new peak, with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_step: Option<u64>,
}

impl Change for RunChange {
    fn steps(&self) -> u64 {
        self.steps
    }

    fn values(&self) -> usize {
        self.appended.len()
    }

    fn merge(&mut self, next: RunChange) {
        self.appended.extend(next.appended);
        self.steps = next.steps;
        if next.peak.is_some() {
            self.peak = next.peak;
            self.peak_step = next.peak_step;
        }
    }
}

impl View<RunChange> for RunView {
    fn steps(&self) -> u64 {
        self.steps
    }

    fn values(&self) -> usize {
        self.recent.len()
    }

    fn begin(change: &RunChange, window: Window) -> RunView {
        let start = change.appended.first().cloned().unwrap_or_default();
        let mut profile = Profile::new();
        profile.push(magnitude(&start));
        let mut run = RunView {
            peak: start.clone(),
            peak_step: 0,
            steps: 0,
            recent: VecDeque::from([start.clone()]),
            profile,
            start,
        };
        run.extend(change.appended.iter().skip(1), change, window);
        run
    }

    fn apply(&mut self, change: &RunChange, window: Window) {
        self.extend(change.appended.iter(), change, window);
    }
}

impl RunView {
    /// Adds `values` and takes the rest of `change`.
    fn extend<'a>(
        &mut self,
        values: impl Iterator<Item = &'a String>,
        change: &RunChange,
        window: Window,
    ) {
        for value in values {
            self.profile.push(magnitude(value));
            self.recent.push_back(value.clone());
        }
        let mut held = self.recent.iter().map(String::len).sum();
        window.trim(&mut self.recent, &mut held);
        self.steps = change.steps;
        if let Some(peak) = &change.peak {
            self.peak.clone_from(peak);
            self.peak_step = change.peak_step.unwrap_or(self.peak_step);
        }
    }
}

/// Where a client stands: the version it has, and the steps of its run at
/// that version. It is the id of each event of the update stream, so a
/// reconnecting browser names it (`Last-Event-ID`) and gets exactly what it
/// missed, rebuilt from the values the server still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The version the client has.
    pub version: u64,
    /// Steps in its run at that version (0 without a run).
    pub steps: u64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.version, self.steps)
    }
}

impl FromStr for Cursor {
    type Err = ();

    /// Reads what [`Display`](fmt::Display) wrote; anything else is refused.
    fn from_str(text: &str) -> Result<Cursor, ()> {
        let (version, steps) = text.trim().split_once('.').ok_or(())?;
        let number = |digits: &str| {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            digits.parse().map_err(|_| ())
        };
        Ok(Cursor {
            version: number(version)?,
            steps: number(steps)?,
        })
    }
}

/// The id of an event of the update stream: the session's incarnation (in
/// hex) and the [`Cursor`] the event brings the client to, as
/// `"9f3a….42.17"`. A reconnecting browser sends it back; one from another
/// incarnation is answered with a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventId {
    /// The session's incarnation.
    pub incarnation: u64,
    /// Where the client stands in it.
    pub cursor: Cursor,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}.{}", self.incarnation, self.cursor)
    }
}

impl FromStr for EventId {
    type Err = ();

    /// Reads what [`Display`](fmt::Display) wrote; anything else is refused.
    fn from_str(text: &str) -> Result<EventId, ()> {
        let (incarnation, cursor) = text.trim().split_once('.').ok_or(())?;
        if incarnation.is_empty() || !incarnation.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(());
        }
        Ok(EventId {
            incarnation: u64::from_str_radix(incarnation, 16).map_err(|_| ())?,
            cursor: cursor.parse()?,
        })
    }
}

impl<V: View<C>, C: Change> UpdateOf<V, C> {
    /// How many of the run's values it carries.
    pub fn values(&self) -> usize {
        match self {
            UpdateOf::Snapshot(snapshot) => snapshot.run.as_ref().map_or(0, V::values),
            UpdateOf::Delta(delta) => delta.change.values(),
        }
    }

    /// Where a client stands after applying this update.
    pub fn cursor(&self) -> Cursor {
        match self {
            UpdateOf::Snapshot(snapshot) => Cursor {
                version: snapshot.version,
                steps: snapshot.run.as_ref().map_or(0, V::steps),
            },
            UpdateOf::Delta(delta) => Cursor {
                version: delta.version,
                steps: delta.change.steps(),
            },
        }
    }
}

/// One message of the update stream: its fields, and `"type"` first
/// (`"snapshot"` or `"delta"`), as serde writes an internally tagged enum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UpdateOf<V, C> {
    /// The whole state: the first message, and after a gap.
    Snapshot(SnapshotOf<V>),
    /// What changed since the previous message.
    Delta(DeltaOf<C>),
}

impl<V, C> UpdateOf<V, C> {
    /// Where the run stands after this update, for a client that had it at
    /// `before` (a delta names it only when it changed).
    pub fn status_after(&self, before: Status) -> Status {
        match self {
            UpdateOf::Snapshot(snapshot) => snapshot.status,
            UpdateOf::Delta(delta) => delta.status.unwrap_or(before),
        }
    }
}

/// Read tag first (see [`crate::tagged`]).
impl<'de, V: Deserialize<'de>, C: Change> Deserialize<'de> for UpdateOf<V, C> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::tagged::deserialize(deserializer)
    }
}

impl<'de, V: Deserialize<'de>, C: Change> TagFirst<'de> for UpdateOf<V, C> {
    const TAG: &'static str = "type";
    const VARIANTS: &'static [&'static str] = &["snapshot", "delta"];

    fn variant<M: MapAccess<'de>>(
        tag: &str,
        rest: MapAccessDeserializer<M>,
    ) -> Result<Self, M::Error> {
        match tag {
            "snapshot" => SnapshotOf::deserialize(rest).map(UpdateOf::Snapshot),
            "delta" => DeltaOf::deserialize(rest).map(UpdateOf::Delta),
            other => Err(Self::unknown(other)),
        }
    }
}

/// How many recent values are kept: at most `values` of them, and at most
/// `bytes` of their digits, but always the newest one. The server's window,
/// which the page follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// The most values.
    pub values: usize,
    /// The most bytes of digits.
    pub bytes: usize,
}

impl From<usize> for Window {
    /// At most `values` values, of any size.
    fn from(values: usize) -> Window {
        Window {
            values,
            bytes: usize::MAX,
        }
    }
}

impl Window {
    /// Drops the oldest of `recent` until it fits; `held` is the bytes of
    /// digits it holds, kept up to date.
    pub fn trim(&self, recent: &mut VecDeque<String>, held: &mut usize) {
        while recent.len() > 1 && (recent.len() > self.values || *held > self.bytes) {
            if let Some(dropped) = recent.pop_front() {
                *held -= dropped.len();
            }
        }
    }
}

/// A delta that does not follow the state it was applied to: the client must
/// resynchronise from a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The version the client has.
    pub have: u64,
    /// The version the delta applies to.
    pub base: u64,
}

impl<V> SnapshotOf<V> {
    /// Applies a delta, keeping the recent values `window` allows. A delta
    /// for a version already seen is ignored; one that skips versions is a
    /// [`Gap`].
    pub fn apply<C: Change>(
        &mut self,
        delta: &DeltaOf<C>,
        window: impl Into<Window>,
    ) -> Result<(), Gap>
    where
        V: View<C>,
    {
        let window = window.into();
        if delta.version <= self.version {
            return Ok(());
        }
        if delta.base != self.version {
            return Err(Gap {
                have: self.version,
                base: delta.base,
            });
        }
        if delta.restart {
            self.run = Some(V::begin(&delta.change, window));
            self.started_at = delta.started_at;
        } else if let Some(run) = &mut self.run {
            run.apply(&delta.change, window);
        }
        self.version = delta.version;
        if let Some(status) = delta.status {
            self.status = status;
            self.failure = delta.failure;
        }
        self.interval_ms = delta.interval_ms.unwrap_or(self.interval_ms);
        self.unwatched = delta.unwatched.unwrap_or(self.unwatched);
        Ok(())
    }
}
