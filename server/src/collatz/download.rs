//! The whole run as CSV (`GET /trajectory.csv`), streamed: computed a chunk
//! at a time on the blocking pool as the client reads, never built whole in
//! memory, and no thread is held while a slow client reads.

use std::{convert::Infallible, fmt::Write, sync::Arc};

use axum::{
    body::Body,
    extract::Request,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use shared::{job::Job, trajectory::PageError, Number};

use crate::session::Session;

/// About how many bytes one chunk of the body holds.
const CHUNK_BYTES: usize = 64 * 1024;

/// `step,value` for every step of the session's run so far, with a file name
/// that says the start; 404 without a run.
pub async fn csv(request: Request) -> Response {
    let session = request.extensions().get::<Arc<Session<Job>>>().cloned();
    let trajectory = match session {
        Some(session) => super::trajectory(&session).await,
        None => None,
    };
    let Some((start, steps)) = trajectory else {
        return (StatusCode::NOT_FOUND, PageError::NoRun.to_string()).into_response();
    };
    let disposition = format!("attachment; filename=\"{}\"", file_name(&start.to_string()));
    let walk = Walk {
        value: start,
        step: 0,
        last: steps,
    };
    let body = futures::stream::unfold(Some(walk), |walk| async move {
        let walk = walk?;
        let (chunk, walk) = tokio::task::spawn_blocking(move || walk.chunk())
            .await
            .ok()?;
        Some((Ok::<_, Infallible>(chunk), walk))
    });
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// The download's file name: `hailstone-27.csv`; a long start is cut, with
/// its length said (`hailstone-99999999999999999999-1000-digits.csv`).
pub fn file_name(start: &str) -> String {
    const SHOWN: usize = 20;
    if start.len() <= SHOWN * 2 {
        format!("hailstone-{start}.csv")
    } else {
        format!("hailstone-{}-{}-digits.csv", &start[..SHOWN], start.len())
    }
}

/// Where the download stands: the value of `step`, not yet written.
struct Walk {
    value: Number,
    step: u64,
    last: u64,
}

impl Walk {
    /// The next chunk of lines (the header first), and what is left.
    fn chunk(mut self) -> (String, Option<Walk>) {
        let mut out = String::with_capacity(CHUNK_BYTES + 4096);
        if self.step == 0 {
            out.push_str("step,value\n");
        }
        loop {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{},{}", self.step, self.value);
            if self.step == self.last {
                return (out, None);
            }
            self.value.step();
            self.step += 1;
            if out.len() >= CHUNK_BYTES {
                return (out, Some(self));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of the download of the run from `start` with `last` steps,
    /// and how many chunks carried them.
    fn download(start: &str, last: u64) -> (Vec<String>, usize) {
        let mut walk = Some(Walk {
            value: Number::from_digits(start).unwrap(),
            step: 0,
            last,
        });
        let (mut all, mut chunks) = (String::new(), 0);
        while let Some(next) = walk {
            let (chunk, rest) = next.chunk();
            all.push_str(&chunk);
            chunks += 1;
            walk = rest;
        }
        (all.lines().map(str::to_owned).collect(), chunks)
    }

    #[test]
    fn writes_every_step_once_in_order() {
        let (lines, chunks) = download("27", 111);
        assert_eq!(chunks, 1);
        assert_eq!(lines.len(), 113);
        assert_eq!(lines[..3], ["step,value", "0,27", "1,82"]);
        assert_eq!(lines[112], "111,1");
        // A long run of big numbers spans many chunks, and they join up.
        let start = "9".repeat(300);
        let mut value = Number::from_digits(&start).unwrap();
        let mut expected = vec!["step,value".to_owned()];
        let mut step = 0;
        loop {
            expected.push(format!("{step},{value}"));
            if value.is_one() {
                break;
            }
            value.step();
            step += 1;
        }
        let (lines, chunks) = download(&start, step);
        assert!(chunks > 3, "{chunks} chunks");
        assert_eq!(lines, expected);
    }

    #[test]
    fn names_the_file_after_the_start() {
        assert_eq!(file_name("27"), "hailstone-27.csv");
        let long = "9".repeat(1000);
        assert_eq!(
            file_name(&long),
            format!("hailstone-{}-1000-digits.csv", "9".repeat(20))
        );
    }
}
