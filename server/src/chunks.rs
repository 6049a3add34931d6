//! Cluster mode: the steps' work of a run (see `Task::plan`) shared by every
//! node. The node that owns the run offers each piece as a **chunk** in
//! Redis; every node takes chunks while it has a free work thread, each
//! under a lease of its own, and commits a chunk's result once, while it
//! still holds that lease; the owner collects the results in order and
//! takes the steps as one process does. A node killed mid-chunk loses
//! nothing: when its lease lapses the chunk goes back to the front of the
//! queue and another node takes it. Generic: a chunk is a plan and a
//! result as JSON.
//!
//! Keys: `hs:chunks` (the queue of open chunks' ids), `hs:chunks:leased`
//! (ids by their lease's end), `hs:chunk:<id>` (the plan),
//! `hs:chunk:<id>:lease` (the node computing it), `hs:chunk:<id>:done`
//! (its result). The owner deletes a chunk's keys once it has its result;
//! those of an owner that died expire after [`CHUNK_TTL`].

use std::{sync::LazyLock, time::Duration};

use redis::Script;

use crate::{backend::CommitError, cluster::Cluster};

/// The queue of open chunks.
const QUEUE: &str = "hs:chunks";
/// Chunks being computed, by the end of their lease (ms).
const LEASED: &str = "hs:chunks:leased";
/// The counter of chunk ids.
const NEXT: &str = "hs:chunks:next";
/// Every node's work threads: `node:threads` by when it lapses (ms).
const WORKERS: &str = "hs:chunks:workers";

/// How long a chunk's plan and result are kept if its owner never collects
/// them (it died or stopped waiting).
pub const CHUNK_TTL: Duration = Duration::from_secs(600);

/// Offers plans. KEYS: queue, next. ARGV: ttl (s), then each plan. Answers
/// their ids, in order.
const OFFER: &str = r"
local ids = {}
for i = 2, #ARGV do
  local id = redis.call('INCR', KEYS[2])
  redis.call('SET', 'hs:chunk:' .. id, ARGV[i], 'EX', ARGV[1])
  redis.call('RPUSH', KEYS[1], id)
  ids[#ids + 1] = id
end
return ids
";

/// Takes the oldest open chunk still wanted. KEYS: queue, leased. ARGV:
/// node, lease ms. Answers {id, plan}, or nothing when none is open.
const TAKE: &str = r"
while true do
  local id = redis.call('LPOP', KEYS[1])
  if not id then return false end
  local plan = redis.call('GET', 'hs:chunk:' .. id)
  if plan and redis.call('EXISTS', 'hs:chunk:' .. id .. ':done') == 0 then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('SET', 'hs:chunk:' .. id .. ':lease', ARGV[1], 'PX', ARGV[2])
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), id)
    return {id, plan}
  end
end
";

/// Commits a chunk's result, once, by its lease holder. KEYS: leased.
/// ARGV: id, node, result, ttl (s). Answers 1, or 0 when the lease is lost.
const FINISH: &str = r"
local lease = 'hs:chunk:' .. ARGV[1] .. ':lease'
if redis.call('GET', lease) ~= ARGV[2] then return 0 end
redis.call('DEL', lease)
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('EXISTS', 'hs:chunk:' .. ARGV[1]) == 0 then return 1 end
redis.call('SET', 'hs:chunk:' .. ARGV[1] .. ':done', ARGV[3], 'EX', ARGV[4], 'NX')
return 1
";

/// Renews a chunk's lease still held. KEYS: leased. ARGV: id, node, lease
/// ms. Answers 1, or 0 when it is lost.
const RENEW: &str = r"
local lease = 'hs:chunk:' .. ARGV[1] .. ':lease'
if redis.call('GET', lease) ~= ARGV[2] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('PEXPIRE', lease, ARGV[3])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return 1
";

/// Says this node's work threads until ARGV[3] ms from now, and answers
/// the work threads of every node still saying so. KEYS: workers. ARGV:
/// node, threads, for (ms).
const WORKING: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1] .. ':' .. ARGV[2])
local threads = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  threads = threads + tonumber(string.match(member, ':(%d+)$'))
end
return threads
";

/// Puts chunks whose lease lapsed back at the queue's front. KEYS: leased,
/// queue. Answers how many.
const RECLAIM: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 256)
for _, id in ipairs(lapsed) do
  redis.call('ZREM', KEYS[1], id)
  if redis.call('EXISTS', 'hs:chunk:' .. id) == 1
      and redis.call('EXISTS', 'hs:chunk:' .. id .. ':done') == 0 then
    redis.call('LPUSH', KEYS[2], id)
  end
end
return #lapsed
";

static OFFER_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(OFFER));
static TAKE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(TAKE));
static FINISH_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(FINISH));
static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW));
static WORKING_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(WORKING));
static RECLAIM_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RECLAIM));

/// A chunk taken by this node: its id and its plan.
pub struct Taken {
    /// Its id.
    pub id: u64,
    /// Its plan, as JSON.
    pub plan: String,
}

impl Cluster {
    /// Offers `plans` (JSON) to every node; their chunks' ids.
    pub async fn offer_chunks(&self, plans: &[String]) -> Result<Vec<u64>, CommitError> {
        let mut redis = self.connection();
        let mut offer = OFFER_SCRIPT.prepare_invoke();
        offer.key(QUEUE).key(NEXT).arg(CHUNK_TTL.as_secs());
        for plan in plans {
            offer.arg(plan);
        }
        offer
            .invoke_async(&mut redis)
            .await
            .map_err(|error| self.down(&error))
    }

    /// Takes the oldest open chunk, leased to this node.
    pub async fn take_chunk(&self) -> Result<Option<Taken>, CommitError> {
        let mut redis = self.connection();
        let taken: Option<(u64, String)> = TAKE_SCRIPT
            .key(QUEUE)
            .key(LEASED)
            .arg(self.node())
            .arg(self.lease_period().as_millis() as u64)
            .invoke_async(&mut redis)
            .await
            .map_err(|error| self.down(&error))?;
        Ok(taken.map(|(id, plan)| Taken { id, plan }))
    }

    /// Commits chunk `id`'s result (JSON), if this node still holds its
    /// lease; false when it lost it (another node takes the chunk).
    pub async fn finish_chunk(&self, id: u64, result: &str) -> Result<bool, CommitError> {
        let mut redis = self.connection();
        let held: i64 = FINISH_SCRIPT
            .key(LEASED)
            .arg(id)
            .arg(self.node())
            .arg(result)
            .arg(CHUNK_TTL.as_secs())
            .invoke_async(&mut redis)
            .await
            .map_err(|error| self.down(&error))?;
        Ok(held == 1)
    }

    /// Renews the lease of chunk `id` while this node computes it; false
    /// when it is lost.
    pub async fn renew_chunk(&self, id: u64) -> Result<bool, CommitError> {
        let mut redis = self.connection();
        let held: i64 = RENEW_SCRIPT
            .key(LEASED)
            .arg(id)
            .arg(self.node())
            .arg(self.lease_period().as_millis() as u64)
            .invoke_async(&mut redis)
            .await
            .map_err(|error| self.down(&error))?;
        Ok(held == 1)
    }

    /// The results of chunks `ids` so far, in order (`None`: not yet).
    pub async fn chunk_results(&self, ids: &[u64]) -> Result<Vec<Option<String>>, CommitError> {
        let mut redis = self.connection();
        let keys: Vec<String> = ids.iter().map(|id| format!("hs:chunk:{id}:done")).collect();
        redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut redis)
            .await
            .map_err(|error| self.down(&error))
    }

    /// Forgets chunks `ids`: collected, or no longer wanted (a chunk being
    /// computed finishes unseen).
    pub async fn drop_chunks(&self, ids: &[u64]) -> Result<(), CommitError> {
        let mut redis = self.connection();
        let keys: Vec<String> = ids
            .iter()
            .flat_map(|id| [format!("hs:chunk:{id}"), format!("hs:chunk:{id}:done")])
            .collect();
        redis::cmd("DEL")
            .arg(&keys)
            .query_async::<()>(&mut redis)
            .await
            .map_err(|error| self.down(&error))
    }

    /// Says that this node has `threads` work threads for the next
    /// `period`; answers how many all the nodes that said so have (what a
    /// run offers at once, so every node has a chunk).
    pub async fn working(&self, threads: usize, period: Duration) -> Result<usize, CommitError> {
        let mut redis = self.connection();
        WORKING_SCRIPT
            .key(WORKERS)
            .arg(self.node())
            .arg(threads)
            .arg(period.as_millis() as u64)
            .invoke_async(&mut redis)
            .await
            .map_err(|error| self.down(&error))
    }

    /// Puts the chunks whose node stopped renewing back in the queue.
    pub async fn reclaim_chunks(&self) -> Result<u64, CommitError> {
        let mut redis = self.connection();
        RECLAIM_SCRIPT
            .key(LEASED)
            .key(QUEUE)
            .invoke_async(&mut redis)
            .await
            .map_err(|error| self.down(&error))
    }
}
