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
    wire::{CommandError, ListedOf, SnapshotOf},
};

pub use crate::{
    address::{client_address, counted_as},
    policy::{Policy, SECURE_SESSION_COOKIE, SESSION_COOKIE},
};
use crate::{
    runtime::{NewRunError, NoRoom, Runtime, StartError},
    session::{RunId, Session, SessionId},
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
    let asked = asked_run(request.uri());
    let named = match named_session(&runtime, request.headers(), asked).await {
        Ok(named) => named,
        Err(response) => return response,
    };
    // A damaged session is told as such by the page and the server
    // functions (typed); anything else of it gets the message alone.
    let page_or_function = request.uri().path() == "/" || request.uri().path().starts_with("/api/");
    if let (Some(refused), false) = (&named.refused, page_or_function) {
        return (StatusCode::INTERNAL_SERVER_ERROR, refused.to_string()).into_response();
    }
    let client = client_address(&request, runtime.http.client_address_header.as_ref());
    if let Some(run) = &named.run {
        request.extensions_mut().insert(run.clone());
    }
    let handle = Arc::new(SessionHandle {
        id: named.session,
        session: named.run,
        refused: named.refused,
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
            session.id().session,
            runtime.http.cookie_attributes
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The run a request's query names (`?run=<id>`: a page's stream, its
/// download), if any.
fn asked_run(uri: &axum::http::Uri) -> Option<RunId> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("run="))
        .and_then(RunId::parse)
}

/// What a request's cookies name.
struct Named<T: Task> {
    /// The live session they name, if any.
    session: Option<SessionId>,
    /// The run the request is about: the one its query names, if it is
    /// the session's, else the session's default run.
    run: Option<Arc<Session<T>>>,
    /// Why the session they name cannot be served (it is damaged).
    refused: Option<AppError>,
}

/// The session the request's cookies name, and its run that the request
/// asks for (else its default run), or why the one they name cannot be
/// served (it is damaged: a lasting error); a response at once when the
/// store cannot be asked now.
async fn named_session<T: Task>(
    runtime: &Runtime<T>,
    headers: &HeaderMap,
    asked: Option<RunId>,
) -> Result<Named<T>, Response> {
    // A browser may send two cookies of that name (one set for another
    // path, say): the one that names a live session wins.
    let ids: Vec<SessionId> = cookies(headers, runtime.http.cookie_name)
        .filter_map(SessionId::parse)
        .collect();
    let mut refused = None;
    for id in ids {
        let asked = match asked.filter(|run| run.session == id) {
            Some(run) => runtime.session(run).await,
            None => Ok(None),
        };
        let found = match asked {
            Ok(None) => runtime.default_run(id).await,
            found => found,
        };
        match found {
            Ok(Some(run)) => {
                return Ok(Named {
                    session: Some(id),
                    run: Some(run),
                    refused: None,
                })
            }
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
    Ok(Named {
        session: None,
        run: None,
        refused,
    })
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

/// `runs` as a list shows them, newest first.
pub async fn listed<T: Task>(runs: &[Arc<Session<T>>]) -> Vec<ListedOf<T::Summary>> {
    let mut listed = Vec::with_capacity(runs.len());
    for run in runs.iter().rev() {
        let id = run.id().to_string();
        listed.push(run.read(|machine| machine.listed(id)).await);
    }
    listed
}

/// What a client is told when the store failed it.
fn stored(error: StoreError) -> AppError {
    match error {
        StoreError::Damaged { .. } => AppError::Damaged,
        StoreError::Corrupt { .. } => AppError::Command(CommandError::StoreDamaged),
        error => {
            tracing::error!(%error, "could not read a session's runs");
            AppError::Command(CommandError::Unsaved)
        }
    }
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
/// its cookie names and the run the request is about, or none until its
/// first command creates one.
pub struct SessionHandle<T: Task> {
    /// The session the request's cookie names, if it has a run.
    id: Option<SessionId>,
    /// Its run the request is about (see [`session_layer`]).
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
    /// Applies a command to run `named` (or, naming none, the request's
    /// run) while holding its lock; returns the version that shows its
    /// effect. The first command of a visitor without a session creates
    /// one (nothing else does); a run named that is gone is refused.
    pub async fn command(
        &self,
        named: Option<RunId>,
        command: T::Command,
    ) -> Result<u64, AppError> {
        if let Some(run) = self.run(named).await? {
            match self.runtime.command(&run, command.clone()).await {
                // It ended on the way (expired or evicted): the command
                // goes to a new session, as for a visitor without one.
                Err(CommandError::Ended) if named.is_none() => {}
                Err(CommandError::Ended) => return Err(AppError::NoRun),
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

    /// Run `named`'s state now (or, naming none or one that is gone, the
    /// request's run's), with its id; a fresh idle state when there is no
    /// session; an error when it cannot be shown.
    pub async fn snapshot(
        &self,
        named: Option<RunId>,
    ) -> Result<(Option<RunId>, SnapshotOf<T::View>), AppError> {
        let run = match self.run(named).await {
            Err(AppError::NoRun) => self.run(None).await,
            found => found,
        };
        Ok(match run? {
            Some(run) => (Some(run.id()), run.snapshot().await),
            None => (
                None,
                Machine::<T>::new(self.runtime.sessions.settings()).snapshot(),
            ),
        })
    }

    /// The run `named` of the request's session, or, naming none, the
    /// request's run; `None` without a session. A run named that is not
    /// (or no longer) the session's is [`AppError::NoRun`].
    pub async fn run(&self, named: Option<RunId>) -> Result<Option<Arc<Session<T>>>, AppError> {
        if let Some(refused) = &self.refused {
            return Err(refused.clone());
        }
        let Some(named) = named else {
            return Ok(self.session.clone());
        };
        if let Some(run) = self.session.as_ref().filter(|run| run.id() == named) {
            return Ok(Some(run.clone()));
        }
        if self.id != Some(named.session) {
            return Err(AppError::NoRun);
        }
        match self.runtime.session(named).await {
            Ok(Some(run)) => Ok(Some(run)),
            Ok(None) => Err(AppError::NoRun),
            Err(error) => Err(stored(error)),
        }
    }

    /// The session's runs, newest first, as its list shows them.
    pub async fn runs(&self) -> Result<Vec<ListedOf<T::Summary>>, AppError> {
        if let Some(refused) = &self.refused {
            return Err(refused.clone());
        }
        let Some(id) = self.id else {
            return Ok(Vec::new());
        };
        let (runs, _) = self.runtime.runs(id).await.map_err(stored)?;
        Ok(listed(&runs).await)
    }

    /// Adds a run to the request's session (see [`Runtime::new_run`]); its
    /// id. A visitor without a session has none to add to.
    pub async fn new_run(&self) -> Result<RunId, AppError> {
        let Some(id) = self.id else {
            return Err(AppError::NoSession);
        };
        match self.runtime.new_run(id).await {
            Ok(run) => Ok(run.id()),
            Err(NewRunError::TooManyLive(max)) => Err(AppError::TooManyLiveRuns { max }),
            Err(NewRunError::TooManyKept(max)) => Err(AppError::TooManyKeptRuns { max }),
            Err(NewRunError::NoRoom(NoRoom::Full)) => Err(AppError::AtCapacity),
            Err(NewRunError::NoRoom(_)) => Err(AppError::Command(CommandError::Unsaved)),
        }
    }

    /// Removes run `named` of the request's session.
    pub async fn remove_run(&self, named: RunId) -> Result<(), AppError> {
        let run = self.run(Some(named)).await?.ok_or(AppError::NoRun)?;
        self.runtime.remove_run(&run).await.map_err(stored)
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
