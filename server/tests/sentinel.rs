//! A cluster on Redis Sentinel: the primary is killed (SIGKILL) mid-run,
//! under load, while its replica lags behind, and the replica promoted.
//! Runs go on, every acknowledged command is there after the failover,
//! every value every page saw is exact, no page sees a value twice or
//! loses one it saw, and fencing holds (epochs in each session's log never
//! go back). Real processes: a primary, a replica, three sentinels, two
//! nodes.

mod support;

use std::time::{Duration, Instant};

use support::{
    cluster::{until, Node, Sentinels, DOWN_AFTER},
    load::{self, Load, Nodes},
};

const LEASE_MS: u64 = 1000;
const SCAN_MS: u64 = 200;
const SESSIONS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_primary_killed_under_load_loses_no_acknowledged_command_and_no_value() {
    let mut sentinels = Sentinels::start().await;
    // A log long enough to hold each session's whole history here.
    let env = [("HAILSTONE_LOG_LEN", "100000")];
    let a = Node::start_with(&sentinels, "a", LEASE_MS, SCAN_MS, &env).await;
    let b = Node::start_with(&sentinels, "b", LEASE_MS, SCAN_MS, &env).await;
    let nodes = Nodes::new(vec![a.url(), b.url()]);
    let load = Load::start(&nodes, SESSIONS).await;
    let started = Instant::now();
    load.until_every_run_steps(Duration::from_secs(20), started)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The replica falls behind: it stops for less than the sentinels'
    // down-after (so they still hold it up), and a value bigger than the
    // sockets' buffers fills the way to it, so what the primary takes now
    // never reaches it. That must be neither acknowledged nor shown. The
    // primary dies meanwhile; the replica comes back and is promoted.
    let stopped = Instant::now();
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
    // Had the sentinels seen the replica down, the nodes would rightly have
    // made changes on the primary alone (see `primary::Replicas`), and the
    // test would prove nothing: the stop must stay well inside their
    // down-after (they ping once a second).
    let stop = killed - stopped;
    assert!(
        stop + Duration::from_secs(1) < DOWN_AFTER,
        "the replica was stopped for {stop:?}: the sentinels may have called it down"
    );
    until(
        Duration::from_secs(30),
        "the sentinels promote the replica",
        || async { sentinels.primary_port().await == Some(sentinels.replica.port) },
    )
    .await;
    assert_ne!(sentinels.replica.port, old_primary);
    // Every run steps again on the new primary, and commands are answered.
    load.until_every_run_steps(Duration::from_secs(30), killed)
        .await;
    load.until_answered(Duration::from_secs(30), SESSIONS).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sessions = load.stop().await;
    let mut promoted = sentinels.replica.connection().await;
    load::check(&sessions, &mut promoted, &a.url()).await;
    drop((a, b));
}
