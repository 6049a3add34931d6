//! Cluster mode with real processes: a redis-server of the test's own and
//! server nodes sharing it, killed (SIGKILL) and paused (SIGSTOP) for real.

mod support;

use std::time::{Duration, Instant};

use shared::wire::{Command, EventId, Status, Update};
use support::{
    cluster::{until, Node, Redis},
    search::{self, checked, expected_csv, search, searcher},
    trajectory, Browser, Events,
};

/// The lease and scan period of the nodes of these tests (ms).
const LEASE_MS: u64 = 1000;
const SCAN_MS: u64 = 200;

fn set_number(text: &str) -> Command {
    Command::SetNumber { text: text.into() }
}

fn set_running(running: bool) -> Command {
    Command::SetRunning { running }
}

/// What one page has seen of a run: every value in order, checked as it
/// arrives: no gap (each delta follows the version before), versions
/// strictly increasing.
struct Page {
    /// The run's values from step `first`.
    values: Vec<String>,
    /// The step of `values[0]`.
    first: u64,
    /// The last event's id.
    last: Option<EventId>,
    /// The state's version and status.
    version: u64,
    status: Status,
    /// Snapshots received (the first, and any reset).
    snapshots: usize,
}

impl Page {
    fn new() -> Page {
        Page {
            values: Vec::new(),
            first: 0,
            last: None,
            version: 0,
            status: Status::Idle,
            snapshots: 0,
        }
    }

    fn apply(&mut self, id: EventId, update: Update) {
        if let Some(last) = self.last {
            if last.incarnation == id.incarnation {
                assert!(
                    id.cursor.version > last.cursor.version,
                    "versions go forward: {last} then {id}"
                );
            }
        }
        match update {
            Update::Snapshot(snapshot) => {
                self.snapshots += 1;
                let run = snapshot.run.expect("a run");
                self.first = run.first_recent_step();
                self.values = run.recent.into_iter().collect();
                self.version = snapshot.version;
                self.status = snapshot.status;
            }
            Update::Delta(delta) => {
                assert_eq!(
                    delta.base, self.version,
                    "a delta follows the version before it"
                );
                if delta.restart {
                    self.first = 0;
                    self.values = delta.change.appended;
                } else {
                    self.values.extend(delta.change.appended);
                }
                self.version = delta.version;
                self.status = delta.status.unwrap_or(self.status);
            }
        }
        self.last = Some(id);
    }

    /// The step of the newest value.
    fn steps(&self) -> u64 {
        (self.first + self.values.len() as u64).saturating_sub(1)
    }

    /// Reads `events` until `done` holds.
    async fn follow(&mut self, events: &mut Events, done: impl Fn(&Page) -> bool) {
        while !done(self) {
            let (id, update) = events.next().await.expect("the stream goes on");
            self.apply(id, update);
        }
    }

    /// Every value seen is the run's own, at its step.
    fn assert_exact(&self, start: u64) {
        let expected = trajectory(start);
        let first = self.first as usize;
        assert_eq!(
            self.values,
            expected[first..first + self.values.len()],
            "values from step {first}"
        );
    }
}

/// A redis-server and two nodes, "a" and "b", on it.
async fn two_nodes() -> (Redis, Node, Node) {
    let redis = Redis::start().await;
    let a = Node::start(&redis, "a", LEASE_MS, SCAN_MS).await;
    let b = Node::start(&redis, "b", LEASE_MS, SCAN_MS).await;
    (redis, a, b)
}

/// Waits until `node` has seen Redis answer (`up`) or not.
async fn until_store(node: &Node, up: bool) {
    let what = if up { "Redis back" } else { "Redis down" };
    until(Duration::from_secs(10), what, || async {
        node.metric("hailstone_store_up").await == f64::from(u8::from(up))
    })
    .await;
}

/// A browser on `node` using the session of `other`.
fn same_session(node: &Node, other: &Browser) -> Browser {
    let browser = Browser::at(&node.url());
    browser.set_cookie(other.cookie().expect("a session"));
    browser
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_on_one_node_shows_on_anothers_stream_and_streams_resume_on_any_node() {
    let (_redis, a, b) = two_nodes().await;

    let on_a = Browser::at(&a.url());
    on_a.command(set_number("27")).await;
    let on_b = same_session(&b, &on_a);
    let mut page = Page::new();
    let mut stream_b = on_b.events(None).await;
    page.follow(&mut stream_b, |page| page.steps() >= 10).await;

    // A command on A shows on B's stream.
    let paused_at = on_a.command(set_running(false)).await;
    page.follow(&mut stream_b, |page| page.version >= paused_at)
        .await;
    assert_eq!(page.status, Status::Paused);
    page.assert_exact(27);

    // And one on B (it started the run elsewhere) shows on A's.
    let mut on_a_page = Page::new();
    let mut stream_a = on_a.events(None).await;
    on_a_page
        .follow(&mut stream_a, |page| page.snapshots == 1)
        .await;
    assert_eq!(
        on_a_page.version, page.version,
        "both nodes hold the same state"
    );
    let resumed_at = on_b.command(set_running(true)).await;
    on_a_page
        .follow(&mut stream_a, |page| {
            page.version >= resumed_at && page.steps() >= 20
        })
        .await;
    on_a_page.assert_exact(27);

    // B's page, its stream cut, resumes on A from its last event: exactly
    // what it missed, as one delta.
    drop(stream_b);
    let missed_from = page.version;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut resumed = on_a.events(page.last).await;
    let (id, update) = resumed.next().await.unwrap();
    let Update::Delta(delta) = &update else {
        panic!("a resumed stream gets a delta, not {update:?}");
    };
    assert_eq!(delta.base, missed_from);
    assert!(
        !delta.change.appended.is_empty(),
        "steps were taken meanwhile"
    );
    page.apply(id, update);
    page.follow(&mut resumed, |page| page.steps() >= 30).await;
    page.assert_exact(27);
    assert_eq!(page.snapshots, 1, "no snapshot after the first");

    // A run begun on A says on B's copy when it began, as A stamped it.
    on_a.command(set_number("97")).await;
    let on_a_said = on_a.events(None).await.snapshot().await;
    assert!(on_a_said.started_at.is_some());
    let mut on_b_stream = on_b.events(None).await;
    let mut on_b_said = on_b_stream.snapshot().await;
    while on_b_said.run.as_ref().is_none_or(|run| run.start != "97") {
        match on_b_stream.next().await {
            Some((_, Update::Delta(delta))) => on_b_said.apply(&delta, usize::MAX).unwrap(),
            Some((_, Update::Snapshot(snapshot))) => on_b_said = snapshot,
            None => panic!("B's stream ended before the new run showed"),
        }
    }
    assert_eq!(on_b_said.started_at, on_a_said.started_at);
}

/// Starts a run of `start` through `owner` (so it owns the run's lease),
/// and follows it on `watcher` until a few steps are seen.
async fn run_owned_by(owner: &Node, watcher: &Node, start: &str) -> (Browser, Page, Events) {
    let on_owner = Browser::at(&owner.url());
    on_owner.command(set_number(start)).await;
    let on_watcher = same_session(watcher, &on_owner);
    let mut page = Page::new();
    let mut events = on_watcher.events(None).await;
    page.follow(&mut events, |page| page.steps() >= 5).await;
    (on_watcher, page, events)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_owners_run_resumes_on_another_node_within_the_lease_and_scan() {
    let (_redis, mut a, b) = two_nodes().await;
    // 27 runs 111 steps: at 50 ms, long enough to outlive the kill.
    let (_, mut page, mut events) = run_owned_by(&a, &b, "27").await;

    let before = page.steps();
    a.kill();
    let killed = Instant::now();
    page.follow(&mut events, |page| page.steps() > before + 1)
        .await;
    let resumed_after = killed.elapsed();
    // The bound is lease + scan; a step interval and scheduling on a busy
    // machine come on top.
    assert!(
        resumed_after < Duration::from_millis(2 * (LEASE_MS + SCAN_MS)),
        "resumed after {resumed_after:?}"
    );
    page.follow(&mut events, |page| page.status == Status::Finished)
        .await;
    // Nothing lost, nothing repeated, nothing different: the whole run,
    // through the kill.
    page.assert_exact(27);
    assert_eq!(page.steps(), 111);
    assert_eq!(b.metric("hailstone_takeovers_total").await, 1.0);
    assert!(b.logged().contains("took over a run"), "{}", b.logged());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_owner_that_comes_back_is_fenced_and_stops() {
    let (_redis, a, b) = two_nodes().await;
    let (_, mut page, mut events) = run_owned_by(&a, &b, "27").await;

    a.signal(libc::SIGSTOP);
    let before = page.steps();
    // B takes the run over once A's lease lapses.
    page.follow(&mut events, |page| page.steps() > before + 3)
        .await;
    tokio::time::sleep(Duration::from_millis(3 * LEASE_MS)).await;
    a.signal(libc::SIGCONT);
    // A's task tries to commit its next step: refused, counted, stopped.
    until(
        Duration::from_secs(10),
        "A counts a fenced commit",
        || async { a.metric("hailstone_fenced_commits_total").await >= 1.0 },
    )
    .await;
    until(Duration::from_secs(10), "A's task stops", || async {
        a.metric("hailstone_running_tasks").await == 0.0
    })
    .await;
    page.follow(&mut events, |page| page.status == Status::Finished)
        .await;
    page.assert_exact(27);
    assert_eq!(page.steps(), 111);
    assert_eq!(b.metric("hailstone_fenced_commits_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_refuses_commands_and_pauses_steps_and_runs_continue_when_it_is_back() {
    let (mut redis, a, b) = two_nodes().await;
    // A long run: 60 nines take hundreds of steps.
    let start = "9".repeat(60);
    let (on_b, mut page, mut events) = run_owned_by(&a, &b, &start).await;

    redis.kill();
    // The stream ends (the page shows "Reconnecting…").
    while let Some((id, update)) = events.next().await {
        page.apply(id, update);
    }
    let stopped_at = page.version;
    let (status, body) = on_b.send(set_running(false)).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("unsaved"),
        "the page says it could not be saved: {body}"
    );
    let refused = on_b.get("/events").send().await.unwrap();
    assert_eq!(refused.status(), 503);

    redis.restart().await;
    // Both nodes reconnect by themselves; the run goes on from what Redis
    // holds. A page resuming from before the outage gets a snapshot (Redis
    // is another process now: versions after its data are not trusted).
    until_store(&b, true).await;
    let mut events = on_b.events(page.last).await;
    let (id, update) = events.next().await.unwrap();
    assert!(matches!(update, Update::Snapshot(_)), "{update:?}");
    assert_ne!(id.incarnation, page.last.unwrap().incarnation);
    let mut after = Page::new();
    after.apply(id, update);
    assert!(after.version >= stopped_at - 1);
    after
        .follow(&mut events, |page| page.steps() > page.first + 5)
        .await;
    assert_eq!(after.status, Status::Running);
    // Commands work again.
    assert_eq!(on_b.send(set_running(false)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_restarted_empty_gives_pages_a_reset_and_never_an_old_version_again() {
    let (mut redis, a, b) = two_nodes().await;
    let start = "9".repeat(60);
    let (on_b, mut page, mut events) = run_owned_by(&a, &b, &start).await;

    redis.kill();
    for entry in std::fs::read_dir(redis.dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }
    while let Some((id, update)) = events.next().await {
        page.apply(id, update);
    }
    until_store(&b, false).await;
    redis.restart().await;
    // The session is gone with Redis's data: the page's stream, resumed
    // from its last event, is told so with a reset (an idle snapshot of no
    // session), never a delta.
    until_store(&b, true).await;
    let mut events = on_b.events(page.last).await;
    let (id, update) = events.next().await.unwrap();
    let Update::Snapshot(snapshot) = update else {
        panic!("a reset, not {update:?}");
    };
    assert_ne!(id.incarnation, page.last.unwrap().incarnation);
    assert_eq!(snapshot.run, None);
    // A's task stopped: nothing steps a session that is gone.
    until(Duration::from_secs(10), "A's task stops", || async {
        a.metric("hailstone_running_tasks").await == 0.0
    })
    .await;
    // The page's next command starts a new session.
    assert_eq!(on_b.send(set_number("6")).await.0, 200);
}

/// A lock section dropped while it waits for Redis (a stream whose browser
/// left while it caught up, a command whose request was cut off) must not
/// leave the node's copy stale: the next one reads the store again.
#[tokio::test(flavor = "multi_thread")]
async fn lock_sections_dropped_while_redis_is_slow_leave_no_stale_copy() {
    use server::{backend::Backend, cluster::Cluster, id::RunId, session::Session};
    use shared::{Collatz, Settings};
    use tokio_util::sync::CancellationToken;

    let redis = Redis::start().await;
    let config = server::config::Cluster {
        redis_url: redis.url(),
        ..Default::default()
    };
    let ttl = Duration::from_secs(600);
    let node = |name: &str| {
        let (name, config) = (name.to_owned(), config.clone());
        async move { Cluster::connect(name, &config, ttl).await.unwrap().0 }
    };
    let (a, b) = (
        Backend::Cluster(node("a").await),
        Backend::Cluster(node("b").await),
    );
    let id = RunId::random();
    let fresh = Collatz::new(Settings::default());
    a.create(id, &fresh).await.unwrap();
    let copy = |backend: &Backend<shared::collatz::Run>| {
        Session::new(
            id,
            fresh.clone(),
            backend.ledger(id, &fresh),
            0,
            CancellationToken::new(),
            Default::default(),
        )
    };
    let (on_a, on_b) = (copy(&a), copy(&b));
    // B changes the session; A learns that it must read the store (as after
    // a lost connection to Redis's bells).
    let version = on_b.command(&set_number("27"), |_| {}).await.unwrap();
    on_a.distrust();
    // A's read waits for a Redis that does not answer, and is dropped.
    redis.signal(libc::SIGSTOP);
    let dropped = tokio::time::timeout(Duration::from_millis(200), on_a.since(None)).await;
    redis.signal(libc::SIGCONT);
    assert!(dropped.is_err(), "the read waited for Redis");
    // The next read brings A's copy up to B's change.
    let (id, update) = on_a.since(None).await.unwrap();
    assert_eq!(id.cursor.version, version);
    let Update::Snapshot(snapshot) = update else {
        panic!("a first read is a snapshot, not {update:?}");
    };
    assert_eq!(snapshot.run.unwrap().start, "27");

    // A's command is sent, and dropped before Redis answers; Redis then
    // commits it. A's copy must show it (A ignores its own bells).
    redis.signal(libc::SIGSTOP);
    let dropped = tokio::time::timeout(
        Duration::from_millis(200),
        on_a.command(&set_number("97"), |_| {}),
    )
    .await;
    redis.signal(libc::SIGCONT);
    assert!(dropped.is_err(), "the commit waited for Redis");
    let (id, update) = on_a.since(Some(id)).await.unwrap();
    assert_eq!(id.cursor.version, version + 1);
    let Update::Delta(delta) = update else {
        panic!("a delta from the page's last event, not {update:?}");
    };
    assert!(delta.restart, "a new run: {delta:?}");
    assert_eq!(delta.change.appended, ["97"]);
}

/// A node at its cap lets go of its copy of an idle session. It deletes
/// the session from Redis only when no other node uses it: a session whose
/// page is on another node lives on there.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_at_its_cap_deletes_only_sessions_no_other_node_uses() {
    let redis = Redis::start().await;
    let full = [("HAILSTONE_MAX_SESSIONS", "1")];
    let a = Node::start_with(&redis, "a", LEASE_MS, SCAN_MS, &full).await;
    let b = Node::start(&redis, "b", LEASE_MS, SCAN_MS).await;
    let paused_on_a = || async {
        let browser = Browser::at(&a.url());
        browser.command(set_number("27")).await;
        browser.command(set_running(false)).await;
        browser
    };
    // A paused session made on A, and watched on B.
    let first = paused_on_a().await;
    let on_b = same_session(&b, &first);
    let mut page = Page::new();
    let mut stream = on_b.events(None).await;
    page.follow(&mut stream, |page| page.snapshots == 1).await;
    // A holds one session: each new visitor's first command makes room.
    // The second evicts the first; another visitor evicts the second.
    let second = paused_on_a().await;
    Browser::at(&a.url()).command(set_number("7")).await;
    assert_eq!(a.metric("hailstone_sessions_evicted_total").await, 2.0);
    // The second, used nowhere else, is gone from Redis; the first is not.
    let key = |browser: &Browser| format!("hs:{{{}}}", browser.first_run());
    let mut check = redis.connection().await;
    for (browser, kept) in [(&first, true), (&second, false)] {
        let exists: bool = redis::cmd("EXISTS")
            .arg(key(browser))
            .query_async(&mut check)
            .await
            .unwrap();
        assert_eq!(exists, kept);
    }
    // The first goes on through B as it was: no reset, a new run.
    on_b.command(set_number("97")).await;
    let resumed = on_b.command(set_running(true)).await;
    page.follow(&mut stream, |page| {
        page.version >= resumed && page.steps() >= 5
    })
    .await;
    assert_eq!((page.first, page.values[0].as_str()), (0, "97"));
    page.assert_exact(97);
    assert_eq!(page.snapshots, 1, "no snapshot after the first");
}

/// The rate of new sessions per client address holds for the whole
/// cluster, not per node: behind a round-robin balancer a client does not
/// get nodes × the limit.
#[tokio::test(flavor = "multi_thread")]
async fn new_sessions_per_address_are_counted_across_the_cluster() {
    let redis = Redis::start().await;
    let limit = [("HAILSTONE_NEW_SESSIONS_PER_MINUTE", "3")];
    let a = Node::start_with(&redis, "a", LEASE_MS, SCAN_MS, &limit).await;
    let b = Node::start_with(&redis, "b", LEASE_MS, SCAN_MS, &limit).await;
    // Three first commands from 127.0.0.1, spread over both nodes.
    for node in [&a, &b, &a] {
        Browser::at(&node.url()).command(set_number("27")).await;
    }
    // A fourth is refused on either node, though each started fewer.
    for node in [&b, &a] {
        let (status, body) = Browser::at(&node.url()).send(set_number("27")).await;
        assert_eq!(status, 429, "{body}");
    }
    assert_eq!(b.metric("hailstone_sessions_refused_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runs_of_one_session_are_fenced_and_fail_over_each_on_its_own() {
    let (_redis, mut a, b) = two_nodes().await;
    // The first run starts on A, which owns its lease.
    let on_a = Browser::at(&a.url());
    on_a.command(set_number("27")).await;
    let first = on_a.first_run();
    // The second is added and started on B, which owns its lease.
    let on_b = same_session(&b, &on_a);
    let second = on_b.new_run().await;
    let (status, body) = on_b.command_to(&second, set_number("97")).await;
    assert_eq!(status, 200, "{body}");
    // A lists both (it learns of the second from Redis), newest first.
    let mut listed_on_a = on_a.events_of(&first).await;
    let runs = listed_on_a.next_runs().await;
    let ids: Vec<_> = runs.runs.iter().map(|run| run.id.clone()).collect();
    assert_eq!(ids, [second.clone(), first.clone()]);
    // Both followed on B; then A dies: only the first run is taken over.
    let mut first_page = Page::new();
    let mut first_events = on_b.events_of(&first).await;
    first_page
        .follow(&mut first_events, |page| page.steps() >= 5)
        .await;
    let mut second_page = Page::new();
    let mut second_events = on_b.events_of(&second).await;
    second_page
        .follow(&mut second_events, |page| page.steps() >= 5)
        .await;
    a.kill();
    let before = first_page.steps();
    first_page
        .follow(&mut first_events, |page| page.steps() > before + 1)
        .await;
    second_page
        .follow(&mut second_events, |page| page.status == Status::Finished)
        .await;
    first_page
        .follow(&mut first_events, |page| page.status == Status::Finished)
        .await;
    first_page.assert_exact(27);
    second_page.assert_exact(97);
    assert_eq!(
        b.metric("hailstone_takeovers_total").await,
        1.0,
        "B took over A's run alone: its own never lapsed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_watched_through_another_node_runs_on_and_pauses_once_nobody_watches() {
    let redis = Redis::start().await;
    let env = [
        ("HAILSTONE_UNWATCHED", "pause"),
        ("HAILSTONE_UNWATCHED_MINUTES", "1"),
    ];
    let a = Node::start_with(&redis, "a", LEASE_MS, SCAN_MS, &env).await;
    let b = Node::start_with(&redis, "b", LEASE_MS, SCAN_MS, &env).await;
    // A owns the run (a step a second; 837799 takes 524); its page is on B.
    let on_a = Browser::at(&a.url());
    on_a.command(Command::SetInterval { ms: 1000 }).await;
    on_a.command(set_number("837799")).await;
    let on_b = same_session(&b, &on_a);
    let mut page = Page::new();
    let mut events = on_b.events(None).await;
    page.follow(&mut events, |page| page.steps() >= 1).await;
    // Watched through B alone for longer than the wait and A's checks: A
    // sees B's marks and keeps it running.
    let from = page.steps();
    page.follow(&mut events, |page| page.steps() >= from + 72)
        .await;
    assert_eq!(page.status, Status::Running);
    // Nobody watches from now on: a minute (and a check) later it is
    // paused, by its owner. Nothing may be asked meanwhile (a request for
    // the run counts as a visit), so the test waits the wait itself.
    drop(events);
    tokio::time::sleep(Duration::from_secs(70)).await;
    let mut events = on_b.events(None).await;
    let (_, Update::Snapshot(snapshot)) = events.next().await.unwrap() else {
        panic!("a stream begins with a snapshot");
    };
    assert_eq!(snapshot.status, Status::Paused);
    assert!(
        a.logged().contains("a run nobody watched was paused"),
        "{}",
        a.logged()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_search_whose_node_is_killed_goes_on_elsewhere_and_its_records_are_exact() {
    const TO: u64 = 20_000_000;
    let redis = Redis::start().await;
    let env = [
        ("HAILSTONE_SEARCH_THREADS", "1"),
        ("HAILSTONE_SEARCH_STRETCH", "100000"),
    ];
    let mut a = Node::start_with(&redis, "a", LEASE_MS, SCAN_MS, &env).await;
    let b = Node::start_with(&redis, "b", LEASE_MS, SCAN_MS, &env).await;
    let (on_a, run) = searcher(&a.url()).await;
    let (status, body) = search(&on_a, &run, "1", &TO.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let on_b = same_session(&b, &on_a);
    // Node a checks it (its command started the task); b follows.
    let before = checked(
        &search::until(&on_b, &run, Duration::from_secs(60), |s| {
            checked(s) >= TO / 10
        })
        .await,
    );
    assert!(before < TO, "the search ended before the kill");
    a.kill();
    let done = search::until(&on_b, &run, Duration::from_secs(300), |s| {
        s.status == Status::Finished
    })
    .await;
    assert_eq!(checked(&done), TO);
    assert_eq!(b.metric("hailstone_takeovers_total").await, 1.0);
    // Exactly the engine's records of the range, checked here on one core.
    assert_eq!(search::csv(&on_b, &run).await, expected_csv(1, TO));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_search_is_split_over_the_nodes_and_a_node_killed_mid_chunk_loses_nothing() {
    const TO: u64 = 30_000_000;
    let redis = Redis::start().await;
    let env = [
        ("HAILSTONE_SEARCH_THREADS", "1"),
        ("HAILSTONE_SEARCH_STRETCH", "500000"),
    ];
    let a = Node::start_with(&redis, "a", LEASE_MS, SCAN_MS, &env).await;
    let mut b = Node::start_with(&redis, "b", LEASE_MS, SCAN_MS, &env).await;
    let (on_a, run) = searcher(&a.url()).await;
    let (status, body) = search(&on_a, &run, "1", &TO.to_string()).await;
    assert_eq!(status, 200, "{body}");
    // Node a owns the run; both nodes take its chunks.
    until(
        Duration::from_secs(60),
        "both nodes take chunks",
        || async {
            a.metric("hailstone_chunks_done_total").await >= 5.0
                && b.metric("hailstone_chunks_done_total").await >= 5.0
        },
    )
    .await;
    // Killed while it holds a chunk's lease (a chunk takes it ~60 ms).
    let redis_link = redis.connection().await;
    until(Duration::from_secs(30), "b holds a chunk", || {
        let mut redis_link = redis_link.clone();
        async move {
            let leases: Vec<String> = redis::cmd("KEYS")
                .arg("hs:chunk:*:lease")
                .query_async(&mut redis_link)
                .await
                .unwrap();
            for lease in leases {
                let holder: Option<String> = redis::cmd("GET")
                    .arg(&lease)
                    .query_async(&mut redis_link)
                    .await
                    .unwrap();
                if holder.as_deref() == Some("b") {
                    return true;
                }
            }
            false
        }
    })
    .await;
    b.kill();
    let before = checked(&search::state(&on_a, &run).await);
    assert!(before < TO, "the search ended before the kill");
    let done = search::until(&on_a, &run, Duration::from_secs(300), |s| {
        s.status == Status::Finished
    })
    .await;
    assert_eq!(checked(&done), TO);
    assert!(
        a.logged()
            .contains("chunks whose node stopped were put back"),
        "{}",
        a.logged()
    );
    assert_eq!(search::csv(&on_a, &run).await, expected_csv(1, TO));
}
