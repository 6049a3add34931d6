//! A property of cluster mode, with real processes: random commands sent
//! to random nodes, and nodes killed (SIGKILL) and started again, never
//! break what one process guarantees. After each case, the session's whole
//! log in Redis must be one chain of versions, each change made by one
//! stepper per epoch (epochs never going back), and replaying it on the
//! single-process state machine must give exactly what every node shows.

mod support;

use std::{collections::HashMap, time::Duration};

use proptest::{prelude::*, test_runner::TestRunner};
use redis::{streams::StreamRangeReply, AsyncCommands};
use server::backend::Op;
use shared::{
    wire::{Command, Update},
    Collatz, Saved, Settings,
};
use support::{
    cluster::{Node, Redis},
    trajectory, Browser,
};

const NODES: usize = 3;
const LEASE_MS: u64 = 600;
const SCAN_MS: u64 = 150;

#[derive(Debug, Clone)]
enum Action {
    /// A command sent to node `node`.
    Command(usize, Command),
    /// Node `node` killed with SIGKILL and started again.
    Kill(usize),
    /// The node that owns the run (if one does) stopped (SIGSTOP) past its
    /// lease, then continued.
    StopOwner,
    /// The node that owns the run (if one does) killed and started again.
    KillOwner,
    /// Time passes.
    Wait(u64),
}

fn action() -> impl Strategy<Value = Action> {
    let command = prop_oneof![
        prop::sample::select(vec!["27", "97", "871", "6", "1"])
            .prop_map(|n| Command::SetNumber { text: n.into() }),
        any::<bool>().prop_map(|running| Command::SetRunning { running }),
        prop::sample::select(vec![10u32, 30, 60]).prop_map(|ms| Command::SetInterval { ms }),
    ];
    prop_oneof![
        6 => (0..NODES, command).prop_map(|(node, command)| Action::Command(node, command)),
        1 => (0..NODES).prop_map(Action::Kill),
        2 => Just(Action::StopOwner),
        1 => Just(Action::KillOwner),
        2 => (0u64..400).prop_map(Action::Wait),
    ]
}

/// The cluster of the test: Redis and three nodes, one restarted when
/// killed.
struct Cluster {
    redis: Redis,
    nodes: Vec<Node>,
    restarts: usize,
}

impl Cluster {
    async fn start() -> Cluster {
        let redis = Redis::start().await;
        let mut nodes = Vec::new();
        for i in 0..NODES {
            nodes.push(start_node(&redis, &format!("n{i}")).await);
        }
        Cluster {
            redis,
            nodes,
            restarts: 0,
        }
    }

    /// The node holding the lease of session `id`'s run, if any.
    async fn owner(&self, id: &str) -> Option<usize> {
        let mut redis = self.redis.connection().await;
        let lease: Option<String> = redis.get(format!("hs:{{{id}}}:lease")).await.unwrap();
        let (name, _) = lease?
            .split_once(':')
            .map(|(n, e)| (n.to_owned(), e.to_owned()))?;
        self.nodes.iter().position(|node| node.name == name)
    }

    async fn kill(&mut self, node: usize) {
        self.nodes[node].kill();
        self.restarts += 1;
        let name = format!("n{node}r{}", self.restarts);
        self.nodes[node] = start_node(&self.redis, &name).await;
    }
}

async fn start_node(redis: &Redis, name: &str) -> Node {
    // Every change stays in the log, so the whole history can be checked.
    Node::start_with(
        redis,
        name,
        LEASE_MS,
        SCAN_MS,
        &[("HAILSTONE_LOG_LEN", "1000000")],
    )
    .await
}

/// One case: a new session, the actions, then the checks.
async fn case(cluster: &mut Cluster, actions: Vec<Action>) -> Result<(), TestCaseError> {
    let first = Browser::at(&cluster.nodes[0].url());
    first.attach().await;
    let cookie = first.cookie().unwrap();
    let id = cookie.split_once('=').unwrap().1.to_owned();
    let browser = |cluster: &Cluster, node: usize| {
        let browser = Browser::at(&cluster.nodes[node].url());
        browser.set_cookie(cookie.clone());
        browser
    };
    for action in actions {
        match action {
            Action::Command(node, command) => {
                let (status, body) = browser(cluster, node).send(command).await;
                // A number is refused (422) by every node alike; nothing
                // else may fail.
                prop_assert!(status == 200 || status == 422, "{status}: {body}");
            }
            Action::Kill(node) => cluster.kill(node).await,
            Action::StopOwner => {
                if let Some(node) = cluster.owner(&id).await {
                    cluster.nodes[node].signal(libc::SIGSTOP);
                    tokio::time::sleep(Duration::from_millis(2 * LEASE_MS)).await;
                    cluster.nodes[node].signal(libc::SIGCONT);
                }
            }
            Action::KillOwner => {
                if let Some(node) = cluster.owner(&id).await {
                    cluster.kill(node).await;
                }
            }
            Action::Wait(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        }
    }
    // Stop the run, on any node, so the state can settle.
    browser(cluster, 1)
        .command(Command::SetRunning { running: false })
        .await;

    // The whole log: one chain of versions; steps by one node per epoch,
    // epochs never going back.
    let mut redis = cluster.redis.connection().await;
    let log: StreamRangeReply = redis.xrange_all(format!("hs:{{{id}}}:log")).await.unwrap();
    let saved: String = redis.hget(format!("hs:{{{id}}}"), "saved").await.unwrap();
    let saved: Saved = serde_json::from_str(&saved).unwrap();
    // The nodes' settings: Leptos.toml's, with the tests' 50 ms interval.
    let settings = Settings {
        interval_ms: 50,
        ..Settings::default()
    };
    let mut model = Collatz::new(settings).with_incarnation(saved.incarnation);
    let mut stepper_of_epoch: HashMap<u64, String> = HashMap::new();
    let mut last_epoch = 0;
    for entry in &log.ids {
        let version: u64 = entry.id.strip_suffix("-0").unwrap().parse().unwrap();
        let base: u64 = entry.get("base").unwrap();
        let epoch: u64 = entry.get("epoch").unwrap();
        let node: String = entry.get("node").unwrap();
        let op: String = entry.get("op").unwrap();
        let op: Op<shared::wire::Command> = serde_json::from_str(&op).unwrap();
        prop_assert_eq!(base, model.version(), "the log is one chain of versions");
        prop_assert!(op.replay(&mut model), "{:?} applies at {}", op, base);
        prop_assert_eq!(model.version(), version);
        prop_assert!(version > base, "versions strictly increase");
        if let Op::Steps { .. } = op {
            prop_assert!(epoch >= last_epoch, "epochs never go back");
            last_epoch = epoch;
            let stepper = stepper_of_epoch
                .entry(epoch)
                .or_insert_with(|| node.clone());
            prop_assert_eq!(&*stepper, &node, "one stepper in epoch {}", epoch);
        }
    }
    // What is stored is what the replay gives, and every node shows it.
    let mut expected = model.saved();
    expected.reserved = saved.reserved;
    prop_assert_eq!(&saved, &expected);
    for node in 0..NODES {
        let mut events = browser(cluster, node).events(None).await;
        let Some((_, Update::Snapshot(snapshot))) = events.next().await else {
            panic!("a snapshot first");
        };
        prop_assert_eq!(&snapshot.run, &model.snapshot().run, "node {}", node);
        prop_assert_eq!(snapshot.version, model.version());
        // And the values are the run's own.
        if let Some(run) = &snapshot.run {
            let start: u64 = run.start.parse().unwrap();
            let first = run.first_recent_step() as usize;
            let all = trajectory(start);
            prop_assert_eq!(
                run.recent.iter().cloned().collect::<Vec<_>>(),
                all[first..first + run.recent.len()].to_vec()
            );
        }
    }
    Ok(())
}

#[test]
fn random_commands_and_kills_over_three_nodes_match_one_process() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // The runner takes a `Fn`; the cluster changes when a node restarts.
    let cluster = std::cell::RefCell::new(runtime.block_on(Cluster::start()));
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 24,
        // Each case runs real processes for seconds: shrinking stays short.
        max_shrink_iters: 16,
        ..ProptestConfig::default()
    });
    runner
        .run(&prop::collection::vec(action(), 4..14), |actions| {
            runtime.block_on(case(&mut cluster.borrow_mut(), actions))
        })
        .unwrap();
}
