//! What a change to a session is, in either mode: the op that made it,
//! the change handed to a ledger, and why a ledger may refuse it.

use serde::{Deserialize, Serialize};
use shared::{
    task::{Machine, Task},
    wire::Failure,
};

use crate::store::StoreError;

/// What a change in the lock section did, as the ledger records it, for a
/// task kind whose commands are `C` and whose steps are given work `W`. In
/// a cluster it is the entry of the session's log that other nodes replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op<C, W = ()> {
    /// A user's command; `takes_task` when it started a run here.
    Command {
        /// The command.
        command: C,
        /// It started a task on the node that applied it.
        takes_task: bool,
        /// When it was applied (Unix seconds), so that a run it begins is
        /// stamped alike on every copy (absent in entries from before it
        /// was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<u64>,
    },
    /// `count` steps of the task of `generation`.
    Steps {
        /// The task's generation.
        generation: u64,
        /// How many steps (the version grows by as many).
        count: u64,
        /// The work each step was given, in order (none: each did its own,
        /// and a replay does the same).
        #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
        work: Vec<W>,
    },
    /// Nobody watched the run of `generation` for as long as its policy
    /// allows: it was paused or cancelled, as the policy says.
    Lapse {
        /// The run's generation.
        generation: u64,
    },
    /// The task of `generation` stopped: the run failed.
    Halt {
        /// The task's generation.
        generation: u64,
        /// Why (absent in entries from before it was kept).
        #[serde(default)]
        failure: Failure,
    },
}

impl<C, W: Clone + Default> Op<C, W> {
    /// Does to `machine` what the op did where it was committed; false
    /// when it does not apply (the machine is not where the op was made).
    pub fn replay<T: Task<Command = C, Work = W>>(&self, machine: &mut Machine<T>) -> bool {
        match self {
            Op::Command { command, at, .. } => machine.apply_at(command, *at).is_ok(),
            Op::Steps {
                generation,
                count,
                work,
            } => (0..*count).all(|at| {
                let work = usize::try_from(at)
                    .ok()
                    .and_then(|at| work.get(at))
                    .cloned()
                    .unwrap_or_default();
                machine.step_with(*generation, work).is_ok()
            }),
            Op::Halt {
                generation,
                failure,
            } => machine.halt(*generation, *failure).is_some(),
            Op::Lapse { generation } => machine.lapse(*generation).is_some(),
        }
    }
}

/// A change another node committed, as its bell told it: applied to a copy
/// only when `base` is the copy's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard<C, W = ()> {
    /// The version it was made on.
    pub base: u64,
    /// The version it brought the session to.
    pub version: u64,
    /// What it did.
    pub op: Op<C, W>,
}

/// One change, made on `after` from version `base`.
pub struct Change<'a, T: Task> {
    /// The version the change was made on.
    pub base: u64,
    /// The state with the change.
    pub after: &'a Machine<T>,
    /// What the change was.
    pub op: &'a Op<T::Command, T::Work>,
}

/// Why a change was not committed; the state must stay as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The store cannot be reached or failed; nothing was changed.
    #[error("the session store is unavailable: {0}")]
    Unavailable(String),
    /// Another node committed first: catch up, then try again.
    #[error("another node changed the session first")]
    Conflict,
    /// This node no longer owns the session's run (its lease lapsed and
    /// another took it over): its task must stop.
    #[error("this node no longer owns the run")]
    Fenced,
    /// The session is gone from the store (expired, evicted, or the store
    /// was emptied).
    #[error("the session is gone from the store")]
    Gone,
    /// The store, or what it holds of the session, is damaged: nothing can
    /// be committed until an operator repairs it.
    #[error("the session store is damaged: {0}")]
    Damaged(String),
}

impl From<StoreError> for CommitError {
    fn from(error: StoreError) -> CommitError {
        match error {
            StoreError::Corrupt { .. } | StoreError::Damaged { .. } => {
                CommitError::Damaged(error.to_string())
            }
            error => CommitError::Unavailable(error.to_string()),
        }
    }
}
