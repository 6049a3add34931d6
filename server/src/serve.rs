//! The connections: accepting, limits, timeouts, and a graceful end.
//!
//! One owner for what a client can hold open. New connections beyond the
//! cap are answered `503` and closed at once, so the process never runs out
//! of file descriptors (where `accept` itself would fail for everyone). A
//! connection with no request in flight for the idle timeout is closed,
//! whether it is a silent socket, a kept-alive one, or a client that never
//! finished its request headers (HTTP/1.1 also has hyper's header-read
//! timeout). An open event stream is a request in flight, so it is kept.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{body::Body, extract::ConnectInfo, Router};
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
    sync::Semaphore,
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::Service;

use crate::metrics::Metrics;

/// What a connection may hold, from the `[limits]` configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most open connections; more are answered 503 and closed.
    pub max_connections: usize,
    /// HTTP/1.1: the time a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight this long is closed.
    pub idle_timeout: Duration,
}

/// How long connections get to finish at shutdown (event streams end at
/// once; a request in flight finishes).
const DRAIN: Duration = Duration::from_secs(10);

/// What a connection over the cap is told before it is closed.
const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nConnection: close\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 49\r\n\r\n\
Too many connections; please try again shortly.\r\n";

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets
/// the connections finish (at most [`DRAIN`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
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
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
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
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.connections_refused.inc();
            connections.spawn(refuse(stream));
            continue;
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        metrics.connections.inc();
        let (builder, router, shutdown, metrics) = (
            builder.clone(),
            router.clone(),
            shutdown.clone(),
            metrics.clone(),
        );
        connections.spawn(async move {
            connection(&builder, stream, peer, router, limits, shutdown).await;
            metrics.connections.dec();
            drop(permit);
        });
    }
    connections.close();
    if tokio::time::timeout(DRAIN, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN:?}; closing them");
    }
}

/// Answers a connection over the cap and closes it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(FULL)).await;
    let _ = stream.shutdown().await;
}

/// Requests in flight on one connection, and when the last one ended.
#[derive(Default)]
struct Activity {
    /// Requests whose response has not been sent whole.
    in_flight: AtomicUsize,
    /// Milliseconds since the connection opened when one last ended.
    last_ms: AtomicU64,
}

/// Held while a request is in flight (moved into its response body).
struct InFlight {
    activity: Arc<Activity>,
    opened: Instant,
}

impl InFlight {
    fn new(activity: &Arc<Activity>, opened: Instant) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            activity: activity.clone(),
            opened,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.opened.elapsed().as_millis() as u64;
        self.activity.last_ms.store(now, Ordering::Release);
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves one connection until it ends, is idle too long, or shutdown.
async fn connection(
    builder: &auto::Builder<TokioExecutor>,
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let opened = Instant::now();
    let activity = Arc::new(Activity::default());
    let service = {
        let activity = activity.clone();
        tower::service_fn(move |mut request: hyper::Request<Incoming>| {
            let in_flight = InFlight::new(&activity, opened);
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move {
                let response = router.call(request.map(Body::new)).await?;
                // The request stays in flight until its body is sent whole
                // (an event stream: until it ends).
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _ = &in_flight;
                        frame
                    }))
                }))
            }
        })
    };
    let served = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(served);
    let idle = limits.idle_timeout;
    let mut closing: Option<Instant> = None;
    loop {
        // When the connection would have been idle long enough.
        let idle_at = || {
            let last = Duration::from_millis(activity.last_ms.load(Ordering::Acquire));
            opened + last + idle
        };
        let check = match closing {
            Some(deadline) => deadline,
            None if activity.in_flight.load(Ordering::Acquire) > 0 => Instant::now() + idle,
            None => idle_at(),
        };
        tokio::select! {
            result = served.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, %peer, "connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if closing.is_none() => {
                served.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + DRAIN);
            }
            () = tokio::time::sleep_until(check) => {
                if closing.is_some() {
                    return; // did not finish in time: dropped, so closed
                }
                let quiet = activity.in_flight.load(Ordering::Acquire) == 0;
                if quiet && Instant::now() >= idle_at() {
                    tracing::debug!(%peer, "idle connection closed");
                    served.as_mut().graceful_shutdown();
                    // A client that never sent a byte is not waiting for
                    // anything: give it a moment, then drop it.
                    closing = Some(Instant::now() + Duration::from_secs(1));
                }
            }
        }
    }
}
