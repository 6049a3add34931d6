//! Durable sessions: the one narrow interface the runtime saves through, and
//! its embedded SQLite implementation.
//!
//! A session is stored as its [`Saved`] state (start, steps, status,
//! interval, version, generation): a trajectory is deterministic, so the
//! values are recomputed on restore instead of stored.

use std::{
    path::{Path, PathBuf},
    sync::{mpsc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use rusqlite::{params, Connection, OptionalExtension};
use shared::Saved;

use crate::session::SessionId;

/// Where sessions are kept across restarts. Calls block briefly; they are
/// made inside a session's lock section, so what is published was stored.
pub trait Store: Send + Sync + 'static {
    /// Every saved session.
    fn load(&self) -> Result<Vec<(SessionId, Saved)>, StoreError>;
    /// Inserts or replaces one session's state; returns once committed.
    fn save(&self, id: SessionId, saved: &Saved) -> Result<(), StoreError>;
    /// Forgets sessions.
    fn delete(&self, ids: &[SessionId]) -> Result<(), StoreError>;
}

/// A store operation failed. The message names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file cannot be opened or created.
    #[error("cannot open the session store {path}: {message}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        message: String,
    },
    /// The file is not a sound database.
    #[error(
        "the session store {path} is damaged ({message}); move it aside to start with \
         no sessions, or restore it from a backup"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What the integrity check said.
        message: String,
    },
    /// A read or write failed.
    #[error("session store {path}: {message}")]
    Io {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        message: String,
    },
}

/// Sessions in one SQLite file (write-ahead log; a write is committed when
/// `save` returns, which survives the process being killed).
///
/// A commit only appends to the log, without waiting for the disk. Copying
/// the log into the database (a checkpoint, which does wait for the disk)
/// is done by a thread of the store's own, never by a `save`: a save is
/// made in a session's lock section on a request's thread, and SQLite's
/// automatic checkpoint stalled that thread for milliseconds.
pub struct SqliteStore {
    /// The connection; one writer at a time.
    connection: Mutex<Connection>,
    /// The file, for messages.
    path: PathBuf,
    /// Checkpoints the log while the store is open (kept for its `Drop`,
    /// which ends the thread); `None` in memory.
    _checkpointer: Option<Checkpointer>,
}

/// How often the log is copied into the database.
const CHECKPOINT_PERIOD: Duration = Duration::from_secs(1);

/// The thread that checkpoints the log, on a connection of its own.
struct Checkpointer {
    /// Dropped to tell the thread to end.
    stop: Option<mpsc::Sender<()>>,
    /// Joined on drop.
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer, String> {
        let connection = Connection::open(path).map_err(|e| e.to_string())?;
        connection
            .busy_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let (stop, stopped) = mpsc::channel::<()>();
        let path = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("hailstone-store".into())
            .spawn(move || {
                let mut failing = false;
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_PERIOD)
                {
                    // PASSIVE: copies what it can without blocking a writer.
                    let result = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| {
                        Ok(())
                    });
                    match (result, failing) {
                        (Err(error), false) => {
                            tracing::warn!(store = %path.display(), %error, "checkpoint failed; retrying");
                            failing = true;
                        }
                        (Ok(()), true) => {
                            tracing::info!(store = %path.display(), "checkpoints work again");
                            failing = false;
                        }
                        _ => {}
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`; `:memory:` keeps nothing.
    /// A damaged file is refused, never wiped.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let open_error = |e: rusqlite::Error| StoreError::Open {
            path: path.to_owned(),
            message: e.to_string(),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Open {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        }
        let connection = Connection::open(path).map_err(open_error)?;
        let corrupt = |message: String| StoreError::Corrupt {
            path: path.to_owned(),
            message,
        };
        let check: String = connection
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(|e| corrupt(e.to_string()))?;
        if check != "ok" {
            return Err(corrupt(check));
        }
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA busy_timeout = 5000;
                 CREATE TABLE IF NOT EXISTS sessions (
                     id    TEXT PRIMARY KEY NOT NULL,
                     state TEXT NOT NULL
                 ) WITHOUT ROWID;",
            )
            .map_err(|e| corrupt(e.to_string()))?;
        let checkpointer = if path == Path::new(":memory:") {
            None
        } else {
            connection
                .execute_batch("PRAGMA wal_autocheckpoint = 0;")
                .map_err(open_error)?;
            Some(
                Checkpointer::start(path).map_err(|message| StoreError::Open {
                    path: path.to_owned(),
                    message,
                })?,
            )
        };
        Ok(SqliteStore {
            connection: Mutex::new(connection),
            path: path.to_owned(),
            _checkpointer: checkpointer,
        })
    }

    fn io(&self, error: impl std::fmt::Display) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            message: error.to_string(),
        }
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding it leaves SQLite consistent (transactions).
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One session's saved state, if stored.
    pub fn get(&self, id: SessionId) -> Result<Option<Saved>, StoreError> {
        let state: Option<String> = self
            .connection()
            .query_row(
                "SELECT state FROM sessions WHERE id = ?1",
                params![id.to_string()],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.io(e))?;
        state
            .map(|text| serde_json::from_str(&text).map_err(|e| self.io(e)))
            .transpose()
    }
}

impl Store for SqliteStore {
    fn load(&self) -> Result<Vec<(SessionId, Saved)>, StoreError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare("SELECT id, state FROM sessions")
            .map_err(|e| self.io(e))?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(|e| self.io(e))?;
        let mut sessions = Vec::new();
        for row in rows {
            let (id, state) = row.map_err(|e| self.io(e))?;
            match (SessionId::parse(&id), serde_json::from_str::<Saved>(&state)) {
                (Some(id), Ok(saved)) => sessions.push((id, saved)),
                _ => tracing::warn!(
                    store = %self.path.display(),
                    id = %id.get(..8).unwrap_or(&id),
                    "an unreadable session record is left in place and skipped"
                ),
            }
        }
        Ok(sessions)
    }

    fn save(&self, id: SessionId, saved: &Saved) -> Result<(), StoreError> {
        let state = serde_json::to_string(saved).map_err(|e| self.io(e))?;
        // Prepared once per connection, not parsed on every save.
        self.connection()
            .prepare_cached(
                "INSERT INTO sessions (id, state) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state",
            )
            .and_then(|mut statement| statement.execute(params![id.to_string(), state]))
            .map_err(|e| self.io(e))?;
        Ok(())
    }

    fn delete(&self, ids: &[SessionId]) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction().map_err(|e| self.io(e))?;
        for id in ids {
            transaction
                .execute(
                    "DELETE FROM sessions WHERE id = ?1",
                    params![id.to_string()],
                )
                .map_err(|e| self.io(e))?;
        }
        transaction.commit().map_err(|e| self.io(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::wire::Status;

    fn saved(steps: u64) -> Saved {
        Saved {
            start: Some("27".into()),
            steps,
            status: Status::Running,
            interval_ms: 500,
            version: steps + 1,
            generation: 1,
        }
    }

    #[test]
    fn saves_loads_replaces_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/hailstone.db");
        let (a, b) = (SessionId::random(), SessionId::random());
        {
            let store = SqliteStore::open(&path).unwrap();
            store.save(a, &saved(1)).unwrap();
            store.save(a, &saved(2)).unwrap();
            store.save(b, &saved(3)).unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let mut loaded = store.load().unwrap();
        loaded.sort_by_key(|(_, saved)| saved.steps);
        assert_eq!(loaded, vec![(a, saved(2)), (b, saved(3))]);
        store.delete(&[a]).unwrap();
        assert_eq!(store.get(a).unwrap(), None);
        assert_eq!(store.get(b).unwrap(), Some(saved(3)));
    }

    #[test]
    fn the_log_is_copied_into_the_database_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hailstone.db");
        let store = SqliteStore::open(&path).unwrap();
        let auto: i64 = store
            .connection()
            .query_row("PRAGMA wal_autocheckpoint", [], |row| row.get(0))
            .unwrap();
        assert_eq!(auto, 0, "a save never checkpoints by itself");
        for steps in 0..50 {
            store.save(SessionId::random(), &saved(steps)).unwrap();
        }
        // Until a checkpoint, the rows are only in the log; the database
        // file holds its first page. The store's thread copies them over.
        let page: u64 = store
            .connection()
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() <= page {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint in 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(store); // joins the thread
        assert_eq!(SqliteStore::open(&path).unwrap().load().unwrap().len(), 50);
    }

    #[test]
    fn a_damaged_file_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hailstone.db");
        let garbage = b"this is not a database, but it is somebody's file".repeat(100);
        std::fs::write(&path, &garbage).unwrap();
        let error = SqliteStore::open(&path).err().expect("refused").to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert_eq!(std::fs::read(&path).unwrap(), garbage, "never wiped");
    }
}
