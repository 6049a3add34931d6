//! The Collatz kind's part of the server: what its page reaches through
//! `app`'s [`SessionApi`] (commands, the state, pages of older values) and
//! its CSV download. Everything else (sessions, the lock section, tasks,
//! streams, the store, the cluster) is the runtime's, which knows no kind.

pub mod download;

use std::sync::Arc;

use app::api::{AppError, BoxFuture, CurrentSession, SessionApi};
use axum::{extract::Request, middleware::Next, response::Response};
use shared::{
    collatz::Run,
    trajectory::{Marks, Page, PageError},
    wire::{Command, Snapshot, Window},
    Number,
};

use crate::{http::SessionHandle, session::Session};

/// Hands the page's server functions the request's session (which the
/// runtime's session layer found) through `app`'s trait boundary.
pub async fn current_session(mut request: Request, next: Next) -> Response {
    if let Some(handle) = request
        .extensions()
        .get::<Arc<SessionHandle<Run>>>()
        .cloned()
    {
        request.extensions_mut().insert(CurrentSession(handle));
    }
    next.run(request).await
}

impl SessionApi for SessionHandle<Run> {
    fn command(&self, command: Command) -> BoxFuture<'_, Result<u64, AppError>> {
        Box::pin(SessionHandle::command(self, command))
    }

    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, AppError>> {
        Box::pin(SessionHandle::snapshot(self))
    }

    fn max_digits(&self) -> usize {
        self.runtime().sessions.settings().max_digits
    }

    fn window(&self) -> Window {
        self.runtime().sessions.settings().window()
    }

    fn values(&self, from: u64, count: u64) -> BoxFuture<'_, Result<Page, AppError>> {
        Box::pin(async move {
            match self.session()? {
                Some(session) => values(session, from, count).await,
                None => Err(PageError::NoRun),
            }
            .map_err(AppError::Values)
        })
    }
}

/// The run's start and the steps taken from it, once there is a run.
pub async fn trajectory(session: &Session<Run>) -> Option<(Number, u64)> {
    session
        .read(|machine| {
            let (start, steps) = machine.trajectory()?;
            Some((start.clone(), steps))
        })
        .await
}

/// Marks of the run's trajectory that older values are recomputed from,
/// kept beside the session: made on the first request for them, at most
/// [`shared::trajectory::MARKS`] values, replaced when the run changes.
#[derive(Default)]
struct Paging(std::sync::Mutex<Option<Marks>>);

/// `count` values of the run from step `from`, recomputed exactly from the
/// run's marks on the blocking pool (a page far into a long run of big
/// numbers walks up to a stride of steps), outside the session's lock, so
/// paging never holds up a step.
async fn values(session: &Arc<Session<Run>>, from: u64, count: u64) -> Result<Page, PageError> {
    let (start, steps) = trajectory(session).await.ok_or(PageError::NoRun)?;
    let session = session.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let Paging(marks) = session.aside::<Paging>();
        let mut marks = marks.lock().unwrap_or_else(|p| p.into_inner());
        let marks = match &mut *marks {
            Some(kept) if *kept.start() == start => kept,
            other => other.insert(Marks::new(start)),
        };
        let values = marks.page(from, count, steps)?;
        Ok(Page {
            start: marks.start().to_string(),
            from,
            values,
        })
    })
    .await;
    // The closure does not panic; a cancelled pool (shutdown) has no run.
    answer.unwrap_or(Err(PageError::NoRun))
}
