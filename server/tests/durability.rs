//! A restart loses nothing: the real server binary is killed with SIGKILL
//! mid-run and started again on the same store.

mod support;

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use shared::wire::{Command as UserCommand, Cursor, EventId, Status, Update};
use support::{
    spawned::{place, start_with, wait_ready, Server},
    trajectory, Browser,
};

/// The server binary on `addr` and `store`, stepping every 50 ms.
fn start(addr: SocketAddr, store: &Path) -> Server {
    start_with(addr, store, &[("HAILSTONE_STEP_INTERVAL_MS", "50")])
}

/// Held by each test for its whole run: the tests pick a free port by
/// binding port 0 and releasing it for the server, so two at once could be
/// handed the same port and talk to each other's server.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs the server binary on `store` until it exits by itself (it must
/// refuse to start).
fn run_to_exit(store: &Path) -> std::process::Output {
    let (_, _, addr) = place();
    Command::new(env!("CARGO_BIN_EXE_server"))
        .current_dir(Path::new(".."))
        .env("LEPTOS_SITE_ADDR", addr.to_string())
        .env("HAILSTONE_STORE_PATH", store)
        .output()
        .unwrap()
}

/// Records values by step index; a value seen twice must agree.
fn record(seen: &mut BTreeMap<u64, String>, first_step: u64, values: &[String]) {
    for (offset, value) in values.iter().enumerate() {
        let step = first_step + offset as u64;
        if let Some(old) = seen.insert(step, value.clone()) {
            assert_eq!(&old, value, "step {step} changed after the restart");
        }
    }
}

#[tokio::test]
async fn a_killed_server_comes_back_with_every_session_and_its_task() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (_dir, store, addr) = place();
    let mut server = start(addr, &store);
    wait_ready(addr).await;

    let base = support::TestServer::url_for(addr);
    let mut browser = Browser::at(&base);
    browser.visit().await;
    browser.attach().await;
    let mut idle = Browser::at(&base);
    idle.visit().await;
    idle.command(UserCommand::SetInterval { ms: 250 }).await;

    let mut events = browser.events(None).await;
    browser
        .command(UserCommand::SetNumber { text: "27".into() })
        .await;
    let mut seen = BTreeMap::new();
    let mut last_version = EventId {
        incarnation: 0,
        cursor: Cursor {
            version: 0,
            steps: 0,
        },
    };
    while seen.len() < 40 {
        let (id, update) = events.next().await.unwrap();
        if let Update::Delta(delta) = update {
            record(
                &mut seen,
                delta.change.steps + 1 - delta.change.appended.len() as u64,
                &delta.change.appended,
            );
        }
        last_version = id;
    }

    server.kill().unwrap(); // SIGKILL: no shutdown, no last write
    server.wait().unwrap();
    let mut server = start(addr, &store);
    wait_ready(addr).await;

    // The open page's stream resumes by itself. Its Last-Event-ID names a
    // version of the old process, below every version of the new one, so it
    // is given the whole run again (a snapshot, or a delta that restarts the
    // list), never an older version.
    let mut events = browser.events(Some(last_version)).await;
    let (id, update) = events.next().await.unwrap();
    assert!(
        id.cursor.version > last_version.cursor.version,
        "versions never go backwards: {id} after {last_version}"
    );
    let (mut status, steps, first_step, values) = match update {
        Update::Snapshot(snapshot) => {
            let run = snapshot.run.unwrap();
            let first = run.first_recent_step();
            (snapshot.status, run.steps, first, Vec::from(run.recent))
        }
        Update::Delta(delta) => {
            assert!(delta.restart, "the list starts again");
            let status = delta
                .status
                .expect("a resumed stream's delta names the status");
            (status, delta.change.steps, 0, delta.change.appended)
        }
    };
    assert_eq!(status, Status::Running, "the run resumed");
    assert!(
        steps + 1 + 32 >= seen.len() as u64,
        "at most a checkpoint's worth is redone"
    );
    record(&mut seen, first_step, &values);
    while status == Status::Running {
        let Some((_, Update::Delta(delta))) = events.next().await else {
            panic!("deltas follow")
        };
        assert!(!delta.restart);
        record(
            &mut seen,
            delta.change.steps + 1 - delta.change.appended.len() as u64,
            &delta.change.appended,
        );
        status = delta.status.unwrap_or(status);
    }
    assert_eq!(status, Status::Finished);
    assert_eq!(
        seen.into_values().collect::<Vec<_>>(),
        trajectory(27),
        "no gap, no duplicate"
    );

    // The other session is back too, with its own settings.
    let (_, update) = idle.events(None).await.next().await.unwrap();
    let Update::Snapshot(other) = update else {
        panic!()
    };
    assert_eq!(other.interval_ms, 250);
    assert_eq!(other.run, None);

    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test]
async fn a_damaged_store_stops_the_start_with_its_name() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("hailstone.db");
    std::fs::write(&store, b"not a database at all".repeat(200)).unwrap();
    let output = run_to_exit(&store);
    assert!(!output.status.success());
    let log = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(log.contains(&store.display().to_string()), "{log}");
    assert_eq!(
        std::fs::read(&store).unwrap(),
        b"not a database at all".repeat(200)
    );
}

/// Reads `count` events; returns the last id and the highest version seen.
async fn read_events(events: &mut support::Events, count: usize) -> (EventId, u64) {
    let mut last = None;
    let mut highest = 0;
    for _ in 0..count {
        let (id, _) = events.next().await.expect("the stream goes on");
        highest = highest.max(id.cursor.version);
        last = Some(id);
    }
    (last.unwrap(), highest)
}

#[tokio::test]
async fn versions_never_go_backwards_across_two_quick_crashes() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (_dir, store, addr) = place();
    let mut server = start(addr, &store);
    wait_ready(addr).await;
    let mut browser = Browser::at(&support::TestServer::url_for(addr));
    browser.visit().await;
    // 524 steps at 50 ms: running through every crash below.
    browser
        .command(UserCommand::SetNumber {
            text: "837799".into(),
        })
        .await;
    let mut events = browser.events(None).await;
    let (mut last, mut highest) = read_events(&mut events, 6).await;
    let mut incarnations = vec![last.incarnation];
    for crash in 1..=2 {
        server.kill().unwrap(); // SIGKILL
        server.wait().unwrap();
        server = start(addr, &store);
        wait_ready(addr).await;
        let mut events = browser.events(Some(last)).await;
        let (first, _) = events.next().await.unwrap();
        assert!(
            first.cursor.version > highest,
            "crash {crash}: {first} after {highest} was published"
        );
        assert!(
            !incarnations.contains(&first.incarnation),
            "crash {crash}: a new incarnation"
        );
        incarnations.push(first.incarnation);
        // Fewer steps than a checkpoint's worth, then the next crash: only
        // what the rebuild itself stored protects the versions published.
        (last, highest) = read_events(&mut events, 10).await;
    }
}

#[tokio::test]
async fn stored_sessions_are_rebuilt_when_asked_for_and_running_ones_resume() {
    let _one = ONE_AT_A_TIME.lock().await;
    use server::store::{SqliteStore, Store};
    use shared::{Collatz, Settings};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hailstone.db");
    // 300 sessions paused mid-way through a 1,000-digit run, 30 running one.
    let settings = Settings::default();
    let mut machine = Collatz::new(settings);
    let generation = machine
        .apply(&UserCommand::SetNumber {
            text: "7".repeat(1000),
        })
        .unwrap()
        .start_task
        .unwrap();
    for _ in 0..2000 {
        machine.step(generation).unwrap();
    }
    let running = machine.saved();
    machine
        .apply(&UserCommand::SetRunning { running: false })
        .unwrap();
    let paused = machine.saved();
    let ids: Vec<_> = (0..330).map(|_| server::session::RunId::random()).collect();
    {
        let store = SqliteStore::open(&path).unwrap();
        for (i, id) in ids.iter().enumerate() {
            let saved = if i < 30 { &running } else { &paused };
            drop(store.save(*id, saved.clone()));
        }
        store.index().await.unwrap(); // served after every save
    }
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let token = "durability";
    let _server = start_with(addr, &path, &[("HAILSTONE_METRICS_TOKEN", token)]);
    wait_ready(addr).await;
    let metric = |name: &'static str| async move {
        support::metric_at(&format!("http://{addr}"), token, name).await as u64
    };
    // Every running session comes back with its task; the paused ones are
    // left in the store.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric("hailstone_running_tasks").await < 30 {
        assert!(Instant::now() < deadline, "running sessions resumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metric("hailstone_sessions_rebuilt_total").await, 30);
    assert_eq!(metric("hailstone_sessions").await, 330);
    // A paused one is rebuilt when its page asks, exactly as it was.
    let browser = Browser::at(&support::TestServer::url_for(addr));
    browser.set_cookie(format!("hailstone_session={}", ids[100]));
    let (_, update) = browser.events(None).await.next().await.unwrap();
    let Update::Snapshot(snapshot) = update else {
        panic!("a snapshot first")
    };
    assert_eq!(snapshot.status, Status::Paused);
    let mut expected = machine.snapshot();
    expected.version = snapshot.version;
    assert_eq!(snapshot, expected);
    assert!(snapshot.version > paused.version);
    assert_eq!(metric("hailstone_sessions_rebuilt_total").await, 31);
}

#[tokio::test]
async fn a_store_that_cannot_be_written_stops_the_start_with_the_reason() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("hailstone.db");
    drop(server::store::SqliteStore::<shared::job::SavedJob>::open(&store).unwrap());
    // Immutable: not even root may write it (the test may run as root).
    let chattr = |flag: &str| {
        let status = Command::new("chattr")
            .arg(flag)
            .arg(&store)
            .status()
            .unwrap();
        assert!(status.success(), "chattr {flag}");
    };
    chattr("+i");
    let output = run_to_exit(&store);
    chattr("-i");
    assert!(!output.status.success(), "it refuses to start");
    let log = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(log.contains("cannot be written"), "{log}");
    assert!(log.contains(&store.display().to_string()), "{log}");
    assert!(!log.contains("damaged"), "{log}");
}

#[tokio::test]
async fn a_kill_at_interval_zero_loses_and_changes_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (_dir, store, addr) = place();
    let mut server = start(addr, &store);
    wait_ready(addr).await;
    let browser = Browser::at(&support::TestServer::url_for(addr));
    browser.command(UserCommand::SetInterval { ms: 0 }).await;
    // A 300-digit start: thousands of steps, stepped as fast as possible.
    let digits = "9".repeat(300);
    browser
        .command(UserCommand::SetNumber {
            text: digits.clone(),
        })
        .await;
    let mut events = browser.events(None).await;
    let mut seen = BTreeMap::new();
    let mut last = None;
    let mut highest = 0;
    for _ in 0..3 {
        let (id, update) = events.next().await.unwrap();
        collect(&mut seen, &update);
        highest = highest.max(id.cursor.version);
        last = Some(id);
    }
    server.kill().unwrap(); // SIGKILL mid-run, between checkpoints
    server.wait().unwrap();
    let _server = start(addr, &store);
    wait_ready(addr).await;
    let mut events = browser.events(last).await;
    let mut status = Status::Running;
    let mut first = true;
    while status == Status::Running {
        let (id, update) = events.next().await.expect("the run goes on");
        if first {
            assert!(id.cursor.version > highest, "{id} after {highest}");
            first = false;
        }
        status = update.status_after(status);
        collect(&mut seen, &update);
    }
    assert_eq!(status, Status::Finished);
    // Every value seen, before and after the kill, is the trajectory's.
    let mut number = shared::Number::from_digits(&digits).unwrap();
    let mut step = 0;
    while !number.is_one() {
        if let Some(value) = seen.get(&step) {
            assert_eq!(value, &number.to_string(), "step {step}");
        }
        number.step();
        step += 1;
    }
    assert_eq!(
        seen.get(&step).map(String::as_str),
        Some("1"),
        "it reached 1 at {step}"
    );
}

/// Records the values an update carries, by step.
fn collect(seen: &mut BTreeMap<u64, String>, update: &Update) {
    match update {
        Update::Snapshot(snapshot) => {
            if let Some(run) = &snapshot.run {
                let values: Vec<String> = run.recent.iter().cloned().collect();
                record(seen, run.first_recent_step(), &values);
            }
        }
        Update::Delta(delta) => {
            if delta.restart {
                seen.clear();
            }
            record(
                seen,
                delta.change.steps + 1 - delta.change.appended.len() as u64,
                &delta.change.appended,
            );
        }
    }
}

#[tokio::test]
async fn a_killed_server_comes_back_with_every_run_of_a_session_as_it_was() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (_dir, store, addr) = place();
    let mut server = start(addr, &store);
    wait_ready(addr).await;
    let browser = Browser::at(&support::TestServer::url_for(addr));
    browser
        .command(UserCommand::SetNumber { text: "27".into() })
        .await;
    let first = browser.first_run();
    let paused = browser.new_run().await;
    let set = |text: &str| UserCommand::SetNumber { text: text.into() };
    browser.command_to(&paused, set("97")).await;
    browser
        .command_to(&paused, UserCommand::SetRunning { running: false })
        .await;
    let other = browser.new_run().await;
    browser.command_to(&other, set("871")).await;
    let before_paused = browser.events_of(&paused).await.snapshot().await;
    let mut events = browser.events_of(&other).await;
    read_events(&mut events, 3).await;
    drop(events);

    server.kill().unwrap(); // SIGKILL: no shutdown, no last write
    server.wait().unwrap();
    let _server = start(addr, &store);
    wait_ready(addr).await;

    // Both running runs resume on their own, each from its own start.
    for (run, start, steps) in [(&first, "27", 111), (&other, "871", 178)] {
        let snapshot = browser.events_of(run).await.snapshot().await;
        assert_eq!(snapshot.run.as_ref().unwrap().start, start);
        assert!(matches!(
            snapshot.status,
            Status::Running | Status::Finished
        ));
        let mut events = browser.events_of(run).await;
        let (_, finished) = loop {
            let (id, update) = events.next().await.unwrap();
            let done = match &update {
                Update::Snapshot(s) => s.status == Status::Finished,
                Update::Delta(d) => d.status == Some(Status::Finished),
            };
            if done {
                break (id, update);
            }
        };
        assert_eq!(
            finished.cursor().steps,
            steps,
            "{start} reaches 1 in {steps} steps"
        );
    }
    // The paused one is exactly as it was.
    let after = browser.events_of(&paused).await.snapshot().await;
    assert_eq!(after.status, Status::Paused);
    assert_eq!(after.run, before_paused.run);
}
