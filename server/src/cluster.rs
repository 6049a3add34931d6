//! Cluster mode: every session lives in one Redis, shared by every node.
//!
//! Per session (the hash tag keeps its keys together):
//! - `hs:{id}`: a hash of `ver` (the version), `epoch` (the fencing token of
//!   its run), `run` (1 while running) and `saved` (the state, as JSON);
//! - `hs:{id}:log`: a stream of the changes committed, each with the id
//!   `<version>-0`, the version it was made on, the [`Op`] that made it
//!   (which other nodes replay), and the node and epoch that committed it,
//!   trimmed to exactly `cluster.log-len` entries;
//! - `hs:{id}:lease`: `<node>:<epoch>` while a node owns its run, with an
//!   expiry;
//! - `hs:{id}:bell`: a pub/sub channel on which each commit publishes its
//!   log entry (version, base version, node, op). A node applies it to its copy
//!   only when it follows the copy exactly; otherwise, and after any lost
//!   connection, it reads the log: pub/sub is never trusted to be complete.
//!
//! And `hs:running`, the running sessions scored by lease deadline, which
//! every node scans for runs whose owner stopped renewing.
//!
//! Every commit is one script that checks the version it was made on and,
//! for a task's steps, the lease and epoch of the task's node: a node that
//! was paused or cut off past its lease commits nothing. Each node keeps a
//! copy of the sessions it serves, brought up to date by replaying the log,
//! so a stream's cursor means the same on every node.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use redis::{streams::StreamRangeReply, PushInfo, Script};
use serde::de::DeserializeOwned;
use shared::{
    task::{Machine, Saved, Task},
    wire::Status,
};
use tokio::sync::watch;

use crate::{
    change::{Change, CommitError, Heard, Op},
    id::{RunId, SessionId},
    primary::{Lane, Primary},
    store::StoreError,
};

/// The running sessions, scored by lease deadline (ms, Redis's clock).
const RUNNING: &str = "hs:running";
/// The channel on which a stopping node names each run it hands over, so
/// the others take it at once rather than at their next scan.
const HANDOVER: &str = "hs:handover";
/// How many lapsed leases one pass of a scan takes over at most (the scan
/// goes on while passes come back full).
pub const SCAN_BATCH: usize = 256;

/// A commit. KEYS: state, log, lease, running. ARGV: node, epoch (empty
/// for a command), base version, new version, saved state, op, idle ttl ms,
/// lease ms, log length, takes the run (0/1), running after (0/1), channel,
/// session id, ring the bell here (0/1: with sentinels the node rings it
/// once a replica has the change). Answers {1, epoch}, or {-1} lease lost,
/// {-2} fenced, {-3} another version, {-4} no such session.
const COMMIT: &str = r"
local ver = redis.call('HGET', KEYS[1], 'ver')
if not ver then return {-4} end
if tonumber(ver) ~= tonumber(ARGV[3]) then return {-3} end
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if ARGV[2] ~= '' then
  if redis.call('GET', KEYS[3]) ~= ARGV[1] .. ':' .. ARGV[2] then return {-1} end
  if epoch ~= tonumber(ARGV[2]) then return {-2} end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[8])
if ARGV[10] == '1' then
  epoch = epoch + 1
  redis.call('SET', KEYS[3], ARGV[1] .. ':' .. epoch, 'PX', lease)
  redis.call('ZADD', KEYS[4], now + lease, ARGV[13])
elseif ARGV[11] == '0' then
  if redis.call('HGET', KEYS[1], 'run') == '1' then epoch = epoch + 1 end
  redis.call('DEL', KEYS[3])
  redis.call('ZREM', KEYS[4], ARGV[13])
elseif ARGV[2] ~= '' then
  redis.call('PEXPIRE', KEYS[3], lease)
  redis.call('ZADD', KEYS[4], now + lease, ARGV[13])
end
redis.call('HSET', KEYS[1], 'ver', ARGV[4], 'epoch', epoch, 'run', ARGV[11], 'saved', ARGV[5], 'at', now)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[9], ARGV[4] .. '-0', 'base', ARGV[3], 'op', ARGV[6], 'node', ARGV[1], 'epoch', epoch)
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
if ARGV[14] == '1' then
  redis.call('PUBLISH', ARGV[12], ARGV[4] .. ' ' .. ARGV[3] .. ' ' .. ARGV[1] .. ' ' .. ARGV[6])
end
return {1, epoch}
";

/// A new session. KEYS: state. ARGV: saved state, idle ttl ms.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'ver', 0, 'epoch', 0, 'run', 0, 'saved', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
";

/// Takes over runs whose lease lapsed (or was released). KEYS: running.
/// ARGV: node, lease ms, most sessions. Answers {id, epoch, age, ...}: age
/// is the milliseconds since the run's last commit, so the new owner keeps
/// its beat.
const TAKEOVER: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local taken = {}
for _, id in ipairs(ids) do
  local state = 'hs:{' .. id .. '}'
  if redis.call('EXISTS', state .. ':lease') == 0 then
    if redis.call('HGET', state, 'run') == '1' then
      local epoch = redis.call('HINCRBY', state, 'epoch', 1)
      redis.call('SET', state .. ':lease', ARGV[1] .. ':' .. epoch, 'PX', lease)
      redis.call('ZADD', KEYS[1], now + lease, id)
      table.insert(taken, id)
      table.insert(taken, epoch)
      table.insert(taken, math.max(now - tonumber(redis.call('HGET', state, 'at') or now), 0))
    else
      redis.call('ZREM', KEYS[1], id)
    end
  end
end
return taken
";

/// Renews a lease still held. KEYS: lease, running. ARGV: node:epoch,
/// lease ms, session id. Answers 1, or 0 when the lease is lost.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
return 1
";

/// Hands a run over (its node is stopping): releases the lease still held,
/// marks the run lapsed, and tells every node. KEYS: lease, running. ARGV:
/// node:epoch, session id, channel. Answers 1, or 0 when the lease was not
/// held (nothing to hand over).
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[2])
return 1
";

/// Counts a new session of a client address in a minute's window that
/// starts with its first. KEYS: the address's counter. ARGV: most per
/// window, window ms. Answers 0 when allowed, else the milliseconds until
/// the window ends.
const NEW_SESSION: &str = r"
local started = redis.call('INCR', KEYS[1])
if started == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if started <= tonumber(ARGV[1]) then return 0 end
return math.max(redis.call('PTTL', KEYS[1]), 1)
";

/// Keeps sessions used by a node alive, and notes when that node last used
/// each (field `seen:<node>`, Redis's clock). KEYS: states. ARGV: node, idle
/// ttl ms. A session gone is not made again.
const TOUCH: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS, 2 do
  local state = KEYS[i]
  if redis.call('EXISTS', state) == 1 then
    redis.call('HSET', state, 'seen:' .. ARGV[1], now)
    redis.call('PEXPIRE', state, ARGV[2])
    redis.call('PEXPIRE', state .. ':log', ARGV[2])
    redis.call('PEXPIRE', KEYS[i + 1], ARGV[2])
  end
end
return 0
";

/// Marks runs a node streams as watched now (field `watched`, Redis's
/// clock). KEYS: states. A run gone is not made again.
const MARK_WATCHED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, state in ipairs(KEYS) do
  if redis.call('EXISTS', state) == 1 then redis.call('HSET', state, 'watched', now) end
end
return 0
";

/// How long ago any node last marked a run watched, in ms; -1 if never.
/// KEYS: state.
const WATCHED_AGO: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local watched = redis.call('HGET', KEYS[1], 'watched')
if not watched then return -1 end
return math.max(now - tonumber(watched), 0)
";

/// Deletes a run evicted by a node, unless another node used it lately (or
/// removed by its user: no use counts). KEYS: state, log, lease, running,
/// the session's runs. ARGV: node, run id, how recent (ms) a use counts,
/// the run's number. Answers 1 when deleted, 0 when in use elsewhere.
const EVICT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local node = string.match(fields[i], '^seen:(.*)$')
  if node and node ~= ARGV[1] and now - tonumber(fields[i + 1]) < tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('ZREM', KEYS[5], ARGV[4])
return 1
";

/// How many sessions one call of the touch script keeps alive (Redis
/// serves nothing else while a script runs).
const TOUCH_BATCH: usize = 256;

/// The keys of one run.
struct Keys {
    state: String,
    log: String,
    lease: String,
    bell: String,
    /// Its session's runs: a sorted set of their numbers.
    runs: String,
}

impl Keys {
    fn of(id: RunId) -> Keys {
        let state = format!("hs:{{{id}}}");
        Keys {
            log: format!("{state}:log"),
            lease: format!("{state}:lease"),
            bell: format!("{state}:bell"),
            runs: runs_key(id.session),
            state,
        }
    }
}

/// The sorted set of `session`'s run numbers.
fn runs_key(session: SessionId) -> String {
    format!("hs:{{{session}}}:runs")
}

/// The session of a bell's channel name.
fn bell_session(channel: &str) -> Option<RunId> {
    let id = channel.strip_prefix("hs:{")?.strip_suffix("}:bell")?;
    RunId::parse(id)
}

/// The scripts, loaded once (EVALSHA, with a fallback after a restart).
struct Scripts {
    commit: Script,
    create: Script,
    new_session: Script,
    touch: Script,
    mark_watched: Script,
    watched_ago: Script,
    evict: Script,
    takeover: Script,
    renew: Script,
    release: Script,
}

/// This node's part of the cluster: its connections to Redis and what it
/// knows of it.
pub struct Cluster {
    /// This node's name, in leases, logs and metrics.
    node: String,
    /// Where the primary is, and the connections to it.
    primary: Primary,
    /// Rung when a request failed and the sentinels may name another
    /// primary: the scan asks them at once.
    recheck: tokio::sync::Notify,
    /// The scripts.
    scripts: Scripts,
    /// How long a lease lasts.
    lease: Duration,
    /// How often lapsed leases are looked for.
    scan: Duration,
    /// How long an untouched session is kept in Redis.
    ttl: Duration,
    /// How many changes each session's log keeps.
    log_len: u64,
    /// Which Redis process the data came from (from its run id): mixed into
    /// every incarnation, so a client of a Redis that restarted (and may
    /// have lost its last writes) is given a snapshot, never a version
    /// reused for different content.
    instance: AtomicU64,
    /// Whether Redis answered last time it was asked.
    up: watch::Sender<bool>,
    /// Set when the bells' connection was lost, until it answers again.
    bells_lost: std::sync::atomic::AtomicBool,
}

pub use crate::primary::{Pushes, RESPONSE_TIMEOUT};

impl Cluster {
    /// Connects to the primary `config` names (a URL, or sentinels) as
    /// node `node`. Fails when it cannot be reached now; afterwards, the
    /// connections come back by themselves, and with sentinels follow the
    /// primary wherever it moves.
    pub async fn connect(
        node: String,
        config: &crate::config::Cluster,
        ttl: Duration,
    ) -> Result<(Arc<Cluster>, Pushes), StoreError> {
        let (primary, received) = Primary::connect(config).await.map_err(unavailable)?;
        let cluster = Arc::new(Cluster {
            node,
            primary,
            recheck: tokio::sync::Notify::new(),
            scripts: Scripts {
                commit: Script::new(COMMIT),
                create: Script::new(CREATE),
                new_session: Script::new(NEW_SESSION),
                touch: Script::new(TOUCH),
                mark_watched: Script::new(MARK_WATCHED),
                watched_ago: Script::new(WATCHED_AGO),
                evict: Script::new(EVICT),
                takeover: Script::new(TAKEOVER),
                renew: Script::new(RENEW),
                release: Script::new(RELEASE),
            },
            lease: Duration::from_millis(config.lease_ms),
            scan: Duration::from_millis(config.scan_ms),
            ttl,
            log_len: config.log_len,
            instance: AtomicU64::new(0),
            up: watch::Sender::new(true),
            bells_lost: false.into(),
        });
        cluster.check().await.map_err(unavailable)?;
        // Runs handed over by stopping nodes are taken at once.
        cluster
            .primary
            .subscribe(HANDOVER.to_owned())
            .await
            .map_err(|error| cluster.failed(error))?;
        Ok((cluster, received))
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// How often lapsed leases are looked for.
    pub fn scan_period(&self) -> Duration {
        self.scan
    }

    /// How long a lease lasts.
    pub fn lease_period(&self) -> Duration {
        self.lease
    }

    /// The connection for commands and scripts.
    pub(crate) fn connection(&self) -> redis::aio::ConnectionManager {
        self.primary.links().redis.clone()
    }

    /// Whether Redis answered last time; changes are watched by streams.
    pub fn up(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    /// Asks Redis which process it is, on both connections (a connection
    /// manager reconnects when asked something). `Ok(true)` when every copy
    /// must be read again: Redis is another process than before (it
    /// restarted), or the bells' connection is back after a loss (bells may
    /// have been missed). Notes whether Redis answered.
    pub async fn check(&self) -> Result<bool, String> {
        let moved = match self.primary.follow().await {
            Ok(moved) => moved,
            Err(error) => {
                self.up.send_if_modified(|up| std::mem::replace(up, false));
                return Err(error);
            }
        };
        let links = self.primary.links();
        let mut redis = links.redis.clone();
        let info: Result<String, _> = redis::cmd("INFO")
            .arg("server")
            .arg("replication")
            .query_async(&mut redis)
            .await;
        let mut bells = links.bells.clone();
        let bells_answer: Result<(), _> = redis::cmd("PING").query_async(&mut bells).await;
        let bells_back = match bells_answer {
            Ok(()) => self.bells_lost.swap(false, Ordering::AcqRel),
            Err(_) => {
                self.bells_lost.store(true, Ordering::Release);
                false
            }
        };
        let info = match info {
            Ok(info) => info,
            Err(error) => {
                self.up.send_if_modified(|up| std::mem::replace(up, false));
                return Err(error.to_string());
            }
        };
        self.up.send_if_modified(|up| !std::mem::replace(up, true));
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        if field("role") == Some("slave") && self.primary.follows_sentinels() {
            // Still on a primary that was made a replica: look again soon.
            self.recheck.notify_one();
        }
        let run_id = info
            .lines()
            .find_map(|line| line.strip_prefix("run_id:"))
            .unwrap_or_default()
            .trim();
        let instance = u64::from_str_radix(run_id.get(..16).unwrap_or("0"), 16).unwrap_or(0);
        let before = self.instance.swap(instance, Ordering::AcqRel);
        Ok((before != 0 && before != instance) || bells_back || moved)
    }

    /// Waits until a request failed in a way that may mean the primary
    /// moved (only with sentinels).
    pub async fn recheck_asked(&self) {
        self.recheck.notified().await;
    }

    /// Notes that the bells' connection was lost (its pushes say so).
    pub fn bells_lost(&self) {
        self.bells_lost.store(true, Ordering::Release);
    }

    /// Notes that a request to Redis failed.
    pub(crate) fn down(&self, error: &redis::RedisError) -> CommitError {
        let lost = error.is_io_error() || error.is_timeout() || error.is_connection_dropped();
        if lost {
            self.up.send_if_modified(|up| std::mem::replace(up, false));
        }
        // A primary that is gone, or was made a replica, may have been
        // replaced: ask the sentinels now rather than at the next scan.
        let read_only = error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly);
        if self.primary.follows_sentinels() && (lost || read_only) {
            self.recheck.notify_one();
        }
        CommitError::Unavailable(error.to_string())
    }

    /// A request of the node's own (not a commit) failed: noted as
    /// [`Cluster::down`] does, and answered as the store's error.
    fn failed(&self, error: redis::RedisError) -> StoreError {
        self.down(&error);
        unavailable(error)
    }

    /// Sends `eval` (an `EVALSHA` of `script`) on `lane` with its next
    /// round (which, with sentinels and a replica up, ends with one
    /// `WAIT`). Answers the script's answer, and whether a replica has it
    /// (always, without sentinels). A script Redis does not know (it
    /// restarted) is loaded and sent once more.
    async fn replicated<T: redis::FromRedisValue>(
        &self,
        lane: Lane,
        eval: &redis::Cmd,
        script: &Script,
    ) -> Result<(T, bool), CommitError> {
        let links = self.primary.links();
        let mut loaded = false;
        loop {
            match links.send(lane, vec![eval.clone()]).await {
                Err(error)
                    if !loaded
                        && error.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    loaded = true;
                    script
                        .prepare_invoke()
                        .load_async(&mut links.connection(lane))
                        .await
                        .map_err(|error| self.down(&error))?;
                }
                Err(error) => return Err(self.down(&error)),
                Ok((mut answer, replicated)) => {
                    let answer = answer.pop().unwrap_or(redis::Value::Nil);
                    let answer = redis::from_redis_value(answer)
                        .map_err(|error| CommitError::Unavailable(error.to_string()))?;
                    return Ok((answer, replicated));
                }
            }
        }
    }

    /// Reads with `read` (its answers, in order) and, with sentinels and a
    /// replica up, only what a replica has: a write of this node's own
    /// follows the reads (the session's expiry, renewed), and the round's
    /// `WAIT` confirms it, so everything read before it is on a replica.
    /// What a page may be shown never hangs on the primary alone.
    async fn read_replicated(
        &self,
        mut read: Vec<redis::Cmd>,
        keys: &Keys,
    ) -> Result<Vec<redis::Value>, CommitError> {
        let reads = read.len();
        let mut renew = redis::cmd("PEXPIRE");
        renew.arg(&keys.state).arg(self.ttl.as_millis() as u64);
        read.push(renew);
        let (mut answers, replicated) = self
            .primary
            .links()
            .send(Lane::Commands, read)
            .await
            .map_err(|error| self.down(&error))?;
        if !replicated {
            return Err(CommitError::Unavailable(
                "no replica has the session's changes in time".into(),
            ));
        }
        answers.truncate(reads);
        Ok(answers)
    }

    /// The ledger of session `id`, owning no run yet.
    pub fn ledger(self: &Arc<Self>, id: RunId) -> ClusterLedger {
        ClusterLedger {
            cluster: self.clone(),
            id,
            keys: Keys::of(id),
            epoch: None,
            instance: self.instance.load(Ordering::Acquire),
        }
    }

    /// A session as Redis holds it, with its ledger; `None` if there is none.
    /// It is noted as used by this node at once, so a node that evicts it
    /// meanwhile leaves it in Redis.
    pub async fn load<T: Task>(
        self: &Arc<Self>,
        settings: T::Settings,
        id: RunId,
    ) -> Result<Option<(Machine<T>, ClusterLedger)>, StoreError> {
        let mut ledger = self.ledger(id);
        match ledger.reload(settings).await {
            Ok(machine) => {
                self.watch(id).await;
                self.touch(&[id]).await;
                Ok(Some((machine, ledger)))
            }
            Err(CommitError::Gone) => Ok(None),
            Err(CommitError::Damaged(why)) => Err(StoreError::Damaged {
                store: "Redis".into(),
                session: id.to_string(),
                why,
            }),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Stores a new run, listed among its session's, and listens for
    /// others' changes to it. False when a run of that id exists already
    /// (another node made one of the same number).
    pub async fn create<T: Task>(
        &self,
        id: RunId,
        machine: &Machine<T>,
    ) -> Result<bool, StoreError> {
        let mut saved = machine.saved();
        saved.incarnation ^= self.instance.load(Ordering::Acquire);
        let saved = serde_json::to_string(&saved).expect("a saved state serialises");
        let keys = Keys::of(id);
        let mut redis = self.primary.links().redis.clone();
        let created: i64 = self
            .scripts
            .create
            .key(&keys.state)
            .key(&keys.runs)
            .arg(saved)
            .arg(self.ttl.as_millis() as u64)
            .arg(id.number)
            .invoke_async(&mut redis)
            .await
            .map_err(|error| self.failed(error))?;
        if created == 1 {
            self.watch(id).await;
        }
        Ok(created == 1)
    }

    /// The numbers of `session`'s runs, oldest first. A session made before
    /// sessions had many runs has no list: its one run is the first.
    pub async fn runs_of(&self, session: SessionId) -> Result<Vec<RunId>, StoreError> {
        let mut redis = self.primary.links().redis.clone();
        let numbers: Vec<u64> = redis::cmd("ZRANGE")
            .arg(runs_key(session))
            .arg(0)
            .arg(-1)
            .query_async(&mut redis)
            .await
            .map_err(|error| self.failed(error))?;
        let numbers = if numbers.is_empty() { vec![0] } else { numbers };
        Ok(numbers
            .into_iter()
            .map(|number| RunId { session, number })
            .collect())
    }

    /// Deletes run `id` (its user removed it), whoever uses it: nodes with
    /// a copy find it gone at their next read or commit.
    pub async fn remove(&self, id: RunId) -> Result<(), StoreError> {
        self.delete(id, Duration::ZERO).await.map(|_| ())
    }

    /// Whether `client` may start another session (`None`), or how long
    /// until it may: at most `per_minute` in a minute, counted by every node
    /// together (behind a round-robin
    /// balancer, each node's own limiter alone would let a client start
    /// nodes × `per_minute`).
    pub async fn may_start_session(
        &self,
        client: std::net::IpAddr,
        per_minute: u32,
    ) -> Result<Option<Duration>, StoreError> {
        let mut redis = self.primary.links().redis.clone();
        let wait_ms: u64 = self
            .scripts
            .new_session
            .key(format!("hs:new:{client}"))
            .arg(per_minute)
            .arg(60_000)
            .invoke_async(&mut redis)
            .await
            .map_err(|error| self.failed(error))?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
    }

    /// Stops serving session `id` (evicted at this node's cap), and deletes
    /// it from Redis unless another node used it within two sweep periods
    /// (every node notes the sessions it uses once a period). Returns
    /// whether it was deleted.
    pub async fn evict(&self, id: RunId) -> Result<bool, StoreError> {
        self.delete(id, 2 * crate::config::sweep_period(self.ttl))
            .await
    }

    /// Deletes run `id` unless a node other than this one used it within
    /// `recent`; whether it did.
    async fn delete(&self, id: RunId, recent: Duration) -> Result<bool, StoreError> {
        self.unwatch(&[id]).await;
        let keys = Keys::of(id);
        let mut redis = self.primary.links().redis.clone();
        let deleted: u8 = self
            .scripts
            .evict
            .key(&keys.state)
            .key(&keys.log)
            .key(&keys.lease)
            .key(RUNNING)
            .key(&keys.runs)
            .arg(&self.node)
            .arg(id.to_string())
            .arg(recent.as_millis() as u64)
            .arg(id.number)
            .invoke_async(&mut redis)
            .await
            .map_err(|error| self.failed(error))?;
        Ok(deleted == 1)
    }

    /// Listens for others' changes to session `id`. A failure is logged:
    /// the session is then brought up to date when next read.
    pub async fn watch(&self, id: RunId) {
        if let Err(error) = self.primary.subscribe(Keys::of(id).bell).await {
            tracing::warn!(%error, session = %id.short(), "cannot listen for changes from other nodes");
        }
    }

    /// Stops listening for changes to sessions this node let go of.
    pub async fn unwatch(&self, ids: &[RunId]) {
        if ids.is_empty() {
            return;
        }
        let channels: Vec<String> = ids.iter().map(|id| Keys::of(*id).bell).collect();
        if let Err(error) = self.primary.unsubscribe(channels).await {
            tracing::warn!(%error, "cannot stop listening for changes of expired sessions");
        }
    }

    /// Marks the runs this node streams as watched now, so the node that
    /// owns one does not take it for unwatched. A failure is logged (the
    /// owner then keeps the run running: it cannot tell).
    pub async fn mark_watched(&self, ids: &[RunId]) {
        let mut redis = self.primary.links().redis.clone();
        for chunk in ids.chunks(TOUCH_BATCH) {
            let mut mark = self.scripts.mark_watched.prepare_invoke();
            for id in chunk {
                mark.key(Keys::of(*id).state);
            }
            if let Err(error) = mark.invoke_async::<()>(&mut redis).await {
                self.down(&error);
                tracing::warn!(%error, "cannot mark the runs streamed here as watched");
                return;
            }
        }
    }

    /// Whether any node marked run `id` watched within `wait`.
    pub async fn watched_within(&self, id: RunId, wait: Duration) -> Result<bool, StoreError> {
        let mut redis = self.primary.links().redis.clone();
        let ago: i64 = self
            .scripts
            .watched_ago
            .key(Keys::of(id).state)
            .invoke_async(&mut redis)
            .await
            .map_err(|error| self.failed(error))?;
        Ok(u64::try_from(ago).is_ok_and(|ago| ago < wait.as_millis() as u64))
    }

    /// Keeps the sessions this node uses in Redis for another idle
    /// timeout, noted as used by this node (a session another node uses is
    /// not deleted when this one evicts it).
    pub async fn touch(&self, ids: &[RunId]) {
        let mut redis = self.primary.links().redis.clone();
        for chunk in ids.chunks(TOUCH_BATCH) {
            let mut touch = self.scripts.touch.prepare_invoke();
            for id in chunk {
                let keys = Keys::of(*id);
                touch.key(keys.state).key(keys.runs);
            }
            let touched = touch
                .arg(&self.node)
                .arg(self.ttl.as_millis() as u64)
                .invoke_async::<()>(&mut redis)
                .await;
            if let Err(error) = touched {
                self.down(&error);
                tracing::warn!(%error, "cannot keep the sessions in use alive in Redis");
                return;
            }
        }
    }

    /// Takes over the runs whose lease lapsed or was handed over.
    pub async fn take_over(&self) -> Result<Vec<Taken>, CommitError> {
        let mut redis = self.primary.links().redis.clone();
        let taken: Vec<(String, u64, u64)> = self
            .scripts
            .takeover
            .key(RUNNING)
            .arg(&self.node)
            .arg(self.lease.as_millis() as u64)
            .arg(SCAN_BATCH)
            .invoke_async(&mut redis)
            .await
            .map_err(|error| self.down(&error))?;
        Ok(taken
            .into_iter()
            .filter_map(|(id, epoch, age_ms)| {
                Some(Taken {
                    id: RunId::parse(&id)?,
                    epoch,
                    since_commit: Duration::from_millis(age_ms),
                })
            })
            .collect())
    }
}

/// A run this node took over.
#[derive(Debug, Clone, Copy)]
pub struct Taken {
    /// Its session.
    pub id: RunId,
    /// The epoch of the lease taken.
    pub epoch: u64,
    /// How long ago its last change was committed: its next step is due
    /// one interval after that.
    pub since_commit: Duration,
}

/// Whether `push` names a run a stopping node handed over.
pub fn is_handover(push: &PushInfo) -> bool {
    push.kind == redis::PushKind::Message
        && push
            .data
            .first()
            .and_then(|channel| redis::from_redis_value_ref::<String>(channel).ok())
            .is_some_and(|channel| channel == HANDOVER)
}

/// The answers of a read as `T` (a tuple of one type per answer).
fn read_as<T: redis::FromRedisValue>(answers: Vec<redis::Value>) -> Result<T, CommitError> {
    redis::from_redis_value(redis::Value::Array(answers))
        .map_err(|error| CommitError::Unavailable(error.to_string()))
}

/// Redis cannot be reached, or failed: `message` says how.
fn unavailable(message: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        message: message.to_string(),
    }
}

/// A bell from a push: the session, the node that committed, and the log
/// entry its commit appended.
pub fn bell<C: DeserializeOwned, W: DeserializeOwned>(
    push: &PushInfo,
) -> Option<(RunId, String, Heard<C, W>)> {
    if push.kind != redis::PushKind::Message {
        return None;
    }
    let [channel, payload] = push.data.as_slice() else {
        return None;
    };
    let channel: String = redis::from_redis_value_ref(channel).ok()?;
    let payload: String = redis::from_redis_value_ref(payload).ok()?;
    let mut parts = payload.splitn(4, ' ');
    let version = parts.next()?.parse().ok()?;
    let base = parts.next()?.parse().ok()?;
    let node = parts.next()?.to_owned();
    let op = serde_json::from_str(parts.next()?).ok()?;
    Some((bell_session(&channel)?, node, Heard { base, version, op }))
}

/// How one session's changes are committed from this node.
pub struct ClusterLedger {
    /// The node.
    cluster: Arc<Cluster>,
    /// The session.
    id: RunId,
    /// Its keys.
    keys: Keys,
    /// The epoch of the run's lease, while this node holds it.
    epoch: Option<u64>,
    /// The Redis process the state was loaded from.
    instance: u64,
}

impl ClusterLedger {
    /// The epoch of the lease this node holds, if it does.
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// Holds the lease of `epoch` (taken over by this node).
    pub fn adopt(&mut self, epoch: u64) {
        self.epoch = Some(epoch);
    }

    /// A lease is renewed three times per lease period when nothing else
    /// renews it.
    pub fn renew_every(&self) -> Option<Duration> {
        self.epoch.map(|_| self.cluster.lease / 3)
    }

    /// Commits a change: one script that checks the version it was made on
    /// (and, for a task's change, this node's lease and epoch), stores the
    /// state, appends the op to the log and rings the bell.
    pub async fn commit<T: Task>(&mut self, change: Change<'_, T>) -> Result<(), CommitError> {
        let cluster = &self.cluster;
        let (takes_task, epoch) = match change.op {
            Op::Command { takes_task, .. } => (*takes_task, None),
            Op::Steps { .. } | Op::Halt { .. } | Op::Lapse { .. } => {
                (false, Some(self.epoch.ok_or(CommitError::Fenced)?))
            }
        };
        let running = change.after.status() == Status::Running;
        let mut saved = change.after.saved();
        saved.incarnation ^= self.instance;
        let saved = serde_json::to_string(&saved).expect("a saved state serialises");
        let op = serde_json::to_string(change.op).expect("an op serialises");
        let lane = match change.op {
            Op::Steps { .. } => Lane::Steps,
            Op::Command { .. } | Op::Halt { .. } | Op::Lapse { .. } => Lane::Commands,
        };
        let rings_later = cluster.primary.replica_wait().is_some();
        let mut eval = redis::cmd("EVALSHA");
        eval.arg(cluster.scripts.commit.get_hash())
            .arg(4)
            .arg(&self.keys.state)
            .arg(&self.keys.log)
            .arg(&self.keys.lease)
            .arg(RUNNING)
            .arg(&cluster.node)
            .arg(epoch.map(|e| e.to_string()).unwrap_or_default())
            .arg(change.base)
            .arg(change.after.version())
            .arg(saved)
            .arg(&op)
            .arg(cluster.ttl.as_millis() as u64)
            .arg(cluster.lease.as_millis() as u64)
            .arg(cluster.log_len)
            .arg(u8::from(takes_task))
            .arg(u8::from(running))
            .arg(&self.keys.bell)
            .arg(self.id.to_string())
            .arg(u8::from(!rings_later));
        let (answer, replicated): (Vec<i64>, bool) = cluster
            .replicated(lane, &eval, &cluster.scripts.commit)
            .await?;
        if answer.first() == Some(&1) && !replicated {
            // Made on the primary, but no replica has it yet: a failover
            // could lose it, so it is neither acknowledged nor shown. The
            // copy reads the store again before its next use.
            return Err(CommitError::Unavailable(
                "no replica has the change in time".into(),
            ));
        }
        if answer.first() == Some(&1) && rings_later {
            let payload = format!(
                "{} {} {} {op}",
                change.after.version(),
                change.base,
                cluster.node
            );
            // Rung with the lane's next round, not waited for: should it
            // be lost, other nodes read the log when they next look.
            let mut bell = redis::cmd("PUBLISH");
            bell.arg(&self.keys.bell).arg(payload);
            cluster.primary.links().ring(lane, bell);
        }
        match answer.as_slice() {
            [1, epoch] => {
                if takes_task {
                    self.epoch = Some(*epoch as u64);
                } else if !running {
                    self.epoch = None;
                }
                Ok(())
            }
            [-1 | -2] => {
                self.epoch = None;
                Err(CommitError::Fenced)
            }
            [-3] => Err(CommitError::Conflict),
            [-4] => Err(CommitError::Gone),
            other => Err(CommitError::Unavailable(format!(
                "unexpected answer from the commit script: {other:?}"
            ))),
        }
    }

    /// Renews the run's lease; [`CommitError::Fenced`] when it is lost.
    pub async fn renew(&mut self) -> Result<(), CommitError> {
        let Some(epoch) = self.epoch else {
            return Err(CommitError::Fenced);
        };
        let cluster = &self.cluster;
        let mut redis = cluster.primary.links().redis.clone();
        let held: i64 = cluster
            .scripts
            .renew
            .key(&self.keys.lease)
            .key(RUNNING)
            .arg(format!("{}:{epoch}", cluster.node))
            .arg(cluster.lease.as_millis() as u64)
            .arg(self.id.to_string())
            .invoke_async(&mut redis)
            .await
            .map_err(|error| cluster.down(&error))?;
        if held == 1 {
            Ok(())
        } else {
            self.epoch = None;
            Err(CommitError::Fenced)
        }
    }

    /// Hands the run over: releases the lease this node holds, so another
    /// node takes the run at once. Nothing to do without a lease.
    pub async fn release(&mut self) -> Result<(), CommitError> {
        let Some(epoch) = self.epoch.take() else {
            return Ok(());
        };
        let cluster = &self.cluster;
        let mut redis = cluster.primary.links().redis.clone();
        let _: i64 = cluster
            .scripts
            .release
            .key(&self.keys.lease)
            .key(RUNNING)
            .arg(format!("{}:{epoch}", cluster.node))
            .arg(self.id.to_string())
            .arg(HANDOVER)
            .invoke_async(&mut redis)
            .await
            .map_err(|error| cluster.down(&error))?;
        Ok(())
    }

    /// What others committed after `machine`: its log replayed on a copy,
    /// or the whole state reloaded when the log no longer reaches back to
    /// it (or Redis restarted). `None` when nothing changed.
    pub async fn catch_up<T: Task>(
        &mut self,
        machine: &Machine<T>,
    ) -> Result<Option<Machine<T>>, CommitError> {
        let settings = machine.settings();
        if self.cluster.instance.load(Ordering::Acquire) != self.instance {
            return self.reload(settings).await.map(Some);
        }
        let read = vec![
            redis::Cmd::hget(&self.keys.state, "ver"),
            redis::Cmd::xrange(&self.keys.log, format!("{}-0", machine.version() + 1), "+"),
        ];
        let (version, entries): (Option<u64>, StreamRangeReply) =
            read_as(self.cluster.read_replicated(read, &self.keys).await?)?;
        let Some(version) = version else {
            return Err(CommitError::Gone);
        };
        if version == machine.version() {
            return Ok(None);
        }
        let mut next = machine.clone();
        for entry in &entries.ids {
            let base: Option<u64> = entry.get("base");
            let op: Option<String> = entry.get("op");
            let op: Option<Op<T::Command, T::Work>> =
                op.and_then(|op| serde_json::from_str(&op).ok());
            let version = entry
                .id
                .strip_suffix("-0")
                .and_then(|v| v.parse::<u64>().ok());
            let replayed = match (base, op, version) {
                (Some(base), Some(op), Some(version)) if base == next.version() => {
                    op.replay(&mut next) && next.version() == version
                }
                _ => false,
            };
            if !replayed {
                return self.reload(settings).await.map(Some);
            }
        }
        if next.version() != version {
            // The log was trimmed past this copy, or moved on meanwhile.
            return self.reload(settings).await.map(Some);
        }
        Ok(Some(next))
    }

    /// The state as Redis holds it now, exactly (same version and run), in
    /// the incarnation of this Redis process.
    async fn reload<T: Task>(&mut self, settings: T::Settings) -> Result<Machine<T>, CommitError> {
        let read = vec![redis::Cmd::hgetall(&self.keys.state)];
        let (fields,): (HashMap<String, String>,) =
            read_as(self.cluster.read_replicated(read, &self.keys).await?)?;
        let Some(saved) = fields.get("saved") else {
            return Err(CommitError::Gone);
        };
        let mut saved: Saved<T::Saved> = serde_json::from_str(saved)
            .map_err(|error| CommitError::Damaged(format!("its state does not parse: {error}")))?;
        let instance = self.cluster.instance.load(Ordering::Acquire);
        saved.incarnation ^= instance;
        let machine = Machine::reload(settings, &saved)
            .map_err(|why| CommitError::Damaged(why.0.to_owned()))?;
        self.instance = instance;
        let epoch: Option<u64> = fields.get("epoch").and_then(|e| e.parse().ok());
        if self.epoch.is_some() && self.epoch != epoch {
            self.epoch = None;
        }
        Ok(machine)
    }
}
