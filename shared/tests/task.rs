//! The machine with a task kind of the tests' own: nothing in it assumes
//! Collatz. A countdown begins from a number, steps down by one and is done
//! at 0; its page keeps the last few values it was sent.

use std::collections::VecDeque;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use shared::{
    task::{Control, Machine, Refused, Saved, Task, Unrestorable},
    wire::{self, CommandError, Cursor, DeltaOf, Failure, SnapshotOf, Status, Window},
};

/// How many values a countdown keeps for pages that fall behind.
const KEPT: usize = 4;

#[derive(Debug, Clone)]
struct Countdown {
    from: u32,
    steps: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum CountCommand {
    Begin { from: u32 },
    Running { on: bool },
    Interval { ms: u32 },
    Cancel,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Counted {
    /// The values left after each step sent, oldest first.
    left: Vec<u32>,
    steps: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CountView {
    from: u32,
    steps: u64,
    recent: VecDeque<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SavedCount {
    from: Option<u32>,
    steps: u64,
    began: Option<u64>,
}

impl wire::Change for Counted {
    fn steps(&self) -> u64 {
        self.steps
    }
    fn values(&self) -> usize {
        self.left.len()
    }
    fn merge(&mut self, next: Counted) {
        self.left.extend(next.left);
        self.steps = next.steps;
    }
}

impl wire::View<Counted> for CountView {
    fn steps(&self) -> u64 {
        self.steps
    }
    fn values(&self) -> usize {
        self.recent.len()
    }
    fn begin(change: &Counted, window: Window) -> CountView {
        let from = change.left[0];
        let mut view = CountView {
            from,
            steps: 0,
            recent: VecDeque::new(),
        };
        view.apply(change, window);
        view
    }
    fn apply(&mut self, change: &Counted, window: Window) {
        self.recent.extend(&change.left);
        while self.recent.len() > window.values {
            self.recent.pop_front();
        }
        self.steps = change.steps;
    }
}

impl Countdown {
    fn left(&self, steps: u64) -> u32 {
        self.from - steps as u32
    }
}

impl Task for Countdown {
    type Settings = u32; // the interval a session starts with
    type Command = CountCommand;
    type Input = u32;
    type View = CountView;
    type Change = Counted;
    type Summary = u32;
    type Saved = SavedCount;
    type Work = ();
    type Plan = ();

    fn interval_ms(settings: &u32) -> u32 {
        *settings
    }
    fn control(command: &CountCommand) -> Control<'_, u32> {
        match command {
            CountCommand::Begin { from } => Control::Begin(from),
            CountCommand::Running { on } => Control::Running(*on),
            CountCommand::Interval { ms } => Control::Interval(*ms),
            CountCommand::Cancel => Control::Cancel,
        }
    }
    fn begin(_: &u32, from: &u32) -> Result<Countdown, CommandError> {
        if *from > 1000 {
            return Err(CommandError::Unsaved); // any refusal will do here
        }
        Ok(Countdown {
            from: *from,
            steps: 0,
        })
    }
    fn done(&self) -> bool {
        self.left(self.steps) == 0
    }
    fn steps(&self) -> u64 {
        self.steps
    }
    fn step(&mut self, _: &u32) -> Counted {
        self.steps += 1;
        Counted {
            left: vec![self.left(self.steps)],
            steps: self.steps,
        }
    }
    fn summary(&self) -> u32 {
        self.left(self.steps)
    }
    fn view(&self) -> CountView {
        let first = self.steps.saturating_sub(KEPT as u64 - 1);
        CountView {
            from: self.from,
            steps: self.steps,
            recent: (first..=self.steps).map(|s| self.left(s)).collect(),
        }
    }
    fn since(&self, from: Option<u64>) -> Option<Counted> {
        let first = from.map_or(0, |steps| steps + 1);
        if first + (KEPT as u64) <= self.steps {
            return None; // no longer kept
        }
        Some(Counted {
            left: (first..=self.steps).map(|s| self.left(s)).collect(),
            steps: self.steps,
        })
    }
    fn save(run: Option<(&Countdown, u64)>) -> SavedCount {
        run.map_or_else(SavedCount::default, |(run, began)| SavedCount {
            from: Some(run.from),
            steps: run.steps,
            began: Some(began),
        })
    }
    fn restore(
        _: &u32,
        saved: &SavedCount,
    ) -> Result<Option<(Countdown, Option<u64>)>, Unrestorable> {
        let Some(from) = saved.from else {
            return Ok(None);
        };
        if saved.steps > u64::from(from) {
            return Err(Unrestorable("more steps than the countdown has"));
        }
        Ok(Some((
            Countdown {
                from,
                steps: saved.steps,
            },
            saved.began,
        )))
    }
}

fn machine() -> Machine<Countdown> {
    Machine::new(500)
}

#[test]
fn a_countdown_runs_to_its_end_through_the_machine() {
    let mut m = machine();
    assert_eq!(m.interval_ms(), 500);
    let outcome = m.apply(&CountCommand::Begin { from: 3 }).unwrap();
    let generation = outcome.start_task.expect("a task starts");
    let delta = outcome.delta.unwrap();
    assert!(delta.restart);
    assert_eq!(delta.change.left, [3]);
    assert_eq!(m.status(), Status::Running);
    for left in [2, 1] {
        assert_eq!(m.step(generation).unwrap().change.left, [left]);
        assert_eq!(m.status(), Status::Running);
    }
    let last = m.step(generation).unwrap();
    assert_eq!(
        (last.change.left.as_slice(), last.status),
        (&[0][..], Some(Status::Finished))
    );
    // Leaving Running ended its generation: the task is stale.
    assert_eq!(m.step(generation), Err(Refused::Stale));
    // Begun at its end: finished at once, no task.
    let outcome = m.apply(&CountCommand::Begin { from: 0 }).unwrap();
    assert_eq!((outcome.start_task, m.status()), (None, Status::Finished));
}

#[test]
fn a_refused_begin_changes_nothing() {
    let mut m = machine();
    m.apply(&CountCommand::Begin { from: 5 }).unwrap();
    let before = m.snapshot();
    assert_eq!(
        m.apply(&CountCommand::Begin { from: 5000 }),
        Err(CommandError::Unsaved)
    );
    assert_eq!(m.snapshot(), before);
}

/// What a test does to the machine.
#[derive(Debug, Clone)]
enum Act {
    Command(CountCommand),
    /// A step by the task of the generation that many starts ago (0: the
    /// newest task; older ones are stale).
    Step(usize),
    Halt(usize),
    SaveAndReload,
    SaveAndRestore,
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        1 => (0u32..12).prop_map(|from| Act::Command(CountCommand::Begin { from })),
        1 => any::<bool>().prop_map(|on| Act::Command(CountCommand::Running { on })),
        1 => (0u32..3).prop_map(|ms| Act::Command(CountCommand::Interval { ms })),
        1 => Just(Act::Command(CountCommand::Cancel)),
        4 => (0usize..3).prop_map(Act::Step),
        1 => (0usize..3).prop_map(Act::Halt),
        1 => Just(Act::SaveAndReload),
        1 => Just(Act::SaveAndRestore),
    ]
}

/// A page: folds every delta it is sent, resynchronising from a snapshot
/// after a gap.
struct Page {
    shown: SnapshotOf<CountView>,
}

impl Page {
    fn take(&mut self, delta: &DeltaOf<Counted>, m: &Machine<Countdown>) {
        if self.shown.apply(delta, KEPT).is_err() {
            self.shown = m.snapshot();
        }
    }
}

proptest! {
    /// Under any commands, steps of live and stale tasks, halts, saves and
    /// rebuilds: versions only grow (by one per change), only the newest
    /// task's steps are taken and only while running, there is never more
    /// than one generation a step is accepted for, a page that folds every
    /// delta shows what the machine does, and a page behind catches up
    /// exactly from `delta_since`.
    #[test]
    fn the_machine_keeps_its_invariants_for_any_kind(acts in prop::collection::vec(act(), 1..80)) {
        let mut m = machine();
        let mut generations: Vec<u64> = Vec::new();
        let mut page = Page { shown: m.snapshot() };
        let mut behind: Option<Cursor> = Some(m.cursor());
        let mut behind_shown = m.snapshot();
        for act in acts {
            let version = m.version();
            match act {
                Act::Command(command) => {
                    let before = m.status();
                    let outcome = m.apply(&command).unwrap();
                    if command == CountCommand::Cancel {
                        // Only a running, paused or failed run is cancelled, for
                        // good: no task, and (below) no step until a new one.
                        let cancellable =
                            matches!(before, Status::Running | Status::Paused | Status::Failed);
                        let expected = if cancellable { Status::Cancelled } else { before };
                        prop_assert_eq!(m.status(), expected);
                        prop_assert_eq!(outcome.start_task, None);
                    }
                    if before == Status::Cancelled && matches!(command, CountCommand::Running { .. }) {
                        prop_assert_eq!(m.status(), Status::Cancelled, "a cancelled run does not resume");
                    }
                    if let Some(generation) = outcome.start_task {
                        prop_assert_eq!(generation, m.generation());
                        generations.push(generation);
                    }
                    match outcome.delta {
                        Some(delta) => {
                            prop_assert_eq!((delta.base, delta.version), (version, version + 1));
                            page.take(&delta, &m);
                        }
                        None => prop_assert_eq!(m.version(), version),
                    }
                }
                Act::Step(ago) | Act::Halt(ago) if ago >= generations.len() => {}
                Act::Step(ago) => {
                    let generation = generations[generations.len() - 1 - ago];
                    let live = generation == m.generation() && m.status() == Status::Running;
                    match m.step(generation) {
                        Ok(delta) => {
                            prop_assert!(live, "only the live task steps");
                            prop_assert_eq!(delta.version, version + 1);
                            page.take(&delta, &m);
                        }
                        Err(_) => {
                            prop_assert!(!live);
                            prop_assert_eq!(m.version(), version);
                        }
                    }
                }
                Act::Halt(ago) => {
                    let generation = generations[generations.len() - 1 - ago];
                    if let Some(delta) = m.halt(generation, Failure::StoreRefused) {
                        prop_assert_eq!(m.status(), Status::Failed);
                        prop_assert_eq!(delta.failure, Some(Failure::StoreRefused));
                        page.take(&delta, &m);
                    }
                }
                Act::SaveAndReload => {
                    let saved: Saved<SavedCount> = m.saved();
                    let json = serde_json::to_string(&saved).unwrap();
                    let saved = serde_json::from_str(&json).unwrap();
                    let reloaded = Machine::<Countdown>::reload(500, &saved).unwrap();
                    prop_assert_eq!(reloaded.snapshot(), m.snapshot());
                    prop_assert_eq!(reloaded.cursor(), m.cursor());
                    prop_assert_eq!(reloaded.generation(), m.generation());
                }
                Act::SaveAndRestore => {
                    // A rebuild after a restart: a new incarnation, versions
                    // above anything published, every page told afresh.
                    let saved = m.saved();
                    let restored = Machine::<Countdown>::restore(500, &saved, 10, 7).unwrap();
                    prop_assert!(restored.version() > m.version());
                    prop_assert_eq!(restored.status(), m.status());
                    prop_assert_eq!(restored.run().map(Task::steps), m.run().map(Task::steps));
                    m = restored;
                    page.shown = m.snapshot();
                    behind = Some(m.cursor());
                    behind_shown = m.snapshot();
                    // A task of before the restart may step again only if
                    // its generation is the machine's (the runtime fences
                    // it; the machine alone cannot tell).
                    generations.retain(|g| *g == m.generation());
                }
            }
            prop_assert!(m.version() >= version);
            prop_assert_eq!(m.snapshot().failure.is_some(), m.status() == Status::Failed);
            prop_assert_eq!(&page.shown, &m.snapshot(), "the page folds to the machine's state");
            // A page that reads now and then catches up from its cursor.
            if let Some(cursor) = behind {
                match m.delta_since(cursor) {
                    Some(delta) => {
                        behind_shown.apply(&delta, KEPT).expect("a catch-up follows its cursor");
                        prop_assert_eq!(&behind_shown, &m.snapshot());
                    }
                    None if cursor.version == m.version() => {}
                    None => behind_shown = m.snapshot(), // too far behind: a snapshot
                }
                behind = Some(m.cursor());
            }
        }
    }
}
