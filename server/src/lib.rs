//! Hailstone's server: the router, and [`run`], which serves it until told to
//! stop. `main.rs` only reads the configuration, binds the socket and waits
//! for a signal; tests drive [`run`] and [`app`] directly.

pub mod config;

use std::future::Future;

use app::{shell, App};
use axum::{extract::DefaultBodyLimit, routing::get, Router};
use leptos_axum::{generate_route_list, LeptosRoutes};
use tokio::net::TcpListener;

pub use config::Config;

/// The whole HTTP surface: the rendered page, the compiled site's files,
/// server functions and `/healthz`.
pub fn app(config: &Config) -> Router {
    let options = config.leptos_options();
    let routes = generate_route_list(App);
    Router::new()
        .route("/healthz", get(healthz))
        .leptos_routes(&options, routes, {
            let options = options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler(shell))
        .layer(DefaultBodyLimit::max(config.limits.max_body_bytes))
        .with_state(options)
}

/// Liveness: answers as long as the server accepts connections.
async fn healthz() -> &'static str {
    "ok"
}

/// Serves [`app`] on `listener` until `shutdown` completes, then lets the
/// requests in flight finish.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = app(&config);
    tracing::info!(addr = %listener.local_addr()?, "listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("stopped");
    Ok(())
}
