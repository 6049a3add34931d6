//! How requests are judged, from the `[http]` configuration: the origin
//! commands must come from, the session cookie, who may read `/metrics`.

use axum::http::{header, HeaderMap};

/// The cookie that carries the session id.
pub const SESSION_COOKIE: &str = "hailstone_session";
/// Its name when the public origin is https: the `__Host-` prefix makes the
/// browser accept it only with `Secure`, `Path=/` and no `Domain`, so no
/// other host under the same site can set or shadow it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-hailstone_session";

/// How requests are judged: the origin commands must come from, the session
/// cookie, who may read `/metrics`. From the `[http]` configuration.
pub struct Policy {
    /// The origin browsers see (`https://host[:port]`), when a proxy is in
    /// front; `None`: the request's `Host` (or HTTP/2 authority).
    pub public_origin: Option<String>,
    /// The session cookie's name.
    pub cookie_name: &'static str,
    /// The attributes set with the session cookie.
    pub cookie_attributes: &'static str,
    /// The bearer token `/metrics` asks for; `None`: not served.
    pub metrics_token: Option<String>,
    /// The header a trusted proxy names the client's address in, if any.
    pub client_address_header: Option<header::HeaderName>,
}

impl Policy {
    /// The policy the configuration asks for.
    pub fn new(config: &crate::config::Http) -> Policy {
        let public_origin = crate::config::public_origin(&config.public_origin);
        let secure = public_origin
            .as_deref()
            .is_some_and(|origin| origin.starts_with("https://"));
        Policy {
            public_origin,
            cookie_name: if secure {
                SECURE_SESSION_COOKIE
            } else {
                SESSION_COOKIE
            },
            cookie_attributes: if secure {
                "HttpOnly; SameSite=Lax; Path=/; Secure"
            } else {
                "HttpOnly; SameSite=Lax; Path=/"
            },
            metrics_token: Some(config.metrics_token.clone()).filter(|token| !token.is_empty()),
            client_address_header: config.client_address_header(),
        }
    }

    /// Whether `headers` carry the `/metrics` token.
    pub fn may_read_metrics(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.metrics_token else {
            return false;
        };
        let offered = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        // Compared in time independent of where they differ.
        offered.len() == token.len()
            && offered
                .bytes()
                .zip(token.bytes())
                .fold(0, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}
