//! The background-task runtime under tokio's paused clock: exactly one task
//! per session, no step after "off", versions that only grow.

mod support;

use std::{sync::Arc, time::Duration};

use proptest::prelude::*;
use server::{store::Store, Hailstone as Runtime};

type Session = server::session::Session<shared::job::Job>;
use shared::{
    job::{JobCommand, Snapshot, Update},
    wire::{Command, Failure, Status, View as _},
};

fn runtime(interval_ms: u64) -> Arc<Runtime> {
    let mut config = support::config();
    config.collatz.step_interval_ms = interval_ms;
    Runtime::new(&config, config.session_settings(), support::store(&config))
}

fn set_number(text: &str) -> JobCommand {
    Command::SetNumber { text: text.into() }.into()
}

fn set_running(running: bool) -> JobCommand {
    Command::SetRunning { running }.into()
}

/// Lets every ready task run until none is left to run.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

async fn steps(session: &Session) -> u64 {
    session.snapshot().await.run.map_or(0, |run| run.steps())
}

#[tokio::test(start_paused = true)]
async fn steps_come_one_interval_apart() {
    let runtime = runtime(500);
    let session = runtime.sessions.create().unwrap().session;
    runtime.command(&session, set_number("27")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(499)).await;
    assert_eq!(steps(&session).await, 0);
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(steps(&session).await, 1);
    tokio::time::sleep(Duration::from_millis(5000)).await;
    assert_eq!(steps(&session).await, 11);
    runtime.stop().await;
}

#[tokio::test(start_paused = true)]
async fn off_then_on_within_one_interval_runs_one_loop() {
    let runtime = runtime(500);
    let session = runtime.sessions.create().unwrap().session;
    runtime.command(&session, set_number("27")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    runtime.command(&session, set_running(false)).await.unwrap();
    runtime.command(&session, set_running(true)).await.unwrap();
    settle().await;
    assert_eq!(runtime.tasks.len(), 1, "the stopped task ended at once");
    // Ten intervals after "on": ten steps, not twenty.
    tokio::time::sleep(Duration::from_millis(5001)).await;
    assert_eq!(steps(&session).await, 10);
    assert_eq!(runtime.tasks.len(), 1);
    runtime.stop().await;
    assert_eq!(runtime.tasks.len(), 0, "shutdown waits for every task");
}

#[tokio::test(start_paused = true)]
async fn no_step_lands_after_off_is_acknowledged() {
    let runtime = runtime(500);
    let session = runtime.sessions.create().unwrap().session;
    runtime.command(&session, set_number("27")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1250)).await;
    runtime.command(&session, set_running(false)).await.unwrap();
    let frozen = session.snapshot().await;
    tokio::time::sleep(Duration::from_millis(10_000)).await;
    assert_eq!(session.snapshot().await, frozen);
    settle().await;
    assert_eq!(runtime.tasks.len(), 0);
    runtime.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_number_while_running_keeps_the_same_task() {
    let runtime = runtime(500);
    let session = runtime.sessions.create().unwrap().session;
    runtime.command(&session, set_number("27")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    runtime.command(&session, set_number("6")).await.unwrap();
    settle().await;
    assert_eq!(runtime.tasks.len(), 1);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let run = session.snapshot().await.run.unwrap();
    let run = run.collatz().unwrap();
    assert_eq!(run.start, "6");
    assert_eq!(run.recent, ["6", "3", "10"]);
    runtime.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_finished_run_ends_its_task() {
    let runtime = runtime(10);
    let session = runtime.sessions.create().unwrap().session;
    runtime.command(&session, set_number("27")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    settle().await;
    let snapshot = session.snapshot().await;
    assert_eq!(snapshot.status, Status::Finished);
    assert_eq!(snapshot.run.unwrap().steps(), 111);
    assert_eq!(runtime.tasks.len(), 0);
    runtime.stop().await;
}

#[tokio::test(start_paused = true)]
async fn idle_sessions_expire_but_running_ones_stay() {
    let mut config = support::config();
    config.sessions.idle_timeout_secs = 60;
    let store = std::sync::Arc::new(server::store::MemoryStore::default());
    let runtime = Runtime::new(&config, config.session_settings(), store.clone());
    let visitor = std::net::IpAddr::from([127, 0, 0, 1]);
    let (idle, _) = runtime
        .start_session(visitor, Command::SetInterval { ms: 250 }.into())
        .await
        .unwrap();
    // 524 steps: still running
    let (busy, _) = runtime
        .start_session(visitor, set_number("837799"))
        .await
        .unwrap();
    assert!(
        store.get(idle.id()).await.unwrap().is_some(),
        "a changed session is stored"
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(runtime.sessions.expire(Duration::from_secs(60)).await, 0);
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert_eq!(runtime.sessions.expire(Duration::from_secs(60)).await, 1);
    assert!(runtime.session(idle.id()).await.unwrap().is_none());
    assert!(runtime.session(busy.id()).await.unwrap().is_some());
    // Expiry deletes the stored row too: the store does not grow under churn.
    assert_eq!(store.get(idle.id()).await.unwrap(), None);
    assert!(store.get(busy.id()).await.unwrap().is_some());
    runtime.stop().await;
}

/// What a user or the clock can do.
#[derive(Debug, Clone)]
enum Event {
    Command(JobCommand),
    Wait(u64),
}

fn any_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => prop_oneof![
            Just(set_number("27")),
            Just(set_number("7")),
            Just(set_number("1")),
            Just(set_number("abc")),
            Just(set_running(true)),
            Just(set_running(false)),
            Just(Command::SetInterval { ms: 0 }.into()),
            Just(Command::SetInterval { ms: 300 }.into()),
            Just(Command::SetInterval { ms: 500 }.into()),
        ]
        .prop_map(Event::Command),
        2 => (0u64..1200).prop_map(Event::Wait),
    ]
}

/// Plays `events` on one session; checks after each that at most one task
/// lives (exactly one while running), that nothing steps while not running,
/// and that the updates a subscriber reads have strictly growing versions
/// and rebuild the session's state.
async fn play(events: Vec<Event>) -> Result<(), TestCaseError> {
    let runtime = runtime(500);
    let session = runtime.sessions.create().unwrap().session;
    let mut client: Snapshot = session.snapshot().await;
    for event in events {
        match event {
            Event::Command(command) => {
                let _ = runtime.command(&session, command).await;
            }
            Event::Wait(ms) => {
                let before = session.snapshot().await;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                if before.status != Status::Running {
                    prop_assert_eq!(
                        session.snapshot().await,
                        before,
                        "no step while not running"
                    );
                }
            }
        }
        settle().await;
        let now = session.snapshot().await;
        let tasks = runtime.tasks.len();
        if now.status == Status::Running {
            prop_assert_eq!(tasks, 1, "exactly one task while running");
        } else {
            prop_assert_eq!(tasks, 0, "no task while {:?}", now.status);
        }
        let incarnation = session
            .update(|state| state.since(None))
            .await
            .unwrap()
            .0
            .incarnation;
        let last = Some(shared::wire::EventId {
            incarnation,
            cursor: shared::wire::Cursor {
                version: client.version,
                steps: client.run.as_ref().map_or(0, |run| run.steps()),
            },
        });
        if let Some((_, update)) = session.update(|state| state.since(last)).await {
            let version = match update {
                Update::Snapshot(snapshot) => {
                    prop_assert!(snapshot.version > client.version);
                    client = snapshot;
                    client.version
                }
                Update::Delta(delta) => {
                    prop_assert!(delta.version > client.version);
                    client.apply(&delta, 256).unwrap();
                    delta.version
                }
            };
            prop_assert_eq!(version, now.version);
        }
        prop_assert_eq!(&client, &now);
    }
    runtime.stop().await;
    prop_assert_eq!(runtime.tasks.len(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn one_task_no_step_after_off_versions_grow(events in proptest::collection::vec(any_event(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(play(events))?;
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_refuses_the_command_and_changes_nothing() {
    let config = support::config();
    let runtime = Runtime::new(
        &config,
        config.session_settings(),
        support::FaultyStore::full(),
    );
    let session = runtime.sessions.create().unwrap().session;
    let before = session.snapshot().await;
    let error = runtime
        .command(&session, set_number("27"))
        .await
        .unwrap_err();
    assert_eq!(error, shared::wire::CommandError::Unsaved);
    assert!(error.to_string().contains("could not be saved"));
    assert_eq!(
        session.snapshot().await,
        before,
        "memory does not run ahead of the store"
    );
    settle().await;
    assert_eq!(runtime.tasks.len(), 0, "no task for a refused command");
    runtime.stop().await;
}

/// The threads of this process named `name`, with their nice values.
#[cfg(target_os = "linux")]
fn threads_named(name: &str) -> Vec<i64> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|entry| {
            let dir = entry.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            // Field 19 is the nice value; fields count from after the name.
            let nice = stat[stat.rfind(')')? + 2..].split_whitespace().nth(16)?;
            (comm.trim() == name).then(|| nice.parse().unwrap())
        })
        .collect()
}

/// A runtime whose tasks are on threads of their own, as the server's.
fn on_own_threads(interval_ms: u64) -> Arc<Runtime> {
    let mut config = support::config();
    config.collatz.step_interval_ms = interval_ms;
    Runtime::with_tasks_on_own_threads(&config, config.session_settings(), support::store(&config))
        .unwrap()
}

/// Waits until `session` is no longer running.
async fn until_stopped(session: &Session) {
    let mut doorbell = session.subscribe();
    while session.snapshot().await.status == Status::Running {
        doorbell.changed().await.unwrap();
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_server_steps_on_lower_priority_threads_that_shutdown_ends() {
    let runtime = on_own_threads(1);
    // The runtime starts its threads in the background, and each lowers its
    // own priority as it starts.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let threads = threads_named("hailstone-tasks");
        if !threads.is_empty() && threads.iter().all(|&nice| nice == 10) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{threads:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let session = runtime.sessions.create().unwrap().session;
    runtime.command(&session, set_number("27")).await.unwrap();
    until_stopped(&session).await;
    assert_eq!(session.snapshot().await.run.unwrap().steps(), 111);
    runtime.stop().await;
    assert_eq!(threads_named("hailstone-tasks"), Vec::<i64>::new());
}

/// Waits until `session` has taken more than `steps_taken` steps (or
/// stopped running).
async fn past(session: &Session, steps_taken: u64) {
    let mut doorbell = session.subscribe();
    while steps(session).await <= steps_taken && session.snapshot().await.status == Status::Running
    {
        doorbell.changed().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_switching_between_timed_and_fast_keeps_one_task_and_its_values() {
    // On the server's own threads, timed steps are announced by the
    // scheduler at the next tick, fast ones by the task itself: a run
    // whose interval goes back and forth keeps one task, every step is
    // told, and its values stay exact.
    let runtime = on_own_threads(5);
    let session = runtime.sessions.create().unwrap().session;
    // 2^200 - 1: 2,731 steps, too many for interval 0 to finish while
    // the test changes the interval.
    let start = "1606938044258990275541962092341162602522202993782792835301375";
    runtime.command(&session, set_number(start)).await.unwrap();
    let mut last = 0;
    for ms in [0, 5, 0, 5] {
        past(&session, last).await;
        runtime
            .command(&session, Command::SetInterval { ms }.into())
            .await
            .unwrap();
        last = steps(&session).await;
        past(&session, last).await;
        last = steps(&session).await;
        if session.snapshot().await.status == Status::Running {
            assert_eq!(runtime.tasks.len(), 1, "one task at {ms} ms");
        }
    }
    runtime
        .command(&session, Command::SetInterval { ms: 0 }.into())
        .await
        .unwrap();
    until_stopped(&session).await;
    let (mut n, mut expected) = (shared::Number::from_digits(start).unwrap(), 0);
    while !n.is_one() {
        n.step();
        expected += 1;
    }
    assert_eq!(steps(&session).await, expected);
    let run = session.snapshot().await.run.unwrap();
    assert_eq!(
        run.collatz().unwrap().recent.back().map(String::as_str),
        Some("1")
    );
    runtime.stop().await;
    assert_eq!(runtime.tasks.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_shorter_interval_wakes_a_task_sleeping_a_long_one() {
    let runtime = runtime(500);
    let session = runtime.sessions.create().unwrap().session;
    runtime
        .command(&session, Command::SetInterval { ms: 10_000 }.into())
        .await
        .unwrap();
    runtime.command(&session, set_number("27")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(steps(&session).await, 0, "sleeping its 10 s");
    // One second into the 10 s wait the user picks 0.5 s: the next step is
    // due 0.5 s after the last one, which has passed, so it comes at once.
    runtime
        .command(&session, Command::SetInterval { ms: 500 }.into())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(steps(&session).await, 1, "woken by the change");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(steps(&session).await, 3, "then one step every 0.5 s");
    // And as fast as possible from a long interval.
    runtime
        .command(&session, Command::SetInterval { ms: 10_000 }.into())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let before = steps(&session).await;
    runtime
        .command(&session, Command::SetInterval { ms: 0 }.into())
        .await
        .unwrap();
    settle().await;
    assert!(steps(&session).await > before, "interval 0 steps at once");
    runtime.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_run_fails_at_its_step_limit_exactly_and_stays_there() {
    for interval_ms in [0, 10] {
        let mut config = support::config();
        config.collatz.step_interval_ms = interval_ms;
        // 27 takes 111 steps; at interval 0 a batch is 32, so the last
        // batch before the limit is cut short.
        config.sessions.max_steps = 50;
        let runtime = Runtime::new(&config, config.session_settings(), support::store(&config));
        let session = runtime.sessions.create().unwrap().session;
        runtime.command(&session, set_number("27")).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        settle().await;
        let snapshot = session.snapshot().await;
        assert_eq!(
            (snapshot.status, snapshot.failure, steps(&session).await),
            (Status::Failed, Some(Failure::StepLimit), 50),
            "at interval {interval_ms} ms"
        );
        assert_eq!(runtime.tasks.len(), 0, "its task ended");
        // On again: no step past the limit, and it says so again.
        let version = runtime.command(&session, set_running(true)).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        settle().await;
        let again = session.snapshot().await;
        assert!(again.version > version, "it was tried");
        assert_eq!(
            (again.status, again.failure),
            (Status::Failed, Some(Failure::StepLimit))
        );
        assert_eq!(steps(&session).await, 50);
        // A shorter run starts and ends as any run does.
        runtime.command(&session, set_number("6")).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        settle().await;
        assert_eq!(session.snapshot().await.status, Status::Finished);
        assert_eq!(steps(&session).await, 8);
        runtime.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_checkpoint_fails_the_run_with_its_reason_and_that_is_kept() {
    let mut config = support::config();
    config.collatz.step_interval_ms = 10;
    // Room for the command only: the first checkpoint fails.
    let store = support::FaultyStore::new(|before| match before {
        0 => Ok(()),
        _ => Err(support::disk_full()),
    });
    let runtime = Runtime::new(&config, config.session_settings(), store.clone());
    let session = runtime.sessions.create().unwrap().session;
    runtime.command(&session, set_number("27")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle().await;
    let snapshot = session.snapshot().await;
    assert_eq!(
        (snapshot.status, snapshot.failure),
        (Status::Failed, Some(Failure::StoreRefused)),
        "failed, not running, and why"
    );
    // The first checkpoint is due after 32 versions and a second.
    let steps = snapshot.run.unwrap().steps();
    assert!(
        (32..111).contains(&steps),
        "stopped at the failed checkpoint: {steps}"
    );
    assert_eq!(runtime.tasks.len(), 0, "its task ended");
    let kept = store.kept.lock().unwrap().clone();
    assert_eq!(kept.len(), 1, "the failure is kept for a retry");
    assert_eq!(
        (kept[0].status, kept[0].failure),
        (Status::Failed, Some(Failure::StoreRefused))
    );
    assert_eq!(kept[0].run.collatz.steps, steps);
    runtime.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_task_fails_its_run() {
    let mut config = support::config();
    config.collatz.step_interval_ms = 10;
    // The command is stored; the next save (the first checkpoint, made in
    // the task's lock section) panics.
    let store = support::FaultyStore::new(|before| {
        assert!(before == 0, "the disk controller caught fire");
        Ok(())
    });
    let runtime = Runtime::new(&config, config.session_settings(), store.clone());
    let session = runtime.sessions.create().unwrap().session;
    runtime.command(&session, set_number("27")).await.unwrap();
    // The task panics at its first checkpoint, 32 steps in.
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle().await;
    let snapshot = session.snapshot().await;
    assert_eq!(
        (snapshot.status, snapshot.failure),
        (Status::Failed, Some(Failure::Crashed)),
        "the switch is not left on with nothing running"
    );
    assert_eq!(runtime.tasks.len(), 0);
    let kept = store.kept.lock().unwrap().clone();
    assert_eq!(kept.last().map(|saved| saved.status), Some(Status::Failed));
    runtime.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_request_racing_expiry_does_not_bring_the_session_back() {
    let mut config = support::config();
    config.sessions.idle_timeout_secs = 60;
    let store = Arc::new(server::store::MemoryStore::default());
    let runtime = Runtime::new(&config, config.session_settings(), store.clone());
    let (session, _) = runtime
        .start_session(
            std::net::IpAddr::from([127, 0, 0, 1]),
            Command::SetInterval { ms: 250 }.into(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(61)).await;
    // A request found the session just before it expired...
    let found = runtime.session(session.id()).await.unwrap().unwrap();
    // ...(the lookup touched it: a minute later it is idle again)...
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(runtime.sessions.expire(Duration::from_secs(60)).await, 1);
    // ...and its command arrives after: refused, nothing stored again.
    let answer = runtime
        .command(&found, Command::SetInterval { ms: 500 }.into())
        .await;
    assert_eq!(answer, Err(shared::wire::CommandError::Ended));
    assert_eq!(
        store.get(session.id()).await.unwrap(),
        None,
        "no orphan row"
    );
    assert!(runtime.session(session.id()).await.unwrap().is_none());
    runtime.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_run_nobody_watches_is_paused_or_cancelled_after_its_wait_and_a_watched_one_runs_on() {
    use shared::wire::Unwatched;
    let mut config = support::config();
    config.collatz.step_interval_ms = 500;
    config.sessions.unwatched = "pause".into();
    config.sessions.unwatched_minutes = 1;
    let runtime = Runtime::new(&config, config.session_settings(), support::store(&config));
    let lapsing = tokio::spawn(runtime.clone().lapse_unwatched_runs());
    let start = |_| async {
        let session = runtime.sessions.create().unwrap().session;
        runtime
            .command(&session, set_number("837799"))
            .await
            .unwrap();
        runtime.sessions.unpin(&session);
        session
    };
    let (paused, watched, cancelled) = (start(0).await, start(1).await, start(2).await);
    // The default pauses; this one is cancelled instead; this one has a page.
    let policy = Unwatched::Cancel { minutes: 2 };
    runtime
        .command(&cancelled, Command::SetUnwatched { policy }.into())
        .await
        .unwrap();
    watched
        .subscribers()
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Just short of a minute: all still running.
    tokio::time::sleep(Duration::from_secs(55)).await;
    for session in [&paused, &watched, &cancelled] {
        assert_eq!(session.snapshot().await.status, Status::Running);
    }
    // A minute and a check later: the unwatched one with the default paused.
    tokio::time::sleep(Duration::from_secs(11)).await;
    settle().await;
    assert_eq!(paused.snapshot().await.status, Status::Paused);
    assert_eq!(watched.snapshot().await.status, Status::Running);
    assert_eq!(
        cancelled.snapshot().await.status,
        Status::Running,
        "its wait is two minutes"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    settle().await;
    assert_eq!(cancelled.snapshot().await.status, Status::Cancelled);
    assert_eq!(
        watched.snapshot().await.status,
        Status::Running,
        "a page open keeps it running"
    );
    assert_eq!(
        runtime.tasks.len(),
        1,
        "only the watched run's task is left"
    );
    runtime.stop().await;
    lapsing.abort();
}
