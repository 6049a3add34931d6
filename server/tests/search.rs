//! Record searches on the real server: their commands and their refusals,
//! the Searching switch, raising To, the CSV; and a search that survives
//! SIGKILL of its server mid-range, resuming from its last checkpoint with
//! no start lost or counted twice.

mod support;

use std::time::Duration;

use shared::{
    records,
    wire::{Command as UserCommand, Status},
};
use support::{
    search::{csv, expected_csv, search, search_of, searcher, state, until},
    spawned::{place, start_with, wait_ready},
    TestServer,
};

#[tokio::test]
async fn a_search_runs_pauses_goes_on_and_downloads_exactly() {
    let mut config = support::config();
    config.search.stretch = 1000;
    let server = TestServer::start(config).await;
    let (browser, run) = searcher(&server.url("")).await;

    // Bad input is refused with its reason, and nothing changes.
    for (from, to, reason) in [
        ("10", "9", "From must not be above To."),
        ("0", "9", "From: 0 has no Collatz sequence"),
        ("1", "18446744073709551615", "To: Enter a start below"),
        ("1", "1.5", "To: Enter a whole number"),
    ] {
        let (status, body) = search(&browser, &run, from, to).await;
        assert_eq!(status, 422, "{body}");
        let said = serde_json::from_str::<app::api::AppError>(&body).unwrap();
        assert!(said.to_string().starts_with(reason), "{from}…{to}: {said}");
    }
    assert_eq!(state(&browser, &run).await.run, None);

    // A search of [1, 100,000] (digit groups accepted) reaches its end.
    let (status, body) = search(&browser, &run, "1", "100,000").await;
    assert_eq!(status, 200, "{body}");
    let done = until(&browser, &run, Duration::from_secs(60), |s| {
        s.status == Status::Finished
    })
    .await;
    let found = search_of(&done);
    assert_eq!((found.checked, found.steps), (100_000, 100));
    let plain: Vec<_> = records::plain(1, 100_000)
        .iter()
        .map(records::Record::shown)
        .collect();
    assert_eq!(found.records, plain);

    // Raised, it goes on; paused, it takes no step; on again, it finishes.
    search(&browser, &run, "1", "3000000").await;
    let paused = {
        let running = until(&browser, &run, Duration::from_secs(60), |s| {
            search_of(s).checked > 200_000
        })
        .await;
        assert_eq!(running.status, Status::Running);
        browser
            .command_to(&run, UserCommand::SetRunning { running: false })
            .await;
        state(&browser, &run).await
    };
    assert_eq!(paused.status, Status::Paused);
    // No step after "off": stretches in flight finish unseen.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(state(&browser, &run).await, paused);
    let resumed = browser
        .command_to(&run, UserCommand::SetRunning { running: true })
        .await;
    assert_eq!(resumed.0, 200);
    let done = until(&browser, &run, Duration::from_secs(120), |s| {
        s.status == Status::Finished
    })
    .await;
    let found = search_of(&done);
    assert!(found.steps > search_of(&paused).steps);
    assert_eq!(found.checked, 3_000_000);

    assert_eq!(csv(&browser, &run).await, expected_csv(1, 3_000_000));
    // A Collatz run has no records.
    let not_a_search = browser
        .get(&format!("/records.csv?run={}", browser.first_run()))
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_search.status(), 404);
    server.stop().await;
}

/// The server binary on one work thread, 100,000 starts per step.
fn start(addr: std::net::SocketAddr, store: &std::path::Path) -> support::spawned::Server {
    let env = [
        ("HAILSTONE_SEARCH_THREADS", "1"),
        ("HAILSTONE_SEARCH_STRETCH", "100000"),
    ];
    start_with(addr, store, &env)
}

#[tokio::test]
async fn a_killed_server_resumes_its_search_from_the_last_checkpoint_losing_nothing() {
    const TO: u64 = 30_000_000;
    let (_dir, store, addr) = place();
    let base = support::TestServer::url_for(addr);
    let mut server = start(addr, &store);
    wait_ready(addr).await;
    let (browser, run) = searcher(&base).await;
    let (status, body) = search(&browser, &run, "1", &TO.to_string()).await;
    assert_eq!(status, 200, "{body}");
    // Past a checkpoint (one a second) and well short of the end.
    let before = until(&browser, &run, Duration::from_secs(120), |s| {
        search_of(s).checked >= TO / 10
    })
    .await;
    let checked = search_of(&before).checked;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = search_of(&state(&browser, &run).await);
    assert!(before.checked < TO, "the search ended before the kill");

    server.kill().unwrap(); // SIGKILL: no shutdown, no last write
    server.wait().unwrap();
    let _server = start(addr, &store);
    wait_ready(addr).await;

    // It resumes from its last checkpoint, not from the start.
    let resumed = search_of(&state(&browser, &run).await);
    assert!(
        resumed.checked >= checked && resumed.checked <= before.checked,
        "resumed at {} (checked {checked} before, {} at the kill)",
        resumed.checked,
        before.checked
    );
    let done = until(&browser, &run, Duration::from_secs(300), |s| {
        s.status == Status::Finished
    })
    .await;
    assert_eq!(search_of(&done).checked, TO);
    assert_eq!(csv(&browser, &run).await, expected_csv(1, TO));
}
