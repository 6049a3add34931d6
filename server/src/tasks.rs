//! The background tasks: one Collatz stepper per running session, tracked
//! so shutdown can cancel and wait for every one.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures::FutureExt;
use shared::wire::Status;
use tokio::time::{sleep_until, Instant};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::{
    metrics::Metrics,
    session::{Session, Started},
};

/// Steps per lock section at interval 0; at most a checkpoint's worth (see
/// `session::RESTORE_VERSION_GAP`).
const BURST: usize = 32;
const _: () = assert!(BURST as u64 <= crate::session::CHECKPOINT_EVERY);

/// Owns every background task.
pub struct Tasks {
    /// Every task spawned, so shutdown can wait for them.
    tracker: TaskTracker,
    /// Counts tasks and steps.
    metrics: Arc<Metrics>,
}

impl Tasks {
    /// No tasks yet.
    pub fn new(metrics: Arc<Metrics>) -> Tasks {
        Tasks {
            tracker: TaskTracker::new(),
            metrics,
        }
    }

    /// Spawns the stepper a command started. If it panics, its run is
    /// paused, so the switch never says running while nothing runs.
    pub fn spawn(&self, session: Arc<Session>, started: Started) {
        let span = tracing::info_span!(
            "task",
            session = %session.id().short(),
            generation = started.generation
        );
        let metrics = self.metrics.clone();
        metrics.running_tasks.inc();
        self.tracker.spawn(
            async move {
                let generation = started.generation;
                let stepping = step_until_stopped(&session, started, &metrics);
                if AssertUnwindSafe(stepping).catch_unwind().await.is_err() {
                    tracing::error!("task panicked; its run is paused");
                    session.update(|state| state.halt(generation)).await;
                }
                metrics.running_tasks.dec();
            }
            .instrument(span),
        );
    }

    /// Stops accepting tasks and waits until every one has ended (their
    /// tokens are children of the shutdown token, so they end promptly).
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Tasks alive now.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// True when no task is alive.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }
}

/// The task's loop: wait for the interval outside the lock, then in the lock
/// section take one step if this task's generation is still the current one.
/// Ends when refused (stopped, superseded, finished) or cancelled.
async fn step_until_stopped(session: &Session, started: Started, metrics: &Metrics) {
    let Started {
        generation,
        cancel,
        mut interval_ms,
    } = started;
    tracing::debug!("started");
    let mut deadline = Instant::now();
    loop {
        let interval = Duration::from_millis(u64::from(interval_ms));
        // Keep a steady beat; after a stall, start again from now rather
        // than stepping in a burst.
        deadline = (deadline + interval).max(Instant::now());
        let wait = async {
            if interval.is_zero() {
                // As fast as possible, but let other tasks run.
                tokio::task::yield_now().await;
            } else {
                sleep_until(deadline).await;
            }
        };
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            () = wait => {}
        }
        // As fast as possible: several steps per lock section and one
        // published delta for them, so the per-event cost is shared.
        let batch = if interval.is_zero() { BURST } else { 1 };
        match session.update(|state| state.step(generation, batch)).await {
            Ok(delta) => {
                metrics.steps.inc_by(delta.appended.len() as u64);
                interval_ms = delta.interval_ms;
                if delta.status != Status::Running {
                    break;
                }
            }
            Err(refused) => {
                tracing::debug!(?refused, "refused");
                break;
            }
        }
    }
    tracing::debug!("ended");
}
