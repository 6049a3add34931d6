//! The Collatz kind's part of the server: what its page reaches through
//! `app`'s [`SessionApi`] (commands, the state, pages of older values; a
//! search's commands and state, which the same page reaches) and its CSV
//! download. Everything else (sessions, the lock section, tasks,
//! streams, the store, the cluster) is the runtime's, which knows no kind.

pub mod download;

use std::sync::Arc;

use app::api::{AppError, BoxFuture, CurrentSession, SessionApi};
use axum::{extract::Request, middleware::Next, response::Response};
use shared::{
    job::{Job, JobCommand, Listed},
    search::SearchCommand,
    task::Task,
    trajectory::{Marks, Page, PageError},
    wire::{Command, Snapshot, SnapshotOf},
    Number,
};

use crate::{http::SessionHandle, id::RunId, session::Session};

/// Hands the page's server functions the request's session (which the
/// runtime's session layer found) through `app`'s trait boundary.
pub async fn current_session(mut request: Request, next: Next) -> Response {
    if let Some(handle) = request
        .extensions()
        .get::<Arc<SessionHandle<Job>>>()
        .cloned()
    {
        request.extensions_mut().insert(CurrentSession(handle));
    }
    next.run(request).await
}

impl SessionApi for SessionHandle<Job> {
    fn command(
        &self,
        run: Option<String>,
        command: Command,
    ) -> BoxFuture<'_, Result<u64, AppError>> {
        Box::pin(async move { SessionHandle::command(self, named(run)?, command.into()).await })
    }

    fn search(
        &self,
        run: Option<String>,
        from: String,
        to: String,
    ) -> BoxFuture<'_, Result<u64, AppError>> {
        let command = JobCommand::Search(SearchCommand::SetRange { from, to });
        Box::pin(async move { SessionHandle::command(self, named(run)?, command).await })
    }

    fn search_snapshot(
        &self,
        run: String,
    ) -> BoxFuture<'_, Result<shared::job::Snapshot, AppError>> {
        Box::pin(async move {
            let run = named(Some(run))?.ok_or(AppError::NoRun)?;
            let session = self.run(Some(run)).await?.ok_or(AppError::NoRun)?;
            Ok(session.snapshot().await)
        })
    }

    fn snapshot(
        &self,
        run: Option<String>,
    ) -> BoxFuture<'_, Result<(Option<String>, Snapshot), AppError>> {
        Box::pin(async move {
            let (id, snapshot) = SessionHandle::snapshot(self, named(run)?).await?;
            Ok((id.map(|id| id.to_string()), collatz_only(snapshot)))
        })
    }

    fn runs(&self) -> BoxFuture<'_, Result<Vec<Listed>, AppError>> {
        Box::pin(SessionHandle::runs(self))
    }

    fn new_run(&self) -> BoxFuture<'_, Result<String, AppError>> {
        Box::pin(async move { Ok(SessionHandle::new_run(self).await?.to_string()) })
    }

    fn remove_run(&self, run: String) -> BoxFuture<'_, Result<(), AppError>> {
        Box::pin(async move {
            let run = named(Some(run))?.ok_or(AppError::NoRun)?;
            SessionHandle::remove_run(self, run).await
        })
    }

    fn max_digits(&self) -> usize {
        self.runtime().sessions.settings().collatz.max_digits
    }

    fn max_input_chars(&self) -> usize {
        self.runtime().sessions.settings().search.max_input_chars
    }

    fn window(&self) -> shared::wire::Window {
        self.runtime().sessions.settings().collatz.window()
    }

    fn values(
        &self,
        run: Option<String>,
        from: u64,
        count: u64,
    ) -> BoxFuture<'_, Result<Page, AppError>> {
        Box::pin(async move {
            match self.run(named(run)?).await? {
                Some(session) => values(&session, from, count).await,
                None => Err(PageError::NoRun),
            }
            .map_err(AppError::Values)
        })
    }
}

/// A run's state as the Collatz view shows it: a search shows as no run
/// (the page's search region follows searches).
fn collatz_only(snapshot: shared::job::Snapshot) -> Snapshot {
    SnapshotOf {
        run: snapshot.run.and_then(|run| run.collatz().cloned()),
        version: snapshot.version,
        status: snapshot.status,
        interval_ms: snapshot.interval_ms,
        failure: snapshot.failure,
        unwatched: snapshot.unwatched,
        started_at: snapshot.started_at,
    }
}

/// The run a page names by its id; an id that names no run is as a run
/// that is gone.
fn named(run: Option<String>) -> Result<Option<RunId>, AppError> {
    run.map(|text| RunId::parse(&text).ok_or(AppError::NoRun))
        .transpose()
}

/// The Collatz run's start and the steps taken from it, once there is one.
pub async fn trajectory(session: &Session<Job>) -> Option<(Number, u64)> {
    session
        .read(|machine| {
            let run = machine.run()?.collatz()?;
            Some((run.start().clone(), run.steps()))
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
async fn values(session: &Arc<Session<Job>>, from: u64, count: u64) -> Result<Page, PageError> {
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
