//! Where a cluster's Redis primary is, and this node's connections to it.
//!
//! The primary is named by `cluster.redis-url`, or found through Redis
//! Sentinel (`cluster.sentinels`): then the node asks the sentinels where
//! the primary is at start, at every scan, and at once when a request
//! fails, and when they name another one (a failover), it connects there,
//! listens again for every bell it listened for, and reads every copy
//! again. With sentinels, a change counts as made only once a replica has
//! it (`WAIT`): see [`Cluster`](crate::cluster::Cluster).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
    io::tcp::TcpSettings,
    sentinel::{Sentinel, SentinelNodeConnectionInfo},
    Client, IntoConnectionInfo, ProtocolVersion, PushInfo,
};
use tokio::sync::{mpsc, oneshot};

use crate::config;

/// How long a Redis request may take before the node calls Redis down.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The connections to the primary.
pub struct Links {
    /// Commands and scripts: one multiplexed connection that reconnects by
    /// itself.
    pub redis: ConnectionManager,
    /// The running tasks' commits of steps, on a connection of their own:
    /// a user's command is not queued behind every task's commit in one
    /// pipeline.
    pub steps: ConnectionManager,
    /// The bells' subscriptions: a connection of their own (RESP3 pushes),
    /// resubscribed by itself after a reconnect.
    pub bells: ConnectionManager,
    /// The primary's address, as the sentinels or the URL name it.
    pub address: String,
    /// The commits of each lane, sent in rounds.
    redis_rounds: Rounds,
    steps_rounds: Rounds,
}

/// Which of the connections a request goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Commands and reads.
    Commands,
    /// The tasks' step commits.
    Steps,
}

/// What a request of a round came to: its commands' answers, and whether
/// a replica has what the round wrote (always true when none need have
/// it); the first error of its commands, if one failed.
pub type Answered = redis::RedisResult<(Vec<redis::Value>, bool)>;

/// The most requests one round carries.
const ROUND_MAX: usize = 256;

/// One request of a round: its commands, and where to send their answers
/// (none for a bell, which is rung and not waited for).
type Request = (Vec<redis::Cmd>, Option<oneshot::Sender<Answered>>);

/// Sends one lane's requests in rounds (group commit): every request
/// waiting when a round starts goes in one pipeline, followed by one
/// `WAIT` when a replica must have them. One round trip for many commits,
/// each still checked on its own by its script; and the `WAIT`, on the same
/// connection as the writes it confirms, holds that connection once per
/// round rather than once per request. A request waits at most for the
/// round in flight. (A read that must only see what a replica has ends
/// with a write of its own, which the `WAIT` confirms: Redis replicates in
/// order, so everything read before it is confirmed with it.) The bells a
/// round's commits ring once a replica has them go with the next round, in
/// front of its commits; a round of bells alone needs no `WAIT`.
struct Rounds {
    /// Requests waiting for the next round.
    waiting: mpsc::UnboundedSender<Request>,
}

impl Rounds {
    /// Starts the rounds on `connection`.
    fn start(mut connection: ConnectionManager, replicas: Arc<Replicas>) -> Rounds {
        let (waiting, mut asked) = mpsc::unbounded_channel::<Request>();
        tokio::spawn(async move {
            while let Some(first) = asked.recv().await {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                let mut answers = Vec::new();
                let mut next = Some(first);
                while let Some((commands, answer)) = next {
                    answers.push((commands.len(), answer));
                    for command in commands {
                        pipe.add_command(command);
                    }
                    next = (answers.len() < ROUND_MAX)
                        .then(|| asked.try_recv().ok())
                        .flatten();
                }
                let awaited = answers.iter().any(|(_, answer)| answer.is_some());
                let wait = replicas.wait().filter(|_| awaited);
                if let Some(bound) = wait {
                    pipe.cmd("WAIT").arg(1).arg(bound.as_millis() as u64);
                }
                let round: redis::RedisResult<Vec<redis::RedisResult<redis::Value>>> =
                    pipe.query_async(&mut connection).await;
                answer_round(round, wait.is_some(), answers);
            }
        });
        Rounds { waiting }
    }

    /// Sends `commands` (one request) with the next round.
    async fn send(&self, commands: Vec<redis::Cmd>) -> Answered {
        let closed = || redis::RedisError::from((redis::ErrorKind::Io, "the connection is closed"));
        let (answer, answered) = oneshot::channel();
        self.waiting
            .send((commands, Some(answer)))
            .map_err(|_| closed())?;
        answered.await.map_err(|_| closed())?
    }

    /// Sends `bell` with the next round, unanswered.
    fn ring(&self, bell: redis::Cmd) {
        // Only fails once the connection's task has ended (at shutdown).
        let _ = self.waiting.send((vec![bell], None));
    }
}

/// Gives each request of a round its answers, in order.
fn answer_round(
    round: redis::RedisResult<Vec<redis::RedisResult<redis::Value>>>,
    waited: bool,
    answers: Vec<(usize, Option<oneshot::Sender<Answered>>)>,
) {
    let mut values = match round {
        Ok(values) => values,
        Err(error) => {
            for answer in answers.into_iter().filter_map(|(_, answer)| answer) {
                let _ = answer.send(Err(error.clone()));
            }
            return;
        }
    };
    let replicated = !waited
        || values
            .pop()
            .and_then(|confirmed| confirmed.ok())
            .and_then(|confirmed| redis::from_redis_value::<u64>(confirmed).ok())
            .is_some_and(|replicas| replicas >= 1);
    let mut values = values.into_iter();
    for (count, answer) in answers {
        let mine: redis::RedisResult<Vec<redis::Value>> = values.by_ref().take(count).collect();
        if let Some(answer) = answer {
            let _ = answer.send(mine.map(|mine| (mine, replicated)));
        }
    }
}

impl Links {
    /// The connection of `lane`.
    pub fn connection(&self, lane: Lane) -> ConnectionManager {
        match lane {
            Lane::Commands => self.redis.clone(),
            Lane::Steps => self.steps.clone(),
        }
    }

    /// Sends `commands` (one request) on `lane` with its next round.
    pub async fn send(&self, lane: Lane, commands: Vec<redis::Cmd>) -> Answered {
        self.rounds(lane).send(commands).await
    }

    /// Rings `bell` (a `PUBLISH`) on `lane` with its next round, without
    /// waiting for it: a tick's bells leave together.
    pub fn ring(&self, lane: Lane, bell: redis::Cmd) {
        self.rounds(lane).ring(bell);
    }

    fn rounds(&self, lane: Lane) -> &Rounds {
        match lane {
            Lane::Commands => &self.redis_rounds,
            Lane::Steps => &self.steps_rounds,
        }
    }
}

/// Whether changes must wait for a replica: with sentinels, while they hold
/// one up (with none, the last one lost or just promoted, changes are made
/// on the primary alone rather than not at all). A replica that is up but
/// whose link to the primary broke for a moment still counts: changes wait
/// for it, and are refused past the bound, rather than be shown while only
/// the primary has them.
pub struct Replicas {
    /// With sentinels: how long a change may wait for a replica (`WAIT`).
    bound: Option<Duration>,
    /// Replicas the sentinels held up at the last check.
    up: AtomicUsize,
}

impl Replicas {
    /// How long a change waits for a replica, if it must.
    pub fn wait(&self) -> Option<Duration> {
        self.bound.filter(|_| self.up.load(Ordering::Acquire) > 0)
    }

    /// Notes how many replicas of the primary are up.
    fn note(&self, replicas: usize) {
        let before = self.up.swap(replicas, Ordering::AcqRel);
        if self.bound.is_none() || (before == 0) == (replicas == 0) {
            return;
        }
        if replicas == 0 {
            tracing::warn!(
                "the Redis primary has no replica: changes are made on it alone until one \
                 connects (a failover now could lose them)"
            );
        } else {
            tracing::info!(
                replicas,
                "the Redis primary has a replica again: every change waits for it"
            );
        }
    }
}

/// How the primary is found.
enum Finder {
    /// Always at this URL.
    Fixed(Client),
    /// Where the sentinels say the primary named `master` is.
    Sentinels {
        /// The sentinels, with their connections (each look-up asks them).
        sentinels: tokio::sync::Mutex<Sentinel>,
        /// The same sentinels, asked which replicas they hold up.
        watchers: tokio::sync::Mutex<Vec<Watcher>>,
        /// The name they monitor the primary under.
        master: String,
        /// How to connect to the primary they name (database, password,
        /// TCP settings).
        node: SentinelNodeConnectionInfo,
    },
}

/// This node's way to the primary.
pub struct Primary {
    /// How it is found.
    finder: Finder,
    /// The connections to it; replaced when it moves.
    links: RwLock<Arc<Links>>,
    /// Where every bells' connection sends its pushes.
    pushes: mpsc::UnboundedSender<PushInfo>,
    /// The bell channels listened to, to listen to again on a new primary.
    watched: Mutex<HashSet<String>>,
    /// Whether changes must wait for a replica.
    replicas: Arc<Replicas>,
}

/// The pushes of the bells' connections: bells, and a notice after each
/// lost connection (bells may have been missed).
pub type Pushes = mpsc::UnboundedReceiver<PushInfo>;

/// Connections come back by themselves; a request fails fast while Redis
/// is away (commands answer 503), and the next one, or the scan's check,
/// connects again.
fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(RESPONSE_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_max_delay(Duration::from_millis(500))
        .set_number_of_retries(1)
}

/// Small requests and answers go out at once (without TCP_NODELAY,
/// pipelined commits waited 20-110 ms for acknowledgements here).
fn tcp() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

impl Primary {
    /// Finds the primary the configuration names and connects to it.
    pub async fn connect(cluster: &config::Cluster) -> Result<(Primary, Pushes), String> {
        let finder = if cluster.sentinels.0.is_empty() {
            let info = cluster
                .redis_url
                .as_str()
                .into_connection_info()
                .map_err(|e| format!("{}: {e}", cluster.redis_url))?
                .set_tcp_settings(tcp());
            Finder::Fixed(Client::open(info).map_err(|e| e.to_string())?)
        } else {
            let urls: Vec<String> = cluster
                .sentinels
                .0
                .iter()
                .map(|address| format!("redis://{address}/"))
                .collect();
            let sentinels = Sentinel::build(urls.clone()).map_err(|e| format!("sentinels: {e}"))?;
            let mut node = SentinelNodeConnectionInfo::default().set_tcp_settings(tcp());
            if !cluster.redis_url.is_empty() {
                let info = cluster
                    .redis_url
                    .as_str()
                    .into_connection_info()
                    .map_err(|e| format!("{}: {e}", cluster.redis_url))?;
                node = node.set_redis_connection_info(info.redis_settings().clone());
            }
            let watchers = urls
                .iter()
                .map(|url| Watcher::new(url))
                .collect::<Result<_, _>>()?;
            Finder::Sentinels {
                sentinels: tokio::sync::Mutex::new(sentinels),
                watchers: tokio::sync::Mutex::new(watchers),
                master: cluster.sentinel_master.clone(),
                node,
            }
        };
        let replicas = Arc::new(Replicas {
            bound: matches!(finder, Finder::Sentinels { .. })
                .then(|| Duration::from_millis(cluster.replica_wait_ms)),
            up: AtomicUsize::new(0),
        });
        let (pushes, received) = mpsc::unbounded_channel();
        // The replicas are counted before the first change, not at the
        // first scan: until then a change would be made on the primary alone.
        let (client, up) = finder.look().await?;
        replicas.note(up.unwrap_or(0));
        let links = Links::open(&client, &pushes, &replicas).await?;
        let primary = Primary {
            finder,
            links: RwLock::new(Arc::new(links)),
            pushes,
            watched: Mutex::default(),
            replicas,
        };
        Ok((primary, received))
    }

    /// The connections to the primary now.
    pub fn links(&self) -> Arc<Links> {
        self.links.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How long a change waits for a replica to have it, if it must.
    pub fn replica_wait(&self) -> Option<Duration> {
        self.replicas.wait()
    }

    /// Whether the primary is found through sentinels (and may move).
    pub fn follows_sentinels(&self) -> bool {
        matches!(self.finder, Finder::Sentinels { .. })
    }

    /// With sentinels: asks them where the primary is, and when it moved,
    /// connects there and listens again for every bell. True when it moved
    /// (every copy must be read again).
    pub async fn follow(&self) -> Result<bool, String> {
        if !self.follows_sentinels() {
            return Ok(false);
        }
        let (client, replicas) = tokio::time::timeout(RESPONSE_TIMEOUT, self.finder.look())
            .await
            .map_err(|_| "the sentinels did not answer in time".to_owned())??;
        if let Some(replicas) = replicas {
            self.replicas.note(replicas);
        }
        let address = client.get_connection_info().addr().to_string();
        if address == self.links().address {
            return Ok(false);
        }
        let links = Links::open(&client, &self.pushes, &self.replicas).await?;
        let channels: Vec<String> = self
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        let mut bells = links.bells.clone();
        for chunk in channels.chunks(1024) {
            if let Err(error) = bells.subscribe(chunk).await {
                tracing::warn!(%error, "cannot listen again for changes on the new primary");
            }
        }
        tracing::warn!(primary = %address, "the Redis primary moved; following it");
        *self.links.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(links);
        Ok(true)
    }

    /// Listens on `channel` (kept, to listen again on a new primary).
    pub async fn subscribe(&self, channel: String) -> redis::RedisResult<()> {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel.clone());
        self.links().bells.clone().subscribe(channel).await
    }

    /// Stops listening on `channels`.
    pub async fn unsubscribe(&self, channels: Vec<String>) -> redis::RedisResult<()> {
        {
            let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
            for channel in &channels {
                watched.remove(channel);
            }
        }
        self.links().bells.clone().unsubscribe(channels).await
    }
}

impl Finder {
    /// With sentinels: a client of the primary, and how many of its
    /// replicas are up, as the first sentinel that names the same primary
    /// says (`None` when none that answered does yet: during a failover a
    /// sentinel may still speak of the primary before).
    async fn look(&self) -> Result<(Client, Option<usize>), String> {
        let client = self.find().await?;
        let Finder::Sentinels {
            watchers, master, ..
        } = self
        else {
            return Ok((client, Some(0)));
        };
        let primary = client.get_connection_info().addr().to_string();
        let mut answered = false;
        let mut last = String::from("no sentinel is configured");
        for watcher in watchers.lock().await.iter_mut() {
            match watcher.replicas_up(master).await {
                Ok((named, up)) if named == primary => return Ok((client, Some(up))),
                Ok(_) => answered = true,
                Err(error) => last = error.to_string(),
            }
        }
        if answered {
            return Ok((client, None));
        }
        Err(format!(
            "the sentinels cannot say which replicas are up: {last}"
        ))
    }

    /// A client of the primary.
    async fn find(&self) -> Result<Client, String> {
        match self {
            Finder::Fixed(client) => Ok(client.clone()),
            Finder::Sentinels {
                sentinels,
                master,
                node,
                ..
            } => sentinels
                .lock()
                .await
                .async_master_for(master, Some(node))
                .await
                .map_err(|e| format!("the sentinels name no primary {master:?} that answers: {e}")),
        }
    }
}

/// A server as `SENTINEL REPLICAS` describes it.
type Fields = HashMap<String, String>;

/// A sentinel asked which replicas are up, with its connection once open.
struct Watcher {
    /// Where it is.
    client: Client,
    /// Its connection, kept between scans.
    connection: Option<MultiplexedConnection>,
}

impl Watcher {
    fn new(url: &str) -> Result<Watcher, String> {
        let info = url
            .into_connection_info()
            .map_err(|e| format!("{url}: {e}"))?
            .set_tcp_settings(tcp());
        Ok(Watcher {
            client: Client::open(info).map_err(|e| format!("{url}: {e}"))?,
            connection: None,
        })
    }

    /// Where this sentinel says the primary of `master` is (`host:port`),
    /// and how many of its replicas it holds up: not flagged down (`s_down`,
    /// `o_down`), unreachable (`disconnected`) or just made primary
    /// (`promoted`). Their judgement, not this node's reach: a replica may
    /// miss their pings for `down-after-milliseconds` before they call it
    /// down, and until then the primary still streams changes to it, so a
    /// change waits for it (and is refused past the bound) rather than be
    /// made on the primary alone while a replica that lags could be promoted.
    async fn replicas_up(&mut self, master: &str) -> redis::RedisResult<(String, usize)> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(RESPONSE_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT));
                let opened = self
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                self.connection.insert(opened)
            }
        };
        let answer: redis::RedisResult<((String, u16), Vec<Fields>)> = redis::pipe()
            .cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(master)
            .cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(master)
            .query_async(connection)
            .await;
        if answer.is_err() {
            self.connection = None;
        }
        let ((host, port), replicas) = answer?;
        let up = replicas
            .iter()
            .filter(|replica| {
                replica.get("flags").is_some_and(|flags| {
                    flags.split(',').all(|flag| {
                        !matches!(flag, "s_down" | "o_down" | "disconnected" | "promoted")
                    })
                })
            })
            .count();
        Ok((format!("{host}:{port}"), up))
    }
}

impl Links {
    /// The three connections to the primary `client` names.
    async fn open(
        client: &Client,
        pushes: &mpsc::UnboundedSender<PushInfo>,
        replicas: &Arc<Replicas>,
    ) -> Result<Links, String> {
        let info = client.get_connection_info().clone();
        let address = info.addr().to_string();
        let unreachable = |e: redis::RedisError| format!("{address}: {e}");
        let redis = client
            .get_connection_manager_with_config(manager_config())
            .await
            .map_err(unreachable)?;
        let steps = client
            .get_connection_manager_with_config(manager_config())
            .await
            .map_err(unreachable)?;
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let push_client =
            Client::open(info.set_redis_settings(resp3)).map_err(|e| e.to_string())?;
        let bells = push_client
            .get_connection_manager_with_config(
                manager_config()
                    .set_push_sender(pushes.clone())
                    .set_automatic_resubscription(),
            )
            .await
            .map_err(unreachable)?;
        Ok(Links {
            redis_rounds: Rounds::start(redis.clone(), replicas.clone()),
            steps_rounds: Rounds::start(steps.clone(), replicas.clone()),
            redis,
            steps,
            bells,
            address,
        })
    }
}
