//! Hailstone's load generator: drives a running server over real HTTP as
//! browsers would, and checks every value it is sent.
//!
//! Each simulated browser sets the step interval (its first command, which
//! starts its session and sets its cookie), opens `/events`, starts a run,
//! and reads the stream; every value
//! is checked against the trajectory computed here, so lost, duplicated and
//! out-of-order values are counted exactly. A browser that reads more slowly
//! than its run steps is sent a snapshot of the newest values once it is a
//! window behind; the values it skipped are counted as coalesced, apart. While the tasks run, each
//! browser sends a new number every few seconds and times how long until
//! the stream shows it. Bounded in time; it stops by itself.
//!
//! ```text
//! loadgen --addr 127.0.0.1:3000 --sessions 1000 --interval 500 --duration 30 [--pid PID]
//!         [--http2 BROWSERS_PER_CONNECTION]
//! ```
//!
//! By default each browser holds its own HTTP/1.1 connection for its event
//! stream, as a browser talking to the server directly does. With `--http2`,
//! browsers share HTTP/2 connections (cleartext, prior knowledge), that many
//! to a connection, as they do behind a proxy that multiplexes its upstream
//! connections; each still has its own cookie, stream and commands.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use shared::{
    wire::{Command, Status, Update},
    Number,
};

/// What to run.
#[derive(Debug, Clone)]
struct Args {
    /// The server's address.
    addr: String,
    /// Simulated browsers.
    sessions: usize,
    /// The step interval each sets, in milliseconds.
    interval_ms: u32,
    /// How long to measure, after every session has started.
    duration: Duration,
    /// Seconds between a browser's "set number" commands.
    command_every: Duration,
    /// The server's process id, for memory and CPU figures.
    pid: Option<u32>,
    /// Sessions started per second while ramping up.
    ramp_per_sec: usize,
    /// Start every run from this number instead of the built-in ones.
    start: Option<String>,
    /// Browsers per shared HTTP/2 connection; `None`: HTTP/1.1, one
    /// connection per browser's stream.
    http2: Option<usize>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut args = Args {
            addr: "127.0.0.1:3000".into(),
            sessions: 100,
            interval_ms: 500,
            duration: Duration::from_secs(20),
            command_every: Duration::from_secs(5),
            pid: None,
            ramp_per_sec: 2000,
            start: None,
            http2: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or(format!("{flag} needs a value"));
            let number = |text: String| text.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
            match flag.as_str() {
                "--addr" => args.addr = value()?,
                "--sessions" => args.sessions = number(value()?)? as usize,
                "--interval" => args.interval_ms = number(value()?)? as u32,
                "--duration" => args.duration = Duration::from_secs(number(value()?)?),
                "--command-every" => args.command_every = Duration::from_secs(number(value()?)?),
                "--pid" => args.pid = Some(number(value()?)? as u32),
                "--ramp" => args.ramp_per_sec = number(value()?)?.max(1) as usize,
                "--start" => args.start = Some(value()?),
                // The server allows 200 streams per connection; each browser
                // needs one for its events and, at times, one for a command.
                "--http2" => args.http2 = Some(number(value()?)?.clamp(1, 100) as usize),
                other => return Err(format!("unknown flag {other}")),
            }
        }
        Ok(args)
    }
}

/// Starts with trajectories long enough to outlast a measurement at 0.5 s
/// (each over 100 steps); at faster intervals a finished run is restarted.
const STARTS: [u64; 8] = [27, 31, 41, 47, 54, 55, 63, 71];

/// Counters shared by every simulated browser.
#[derive(Default)]
struct Totals {
    /// Values received and checked correct.
    values: AtomicU64,
    /// SSE messages received.
    messages: AtomicU64,
    /// Values that never arrived (a step index skipped).
    lost: AtomicU64,
    /// Values that arrived twice.
    duplicated: AtomicU64,
    /// Values that arrived at the right place but were wrong.
    out_of_order: AtomicU64,
    /// Values a browser never saw because it read more slowly than the
    /// server stepped, fell further behind than the session's window, and
    /// was sent a snapshot of the newest values instead (by design: the
    /// stream coalesces rather than queue without bound).
    coalesced: AtomicU64,
    /// Snapshots after the first message of a stream (such catch-ups).
    snapshots: AtomicU64,
    /// Failed requests or streams.
    errors: AtomicU64,
    /// |gap between consecutive deltas − interval|, in microseconds.
    jitter_us: Mutex<Vec<u64>>,
    /// From sending "set number" to the stream showing it, in microseconds.
    round_trip_us: Mutex<Vec<u64>>,
    /// From sending "set number" to its HTTP response, in microseconds: the
    /// part of the round trip before the stream.
    acknowledged_us: Mutex<Vec<u64>>,
    /// Whether the measurement window is open (samples are kept only then).
    measuring: std::sync::atomic::AtomicBool,
}

impl Totals {
    fn sample(&self, into: &Mutex<Vec<u64>>, value: Duration) {
        if self.measuring.load(Ordering::Relaxed) {
            into.lock().unwrap().push(value.as_micros() as u64);
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("loadgen: {error}");
            std::process::exit(2);
        }
    };
    // HTTP/1.1: commands share a small pool of connections, as the event
    // streams already take one socket per browser. HTTP/2: one client, so
    // one connection, per group of browsers.
    let http1 = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let mut http2 = Vec::new();
    if let Some(per_connection) = args.http2 {
        for _ in 0..args.sessions.div_ceil(per_connection) {
            http2.push(
                reqwest::Client::builder()
                    .http2_prior_knowledge()
                    .build()
                    .unwrap(),
            );
        }
    }
    let client_of = |browser: usize| match args.http2 {
        Some(per_connection) => http2[browser / per_connection].clone(),
        None => http1.clone(),
    };
    let totals = Arc::new(Totals::default());
    let idle_rss = args.pid.and_then(rss_kib);
    let deadline_stop = tokio_util::sync::CancellationToken::new();

    // Ramp up.
    let ramp_started = Instant::now();
    let mut browsers = Vec::with_capacity(args.sessions);
    for i in 0..args.sessions {
        let browser = Browser {
            id: i,
            args: args.clone(),
            client: client_of(i),
            totals: totals.clone(),
            stop: deadline_stop.clone(),
        };
        browsers.push(tokio::spawn(browser.run()));
        if (i + 1) % args.ramp_per_sec.min(args.sessions) == 0 {
            let due = ramp_started + Duration::from_secs(((i + 1) / args.ramp_per_sec) as u64);
            tokio::time::sleep_until(due.into()).await;
        }
    }
    // Let the last sessions settle, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_values = totals.values.load(Ordering::Relaxed);
    let before_messages = totals.messages.load(Ordering::Relaxed);
    let before_steps = steps_total(&http1, &args.addr).await;
    let before_cpu = args.pid.and_then(cpu_ticks);
    let own_before = cpu_ticks(std::process::id());
    totals.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(args.duration).await;
    totals.measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let values = totals.values.load(Ordering::Relaxed) - before_values;
    let messages = totals.messages.load(Ordering::Relaxed) - before_messages;
    let after_cpu = args.pid.and_then(cpu_ticks);
    let after_steps = steps_total(&http1, &args.addr).await;
    let own_after = cpu_ticks(std::process::id());
    let load_rss = args.pid.and_then(rss_kib);
    deadline_stop.cancel();
    for browser in browsers {
        let _ = tokio::time::timeout(Duration::from_secs(10), browser).await;
    }

    // Report.
    let mut jitter = std::mem::take(&mut *totals.jitter_us.lock().unwrap());
    let mut round_trip = std::mem::take(&mut *totals.round_trip_us.lock().unwrap());
    let mut acknowledged = std::mem::take(&mut *totals.acknowledged_us.lock().unwrap());
    println!("sessions            {}", args.sessions);
    println!("interval_ms         {}", args.interval_ms);
    match args.http2 {
        Some(per_connection) => {
            println!("transport           http2, {per_connection} browsers per connection")
        }
        None => println!("transport           http1.1, a connection per browser"),
    }
    println!("measured_s          {elapsed:.1}");
    println!("values_per_s        {:.0}", values as f64 / elapsed);
    println!("messages_per_s      {:.0}", messages as f64 / elapsed);
    // What the server computed, delivered or not.
    if let (Some(before), Some(after)) = (before_steps, after_steps) {
        println!(
            "server_steps_per_s  {:.0}",
            (after - before) as f64 / elapsed
        );
    }
    for (name, counter) in [
        ("lost", &totals.lost),
        ("duplicated", &totals.duplicated),
        ("out_of_order", &totals.out_of_order),
        ("coalesced", &totals.coalesced),
        ("snapshots", &totals.snapshots),
        ("errors", &totals.errors),
    ] {
        println!("{name:<20}{}", counter.load(Ordering::Relaxed));
    }
    if args.interval_ms > 0 {
        print_percentiles("jitter", &mut jitter, &[50.0, 99.0]);
    }
    println!("round_trip_samples  {}", round_trip.len());
    print_percentiles("round_trip", &mut round_trip, &[50.0, 95.0, 99.0]);
    print_percentiles("acknowledged", &mut acknowledged, &[50.0, 99.0]);
    if let (Some(idle), Some(load)) = (idle_rss, load_rss) {
        println!("rss_idle_kib        {idle}");
        println!("rss_load_kib        {load}");
        println!(
            "rss_per_session_kib {:.1}",
            load.saturating_sub(idle) as f64 / args.sessions as f64
        );
    }
    let percent = |before: Option<u64>, after: Option<u64>| {
        let ticks_per_s = 100.0; // USER_HZ on Linux
        before
            .zip(after)
            .map(|(b, a)| (a - b) as f64 / ticks_per_s / elapsed * 100.0)
    };
    if let Some(cpu) = percent(before_cpu, after_cpu) {
        println!("server_cpu_percent  {cpu:.0}");
    }
    // Near 100 %, the load generator itself limits the latency figures.
    if let Some(cpu) = percent(own_before, own_after) {
        println!("loadgen_cpu_percent {cpu:.0}");
    }
    let bad = totals.lost.load(Ordering::Relaxed)
        + totals.duplicated.load(Ordering::Relaxed)
        + totals.out_of_order.load(Ordering::Relaxed);
    if bad > 0 {
        std::process::exit(1);
    }
}

/// One simulated browser.
struct Browser {
    id: usize,
    args: Args,
    client: reqwest::Client,
    totals: Arc<Totals>,
    stop: tokio_util::sync::CancellationToken,
}

/// Where a browser's check of its run stands.
struct Expect {
    /// The step index of the next value.
    index: u64,
    /// The next value.
    next: Number,
}

impl Browser {
    async fn run(self) {
        if let Err(error) = self.session().await {
            self.totals.errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("browser {}: {error}", self.id);
        }
    }

    async fn session(&self) -> Result<(), String> {
        let base = format!("http://{}", self.args.addr);
        let command = |command: &Command, cookie: Option<&str>| {
            let mut request = self
                .client
                .post(format!("{base}/api/command"))
                .header("content-type", "application/json")
                .body(serde_json::json!({ "command": command }).to_string());
            if let Some(cookie) = cookie {
                request = request.header("cookie", cookie.to_owned());
            }
            request
        };
        // The first command starts the session and sets its cookie, as a
        // page's first command does; then the page follows it.
        let first = command(
            &Command::SetInterval {
                ms: self.args.interval_ms,
            },
            None,
        )
        .send()
        .await
        .map_err(|e| e.to_string())?;
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
        let response = self
            .client
            .get(format!("{base}/events"))
            .header("cookie", cookie.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("/events answered {}", response.status()));
        }
        let mut stream = response.bytes_stream();
        let mut buffer = String::new();

        // Sends a command; answers the version that shows its effect.
        let send = |sent: Command| {
            let request = command(&sent, Some(&cookie));
            async move {
                let response = request.send().await.map_err(|e| e.to_string())?;
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
        let mut expect: Option<Expect> = None;
        let mut last_delta: Option<Instant> = None;
        let mut next_command = Instant::now() + self.args.command_every;
        let mut first_message = true;

        loop {
            let chunk = tokio::select! {
                () = self.stop.cancelled() => return Ok(()),
                chunk = stream.next() => chunk,
            };
            let Some(chunk) = chunk else {
                return Err("stream ended".into());
            };
            buffer.push_str(
                std::str::from_utf8(&chunk.map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?,
            );
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let Some(data) = block.lines().find_map(|line| line.strip_prefix("data:")) else {
                    continue; // keep-alive
                };
                let update: Update =
                    serde_json::from_str(data.trim_start()).map_err(|e| e.to_string())?;
                self.totals.messages.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                // Whether this update shows the command in flight.
                let shown = awaiting.is_some_and(|(version, _)| update.cursor().version >= version);
                let status = match &update {
                    Update::Delta(delta) => {
                        if delta.restart {
                            expect = Some(Expect {
                                index: 0,
                                next: Number::from_digits(&delta.appended[0]).ok_or("bad start")?,
                            });
                            last_delta = None;
                        } else if !delta.appended.is_empty() {
                            if let (Some(last), true) = (last_delta, self.args.interval_ms > 0) {
                                let gap = now - last;
                                let interval =
                                    Duration::from_millis(u64::from(self.args.interval_ms));
                                self.totals
                                    .sample(&self.totals.jitter_us, gap.abs_diff(interval));
                            }
                            last_delta = Some(now);
                        }
                        if let Some(expect) = &mut expect {
                            let first_index = delta.steps + 1 - delta.appended.len() as u64;
                            for (offset, value) in delta.appended.iter().enumerate() {
                                self.check(expect, first_index + offset as u64, value);
                            }
                        }
                        delta.status
                    }
                    // The first message; or, later, the server coalescing a
                    // reader that fell further behind than the session's
                    // window into a snapshot of the newest values.
                    Update::Snapshot(snapshot) => {
                        if !first_message {
                            self.totals.snapshots.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some(run) = &snapshot.run {
                            if shown {
                                expect = Some(Expect {
                                    index: 0,
                                    next: Number::from_digits(&run.start).ok_or("bad start")?,
                                });
                            }
                            if let Some(expect) = &mut expect {
                                let first = run.first_recent_step();
                                while expect.index < first {
                                    self.totals.coalesced.fetch_add(1, Ordering::Relaxed);
                                    expect.next.step();
                                    expect.index += 1;
                                }
                                for (offset, value) in run.recent.iter().enumerate() {
                                    let index = first + offset as u64;
                                    if index >= expect.index {
                                        self.check(expect, index, value);
                                    }
                                }
                            }
                        }
                        last_delta = None;
                        snapshot.status
                    }
                };
                first_message = false;
                if let (true, Some((_, sent_at))) = (shown, awaiting) {
                    self.totals
                        .sample(&self.totals.round_trip_us, now - sent_at);
                    awaiting = None;
                }
                // Keep the session busy: a new number every few seconds, and
                // at once when the run has finished.
                if awaiting.is_none() && (status == Status::Finished || now >= next_command) {
                    round += 1;
                    let sent_at = Instant::now();
                    next_command = sent_at + self.args.command_every;
                    let version = send(Command::SetNumber { text: pick(round) }).await?;
                    self.totals
                        .sample(&self.totals.acknowledged_us, sent_at.elapsed());
                    awaiting = Some((version, sent_at));
                }
            }
        }
    }

    /// Checks one value against the trajectory computed here.
    fn check(&self, expect: &mut Expect, index: u64, value: &str) {
        let totals = &self.totals;
        if index < expect.index {
            totals.duplicated.fetch_add(1, Ordering::Relaxed);
            return;
        }
        while expect.index < index {
            totals.lost.fetch_add(1, Ordering::Relaxed);
            expect.next.step();
            expect.index += 1;
        }
        if expect.next.to_string() == value {
            totals.values.fetch_add(1, Ordering::Relaxed);
        } else {
            totals.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        expect.next.step();
        expect.index += 1;
    }
}

/// The server's count of steps taken, from `/metrics`.
async fn steps_total(client: &reqwest::Client, addr: &str) -> Option<u64> {
    // The same variable the server reads its token from.
    let token = std::env::var("HAILSTONE_METRICS_TOKEN").ok()?;
    let text = client
        .get(format!("http://{addr}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("hailstone_steps_total "))?
        .trim()
        .parse()
        .ok()
}

/// Prints `NAME_pP_ms` lines, one per percentile of microsecond samples.
fn print_percentiles(name: &str, samples: &mut [u64], percentiles: &[f64]) {
    for &p in percentiles {
        let key = format!("{name}_p{p}_ms");
        println!("{key:<20}{}", percentile_ms(samples, p));
    }
}

/// The `p`th percentile of microsecond samples, in milliseconds.
fn percentile_ms(samples: &mut [u64], p: f64) -> String {
    if samples.is_empty() {
        return "n/a".into();
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    format!("{:.2}", samples[rank] as f64 / 1000.0)
}

/// Resident memory of a process, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU time of a process, in clock ticks, from /proc.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}
