//! Record searches on the real server: their commands and their refusals,
//! the Searching switch, raising To, the CSV; and a search that survives
//! SIGKILL of its server mid-range, resuming from its last checkpoint with
//! no start lost or counted twice.

mod support;

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;
use shared::{
    job::Snapshot,
    records::{self, Search},
    search::SearchView,
    wire::{Command as UserCommand, Status},
};
use support::{Browser, TestServer};

/// A browser with a session and a run of its own for a search.
async fn searcher(base: &str) -> (Browser, String) {
    let browser = Browser::at(base);
    browser.attach().await;
    let run = browser.new_run().await;
    (browser, run)
}

/// Asks run `run` to search `from`…`to`; the status and the answer.
async fn search(browser: &Browser, run: &str, from: &str, to: &str) -> (u16, String) {
    browser
        .call("search", json!({ "from": from, "to": to, "run": run }))
        .await
}

/// Run `run`'s state now.
async fn state(browser: &Browser, run: &str) -> Snapshot {
    let (status, body) = browser.call("search_state", json!({ "run": run })).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits (up to `within`) until run `run`'s state passes `test`.
async fn until(
    browser: &Browser,
    run: &str,
    within: Duration,
    test: impl Fn(&Snapshot) -> bool,
) -> Snapshot {
    let deadline = Instant::now() + within;
    loop {
        let snapshot = state(browser, run).await;
        if test(&snapshot) {
            return snapshot;
        }
        assert!(Instant::now() < deadline, "not reached: {snapshot:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn search_of(snapshot: &Snapshot) -> SearchView {
    snapshot.run.as_ref().unwrap().search().unwrap().clone()
}

/// The records of `from..=to` as the engine finds them, one stretch after
/// another on this thread (the engine is tested against a plain loop in
/// `shared`).
fn expected_csv(from: u64, to: u64) -> String {
    let mut search = Search::new(from, to).unwrap();
    while let Some((first, last)) = search.next_stretch(1 << 20) {
        search.absorb(&records::scan(from, first, last));
    }
    records::csv(search.records())
}

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
    assert_eq!(found.records, records::plain(1, 100_000));

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

    let csv = browser
        .get(&format!("/records.csv?run={run}"))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert_eq!(csv.text().await.unwrap(), expected_csv(1, 3_000_000));
    // A Collatz run has no records.
    let not_a_search = browser
        .get(&format!("/records.csv?run={}", browser.first_run()))
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_search.status(), 404);
    server.stop().await;
}

/// The server's process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(addr: std::net::SocketAddr, store: &Path) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_server"))
        .current_dir(Path::new(".."))
        .env("LEPTOS_SITE_ADDR", addr.to_string())
        .env("HAILSTONE_STORE_PATH", store)
        .env("HAILSTONE_SEARCH_THREADS", "1")
        .env("HAILSTONE_SEARCH_STRETCH", "100000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Server(child)
}

async fn wait_ready(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("http://{addr}/healthz"))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "server not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_killed_server_resumes_its_search_from_the_last_checkpoint_losing_nothing() {
    const TO: u64 = 30_000_000;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("hailstone.db");
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
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

    server.0.kill().unwrap(); // SIGKILL: no shutdown, no last write
    server.0.wait().unwrap();
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
    let csv = browser
        .get(&format!("/records.csv?run={run}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv, expected_csv(1, TO));
}
