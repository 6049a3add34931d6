//! Many runs per session, over HTTP as a page uses them: "New run" beside
//! the others, each run stepped by its own task and changed alone, the
//! caps, removal, the list every page is sent, and a restart that brings
//! every run back as it was.

mod support;

use std::time::Duration;

use serde_json::json;
use shared::wire::{Command, Runs, Status};
use support::{Browser, TestServer};

fn set_number(text: &str) -> Command {
    Command::SetNumber { text: text.into() }
}

/// What a refusal says to the user.
fn said(body: &str) -> String {
    serde_json::from_str::<app::api::AppError>(body)
        .unwrap()
        .to_string()
}

/// The first snapshot run `run`'s stream sends, and the list after it.
async fn look(browser: &Browser, run: &str) -> (shared::wire::Snapshot, Runs) {
    let mut events = browser.events_of(run).await;
    (events.snapshot().await, events.next_runs().await)
}

/// A session with its first run at 27, running.
async fn session(server: &TestServer) -> (Browser, String) {
    let browser = Browser::new(server);
    browser.command(set_number("27")).await;
    let first = browser.first_run();
    (browser, first)
}

#[tokio::test]
async fn two_runs_of_one_session_step_alone_and_change_alone() {
    let server = TestServer::with_interval(20).await;
    let (browser, first) = session(&server).await;
    let second = browser.new_run().await;
    assert_ne!(second, first);
    let (snapshot, runs) = look(&browser, &second).await;
    assert_eq!(
        snapshot.status,
        Status::Idle,
        "a new run waits for its number"
    );
    assert_eq!(runs.selected, second);
    let ids: Vec<_> = runs.runs.iter().map(|run| run.id.clone()).collect();
    assert_eq!(ids, [second.clone(), first.clone()], "newest first");

    let (status, body) = browser.command_to(&second, set_number("7")).await;
    assert_eq!(status, 200, "{body}");
    // Pausing the first leaves the second running, and the other way round.
    let (status, _) = browser
        .command_to(&first, Command::SetRunning { running: false })
        .await;
    assert_eq!(status, 200);
    let (paused, _) = look(&browser, &first).await;
    assert_eq!(paused.status, Status::Paused);
    assert_eq!(paused.run.as_ref().unwrap().start, "27");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (still, _) = look(&browser, &first).await;
    assert_eq!(still.run, paused.run, "a paused run does not step");
    let (other, runs) = look(&browser, &second).await;
    let other_run = other.run.unwrap();
    assert_eq!(other_run.start, "7");
    assert!(other_run.steps > 0, "the second runs on");
    let listed = |id: &str| runs.runs.iter().find(|run| run.id == id).unwrap().clone();
    assert_eq!(listed(&first).status, Status::Paused);
    assert_eq!(listed(&first).run.unwrap().start, "27");
    assert_eq!(listed(&second).run.unwrap().start, "7");
    server.stop().await;
}

#[tokio::test]
async fn over_a_cap_new_run_is_refused_with_a_reason_and_nothing_changes() {
    let mut config = support::config();
    config.sessions.live_runs = 2;
    config.sessions.kept_runs = 3;
    let server = TestServer::start(config).await;
    let (browser, first) = session(&server).await;
    let second = browser.new_run().await;
    let (status, body) = browser.call("new_run", json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert!(said(&body).contains("2 runs that have not ended"), "{body}");
    // An ended run no longer counts as live, but still as kept.
    browser.command_to(&first, Command::Cancel).await;
    let third = browser.new_run().await;
    let (status, body) = browser.call("new_run", json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert!(said(&body).contains("at most 3 runs"), "{body}");
    let (_, runs) = look(&browser, &third).await;
    assert_eq!(runs.runs.len(), 3);
    // Removing one makes room.
    let (status, body) = browser.call("remove_run", json!({ "run": second })).await;
    assert_eq!(status, 200, "{body}");
    browser.new_run().await;
    server.stop().await;
}

#[tokio::test]
async fn the_page_of_a_sessions_only_run_hears_at_once_of_a_run_added_or_removed() {
    let server = TestServer::with_interval(20).await;
    let (browser, first) = session(&server).await;
    let mut page = browser.events_of(&first).await;
    page.snapshot().await;
    let alone = page.next_runs().await;
    assert_eq!(alone.runs.len(), 1);
    // Its list is not looked at every second (a session of one run is
    // read again when its roster rings, else after a minute): the run
    // added in another tab must ring it, well inside `next_runs`' wait.
    let second = browser.new_run().await;
    let two = page.next_runs().await;
    let ids: Vec<_> = two.runs.iter().map(|run| run.id.clone()).collect();
    assert_eq!(ids, [second.clone(), first.clone()]);
    let (status, body) = browser.call("remove_run", json!({ "run": second })).await;
    assert_eq!(status, 200, "{body}");
    let one = page.next_runs().await;
    assert_eq!(one.runs.len(), 1);
    assert_eq!(one.selected, first);
    server.stop().await;
}

#[tokio::test]
async fn a_removed_run_is_gone_and_its_page_follows_another() {
    let server = TestServer::with_interval(20).await;
    let (browser, first) = session(&server).await;
    let second = browser.new_run().await;
    browser.command_to(&second, set_number("9")).await;
    let mut watching = browser.events_of(&second).await;
    watching.next().await.unwrap();
    let (status, body) = browser.call("remove_run", json!({ "run": second })).await;
    assert_eq!(status, 200, "{body}");
    // The page that showed it is sent the session's other run instead.
    let runs = loop {
        let runs = watching.next_runs().await;
        if runs.selected == first {
            break runs;
        }
    };
    let ids: Vec<_> = runs.runs.iter().map(|run| run.id.clone()).collect();
    assert_eq!(ids, std::slice::from_ref(&first));
    let (status, body) = browser
        .command_to(&second, Command::SetRunning { running: true })
        .await;
    assert_eq!(status, 404, "a removed run takes no command: {body}");
    assert!(said(&body).contains("That run is gone"), "{body}");
    // No other session's run can be named.
    let (stranger, _) = session(&server).await;
    let (status, _) = stranger.command_to(&first, Command::Cancel).await;
    assert_eq!(status, 404);
    let (status, _) = stranger.call("remove_run", json!({ "run": first })).await;
    assert_eq!(status, 404);
    let (mine, _) = look(&browser, &first).await;
    assert_eq!(mine.status, Status::Running, "the stranger changed nothing");
    server.stop().await;
}

#[tokio::test]
async fn every_run_of_a_session_comes_back_after_a_restart_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config();
    config.store.path = dir.path().join("runs.db");
    config.collatz.step_interval_ms = 20;
    let server = TestServer::start(config.clone()).await;
    let (browser, first) = session(&server).await;
    let paused = browser.new_run().await;
    let asked = unix_now();
    browser.command_to(&paused, set_number("97")).await;
    let answered = unix_now();
    browser
        .command_to(&paused, Command::SetRunning { running: false })
        .await;
    let empty = browser.new_run().await;
    let (before, _) = look(&browser, &paused).await;
    let started = before.started_at.expect("a begun run says when it began");
    assert!(
        (asked..=answered).contains(&started),
        "stamped when its number came"
    );
    server.stop().await;

    let server = TestServer::start(config).await;
    let browser = Browser::new(&server);
    browser.set_cookie(format!("{}={first}", server::http::SESSION_COOKIE));
    let (_, runs) = look(&browser, &first).await;
    let ids: Vec<_> = runs.runs.iter().map(|run| run.id.clone()).collect();
    assert_eq!(ids, [empty.clone(), paused.clone(), first.clone()]);
    let status = |id: &str| runs.runs.iter().find(|run| run.id == id).unwrap().status;
    assert_eq!(status(&first), Status::Running);
    assert_eq!(status(&paused), Status::Paused);
    assert_eq!(status(&empty), Status::Idle);
    let listed = |id: &str| runs.runs.iter().find(|run| run.id == id).unwrap();
    assert_eq!(listed(&paused).started_at, Some(started));
    assert_eq!(listed(&empty).started_at, None, "not begun");
    let (after, _) = look(&browser, &paused).await;
    assert_eq!(after.run, before.run, "the paused run is exactly as it was");
    assert_eq!(after.started_at, Some(started), "and began when it did");
    server.stop().await;
}

/// Now, in Unix seconds.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
