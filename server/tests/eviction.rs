//! Who gives way at the session cap, and what a first command leaves
//! behind: a session answered 200 exists (and runs, if it was told to); a
//! run touched less than the idle timeout ago is never evicted, right after
//! a start as at any other time; a refused first command makes no session;
//! refusals that pass say when to try again.

mod support;

use std::sync::Arc;

use serde_json::json;
use shared::wire::{Command, Status, Update};
use support::{Browser, TestServer};

fn set_number(text: &str) -> Command {
    Command::SetNumber { text: text.into() }
}

/// A first command without a cookie: the status, the session cookie it
/// set (if any), its `Retry-After` (if any) and its body.
async fn first_command(
    server: &TestServer,
    command: &Command,
) -> (u16, Option<String>, Option<u64>, String) {
    let response = reqwest::Client::new()
        .post(server.url("/api/command"))
        .header("content-type", "application/json")
        .body(json!({ "command": command }).to_string())
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let cookie = header("set-cookie").map(|c| c.split(';').next().unwrap().to_owned());
    let retry_after = header("retry-after").map(|s| s.parse().unwrap());
    let status = response.status().as_u16();
    (status, cookie, retry_after, response.text().await.unwrap())
}

/// The session's state as its stream's first event says.
async fn state_of(browser: &Browser) -> shared::wire::Snapshot {
    let (id, update) = browser.events(None).await.next().await.unwrap();
    assert_ne!(id.incarnation, 0, "a session, not a visitor's idle page");
    match update {
        Update::Snapshot(snapshot) => snapshot,
        Update::Delta(_) => panic!("a stream starts with a snapshot"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_commands_racing_at_the_cap_each_answered_200_exist_and_run() {
    let mut config = support::config();
    config.sessions.max = 30;
    config.sessions.new_per_minute = 100_000;
    config.collatz.step_interval_ms = 10_000;
    let server = Arc::new(TestServer::start(config).await);
    // Ten sessions that may give way: nothing running, no page open.
    for _ in 0..10 {
        let (status, ..) = first_command(&server, &Command::SetInterval { ms: 9000 }).await;
        assert_eq!(status, 200);
    }
    // 140 visitors' first commands at once, each starting a run.
    let racing: Vec<_> = (0..140)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move { first_command(&server, &set_number("27")).await })
        })
        .collect();
    let mut admitted = Vec::new();
    for answer in racing {
        let (status, cookie, retry_after, body) = answer.await.unwrap();
        match status {
            200 => admitted.push(cookie.expect("a session answered 200 sets its cookie")),
            503 => {
                let error: app::api::AppError = serde_json::from_str(&body).unwrap();
                assert_eq!(error, app::api::AppError::AtCapacity);
                assert_eq!(cookie, None, "a refused first command sets no cookie");
                assert!(retry_after.is_some(), "a 503 says when to try again");
            }
            other => panic!("{other}: {body}"),
        }
    }
    // The ten idle ones gave way, and then nothing could: exactly the cap.
    assert_eq!(admitted.len(), 30);
    // Every session answered 200 exists and runs: its next command is
    // applied to it (no new cookie), and its state is the run it started.
    for cookie in admitted {
        let browser = Browser::new(&server);
        browser.set_cookie(cookie.clone());
        let snapshot = state_of(&browser).await;
        assert_eq!(snapshot.status, Status::Running);
        assert_eq!(snapshot.run.unwrap().start, "27");
        browser.command(Command::SetInterval { ms: 5000 }).await;
        assert_eq!(browser.cookie(), Some(cookie), "the same session");
    }
    let metrics = support::metrics(&server).await;
    assert_eq!(
        server::metrics::value_in(&metrics, "hailstone_sessions"),
        Some(30.0)
    );
    assert_eq!(
        server::metrics::value_in(&metrics, "hailstone_sessions_evicted_total"),
        Some(10.0)
    );
    Arc::into_inner(server).unwrap().stop().await;
}

#[tokio::test]
async fn right_after_a_start_a_run_touched_is_never_evicted() {
    let mut config = support::config();
    config.sessions.max = 1;
    config.collatz.step_interval_ms = 10_000;
    let server = TestServer::start(config).await;
    // A run nobody watches, touched just now, in the server's first second.
    let runner = Browser::new(&server);
    runner.command(set_number("27")).await;
    let cookie = runner.cookie();
    // Nothing may give way for the next visitor.
    let (status, new_cookie, retry_after, body) = first_command(&server, &set_number("7")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(new_cookie, None);
    assert!(retry_after.is_some());
    // The run is still there, running.
    let snapshot = state_of(&runner).await;
    assert_eq!(snapshot.status, Status::Running);
    runner.command(Command::SetInterval { ms: 9000 }).await;
    assert_eq!(runner.cookie(), cookie, "the same session");
    server.stop().await;
}

#[tokio::test]
async fn a_run_resumed_after_a_restart_is_not_evicted_in_the_first_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config();
    config.store.path = dir.path().join("hailstone.db");
    config.sessions.max = 1;
    config.collatz.step_interval_ms = 10_000;
    let server = TestServer::start(config.clone()).await;
    let before = Browser::new(&server);
    before.command(set_number("27")).await;
    let cookie = before.cookie().unwrap();
    server.stop().await;
    // Started again: the run is stored, running, and resumed in the
    // background while the server already answers.
    let server = TestServer::start(config).await;
    let (status, new_cookie, _, body) = first_command(&server, &set_number("7")).await;
    assert_eq!(status, 503, "the resumed run does not give way: {body}");
    assert_eq!(new_cookie, None);
    let runner = Browser::new(&server);
    runner.set_cookie(cookie);
    let snapshot = state_of(&runner).await;
    assert_eq!(snapshot.status, Status::Running);
    assert_eq!(snapshot.run.unwrap().start, "27");
    server.stop().await;
}

#[tokio::test]
async fn refused_first_commands_make_no_session_and_say_when_to_try_again() {
    let mut config = support::config();
    config.sessions.new_per_minute = 2;
    let server = TestServer::start(config).await;
    // Refused input: 422, no cookie, no session.
    let (status, cookie, _, _) = first_command(&server, &set_number("abc")).await;
    assert_eq!((status, cookie), (422, None));
    let (status, cookie, _, _) = first_command(&server, &Command::SetInterval { ms: 99_999 }).await;
    assert_eq!((status, cookie), (422, None));
    let metrics = support::metrics(&server).await;
    assert_eq!(
        server::metrics::value_in(&metrics, "hailstone_sessions"),
        Some(0.0)
    );
    // Refused input did not count against the rate: two may start.
    for _ in 0..2 {
        assert_eq!(first_command(&server, &set_number("27")).await.0, 200);
    }
    let (status, cookie, retry_after, _) = first_command(&server, &set_number("27")).await;
    assert_eq!((status, cookie), (429, None));
    let wait = retry_after.expect("a 429 says when to try again");
    assert!((1..=60).contains(&wait), "{wait}");
    server.stop().await;

    // A store that refuses every write: 503, and nothing half-made.
    let server = TestServer::start_with(support::config(), support::FaultyStore::full()).await;
    let (status, cookie, retry_after, _) = first_command(&server, &set_number("27")).await;
    assert_eq!((status, cookie), (503, None));
    assert!(retry_after.is_some());
    let metrics = support::metrics(&server).await;
    assert_eq!(
        server::metrics::value_in(&metrics, "hailstone_sessions"),
        Some(0.0)
    );
    server.stop().await;
}

#[tokio::test]
async fn a_new_session_never_gives_way_before_its_first_command_is_answered() {
    let mut config = support::config();
    config.sessions.max = 1;
    let runtime =
        server::Hailstone::new(&config, config.session_settings(), support::store(&config));
    // Made, its first command not applied yet: idle, unwatched, untouched
    // since, yet it is not a candidate.
    let first = runtime.sessions.create().unwrap();
    assert!(
        runtime.sessions.create().is_err(),
        "pinned: none may give way"
    );
    // Answered: now it may, being idle and unwatched.
    runtime.sessions.unpin(&first.session);
    let second = runtime.sessions.create().unwrap();
    let evicted = second.evicted.expect("the first gave way");
    assert_eq!(evicted.id, first.session.id());
    runtime.stop().await;
}
