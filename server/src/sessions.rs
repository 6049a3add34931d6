//! The registry of sessions: lookup by cookie, a cap, expiry, and the
//! stored sessions of an earlier run, rebuilt only when first asked for.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use shared::task::{Machine, Task};
use tokio::{
    sync::{watch, OnceCell},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    backend::{Backend, Ledger, Loaded},
    id::{RunId, SessionId},
    rosters::Rosters,
    session::Session,
    store::StoreError,
};

/// Every session, live or stored.
pub struct Sessions<T: Task> {
    /// The runs by id, ordered so that a session's runs sit together (by
    /// session, then number). A std mutex: every use is a short map
    /// operation, never held across an `.await`.
    map: Mutex<BTreeMap<RunId, Entry<T>>>,
    /// The fixed choices of each new session.
    settings: T::Settings,
    /// The most sessions, live and stored.
    max: usize,
    /// A run nobody has watched for this long may be evicted at the cap.
    idle_timeout: Duration,
    /// The registry's clock starts here; sessions keep milliseconds since.
    epoch: Instant,
    /// Where every session is kept.
    backend: Backend<T>,
    /// Cancelled on shutdown; passed to every session.
    shutdown: CancellationToken,
    /// Told of a run that changes state; passed to every session.
    rosters: Arc<Rosters<T::Summary>>,
    /// Set once the store's index is read: from then on an id that is not
    /// in the map names no session, and the store is not asked. Never set
    /// in a cluster, whose other nodes make sessions.
    indexed: AtomicBool,
    /// False from start until the store's index has been read (or failed
    /// to be): until then the cap cannot be judged, so no session is made.
    ready: watch::Sender<bool>,
}

/// One session in the registry.
enum Entry<T: Task> {
    /// In memory.
    Live(Arc<Session<T>>),
    /// Its record cannot be rebuilt (it, or the store's file, is damaged):
    /// every request for it gets this error, the record is kept as it is
    /// (never rebuilt, expired or evicted) until an operator acts and the
    /// server restarts.
    Damaged(StoreError),
    /// Only in the store (from before a restart) until first asked for.
    Stored {
        /// Shared by concurrent requests, so the session is rebuilt once.
        cell: Arc<OnceCell<Arc<Session<T>>>>,
        /// When it was last seen, in the registry's clock (ms).
        last_seen: u64,
        /// Whether it was running when saved (then it is being resumed).
        running: bool,
    },
}

/// No room for another session: the cap is reached and no session may
/// give way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A new session, and the one that gave way to it at the cap, if any.
pub struct Created<T: Task> {
    /// The new session, pinned until its first command is answered.
    pub session: Arc<Session<T>>,
    /// The session taken out to make room: the caller stops its task and
    /// deletes it from the store.
    pub evicted: Option<Evicted<T>>,
}

/// A session taken out of the registry to make room.
pub struct Evicted<T: Task> {
    /// Its id, to delete from the store.
    pub id: RunId,
    /// The session, if it was in memory (its task must be stopped).
    pub session: Option<Arc<Session<T>>>,
}

/// A session found by [`Sessions::get`].
pub struct Found<T: Task> {
    /// The session.
    pub session: Arc<Session<T>>,
    /// It was just rebuilt from the store: if it was running, its task must
    /// be resumed.
    pub rebuilt: bool,
}

impl<T: Task> Sessions<T> {
    /// An empty registry.
    pub fn new(
        settings: T::Settings,
        max: usize,
        idle_timeout: Duration,
        backend: Backend<T>,
        shutdown: CancellationToken,
        rosters: Arc<Rosters<T::Summary>>,
    ) -> Sessions<T> {
        Sessions {
            map: Mutex::new(BTreeMap::new()),
            settings,
            max,
            idle_timeout,
            epoch: Instant::now(),
            backend,
            shutdown,
            rosters,
            indexed: AtomicBool::new(false),
            ready: watch::Sender::new(true),
        }
    }

    /// Holds back new sessions until the store's index is read
    /// ([`Sessions::load_index`]): the stored ones count against the cap.
    pub fn expect_index(&self) {
        self.ready.send_replace(false);
    }

    /// Waits until new sessions may be made (see [`Sessions::expect_index`]).
    pub async fn ready(&self) {
        let _ = self.ready.subscribe().wait_for(|ready| *ready).await;
    }

    /// Reads the store's index: every stored session becomes known without
    /// being loaded. Returns the ids of those that were running, to resume.
    /// New sessions may be made afterwards, whether it could be read or not.
    pub async fn load_index(&self) -> Result<Vec<RunId>, StoreError> {
        let read = self.read_index().await;
        self.ready.send_replace(true);
        read
    }

    async fn read_index(&self) -> Result<Vec<RunId>, StoreError> {
        let Some(index) = self.backend.index().await? else {
            return Ok(Vec::new());
        };
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let now = self.now();
        let mut running = Vec::new();
        let mut map = self.lock();
        for stored in index {
            let age = unix_now.saturating_sub(stored.seen).saturating_mul(1000);
            map.entry(stored.id).or_insert_with(|| Entry::Stored {
                cell: Arc::new(OnceCell::new()),
                last_seen: now.saturating_sub(age),
                running: stored.running,
            });
            if stored.running {
                running.push(stored.id);
            }
        }
        self.indexed.store(true, Ordering::Release);
        Ok(running)
    }

    fn session(&self, id: RunId, machine: Machine<T>, ledger: Ledger<T>) -> Session<T> {
        let rosters = self.rosters.clone();
        Session::new(
            id,
            machine,
            ledger,
            self.now(),
            self.shutdown.clone(),
            rosters,
        )
    }

    /// The session named by `id` if it is in memory, untouched (for news
    /// from other nodes).
    pub fn live(&self, id: RunId) -> Option<Arc<Session<T>>> {
        match self.lock().get(&id) {
            Some(Entry::Live(session)) => Some(session.clone()),
            _ => None,
        }
    }

    /// Every session in memory.
    pub fn all_live(&self) -> Vec<Arc<Session<T>>> {
        self.lock()
            .values()
            .filter_map(|entry| match entry {
                Entry::Live(session) => Some(session.clone()),
                Entry::Stored { .. } | Entry::Damaged(_) => None,
            })
            .collect()
    }

    /// The runs streamed here now (a page of each is open) whose policy
    /// would pause or cancel them unwatched.
    pub fn watched(&self) -> Vec<RunId> {
        self.all_live()
            .into_iter()
            .filter(|run| {
                run.unwatched_minutes().is_some() && run.subscribers().load(Ordering::Relaxed) > 0
            })
            .map(|run| run.id())
            .collect()
    }

    /// The running runs no page here watches whose policy would pause or
    /// cancel them, with how long since one was last open (or the run was
    /// last asked for).
    pub fn unwatched_running(&self) -> Vec<(Arc<Session<T>>, Duration)> {
        let now = self.now();
        self.all_live()
            .into_iter()
            .filter(|run| {
                run.is_running()
                    && run.unwatched_minutes().is_some()
                    && run.subscribers().load(Ordering::Relaxed) == 0
            })
            .map(|run| {
                let idle = Duration::from_millis(now.saturating_sub(run.last_seen()));
                (run, idle)
            })
            .collect()
    }

    /// The sessions in use here: watched, running, or asked for within
    /// `within`. A node keeps these alive in Redis; a copy idle here is
    /// kept alive by the node that uses it, if any.
    pub fn in_use(&self, within: Duration) -> Vec<RunId> {
        let since = self.now().saturating_sub(millis(within));
        self.lock()
            .values()
            .filter_map(|entry| match entry {
                Entry::Live(session)
                    if session.subscribers().load(Ordering::Relaxed) > 0
                        || session.is_running()
                        || session.last_seen() >= since =>
                {
                    Some(session.id())
                }
                _ => None,
            })
            .collect()
    }

    /// The session named by `id`, rebuilt from the store if it was not yet;
    /// `None` if there is none.
    pub async fn get(&self, id: RunId) -> Result<Option<Found<T>>, StoreError> {
        let cell = {
            let mut map = self.lock();
            match map.get(&id) {
                Some(Entry::Live(session)) if session.is_retired() => {
                    // Gone from the store (a cluster's Redis lost it).
                    map.remove(&id);
                    return Ok(None);
                }
                Some(Entry::Live(session)) => {
                    session.touch(self.now());
                    return Ok(Some(Found {
                        session: session.clone(),
                        rebuilt: false,
                    }));
                }
                Some(Entry::Stored { cell, .. }) => cell.clone(),
                Some(Entry::Damaged(error)) => return Err(error.clone()),
                None if self.indexed.load(Ordering::Acquire) => return Ok(None),
                None => {
                    // Before the index is read, any id may be stored.
                    let cell = Arc::new(OnceCell::new());
                    map.insert(
                        id,
                        Entry::Stored {
                            cell: cell.clone(),
                            last_seen: self.now(),
                            running: false,
                        },
                    );
                    cell
                }
            }
        };
        let mut rebuilt = false;
        let result = cell
            .get_or_try_init(|| {
                rebuilt = true;
                self.rebuild(id)
            })
            .await;
        // `None` from the store: no such session (nothing is cached).
        let result = match result {
            Ok(session) => Ok(Some(session)),
            Err(Some(error)) => Err(error),
            Err(None) => Ok(None),
        };
        let ours = |entry: Option<&Entry<T>>| matches!(entry, Some(Entry::Stored { cell: c, .. }) if Arc::ptr_eq(c, &cell));
        let session = match result {
            Ok(Some(session)) => session,
            Ok(None) | Err(_) => {
                let mut map = self.lock();
                if ours(map.get(&id)) {
                    match &result {
                        Err(error @ (StoreError::Damaged { .. } | StoreError::Corrupt { .. })) => {
                            tracing::error!(%error, session = %id, "a stored session cannot be rebuilt; it is kept as it is and its visitor is told so");
                            map.insert(id, Entry::Damaged(error.clone()));
                        }
                        _ => {
                            map.remove(&id);
                        }
                    }
                }
                return result.map(|_| None);
            }
        };
        let kept = {
            let mut map = self.lock();
            match map.get(&id) {
                entry if ours(entry) => {
                    map.insert(id, Entry::Live(session.clone()));
                    true
                }
                // Another request for it, sharing the cell, put it in first.
                Some(Entry::Live(live)) => Arc::ptr_eq(live, session),
                _ => false,
            }
        };
        if !kept {
            // Evicted or expired while it was being rebuilt: it is let go
            // of, and the request is served as one without a session (so
            // nothing stores it again).
            session.retire().await;
            return Ok(None);
        }
        Ok(Some(Found {
            session: session.clone(),
            rebuilt,
        }))
    }

    /// Loads a stored session. `Err(None)`: there is none (a cell's
    /// initialisation fails, so the next request asks again).
    async fn rebuild(&self, id: RunId) -> Result<Arc<Session<T>>, Option<StoreError>> {
        match self.backend.load(self.settings, id).await {
            Ok(Some(Loaded { machine, ledger })) => Ok(Arc::new(self.session(id, machine, ledger))),
            Ok(None) => Err(None),
            Err(error) => Err(Some(error)),
        }
    }

    /// A new session's first run, under a fresh random id. At the cap, the
    /// longest-untouched run that may give way is taken out in the same
    /// step (so no other creation can take the room made), and returned to
    /// be retired; [`Full`] when none may. The new run is pinned (it never
    /// gives way) until its first command is answered.
    pub fn create(&self) -> Result<Created<T>, Full> {
        self.insert_new(|map| loop {
            let id = RunId::random();
            if !map.contains_key(&id) {
                break id;
            }
        })
    }

    /// A new run of `session`, numbered `number` or, if a run has that
    /// number here, the next free one; made as [`Sessions::create`] makes
    /// one, pinned until it is stored.
    pub fn create_run(&self, session: SessionId, number: u64) -> Result<Created<T>, Full> {
        self.insert_new(|map| {
            let mut id = RunId { session, number };
            while map.contains_key(&id) {
                id.number += 1;
            }
            id
        })
    }

    /// The ids of `session`'s runs this registry knows, oldest first: all
    /// of them in one process once the store's index is read (see
    /// [`Sessions::ready`]), the copies it holds on a node of a cluster.
    pub fn runs_of(&self, session: SessionId) -> Vec<RunId> {
        let first = RunId::first(session);
        let last = RunId {
            session,
            number: u64::MAX,
        };
        self.lock().range(first..=last).map(|(id, _)| *id).collect()
    }

    fn insert_new(
        &self,
        id: impl FnOnce(&BTreeMap<RunId, Entry<T>>) -> RunId,
    ) -> Result<Created<T>, Full> {
        let now = self.now();
        let mut map = self.lock();
        let evicted = if map.len() >= self.max {
            let victim = self.victim(&map, now).ok_or(Full)?;
            let session = match map.remove(&victim) {
                Some(Entry::Live(session)) => Some(session),
                _ => None,
            };
            Some(Evicted {
                id: victim,
                session,
            })
        } else {
            None
        };
        let id = id(&map);
        let machine = Machine::new(self.settings).with_incarnation(rand::random());
        let ledger = self.backend.ledger(id, &machine);
        let session = Arc::new(self.session(id, machine, ledger));
        session.pin();
        map.insert(id, Entry::Live(session.clone()));
        Ok(Created { session, evicted })
    }

    /// The longest-untouched session that may give way at the cap: one with
    /// no page open, not pinned, and either nothing running or a run nobody
    /// has touched for the idle timeout. Ties go to the lower id.
    fn victim(&self, map: &BTreeMap<RunId, Entry<T>>, now: u64) -> Option<RunId> {
        let idle = millis(self.idle_timeout);
        // Checked, not saturating: in the first idle timeout after a start,
        // no run has been untouched that long.
        let untouched_long = |seen: u64| seen.checked_add(idle).is_some_and(|at| at <= now);
        map.iter()
            .filter_map(|(id, entry)| match entry {
                Entry::Live(session) => {
                    let watched = session.subscribers().load(Ordering::Relaxed) > 0;
                    let seen = session.last_seen();
                    let may = !watched
                        && !session.is_pinned()
                        && (!session.is_running() || untouched_long(seen));
                    may.then_some((seen, *id))
                }
                Entry::Stored {
                    cell,
                    last_seen,
                    running,
                } => (!cell.initialized() && (!*running || untouched_long(*last_seen)))
                    .then_some((*last_seen, *id)),
                Entry::Damaged(_) => None,
            })
            .min_by_key(|(seen, id)| (*seen, *id))
            .map(|(_, id)| id)
    }

    /// Takes a session out of the registry (its creation could not be
    /// stored).
    pub fn remove(&self, id: RunId) {
        self.lock().remove(&id);
    }

    /// Notes that `session` was just used (in the registry's clock).
    pub fn touch(&self, session: &Session<T>) {
        session.touch(self.now());
    }

    /// `session`'s first command was answered: it is unpinned and touched.
    pub fn unpin(&self, session: &Session<T>) {
        session.unpin(self.now());
    }

    /// The fixed choices of every session.
    pub fn settings(&self) -> T::Settings {
        self.settings
    }

    /// How many sessions there are, live and stored.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when there is no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every session idle for longer than `timeout`, from memory and
    /// from the store; returns how many.
    pub async fn expire(&self, timeout: Duration) -> usize {
        let Some(cutoff) = self.now().checked_sub(millis(timeout)) else {
            return 0;
        };
        let mut expired = Vec::new();
        self.lock().retain(|id, entry| {
            let idle = match entry {
                Entry::Live(session) => session.retire_if_idle_since(cutoff),
                Entry::Stored {
                    cell,
                    last_seen,
                    running,
                } => !*running && *last_seen <= cutoff && !cell.initialized(),
                // Kept for the operator, never deleted here.
                Entry::Damaged(_) => false,
            };
            if idle {
                expired.push(*id);
            }
            !idle
        });
        let count = expired.len();
        for id in &expired {
            self.rosters.ring(id.session);
        }
        if count > 0 {
            if let Err(error) = self.backend.forget(expired).await {
                tracing::error!(%error, "could not delete expired sessions; they will come back at the next start");
            }
        }
        count
    }

    /// Milliseconds since the registry started.
    fn now(&self) -> u64 {
        millis(self.epoch.elapsed())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<RunId, Entry<T>>> {
        // A panic while holding this lock leaves a consistent map (every
        // operation on it is a single std call), so poisoning is ignored.
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `duration` in whole milliseconds.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
