//! The runtime with a task kind of the tests' own, a tally: proof that the
//! runtime (sessions, the lock section, the one-stepper fence, tasks, the
//! store, restore, streams) assumes nothing of Collatz. A tally counts from
//! 0 up to the target it was given, one per step, and is done there; a page
//! is sent the count, and a store keeps it.

mod support;

use std::{collections::HashMap, sync::Arc, time::Duration};

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use server::{
    session::Session,
    store::{SqliteStore, Store},
    Runtime,
};
use shared::{
    input::InputError,
    task::{Control, Task, Unrestorable},
    wire::{self, CommandError, SnapshotOf, Status, UpdateOf, Window},
};

#[derive(Debug, Clone)]
struct Tally {
    target: u64,
    count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
enum Order {
    CountTo { target: u64 },
    Run { on: bool },
    Every { ms: u32 },
    Drop,
}

/// What the page is sent: the count after the change, how many counts it
/// adds, and the target when the change begins a tally.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Counted {
    target: Option<u64>,
    count: u64,
    added: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Shown {
    target: u64,
    count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Kept {
    tally: Option<(u64, u64)>,
    began: Option<u64>,
}

impl wire::Change for Counted {
    fn steps(&self) -> u64 {
        self.count
    }
    fn values(&self) -> usize {
        self.added as usize
    }
    fn merge(&mut self, next: Counted) {
        self.count = next.count;
        self.added += next.added;
    }
}

impl wire::View<Counted> for Shown {
    fn steps(&self) -> u64 {
        self.count
    }
    fn values(&self) -> usize {
        1
    }
    fn begin(change: &Counted, _: Window) -> Shown {
        Shown {
            target: change.target.unwrap_or_default(),
            count: change.count,
        }
    }
    fn apply(&mut self, change: &Counted, _: Window) {
        self.count = change.count;
    }
}

impl Task for Tally {
    type Settings = u32; // the step interval of a new session
    type Command = Order;
    type Input = u64;
    type View = Shown;
    type Change = Counted;
    type Summary = u64;
    type Saved = Kept;
    type Work = ();
    type Plan = ();

    fn interval_ms(settings: &u32) -> u32 {
        *settings
    }
    fn control(order: &Order) -> Control<'_, u64> {
        match order {
            Order::CountTo { target } => Control::Begin(target),
            Order::Run { on } => Control::Running(*on),
            Order::Every { ms } => Control::Interval(*ms),
            Order::Drop => Control::Cancel,
        }
    }
    fn begin(_: &u32, target: &u64) -> Result<Tally, CommandError> {
        match target {
            0 => Err(InputError::Zero.into()),
            _ => Ok(Tally {
                target: *target,
                count: 0,
            }),
        }
    }
    fn done(&self) -> bool {
        self.count == self.target
    }
    fn steps(&self) -> u64 {
        self.count
    }
    fn step(&mut self, _: &u32) -> Counted {
        self.count += 1;
        Counted {
            target: None,
            count: self.count,
            added: 1,
        }
    }
    fn summary(&self) -> u64 {
        self.target
    }
    fn view(&self) -> Shown {
        Shown {
            target: self.target,
            count: self.count,
        }
    }
    fn since(&self, from: Option<u64>) -> Option<Counted> {
        Some(Counted {
            target: from.is_none().then_some(self.target),
            count: self.count,
            added: self.count - from.unwrap_or(0),
        })
    }
    fn save(run: Option<(&Tally, u64)>) -> Kept {
        Kept {
            tally: run.map(|(tally, _)| (tally.target, tally.count)),
            began: run.map(|(_, began)| began),
        }
    }
    fn restore(_: &u32, kept: &Kept) -> Result<Option<(Tally, Option<u64>)>, Unrestorable> {
        match kept.tally {
            Some((target, count)) if count > target => Err(Unrestorable("counted past the target")),
            Some((target, count)) => Ok(Some((Tally { target, count }, kept.began))),
            None => Ok(None),
        }
    }
}

fn runtime(interval_ms: u32, store: Arc<dyn Store<Kept>>) -> Arc<Runtime<Tally>> {
    Runtime::new(&support::config(), interval_ms, store)
}

fn memory() -> Arc<dyn Store<Kept>> {
    Arc::new(server::store::MemoryStore::default())
}

/// Lets every ready task run until none is left to run.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

async fn count(session: &Session<Tally>) -> u64 {
    session.snapshot().await.run.map_or(0, |run| run.count)
}

#[tokio::test(start_paused = true)]
async fn a_tally_counts_one_per_interval_to_its_target_then_its_task_ends() {
    let runtime = runtime(100, memory());
    let session = runtime.sessions.create().unwrap().session;
    let refused = runtime
        .command(&session, Order::CountTo { target: 0 })
        .await;
    assert_eq!(refused, Err(InputError::Zero.into()), "the kind validates");
    runtime
        .command(&session, Order::CountTo { target: 5 })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(count(&session).await, 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    settle().await;
    let snapshot = session.snapshot().await;
    assert_eq!(snapshot.status, Status::Finished);
    assert_eq!(snapshot.run.unwrap().count, 5);
    assert_eq!(runtime.tasks.len(), 0);
    runtime.stop().await;
}

/// The pages of a session of several runs hear of a run that changes state
/// from its session's roster at once, not at their next look at the list;
/// a step that only counts on does not ring it.
#[tokio::test(start_paused = true)]
async fn a_run_that_changes_state_rings_its_sessions_roster_and_a_step_does_not() {
    let runtime = runtime(100, memory());
    let session = runtime.sessions.create().unwrap().session;
    let roster = runtime.rosters.join(session.id().session);
    let mut moved = roster.moved();
    let mut rang = |expected: bool, why: &str| {
        assert_eq!(moved.has_changed().unwrap(), expected, "{why}");
        moved.mark_unchanged();
    };
    let order = |order| runtime.command(&session, order);
    order(Order::CountTo { target: 3 }).await.unwrap();
    rang(true, "idle to running");
    order(Order::Every { ms: 100 }).await.unwrap();
    rang(false, "the interval is not a state");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(count(&session).await, 1);
    rang(false, "a step that only counts");
    order(Order::Run { on: false }).await.unwrap();
    rang(true, "running to paused");
    order(Order::Run { on: true }).await.unwrap();
    rang(true, "paused to running");
    tokio::time::sleep(Duration::from_millis(250)).await;
    settle().await;
    assert_eq!(session.snapshot().await.status, Status::Finished);
    rang(true, "the step that reached the target");
    runtime.stop().await;
}

#[derive(Debug, Clone)]
enum Event {
    Order(usize, Order),
    Wait(u64),
}

fn any_event(sessions: usize) -> impl Strategy<Value = Event> {
    let order = prop_oneof![
        (0u64..30).prop_map(|target| Order::CountTo { target }),
        any::<bool>().prop_map(|on| Order::Run { on }),
        prop_oneof![Just(0u32), Just(50), Just(100)].prop_map(|ms| Order::Every { ms }),
        Just(Order::Drop),
    ];
    prop_oneof![
        3 => (0..sessions, order).prop_map(|(at, order)| Event::Order(at, order)),
        2 => (0u64..400).prop_map(Event::Wait),
    ]
}

/// Plays `events` on three runs of one session at once. After each:
/// exactly one task per running run and none for the others; a run that
/// was not running did not change over a wait, and an order to one run
/// changed no other; each page, fed only the updates its session streams, shows
/// the session's state, and every update's version is newer than the last.
async fn play(events: Vec<Event>) -> Result<(), TestCaseError> {
    let runtime = runtime(100, memory());
    // Three runs of one session: its first, and two added beside it.
    let first = runtime.sessions.create().unwrap().session;
    let session = first.id().session;
    let added = (1..3).map(|number| {
        runtime
            .sessions
            .create_run(session, number)
            .unwrap()
            .session
    });
    let sessions: Vec<_> = std::iter::once(first).chain(added).collect();
    // What each page was sent last, and what it shows.
    let mut pages: HashMap<usize, (Option<wire::EventId>, Option<SnapshotOf<Shown>>)> =
        HashMap::new();
    for event in events {
        let before = futures::future::join_all(sessions.iter().map(|s| s.snapshot())).await;
        match &event {
            Event::Order(at, order) => {
                let _ = runtime.command(&sessions[*at], order.clone()).await;
            }
            Event::Wait(ms) => tokio::time::sleep(Duration::from_millis(*ms)).await,
        }
        settle().await;
        let mut running = 0;
        for (at, session) in sessions.iter().enumerate() {
            let now = session.snapshot().await;
            let ordered = matches!(&event, Event::Order(to, _) if *to == at);
            if before[at].status != Status::Running && !ordered {
                prop_assert_eq!(&now, &before[at], "session {} changed by itself", at);
            }
            running += usize::from(now.status == Status::Running);
            let (last, shown) = pages.entry(at).or_default();
            if let Some((id, update)) = session.since(*last).await {
                match (update, shown.as_mut()) {
                    (UpdateOf::Snapshot(snapshot), _) => *shown = Some(snapshot),
                    (UpdateOf::Delta(delta), Some(page)) => {
                        prop_assert!(delta.version > page.version, "versions grow");
                        prop_assert!(page.apply(&delta, 1).is_ok(), "a delta follows");
                    }
                    (UpdateOf::Delta(_), None) => prop_assert!(false, "a delta before a snapshot"),
                }
                *last = Some(id);
            }
            prop_assert_eq!(shown.as_ref(), Some(&now), "page {} follows", at);
        }
        prop_assert_eq!(runtime.tasks.len(), running, "one task per running session");
    }
    runtime.stop().await;
    prop_assert_eq!(runtime.tasks.len(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn runs_of_any_kind_step_alone_and_once(events in proptest::collection::vec(any_event(3), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(play(events))?;
    }
}

/// A tally stored in SQLite comes back after a restart, running, from the
/// count it was saved at, with versions above any published before.
#[tokio::test(start_paused = true)]
async fn a_tally_survives_a_restart_and_runs_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tally.db");
    let (id, count_before, version_before) = {
        let runtime = runtime(10, Arc::new(SqliteStore::<Kept>::open(&path).unwrap()));
        let session = runtime.sessions.create().unwrap().session;
        runtime
            .command(&session, Order::CountTo { target: 10_000 })
            .await
            .unwrap();
        // Checkpoints are due every 32 versions and a second.
        tokio::time::sleep(Duration::from_millis(3_005)).await;
        let snapshot = session.snapshot().await;
        runtime.stop().await;
        (session.id(), snapshot.run.unwrap().count, snapshot.version)
    };
    let runtime = runtime(10, Arc::new(SqliteStore::<Kept>::open(&path).unwrap()));
    assert_eq!(runtime.restore().await.unwrap(), 1, "it was running");
    let session = runtime.session(id).await.unwrap().expect("restored");
    let restored = session.snapshot().await;
    assert_eq!(restored.status, Status::Running);
    let count = restored.run.unwrap().count;
    assert!(
        count <= count_before && count + 200 >= count_before,
        "from its last checkpoint: {count} of {count_before}"
    );
    assert!(restored.version > version_before, "versions never go back");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(self::count(&session).await > count, "and it runs on");
    runtime.stop().await;
}

/// A tally's order through the runtime's session layer, as a kind's server
/// function would send it.
async fn order(
    axum::Extension(handle): axum::Extension<Arc<server::http::SessionHandle<Tally>>>,
    axum::Json(order): axum::Json<Order>,
) -> Result<String, (axum::http::StatusCode, String)> {
    let refused = |error: app::api::AppError| {
        (
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            error.to_string(),
        )
    };
    handle
        .command(None, order)
        .await
        .map(|version| version.to_string())
        .map_err(refused)
}

/// Over HTTP: the runtime's session layer starts a session with a tally's
/// first order and sets its cookie; the runtime's `/events` streams the
/// tally's own JSON, snapshot then deltas, to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tally_is_ordered_and_streamed_over_http() {
    use axum::{middleware::from_fn_with_state, routing, Router};
    use futures::StreamExt;
    let runtime = runtime(5, memory());
    let router = Router::new()
        .route("/events", routing::get(server::sse::events::<Tally>))
        .route("/order", routing::post(order))
        .route_layer(from_fn_with_state(
            runtime.clone(),
            server::http::session_layer::<Tally>,
        ))
        .with_state(runtime.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();
    let refused = http
        .post(format!("{base}/order"))
        .header("content-type", "application/json")
        .body(serde_json::to_string(&Order::CountTo { target: 0 }).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422, "the kind's validation is the answer");
    assert!(
        refused.headers().get("set-cookie").is_none(),
        "and no session is left"
    );
    let answer = http
        .post(format!("{base}/order"))
        .header("content-type", "application/json")
        .body(serde_json::to_string(&Order::CountTo { target: 40 }).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let cookie = answer.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let events = http
        .get(format!("{base}/events"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut events = Box::pin(eventsource_stream::Eventsource::eventsource(
        events.bytes_stream(),
    ));
    let mut page: Option<SnapshotOf<Shown>> = None;
    while page
        .as_ref()
        .is_none_or(|page| page.status != Status::Finished)
    {
        let event = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("an event within 20 s")
            .expect("the stream goes on")
            .unwrap();
        if event.event == "runs" {
            let runs: wire::RunsOf<u64> = serde_json::from_str(&event.data).unwrap();
            assert_eq!(runs.runs.len(), 1, "the session's one run, listed");
            assert_eq!(runs.runs[0].run, Some(40), "with the tally's own line");
            continue;
        }
        let id: wire::EventId = event.id.parse().unwrap();
        match serde_json::from_str::<UpdateOf<Shown, Counted>>(&event.data).unwrap() {
            UpdateOf::Snapshot(snapshot) => page = Some(snapshot),
            UpdateOf::Delta(delta) => page
                .as_mut()
                .expect("a snapshot first")
                .apply(&delta, 1)
                .unwrap(),
        }
        assert_eq!(id.cursor.version, page.as_ref().unwrap().version);
    }
    assert_eq!(
        page.unwrap().run,
        Some(Shown {
            target: 40,
            count: 40
        })
    );
    runtime.stop().await;
}
