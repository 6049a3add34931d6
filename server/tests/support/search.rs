//! A record search through a server's functions, as the page asks for one.

use std::time::{Duration, Instant};

use serde_json::json;
use shared::{job::Snapshot, records, search::SearchView};

use super::Browser;

/// A browser at `base` with a session and a run of its own for a search.
pub async fn searcher(base: &str) -> (Browser, String) {
    let browser = Browser::at(base);
    browser.attach().await;
    let run = browser.new_run().await;
    (browser, run)
}

/// Asks run `run` to search `from`…`to`; the status and the answer.
pub async fn search(browser: &Browser, run: &str, from: &str, to: &str) -> (u16, String) {
    browser
        .call("search", json!({ "from": from, "to": to, "run": run }))
        .await
}

/// Run `run`'s state now.
pub async fn state(browser: &Browser, run: &str) -> Snapshot {
    let (status, body) = browser.call("search_state", json!({ "run": run })).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits (up to `within`) until run `run`'s state passes `test`.
pub async fn until(
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

/// The search a state shows.
pub fn search_of(snapshot: &Snapshot) -> SearchView {
    snapshot.run.as_ref().unwrap().search().unwrap().clone()
}

/// Starts checked so far (0 before the search is known).
pub fn checked(snapshot: &Snapshot) -> u64 {
    snapshot
        .run
        .as_ref()
        .and_then(|run| run.search())
        .map_or(0, |search| search.checked)
}

/// Run `run`'s records as the server downloads them.
pub async fn csv(browser: &Browser, run: &str) -> String {
    let response = browser.get_ok(&format!("/records.csv?run={run}")).await;
    response.text().await.unwrap()
}

/// The records of `from..=to` as the engine finds them on this thread (the
/// engine is tested against a plain loop in `shared`), as CSV.
pub fn expected_csv(from: u64, to: u64) -> String {
    records::csv(&records::find(from, to, 1 << 20))
}
