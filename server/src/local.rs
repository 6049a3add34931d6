//! One process: sessions live in memory and are saved to a [`Store`]
//! (SQLite). Commands are stored before they are kept; a running task
//! publishes its steps first and saves a checkpoint now and then, with a
//! reservation of versions, so a restart never sends versions backwards.

use std::{sync::Arc, time::Duration};

use shared::{
    task::{Machine, Saved, Task},
    wire::Status,
    Unrestorable,
};
use tokio::time::Instant;

use crate::{
    change::{Change, CommitError, Op},
    id::RunId,
    store::{Receipt, Store, StoreError},
};

/// A running session saves a checkpoint after at least this many versions
/// and [`CHECKPOINT_PERIOD`] (and when its run stops), so a restart redoes
/// at most 32 steps or one second of steps, whichever is more. As fast as
/// possible, that is one save a second per session rather than one per
/// batch.
pub const CHECKPOINT_EVERY: u64 = 32;
/// See [`CHECKPOINT_EVERY`].
pub const CHECKPOINT_PERIOD: Duration = Duration::from_secs(1);

/// Each save reserves this many versions past its own, which may be
/// published before the next save; a rebuild resumes above the reservation,
/// so versions never go backwards. A running task checkpoints again (and
/// waits for it) well before using half of it.
pub const VERSION_RESERVE: u64 = 1 << 20;

/// How far a restored session's version is raised when its record has no
/// reservation (records from before reservations were kept): past any
/// version the old checkpointing (every 32 versions) could have published
/// without storing it.
pub const RESTORE_VERSION_GAP: u64 = 2 * CHECKPOINT_EVERY + 1;

/// What the store keeps of `machine`, with its reservation of versions.
pub fn record<T: Task>(machine: &Machine<T>) -> Saved<T::Saved> {
    Saved {
        reserved: machine.version() + VERSION_RESERVE,
        ..machine.saved()
    }
}

/// Sessions of one process, saved in a store.
pub struct Local<T: Task> {
    /// Where every session is saved.
    store: Arc<dyn Store<T::Saved>>,
}

impl<T: Task> Local<T> {
    /// Sessions saved in `store`.
    pub fn new(store: Arc<dyn Store<T::Saved>>) -> Local<T> {
        Local { store }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store<T::Saved>> {
        &self.store
    }

    /// The ledger of a session whose state is `machine`, saved as it is.
    pub fn ledger(&self, id: RunId, machine: &Machine<T>) -> LocalLedger<T> {
        LocalLedger {
            store: self.store.clone(),
            id,
            saved_version: machine.version(),
            saved_at: Instant::now(),
        }
    }

    /// Loads a stored session and rebuilds it with a raised version and a
    /// new incarnation, which are stored before anything is published: a
    /// second crash right after can never bring back a lower version.
    pub async fn load(
        &self,
        settings: T::Settings,
        id: RunId,
    ) -> Result<Option<(Machine<T>, LocalLedger<T>)>, StoreError> {
        let Some(saved) = self.store.get(id).await? else {
            return Ok(None);
        };
        let machine = Machine::restore(settings, &saved, RESTORE_VERSION_GAP, rand::random())
            .map_err(|Unrestorable(why)| StoreError::Damaged {
                store: self.store.name(),
                session: id.to_string(),
                why: why.to_owned(),
            })?;
        self.store.save(id, record(&machine)).await?;
        let ledger = self.ledger(id, &machine);
        Ok(Some((machine, ledger)))
    }
}

/// How one session of one process is saved.
pub struct LocalLedger<T: Task> {
    /// Where it is saved.
    store: Arc<dyn Store<T::Saved>>,
    /// Its key there.
    id: RunId,
    /// The version saved last.
    saved_version: u64,
    /// When a checkpoint was last enqueued (tokio's clock: tests pause it).
    saved_at: Instant,
}

impl<T: Task> LocalLedger<T> {
    /// Commands are saved before they are kept; steps are kept at once and
    /// checkpointed every [`CHECKPOINT_EVERY`] versions and when the run
    /// ends (the receipt is awaited after the lock section); a halted run's
    /// pause is saved without waiting, and retried until stored.
    pub async fn commit(
        &mut self,
        change: Change<'_, T>,
    ) -> Result<Option<Receipt<()>>, CommitError> {
        let after = change.after;
        match change.op {
            Op::Command { .. } | Op::Lapse { .. } => {
                self.store
                    .save(self.id, record(after))
                    .await
                    .map_err(|error| {
                        tracing::error!(%error, session = %self.id.short(), "could not save the session");
                        CommitError::from(error)
                    })?;
                self.saved(after);
                Ok(None)
            }
            Op::Steps { work, .. } => {
                let since = after.version() - self.saved_version;
                // Steps that had work are costly to redo: kept once a
                // period, however few.
                let enough = since >= CHECKPOINT_EVERY || !work.is_empty();
                let due = after.status() != Status::Running
                    || since >= VERSION_RESERVE / 2
                    || (enough && self.saved_at.elapsed() >= CHECKPOINT_PERIOD);
                Ok(due.then(|| {
                    self.saved(after);
                    self.store.checkpoint(self.id, record(after))
                }))
            }
            Op::Halt { .. } => {
                self.saved(after);
                self.store.keep(self.id, record(after));
                Ok(None)
            }
        }
    }

    fn saved(&mut self, machine: &Machine<T>) {
        self.saved_version = machine.version();
        self.saved_at = Instant::now();
    }
}
