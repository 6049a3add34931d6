//! A load of pages and commands over the nodes of a cluster, with every
//! value checked as it arrives, and what Redis keeps checked afterwards:
//! for the fault tests (a failover, a rolling restart).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use shared::{
    wire::{Command, EventId, Update},
    Number,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{cluster::until, Browser};

/// The nodes' base URLs, as the test changes them (a node replaced).
#[derive(Clone, Default)]
pub struct Nodes(Arc<Mutex<Vec<String>>>);

impl Nodes {
    pub fn new(urls: Vec<String>) -> Nodes {
        Nodes(Arc::new(Mutex::new(urls)))
    }

    /// The nodes from now on.
    pub fn set(&self, urls: Vec<String>) {
        *self.0.lock().unwrap() = urls;
    }

    /// The `turn`th node, round robin.
    pub fn pick(&self, turn: usize) -> String {
        let urls = self.0.lock().unwrap();
        urls[turn % urls.len()].clone()
    }
}

/// The values of every run seen, by start: computed once, extended on
/// demand.
#[derive(Default)]
pub struct Trajectories(HashMap<String, Vec<String>>);

impl Trajectories {
    /// The value of the run from `start` at `step`.
    pub fn at(&mut self, start: &str, step: u64) -> String {
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
pub struct Seen {
    /// The last event's id.
    last: Option<EventId>,
    /// The version it has (within the incarnation of `last`).
    version: u64,
    /// The run it shows: its start, and the newest step it has.
    run: Option<(String, u64)>,
    /// The newest step seen of each run (by start).
    pub newest: HashMap<String, u64>,
    /// When a value was last received.
    pub stepped: Option<Instant>,
    /// How many values arrived.
    pub values: u64,
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
                    let start = delta.change.appended[0].clone();
                    self.values(&start, 0, &delta.change.appended, known);
                } else if !delta.change.appended.is_empty() {
                    let (start, steps) = self.run.clone().expect("a run before its steps");
                    assert_eq!(
                        delta.change.steps - delta.change.appended.len() as u64,
                        steps,
                        "no gap"
                    );
                    self.values(&start, steps + 1, &delta.change.appended, known);
                }
                self.version = delta.version;
            }
        }
        self.last = Some(id);
    }
}

/// Follows one session's page until `stop`: its stream on one node, then,
/// whenever it ends, resumed (with `Last-Event-ID`) on the next.
async fn follow(nodes: Nodes, cookie: String, seen: Arc<Mutex<Seen>>, stop: CancellationToken) {
    let mut known = Trajectories::default();
    let mut turn = 0;
    while !stop.is_cancelled() {
        turn += 1;
        let browser = Browser::at(&nodes.pick(turn));
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
        let mut events = super::Events::from(response);
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
pub struct History {
    /// Each run's start and the steps committed of it.
    pub steps: HashMap<String, u64>,
    /// The start of the run it ends with.
    pub last: String,
    /// The epoch of each entry, in order.
    pub epochs: Vec<u64>,
}

impl History {
    pub async fn read(redis: &mut redis::aio::MultiplexedConnection, id: &str) -> History {
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
pub struct Sent {
    /// Every start answered 200.
    pub every: Vec<String>,
    /// The start of the last command answered 200.
    pub acked: Option<String>,
    /// Starts sent after it that got no 200 (each may or may not be in).
    pub unsure: Vec<String>,
    /// Commands answered 200.
    pub answered: usize,
}

/// Sends `set_number` commands for session `index` every 400 ms, each a
/// new start, to the nodes in turn, until `stop`.
async fn command(
    nodes: Nodes,
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
        let browser = Browser::at(&nodes.pick(k));
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

/// One session of the load: its cookie, what its page saw, what its
/// commands came to.
pub struct Session {
    pub cookie: String,
    pub seen: Arc<Mutex<Seen>>,
    pub sent: Arc<Mutex<Sent>>,
}

/// Sessions, each with a page following its run and commands changing it.
pub struct Load {
    pub sessions: Vec<Session>,
    tasks: Vec<JoinHandle<()>>,
    stop: CancellationToken,
}

impl Load {
    /// `count` sessions, each started on a node in turn, with its page and
    /// its commands.
    pub async fn start(nodes: &Nodes, count: usize) -> Load {
        let stop = CancellationToken::new();
        let (mut sessions, mut tasks) = (Vec::new(), Vec::new());
        for index in 0..count {
            let browser = Browser::at(&nodes.pick(index));
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
            sessions.push(Session { cookie, seen, sent });
        }
        Load {
            sessions,
            tasks,
            stop,
        }
    }

    /// Waits until every page saw its run step after `since`.
    pub async fn until_every_run_steps(&self, within: Duration, since: Instant) {
        until(within, "every run steps", || async {
            self.sessions
                .iter()
                .all(|s| s.seen.lock().unwrap().stepped.is_some_and(|at| at > since))
        })
        .await;
    }

    /// Commands answered 200 so far, in all.
    pub fn answered(&self) -> usize {
        self.sessions
            .iter()
            .map(|s| s.sent.lock().unwrap().answered)
            .sum()
    }

    /// Waits until `more` commands more than now are answered.
    pub async fn until_answered(&self, within: Duration, more: usize) {
        let target = self.answered() + more;
        until(within, "commands are answered", || async {
            self.answered() >= target
        })
        .await;
    }

    /// Stops the pages and commands; the sessions, for the checks.
    pub async fn stop(self) -> Vec<Session> {
        self.stop.cancel();
        for task in self.tasks {
            task.await.unwrap();
        }
        self.sessions
    }
}

/// What Redis keeps of every session agrees with what was seen and sent:
/// every acknowledged command is in its log (which the nodes must keep
/// long enough for the whole test), every value a page saw is there too,
/// the session is at its last acknowledged start or a later one that got
/// no answer, and the epochs of its log never go back (fencing held). And
/// the node at `node` shows each at that start.
pub async fn check(
    sessions: &[Session],
    redis: &mut redis::aio::MultiplexedConnection,
    node: &str,
) {
    for session in sessions {
        let id = session.cookie.split('=').nth(1).unwrap();
        let history = History::read(redis, id).await;
        let sent = std::mem::take(&mut *session.sent.lock().unwrap());
        for start in &sent.every {
            assert!(
                history.steps.contains_key(start),
                "acknowledged {start} is lost"
            );
        }
        for (start, newest) in &session.seen.lock().unwrap().newest {
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
        let browser = Browser::at(node);
        browser.set_cookie(session.cookie.clone());
        let (_, update) = browser.events(None).await.next().await.unwrap();
        let Update::Snapshot(snapshot) = update else {
            panic!("a stream starts with a snapshot");
        };
        assert_eq!(snapshot.run.unwrap().start, history.last);
        assert!(session.seen.lock().unwrap().values > 0);
    }
}
