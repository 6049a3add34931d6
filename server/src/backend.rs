//! What stands behind every session's lock section: one process with its
//! sessions in SQLite ([`local`](crate::local)), or a node of a cluster
//! sharing them through Redis ([`cluster`](crate::cluster)).
//!
//! The session code is the same in both modes. Every change is made in the
//! lock section and handed to the session's [`Ledger`] as a [`Change`]; it
//! is kept (and published) only once the ledger accepts it. The ledger may
//! answer that others committed first ([`CommitError::Conflict`]: catch up
//! and try again), that this node no longer owns the run
//! ([`CommitError::Fenced`]), or that the store cannot be reached.

use std::{sync::Arc, time::Duration};

use shared::task::{Machine, Task};

pub use crate::change::{Change, CommitError, Heard, Op};
use crate::{
    cluster::{Cluster, ClusterLedger},
    id::RunId,
    local::{Local, LocalLedger},
    store::{Receipt, StoreError, Stored},
};

/// Where sessions are kept, and how changes to them are committed.
pub enum Backend<T: Task> {
    /// One process: memory, saved to SQLite.
    Local(Arc<Local<T>>),
    /// A node of a cluster: Redis.
    Cluster(Arc<Cluster>),
}

impl<T: Task> Clone for Backend<T> {
    fn clone(&self) -> Self {
        match self {
            Backend::Local(local) => Backend::Local(local.clone()),
            Backend::Cluster(cluster) => Backend::Cluster(cluster.clone()),
        }
    }
}

impl<T: Task> From<Arc<dyn crate::store::Store<T::Saved>>> for Backend<T> {
    /// One process, saving to `store`.
    fn from(store: Arc<dyn crate::store::Store<T::Saved>>) -> Backend<T> {
        Backend::Local(Arc::new(Local::new(store)))
    }
}

/// A stored session, loaded: its state and its ledger.
pub struct Loaded<T: Task> {
    /// The state.
    pub machine: Machine<T>,
    /// Where its changes go.
    pub ledger: Ledger<T>,
}

impl<T: Task> Backend<T> {
    /// The ledger of a new session.
    pub fn ledger(&self, id: RunId, machine: &Machine<T>) -> Ledger<T> {
        match self {
            Backend::Local(local) => Ledger::Local(local.ledger(id, machine)),
            Backend::Cluster(cluster) => Ledger::Cluster(cluster.ledger(id)),
        }
    }

    /// The ids of the stored sessions to know at start; `None` when any id
    /// may name a stored session (a cluster: other nodes create them).
    pub async fn index(&self) -> Result<Option<Vec<Stored>>, StoreError> {
        match self {
            Backend::Local(local) => local.store().index().await.map(Some),
            Backend::Cluster(_) => Ok(None),
        }
    }

    /// A stored session, ready to serve; `None` if there is none.
    pub async fn load(
        &self,
        settings: T::Settings,
        id: RunId,
    ) -> Result<Option<Loaded<T>>, StoreError> {
        Ok(match self {
            Backend::Local(local) => {
                local
                    .load(settings, id)
                    .await?
                    .map(|(machine, ledger)| Loaded {
                        machine,
                        ledger: Ledger::Local(ledger),
                    })
            }
            Backend::Cluster(cluster) => {
                cluster
                    .load(settings, id)
                    .await?
                    .map(|(machine, ledger)| Loaded {
                        machine,
                        ledger: Ledger::Cluster(ledger),
                    })
            }
        })
    }

    /// Stores a new session's first run where every node finds it (a
    /// cluster); one process stores it with its first change (a visitor who
    /// only looked costs nothing). False when the id is taken (a cluster).
    pub async fn create(&self, id: RunId, machine: &Machine<T>) -> Result<bool, StoreError> {
        match self {
            Backend::Local(_) => Ok(true),
            Backend::Cluster(cluster) => cluster.create(id, machine).await,
        }
    }

    /// Stores a run the user added to a session, at once, so that it is
    /// listed (and comes back after a restart) before its first command.
    /// False when the id is taken (a cluster: another node made a run of
    /// the same number).
    pub async fn create_run(&self, id: RunId, machine: &Machine<T>) -> Result<bool, StoreError> {
        match self {
            Backend::Local(local) => {
                let record = crate::local::record(machine);
                local.store().save(id, record).await.map(|()| true)
            }
            Backend::Cluster(cluster) => cluster.create(id, machine).await,
        }
    }

    /// Deletes a run its user removed, wherever it is used.
    pub async fn remove(&self, id: RunId) -> Result<(), StoreError> {
        match self {
            Backend::Local(local) => local.store().delete(vec![id]).await,
            Backend::Cluster(cluster) => cluster.remove(id).await,
        }
    }

    /// Whether `client` may start another session, `per_minute` at most,
    /// counted across a cluster: `None` when it may, else how long until it
    /// may. One process counts with its own limiter alone.
    pub async fn may_start_session(
        &self,
        client: std::net::IpAddr,
        per_minute: u32,
    ) -> Result<Option<Duration>, StoreError> {
        match self {
            Backend::Local(_) => Ok(None),
            Backend::Cluster(cluster) => cluster.may_start_session(client, per_minute).await,
        }
    }

    /// Lets go of a session evicted at the cap. One process deletes it. A
    /// node deletes it from Redis only if no node has used it lately;
    /// otherwise it lets go of its copy alone, and the nodes that use the
    /// session keep serving it.
    pub async fn evict(&self, id: RunId) -> Result<(), StoreError> {
        match self {
            Backend::Local(local) => local.store().delete(vec![id]).await,
            Backend::Cluster(cluster) => {
                let deleted = cluster.evict(id).await?;
                if !deleted {
                    tracing::info!(session = %id.short(), "an evicted session is in use on another node; only this copy is let go of");
                }
                Ok(())
            }
        }
    }

    /// Deletes a new session whose first command was refused: one process
    /// stored nothing yet; a node deletes what it stored in Redis.
    pub async fn abandon(&self, id: RunId) -> Result<(), StoreError> {
        match self {
            Backend::Local(_) => Ok(()),
            Backend::Cluster(cluster) => cluster.evict(id).await.map(|_| ()),
        }
    }

    /// Lets go of sessions that expired here. One process deletes them; a
    /// node leaves them to Redis's expiry, since others may use them.
    pub async fn forget(&self, ids: Vec<RunId>) -> Result<(), StoreError> {
        match self {
            Backend::Local(local) => local.store().delete(ids).await,
            Backend::Cluster(cluster) => {
                cluster.unwatch(&ids).await;
                Ok(())
            }
        }
    }

    /// The cluster, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match self {
            Backend::Local(_) => None,
            Backend::Cluster(cluster) => Some(cluster),
        }
    }
}

/// One session's way to commit: held in its lock section.
pub enum Ledger<T: Task> {
    /// One process.
    Local(LocalLedger<T>),
    /// A node of a cluster.
    Cluster(ClusterLedger),
}

impl<T: Task> Ledger<T> {
    /// Commits `change`. `Ok` with a receipt when the change may be
    /// published now and its write is awaited after the lock section (one
    /// process's checkpoints); `Ok(None)` when it is stored already.
    pub async fn commit(
        &mut self,
        change: Change<'_, T>,
    ) -> Result<Option<Receipt<()>>, CommitError> {
        match self {
            Ledger::Local(ledger) => ledger.commit(change).await,
            Ledger::Cluster(ledger) => bounded(ledger.commit(change)).await.map(|()| None),
        }
    }

    /// Whether a change must be committed before anyone sees it, so a step
    /// is made on a copy (a cluster); one process publishes steps first and
    /// reserves versions instead.
    pub fn commits_first(&self) -> bool {
        matches!(self, Ledger::Cluster(_))
    }

    /// The state others committed after `machine`, if any.
    pub async fn catch_up(
        &mut self,
        machine: &Machine<T>,
    ) -> Result<Option<Machine<T>>, CommitError> {
        match self {
            Ledger::Local(_) => Ok(None),
            Ledger::Cluster(ledger) => bounded(ledger.catch_up(machine)).await,
        }
    }

    /// Whether this process may step the session's run: always for one
    /// process; for a node, while it holds the run's lease.
    pub fn owns_run(&self) -> bool {
        match self {
            Ledger::Local(_) => true,
            Ledger::Cluster(ledger) => ledger.epoch().is_some(),
        }
    }

    /// Takes the lease of epoch `epoch` (a cluster's failover).
    pub fn adopt(&mut self, epoch: u64) {
        if let Ledger::Cluster(ledger) = self {
            ledger.adopt(epoch);
        }
    }

    /// How often a running session's lease must be renewed when it commits
    /// nothing (a long step interval); `None` without leases.
    pub fn renew_every(&self) -> Option<Duration> {
        match self {
            Ledger::Local(_) => None,
            Ledger::Cluster(ledger) => ledger.renew_every(),
        }
    }

    /// Hands the run over to another node (a node of a cluster is
    /// stopping): its lease is released. One process has nothing to hand.
    pub async fn release(&mut self) -> Result<(), CommitError> {
        match self {
            Ledger::Local(_) => Ok(()),
            Ledger::Cluster(ledger) => bounded(ledger.release()).await,
        }
    }

    /// Renews the lease of the run.
    pub async fn renew(&mut self) -> Result<(), CommitError> {
        match self {
            Ledger::Local(_) => Ok(()),
            Ledger::Cluster(ledger) => bounded(ledger.renew()).await,
        }
    }
}

/// A cluster's request, given at most [`cluster::RESPONSE_TIMEOUT`]: a
/// session's lock section never waits longer for Redis, whatever the
/// connection is doing (reconnecting, say). A request that timed out may
/// still have been carried out; the caller treats it as unavailable, and the
/// session reads the store before its next use.
async fn bounded<T>(
    request: impl std::future::Future<Output = Result<T, CommitError>>,
) -> Result<T, CommitError> {
    tokio::time::timeout(crate::cluster::RESPONSE_TIMEOUT, request)
        .await
        .unwrap_or_else(|_| {
            Err(CommitError::Unavailable(
                "Redis did not answer in time".into(),
            ))
        })
}
