//! Middleware between the socket and the handlers: the session cookie, the
//! same-origin rule for state changes, and HTTP statuses for server
//! function errors.

use std::{net::IpAddr, sync::Arc};

use app::api::AppError;
use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use leptos::server_fn::error::SERVER_FN_ERROR_HEADER;
use shared::{
    task::{Machine, Task},
    wire::{CommandError, SnapshotOf},
};

pub use crate::{
    address::{client_address, counted_as},
    policy::{Policy, SECURE_SESSION_COOKIE, SESSION_COOKIE},
};
use crate::{
    runtime::{NoRoom, Runtime, StartError},
    session::{Session, SessionId},
    store::StoreError,
};

/// Finds the request's session by its cookie. Nothing is created here:
/// looking costs the server no session. A server function's first command
/// creates one (see [`SessionHandle`], which the request's extensions
/// carry), and the cookie is set on its answer.
pub async fn session_layer<T: Task>(
    State(runtime): State<Arc<Runtime<T>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let (known, refused) = match named_session(&runtime, request.headers()).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    // A damaged session is told as such by the page and the server
    // functions (typed); anything else of it gets the message alone.
    let page_or_function = request.uri().path() == "/" || request.uri().path().starts_with("/api/");
    if let (Some(refused), false) = (&refused, page_or_function) {
        return (StatusCode::INTERNAL_SERVER_ERROR, refused.to_string()).into_response();
    }
    let client = client_address(&request, runtime.http.client_address_header.as_ref());
    if let Some(session) = &known {
        request.extensions_mut().insert(session.clone());
    }
    let handle = Arc::new(SessionHandle {
        session: known,
        refused,
        fresh: std::sync::Mutex::new(None),
        retry_after: std::sync::Mutex::new(None),
        client,
        runtime: runtime.clone(),
    });
    request.extensions_mut().insert(handle.clone());
    let mut response = next.run(request).await;
    let fresh = handle
        .fresh
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let retry_after = *handle.retry_after.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(wait) = retry_after {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    if let Some(session) = fresh {
        let cookie = format!(
            "{}={}; {}",
            runtime.http.cookie_name,
            session.id(),
            runtime.http.cookie_attributes
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The session the request's cookies name, if any, or why the one they
/// name cannot be served (it is damaged: a lasting error); a response at
/// once when the store cannot be asked now.
async fn named_session<T: Task>(
    runtime: &Runtime<T>,
    headers: &HeaderMap,
) -> Result<(Option<Arc<Session<T>>>, Option<AppError>), Response> {
    // A browser may send two cookies of that name (one set for another
    // path, say): the one that names a live session wins.
    let ids: Vec<SessionId> = cookies(headers, runtime.http.cookie_name)
        .filter_map(SessionId::parse)
        .collect();
    let mut refused = None;
    for id in ids {
        match runtime.session(id).await {
            Ok(Some(session)) => return Ok((Some(session), None)),
            Ok(None) => {}
            Err(StoreError::Damaged { .. }) => refused = Some(AppError::Damaged),
            Err(StoreError::Corrupt { .. }) => {
                refused = Some(AppError::Command(CommandError::StoreDamaged));
            }
            Err(error) => {
                tracing::error!(%error, "could not load a session");
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, RETRY_AFTER_SECS)],
                    "Your session cannot be loaded right now; please try again shortly.",
                )
                    .into_response());
            }
        }
    }
    Ok((None, refused))
}

/// The values of every cookie `name` in the request's `Cookie` headers.
fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter_map(move |(key, value)| (key == name).then_some(value))
}

/// Refuses a state-changing request that a browser says comes from another
/// site (`Origin` not this site, or `Sec-Fetch-Site: cross-site`). This site
/// is the configured public origin, or else the request's own host.
/// Requests without those headers are not from a browser page and pass.
pub async fn same_origin<T: Task>(
    State(runtime): State<Arc<Runtime<T>>>,
    request: Request,
    next: Next,
) -> Response {
    if request.method().is_safe() {
        return next.run(request).await;
    }
    let refused = match &runtime.http.public_origin {
        Some(origin) => is_foreign(request.headers(), origin),
        None => {
            // HTTP/1.1 names the host in `Host`; HTTP/2 in the URI's authority.
            let host = request
                .headers()
                .get(header::HOST)
                .and_then(|value| value.to_str().ok())
                .or_else(|| request.uri().authority().map(|a| a.as_str()));
            is_cross_origin(request.headers(), host)
        }
    };
    if refused {
        return (
            StatusCode::FORBIDDEN,
            "Requests from other sites may not change Hailstone's state.",
        )
            .into_response();
    }
    next.run(request).await
}

/// Against a configured public origin: the `Origin` must be exactly it.
fn is_foreign(headers: &HeaderMap, public_origin: &str) -> bool {
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return true;
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => !origin.eq_ignore_ascii_case(public_origin),
        None => false,
    }
}

fn is_cross_origin(headers: &HeaderMap, host: Option<&str>) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|value: &HeaderValue| value.to_str().ok())
    };
    if text(header::HeaderName::from_static("sec-fetch-site")) == Some("cross-site") {
        return true;
    }
    let Some(origin) = text(header::ORIGIN) else {
        return false;
    };
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    origin_host.is_none() || origin_host != host
}

/// For server functions: refuses bodies that are not JSON (415), and gives
/// each error answer the status its kind deserves (400, 422, 503, 500) instead of
/// a blanket 500. Internal errors are logged here, once.
pub async fn server_fn_status(request: Request, next: Next) -> Response {
    if request.method() == Method::POST {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(is_json);
        if !is_json {
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Send the arguments as JSON (Content-Type: application/json).",
            )
                .into_response();
        }
    }
    let response = next.run(request).await;
    if !response.headers().contains_key(SERVER_FN_ERROR_HEADER) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 16)
        .await
        .unwrap_or_default();
    if let Ok(error) = serde_json::from_slice::<AppError>(&bytes) {
        parts.status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if matches!(error, AppError::Internal) {
            tracing::error!(path = ?parts.headers.get(SERVER_FN_ERROR_HEADER), "server function failed");
        }
    }
    // A refusal that will pass says when to try again (the session layer
    // sets the exact wait where it knows it).
    let passing = [
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::TOO_MANY_REQUESTS,
    ];
    if passing.contains(&parts.status) && !parts.headers.contains_key(header::RETRY_AFTER) {
        parts.headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The `Retry-After` of a 503 or 429 whose end the server cannot tell.
const RETRY_AFTER_SECS: &str = "5";

/// `application/json`, with parameters or none (`; charset=utf-8`), in any
/// case; not `application/jsonp` or `application/json-seq`.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// A request's session as a task kind's server functions reach it: the one
/// its cookie names, or none until its first command creates one.
pub struct SessionHandle<T: Task> {
    /// The session the request's cookie names, if any.
    session: Option<Arc<Session<T>>>,
    /// Why the session the cookie names cannot be served, lastingly (it is
    /// damaged): every server function answers this.
    refused: Option<AppError>,
    /// The session this request created, if it did: the answer sets its
    /// cookie.
    fresh: std::sync::Mutex<Option<Arc<Session<T>>>>,
    /// How long the client must wait to start a session, when it started
    /// too many lately: the answer's `Retry-After`.
    retry_after: std::sync::Mutex<Option<std::time::Duration>>,
    /// Who asked, for the per-address limit on new sessions.
    client: IpAddr,
    /// Where commands are applied and tasks spawned.
    runtime: Arc<Runtime<T>>,
}

impl<T: Task> SessionHandle<T> {
    /// Applies a command while holding the session's lock; returns the
    /// version that shows its effect. The first command of a visitor
    /// without a session creates one (nothing else does).
    pub async fn command(&self, command: T::Command) -> Result<u64, AppError> {
        if let Some(session) = self.session()? {
            match self.runtime.command(session, command.clone()).await {
                // It ended on the way (expired or evicted): the command
                // goes to a new session, as for a visitor without one.
                Err(CommandError::Ended) => {}
                answer => return Ok(answer?),
            }
        }
        let (session, version) = self
            .runtime
            .start_session(self.client, command)
            .await
            .map_err(|refused| self.refusal(refused))?;
        *self.fresh.lock().unwrap_or_else(|p| p.into_inner()) = Some(session);
        Ok(version)
    }

    /// The session's state now; a fresh idle state when there is no
    /// session; an error when it cannot be shown.
    pub async fn snapshot(&self) -> Result<SnapshotOf<T::View>, AppError> {
        Ok(match self.session()? {
            Some(session) => session.snapshot().await,
            None => Machine::<T>::new(self.runtime.sessions.settings()).snapshot(),
        })
    }

    /// The session the cookie names, if any, or why it cannot be served.
    pub fn session(&self) -> Result<Option<&Arc<Session<T>>>, AppError> {
        match &self.refused {
            Some(refused) => Err(refused.clone()),
            None => Ok(self.session.as_ref()),
        }
    }

    /// The runtime the session lives in.
    pub fn runtime(&self) -> &Runtime<T> {
        &self.runtime
    }

    /// What a visitor is told when its first command started no session.
    fn refusal(&self, refused: StartError) -> AppError {
        match refused {
            StartError::Refused(error) => AppError::Command(error),
            StartError::NoRoom(NoRoom::Full) => AppError::AtCapacity,
            StartError::NoRoom(NoRoom::TooMany { retry_after }) => {
                *self.retry_after.lock().unwrap_or_else(|p| p.into_inner()) = Some(retry_after);
                AppError::TooManySessions
            }
            StartError::NoRoom(NoRoom::Unavailable) => AppError::Command(CommandError::Unsaved),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    header::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn finds_every_cookie_of_the_name_among_others() {
        let h = headers(&[(
            "cookie",
            "a=1; hailstone_session=abc ; b=2; hailstone_session=def",
        )]);
        let found: Vec<_> = cookies(&h, SESSION_COOKIE).collect();
        assert_eq!(found, ["abc", "def"]);
        assert_eq!(
            cookies(&headers(&[("cookie", "a=1")]), SESSION_COOKIE).count(),
            0
        );
    }

    #[test]
    fn only_json_is_json() {
        for yes in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            assert!(is_json(yes), "{yes}");
        }
        for no in [
            "application/jsonfoo",
            "application/json-seq",
            "text/json",
            "",
            "json",
        ] {
            assert!(!is_json(no), "{no}");
        }
    }

    #[test]
    fn a_public_origin_is_matched_exactly() {
        let origin = "https://site.example";
        assert!(!is_foreign(
            &headers(&[("origin", "https://site.example")]),
            origin
        ));
        assert!(
            !is_foreign(&headers(&[]), origin),
            "no Origin: not a browser page"
        );
        for other in [
            "http://site.example",
            "https://site.example:444",
            "https://evil.example",
            "null",
        ] {
            let h: HeaderMap = [(header::ORIGIN, HeaderValue::from_str(other).unwrap())]
                .into_iter()
                .collect();
            assert!(is_foreign(&h, origin), "{other}");
        }
    }

    #[test]
    fn cross_origin_rules() {
        let host = Some("127.0.0.1:3000");
        let same = headers(&[("origin", "http://127.0.0.1:3000")]);
        assert!(!is_cross_origin(&same, host));
        assert!(
            is_cross_origin(&same, None),
            "an Origin with no host to match"
        );
        let other = headers(&[("origin", "http://evil.example")]);
        assert!(is_cross_origin(&other, host));
        assert!(is_cross_origin(&headers(&[("origin", "null")]), Some("h")));
        assert!(is_cross_origin(
            &headers(&[("sec-fetch-site", "cross-site")]),
            host
        ));
        assert!(
            !is_cross_origin(&headers(&[]), Some("h")),
            "no Origin: not a browser page"
        );
    }
}
