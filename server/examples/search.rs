//! Record search through the server (run by `scripts/bench.sh search`).
//!
//! With `--server`, starts that release server (every core, its defaults),
//! searches [1, `--to`] in a session of its own and reports the time from
//! the command to the search's end, the starts checked per second and the
//! records, whose CSV it checks against the engine run here on one core
//! (itself tested against a plain loop). With `--addr`, searches on a
//! server already running there and, with `--hold`, keeps a search
//! running (pausing it after that many seconds): the load of a search
//! that other sessions' runs are measured beside.
//!
//! ```text
//! cargo run --release -p server --example search -- --server target/release/server [--to 1000000000]
//! cargo run --release -p server --example search -- --addr 127.0.0.1:3999 --to 100000000000 --hold 40
//! ```

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;
use shared::{job::Snapshot, records, wire::Status};

/// A session of the bench's own on the server at `addr`.
struct Client {
    http: reqwest::Client,
    addr: String,
    cookie: Option<String>,
}

impl Client {
    async fn call(&mut self, name: &str, body: serde_json::Value) -> String {
        let mut request = self
            .http
            .post(format!("http://{}/api/{name}", self.addr))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.expect("the server answers");
        if let Some(set) = response.headers().get("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            self.cookie = Some(pair.to_owned());
        }
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(status.is_success(), "{name}: {status} {body}");
        body
    }

    async fn state(&mut self, run: &str) -> Snapshot {
        serde_json::from_str(&self.call("search_state", json!({ "run": run })).await).unwrap()
    }

    async fn csv(&self, run: &str) -> String {
        let mut request = self
            .http
            .get(format!("http://{}/records.csv?run={run}", self.addr));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        request.send().await.unwrap().text().await.unwrap()
    }
}

/// Kills the server started here when the bench ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() {
    let (mut server, mut addr, mut to, mut hold) = (None, None, 1_000_000_000u64, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--server" => server = Some(std::path::PathBuf::from(value)),
            "--addr" => addr = Some(value),
            "--to" => to = value.parse().expect("--to: a number"),
            "--hold" => hold = Some(value.parse::<u64>().expect("--hold: seconds")),
            other => panic!("unknown flag {other}"),
        }
    }
    let _server;
    let addr = match (server, addr) {
        (_, Some(addr)) => addr,
        (Some(path), None) => {
            let addr = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .to_string();
            let child = Command::new(path)
                .env("LEPTOS_SITE_ADDR", &addr)
                .env("HAILSTONE_STORE_PATH", ":memory:")
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            _server = Server(child);
            addr
        }
        (None, None) => panic!("--server PATH or --addr HOST:PORT"),
    };
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
    let mut client = Client {
        http,
        addr,
        cookie: None,
    };
    client
        .call(
            "command",
            json!({ "command": { "type": "set_running", "running": false } }),
        )
        .await;
    let run: String = serde_json::from_str(&client.call("new_run", json!({})).await).unwrap();
    let began = Instant::now();
    client
        .call(
            "search",
            json!({ "from": "1", "to": to.to_string(), "run": run }),
        )
        .await;
    if let Some(seconds) = hold {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let state = client.state(&run).await;
        client
            .call(
                "command",
                json!({ "command": { "type": "set_running", "running": false }, "run": run }),
            )
            .await;
        let checked = state
            .run
            .as_ref()
            .and_then(|r| r.search())
            .map_or(0, |s| s.checked);
        println!(
            "held a search for {seconds} s: {checked} starts checked ({:.3e} starts/s), status {}",
            checked as f64 / seconds as f64,
            state.status.name()
        );
        return;
    }
    let done = loop {
        let state = client.state(&run).await;
        if state.status != Status::Running {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let seconds = began.elapsed().as_secs_f64();
    assert_eq!(done.status, Status::Finished, "{done:?}");
    let search = done.run.as_ref().and_then(|r| r.search()).unwrap().clone();
    println!(
        "[1, {to}] through the server: {:.2} s, {:.3e} starts/s, {} records ({} delay, {} peak)",
        seconds,
        search.checked as f64 / seconds,
        search.records.len(),
        search
            .records
            .iter()
            .filter(|r| r.kind == records::Kind::Delay)
            .count(),
        search
            .records
            .iter()
            .filter(|r| r.kind == records::Kind::Peak)
            .count(),
    );
    let csv = client.csv(&run).await;
    let here = Instant::now();
    let same = csv == records::csv(&records::find(1, to, 1 << 22));
    println!(
        "the same search on one core here: {:.2} s; the CSVs are {}",
        here.elapsed().as_secs_f64(),
        if same { "identical" } else { "DIFFERENT" }
    );
    assert!(same, "the server's records differ from the engine's");
}
