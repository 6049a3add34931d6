//! The whole trajectory over HTTP: pages of values and the CSV download.

mod support;
use serde_json::json;
use shared::wire::{Command, Status};
use support::{trajectory, Browser, TestServer};

/// Asks for a page of values; returns the status and the body.
async fn values(browser: &Browser, from: u64, count: u64) -> (u16, serde_json::Value) {
    let response = browser
        .post("/api/values")
        .header("content-type", "application/json")
        .body(json!({ "from": from, "count": count }).to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap())
}

/// A browser whose run of 27 has reached 1 (111 steps).
async fn finished_run_of_27(server: &TestServer) -> Browser {
    let mut browser = Browser::new(server);
    browser.visit().await;
    browser
        .command(Command::SetNumber { text: "27".into() })
        .await;
    let mut events = browser.events(None).await;
    let mut status = Status::Idle;
    while let Some((_, update)) = events.next().await {
        status = update.status_after(status);
        if status == Status::Finished {
            return browser;
        }
    }
    panic!("the stream ended before the run finished");
}

#[tokio::test]
async fn any_page_of_the_run_is_exact_and_bad_requests_are_4xx() {
    let server = TestServer::with_interval(0).await;
    let browser = finished_run_of_27(&server).await;
    let all = trajectory(27);
    assert_eq!(all.len(), 112);

    // Older than the window and up to the end, cut at the last step.
    for (from, count) in [(0, 10), (37, 50), (100, 100), (111, 1)] {
        let (status, page) = values(&browser, from, count).await;
        assert_eq!(status, 200, "{page}");
        let end = (from + count).min(112) as usize;
        assert_eq!(page["start"], "27");
        assert_eq!(page["from"], from);
        assert_eq!(page["values"], json!(all[from as usize..end]));
    }

    // A step past the end, and pages of no or too many values.
    let (status, error) = values(&browser, 112, 1).await;
    assert_eq!(status, 404);
    assert_eq!(
        error["Values"],
        json!({ "error": "beyond", "from": 112, "steps": 111 })
    );
    for count in [0, 1001, u64::MAX] {
        let (status, error) = values(&browser, 0, count).await;
        assert_eq!(status, 400, "count {count}: {error}");
        assert_eq!(error["Values"], json!({ "error": "count", "max": 1000 }));
    }

    // A visitor without a session has no run.
    let stranger = Browser::new(&server);
    let (status, error) = values(&stranger, 0, 1).await;
    assert_eq!(status, 404);
    assert_eq!(error["Values"], json!({ "error": "no_run" }));
    server.stop().await;
}

#[tokio::test]
async fn the_download_is_every_step_as_csv() {
    let server = TestServer::with_interval(0).await;
    let browser = finished_run_of_27(&server).await;
    let response = browser.get("/trajectory.csv").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"hailstone-27.csv\""
    );
    let body = response.text().await.unwrap();
    let mut expected = String::from("step,value\n");
    for (step, value) in trajectory(27).iter().enumerate() {
        expected.push_str(&format!("{step},{value}\n"));
    }
    assert_eq!(body, expected);

    let stranger = Browser::new(&server);
    let response = stranger.get("/trajectory.csv").send().await.unwrap();
    assert_eq!(response.status(), 404);
    server.stop().await;
}
