//! The connections: accepting, limits, timeouts, and a graceful end.
//!
//! One owner for what a client can hold open ([`Connections`] counts and
//! picks who gives way). A new connection at a cap takes the place of the
//! longest idle one (of its own address at the address's cap, of anyone at
//! the global cap); only when none is idle is it answered (429 or 503) and
//! closed at once, so the process never runs out of file descriptors (where
//! `accept` itself would fail for everyone). A new connection that has not
//! sent a complete request head within the header timeout is closed,
//! whatever it sent. A connection with no request in flight for the idle
//! timeout is closed. An open event stream is a request in flight, so it
//! is kept.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{header::HeaderName, StatusCode},
    response::IntoResponse,
    Router,
};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::Service;

use crate::{
    address::{counted_as, forwarded},
    connections::{Admitted, Connections, Refused},
    metrics::Metrics,
};

/// What a connection may hold, from the `[limits]` configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The most open connections.
    pub max_connections: usize,
    /// The most connections of one client address (behind a proxy: the
    /// most requests in flight of one client).
    pub connections_per_address: usize,
    /// The time a client has to send a complete request head.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight this long is closed.
    pub idle_timeout: Duration,
    /// The header a trusted proxy names its client in, if the server is
    /// behind one.
    pub client_address_header: Option<HeaderName>,
}

/// How long connections get to finish at shutdown (event streams end at
/// once; a request in flight finishes).
const DRAIN: Duration = Duration::from_secs(10);

/// How long a connection told to close (idle, or giving way) has before it
/// is dropped.
const CLOSE_WITHIN: Duration = Duration::from_secs(1);

/// What a connection over the global cap is told before it is closed.
const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nConnection: close\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 49\r\n\r\n\
Too many connections; please try again shortly.\r\n";

/// What a connection over its address's cap is told before it is closed.
const ADDRESS_FULL: &[u8] =
    b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\nConnection: close\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 64\r\n\r\n\
Too many connections from your address; close some and try again.";

/// Serves `router` on `listener`: new connections until `stop_accepting`
/// is cancelled (the listener is then closed, so a balancer sends them
/// elsewhere at once), the open ones until `shutdown` is, then lets them
/// finish (at most [`DRAIN`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop_accepting: CancellationToken,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) {
    let connections = Connections::new(
        limits.max_connections,
        limits.connections_per_address,
        limits.client_address_header.is_some(),
    );
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(200)
        .keep_alive_interval(Some(Duration::from_secs(20)));
    let builder = Arc::new(builder);
    let limits = Arc::new(limits);
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = stop_accepting.cancelled() => break,
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors (the cap leaves room, but other files
                // count too) or a connection reset while queued: wait a
                // moment rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admitted = match connections.admit(counted_as(peer.ip())) {
            Ok(admitted) => admitted,
            Err(refused) => {
                metrics.connections_refused.inc();
                tracker.spawn(refuse(stream, refused));
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        metrics.connections.inc();
        let connection = Connection {
            builder: builder.clone(),
            router: router.clone(),
            limits: limits.clone(),
            connections: connections.clone(),
            shutdown: shutdown.clone(),
            peer,
        };
        let metrics = metrics.clone();
        tracker.spawn(async move {
            connection.serve(stream, admitted).await;
            metrics.connections.dec();
        });
    }
    drop(listener);
    tracker.close();
    shutdown.cancelled().await;
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        tracing::warn!("connections still open after {DRAIN:?}; closing them");
    }
}

/// Answers a connection over a cap and closes it.
async fn refuse(mut stream: TcpStream, refused: Refused) {
    let answer = match refused {
        Refused::Address => ADDRESS_FULL,
        Refused::Full => FULL,
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer)).await;
    let _ = stream.shutdown().await;
}

/// What serving one connection needs.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    limits: Arc<Limits>,
    connections: Arc<Connections>,
    shutdown: CancellationToken,
    peer: SocketAddr,
}

impl Connection {
    /// Serves the connection until it ends, is told to close (shutdown, idle
    /// too long, no request head in time, giving way to a new one), or does
    /// not finish closing in time.
    async fn serve(self, stream: TcpStream, admitted: Admitted) {
        let opened = Instant::now();
        let this = admitted.connection.clone();
        let served = self.builder.serve_connection_with_upgrades(
            TokioIo::new(stream),
            TowerToHyperService::new(self.service(&admitted)),
        );
        tokio::pin!(served);
        let peer = self.peer;
        let (idle, head) = (self.limits.idle_timeout, self.limits.header_read_timeout);
        let mut closing: Option<Instant> = None;
        loop {
            // The next moment something may be due.
            let check = match closing {
                Some(deadline) => deadline,
                None if !this.has_had_requests() => opened + head,
                None if this.is_busy() => Instant::now() + idle,
                None => admitted.last_active() + idle,
            };
            tokio::select! {
                result = served.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                    return;
                }
                () = self.shutdown.cancelled(), if closing.is_none() => {
                    served.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + DRAIN);
                }
                () = this.give_way().cancelled(), if closing.is_none() => {
                    tracing::debug!(%peer, "idle connection gave way to a new one");
                    served.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + CLOSE_WITHIN);
                }
                () = tokio::time::sleep_until(check) => {
                    if closing.is_some() {
                        return; // did not finish in time: dropped, so closed
                    }
                    if !this.has_had_requests() {
                        // No complete request head in time, whatever it
                        // sent: nothing to answer.
                        tracing::debug!(%peer, "no request head within the header timeout; closed");
                        return;
                    }
                    if !this.is_busy() && Instant::now() >= admitted.last_active() + idle {
                        tracing::debug!(%peer, "idle connection closed");
                        served.as_mut().graceful_shutdown();
                        closing = Some(Instant::now() + CLOSE_WITHIN);
                    }
                }
            }
        }
    }

    /// The connection's service: each request is counted in flight until
    /// its response is sent whole (an event stream: until it ends), and
    /// refused behind a proxy when its client has its cap in flight.
    fn service(
        &self,
        admitted: &Admitted,
    ) -> impl Service<
        hyper::Request<Incoming>,
        Response = axum::response::Response,
        Error = Infallible,
        Future = impl Send,
    > + Clone {
        let (router, connections) = (self.router.clone(), self.connections.clone());
        let (connection, peer) = (admitted.connection.clone(), self.peer);
        let header = self.limits.client_address_header.clone();
        tower::service_fn(move |mut request: hyper::Request<Incoming>| {
            let client = header
                .as_ref()
                .and_then(|name| forwarded(request.headers(), name))
                .map(counted_as);
            let in_flight = connections.begin(&connection, client);
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move {
                let Ok(in_flight) = in_flight else {
                    return Ok(too_many_requests());
                };
                let response = router.call(request.map(Body::new)).await?;
                // The request stays in flight until its body is sent whole.
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _ = &in_flight;
                        frame
                    }))
                }))
            }
        })
    }
}

/// The answer to a request of a client (behind a proxy) that has its cap of
/// requests in flight.
fn too_many_requests() -> axum::response::Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(axum::http::header::RETRY_AFTER, "5")],
        "Too many requests from your address at once; close some pages and try again.",
    )
        .into_response()
}
