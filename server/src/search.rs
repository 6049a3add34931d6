//! The record search kind's part of the server: its records as CSV
//! (`GET /records.csv?run=…`). Its commands and state reach the page through
//! the same `SessionApi` as Collatz's (see [`crate::collatz`]); everything
//! else is the runtime's.

use std::sync::Arc;

use axum::{
    extract::Request,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use shared::job::Job;

use crate::session::Session;

/// `kind,start,steps,peak` for every record found so far, with a file name
/// that says the range; 404 unless the run is a search.
pub async fn csv(request: Request) -> Response {
    let Some(session) = request.extensions().get::<Arc<Session<Job>>>().cloned() else {
        return not_a_search();
    };
    let found = session
        .read(|machine| {
            let search = machine.run()?.search()?;
            Some((search.search().from(), search.search().to(), search.csv()))
        })
        .await;
    let Some((from, to, csv)) = found else {
        return not_a_search();
    };
    let disposition = format!("attachment; filename=\"records-{from}-{to}.csv\"");
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        csv,
    )
        .into_response()
}

fn not_a_search() -> Response {
    (StatusCode::NOT_FOUND, "This run is not a record search.").into_response()
}
