//! Restart and memory benchmark (run by `scripts/bench.sh restart`).
//!
//! Fills a fresh store with `--sessions` sessions paused mid-way through
//! 1,000-digit runs, `--running` of them running, then starts the release
//! server on it and measures, from the moment the process is spawned:
//! - until `/healthz` answers;
//! - until every running session has been resumed and has stepped again
//!   (the server's step counter grew by at least one step per running
//!   session, and `hailstone_running_tasks` counts them all);
//!
//! then rebuilds `--touch` of the paused sessions by asking for each (one
//! page load), and reports the server's resident memory per rebuilt session.
//!
//! ```text
//! cargo run --release -p server --example restart -- --server target/release/server \
//!     [--sessions 100000] [--running 2000] [--touch 2000]
//! ```

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use server::{
    session::RunId,
    store::{SqliteStore, Store},
};
use shared::{wire::Command as UserCommand, Collatz, Settings};

struct Args {
    server: PathBuf,
    sessions: usize,
    running: usize,
    touch: usize,
}

fn args() -> Args {
    let mut args = Args {
        server: PathBuf::from("target/release/server"),
        sessions: 100_000,
        running: 2_000,
        touch: 2_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--server" => args.server = value.into(),
            "--sessions" => args.sessions = value.parse().expect("--sessions: a number"),
            "--running" => args.running = value.parse().expect("--running: a number"),
            "--touch" => args.touch = value.parse().expect("--touch: a number"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(args.running <= args.sessions && args.touch <= args.sessions - args.running);
    args
}

#[tokio::main]
async fn main() {
    let args = args();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restart.db");

    // One 1,000-digit run, 5,000 steps in; saved running and paused.
    let mut machine = Collatz::new(Settings::default());
    let generation = machine
        .apply(&UserCommand::SetNumber {
            text: "7".repeat(1000),
        })
        .unwrap()
        .start_task
        .unwrap();
    for _ in 0..5_000 {
        machine.step(generation).unwrap();
    }
    let running = machine.saved();
    machine
        .apply(&UserCommand::SetRunning { running: false })
        .unwrap();
    let paused = machine.saved();
    let ids: Vec<RunId> = (0..args.sessions).map(|_| RunId::random()).collect();
    let filled = Instant::now();
    {
        let store = SqliteStore::open(&path).unwrap();
        for (i, id) in ids.iter().enumerate() {
            let saved = if i < args.running { &running } else { &paused };
            drop(store.save(*id, saved.clone()));
        }
        store.index().await.unwrap();
    }
    let bytes = std::fs::metadata(&path).unwrap().len();
    println!(
        "store               {} sessions ({} running), {:.1} MiB, filled in {:.1} s",
        args.sessions,
        args.running,
        bytes as f64 / (1 << 20) as f64,
        filled.elapsed().as_secs_f64()
    );

    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let token = "restart-bench";
    let started = Instant::now();
    let mut child = Command::new(&args.server)
        .env("LEPTOS_SITE_ADDR", addr.to_string())
        .env("HAILSTONE_STORE_PATH", &path)
        .env("HAILSTONE_MAX_SESSIONS", (args.sessions + 10).to_string())
        .env("HAILSTONE_METRICS_TOKEN", token)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    loop {
        if let Ok(response) = http.get(format!("http://{addr}/healthz")).send().await {
            if response.status().is_success() {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(600), "no /healthz");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("healthz_after_s     {:.3}", started.elapsed().as_secs_f64());
    let metric = |name: &'static str| {
        let http = http.clone();
        async move {
            let text = http
                .get(format!("http://{addr}/metrics"))
                .bearer_auth(token)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            server::metrics::value_in(&text, name).map(|value| value as u64)
        }
    };
    loop {
        let tasks = metric("hailstone_running_tasks").await.unwrap_or(0);
        let steps = metric("hailstone_steps_total").await.unwrap_or(0);
        if tasks as usize >= args.running && steps as usize >= args.running {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "not resumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "all_running_stepping_after_s {:.3}",
        started.elapsed().as_secs_f64()
    );

    // Pause the running ones (so the memory reading is steady), then
    // rebuild paused ones by asking for each.
    let rss = |pid: u32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap()
    };
    let before = rss(child.id());
    let touched = Instant::now();
    for id in &ids[args.running..args.running + args.touch] {
        let response = http
            .post(format!("http://{addr}/api/page"))
            .header("cookie", format!("hailstone_session={id}"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    let after = rss(child.id());
    println!(
        "rebuilt_on_request  {} in {:.2} s ({:.2} ms each)",
        args.touch,
        touched.elapsed().as_secs_f64(),
        touched.elapsed().as_secs_f64() * 1000.0 / args.touch.max(1) as f64
    );
    println!(
        "rss_kib             {before} before, {after} after rebuilding {} paused 1,000-digit sessions: {:.1} KiB each",
        args.touch,
        after.saturating_sub(before) as f64 / args.touch.max(1) as f64
    );
    let _ = child.kill();
    let _ = child.wait();
}
