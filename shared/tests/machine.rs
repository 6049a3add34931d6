//! The session state machine's rules, case by case and as properties.

use proptest::prelude::*;
use shared::{
    input::InputError,
    wire::{Command, CommandError, Cursor, Failure, Snapshot, Status},
    Collatz, Refused, Settings,
};

fn set_number(text: &str) -> Command {
    Command::SetNumber { text: text.into() }
}

fn set_running(running: bool) -> Command {
    Command::SetRunning { running }
}

fn machine() -> Collatz {
    Collatz::new(Settings::default())
}

/// `saved` with its run changed by `change`.
fn with_run(saved: &shared::Saved, change: impl FnOnce(&mut shared::SavedRun)) -> shared::Saved {
    let mut saved = saved.clone();
    change(&mut saved.run);
    saved
}

fn current(machine: &Collatz) -> String {
    machine.current().unwrap().to_string()
}

#[test]
fn a_number_on_an_idle_session_starts_running() {
    let mut m = machine();
    let outcome = m.apply(&set_number("27")).unwrap();
    assert_eq!(m.status(), Status::Running);
    let generation = outcome.start_task.expect("a task starts");
    assert_eq!(generation, m.generation());
    let delta = outcome.delta.unwrap();
    assert!(delta.restart);
    assert_eq!(delta.change.appended, ["27"]);
    assert_eq!((delta.base, delta.version), (0, 1));
    assert_eq!(m.step(generation).unwrap().change.appended, ["82"]);
}

#[test]
fn a_number_while_running_continues_from_it_with_the_same_task() {
    let mut m = machine();
    let generation = m.apply(&set_number("27")).unwrap().start_task.unwrap();
    m.step(generation).unwrap();
    let outcome = m.apply(&set_number("6")).unwrap();
    assert_eq!(outcome.start_task, None, "no second task");
    assert_eq!(m.status(), Status::Running);
    assert_eq!(m.generation(), generation);
    assert_eq!(m.step(generation).unwrap().change.appended, ["3"]);
}

#[test]
fn a_number_while_paused_is_prepared_and_stays_paused() {
    let mut m = machine();
    let generation = m.apply(&set_number("27")).unwrap().start_task.unwrap();
    m.apply(&set_running(false)).unwrap();
    let outcome = m.apply(&set_number("6")).unwrap();
    assert_eq!(outcome.start_task, None);
    assert_eq!(m.status(), Status::Paused);
    assert_eq!(current(&m), "6");
    assert!(m.step(generation).is_err());
    let resumed = m.apply(&set_running(true)).unwrap().start_task.unwrap();
    assert_eq!(m.step(resumed).unwrap().change.appended, ["3"]);
}

#[test]
fn a_number_on_a_finished_run_starts_again() {
    let mut m = machine();
    let generation = m.apply(&set_number("2")).unwrap().start_task.unwrap();
    let delta = m.step(generation).unwrap();
    assert_eq!(delta.status, Some(Status::Finished));
    assert_eq!(m.step(generation), Err(Refused::Stale));
    let next = m.apply(&set_number("3")).unwrap().start_task;
    assert!(next.is_some());
    assert_eq!(m.status(), Status::Running);
}

#[test]
fn one_is_finished_at_once_and_the_switch_stays_off() {
    let mut m = machine();
    let outcome = m.apply(&set_number("1")).unwrap();
    assert_eq!(outcome.start_task, None);
    assert_eq!(m.status(), Status::Finished);
    let outcome = m.apply(&set_running(true)).unwrap();
    assert_eq!(outcome, Default::default());
    assert_eq!(m.status(), Status::Finished);
}

#[test]
fn switching_on_with_no_number_does_nothing() {
    let mut m = machine();
    assert_eq!(m.apply(&set_running(true)).unwrap(), Default::default());
    assert_eq!(m.status(), Status::Idle);
    assert_eq!(m.version(), 0);
}

#[test]
fn off_refuses_the_old_task_at_once() {
    let mut m = machine();
    let generation = m.apply(&set_number("27")).unwrap().start_task.unwrap();
    let delta = m.apply(&set_running(false)).unwrap().delta.unwrap();
    assert_eq!(delta.status, Some(Status::Paused));
    assert_eq!(m.step(generation), Err(Refused::Stale));
    assert_eq!(current(&m), "27");
}

#[test]
fn off_then_on_leaves_exactly_one_task_able_to_step() {
    let mut m = machine();
    let old = m.apply(&set_number("27")).unwrap().start_task.unwrap();
    m.apply(&set_running(false)).unwrap();
    let new = m.apply(&set_running(true)).unwrap().start_task.unwrap();
    assert_ne!(old, new);
    assert_eq!(m.step(old), Err(Refused::Stale));
    assert!(m.step(new).is_ok());
    // Switching on again while running starts nothing.
    assert_eq!(m.apply(&set_running(true)).unwrap().start_task, None);
}

#[test]
fn bad_input_changes_nothing() {
    let mut m = machine();
    m.apply(&set_number("27")).unwrap();
    let before = m.snapshot();
    for text in ["", "abc", "-7", "1.5", "1e3", "1_000", &"9".repeat(1001)] {
        let error = m.apply(&set_number(text)).unwrap_err();
        assert!(matches!(error, CommandError::Number { .. }), "{text}");
        assert_eq!(m.snapshot(), before, "{text}");
    }
    assert_eq!(
        m.apply(&set_number("0")).unwrap_err(),
        CommandError::Number {
            reason: InputError::Zero
        }
    );
}

#[test]
fn the_interval_is_bounded() {
    let mut m = machine();
    let delta = m
        .apply(&Command::SetInterval { ms: 0 })
        .unwrap()
        .delta
        .unwrap();
    assert_eq!(delta.interval_ms, Some(0));
    assert!(m.apply(&Command::SetInterval { ms: 10_001 }).is_err());
    assert_eq!(m.interval_ms(), 0);
    // The same interval again is no change.
    assert_eq!(
        m.apply(&Command::SetInterval { ms: 0 }).unwrap().delta,
        None
    );
}

#[test]
fn the_window_is_bounded_in_bytes_too_and_keeps_the_newest_value() {
    let settings = Settings {
        window: 256,
        window_bytes: 3_000,
        ..Settings::default()
    };
    let mut m = Collatz::new(settings);
    // 1,000-digit values: three fit in 3,000 bytes.
    let generation = m
        .apply(&set_number(&"9".repeat(1000)))
        .unwrap()
        .start_task
        .unwrap();
    let mut client = m.snapshot();
    for _ in 0..20 {
        let delta = m.step(generation).unwrap();
        client.apply(&delta, settings.window()).unwrap();
    }
    let recent = m.snapshot().run.unwrap().recent;
    assert!(recent.len() <= 3 && !recent.is_empty(), "{}", recent.len());
    assert!(recent.iter().map(String::len).sum::<usize>() <= 3_000);
    assert_eq!(client, m.snapshot(), "the page keeps what the server keeps");
    // A single value larger than the bound is still kept.
    let tiny = Settings {
        window_bytes: 10,
        ..settings
    };
    let mut m = Collatz::new(tiny);
    m.apply(&set_number(&"7".repeat(50))).unwrap();
    assert_eq!(m.snapshot().run.unwrap().recent.len(), 1);
}

#[test]
fn the_window_is_bounded_but_the_stats_are_exact() {
    let mut m = Collatz::new(Settings {
        window: 8,
        ..Settings::default()
    });
    let generation = m.apply(&set_number("27")).unwrap().start_task.unwrap();
    while m.step(generation).is_ok() {}
    let run = m.snapshot().run.unwrap();
    assert_eq!(run.steps, 111);
    assert_eq!(run.peak, "9232");
    assert_eq!(run.recent, ["20", "10", "5", "16", "8", "4", "2", "1"]);
    assert_eq!(run.first_recent_step(), 104);
    assert_eq!(run.profile.count, 112);
}

/// Any command a user could send, good or bad.
fn any_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        prop_oneof![
            Just("27".to_owned()),
            Just("1".to_owned()),
            Just("2".to_owned()),
            Just("abc".to_owned()),
            Just("-7".to_owned()),
            Just("0".to_owned()),
            "[1-9][0-9]{0,30}",
        ]
        .prop_map(|text| Command::SetNumber { text }),
        any::<bool>().prop_map(|running| Command::SetRunning { running }),
        prop_oneof![Just(0u32), Just(500), Just(20_000)].prop_map(|ms| Command::SetInterval { ms }),
    ]
}

/// A user's command, or a step attempt by the task of some generation.
#[derive(Debug, Clone)]
enum Event {
    Command(Command),
    /// A step by the task started `age` starts ago (0: the newest).
    Step {
        age: usize,
    },
}

fn any_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        any_command().prop_map(Event::Command),
        (0usize..3).prop_map(|age| Event::Step { age }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Never a step after pause, never a stale step, never two live tasks,
    /// versions grow by one per change, and the deltas rebuild the state.
    #[test]
    fn the_machine_keeps_its_invariants(events in proptest::collection::vec(any_event(), 0..60)) {
        let mut m = machine();
        let mut started: Vec<u64> = Vec::new();
        let mut client = m.snapshot();
        for event in events {
            let before = m.snapshot();
            let generation_before = m.generation();
            match event {
                Event::Command(command) => match m.apply(&command) {
                    Ok(outcome) => {
                        if let Some(generation) = outcome.start_task {
                            prop_assert_eq!(m.status(), Status::Running);
                            prop_assert!(generation > generation_before);
                            started.push(generation);
                        }
                        match outcome.delta {
                            Some(delta) => {
                                prop_assert_eq!(delta.base, before.version);
                                prop_assert_eq!(delta.version, before.version + 1);
                                client.apply(&delta, 256).unwrap();
                            }
                            None => prop_assert_eq!(&m.snapshot(), &before),
                        }
                    }
                    Err(_) => prop_assert_eq!(&m.snapshot(), &before),
                },
                Event::Step { age } => {
                    let Some(&generation) = started.iter().rev().nth(age) else { continue };
                    let is_live = generation == m.generation() && m.status() == Status::Running;
                    match m.step(generation) {
                        Ok(delta) => {
                            prop_assert!(is_live, "only the live task steps");
                            prop_assert_eq!(before.status, Status::Running);
                            prop_assert_eq!(delta.version, before.version + 1);
                            client.apply(&delta, 256).unwrap();
                        }
                        Err(_) => {
                            prop_assert!(!is_live);
                            prop_assert_eq!(&m.snapshot(), &before);
                        }
                    }
                }
            }
            // At most one started task can still step.
            let live = started
                .iter()
                .filter(|&&g| g == m.generation() && m.status() == Status::Running)
                .count();
            prop_assert!(live <= 1);
            prop_assert!(m.version() >= before.version);
            prop_assert_eq!(&client, &m.snapshot());
        }
    }

    /// From any state a client was in, the delta built from the window
    /// brings it exactly to the current state (values, chart, peak, status);
    /// only a client that misses more values than the window holds, or one
    /// with no run to continue, is told to take a snapshot.
    #[test]
    fn a_delta_from_the_window_rebuilds_any_earlier_state(
        window in 1usize..12,
        events in proptest::collection::vec(any_event(), 0..60),
    ) {
        let mut m = Collatz::new(Settings { window, ..Settings::default() });
        let mut started: Vec<u64> = Vec::new();
        // Every accepted number begins a new run, even the same number.
        let mut run_no = 0;
        let mut history: Vec<(Snapshot, Cursor, u32)> = vec![(m.snapshot(), m.cursor(), run_no)];
        for event in events {
            match event {
                Event::Command(command) => {
                    if let Ok(outcome) = m.apply(&command) {
                        started.extend(outcome.start_task);
                        run_no += u32::from(matches!(command, Command::SetNumber { .. }));
                    }
                }
                Event::Step { age } => {
                    if let Some(&generation) = started.iter().rev().nth(age) {
                        let _ = m.step(generation);
                    }
                }
            }
            if history.last().unwrap().1 != m.cursor() {
                history.push((m.snapshot(), m.cursor(), run_no));
            }
        }
        let now = m.snapshot();
        for (then, cursor, then_run_no) in &history {
            prop_assert_eq!(cursor.version, then.version);
            match m.delta_since(*cursor) {
                Some(delta) => {
                    prop_assert_eq!(delta.base, cursor.version);
                    prop_assert_eq!(delta.restart, *then_run_no != run_no);
                    let mut client = then.clone();
                    client.apply(&delta, window).unwrap();
                    prop_assert_eq!(&client, &now);
                }
                None => {
                    let up_to_date = cursor.version == now.version;
                    let missing = now.run.as_ref().map(|run| {
                        let missing = if *then_run_no == run_no {
                            run.steps - cursor.steps
                        } else {
                            run.steps + 1
                        };
                        (missing, run.recent.len() as u64)
                    });
                    prop_assert!(
                        up_to_date || missing.is_some_and(|(missing, held)| missing > held),
                        "a snapshot only when needed: {:?} at {:?}", cursor, now
                    );
                }
            }
        }
    }

    /// A paused machine takes no step, whoever asks.
    #[test]
    fn never_steps_after_pause(start in "[1-9][0-9]{0,20}", steps in 0usize..20) {
        let mut m = machine();
        if let Some(generation) = m.apply(&set_number(&start)).unwrap().start_task {
            for _ in 0..steps {
                let _ = m.step(generation);
            }
            m.apply(&set_running(false)).unwrap();
            let frozen: Snapshot = m.snapshot();
            for generation in 0..=m.generation() + 1 {
                prop_assert!(m.step(generation).is_err());
            }
            prop_assert_eq!(m.snapshot(), frozen);
        }
    }
}

#[test]
fn a_dead_task_fails_its_run_with_its_reason_and_the_switch_tries_again() {
    let mut m = machine();
    let generation = m.apply(&set_number("27")).unwrap().start_task.unwrap();
    let delta = m.halt(generation, Failure::StoreRefused).unwrap();
    assert_eq!(
        (delta.status, delta.failure),
        (Some(Status::Failed), Some(Failure::StoreRefused))
    );
    assert_eq!(m.status(), Status::Failed, "the switch is off");
    assert_eq!(m.snapshot().failure, Some(Failure::StoreRefused));
    assert!(m.step(generation).is_err());
    // Kept across a restart, with its reason.
    let restored = Collatz::restore(Settings::default(), &m.saved(), 10, 3).unwrap();
    assert_eq!(
        (restored.status(), restored.snapshot().failure),
        (Status::Failed, Some(Failure::StoreRefused))
    );
    // The switch tries again; the reason goes with the failure. A stale
    // task's death changes nothing.
    let resumed = m.apply(&set_running(true)).unwrap().start_task.unwrap();
    assert_eq!((m.status(), m.snapshot().failure), (Status::Running, None));
    assert_eq!(m.halt(generation, Failure::Crashed), None);
    assert_eq!(m.status(), Status::Running);
    assert!(m.step(resumed).is_ok());
    // A failed run can be cancelled, and a new number starts a new one.
    m.halt(resumed, Failure::Crashed).unwrap();
    m.apply(&Command::Cancel).unwrap();
    assert_eq!(
        (m.status(), m.snapshot().failure),
        (Status::Cancelled, None)
    );
    m.halt(resumed, Failure::Crashed);
    let mut failed = machine();
    let generation = failed.apply(&set_number("27")).unwrap().start_task.unwrap();
    failed.halt(generation, Failure::Crashed).unwrap();
    assert!(failed.apply(&set_number("6")).unwrap().start_task.is_some());
    assert_eq!(failed.status(), Status::Running);
}

#[test]
fn a_saved_state_restores_exactly_with_a_higher_version() {
    let mut m = machine();
    let began = Some(1_796_000_000);
    let generation = m
        .apply_at(&set_number("27"), began)
        .unwrap()
        .start_task
        .unwrap();
    for _ in 0..40 {
        m.step(generation).unwrap();
    }
    let saved = m.saved();
    assert_eq!(
        (saved.run.start.as_deref(), saved.run.steps),
        (Some("27"), 40)
    );
    let restored = Collatz::restore(Settings::default(), &saved, 100, 7).unwrap();
    let (mut a, mut b) = (m.snapshot(), restored.snapshot());
    assert_eq!(b.version, a.version + 100);
    b.version = a.version;
    assert_eq!(a, b, "the same run, window, peak, profile and start time");
    assert_eq!(b.started_at, began);
    assert_eq!(restored.listed("r".into()).started_at, began);
    assert_eq!(restored.status(), Status::Running);
    assert_eq!(restored.generation(), generation);
    assert_eq!(restored.incarnation(), 7);
    assert_eq!(restored.saved().incarnation, 7);
    // It carries on where it was.
    let mut restored = restored;
    a = {
        m.step(generation).unwrap();
        m.snapshot()
    };
    restored.step(generation).unwrap();
    assert_eq!(restored.snapshot().run, a.run);
}

#[test]
fn a_restore_resumes_above_the_reservation() {
    let mut m = machine();
    let generation = m.apply(&set_number("27")).unwrap().start_task.unwrap();
    let saved = shared::Saved {
        reserved: m.version() + 1000,
        ..m.saved()
    };
    // Published after the save, within the reservation.
    for _ in 0..40 {
        m.step(generation).unwrap();
    }
    let restored = Collatz::restore(Settings::default(), &saved, 65, 7).unwrap();
    assert_eq!(restored.version(), saved.reserved + 1);
    assert!(restored.version() > m.version());
}

#[test]
fn a_reload_is_the_same_state_for_every_client() {
    let mut m = machine().with_incarnation(9);
    m.apply(&set_number("7")).unwrap();
    // The running task carries on with the new run.
    m.apply(&set_number("27")).unwrap();
    let generation = m.generation();
    let cursors: Vec<Cursor> = (0..30)
        .map(|_| {
            let cursor = m.cursor();
            m.step(generation).unwrap();
            cursor
        })
        .collect();
    let reloaded = Collatz::reload(Settings::default(), &m.saved()).unwrap();
    assert_eq!(reloaded.snapshot(), m.snapshot());
    assert_eq!(reloaded.cursor(), m.cursor());
    assert_eq!(reloaded.incarnation(), 9);
    // A client of the run, or of the run before it, is brought up to date
    // as the original would.
    let before = Cursor {
        version: 1,
        steps: 0,
    };
    for cursor in cursors.into_iter().chain([before]) {
        assert_eq!(
            reloaded.delta_since(cursor),
            m.delta_since(cursor),
            "{cursor}"
        );
    }
}

#[test]
fn damaged_saved_states_are_refused() {
    let good = {
        let mut m = machine();
        m.apply(&set_number("6")).unwrap();
        m.saved()
    };
    let cases = [
        with_run(&good, |run| run.start = Some("abc".into())),
        with_run(&good, |run| run.start = Some("0".into())),
        with_run(&good, |run| run.steps = 9), // 6 reaches 1 in 8
        shared::Saved {
            interval_ms: 99_999,
            ..good.clone()
        },
        with_run(&good, |run| run.resume.as_mut().unwrap().first = "x".into()),
        with_run(&good, |run| run.resume.as_mut().unwrap().first_step = 5),
        with_run(&good, |run| {
            run.resume.as_mut().unwrap().profile = shared::Profile::new();
        }),
    ];
    for saved in cases {
        assert!(
            Collatz::restore(Settings::default(), &saved, 1, 7).is_err(),
            "{saved:?}"
        );
    }
    // A record from before `resume` was kept replays from its start.
    let finished = with_run(&good, |run| {
        run.steps = 8;
        run.resume = None;
    });
    let restored = Collatz::restore(Settings::default(), &finished, 1, 7).unwrap();
    assert_eq!(restored.status(), Status::Finished);
}

#[test]
fn cursors_read_back_what_they_write_and_refuse_the_rest() {
    let cursor = Cursor {
        version: 42,
        steps: 17,
    };
    assert_eq!(cursor.to_string(), "42.17");
    assert_eq!("42.17".parse(), Ok(cursor));
    assert_eq!(" 42.17 ".parse(), Ok(cursor));
    for bad in [
        "",
        "42",
        "42.",
        ".17",
        "42.17.1",
        "-1.0",
        "a.b",
        "+4.2",
        "99999999999999999999.0",
    ] {
        assert_eq!(bad.parse::<Cursor>(), Err(()), "{bad:?}");
    }
}

#[test]
fn a_client_of_a_restored_session_is_given_the_whole_run_again() {
    let mut m = machine();
    let generation = m.apply(&set_number("27")).unwrap().start_task.unwrap();
    for _ in 0..5 {
        m.step(generation).unwrap();
    }
    let before = m.cursor();
    let restored = Collatz::restore(Settings::default(), &m.saved(), 10, 7).unwrap();
    let delta = restored.delta_since(before).unwrap();
    assert!(
        delta.restart,
        "versions before the restore may name another run"
    );
    assert_eq!(delta.change.appended.len(), 6);
    assert_eq!(delta.version, before.version + 10);
}

#[test]
fn event_ids_carry_the_incarnation() {
    let id = shared::wire::EventId {
        incarnation: 0x9f3a,
        cursor: Cursor {
            version: 42,
            steps: 17,
        },
    };
    assert_eq!(id.to_string(), "9f3a.42.17");
    assert_eq!("9f3a.42.17".parse(), Ok(id));
    for bad in ["", "42.17", "g.1.2", ".1.2", "9f3a.42", "9f3a.42.17.1"] {
        assert_eq!(bad.parse::<shared::wire::EventId>(), Err(()), "{bad:?}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Rebuilding from the saved window (what a restart does) and replaying
    /// from the start (records from before it) give the same state.
    #[test]
    fn a_rebuild_from_the_window_equals_a_replay_from_the_start(
        start in "[1-9][0-9]{0,40}",
        steps in 0usize..400,
        window in 1usize..40,
    ) {
        let settings = Settings { window, ..Settings::default() };
        let mut m = Collatz::new(settings);
        let generation = m.apply(&set_number(&start)).unwrap().start_task;
        for _ in 0..steps {
            match generation {
                Some(g) if m.step(g).is_ok() => {}
                _ => break,
            }
        }
        let saved = m.saved();
        let replayed = with_run(&saved, |run| run.resume = None);
        let a = Collatz::restore(settings, &saved, 3, 1).unwrap();
        let b = Collatz::restore(settings, &replayed, 3, 1).unwrap();
        proptest::prop_assert_eq!(a.snapshot(), b.snapshot());
        let mut original = m.snapshot();
        original.version += 3;
        proptest::prop_assert_eq!(a.snapshot(), original);
    }
}

/// Records are stored as JSON (SQLite rows, Redis): the task kind's fields
/// sit beside the machine's, as they did before the two were apart, so
/// every stored record is still read.
#[test]
fn a_saved_record_keeps_its_json_shape_and_old_records_are_read() {
    let mut m = machine();
    let generation = m.apply(&set_number("27")).unwrap().start_task.unwrap();
    m.step(generation).unwrap();
    let json = serde_json::to_value(m.saved()).unwrap();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "generation",
            "incarnation",
            "interval_ms",
            "reserved",
            "resume",
            "settled_at",
            "start",
            "status",
            "steps",
            "version"
        ]
    );
    // A record from before reservations, incarnations and `resume`.
    let old: shared::Saved = serde_json::from_str(
        r#"{"start":"27","steps":3,"status":"paused","interval_ms":500,"version":5,"generation":2}"#,
    )
    .unwrap();
    let restored = Collatz::restore(Settings::default(), &old, 65, 1).unwrap();
    assert_eq!(
        (restored.status(), restored.version()),
        (Status::Paused, 70)
    );
    assert_eq!(
        restored.trajectory().map(|(s, n)| (s.to_string(), n)),
        Some(("27".into(), 3))
    );
    assert_eq!(current(&restored), "124");
}

#[test]
fn cancel_ends_a_run_for_good_and_a_new_number_starts_another() {
    let mut m = machine();
    let generation = m.apply(&set_number("27")).unwrap().start_task.unwrap();
    m.step(generation).unwrap();
    let delta = m.apply(&Command::Cancel).unwrap().delta.unwrap();
    assert_eq!(
        (delta.status, delta.change.steps),
        (Some(Status::Cancelled), 1)
    );
    assert_eq!(m.step(generation), Err(Refused::Stale), "its task stops");
    // Neither the switch nor a second cancel changes it.
    assert_eq!(m.apply(&set_running(true)).unwrap(), Default::default());
    assert_eq!(m.apply(&Command::Cancel).unwrap(), Default::default());
    assert_eq!(
        (m.status(), current(&m)),
        (Status::Cancelled, "82".to_owned())
    );
    // It is kept across a restart as it was.
    let restored = Collatz::restore(Settings::default(), &m.saved(), 10, 3).unwrap();
    assert_eq!(restored.status(), Status::Cancelled);
    // A new number starts a new run, running.
    let outcome = m.apply(&set_number("6")).unwrap();
    assert!(outcome.start_task.is_some());
    assert_eq!(m.status(), Status::Running);
    // A paused run is cancelled too; an idle or finished one is not.
    m.apply(&set_running(false)).unwrap();
    m.apply(&Command::Cancel).unwrap();
    assert_eq!(m.status(), Status::Cancelled);
    let mut idle = machine();
    assert_eq!(idle.apply(&Command::Cancel).unwrap(), Default::default());
    idle.apply(&set_number("1")).unwrap();
    assert_eq!(idle.apply(&Command::Cancel).unwrap(), Default::default());
    assert_eq!(idle.status(), Status::Finished);
}

#[test]
fn an_unwatched_run_lapses_as_its_policy_says_and_only_while_it_runs() {
    use shared::wire::Unwatched;
    let policy = |policy| Command::SetUnwatched { policy };
    let mut m = machine();
    assert_eq!(m.unwatched(), Unwatched::Keep, "the default keeps running");
    let generation = m.apply(&set_number("27")).unwrap().start_task.unwrap();
    assert_eq!(m.lapse(generation), None, "keep: nothing lapses");
    // Out of range: refused, nothing changes.
    let version = m.version();
    for minutes in [0, 24 * 60 + 1] {
        let refused = m.apply(&policy(Unwatched::Pause { minutes })).unwrap_err();
        assert_eq!(
            refused,
            CommandError::Unwatched {
                max_minutes: 24 * 60
            }
        );
    }
    assert_eq!(m.version(), version);
    // Pause: a change of its own, carried by the delta and the snapshot.
    let delta = m
        .apply(&policy(Unwatched::Pause { minutes: 10 }))
        .unwrap()
        .delta
        .unwrap();
    assert_eq!(delta.unwatched, Some(Unwatched::Pause { minutes: 10 }));
    assert_eq!(m.snapshot().unwatched, Unwatched::Pause { minutes: 10 });
    assert_eq!(
        m.lapse(generation + 1),
        None,
        "a stale generation does nothing"
    );
    let lapsed = m.lapse(generation).unwrap();
    assert_eq!(
        (lapsed.status, m.status()),
        (Some(Status::Paused), Status::Paused)
    );
    assert_eq!(
        m.lapse(generation),
        None,
        "a paused run does not lapse again"
    );
    // The switch resumes it; cancel ends it for good.
    let generation = m.apply(&set_running(true)).unwrap().start_task.unwrap();
    m.apply(&policy(Unwatched::Cancel { minutes: 1 })).unwrap();
    assert_eq!(m.lapse(generation).unwrap().status, Some(Status::Cancelled));
    // Kept across a save.
    let restored = Collatz::restore(Settings::default(), &m.saved(), 65, 7).unwrap();
    assert_eq!(restored.unwatched(), Unwatched::Cancel { minutes: 1 });
}
