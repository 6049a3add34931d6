//! A cluster on Redis Sentinel: the primary is killed (SIGKILL) mid-run,
//! under load, while its replica lags behind, and the replica promoted. Runs go on, every acknowledged
//! command is there after the failover, every value every page saw is
//! exact, no page sees a value twice or loses one it saw, and fencing holds
//! (epochs in each session's log never go back). Real processes: a
//! primary, a replica, three sentinels, two nodes.

mod support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use shared::{
    wire::{Command, EventId, Update},
    Number,
};
use support::{
    cluster::{until, Node, Sentinels},
    Browser,
};
use tokio_util::sync::CancellationToken;

const LEASE_MS: u64 = 1000;
const SCAN_MS: u64 = 200;
const SESSIONS: usize = 10;

/// The values of every run seen, by start: computed once, extended on
/// demand.
#[derive(Default)]
struct Trajectories(HashMap<String, Vec<String>>);

impl Trajectories {
    /// The value of the run from `start` at `step`.
    fn at(&mut self, start: &str, step: u64) -> String {
        let values = self
            .0
            .entry(start.to_owned())
            .or_insert_with(|| vec![start.to_owned()]);
        while values.len() as u64 <= step {
            let mut next = Number::from_digits(values.last().unwrap()).unwrap();
            assert!(!next.is_one(), "no step past 1");
            next.step();
            values.push(next.to_string());
        }
        values[step as usize].clone()
    }
}

/// What one page saw, checked as it arrives.
#[derive(Default)]
struct Seen {
    /// The last event's id.
    last: Option<EventId>,
    /// The version it has (within the incarnation of `last`).
    version: u64,
    /// The run it shows: its start, and the newest step it has.
    run: Option<(String, u64)>,
    /// The newest step seen of each run (by start).
    newest: HashMap<String, u64>,
    /// When a value was last received.
    stepped: Option<Instant>,
    /// How many values arrived.
    values: u64,
}

impl Seen {
    /// Checks `values` (from step `first` of the run from `start`) and
    /// notes them.
    fn values(&mut self, start: &str, first: u64, values: &[String], known: &mut Trajectories) {
        for (offset, value) in values.iter().enumerate() {
            let step = first + offset as u64;
            assert_eq!(*value, known.at(start, step), "run {start}, step {step}");
        }
        let newest = first + values.len() as u64 - 1;
        let seen = self.newest.entry(start.to_owned()).or_insert(0);
        if newest > *seen {
            *seen = newest;
            self.stepped = Some(Instant::now());
            self.values += values.len() as u64;
        }
        self.run = Some((start.to_owned(), newest));
    }

    fn apply(&mut self, id: EventId, update: Update, known: &mut Trajectories) {
        let same = self
            .last
            .is_some_and(|last| last.incarnation == id.incarnation);
        match update {
            Update::Snapshot(snapshot) => {
                if let Some(run) = snapshot.run {
                    // A run shown before: nothing it showed is lost (a
                    // failover keeps what any page saw).
                    if let Some(seen) = self.newest.get(&run.start) {
                        assert!(
                            run.steps >= *seen,
                            "run {} was seen at step {seen}, now at {} (event {id}, last {:?}, version {})",
                            run.start,
                            run.steps, self.last, snapshot.version
                        );
                    }
                    let first = run.first_recent_step();
                    let values: Vec<String> = run.recent.iter().cloned().collect();
                    self.values(&run.start, first, &values, known);
                }
                self.version = snapshot.version;
            }
            Update::Delta(delta) => {
                assert!(same, "a delta follows a snapshot of its incarnation");
                assert_eq!(
                    delta.base, self.version,
                    "a delta follows the version before"
                );
                if delta.restart {
                    let start = delta.appended[0].clone();
                    self.values(&start, 0, &delta.appended, known);
                } else if !delta.appended.is_empty() {
                    let (start, steps) = self.run.clone().expect("a run before its steps");
                    assert_eq!(delta.steps - delta.appended.len() as u64, steps, "no gap");
                    self.values(&start, steps + 1, &delta.appended, known);
                }
                self.version = delta.version;
            }
        }
        self.last = Some(id);
    }
}

/// Follows one session's page until `stop`: its stream on one node, then,
/// whenever it ends, resumed (with `Last-Event-ID`) on the other.
async fn follow(
    nodes: [String; 2],
    cookie: String,
    seen: Arc<Mutex<Seen>>,
    stop: CancellationToken,
) {
    let mut known = Trajectories::default();
    let mut turn = 0;
    while !stop.is_cancelled() {
        turn += 1;
        let browser = Browser::at(&nodes[turn % 2]);
        browser.set_cookie(cookie.clone());
        let last = seen.lock().unwrap().last;
        let mut request = browser.get("/events");
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        let Ok(response) = request.send().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if response.status() != 200 {
            // Redis is away (503): try again shortly.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let mut events = support::Events::from(response);
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = events.next_or_end() => next,
            };
            let Some((id, update)) = next else { break };
            seen.lock().unwrap().apply(id, update, &mut known);
        }
    }
}

/// A session's history as Redis keeps it: its log, replayed.
struct History {
    /// Each run's start and the steps committed of it.
    steps: HashMap<String, u64>,
    /// The start of the run it ends with.
    last: String,
    /// The epoch of each entry, in order.
    epochs: Vec<u64>,
}

impl History {
    async fn read(redis: &mut redis::aio::MultiplexedConnection, id: &str) -> History {
        let log: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(format!("hs:{{{id}}}:log"))
            .arg("-")
            .arg("+")
            .query_async(redis)
            .await
            .unwrap();
        let mut history = History {
            steps: HashMap::new(),
            last: String::new(),
            epochs: Vec::new(),
        };
        for entry in &log.ids {
            history.epochs.push(entry.get("epoch").unwrap());
            let op: String = entry.get("op").unwrap();
            let op: serde_json::Value = serde_json::from_str(&op).unwrap();
            match op["op"].as_str().unwrap() {
                "command" if op["command"]["type"] == "set_number" => {
                    history.last = op["command"]["text"].as_str().unwrap().to_owned();
                    history.steps.insert(history.last.clone(), 0);
                }
                "steps" => {
                    *history.steps.get_mut(&history.last).unwrap() += op["count"].as_u64().unwrap();
                }
                _ => {}
            }
        }
        assert!(
            !history.last.is_empty(),
            "the log reaches back to the first command"
        );
        history
    }
}

/// What a session's commands came to.
#[derive(Default, Debug)]
struct Sent {
    /// Every start answered 200.
    every: Vec<String>,
    /// The start of the last command answered 200.
    acked: Option<String>,
    /// Starts sent after it that got no 200 (each may or may not be in).
    unsure: Vec<String>,
    /// Commands answered 200.
    answered: usize,
}

/// Sends `set_number` commands for session `index` every 400 ms, each a
/// new start, to either node in turn, until `stop`.
async fn command(
    nodes: [String; 2],
    cookie: String,
    index: usize,
    sent: Arc<Mutex<Sent>>,
    stop: CancellationToken,
) {
    for k in 0.. {
        if stop.is_cancelled() {
            return;
        }
        let start = format!("{}{index:03}{k:04}", "7".repeat(12));
        let browser = Browser::at(&nodes[k % 2]);
        browser.set_cookie(cookie.clone());
        let answer = browser
            .post("/api/command")
            .header("content-type", "application/json")
            .body(
                serde_json::json!({ "command": Command::SetNumber { text: start.clone() } })
                    .to_string(),
            )
            .send()
            .await;
        let ok = answer.is_ok_and(|response| response.status() == 200);
        {
            let mut sent = sent.lock().unwrap();
            if ok {
                sent.every.push(start.clone());
                sent.acked = Some(start);
                sent.unsure.clear();
                sent.answered += 1;
            } else {
                sent.unsure.push(start);
            }
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_primary_killed_under_load_loses_no_acknowledged_command_and_no_value() {
    let mut sentinels = Sentinels::start().await;
    // A log long enough to hold each session's whole history here.
    let env = [("HAILSTONE_LOG_LEN", "100000")];
    let a = Node::start_with(&sentinels, "a", LEASE_MS, SCAN_MS, &env).await;
    let b = Node::start_with(&sentinels, "b", LEASE_MS, SCAN_MS, &env).await;
    let nodes = [a.url(), b.url()];
    let stop = CancellationToken::new();
    let mut pages = Vec::new();
    let mut commands = Vec::new();
    let mut tasks = Vec::new();
    for index in 0..SESSIONS {
        let browser = Browser::at(&nodes[index % 2]);
        browser
            .command(Command::SetNumber {
                text: format!("{}{index:03}", "9".repeat(16)),
            })
            .await;
        let cookie = browser.cookie().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sent = Arc::new(Mutex::new(Sent::default()));
        tasks.push(tokio::spawn(follow(
            nodes.clone(),
            cookie.clone(),
            seen.clone(),
            stop.clone(),
        )));
        tasks.push(tokio::spawn(command(
            nodes.clone(),
            cookie.clone(),
            index,
            sent.clone(),
            stop.clone(),
        )));
        pages.push((cookie, seen));
        commands.push(sent);
    }
    let progressed = |since: Instant| {
        let pages = &pages;
        async move {
            pages
                .iter()
                .all(|(_, seen)| seen.lock().unwrap().stepped.is_some_and(|at| at > since))
        }
    };
    until(
        Duration::from_secs(20),
        "every page sees its run step",
        || progressed(Instant::now() - Duration::from_millis(200)),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The replica falls behind: it stops for less than the sentinels'
    // down-after (so they still hold it up), and a value bigger than the
    // sockets' buffers fills the way to it, so what the primary takes now
    // never reaches it. That must be neither acknowledged nor shown. The
    // primary dies meanwhile; the replica comes back and is promoted.
    sentinels.replica.signal(libc::SIGSTOP);
    let mut primary = sentinels.primary.connection().await;
    let _: () = redis::cmd("SET")
        .arg("ballast")
        .arg(vec![b'x'; 48 << 20])
        .query_async(&mut primary)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let old_primary = sentinels.primary.port;
    sentinels.primary.kill();
    sentinels.replica.signal(libc::SIGCONT);
    let killed = Instant::now();
    until(
        Duration::from_secs(30),
        "the sentinels promote the replica",
        || async { sentinels.primary_port().await == Some(sentinels.replica.port) },
    )
    .await;
    assert_ne!(sentinels.replica.port, old_primary);
    // Every run steps again, on the new primary.
    until(Duration::from_secs(30), "every run steps again", || {
        progressed(killed)
    })
    .await;
    let answered_before: usize = commands
        .iter()
        .map(|sent| sent.lock().unwrap().answered)
        .sum();
    until(
        Duration::from_secs(30),
        "commands are acknowledged again",
        || async {
            commands
                .iter()
                .map(|sent| sent.lock().unwrap().answered)
                .sum::<usize>()
                > answered_before + SESSIONS
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    for task in tasks {
        task.await.unwrap();
    }

    // Every acknowledged command is in the promoted replica's history (the
    // nodes keep a log long enough for the whole test), every value a page
    // saw is there too, and the session shows its last acknowledged start
    // or a later one that got no answer. Fencing held: the epochs of its
    // log never go back.
    let mut promoted = sentinels.replica.connection().await;
    for ((cookie, seen), sent) in pages.iter().zip(&commands) {
        let id = cookie.split('=').nth(1).unwrap();
        let history = History::read(&mut promoted, id).await;
        let sent = std::mem::take(&mut *sent.lock().unwrap());
        for start in &sent.every {
            assert!(
                history.steps.contains_key(start),
                "acknowledged {start} is lost"
            );
        }
        for (start, newest) in &seen.lock().unwrap().newest {
            let kept = history.steps.get(start).copied().unwrap_or(0);
            assert!(
                kept >= *newest,
                "run {start} was seen at step {newest}; {kept} kept"
            );
        }
        let acked = sent.acked.clone().expect("commands were acknowledged");
        assert!(
            history.last == acked || sent.unsure.contains(&history.last),
            "the session is at {}; last acknowledged {acked}; unanswered after it {:?}",
            history.last,
            sent.unsure
        );
        assert!(
            history.epochs.windows(2).all(|pair| pair[0] <= pair[1]),
            "{:?}",
            history.epochs
        );
        let browser = Browser::at(&a.url());
        browser.set_cookie(cookie.clone());
        let (_, update) = browser.events(None).await.next().await.unwrap();
        let Update::Snapshot(snapshot) = update else {
            panic!("a stream starts with a snapshot");
        };
        assert_eq!(snapshot.run.unwrap().start, history.last);
    }
    for (_, seen) in &pages {
        assert!(seen.lock().unwrap().values > 0);
    }
    drop((a, b));
}
