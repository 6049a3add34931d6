//! One simulated browser: starts its session with a first command, follows
//! its event stream, and sends a new number every few seconds.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use std::pin::Pin;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use shared::wire::{Command, Status, Update};
use tokio_util::sync::CancellationToken;

use crate::{args::Args, check::Checker, report::Totals};

/// Starts with trajectories long enough to outlast a measurement at 0.5 s
/// (each over 100 steps); at faster intervals a finished run is restarted.
const STARTS: [u64; 8] = [27, 31, 41, 47, 54, 55, 63, 71];

/// An open event stream.
type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// How often a stream that ended is tried again (`--resume`), and for how
/// long at most.
const RESUME_EVERY: Duration = Duration::from_millis(100);
const RESUME_FOR: Duration = Duration::from_secs(30);

/// One simulated browser.
pub struct Browser {
    /// Its number, which picks its first start.
    pub id: usize,
    /// What to run.
    pub args: Args,
    /// Its HTTP client (shared with others over HTTP/2).
    pub client: reqwest::Client,
    /// Where its findings go.
    pub totals: Arc<Totals>,
    /// Cancelled when the measurement ends.
    pub stop: CancellationToken,
    /// The cookie of the session its group shares, once its first browser
    /// started it.
    pub session: tokio::sync::watch::Sender<Option<String>>,
    /// Whether it adds a run to its group's session ("New run") rather
    /// than starting the session.
    pub adds_run: bool,
}

impl Browser {
    /// Runs until stopped; a failure is counted and reported.
    pub async fn run(self) {
        let mut check = Checker::default();
        let result = self.session(&mut check).await;
        self.totals.add(check.take_new());
        if let Err(error) = result {
            self.totals.errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("browser {}: {error}", self.id);
        }
    }

    /// A command request (for run `run`, or the session's first) with the
    /// session cookie, if there is one yet.
    fn command(
        &self,
        command: &Command,
        cookie: Option<&str>,
        run: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let body = match run {
            Some(run) => serde_json::json!({ "command": command, "run": run }),
            None => serde_json::json!({ "command": command }),
        };
        let mut request = self
            .client
            .post(format!("http://{}/api/command", self.args.addr))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie.to_owned());
        }
        request
    }

    /// Opens the event stream of the browser's run, resuming after `last`
    /// if given.
    async fn open(
        &self,
        cookie: &str,
        run: Option<&str>,
        last: Option<&str>,
    ) -> Result<Events, String> {
        let url = match run {
            Some(run) => format!("http://{}/events?run={run}", self.args.addr),
            None => format!("http://{}/events", self.args.addr),
        };
        let mut request = self.client.get(url).header("cookie", cookie.to_owned());
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_owned());
        }
        let response = request.send().await.map_err(why)?;
        if !response.status().is_success() {
            return Err(format!("/events answered {}", response.status()));
        }
        Ok(Box::pin(response.bytes_stream().eventsource()))
    }

    /// Opens the stream again after it ended, trying every
    /// [`RESUME_EVERY`] for at most [`RESUME_FOR`].
    async fn resume(
        &self,
        cookie: &str,
        run: Option<&str>,
        last: Option<&str>,
    ) -> Result<Events, String> {
        let deadline = Instant::now() + RESUME_FOR;
        loop {
            match self.open(cookie, run, last).await {
                Ok(events) => {
                    self.totals.reconnects.fetch_add(1, Ordering::Relaxed);
                    return Ok(events);
                }
                Err(error) if Instant::now() >= deadline => return Err(error),
                Err(_) => tokio::time::sleep(RESUME_EVERY).await,
            }
        }
    }

    /// Starts the browser's session with its first command, as a page's
    /// first command does, and tells its group the cookie; the session's
    /// cookie and the run's id (`None`: the first).
    async fn start(&self) -> Result<(String, Option<String>), String> {
        let interval = Command::SetInterval {
            ms: self.args.interval_ms,
        };
        if self.adds_run {
            let cookie = self
                .session
                .subscribe()
                .wait_for(Option::is_some)
                .await
                .map_err(|_| "the group's session never started")?
                .clone()
                .unwrap_or_default();
            let added = self
                .client
                .post(format!("http://{}/api/new_run", self.args.addr))
                .header("content-type", "application/json")
                .header("cookie", cookie.clone())
                .body("{}")
                .send()
                .await
                .map_err(why)?;
            if !added.status().is_success() {
                return Err(format!("new run answered {}", added.status()));
            }
            let body = added.text().await.map_err(|e| e.to_string())?;
            let run: String = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            let first = self
                .command(&interval, Some(&cookie), Some(&run))
                .send()
                .await;
            if !first.map_err(why)?.status().is_success() {
                return Err("a new run's first command was refused".into());
            }
            return Ok((cookie, Some(run)));
        }
        let first = self
            .command(&interval, None, None)
            .send()
            .await
            .map_err(why)?;
        if !first.status().is_success() {
            return Err(format!("first command answered {}", first.status()));
        }
        let cookie = first
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .ok_or("no session cookie")?
            .to_owned();
        self.session.send_replace(Some(cookie.clone()));
        Ok((cookie, None))
    }

    async fn session(&self, check: &mut Checker) -> Result<(), String> {
        // The first command starts the session (or adds the run) and sets
        // its cookie; then the page follows its run.
        let (cookie, run) = self.start().await?;
        let run = run.as_deref();
        let mut events = self.open(&cookie, run, None).await?;
        // The id of the last event, for a resumed stream.
        let mut last_id: Option<String> = None;

        // Sends a command; answers the version that shows its effect.
        let send = |command: Command| {
            let cookie = cookie.clone();
            async move {
                let mut tries = 0;
                let response = loop {
                    let request = self.command(&command, Some(&cookie), run);
                    let sent = request.send().await;
                    // A balancer's node died under the request (the
                    // connection closed, or 502), or a node cannot reach its
                    // store for a moment (503): a page tries again.
                    let again = self.args.resume
                        && tries < RESUME_FOR.as_millis() / RESUME_EVERY.as_millis()
                        && sent
                            .as_ref()
                            .map_or(true, |r| matches!(r.status().as_u16(), 502 | 503));
                    if !again {
                        break sent.map_err(why)?;
                    }
                    tries += 1;
                    self.totals.command_retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(RESUME_EVERY).await;
                };
                if !response.status().is_success() {
                    return Err(format!("command answered {}", response.status()));
                }
                let body = response.text().await.map_err(|e| e.to_string())?;
                body.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("command answered {body:?}"))
            }
        };
        let pick = |round: usize| match &self.args.start {
            Some(start) => start.clone(),
            None => STARTS[round % STARTS.len()].to_string(),
        };
        let mut round = self.id;
        let sent_at = Instant::now();
        let version = send(Command::SetNumber { text: pick(round) }).await?;
        // The command in flight: the version that will show it, and when it
        // was sent. One at a time, as the page's command queue does.
        let mut awaiting = Some((version, sent_at));
        // The start it set: what the state that shows it must run.
        let mut awaited_start = pick(round);
        let mut last_delta: Option<Instant> = None;
        let mut next_command = Instant::now() + self.args.command_every;
        let mut first_message = true;
        let interval = Duration::from_millis(u64::from(self.args.interval_ms));
        // When the running run last showed a new value (and its newest
        // step then), and the longest it went without one while measuring.
        // A stream resumed after a failover shows its first new value in a
        // snapshot: the gap runs from the last value before it.
        let mut last_value: Option<Instant> = None;
        let mut newest_step: Option<u64> = None;
        let mut longest_gap = Duration::ZERO;
        // Where the run stands: a delta names it only when it changed.
        let mut status = Status::Idle;

        loop {
            let event = tokio::select! {
                () = self.stop.cancelled() => {
                    self.totals.record(&self.totals.longest_gap, longest_gap);
                    return Ok(());
                }
                event = events.next() => event,
            };
            let event = match event {
                Some(Ok(event)) => event,
                ended if self.args.resume => {
                    // As a browser does: again, naming the last event seen.
                    drop(ended);
                    events = self.resume(&cookie, run, last_id.as_deref()).await?;
                    continue;
                }
                None => return Err("stream ended".into()),
                Some(Err(error)) => return Err(error.to_string()),
            };
            if event.event == "runs" {
                // The session's list of runs: not an update of the run.
                continue;
            }
            if !event.id.is_empty() {
                last_id = Some(event.id.clone());
            }
            let update: Update = serde_json::from_str(&event.data).map_err(|e| e.to_string())?;
            self.totals.messages.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            // Whether this update shows the command in flight.
            let shown = awaiting.is_some_and(|(version, _)| update.cursor().version >= version);
            // And if it does, the command must be in it: it set the run
            // (the update restarts it, or shows it whole) to its start.
            let start = match &update {
                Update::Delta(delta) if delta.restart => delta.change.appended.first(),
                Update::Snapshot(snapshot) => snapshot.run.as_ref().map(|run| &run.start),
                Update::Delta(_) => None,
            };
            if shown && start != Some(&awaited_start) {
                self.totals.commands_lost.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "browser {}: acknowledged start {awaited_start} not shown: {start:?}",
                    self.id
                );
            }
            match &update {
                Update::Delta(delta) => {
                    status = delta.status.unwrap_or(status);
                    if !delta.change.appended.is_empty() {
                        if let Some(last) = last_value {
                            if self.totals.measuring.load(Ordering::Relaxed) {
                                longest_gap = longest_gap.max(now - last);
                            }
                        }
                        newest_step = Some(delta.change.steps);
                    }
                    last_value = (status == Status::Running).then_some(now);
                    if delta.restart {
                        last_delta = None;
                    } else if !delta.change.appended.is_empty() {
                        if let (Some(last), false) = (last_delta, interval.is_zero()) {
                            self.totals
                                .sample(&self.totals.jitter, (now - last).abs_diff(interval));
                        }
                        last_delta = Some(now);
                    }
                    check.delta(delta)?;
                }
                // The first message; or, later, the server coalescing a
                // reader that fell further behind than the session's window
                // into a snapshot of the newest values.
                Update::Snapshot(snapshot) => {
                    if !first_message {
                        self.totals.snapshots.fetch_add(1, Ordering::Relaxed);
                    }
                    if let (Some(run), true) = (&snapshot.run, shown) {
                        check.begin(&run.start)?;
                    }
                    check.snapshot(snapshot);
                    last_delta = None;
                    let steps = snapshot.run.as_ref().map(|run| run.steps);
                    let moved = shown || newest_step.is_none_or(|newest| steps > Some(newest));
                    if let (true, Some(last)) = (moved, last_value) {
                        if self.totals.measuring.load(Ordering::Relaxed) && !shown {
                            longest_gap = longest_gap.max(now - last);
                        }
                    }
                    if snapshot.status != Status::Running {
                        last_value = None;
                    } else if moved || last_value.is_none() {
                        last_value = Some(now);
                    }
                    newest_step = steps;
                    status = snapshot.status;
                }
            }
            first_message = false;
            self.totals.add(check.take_new());
            if let (true, Some((_, sent_at))) = (shown, awaiting) {
                self.totals.sample(&self.totals.round_trip, now - sent_at);
                awaiting = None;
            }
            // Keep the session busy: a new number every few seconds, and at
            // once when the run has finished.
            if awaiting.is_none() && (status == Status::Finished || now >= next_command) {
                round += 1;
                let sent_at = Instant::now();
                next_command = sent_at + self.args.command_every;
                awaited_start = pick(round);
                let version = send(Command::SetNumber {
                    text: awaited_start.clone(),
                })
                .await?;
                self.totals
                    .sample(&self.totals.acknowledged, sent_at.elapsed());
                awaiting = Some((version, sent_at));
            }
        }
    }
}

/// A request's error with its causes (reqwest's own message names only the
/// URL; the cause says whether the connection was refused, reset or closed).
fn why(error: reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
