//! The registry of live sessions: lookup by cookie, a cap, and expiry.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use shared::{Collatz, Settings};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::session::{Session, SessionId};

/// Every live session.
pub struct Sessions {
    /// The sessions by id. A std mutex: every use is a short map operation,
    /// never held across an `.await`.
    map: Mutex<HashMap<SessionId, Arc<Session>>>,
    /// The fixed choices of each new session.
    settings: Settings,
    /// Deltas each session keeps for reconnecting streams.
    log_capacity: usize,
    /// The most live sessions.
    max: usize,
    /// The registry's clock starts here; sessions store seconds since.
    epoch: Instant,
    /// Cancelled on shutdown; passed to every session.
    shutdown: CancellationToken,
}

/// No room for another session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl Sessions {
    /// An empty registry.
    pub fn new(
        settings: Settings,
        log_capacity: usize,
        max: usize,
        shutdown: CancellationToken,
    ) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            settings,
            log_capacity,
            max,
            epoch: Instant::now(),
            shutdown,
        }
    }

    /// The session named by `id`, if it is live.
    pub fn get(&self, id: SessionId) -> Option<Arc<Session>> {
        let session = self.lock().get(&id).cloned()?;
        session.touch(self.now());
        Some(session)
    }

    /// A new session under a fresh random id, unless the cap is reached.
    pub fn create(&self) -> Result<Arc<Session>, Full> {
        let mut map = self.lock();
        if map.len() >= self.max {
            return Err(Full);
        }
        let id = loop {
            let id = SessionId::random();
            if !map.contains_key(&id) {
                break id;
            }
        };
        let session = Arc::new(Session::new(
            id,
            Collatz::new(self.settings),
            self.log_capacity,
            self.now(),
            self.shutdown.clone(),
        ));
        map.insert(id, session.clone());
        Ok(session)
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every session idle for longer than `timeout`; returns how many.
    pub fn expire(&self, timeout: Duration) -> usize {
        let Some(cutoff) = self.now().checked_sub(timeout.as_secs()) else {
            return 0;
        };
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, session| !session.is_idle_since(cutoff));
        before - map.len()
    }

    /// Seconds since the registry started.
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Arc<Session>>> {
        // A panic while holding this lock leaves a consistent map (every
        // operation on it is a single std call), so poisoning is ignored.
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
