//! A real cluster on 127.0.0.1: a redis-server of the test's own on a free
//! port, and server processes (nodes) sharing it. Everything is killed
//! when dropped, so a failing assertion leaves nothing running.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `ready` holds, checking every 20 ms; fails after `within`.
pub async fn until<F, Fut>(within: Duration, what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !ready().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where the nodes of a test find their Redis: the environment each is
/// started with.
pub trait Store {
    /// `HAILSTONE_*` variables naming the primary (or the sentinels).
    fn node_env(&self) -> Vec<(String, String)>;
}

/// A redis-server of the test's own, with append-only persistence in a
/// temporary directory (so it can be restarted with its data).
pub struct Redis {
    process: Option<Child>,
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    /// Arguments on top of the usual ones (such as `--replicaof`).
    extra: Vec<String>,
}

impl Store for Redis {
    fn node_env(&self) -> Vec<(String, String)> {
        vec![("HAILSTONE_REDIS_URL".into(), self.url())]
    }
}

impl Redis {
    /// Starts redis-server on a free port and waits until it answers.
    pub async fn start() -> Redis {
        Redis::start_with(&[]).await
    }

    /// [`Redis::start`] with `extra` arguments.
    pub async fn start_with(extra: &[&str]) -> Redis {
        let mut redis = Redis {
            process: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        redis.run().await;
        redis
    }

    /// The URL nodes connect to.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A connection for the test's own checks and writes (some large: it
    /// waits for an answer as long as they take on a busy machine).
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .unwrap()
    }

    async fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--maxmemory-policy", "noeviction"])
            .args(&self.extra)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/setup.sh installs it)");
        self.process = Some(child);
        let url = self.url();
        until(Duration::from_secs(10), "redis-server answers", || {
            let url = url.clone();
            async move {
                let Ok(client) = redis::Client::open(url) else {
                    return false;
                };
                let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
                    return false;
                };
                redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .is_ok()
            }
        })
        .await;
    }

    /// Kills redis-server (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub async fn restart(&mut self) {
        self.kill();
        self.run().await;
    }

    /// Sends it `signal` (such as SIGSTOP: it stops answering, connections
    /// stay open).
    pub fn signal(&self, signal: i32) {
        let pid = self.process.as_ref().expect("redis-server runs").id();
        assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The bearer token of every node's `/metrics`.
pub const METRICS_TOKEN: &str = "test-token";

/// One node: the server binary in cluster mode.
pub struct Node {
    process: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name.
    pub name: String,
    /// Its log file (stderr and stdout).
    pub log: PathBuf,
    _logs: tempfile::TempDir,
}

impl Node {
    /// Starts a node named `name` on `redis` with a lease of `lease_ms` and a
    /// scan every `scan_ms`, stepping every 50 ms; waits until it answers.
    pub async fn start(redis: &dyn Store, name: &str, lease_ms: u64, scan_ms: u64) -> Node {
        Node::start_with(redis, name, lease_ms, scan_ms, &[]).await
    }

    /// [`Node::start`] with `env` on top.
    pub async fn start_with(
        redis: &dyn Store,
        name: &str,
        lease_ms: u64,
        scan_ms: u64,
        env: &[(&str, &str)],
    ) -> Node {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let logs = tempfile::tempdir().unwrap();
        let log = logs.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_server"))
            .current_dir(Path::new(".."))
            .env("LEPTOS_SITE_ADDR", addr.to_string())
            .envs(redis.node_env())
            .env("HAILSTONE_NODE_ID", name)
            .env("HAILSTONE_LEASE_MS", lease_ms.to_string())
            .env("HAILSTONE_SCAN_MS", scan_ms.to_string())
            .env("HAILSTONE_STEP_INTERVAL_MS", "50")
            .env("HAILSTONE_NEW_SESSIONS_PER_MINUTE", "100000")
            .env("HAILSTONE_METRICS_TOKEN", METRICS_TOKEN)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let node = Node {
            process: Some(child),
            addr,
            name: name.to_owned(),
            log,
            _logs: logs,
        };
        let health = format!("{}/healthz", node.url());
        until(Duration::from_secs(20), "the node answers", || {
            let health = health.clone();
            async move { reqwest::get(health).await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        node
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its process id.
    pub fn pid(&self) -> i32 {
        self.process.as_ref().expect("running").id() as i32
    }

    /// Kills it with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends it `signal` (SIGSTOP, SIGCONT).
    pub fn signal(&self, signal: i32) {
        // SAFETY: a plain system call on a child process of this test.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// Sends it SIGTERM and waits for it to exit, at most `within`; its
    /// exit status.
    pub async fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let mut child = self.process.take().expect("running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "{} did not exit within {within:?}:\n{}",
                    self.name,
                    self.logged()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The value of metric `name` (without labels) on its `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        super::metric_at(&self.url(), METRICS_TOKEN, name).await
    }

    /// What it logged so far.
    pub fn logged(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(child) = &self.process {
            // A stopped node must be woken to die promptly.
            // SAFETY: a plain system call on a child process of this test.
            unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
        }
        self.kill();
    }
}

/// Redis without a single point of failure, as `make cluster` runs it: a
/// primary, a replica, and three sentinels watching them (quorum 2), each
/// a process of the test's own on a free port.
pub struct Sentinels {
    /// The primary at start.
    pub primary: Redis,
    /// Its replica at start.
    pub replica: Redis,
    /// The sentinels' processes and ports.
    sentinels: Vec<(Child, u16)>,
    _dir: tempfile::TempDir,
}

/// The name the sentinels know the primary by.
pub const MASTER: &str = "hailstone";

/// How long a Redis server may not answer before the sentinels call it
/// down. Long enough that a replica stopped for a test's moment stays up in
/// their eyes on a slow machine (they ping once a second, so a stop shorter
/// than this less a second is never seen).
pub const DOWN_AFTER: Duration = Duration::from_secs(5);

impl Store for Sentinels {
    fn node_env(&self) -> Vec<(String, String)> {
        let addresses: Vec<String> = self
            .sentinels
            .iter()
            .map(|(_, port)| format!("127.0.0.1:{port}"))
            .collect();
        vec![
            ("HAILSTONE_REDIS_SENTINELS".into(), addresses.join(",")),
            ("HAILSTONE_REDIS_SENTINEL_MASTER".into(), MASTER.into()),
        ]
    }
}

impl Sentinels {
    /// Starts them all, and waits until every sentinel sees the replica and
    /// the two other sentinels (before that, a failover could not happen).
    pub async fn start() -> Sentinels {
        // A replica is sent its first copy at once, not after waiting for
        // others.
        let primary = Redis::start_with(&["--repl-diskless-sync-delay", "0"]).await;
        let replica_of = primary.port.to_string();
        let replica = Redis::start_with(&["--replicaof", "127.0.0.1", &replica_of]).await;
        let dir = tempfile::tempdir().unwrap();
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {MASTER} {}\n\
                     sentinel failover-timeout {MASTER} 10000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    dir.path().display(),
                    primary.port,
                    DOWN_AFTER.as_millis(),
                ),
            )
            .unwrap();
            let child = Command::new("redis-sentinel")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-sentinel is installed (scripts/setup.sh installs it)");
            sentinels.push((child, port));
        }
        let set = Sentinels {
            primary,
            replica,
            sentinels,
            _dir: dir,
        };
        for (_, port) in &set.sentinels {
            let url = format!("redis://127.0.0.1:{port}/");
            until(
                Duration::from_secs(30),
                "a sentinel sees the replica and the others",
                || {
                    let url = url.clone();
                    async move { sees_all(&url).await.unwrap_or(false) }
                },
            )
            .await;
        }
        set
    }

    /// The port the sentinels name as the primary's now.
    pub async fn primary_port(&self) -> Option<u16> {
        let url = format!("redis://127.0.0.1:{}/", self.sentinels[0].1);
        let mut connection = redis::Client::open(url)
            .ok()?
            .get_multiplexed_async_connection()
            .await
            .ok()?;
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER)
            .query_async(&mut connection)
            .await
            .ok()?;
        Some(port)
    }
}

/// Whether the sentinel at `url` sees a replica in sync and two other
/// sentinels.
async fn sees_all(url: &str) -> redis::RedisResult<bool> {
    let mut connection = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let replicas: Vec<std::collections::HashMap<String, String>> = redis::cmd("SENTINEL")
        .arg("replicas")
        .arg(MASTER)
        .query_async(&mut connection)
        .await?;
    let synced = replicas.iter().any(|replica| {
        replica.get("flags").is_some_and(|flags| flags == "slave")
            && replica.get("master-link-status").is_some_and(|s| s == "ok")
    });
    let others: Vec<redis::Value> = redis::cmd("SENTINEL")
        .arg("sentinels")
        .arg(MASTER)
        .query_async(&mut connection)
        .await?;
    Ok(synced && others.len() == 2)
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for (child, _) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
