//! A rolling restart: each node of a three-node cluster is told to stop
//! (SIGTERM) in turn, under load, and replaced. A stopping node hands its
//! runs over (each is taken by another node at once, not after its lease),
//! ends its streams (its pages resume elsewhere) and exits within a bound;
//! nothing is lost: every value every page saw is exact and kept, every
//! acknowledged command is there. Real processes: Redis, nodes.

mod support;

use std::time::{Duration, Instant};

use support::{
    cluster::{Node, Redis},
    load::{self, Load, Nodes},
};

/// A lease far longer than the bounds below: a run taken over only once
/// its lease lapsed would stall that long; one handed over goes on at once.
const LEASE_MS: u64 = 30_000;
const SCAN_MS: u64 = 200;
const SESSIONS: usize = 12;

/// A log long enough to hold each session's whole history here.
const ENV: [(&str, &str); 1] = [("HAILSTONE_LOG_LEN", "100000")];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_node_stopped_in_turn_hands_its_runs_over_and_nothing_is_lost() {
    let redis = Redis::start().await;
    let mut nodes = Vec::new();
    for name in ["n1", "n2", "n3"] {
        nodes.push(Node::start_with(&redis, name, LEASE_MS, SCAN_MS, &ENV).await);
    }
    let urls = |nodes: &[Node]| nodes.iter().map(Node::url).collect::<Vec<_>>();
    let balancer = Nodes::new(urls(&nodes));
    let load = Load::start(&balancer, SESSIONS).await;
    load.until_every_run_steps(Duration::from_secs(20), Instant::now())
        .await;

    for turn in 0..3 {
        let mut stopping = nodes.remove(0);
        assert!(
            stopping.metric("hailstone_running_tasks").await > 0.0,
            "{} steps runs to hand over",
            stopping.name
        );
        // The balancer stops sending it new requests as it stops.
        balancer.set(urls(&nodes));
        let told = Instant::now();
        let status = stopping.terminate(Duration::from_secs(20)).await;
        assert!(status.success(), "{status}: {}", stopping.logged());
        assert!(
            stopping.logged().contains("runs handed over"),
            "{}",
            stopping.logged()
        );
        // Every run steps again, well within the lease: handed over.
        load.until_every_run_steps(Duration::from_secs(10), told)
            .await;
        let replacement = format!("n{}", turn + 4);
        nodes.push(Node::start_with(&redis, &replacement, LEASE_MS, SCAN_MS, &ENV).await);
        balancer.set(urls(&nodes));
    }
    load.until_answered(Duration::from_secs(20), SESSIONS).await;
    let sessions = load.stop().await;
    let mut redis_connection = redis.connection().await;
    load::check(&sessions, &mut redis_connection, &nodes[0].url()).await;
}
