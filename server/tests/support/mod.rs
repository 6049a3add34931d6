//! A real server on 127.0.0.1, and a client that behaves like one browser:
//! it keeps its session cookie, sends commands to the server function and
//! reads the event stream.
#![allow(dead_code)] // each test file uses a part of it

pub mod cluster;
pub mod load;
pub mod search;
pub mod spawned;

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::json;
use server::{
    session::RunId,
    store::{Receipt, Store, StoreError, Stored},
    Config,
};
use shared::wire::{Command, EventId, Update};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// The repository's Leptos.toml, as the server reads it, with a store that
/// keeps nothing.
pub fn config() -> Config {
    let path = Path::new("../Leptos.toml");
    let mut config = Config::load(path, |_| None).unwrap();
    config.store.path = ":memory:".into();
    config.http.metrics_token = METRICS_TOKEN.into();
    config
}

/// The `/metrics` token of [`config`].
pub const METRICS_TOKEN: &str = "test-token";

/// The value of metric `name` (summed over its labels) on the `/metrics` of
/// the server at `base` (such as `http://127.0.0.1:3000`), read with `token`.
pub async fn metric_at(base: &str, token: &str, name: &str) -> f64 {
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    server::metrics::value_in(&text, name).unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

/// The text of the server's `/metrics`.
pub async fn metrics(server: &TestServer) -> String {
    let response = reqwest::Client::new()
        .get(server.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The store `config` names.
pub fn store(config: &Config) -> Arc<dyn Store<shared::job::SavedJob>> {
    server::store::open(&config.store.path, config.tick()).unwrap()
}

/// A server running in this process until dropped or stopped.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        let store = store(&config);
        TestServer::start_with(config, store).await
    }

    /// A server saving in `store`.
    pub async fn start_with(
        config: Config,
        store: Arc<dyn Store<shared::job::SavedJob>>,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(server::run(listener, config, store, async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// A fast server: `interval_ms` between steps.
    pub async fn with_interval(interval_ms: u64) -> TestServer {
        let mut config = config();
        config.collatz.step_interval_ms = interval_ms;
        TestServer::start(config).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn url_for(addr: SocketAddr) -> String {
        format!("http://{addr}")
    }

    /// Asks the server to stop and waits until it has.
    pub async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), self.handle.take().unwrap())
            .await
            .expect("server stops within 10 s");
        result.unwrap().unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// One browser.
pub struct Browser {
    pub base: String,
    pub http: reqwest::Client,
    /// The session cookie (`name=value`), once the server set one.
    cookie: std::sync::Mutex<Option<String>>,
}

impl Browser {
    pub fn new(server: &TestServer) -> Browser {
        Browser::at(&server.url(""))
    }

    /// A browser for a server at `base` (`http://host:port`).
    pub fn at(base: &str) -> Browser {
        Browser::over(base, reqwest::Client::new())
    }

    /// A browser that sends its requests through `http` (which may be
    /// shared with other browsers, as a proxy shares its connections).
    pub fn over(base: &str, http: reqwest::Client) -> Browser {
        Browser {
            base: base.to_owned(),
            http,
            cookie: std::sync::Mutex::new(None),
        }
    }

    /// Loads the page (which starts no session).
    pub async fn visit(&mut self) -> String {
        let response = self.get("/").send().await.unwrap();
        assert_eq!(response.status(), 200);
        self.keep_cookie(&response);
        response.text().await.unwrap()
    }

    /// Starts this browser's session with a command that changes nothing
    /// (pausing an idle session), as a page's first command would start it.
    pub async fn attach(&self) {
        self.command(Command::SetRunning { running: false }).await;
        assert!(self.cookie().is_some(), "the first command sets the cookie");
    }

    /// The session cookie, once set.
    pub fn cookie(&self) -> Option<String> {
        self.cookie.lock().unwrap().clone()
    }

    /// Sends `cookie` (`name=value; ...`) from now on.
    pub fn set_cookie(&self, cookie: impl Into<String>) {
        *self.cookie.lock().unwrap() = Some(cookie.into());
    }

    /// Keeps the session cookie a response sets, as a browser does.
    pub fn keep_cookie(&self, response: &reqwest::Response) {
        if let Some(value) = response.headers().get("set-cookie") {
            let pair = value
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            self.set_cookie(pair);
        }
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.with_cookie(self.http.get(format!("{}{path}", self.base)))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.with_cookie(self.http.post(format!("{}{path}", self.base)))
    }

    fn with_cookie(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.cookie() {
            Some(cookie) => request.header("cookie", cookie),
            None => request,
        }
    }

    /// Sends a command as the page does; returns the status and the body.
    pub async fn send(&self, command: Command) -> (u16, String) {
        let response = self
            .post("/api/command")
            .header("content-type", "application/json")
            .body(json!({ "command": command }).to_string())
            .send()
            .await
            .unwrap();
        self.keep_cookie(&response);
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Posts server function `name` with `body`; the status and the answer.
    pub async fn call(&self, name: &str, body: serde_json::Value) -> (u16, String) {
        let response = self
            .post(&format!("/api/{name}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        self.keep_cookie(&response);
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// The id of the session's first run: the session cookie's value.
    pub fn first_run(&self) -> String {
        let cookie = self.cookie().expect("a session");
        cookie.split_once('=').expect("name=value").1.to_owned()
    }

    /// Adds a run to the session ("New run"); its id.
    pub async fn new_run(&self) -> String {
        let (status, body) = self.call("new_run", json!({})).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Sends `command` to run `run`; the status and the answer.
    pub async fn command_to(&self, run: &str, command: Command) -> (u16, String) {
        self.call("command", json!({ "command": command, "run": run }))
            .await
    }

    /// The event stream of run `run`.
    pub async fn events_of(&self, run: &str) -> Events {
        Events::from(self.get_ok(&format!("/events?run={run}")).await)
    }

    /// The answer to a GET of `path`, which must be 200.
    pub async fn get_ok(&self, path: &str) -> reqwest::Response {
        let response = self.get(path).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response
    }

    /// Sends a command that must be accepted; returns its version.
    pub async fn command(&self, command: Command) -> u64 {
        let (status, body) = self.send(command).await;
        assert_eq!(status, 200, "{body}");
        body.parse().unwrap()
    }

    /// Opens the event stream, optionally resuming after `last_event_id`.
    pub async fn events(&self, last_event_id: Option<EventId>) -> Events {
        let mut request = self.get("/events");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Events::from(response)
    }
}

impl From<reqwest::Response> for Events {
    /// The events of a response that is an event stream.
    fn from(response: reqwest::Response) -> Events {
        Events {
            events: Box::pin(response.bytes_stream().eventsource()),
            runs: None,
            retries: Vec::new(),
        }
    }
}

/// A parsed server-sent event stream.
pub struct Events {
    events: std::pin::Pin<
        Box<
            dyn futures::Stream<
                    Item = Result<
                        eventsource_stream::Event,
                        eventsource_stream::EventStreamError<reqwest::Error>,
                    >,
                > + Send,
        >,
    >,
    /// The session's runs, as the last `runs` event said.
    pub runs: Option<shared::wire::Runs>,
    /// The reconnection delay (`retry:`) of each update event, in order.
    pub retries: Vec<Option<Duration>>,
}

impl Events {
    /// The next event's id and update (keep-alive comments are skipped, a
    /// `runs` event is kept in [`Events::runs`]); `None` when the stream
    /// ends. Fails after 20 s of silence.
    pub async fn next(&mut self) -> Option<(EventId, Update)> {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(20), self.events.next())
                .await
                .expect("an event within 20 s")?
                .unwrap();
            if let Some(update) = self.take(event) {
                return Some(update);
            }
        }
    }

    /// The next event's id and update; `None` when the stream ends, breaks,
    /// or is silent for 20 s (the caller resumes it, as a browser does).
    pub async fn next_or_end(&mut self) -> Option<(EventId, Update)> {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(20), self.events.next())
                .await
                .ok()??
                .ok()?;
            if let Some(update) = self.take(event) {
                return Some(update);
            }
        }
    }

    /// The next update, which must be a snapshot (as a stream begins).
    pub async fn snapshot(&mut self) -> shared::wire::Snapshot {
        match self.next().await {
            Some((_, Update::Snapshot(snapshot))) => snapshot,
            other => panic!("a stream begins with a snapshot, not {other:?}"),
        }
    }

    /// The next `runs` event's list (updates meanwhile are skipped).
    pub async fn next_runs(&mut self) -> shared::wire::Runs {
        let seen = self.runs.clone();
        loop {
            let event = tokio::time::timeout(Duration::from_secs(20), self.events.next())
                .await
                .expect("an event within 20 s")
                .expect("the stream goes on")
                .unwrap();
            self.take(event);
            if self.runs.is_some() && self.runs != seen {
                return self.runs.clone().unwrap();
            }
        }
    }

    /// An update event's id and update; a `runs` event is kept instead.
    fn take(&mut self, event: eventsource_stream::Event) -> Option<(EventId, Update)> {
        if event.event == "runs" {
            // As a page does: a partial list changes the rows it names.
            let runs: shared::wire::Runs = serde_json::from_str(&event.data).unwrap();
            let mut shown = self.runs.take().map(|runs| runs.runs).unwrap_or_default();
            let selected = runs.selected.clone();
            runs.apply(&mut shown);
            self.runs = Some(shared::wire::Runs {
                selected,
                runs: shown,
                partial: false,
            });
            return None;
        }
        self.retries.push(event.retry);
        Some((
            event.id.parse().expect("every event has an id"),
            serde_json::from_str(&event.data).unwrap(),
        ))
    }
}

/// A store for fault tests: each save is answered by `save` (given how
/// many saves came before; it may panic, as a failing driver would), and
/// what is kept for a retry is recorded. Nothing is ever read back.
pub struct FaultyStore {
    saves: std::sync::atomic::AtomicUsize,
    save: Box<dyn Fn(usize) -> Result<(), StoreError> + Send + Sync>,
    /// What [`Store::keep`] was given, in order.
    pub kept: std::sync::Mutex<Vec<shared::job::Saved>>,
}

impl FaultyStore {
    pub fn new(
        save: impl Fn(usize) -> Result<(), StoreError> + Send + Sync + 'static,
    ) -> Arc<FaultyStore> {
        Arc::new(FaultyStore {
            saves: 0.into(),
            save: Box::new(save),
            kept: Default::default(),
        })
    }

    /// A store whose disk is full: every save fails.
    pub fn full() -> Arc<FaultyStore> {
        FaultyStore::new(|_| Err(disk_full()))
    }
}

/// The error of a full disk.
pub fn disk_full() -> StoreError {
    StoreError::Io {
        path: "full.db".into(),
        message: "database or disk is full".into(),
    }
}

impl Store<shared::job::SavedJob> for FaultyStore {
    fn index(&self) -> Receipt<Vec<Stored>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn get(&self, _: RunId) -> Receipt<Option<shared::job::Saved>> {
        Box::pin(async { Ok(None) })
    }
    fn save(&self, _: RunId, _: shared::job::Saved) -> Receipt<()> {
        let before = self.saves.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let answer = (self.save)(before);
        Box::pin(async move { answer })
    }
    fn keep(&self, _: RunId, saved: shared::job::Saved) {
        self.kept.lock().unwrap().push(saved);
    }
    fn delete(&self, _: Vec<RunId>) -> Receipt<()> {
        Box::pin(async { Ok(()) })
    }
    fn name(&self) -> String {
        "faulty".into()
    }
}

/// The trajectory of `start`, computed naively.
pub fn trajectory(mut n: u64) -> Vec<String> {
    let mut values = vec![n.to_string()];
    while n != 1 {
        n = if n.is_multiple_of(2) {
            n / 2
        } else {
            3 * n + 1
        };
        values.push(n.to_string());
    }
    values
}
