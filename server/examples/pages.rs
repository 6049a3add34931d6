//! Page-of-values benchmark (run by `scripts/bench.sh pages`).
//!
//! Starts the release server, runs 1,000 nines (30,578 steps of numbers up
//! to 1,000 digits) to 1 at interval 0, then times `POST /api/values` for a
//! page of 100 values: the first request (the run's marks are made), then
//! `--requests` at step 30,000, then `--requests` at random steps.
//!
//! ```text
//! cargo run --release -p server --example pages -- --server target/release/server [--requests 1000]
//! ```

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use rand::Rng;
use serde_json::json;

#[tokio::main]
async fn main() {
    let mut server = std::path::PathBuf::from("target/release/server");
    let mut requests = 1000usize;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--server" => server = value.into(),
            "--requests" => requests = value.parse().expect("--requests: a number"),
            other => panic!("unknown flag {other}"),
        }
    }
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = Command::new(&server)
        .env("LEPTOS_SITE_ADDR", addr.to_string())
        .env("HAILSTONE_STORE_PATH", ":memory:")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let started = Instant::now();
    while !http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(started.elapsed() < Duration::from_secs(60), "no /healthz");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The first command starts the session and sets its cookie.
    let post = |path: &str, body: serde_json::Value, cookie: Option<&str>| {
        let mut request = http
            .post(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };
    let first = post(
        "/api/command",
        json!({ "command": { "type": "set_interval", "ms": 0 } }),
        None,
    )
    .await
    .unwrap();
    let cookie = first.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let start = "9".repeat(1000);
    let answer = post(
        "/api/command",
        json!({ "command": { "type": "set_number", "text": start } }),
        Some(&cookie),
    )
    .await
    .unwrap();
    assert!(
        answer.status().is_success(),
        "{}",
        answer.text().await.unwrap()
    );
    let ran = Instant::now();
    let steps = loop {
        let text = post("/api/page", json!({}), Some(&cookie))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let page: serde_json::Value = serde_json::from_str(&text).unwrap();
        if page["snapshot"]["status"] == "finished" {
            break page["snapshot"]["run"]["steps"].as_u64().unwrap();
        }
        assert!(
            ran.elapsed() < Duration::from_secs(300),
            "the run did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "run                 1,000 nines, {steps} steps, finished in {:.1} s",
        ran.elapsed().as_secs_f64()
    );

    let page = |from: u64| {
        let request = post(
            "/api/values",
            json!({ "from": from, "count": 100 }),
            Some(&cookie),
        );
        async move {
            let asked = Instant::now();
            let response = request.await.unwrap();
            assert!(response.status().is_success());
            let body: serde_json::Value =
                serde_json::from_str(&response.text().await.unwrap()).unwrap();
            assert_eq!(
                body["values"].as_array().unwrap().len() as u64,
                100.min(steps + 1 - from)
            );
            asked.elapsed()
        }
    };
    let first = page(30_000).await;
    println!(
        "first_page_ms       {:.2} (the run's marks are made)",
        ms(first)
    );
    let mut at = Vec::with_capacity(requests);
    for _ in 0..requests {
        at.push(page(30_000).await);
    }
    report("at_step_30000", &mut at);
    let mut random = Vec::with_capacity(requests);
    for _ in 0..requests {
        let from = rand::rng().random_range(0..=steps);
        random.push(page(from).await);
    }
    report("random_steps", &mut random);
    let _ = child.kill();
    let _ = child.wait();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Prints the median, 99th percentile and maximum of `times`.
fn report(name: &str, times: &mut [Duration]) {
    times.sort();
    let pick = |q: f64| ms(times[((times.len() - 1) as f64 * q).round() as usize]);
    println!(
        "{name:<19} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} requests)",
        pick(0.5),
        pick(0.99),
        pick(1.0),
        times.len()
    );
}
