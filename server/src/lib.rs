//! Hailstone's server: sessions, background tasks, server-sent events.
//!
//! [`run`] serves until told to stop, then cancels and waits for every task
//! and stream. `main.rs` only reads the configuration, binds the socket and
//! waits for a signal; tests drive [`run`], [`app`] and [`Runtime`] directly.
//!
//! The runtime (every module but [`collatz`] and [`search`]) is generic
//! over the task kind (`shared::task::Task`) and names none; this file
//! wires it to the kinds the product serves (`shared::job::Job`: Collatz
//! runs and record searches) and their page.

pub mod address;
pub mod assets;
pub mod backend;
pub mod change;
pub mod chunks;
pub mod cluster;
pub mod collatz;
pub mod config;
pub mod connections;
pub mod http;
pub mod id;
pub mod local;
pub mod metrics;
pub mod policy;
pub mod primary;
pub mod rosters;
pub mod runtime;
pub mod scheduler;
pub mod search;
pub mod serve;
pub mod session;
pub mod sessions;
pub mod sse;
pub mod store;
pub mod streams;
pub mod tasks;

use std::{future::Future, sync::Arc, time::Duration};

use app::shell;
use axum::{
    extract::State,
    http::StatusCode,
    middleware::{from_fn, from_fn_with_state},
    response::IntoResponse,
    routing::{get, post},
    Router,
};
use shared::job::{Job, SavedJob};
use tokio::net::TcpListener;
use tower_http::{
    compression::{CompressionLayer, CompressionLevel},
    limit::RequestBodyLimitLayer,
    timeout::TimeoutLayer,
};

pub use config::Config;
pub use runtime::{NoRoom, Runtime};

use crate::{backend::Backend, cluster::Cluster, store::Store};

/// The runtime of the kind the product serves.
pub type Hailstone = Runtime<Job>;

/// The whole HTTP surface. The page, server functions and `/events` get the
/// request's session; `/healthz`, `/metrics` and static files do not.
pub fn app(runtime: Arc<Hailstone>, config: &Config) -> Router {
    // Leptos spawns its rendering futures on tokio; an error only means a
    // previous call (another router in the same process) did this already.
    let _ = any_spawner::Executor::init_tokio();
    let options = config.leptos_options();
    let page = leptos_axum::render_app_async({
        let options = options.clone();
        move || shell(options.clone())
    });
    let assets = assets::Assets::new(
        std::path::Path::new(&*options.site_root),
        options.site_pkg_dir_route_base(),
        options.hash_files,
    );

    let node = runtime
        .cluster()
        .and_then(|cluster| axum::http::HeaderValue::from_str(cluster.node()).ok());
    let router = Router::new()
        // The page is made per request: compressed as it is sent (gzip at
        // its fastest, a few KiB; the files were compressed at build).
        .route(
            "/",
            get(page).layer(CompressionLayer::new().quality(CompressionLevel::Fastest)),
        )
        .route(
            "/api/{*name}",
            post(server_fn).layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                Duration::from_secs(config.limits.request_timeout_secs),
            )),
        )
        .route("/events", get(sse::events::<Job>))
        .route("/trajectory.csv", get(collatz::download::csv))
        .route("/records.csv", get(search::csv))
        .route_layer(from_fn(collatz::current_session))
        .route_layer(from_fn_with_state(runtime.clone(), http::session_layer))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(move |request: axum::extract::Request| assets.clone().serve(request))
        .layer(from_fn(http::server_fn_status))
        .layer(from_fn_with_state(
            runtime.clone(),
            http::same_origin::<Job>,
        ))
        .layer(RequestBodyLimitLayer::new(config.limits.max_body_bytes))
        .with_state(runtime);
    match node {
        // Which node answered, for operators and fault tests behind a
        // balancer.
        Some(node) => router.layer(axum::middleware::map_response(
            move |mut response: axum::response::Response| {
                let node = node.clone();
                async move {
                    response.headers_mut().insert("x-hailstone-node", node);
                    response
                }
            },
        )),
        None => router,
    }
}

/// A server function (Leptos decodes, calls and encodes), timed.
async fn server_fn(
    State(runtime): State<Arc<Hailstone>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let response = leptos_axum::handle_server_fns(request)
        .await
        .into_response();
    runtime
        .metrics
        .server_fn_seconds
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Liveness: answers as long as the server accepts connections.
async fn healthz() -> &'static str {
    "ok"
}

/// Live counts in Prometheus text format, for whoever has the token.
async fn metrics(
    State(runtime): State<Arc<Hailstone>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    if runtime.http.metrics_token.is_none() {
        return assets::not_found().into_response();
    }
    if !runtime.http.may_read_metrics(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
            "/metrics needs the token set in http.metrics-token.",
        )
            .into_response();
    }
    runtime.metrics.sessions.set(runtime.sessions.len() as i64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        runtime.metrics.encode(),
    )
        .into_response()
}

/// The longest a stopping node spends handing its runs over; past it, the
/// ones left are taken over when their leases lapse.
const HANDOVER_WITHIN: Duration = Duration::from_secs(5);

/// Where a server keeps its sessions.
pub enum Mode {
    /// One process, sessions saved in this store.
    Local(Arc<dyn Store<SavedJob>>),
    /// A node of a cluster, with the pushes of its bells' connection.
    Cluster(Arc<Cluster>, cluster::Pushes),
}

/// Serves on `listener` until `shutdown` completes; then ends every event
/// stream and task, lets requests in flight finish, and returns. Sessions
/// stored in `store` come back first, running ones running.
pub async fn run(
    listener: TcpListener,
    config: Config,
    store: Arc<dyn Store<SavedJob>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_in(listener, config, Mode::Local(store), shutdown).await
}

/// [`run`], in either mode.
pub async fn run_in(
    listener: TcpListener,
    config: Config,
    mode: Mode,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (backend, pushes) = match mode {
        Mode::Local(store) => (Backend::from(store), None),
        Mode::Cluster(cluster, pushes) => (Backend::Cluster(cluster), Some(pushes)),
    };
    let runtime =
        Hailstone::with_tasks_on_own_threads(&config, config.session_settings(), backend)?;
    let cluster_loops = match (runtime.cluster(), pushes) {
        (Some(cluster), Some(pushes)) => vec![
            tokio::spawn(runtime.clone().listen_for_bells(pushes)),
            runtime
                .tasks
                .handle()
                .spawn(runtime.clone().take_over_lapsed_runs(cluster.clone())),
            runtime.tasks.handle().spawn({
                let runtime = runtime.clone();
                let scan = cluster.scan_period();
                async move {
                    let workers = runtime.tasks.workers().clone();
                    let stop = runtime.draining.clone();
                    workers
                        .serve_chunks::<Job>(runtime.metrics.clone(), stop, scan)
                        .await;
                }
            }),
        ],
        _ => Vec::new(),
    };
    // Listen first: stored sessions are rebuilt when asked for, and the
    // running ones are resumed in the background, on the tasks' threads.
    // New sessions wait for the index (they count against the cap).
    runtime.sessions.expect_index();
    let restoring = runtime.tasks.handle().spawn({
        let runtime = runtime.clone();
        async move {
            let started = std::time::Instant::now();
            match runtime.restore().await {
                Ok(0) => {}
                Ok(resumed) => tracing::info!(
                    resumed,
                    seconds = started.elapsed().as_secs_f64(),
                    "running sessions resumed"
                ),
                Err(error) => tracing::error!(%error, "could not read the stored sessions"),
            }
        }
    });
    let router = app(runtime.clone(), &config);
    let expiry = tokio::spawn(runtime.clone().expire_idle_sessions(config.idle_timeout()));
    let lapsing = tokio::spawn(runtime.clone().lapse_unwatched_runs());
    match runtime.cluster() {
        Some(cluster) => {
            tracing::info!(addr = %listener.local_addr()?, node = cluster.node(), "listening, a node of a cluster")
        }
        None => tracing::info!(addr = %listener.local_addr()?, "listening"),
    }
    // Told to stop: no new work, the runs handed over (a cluster), then
    // the streams end (their pages resume elsewhere) and the rest drains.
    let stopping = runtime.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopping.drain(HANDOVER_WITHIN).await;
        stopping.shutdown.cancel();
    });
    serve::serve(
        listener,
        router,
        config.connection_limits(),
        runtime.draining.clone(),
        runtime.shutdown.clone(),
        runtime.metrics.clone(),
    )
    .await;
    restoring.abort();
    runtime.stop().await;
    for cluster_loop in cluster_loops {
        let _ = cluster_loop.await;
    }
    let _ = expiry.await;
    let _ = lapsing.await;
    tracing::info!("stopped");
    Ok(())
}
