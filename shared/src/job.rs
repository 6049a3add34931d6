//! The task kinds the product serves, as one kind the runtime runs: a run
//! of a session is a Collatz run or a record search, chosen by the command
//! that begins it. Each part delegates to its kind; the JSON of a Collatz
//! run is what it was before searches came (a search's view, change and
//! line are written under the key `search`; its command by its own fields),
//! so stored sessions, logs and pages read on.

use serde::{Deserialize, Serialize};

use crate::{
    collatz::{Run, SavedRun, Settings},
    records::Stretch,
    search::{
        Plan, SavedSearch, SearchBrief, SearchChange, SearchCommand, SearchRun, SearchSettings,
        SearchView,
    },
    tagged,
    task::{self, Control, Task, Unrestorable},
    wire::{self, Command, CommandError, RunBrief, RunChange, RunView},
};

/// One session's state machine for runs of either kind.
pub type Jobs = task::Machine<Job>;

/// A run of either kind.
#[derive(Debug, Clone)]
pub enum Job {
    /// A trajectory stepped to 1.
    Collatz(Run),
    /// A range searched for records.
    Search(SearchRun),
}

/// Fixed choices for runs of either kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobSettings {
    /// Collatz runs'.
    pub collatz: Settings,
    /// Searches'.
    pub search: SearchSettings,
}

/// A command to a run of either kind: the Collatz commands (whose switch,
/// interval, cancel and unwatched policy apply to a run of any kind) or a
/// search's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JobCommand {
    /// A Collatz command, or one for any run.
    Collatz(Command),
    /// A search's.
    Search(SearchCommand),
}

impl From<Command> for JobCommand {
    fn from(command: Command) -> Self {
        JobCommand::Collatz(command)
    }
}

impl From<SearchCommand> for JobCommand {
    fn from(command: SearchCommand) -> Self {
        JobCommand::Search(command)
    }
}

/// A run of either kind as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobView {
    /// A search (`{"search": …}`).
    Search(SearchView),
    /// A Collatz run.
    Collatz(RunView),
}

/// What changed in a run of either kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobChange {
    /// A search's (`{"search": …}`).
    Search(SearchChange),
    /// A Collatz run's.
    Collatz(RunChange),
}

impl Default for JobChange {
    fn default() -> Self {
        JobChange::Collatz(RunChange::default())
    }
}

/// A run of either kind in a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobBrief {
    /// A search's (`{"search": …}`).
    Search(SearchBrief),
    /// A Collatz run's.
    Collatz(RunBrief),
}

/// The JSON of a run of either kind, as the page reads it: a Collatz run's
/// own, a search's under the key `search`.
macro_rules! keyed_json {
    ($job:ident) => {
        impl Serialize for $job {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $job::Search(search) => tagged::serialize_keyed(serializer, "search", search),
                    $job::Collatz(collatz) => collatz.serialize(serializer),
                }
            }
        }

        impl<'de> Deserialize<'de> for $job {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$job, D::Error> {
                Ok(
                    match tagged::deserialize_keyed_or(deserializer, "search")? {
                        tagged::Either::Keyed(search) => $job::Search(search),
                        tagged::Either::Fields(collatz) => $job::Collatz(collatz),
                    },
                )
            }
        }
    };
}

keyed_json!(JobView);
keyed_json!(JobChange);
keyed_json!(JobBrief);

/// A session's run of either kind, in its list.
pub type Listed = wire::ListedOf<JobBrief>;
/// One message of the update stream of a run of either kind.
pub type Update = wire::UpdateOf<JobView, JobChange>;
/// The whole visible state of a run of either kind.
pub type Snapshot = wire::SnapshotOf<JobView>;
/// What a store keeps of a session of either kind.
pub type Saved = task::Saved<SavedJob>;

/// What a store keeps of a run of either kind: a Collatz run's fields as
/// they always were, or a search beside them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedJob {
    /// A Collatz run's (empty for a search).
    #[serde(flatten)]
    pub collatz: SavedRun,
    /// A search's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SavedSearch>,
}

impl From<SavedRun> for SavedJob {
    fn from(collatz: SavedRun) -> Self {
        SavedJob {
            collatz,
            search: None,
        }
    }
}

impl wire::Change for JobChange {
    fn steps(&self) -> u64 {
        match self {
            JobChange::Search(change) => change.steps(),
            JobChange::Collatz(change) => change.steps(),
        }
    }

    fn values(&self) -> usize {
        match self {
            JobChange::Search(change) => change.values(),
            JobChange::Collatz(change) => change.values(),
        }
    }

    fn merge(&mut self, next: JobChange) {
        match (self, next) {
            (JobChange::Search(change), JobChange::Search(next)) => change.merge(next),
            (JobChange::Collatz(change), JobChange::Collatz(next)) => change.merge(next),
            // A change of another kind replaces the run: it is the whole.
            (this, next) => *this = next,
        }
    }
}

impl wire::View<JobChange> for JobView {
    fn steps(&self) -> u64 {
        match self {
            JobView::Search(view) => wire::View::steps(view),
            JobView::Collatz(view) => wire::View::steps(view),
        }
    }

    fn values(&self) -> usize {
        match self {
            JobView::Search(view) => wire::View::values(view),
            JobView::Collatz(view) => wire::View::values(view),
        }
    }

    fn begin(change: &JobChange, window: wire::Window) -> JobView {
        match change {
            JobChange::Search(change) => JobView::Search(SearchView::begin(change, window)),
            JobChange::Collatz(change) => JobView::Collatz(RunView::begin(change, window)),
        }
    }

    fn apply(&mut self, change: &JobChange, window: wire::Window) {
        match (self, change) {
            (JobView::Search(view), JobChange::Search(change)) => view.apply(change, window),
            (JobView::Collatz(view), JobChange::Collatz(change)) => view.apply(change, window),
            // Only a restart changes a run's kind, and it begins anew.
            (this, change) => *this = JobView::begin(change, window),
        }
    }
}

impl JobView {
    /// The Collatz run it is, if it is one.
    pub fn collatz(&self) -> Option<&RunView> {
        match self {
            JobView::Collatz(view) => Some(view),
            JobView::Search(_) => None,
        }
    }

    /// The search it is, if it is one.
    pub fn search(&self) -> Option<&SearchView> {
        match self {
            JobView::Search(view) => Some(view),
            JobView::Collatz(_) => None,
        }
    }
}

impl Job {
    /// The Collatz run it is, if it is one.
    pub fn collatz(&self) -> Option<&Run> {
        match self {
            Job::Collatz(run) => Some(run),
            Job::Search(_) => None,
        }
    }

    /// The search it is, if it is one.
    pub fn search(&self) -> Option<&SearchRun> {
        match self {
            Job::Search(run) => Some(run),
            Job::Collatz(_) => None,
        }
    }
}

impl Task for Job {
    type Settings = JobSettings;
    type Command = JobCommand;
    type Input = JobCommand;
    type View = JobView;
    type Change = JobChange;
    type Summary = JobBrief;
    type Saved = SavedJob;
    type Work = Option<Stretch>;
    type Plan = Plan;

    fn interval_ms(settings: &JobSettings) -> u32 {
        Run::interval_ms(&settings.collatz)
    }

    fn unwatched(settings: &JobSettings) -> wire::Unwatched {
        Run::unwatched(&settings.collatz)
    }

    fn control(command: &JobCommand) -> Control<'_, JobCommand> {
        match command {
            JobCommand::Search(SearchCommand::SetRange { .. }) => Control::Begin(command),
            JobCommand::Collatz(collatz) => match Run::control(collatz) {
                Control::Begin(_) => Control::Begin(command),
                Control::Running(on) => Control::Running(on),
                Control::Interval(ms) => Control::Interval(ms),
                Control::Cancel => Control::Cancel,
                Control::Unwatched(policy) => Control::Unwatched(policy),
            },
        }
    }

    fn begin(settings: &JobSettings, input: &JobCommand) -> Result<Job, CommandError> {
        match input {
            JobCommand::Search(SearchCommand::SetRange { from, to }) => {
                SearchRun::begin(&settings.search, from, to).map(Job::Search)
            }
            JobCommand::Collatz(Command::SetNumber { text }) => {
                Run::begin(&settings.collatz, text).map(Job::Collatz)
            }
            JobCommand::Collatz(other) => unreachable!("{other:?} begins no run (see `control`)"),
        }
    }

    fn extend(&mut self, settings: &JobSettings, input: &JobCommand) -> Option<JobChange> {
        match (self, input) {
            (Job::Search(run), JobCommand::Search(SearchCommand::SetRange { from, to })) => run
                .extend(&settings.search, from, to)
                .map(JobChange::Search),
            _ => None,
        }
    }

    fn done(&self) -> bool {
        match self {
            Job::Collatz(run) => run.done(),
            Job::Search(run) => run.done(),
        }
    }

    fn steps(&self) -> u64 {
        match self {
            Job::Collatz(run) => Task::steps(run),
            Job::Search(run) => run.steps(),
        }
    }

    fn step(&mut self, settings: &JobSettings) -> JobChange {
        self.step_with(settings, None)
    }

    fn plan(&self, settings: &JobSettings, ways: usize) -> Vec<Plan> {
        match self {
            Job::Collatz(_) => Vec::new(),
            Job::Search(run) => run.plan(&settings.search, ways),
        }
    }

    fn work(plan: Plan) -> Option<Stretch> {
        Some(plan.work())
    }

    fn step_with(&mut self, settings: &JobSettings, work: Option<Stretch>) -> JobChange {
        match self {
            Job::Collatz(run) => JobChange::Collatz(run.step(&settings.collatz)),
            Job::Search(run) => JobChange::Search(run.step(work)),
        }
    }

    fn view(&self) -> JobView {
        match self {
            Job::Collatz(run) => JobView::Collatz(run.view()),
            Job::Search(run) => JobView::Search(run.view()),
        }
    }

    fn summary(&self) -> JobBrief {
        match self {
            Job::Collatz(run) => JobBrief::Collatz(run.summary()),
            Job::Search(run) => JobBrief::Search(run.summary()),
        }
    }

    fn since(&self, from: Option<u64>) -> Option<JobChange> {
        match self {
            Job::Collatz(run) => run.since(from).map(JobChange::Collatz),
            Job::Search(run) => Some(JobChange::Search(run.since(from))),
        }
    }

    fn save(run: Option<(&Job, u64)>) -> SavedJob {
        match run {
            None => SavedJob::default(),
            Some((Job::Collatz(run), began)) => Run::save(Some((run, began))).into(),
            Some((Job::Search(run), began)) => SavedJob {
                collatz: SavedRun::default(),
                search: Some(run.save(began)),
            },
        }
    }

    fn restore(
        settings: &JobSettings,
        saved: &SavedJob,
    ) -> Result<Option<(Job, Option<u64>)>, Unrestorable> {
        match &saved.search {
            Some(search) => {
                let (run, began) = SearchRun::restore(search)?;
                Ok(Some((Job::Search(run), began)))
            }
            None => Ok(Run::restore(&settings.collatz, &saved.collatz)?
                .map(|(run, began)| (Job::Collatz(run), began))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        records,
        wire::{Status, View as _},
        Collatz,
    };

    /// Stretches of 1,000 starts, so tests in a debug build see many.
    fn settings() -> JobSettings {
        JobSettings {
            search: SearchSettings {
                stretch: 1000,
                ..SearchSettings::default()
            },
            ..JobSettings::default()
        }
    }

    fn range(from: &str, to: &str) -> JobCommand {
        JobCommand::Search(SearchCommand::SetRange {
            from: from.into(),
            to: to.into(),
        })
    }

    /// Steps the running search with planned work until it stops.
    fn search_on(machine: &mut Jobs, generation: u64) {
        while machine.status() == Status::Running {
            let plans = machine.run().unwrap().plan(&machine.settings(), 2);
            for plan in plans {
                machine.step_with(generation, Job::work(plan)).unwrap();
            }
        }
    }

    /// A search of [1, 100000] that took its first three planned steps.
    fn searched_partly() -> Jobs {
        let mut machine = Jobs::new(settings());
        let generation = machine
            .apply(&range("1", "100000"))
            .unwrap()
            .start_task
            .unwrap();
        for plan in machine.run().unwrap().plan(&machine.settings(), 3) {
            machine.step_with(generation, Job::work(plan)).unwrap();
        }
        machine
    }

    #[test]
    fn a_search_runs_finishes_and_goes_on_when_to_is_raised() {
        let mut machine = Jobs::new(settings());
        let refused = machine.apply(&range("10", "9")).unwrap_err();
        assert_eq!(refused, CommandError::Backwards);
        assert_eq!(machine.version(), 0, "a refused range changes nothing");
        let generation = machine
            .apply(&range("1", "10000"))
            .unwrap()
            .start_task
            .unwrap();
        search_on(&mut machine, generation);
        assert_eq!(machine.status(), Status::Finished);
        let page = machine.snapshot();
        // Raising To starts the task again and redoes nothing.
        let outcome = machine.apply(&range("1", "100,000")).unwrap();
        let generation = outcome
            .start_task
            .expect("a finished search raised runs again");
        let delta = outcome.delta.unwrap();
        assert!(!delta.restart);
        search_on(&mut machine, generation);
        let search = machine.run().unwrap().search().unwrap();
        assert_eq!(search.search().records(), records::plain(1, 100_000));
        // A page that had the first range is brought to the whole.
        let mut followed = page;
        followed.apply(&delta, 1).unwrap();
        let rest = machine.delta_since(crate::wire::Cursor {
            version: followed.version,
            steps: followed.run.as_ref().unwrap().steps(),
        });
        followed.apply(&rest.unwrap(), 1).unwrap();
        assert_eq!(followed, machine.snapshot());
        // Another range starts over.
        let restart = machine.apply(&range("2", "3")).unwrap().delta.unwrap();
        assert!(restart.restart);
    }

    #[test]
    fn a_search_is_saved_and_restored_mid_range() {
        let machine = searched_partly();
        let saved: Saved =
            serde_json::from_str(&serde_json::to_string(&machine.saved()).unwrap()).unwrap();
        let mut back = Jobs::restore(settings(), &saved, 0, 1).unwrap();
        assert_eq!(back.status(), Status::Running);
        let generation = back.generation();
        search_on(&mut back, generation);
        let search = back.run().unwrap().search().unwrap();
        assert_eq!(search.search().records(), records::plain(1, 100_000));
    }

    #[test]
    fn a_collatz_run_travels_and_is_kept_as_before() {
        let command = Command::SetNumber { text: "27".into() };
        let json = serde_json::to_string(&command).unwrap();
        let read: JobCommand = serde_json::from_str(&json).unwrap();
        assert_eq!(read, JobCommand::Collatz(command.clone()));
        let read: JobCommand =
            serde_json::from_str(r#"{"type":"set_range","from":"1","to":"9"}"#).unwrap();
        assert_eq!(read, range("1", "9"));

        let mut job = Jobs::new(JobSettings::default());
        let mut run = Collatz::new(Settings::default());
        let (g1, g2) = (
            job.apply(&command.clone().into())
                .unwrap()
                .start_task
                .unwrap(),
            run.apply(&command).unwrap().start_task.unwrap(),
        );
        for _ in 0..5 {
            job.step(g1).unwrap();
            run.step(g2).unwrap();
        }
        let as_json = |value: &dyn erased::Json| value.json();
        assert_eq!(as_json(&job.saved()), as_json(&run.saved()));
        assert_eq!(as_json(&job.snapshot()), as_json(&run.snapshot()));
        let saved: Saved = serde_json::from_str(&as_json(&run.saved())).unwrap();
        assert_eq!(saved.run, SavedJob::from(run.saved().run));
        let view: Snapshot = serde_json::from_str(&as_json(&run.snapshot())).unwrap();
        assert_eq!(view, job.snapshot());
    }

    #[test]
    fn a_search_travels_under_its_key_and_reads_back_whole() {
        let machine = searched_partly();
        let snapshot = machine.snapshot();
        let json = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(json["run"]["search"]["from"], 1, "{json}");
        assert!(!json["run"]["search"]["records"]
            .as_array()
            .unwrap()
            .is_empty());
        let read: Snapshot = serde_json::from_value(json).unwrap();
        assert_eq!(read, snapshot);
        // From a page that saw the range set (version 1, no step yet).
        let delta = machine
            .delta_since(crate::wire::Cursor {
                version: 1,
                steps: 0,
            })
            .unwrap();
        let read: wire::DeltaOf<JobChange> =
            serde_json::from_str(&serde_json::to_string(&delta).unwrap()).unwrap();
        assert_eq!(read, delta);
        let brief = machine.run().unwrap().summary();
        let read: JobBrief = serde_json::from_str(&serde_json::to_string(&brief).unwrap()).unwrap();
        assert_eq!(read, brief);
        let refused = serde_json::from_str::<JobView>(r#"{"search":{},"steps":1}"#);
        assert!(refused.is_err(), "a search's key stands alone");
    }

    /// JSON of values of different types, side by side.
    mod erased {
        pub trait Json {
            fn json(&self) -> String;
        }

        impl<T: serde::Serialize> Json for T {
            fn json(&self) -> String {
                serde_json::to_string(self).unwrap()
            }
        }
    }
}
