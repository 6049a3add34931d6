//! Durable sessions: the one narrow interface the runtime saves through, and
//! its embedded SQLite implementation.
//!
//! A session is stored as its [`Saved`] state: the machine's status,
//! interval, version, generation and incarnation, beside its task kind's
//! saved form of the run (whatever makes rebuilding it short: Collatz keeps
//! the window's first value, the peak and the chart's profile), so a
//! restart never replays whole runs. The store knows no task kind.

use std::{
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use serde::{de::DeserializeOwned, Serialize};
use shared::{task::Saved, wire::Status};
use tokio::sync::oneshot;

use crate::id::RunId;

/// The answer to a store request, awaited off the store's thread.
pub type Receipt<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// Where sessions are kept across restarts.
///
/// Every method *enqueues* its request when called, so requests made one
/// after another (in a session's lock section) are carried out in that
/// order; the returned [`Receipt`] resolves once the request is done. No
/// method blocks the caller's thread.
/// What a store keeps of a session's run: a task kind's saved form (the
/// store itself knows no kind).
pub trait Kept: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<S: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> Kept for S {}

pub trait Store<S: Kept>: Send + Sync + 'static {
    /// The id and status of every stored session, and when each was last
    /// seen: read at start, so a restart never loads whole sessions.
    fn index(&self) -> Receipt<Vec<Stored>>;
    /// One session's saved state, if stored.
    fn get(&self, id: RunId) -> Receipt<Option<Saved<S>>>;
    /// Inserts or replaces one session's state; resolves once committed.
    /// A failure is reported and nothing is retried.
    fn save(&self, id: RunId, saved: Saved<S>) -> Receipt<()>;
    /// A step's checkpoint: [`Store::save`], but never ahead of a command:
    /// every save queued before or meanwhile is committed first, and a
    /// checkpoint is never committed after a later save of its session.
    fn checkpoint(&self, id: RunId, saved: Saved<S>) -> Receipt<()> {
        self.save(id, saved)
    }
    /// Inserts or replaces one session's state with nobody waiting: if it
    /// cannot be stored now, it is tried again until it, or a newer save of
    /// the session, is stored (a run paused because its checkpoint failed
    /// must not come back running after a restart).
    fn keep(&self, id: RunId, saved: Saved<S>);
    /// Forgets sessions.
    fn delete(&self, ids: Vec<RunId>) -> Receipt<()>;
    /// What the store is, for messages: its file, or `:memory:`.
    fn name(&self) -> String;
}

/// What the index says of one stored session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Its id.
    pub id: RunId,
    /// Whether its run was running when last saved.
    pub running: bool,
    /// When it was last saved, in seconds since the Unix epoch.
    pub seen: u64,
}

/// A store operation failed. The message names the file and the cause.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The file cannot be opened or created.
    #[error("cannot open the session store {path}: {message}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The file or its directory may not be written by this process.
    #[error(
        "the session store {path} cannot be written: {message}; give this process write \
         access to the file and its directory, or set HAILSTONE_STORE_PATH to another place"
    )]
    ReadOnly {
        /// The database file.
        path: PathBuf,
        /// What the operating system or SQLite said.
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
        /// What SQLite said.
        message: String,
    },
    /// One session's record is sound as bytes but cannot be rebuilt into
    /// the session it was (a start that is not a number, a state that does
    /// not parse). It is kept as it is for the operator; the session is
    /// not served.
    #[error(
        "the session {session} in the store {store} is damaged ({why}) and cannot be \
         rebuilt; it is kept as it is"
    )]
    Damaged {
        /// The store (file) holding it.
        store: String,
        /// The session's id.
        session: String,
        /// What is wrong with it.
        why: String,
    },
    /// A read or write failed.
    #[error("session store {path}: {message}")]
    Io {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        message: String,
    },
    /// The store's thread has stopped (the server is shutting down).
    #[error("the session store is closed")]
    Closed,
    /// Redis (cluster mode) cannot be reached or failed.
    #[error("the session store (Redis) cannot be reached: {message}")]
    Unavailable {
        /// What the client said.
        message: String,
    },
}

/// Opens the store at `path`: [`MemoryStore`] for `:memory:`, else
/// [`SqliteStore`], writing the step checkpoints of one `tick` (the
/// scheduler's, `sessions.tick-ms`) together.
pub fn open<S: Kept>(
    path: &Path,
    tick: Duration,
) -> Result<std::sync::Arc<dyn Store<S>>, StoreError> {
    Ok(if path == Path::new(":memory:") {
        std::sync::Arc::new(MemoryStore::default())
    } else {
        std::sync::Arc::new(SqliteStore::open_grouping(path, tick)?)
    })
}

/// Sessions in memory only: kept until the process ends. Every request is
/// answered before its method returns (tests under a paused clock rely on
/// that).
pub struct MemoryStore<S> {
    /// The sessions and when each was saved.
    sessions: std::sync::Mutex<std::collections::HashMap<RunId, (Saved<S>, u64)>>,
}

impl<S> Default for MemoryStore<S> {
    fn default() -> Self {
        MemoryStore {
            sessions: Default::default(),
        }
    }
}

impl<S> MemoryStore<S> {
    fn sessions(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<RunId, (Saved<S>, u64)>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<S: Kept> Store<S> for MemoryStore<S> {
    fn index(&self) -> Receipt<Vec<Stored>> {
        let index = self
            .sessions()
            .iter()
            .map(|(id, (saved, seen))| Stored {
                id: *id,
                running: saved.status == Status::Running,
                seen: *seen,
            })
            .collect();
        Box::pin(std::future::ready(Ok(index)))
    }

    fn get(&self, id: RunId) -> Receipt<Option<Saved<S>>> {
        let saved = self.sessions().get(&id).map(|(saved, _)| saved.clone());
        Box::pin(std::future::ready(Ok(saved)))
    }

    fn save(&self, id: RunId, saved: Saved<S>) -> Receipt<()> {
        self.keep(id, saved);
        Box::pin(std::future::ready(Ok(())))
    }

    fn keep(&self, id: RunId, saved: Saved<S>) {
        let seen = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.sessions().insert(id, (saved, seen));
    }

    fn delete(&self, ids: Vec<RunId>) -> Receipt<()> {
        let mut sessions = self.sessions();
        for id in ids {
            sessions.remove(&id);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn name(&self) -> String {
        ":memory:".into()
    }
}

/// The most requests one transaction carries (group commit).
const BATCH: usize = 512;
/// The most step checkpoints one transaction carries: a command's save
/// arriving while one is written waits for at most that many rows.
const CHECKPOINTS_PER_TRANSACTION: usize = 128;
/// Step checkpoints are held back while the checkpoint thread copies and
/// the log holds this much: the last quarter below [`WAL_LIMIT_BYTES`] is
/// left to commands, which so do not wait for the copy.
const HOLD_CHECKPOINTS_BYTES: u64 = WAL_LIMIT_BYTES / 4 * 3;
/// A checkpoint starts at least this often, and whenever the write-ahead
/// log grows past [`WAL_START_BYTES`].
const CHECKPOINT_PERIOD: Duration = Duration::from_secs(1);
/// See [`CHECKPOINT_PERIOD`].
const WAL_START_BYTES: u64 = WAL_LIMIT_BYTES / 2;
/// The most passes of one checkpoint over what was committed meanwhile.
const CHECKPOINT_ROUNDS: usize = 4;
/// A log this big while a checkpoint is still copying makes the writer wait
/// for it: the log stays within about this plus one batch.
pub const WAL_LIMIT_BYTES: u64 = 4 << 20;
/// How often a save that failed without anyone waiting for it (a step's
/// checkpoint, a pause) is tried again.
const RETRY_PERIOD: Duration = Duration::from_secs(1);

/// Sessions in one SQLite file, in write-ahead-log mode, written by one
/// thread of the store's own.
///
/// That thread owns the only writing connection. It takes every queued
/// request at once and commits the writes among them in one transaction (a
/// group commit), then answers each.
///
/// Step checkpoints go in transactions of their own, never with a
/// command's save: the first one waits a tick for the others (the
/// scheduler steps one tick's runs together, so what they checkpoint
/// arrives together), then all of them, up to
/// [`CHECKPOINTS_PER_TRANSACTION`], are written in one transaction, after
/// the commands that came meanwhile. A command so waits for at most the
/// transaction in progress, never for a queue of checkpoints. (A request of
/// a session with a checkpoint waiting takes that checkpoint along first,
/// in order.)
///
/// Commits do not wait for checkpoints (a truncating checkpoint on the
/// writer held commits for 60-70 ms per 5 MB of log here, and each of its
/// three disk syncs for 1-4 ms). Once a second, or after 2 MiB of rows, the
/// writer asks a checkpoint thread with a connection of its own to copy the
/// log into the database (`wal_checkpoint(PASSIVE)`, which never blocks the
/// writer), in a few passes that take what was committed meanwhile. Once
/// every frame is copied, the next commit starts the log again from its
/// beginning (and `journal_size_limit` cuts the file back to 4 MiB). Should
/// the log grow past 3 MiB while the checkpoint thread still copies, step
/// checkpoints wait (commands still go through); past 4 MiB, the writer
/// waits for it and copies the rest itself: the log stays bounded however
/// busy the writer is.
///
/// `synchronous = NORMAL`: a commit survives the process being killed at
/// any moment; a power cut or kernel crash can lose the commits since the
/// last checkpoint (at most about a second), never the file's consistency.
///
/// A [`Store::keep`] that fails (the pause that follows a failed
/// checkpoint) is tried again every second until it, or a newer save of the
/// same session, is stored.
pub struct SqliteStore<S> {
    /// The file, for messages.
    path: PathBuf,
    /// Requests to the store's thread.
    requests: mpsc::Sender<Request<S>>,
    /// The store's thread, joined on drop after the last request.
    thread: Option<JoinHandle<()>>,
}

/// Where the store's thread sends a write's outcome.
type Answer = oneshot::Sender<Result<(), StoreError>>;

/// A save on the store's thread: the session, its record, and who waits
/// for it (nobody, for a [`Store::keep`]).
type Write<S> = (RunId, Box<Saved<S>>, Option<Answer>);
/// A write in the order it was asked for: a delete followed by a save of
/// the same session leaves it saved, a save followed by a delete leaves it
/// gone.
enum Queued<S> {
    Save(Write<S>),
    Delete(Vec<RunId>, Answer),
}

/// One request to the store's thread, with where to send its answer.
enum Request<S> {
    Index(oneshot::Sender<Result<Vec<Stored>, StoreError>>),
    Get(RunId, oneshot::Sender<Result<Option<Saved<S>>, StoreError>>),
    Save(
        RunId,
        Box<Saved<S>>,
        oneshot::Sender<Result<(), StoreError>>,
    ),
    Keep(RunId, Box<Saved<S>>),
    Checkpoint(
        RunId,
        Box<Saved<S>>,
        oneshot::Sender<Result<(), StoreError>>,
    ),
    Delete(Vec<RunId>, oneshot::Sender<Result<(), StoreError>>),
    /// Test support: the most pages the database may grow to (0: no limit).
    #[doc(hidden)]
    MaxPages(u64, oneshot::Sender<Result<(), StoreError>>),
}

impl<S: Kept> SqliteStore<S> {
    /// Opens (or creates) the store at `path`; `:memory:` keeps nothing.
    /// Refuses a file it cannot write (naming the permission problem) and a
    /// damaged file (which it never wipes). Step checkpoints wait for no
    /// group: they are written right after the requests that came with them.
    pub fn open(path: &Path) -> Result<SqliteStore<S>, StoreError> {
        SqliteStore::open_grouping(path, Duration::ZERO)
    }

    /// [`SqliteStore::open`], the first step checkpoint of a group waiting
    /// `grouping` for the others.
    pub fn open_grouping(path: &Path, grouping: Duration) -> Result<SqliteStore<S>, StoreError> {
        let connection = open_connection(path)?;
        let (requests, queue) = mpsc::channel();
        let in_memory = path == Path::new(":memory:");
        let checkpointer = if in_memory {
            None
        } else {
            Some(Checkpointer::start(path)?)
        };
        let writer = Writer {
            connection,
            path: path.to_owned(),
            checkpointer,
            retry: std::collections::HashMap::new(),
            deferred: Deferred::default(),
            grouping,
            last_checkpoint: Instant::now(),
            damaged: None,
        };
        let thread = std::thread::Builder::new()
            .name("hailstone-store".into())
            .spawn(move || {
                writer.connection.wal_hook(Some(note_log_pages));
                writer.run(queue)
            })
            .map_err(|e| StoreError::Open {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        Ok(SqliteStore {
            path: path.to_owned(),
            requests,
            thread: Some(thread),
        })
    }

    fn ask<T: Send + 'static>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request<S>,
    ) -> Receipt<T> {
        let (answer, answered) = oneshot::channel();
        let sent = self.requests.send(request(answer));
        Box::pin(async move {
            sent.map_err(|_| StoreError::Closed)?;
            answered.await.map_err(|_| StoreError::Closed)?
        })
    }

    /// Test support: makes writes fail with "database or disk is full" once
    /// the file would grow past `pages` pages (0 lifts the limit), as a full
    /// disk does.
    #[doc(hidden)]
    pub fn limit_pages(&self, pages: u64) -> Receipt<()> {
        self.ask(|answer| Request::MaxPages(pages, answer))
    }
}

impl<S: Kept> Store<S> for SqliteStore<S> {
    fn index(&self) -> Receipt<Vec<Stored>> {
        self.ask(Request::Index)
    }

    fn get(&self, id: RunId) -> Receipt<Option<Saved<S>>> {
        self.ask(|answer| Request::Get(id, answer))
    }

    fn save(&self, id: RunId, saved: Saved<S>) -> Receipt<()> {
        self.ask(|answer| Request::Save(id, Box::new(saved), answer))
    }

    fn checkpoint(&self, id: RunId, saved: Saved<S>) -> Receipt<()> {
        self.ask(|answer| Request::Checkpoint(id, Box::new(saved), answer))
    }

    fn keep(&self, id: RunId, saved: Saved<S>) {
        // Only fails once the store's thread has ended (at shutdown).
        let _ = self.requests.send(Request::Keep(id, Box::new(saved)));
    }

    fn delete(&self, ids: Vec<RunId>) -> Receipt<()> {
        self.ask(|answer| Request::Delete(ids, answer))
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

impl<S> Drop for SqliteStore<S> {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the queued requests.
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.requests, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Opens the file, checks it is a database this process can write, and
/// sets the schema and pragmas.
fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let open_error = |message: String| StoreError::Open {
        path: path.to_owned(),
        message,
    };
    let read_only = |message: String| StoreError::ReadOnly {
        path: path.to_owned(),
        message,
    };
    let corrupt = |message: String| StoreError::Corrupt {
        path: path.to_owned(),
        message,
    };
    let in_memory = path == Path::new(":memory:");
    if !in_memory {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied => read_only(format!(
                    "cannot create the directory {}: {e}",
                    parent.display()
                )),
                _ => open_error(e.to_string()),
            })?;
        }
        check_writable(path).map_err(read_only)?;
    }
    let connection = Connection::open(path).map_err(|e| classify(path, e, open_error))?;
    // Reading the schema fails on a file that is not a database; it reads
    // one page, so it is as fast with 100,000 sessions as with none.
    connection
        .query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(|e| classify(path, e, corrupt))?;
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA wal_autocheckpoint = 0;
             PRAGMA journal_size_limit = 4194304;
             CREATE TABLE IF NOT EXISTS sessions (
                 id      TEXT PRIMARY KEY NOT NULL,
                 state   TEXT NOT NULL
             ) WITHOUT ROWID;",
        )
        .map_err(|e| classify(path, e, corrupt))?;
    // Files from before the index columns get them (filled on next save).
    for column in [
        "running INTEGER NOT NULL DEFAULT 0",
        "seen INTEGER NOT NULL DEFAULT 0",
    ] {
        let name = column.split(' ').next().unwrap_or_default();
        let present: bool = connection
            .query_row(
                "SELECT count(*) FROM pragma_table_info('sessions') WHERE name = ?1",
                [name],
                |row| row.get::<_, i64>(0),
            )
            .map(|count| count > 0)
            .map_err(|e| classify(path, e, corrupt))?;
        if !present {
            connection
                .execute_batch(&format!("ALTER TABLE sessions ADD COLUMN {column};"))
                .map_err(|e| classify(path, e, corrupt))?;
        }
    }
    connection
        .execute_batch("CREATE INDEX IF NOT EXISTS sessions_index ON sessions (running, seen);")
        .map_err(|e| classify(path, e, corrupt))?;
    Ok(connection)
}

/// Fails with the operating system's words when `path` (or, if it does not
/// exist yet, its directory) cannot be written, and likewise for the
/// write-ahead log beside it.
fn check_writable(path: &Path) -> Result<(), String> {
    let writable = |file: &Path| -> Result<(), String> {
        match std::fs::OpenOptions::new().append(true).open(file) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", file.display())),
        }
    };
    writable(path)?;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    writable(Path::new(&wal))?;
    // SQLite creates the log and lock files beside the database.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let probe = dir.join(format!(".hailstone-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("the directory {}: {e}", dir.display())),
    }
}

/// Names an SQLite error for what it is: permissions apart from damage.
fn classify(
    path: &Path,
    error: rusqlite::Error,
    otherwise: impl FnOnce(String) -> StoreError,
) -> StoreError {
    match error.sqlite_error_code() {
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => {
            StoreError::ReadOnly {
                path: path.to_owned(),
                message: error.to_string(),
            }
        }
        _ => otherwise(error.to_string()),
    }
}

/// Step checkpoints waiting for their group's transaction, oldest first,
/// each with when it arrived, and how many of each session's wait (so a
/// request of a session with none, the usual case, scans nothing).
struct Deferred<S> {
    queue: std::collections::VecDeque<(Instant, Write<S>)>,
    per_session: std::collections::HashMap<RunId, usize>,
}

impl<S> Default for Deferred<S> {
    fn default() -> Self {
        Deferred {
            queue: Default::default(),
            per_session: Default::default(),
        }
    }
}

impl<S> Deferred<S> {
    /// When the oldest checkpoint waiting arrived.
    fn since(&self) -> Option<Instant> {
        self.queue.front().map(|(arrived, _)| *arrived)
    }

    fn push(&mut self, id: RunId, saved: Box<Saved<S>>, answer: Answer) {
        *self.per_session.entry(id).or_default() += 1;
        self.queue
            .push_back((Instant::now(), (id, saved, Some(answer))));
    }

    /// The checkpoints of `ids`, in order, taken out.
    fn take(&mut self, ids: &[RunId]) -> Vec<Write<S>> {
        if !ids.iter().any(|id| self.per_session.contains_key(id)) {
            return Vec::new();
        }
        for id in ids {
            self.per_session.remove(id);
        }
        let (taken, kept) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition::<std::collections::VecDeque<_>, _>(|(_, (id, _, _))| ids.contains(id));
        self.queue = kept;
        taken.into_iter().map(|(_, write)| write).collect()
    }

    /// The `count` oldest checkpoints, taken out.
    fn oldest(&mut self, count: usize) -> Vec<Write<S>> {
        let taken: Vec<_> = self
            .queue
            .drain(..count.min(self.queue.len()))
            .map(|(_, write)| write)
            .collect();
        for (id, _, _) in &taken {
            if let Some(left) = self.per_session.get_mut(id) {
                *left -= 1;
                if *left == 0 {
                    self.per_session.remove(id);
                }
            }
        }
        taken
    }

    /// Every checkpoint, taken out.
    fn take_all(&mut self) -> Vec<Write<S>> {
        self.oldest(self.queue.len())
    }
}

/// The store's thread: the connection and what it still has to retry.
struct Writer<S> {
    connection: Connection,
    path: PathBuf,
    /// Copies the log into the database beside the writer; none in memory.
    checkpointer: Option<Checkpointer>,
    /// Saves that failed with nobody waiting, newest per session.
    retry: std::collections::HashMap<RunId, Box<Saved<S>>>,
    /// Step checkpoints not written yet, oldest first.
    deferred: Deferred<S>,
    /// How long the first checkpoint of a group waits for the others (a
    /// tick of the scheduler).
    grouping: Duration,
    /// When the last checkpoint was started.
    last_checkpoint: Instant,
    /// Set once SQLite found the file damaged: from then on nothing is
    /// written to it (every write is refused, no checkpoint copies the
    /// log), so an operator finds it as it was. What SQLite said.
    damaged: Option<String>,
}

impl<S: Kept> Writer<S> {
    fn run(mut self, queue: mpsc::Receiver<Request<S>>) {
        loop {
            let first = match queue.recv_timeout(self.wait()) {
                Ok(request) => Some(request),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut batch: Vec<Request<S>> = first.into_iter().collect();
            while batch.len() < BATCH {
                match queue.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.serve(batch);
            self.write_due_checkpoints();
            self.maybe_checkpoint();
        }
        // The last requests are served; store the checkpoints still
        // deferred, and what still waits for a retry.
        let deferred = self.deferred.take_all();
        if !(self.retry.is_empty() && deferred.is_empty()) {
            self.commit(deferred.into_iter().map(Queued::Save).collect());
        }
        // Nothing writes any more: copy the whole log and empty it (not
        // into a damaged file).
        if let Some(checkpointer) = self.checkpointer.take() {
            checkpointer.stop();
            if self.damaged.is_none() {
                self.checkpoint("TRUNCATE");
            }
        }
    }

    /// How long the thread may wait for a request: until the oldest step
    /// checkpoint's group is due (a tick at a time while the log holds
    /// them back), else until a retry or a checkpoint of the log is due.
    fn wait(&self) -> Duration {
        match self.deferred.since() {
            None => RETRY_PERIOD.min(CHECKPOINT_PERIOD),
            Some(_) if self.holding_checkpoints() => self.grouping,
            Some(since) => (since + self.grouping).saturating_duration_since(Instant::now()),
        }
    }

    /// Writes the step checkpoints waiting, up to
    /// [`CHECKPOINTS_PER_TRANSACTION`] in one transaction, once the oldest
    /// has waited for its group (unless the log holds them back).
    fn write_due_checkpoints(&mut self) {
        let due = self
            .deferred
            .since()
            .is_some_and(|since| since.elapsed() >= self.grouping);
        if due && !self.holding_checkpoints() {
            let group = self.deferred.oldest(CHECKPOINTS_PER_TRANSACTION);
            self.commit(group.into_iter().map(Queued::Save).collect());
        }
    }

    /// Whether step checkpoints wait for the checkpoint thread: it is
    /// copying and the log is past [`HOLD_CHECKPOINTS_BYTES`].
    fn holding_checkpoints(&self) -> bool {
        self.checkpointer.as_ref().is_some_and(|c| c.busy) && log_bytes() >= HOLD_CHECKPOINTS_BYTES
    }

    /// Commits the writes of `batch` and any saves waiting for a retry in
    /// one transaction, then answers the reads, which so see every write
    /// queued before them. A step checkpoint waits for its group (see
    /// [`Writer::write_due_checkpoints`]), unless a request of its session
    /// comes after it (it is then written first, in order).
    fn serve(&mut self, batch: Vec<Request<S>>) {
        let mut writes = Vec::new();
        let mut reads = Vec::new();
        let save = |writes: &mut Vec<Queued<S>>, taken: Vec<Write<S>>| {
            writes.extend(taken.into_iter().map(Queued::Save));
        };
        for request in batch {
            match request {
                Request::Checkpoint(id, saved, answer) => self.deferred.push(id, saved, answer),
                Request::Save(id, saved, answer) => {
                    save(&mut writes, self.deferred.take(&[id]));
                    writes.push(Queued::Save((id, saved, Some(answer))));
                }
                Request::Keep(id, saved) => {
                    save(&mut writes, self.deferred.take(&[id]));
                    writes.push(Queued::Save((id, saved, None)));
                }
                Request::Delete(ids, answer) => {
                    save(&mut writes, self.deferred.take(&ids));
                    writes.push(Queued::Delete(ids, answer));
                }
                Request::Get(id, answer) => {
                    save(&mut writes, self.deferred.take(&[id]));
                    reads.push(Request::Get(id, answer));
                }
                Request::Index(answer) => {
                    save(&mut writes, self.deferred.take_all());
                    reads.push(Request::Index(answer));
                }
                read => reads.push(read),
            }
        }
        if !(writes.is_empty() && self.retry.is_empty()) {
            self.commit(writes);
        }
        for read in reads {
            match read {
                Request::Index(answer) => {
                    let index = self.index();
                    self.note_damage(&index);
                    let _ = answer.send(index);
                }
                Request::Get(id, answer) => {
                    // A pending retry is newer than what the file holds.
                    let pending = self.retry.get(&id).map(|saved| Ok(Some((**saved).clone())));
                    let got = pending.unwrap_or_else(|| self.get(id));
                    self.note_damage(&got);
                    let _ = answer.send(got);
                }
                Request::MaxPages(pages, answer) => {
                    // SQLite's own default is its largest value.
                    let pages = if pages == 0 { 0xffff_fffe } else { pages };
                    let result = self
                        .connection
                        .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
                        .map_err(|e| self.io(e));
                    let _ = answer.send(result);
                }
                Request::Save(..)
                | Request::Keep(..)
                | Request::Checkpoint(..)
                | Request::Delete(..) => {}
            }
        }
    }

    /// Writes `writes` in order, with the pending retries first, and
    /// answers each; on failure keeps the saves nobody waits for.
    fn commit(&mut self, writes: Vec<Queued<S>>) {
        let retries: Vec<_> = self.retry.drain().collect();
        let result = match &self.damaged {
            Some(message) => Err(StoreError::Corrupt {
                path: self.path.clone(),
                message: message.clone(),
            }),
            None => self.write(&retries, &writes),
        };
        self.note_damage(&result);
        match &result {
            Ok(()) => {
                if !retries.is_empty() {
                    tracing::info!(store = %self.path.display(), saved = retries.len(), "saves that had failed are stored now");
                }
            }
            Err(error) => {
                // Keep what nobody waits for (unless deleted after); the
                // others hear of the failure.
                for (id, saved) in retries {
                    self.retry.insert(id, saved);
                }
                for write in &writes {
                    match write {
                        Queued::Save((id, saved, None)) => {
                            self.retry.insert(*id, saved.clone());
                        }
                        Queued::Save(_) => {}
                        Queued::Delete(ids, _) => {
                            for id in ids {
                                self.retry.remove(id);
                            }
                        }
                    }
                }
                if self.damaged.is_none() {
                    tracing::error!(%error, retrying = self.retry.len(), "could not write sessions");
                }
            }
        }
        for write in writes {
            match write {
                Queued::Save((_, _, Some(answer))) | Queued::Delete(_, answer) => {
                    let _ = answer.send(result.clone());
                }
                Queued::Save((_, _, None)) => {}
            }
        }
    }

    fn write(
        &mut self,
        retries: &[(RunId, Box<Saved<S>>)],
        writes: &[Queued<S>],
    ) -> Result<(), StoreError> {
        let seen = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let transaction = self
            .connection
            .transaction()
            .map_err(|e| sqlite(&self.path, e))?;
        {
            let mut upsert = transaction
                .prepare_cached(
                    "INSERT INTO sessions (id, state, running, seen) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO UPDATE SET state = excluded.state,
                         running = excluded.running, seen = excluded.seen",
                )
                .map_err(|e| sqlite(&self.path, e))?;
            let mut delete = transaction
                .prepare_cached("DELETE FROM sessions WHERE id = ?1")
                .map_err(|e| sqlite(&self.path, e))?;
            let mut save = |id: &RunId, saved: &Saved<S>| {
                let state = serde_json::to_string(saved).map_err(|e| io(&self.path, e))?;
                let running = saved.status == Status::Running;
                upsert
                    .execute(params![id.to_string(), state, running, seen])
                    .map_err(|e| sqlite(&self.path, e))
                    .map(drop)
            };
            // In order: a later write of a session replaces an earlier one.
            for (id, saved) in retries {
                save(id, saved)?;
            }
            for write in writes {
                match write {
                    Queued::Save((id, saved, _)) => save(id, saved)?,
                    Queued::Delete(ids, _) => {
                        for id in ids {
                            delete
                                .execute(params![id.to_string()])
                                .map_err(|e| sqlite(&self.path, e))?;
                        }
                    }
                }
            }
        }
        transaction.commit().map_err(|e| sqlite(&self.path, e))
    }

    fn index(&self) -> Result<Vec<Stored>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT id, running, seen FROM sessions INDEXED BY sessions_index")
            .map_err(|e| sqlite(&self.path, e))?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, bool>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
            .map_err(|e| sqlite(&self.path, e))?;
        let mut index = Vec::new();
        for row in rows {
            let (id, running, seen) = row.map_err(|e| sqlite(&self.path, e))?;
            match RunId::parse(&id) {
                Some(id) => index.push(Stored {
                    id,
                    running,
                    seen: u64::try_from(seen).unwrap_or(0),
                }),
                None => {
                    tracing::warn!(store = %self.path.display(), "a record with an unreadable id is skipped")
                }
            }
        }
        Ok(index)
    }

    fn get(&self, id: RunId) -> Result<Option<Saved<S>>, StoreError> {
        let state: Option<String> = self
            .connection
            .prepare_cached("SELECT state FROM sessions WHERE id = ?1")
            .and_then(|mut statement| {
                statement
                    .query_row(params![id.to_string()], |row| row.get(0))
                    .optional()
            })
            .map_err(|e| sqlite(&self.path, e))?;
        state
            .map(|text| {
                serde_json::from_str(&text).map_err(|e| StoreError::Damaged {
                    store: self.path.display().to_string(),
                    session: id.to_string(),
                    why: format!("its state does not parse: {e}"),
                })
            })
            .transpose()
    }

    /// Starts a checkpoint when the period has passed or the log has grown
    /// too big, and finishes one the checkpoint thread is done with.
    fn maybe_checkpoint(&mut self) {
        if self.damaged.is_some() {
            return; // a checkpoint writes into the file
        }
        let Some(checkpointer) = &mut self.checkpointer else {
            return;
        };
        if checkpointer.busy {
            // A log past the limit means the checkpoint thread is not
            // keeping up: the writer waits for it (back-pressure), then
            // copies what is left itself, so the log starts again.
            let behind = log_bytes() >= WAL_LIMIT_BYTES;
            let done = if behind {
                checkpointer.done.recv().is_ok()
            } else {
                checkpointer.done.try_recv().is_ok()
            };
            if done {
                checkpointer.busy = false;
                if behind {
                    self.checkpoint("PASSIVE");
                }
            }
            return;
        }
        let due =
            self.last_checkpoint.elapsed() >= CHECKPOINT_PERIOD || log_bytes() >= WAL_START_BYTES;
        if due {
            self.last_checkpoint = Instant::now();
            checkpointer.busy = checkpointer.start.send(()).is_ok();
        }
    }

    /// Copies the log into the database on the writer's own connection.
    fn checkpoint(&mut self, mode: &str) {
        let result =
            self.connection
                .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                });
        match result {
            Ok((0, log, copied)) if log == copied => {}
            Ok(_) => {
                tracing::warn!(store = %self.path.display(), mode, "checkpoint could not complete")
            }
            Err(error) => {
                tracing::warn!(store = %self.path.display(), mode, %error, "checkpoint failed")
            }
        }
    }

    fn io(&self, error: impl std::fmt::Display) -> StoreError {
        io(&self.path, error)
    }

    /// Notes the file is damaged when `result` says so: said once, loudly,
    /// and nothing is written to it again.
    fn note_damage<T>(&mut self, result: &Result<T, StoreError>) {
        if let (Err(StoreError::Corrupt { message, .. }), None) = (result, &self.damaged) {
            tracing::error!(
                store = %self.path.display(),
                %message,
                "the session store is damaged: nothing more is written to it (changes are \
                 refused, runs pause) until an operator repairs it; see the README, \
                 \"A damaged store\""
            );
            self.damaged = Some(message.clone());
        }
    }
}

/// The checkpoint thread: copies the log into the database on a
/// connection of its own while the writer goes on committing.
struct Checkpointer {
    /// Asks for one passive checkpoint; closed to stop the thread.
    start: mpsc::Sender<()>,
    /// Told when that checkpoint is done.
    done: mpsc::Receiver<()>,
    /// Whether a checkpoint was asked for and is not done yet.
    busy: bool,
    /// The thread, joined by [`Checkpointer::stop`].
    thread: JoinHandle<()>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let connection = Connection::open(path).map_err(|e| {
            classify(path, e, |message| StoreError::Open {
                path: path.to_owned(),
                message,
            })
        })?;
        let (start, asked) = mpsc::channel::<()>();
        let (answer, done) = mpsc::channel();
        let store = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("hailstone-checkpoint".into())
            .spawn(move || {
                while asked.recv().is_ok() {
                    // PASSIVE copies what is committed and never waits for
                    // (or blocks) the writer. A few rounds take what was
                    // committed meanwhile: once every frame is copied, the
                    // writer's next commit starts the log from its beginning.
                    for _ in 0..CHECKPOINT_ROUNDS {
                        let copied =
                            connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                                Ok(row.get::<_, i64>(1)? == row.get::<_, i64>(2)?)
                            });
                        match copied {
                            Ok(true) => break,
                            Ok(false) => {}
                            Err(error) => {
                                tracing::warn!(%store, %error, "checkpoint failed");
                                break;
                            }
                        }
                    }
                    if answer.send(()).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| io(path, e))?;
        Ok(Checkpointer {
            start,
            done,
            busy: false,
            thread,
        })
    }

    /// Ends the thread once its checkpoint in progress is done.
    fn stop(self) {
        drop(self.start);
        let _ = self.thread.join();
    }
}

thread_local! {
    /// Frames in the write-ahead log after the store thread's last commit,
    /// as SQLite tells its hook. (The file's size does not say: once copied
    /// into the database, the log is written again from its start while the
    /// file keeps up to 4 MiB.)
    static LOG_PAGES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// SQLite's write-ahead-log hook on the store thread's connection.
fn note_log_pages(_: &rusqlite::hooks::Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    LOG_PAGES.with(|log| log.set(u64::try_from(pages).unwrap_or(0)));
    Ok(())
}

/// About how many bytes the log holds after the store thread's last commit.
fn log_bytes() -> u64 {
    LOG_PAGES.with(std::cell::Cell::get) * PAGE_BYTES
}

/// SQLite's default page size, which the store keeps.
const PAGE_BYTES: u64 = 4096;

/// An SQLite error, named as damage when SQLite says the file is damaged.
fn sqlite(path: &Path, error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt {
            path: path.to_owned(),
            message: error.to_string(),
        },
        _ => io(path, error),
    }
}

fn io(path: &Path, error: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What these tests' records keep of a run: the store knows no kind.
    #[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    struct Note {
        text: String,
        steps: u64,
    }

    type Saved = super::Saved<Note>;
    type SqliteStore = super::SqliteStore<Note>;

    fn saved(steps: u64) -> Saved {
        Saved {
            run: Note {
                text: "27".into(),
                steps,
            },
            status: Status::Running,
            interval_ms: 500,
            version: steps + 1,
            generation: 1,
            incarnation: 0,
            reserved: 0,
            failure: None,
            unwatched: Default::default(),
            started_at: Some(1_796_188_468),
            settled_at: None,
        }
    }

    #[tokio::test]
    async fn saves_loads_replaces_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/hailstone.db");
        let (a, b) = (RunId::random(), RunId::random());
        {
            let store = SqliteStore::open(&path).unwrap();
            // Enqueued in order; only the last receipt is awaited.
            drop(store.save(a, saved(1)));
            drop(store.save(a, saved(2)));
            store.save(b, saved(3)).await.unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let mut index = store.index().await.unwrap();
        index.sort_by_key(|stored| stored.id.to_string());
        let mut ids = vec![a, b];
        ids.sort_by_key(|id| id.to_string());
        assert_eq!(index.iter().map(|s| s.id).collect::<Vec<_>>(), ids);
        assert!(index.iter().all(|s| s.running && s.seen > 0));
        assert_eq!(store.get(a).await.unwrap(), Some(saved(2)));
        store.delete(vec![a]).await.unwrap();
        assert_eq!(store.get(a).await.unwrap(), None);
        assert_eq!(store.get(b).await.unwrap(), Some(saved(3)));
    }

    /// A command's save is written at once, with none of the step
    /// checkpoints queued before it (they wait for their group, here an
    /// hour), a read of a session with one waiting sees it, and the rest
    /// are stored when the store closes.
    #[tokio::test]
    async fn a_command_never_waits_for_step_checkpoints() {
        use futures::FutureExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hailstone.db");
        let stepped: Vec<RunId> = (0..1000).map(|_| RunId::random()).collect();
        let commanded = RunId::random();
        let mut checkpoints = Vec::new();
        {
            let hour = Duration::from_secs(3600);
            let store = SqliteStore::open_grouping(&path, hour).unwrap();
            for id in &stepped {
                checkpoints.push(store.checkpoint(*id, saved(7)));
            }
            store.save(commanded, saved(1)).await.unwrap();
            for checkpoint in &mut checkpoints {
                let written = checkpoint.as_mut().now_or_never();
                assert!(written.is_none(), "a checkpoint was written with the save");
            }
            assert_eq!(store.get(stepped[0]).await.unwrap(), Some(saved(7)));
            assert!(checkpoints.remove(0).now_or_never().is_some());
            assert!(checkpoints[0].as_mut().now_or_never().is_none());
        }
        for checkpoint in checkpoints {
            checkpoint.await.unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.index().await.unwrap().len(), 1001);
        assert_eq!(store.get(stepped[999]).await.unwrap(), Some(saved(7)));
    }

    /// What a test asks of the store, in order, for one of three sessions.
    #[derive(Debug, Clone)]
    enum Asked {
        Checkpoint(usize, u64),
        Save(usize, u64),
        Keep(usize, u64),
        Get(usize),
        Delete(usize),
    }

    fn asked() -> impl proptest::strategy::Strategy<Value = Asked> {
        use proptest::prelude::*;
        let session = 0..3usize;
        prop_oneof![
            6 => (session.clone(), 0..1000u64).prop_map(|(s, n)| Asked::Checkpoint(s, n)),
            2 => (session.clone(), 0..1000u64).prop_map(|(s, n)| Asked::Save(s, n)),
            1 => (session.clone(), 0..1000u64).prop_map(|(s, n)| Asked::Keep(s, n)),
            2 => session.clone().prop_map(Asked::Get),
            1 => session.prop_map(Asked::Delete),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// Checkpoints wait behind other writes, yet every read sees what
        /// was queued before it (or, queued with it, after it), and a
        /// session ends as its last request left it: a checkpoint never
        /// overtakes, nor is overtaken by, a request of its own session.
        /// Restarted, the store holds the same.
        #[test]
        fn deferred_checkpoints_keep_each_sessions_order(
            requests in proptest::collection::vec(asked(), 1..300)
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("hailstone.db");
                let ids = [RunId::random(), RunId::random(), RunId::random()];
                // Each session's states, in the order they were asked for.
                let mut states: [Vec<Option<Saved>>; 3] = [vec![None], vec![None], vec![None]];
                let mut reads = Vec::new();
                let mut checkpoints = Vec::new();
                {
                    let store = SqliteStore::open(&path).unwrap();
                    // Everything is queued first; receipts are awaited after.
                    for request in &requests {
                        match *request {
                            Asked::Checkpoint(s, n) => {
                                checkpoints.push(store.checkpoint(ids[s], saved(n)));
                                states[s].push(Some(saved(n)));
                            }
                            Asked::Save(s, n) => {
                                drop(store.save(ids[s], saved(n)));
                                states[s].push(Some(saved(n)));
                            }
                            Asked::Keep(s, n) => {
                                store.keep(ids[s], saved(n));
                                states[s].push(Some(saved(n)));
                            }
                            Asked::Get(s) => {
                                reads.push((store.get(ids[s]), s, states[s].len() - 1));
                            }
                            Asked::Delete(s) => {
                                drop(store.delete(vec![ids[s]]));
                                states[s].push(None);
                            }
                        }
                    }
                    for (read, s, from) in reads {
                        let got = read.await.unwrap();
                        assert!(
                            states[s][from..].contains(&got),
                            "read {got:?}, queued after {:?}",
                            states[s][from]
                        );
                    }
                    for checkpoint in checkpoints {
                        checkpoint.await.unwrap();
                    }
                    for (s, id) in ids.iter().enumerate() {
                        assert_eq!(&store.get(*id).await.unwrap(), states[s].last().unwrap());
                    }
                }
                let store = SqliteStore::open(&path).unwrap();
                for (s, id) in ids.iter().enumerate() {
                    assert_eq!(&store.get(*id).await.unwrap(), states[s].last().unwrap());
                }
                let index = store.index().await.unwrap();
                let kept = states.iter().filter(|s| s.last().unwrap().is_some()).count();
                assert_eq!(index.len(), kept);
            });
        }
    }

    #[tokio::test]
    async fn the_log_stays_bounded_under_continuous_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hailstone.db");
        let wal = dir.path().join("hailstone.db-wal");
        let store = std::sync::Arc::new(SqliteStore::open(&path).unwrap());
        // Eight writers that never pause, 40 MiB of saves in all: the old
        // design's checkpoint never found a moment without a writer.
        let big = "9".repeat(1000);
        let mut writers = Vec::new();
        for _ in 0..8 {
            let (store, big, wal) = (store.clone(), big.clone(), wal.clone());
            writers.push(tokio::spawn(async move {
                let mut largest = 0;
                for steps in 0..5_000u64 {
                    let mut saved = saved(steps);
                    saved.run.text = big.clone();
                    store.save(RunId::random(), saved).await.unwrap();
                    largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
                }
                largest
            }));
        }
        let mut largest = 0;
        for writer in writers {
            largest = largest.max(writer.await.unwrap());
        }
        // A batch may land after the size check: a little over the limit.
        assert!(
            largest <= WAL_LIMIT_BYTES + (2 << 20),
            "the log reached {largest} bytes"
        );
        assert_eq!(store.index().await.unwrap().len(), 40_000);
    }

    #[test]
    fn a_damaged_file_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hailstone.db");
        let garbage = b"this is not a database, but it is somebody's file".repeat(100);
        std::fs::write(&path, &garbage).unwrap();
        let error = SqliteStore::open(&path).err().expect("refused");
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
        assert!(error.to_string().contains(&path.display().to_string()));
        assert_eq!(std::fs::read(&path).unwrap(), garbage, "never wiped");
    }

    /// Makes `path` unwritable even for root (immutable), or writable again.
    fn set_immutable(path: &Path, immutable: bool) {
        use std::os::unix::fs::PermissionsExt;
        if unsafe { libc::geteuid() } == 0 {
            let flag = if immutable { "+i" } else { "-i" };
            let status = std::process::Command::new("chattr")
                .arg(flag)
                .arg(path)
                .status()
                .unwrap();
            assert!(status.success(), "chattr {flag} {}", path.display());
        } else {
            let mode = match (path.is_dir(), immutable) {
                (true, true) => 0o555,
                (true, false) => 0o755,
                (false, true) => 0o444,
                (false, false) => 0o644,
            };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }

    #[test]
    fn a_read_only_file_or_directory_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hailstone.db");
        drop(SqliteStore::open(&path).unwrap());
        set_immutable(&path, true);
        let error = SqliteStore::open(&path).err().expect("refused");
        set_immutable(&path, false);
        assert!(matches!(error, StoreError::ReadOnly { .. }), "{error}");
        assert!(error.to_string().contains("cannot be written"), "{error}");
        assert!(!error.to_string().contains("damaged"), "{error}");

        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        set_immutable(&sub, true);
        let error = SqliteStore::open(&sub.join("hailstone.db"))
            .err()
            .expect("refused");
        set_immutable(&sub, false);
        assert!(matches!(error, StoreError::ReadOnly { .. }), "{error}");
        assert!(!error.to_string().contains("damaged"), "{error}");
    }

    #[tokio::test]
    async fn a_save_nobody_waits_for_is_retried_until_it_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hailstone.db");
        let store = SqliteStore::open(&path).unwrap();
        let id = RunId::random();
        store.save(id, saved(1)).await.unwrap();
        let pages: u64 = {
            // The file as it is now: nothing may grow it.
            let connection = Connection::open(&path).unwrap();
            connection
                .query_row("PRAGMA page_count", [], |row| row.get(0))
                .unwrap()
        };
        store.limit_pages(pages).await.unwrap();
        let mut big = Saved {
            status: Status::Paused,
            ..saved(2)
        };
        big.run.text = "7".repeat(900);
        let filler: Vec<_> = (0..50).map(|_| RunId::random()).collect();
        for other in &filler {
            // Waited for: the failure is reported, nothing is retried.
            let error = store.save(*other, big.clone()).await.unwrap_err();
            assert!(error.to_string().contains("full"), "{error}");
        }
        // Kept (a pause): retried, and what a reader gets meanwhile.
        store.keep(id, big.clone());
        assert_eq!(store.get(id).await.unwrap(), Some(big.clone()));
        store.limit_pages(0).await.unwrap();
        // The next retry stores it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let on_disk = Connection::open(&path)
                .unwrap()
                .query_row(
                    "SELECT state FROM sessions WHERE id = ?1",
                    [id.to_string()],
                    |row| row.get::<_, String>(0),
                )
                .unwrap();
            if serde_json::from_str::<Saved>(&on_disk).unwrap() == big {
                break;
            }
            assert!(Instant::now() < deadline, "not retried within 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for other in filler {
            assert_eq!(store.get(other).await.unwrap(), None);
        }
    }
}
