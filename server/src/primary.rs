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
    collections::HashSet,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
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
    /// `WAIT`s for what was written on `redis`, and on `steps`.
    redis_waits: Replication,
    steps_waits: Replication,
}

/// Which of the connections a request goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Commands and reads.
    Commands,
    /// The tasks' step commits.
    Steps,
}

/// Waits, for many writes at once, until a replica has them: one `WAIT` on
/// the connection they were written on confirms every write whose answer
/// came before it was sent (Redis replicates in order). A `WAIT` holds its
/// connection until it is answered, so one per write would queue every
/// write behind the one before; one per round queues them at most one
/// round. A write is confirmed only if the `WAIT` ran on the same Redis
/// connection (`CLIENT ID`): a connection made again meanwhile would
/// confirm nothing of the old one's.
struct Replication {
    /// Writes waiting: the client id they were written on, and where to say
    /// whether a replica has them.
    waiting: mpsc::UnboundedSender<(i64, oneshot::Sender<bool>)>,
}

impl Replication {
    /// Starts the rounds of `WAIT` on `connection`, each at most `bound`.
    fn start(mut connection: ConnectionManager, bound: Duration) -> Replication {
        let (waiting, mut asked) = mpsc::unbounded_channel::<(i64, oneshot::Sender<bool>)>();
        tokio::spawn(async move {
            while let Some(first) = asked.recv().await {
                let mut round = vec![first];
                while let Ok(more) = asked.try_recv() {
                    round.push(more);
                }
                let answer: redis::RedisResult<(i64, u64)> = redis::pipe()
                    .cmd("CLIENT")
                    .arg("ID")
                    .cmd("WAIT")
                    .arg(1)
                    .arg(bound.as_millis() as u64)
                    .query_async(&mut connection)
                    .await;
                for (client, confirmed) in round {
                    let held =
                        matches!(answer, Ok((id, replicas)) if id == client && replicas >= 1);
                    let _ = confirmed.send(held);
                }
            }
        });
        Replication { waiting }
    }

    /// Whether a replica has what was written on client `client` before
    /// this was asked.
    async fn confirmed(&self, client: i64) -> bool {
        let (confirmed, answer) = oneshot::channel();
        if self.waiting.send((client, confirmed)).is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
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

    /// Whether a replica has what was written on `lane` as client
    /// `client` (see `CLIENT ID`).
    pub async fn replicated(&self, lane: Lane, client: i64) -> bool {
        match lane {
            Lane::Commands => self.redis_waits.confirmed(client).await,
            Lane::Steps => self.steps_waits.confirmed(client).await,
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
    /// With sentinels: how long a change may wait for a replica (`WAIT`).
    replica_wait: Option<Duration>,
    /// That bound, whether it applies or not.
    replica_bound: Duration,
    /// Replicas of the primary that the sentinels hold to be up, as they
    /// said at the last check: with none (the last one was lost, or
    /// promoted), changes are made on the primary alone rather than not at
    /// all. (A replica that is up but whose link to the primary broke for
    /// a moment still counts: changes wait for it, and are refused past
    /// the bound, rather than be shown while only the primary has them.)
    replicas: AtomicUsize,
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
            let sentinels = Sentinel::build(urls).map_err(|e| format!("sentinels: {e}"))?;
            let mut node = SentinelNodeConnectionInfo::default().set_tcp_settings(tcp());
            if !cluster.redis_url.is_empty() {
                let info = cluster
                    .redis_url
                    .as_str()
                    .into_connection_info()
                    .map_err(|e| format!("{}: {e}", cluster.redis_url))?;
                node = node.set_redis_connection_info(info.redis_settings().clone());
            }
            Finder::Sentinels {
                sentinels: tokio::sync::Mutex::new(sentinels),
                master: cluster.sentinel_master.clone(),
                node,
            }
        };
        let replica_wait = matches!(finder, Finder::Sentinels { .. })
            .then(|| Duration::from_millis(cluster.replica_wait_ms));
        let (pushes, received) = mpsc::unbounded_channel();
        let client = finder.find().await?;
        let bound = Duration::from_millis(cluster.replica_wait_ms);
        let links = Links::open(&client, &pushes, bound).await?;
        let primary = Primary {
            finder,
            links: RwLock::new(Arc::new(links)),
            pushes,
            watched: Mutex::default(),
            replica_wait,
            replica_bound: bound,
            replicas: AtomicUsize::new(0),
        };
        Ok((primary, received))
    }

    /// The connections to the primary now.
    pub fn links(&self) -> Arc<Links> {
        self.links.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// With sentinels and a replica connected: how long a change waits for
    /// it to have it.
    pub fn replica_wait(&self) -> Option<Duration> {
        self.replica_wait
            .filter(|_| self.replicas.load(Ordering::Acquire) > 0)
    }

    /// Notes how many replicas the primary has that are up.
    fn note_replicas(&self, replicas: usize) {
        let before = self.replicas.swap(replicas, Ordering::AcqRel);
        if self.replica_wait.is_none() || (before == 0) == (replicas == 0) {
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
        self.note_replicas(replicas);
        let address = client.get_connection_info().addr().to_string();
        if address == self.links().address {
            return Ok(false);
        }
        let links = Links::open(&client, &self.pushes, self.replica_bound).await?;
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
    /// replicas are up.
    async fn look(&self) -> Result<(Client, usize), String> {
        let client = self.find().await?;
        let Finder::Sentinels {
            sentinels,
            master,
            node,
        } = self
        else {
            return Ok((client, 0));
        };
        let replicas = sentinels
            .lock()
            .await
            .async_get_replica_clients(master, Some(node))
            .await;
        match replicas {
            Ok(replicas) => Ok((client, replicas.len())),
            Err(error) if error.kind() == redis::ErrorKind::NoValidReplicasFoundBySentinel => {
                Ok((client, 0))
            }
            Err(error) => Err(format!(
                "the sentinels cannot say which replicas are up: {error}"
            )),
        }
    }

    /// A client of the primary.
    async fn find(&self) -> Result<Client, String> {
        match self {
            Finder::Fixed(client) => Ok(client.clone()),
            Finder::Sentinels {
                sentinels,
                master,
                node,
            } => sentinels
                .lock()
                .await
                .async_master_for(master, Some(node))
                .await
                .map_err(|e| format!("the sentinels name no primary {master:?} that answers: {e}")),
        }
    }
}

impl Links {
    /// The three connections to the primary `client` names.
    async fn open(
        client: &Client,
        pushes: &mpsc::UnboundedSender<PushInfo>,
        bound: Duration,
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
            redis_waits: Replication::start(redis.clone(), bound),
            steps_waits: Replication::start(steps.clone(), bound),
            redis,
            steps,
            bells,
            address,
        })
    }
}
