//! The registry of live sessions: lookup by cookie, a cap, and expiry.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use shared::{Collatz, Settings, Unrestorable};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    session::{Session, SessionId, RESTORE_VERSION_GAP},
    store::{Store, StoreError},
};

/// Every live session.
pub struct Sessions {
    /// The sessions by id. A std mutex: every use is a short map operation,
    /// never held across an `.await`.
    map: Mutex<HashMap<SessionId, Arc<Session>>>,
    /// The fixed choices of each new session.
    settings: Settings,
    /// The most live sessions.
    max: usize,
    /// The registry's clock starts here; sessions store seconds since.
    epoch: Instant,
    /// Where every session is saved.
    store: Arc<dyn Store>,
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
        max: usize,
        store: Arc<dyn Store>,
        shutdown: CancellationToken,
    ) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            settings,
            max,
            epoch: Instant::now(),
            store,
            shutdown,
        }
    }

    /// Rebuilds every stored session; returns them (to resume their
    /// tasks). A record that cannot be rebuilt is left in the store, skipped
    /// with a warning. Versions are raised past anything published before
    /// the restart.
    pub fn restore(&self) -> Result<Vec<Arc<Session>>, StoreError> {
        let mut restored = Vec::new();
        let mut map = self.lock();
        for (id, saved) in self.store.load()? {
            match Collatz::restore(self.settings, &saved, RESTORE_VERSION_GAP) {
                Ok(machine) => {
                    let session = Arc::new(self.session(id, machine));
                    map.insert(id, session.clone());
                    restored.push(session);
                }
                Err(Unrestorable(why)) => {
                    tracing::warn!(session = %id.short(), why, "a stored session cannot be rebuilt; skipped")
                }
            }
        }
        Ok(restored)
    }

    fn session(&self, id: SessionId, machine: Collatz) -> Session {
        Session::new(
            id,
            machine,
            self.now(),
            self.store.clone(),
            self.shutdown.clone(),
        )
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
        let session = Arc::new(self.session(id, Collatz::new(self.settings)));
        map.insert(id, session.clone());
        Ok(session)
    }

    /// The fixed choices of every session.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every session idle for longer than `timeout`, from memory and
    /// from the store; returns how many.
    pub fn expire(&self, timeout: Duration) -> usize {
        let Some(cutoff) = self.now().checked_sub(timeout.as_secs()) else {
            return 0;
        };
        let mut expired = Vec::new();
        self.lock().retain(|id, session| {
            let idle = session.is_idle_since(cutoff);
            if idle {
                expired.push(*id);
            }
            !idle
        });
        if let Err(error) = self.store.delete(&expired) {
            tracing::error!(%error, "could not delete expired sessions; they will be restored at the next start");
        }
        expired.len()
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
