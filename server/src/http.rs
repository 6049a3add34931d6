//! Middleware between the socket and the handlers: the session cookie, the
//! same-origin rule for state changes, and HTTP statuses for server
//! function errors.

use std::sync::Arc;

use app::api::{AppError, CurrentSession, SessionApi};
use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use leptos::server_fn::error::SERVER_FN_ERROR_HEADER;
use shared::wire::{Command, CommandError, Snapshot};

use crate::{
    session::{Session, SessionId},
    sessions::Full,
    Runtime,
};

/// The cookie that carries the session id.
pub const SESSION_COOKIE: &str = "hailstone_session";

/// Finds the request's session by its cookie, or makes a new one (and sets
/// the cookie on the response). An unknown or forged id gets a new session,
/// never another's. Answers 503 when there is no room for a new session.
pub async fn session_layer(
    State(runtime): State<Arc<Runtime>>,
    mut request: Request,
    next: Next,
) -> Response {
    let known = cookie(request.headers(), SESSION_COOKIE)
        .and_then(SessionId::parse)
        .and_then(|id| runtime.sessions.get(id));
    let (session, created) = match known {
        Some(session) => (session, false),
        None => match runtime.sessions.create() {
            Ok(session) => (session, true),
            Err(Full) => {
                tracing::warn!("session limit reached; refusing a new session");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "30")],
                    "Hailstone is at capacity right now; please try again in a minute.",
                )
                    .into_response();
            }
        },
    };
    let handle = SessionHandle {
        session: session.clone(),
        runtime,
    };
    request
        .extensions_mut()
        .insert(CurrentSession(Arc::new(handle)));
    request.extensions_mut().insert(session.clone());
    let mut response = next.run(request).await;
    if created {
        let cookie = format!(
            "{SESSION_COOKIE}={}; HttpOnly; SameSite=Lax; Path=/",
            session.id()
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// Refuses a state-changing request that a browser says comes from another
/// site (`Origin` not this host, or `Sec-Fetch-Site: cross-site`). Requests
/// without those headers are not from a browser page and pass.
pub async fn same_origin(request: Request, next: Next) -> Response {
    // HTTP/1.1 names the host in `Host`; HTTP/2 in the URI's authority.
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    if !request.method().is_safe() && is_cross_origin(request.headers(), host) {
        return (
            StatusCode::FORBIDDEN,
            "Requests from other sites may not change Hailstone's state.",
        )
            .into_response();
    }
    next.run(request).await
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
            .is_some_and(|value| value.starts_with("application/json"));
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
    Response::from_parts(parts, Body::from(bytes))
}

/// A session as `app`'s server functions reach it.
struct SessionHandle {
    /// The session of the request.
    session: Arc<Session>,
    /// Where commands are applied and tasks spawned.
    runtime: Arc<Runtime>,
}

impl SessionApi for SessionHandle {
    fn command(&self, command: Command) -> app::api::BoxFuture<'_, Result<u64, CommandError>> {
        Box::pin(self.runtime.command(&self.session, command))
    }

    fn snapshot(&self) -> app::api::BoxFuture<'_, Snapshot> {
        Box::pin(self.session.snapshot())
    }

    fn max_digits(&self) -> usize {
        self.runtime.sessions.settings().max_digits
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
    fn finds_the_cookie_among_others() {
        let h = headers(&[("cookie", "a=1; hailstone_session=abc ; b=2")]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers(&[("cookie", "a=1")]), SESSION_COOKIE), None);
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
