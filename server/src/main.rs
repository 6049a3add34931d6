//! The `server` binary: configuration, socket, signals. Everything else is in
//! the library (`server::run`).

use std::process::ExitCode;

use server::{cluster::Cluster, Config, Mode};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let mut config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
    // Each connection is a file descriptor: stay clear of the limit, so
    // `accept` never fails for everyone (the store and the runtime need a
    // few too).
    let files = raise_open_file_limit();
    let room = usize::try_from(files.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX);
    if config.limits.max_connections > room {
        tracing::warn!(
            configured = config.limits.max_connections,
            open_file_limit = files,
            "limits.max-connections lowered to what the open-file limit allows"
        );
        config.limits.max_connections = room.max(1);
    }
    let mode = if !config.cluster.enabled() {
        match server::store::open(&config.store.path, config.tick()) {
            Ok(store) => Mode::Local(store),
            Err(error) => {
                tracing::error!("{error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        let node = match config.cluster.node_id.as_str() {
            "" => made_up_node_id(),
            node => node.to_owned(),
        };
        let connected = Cluster::connect(node, &config.cluster, config.idle_timeout()).await;
        match connected {
            Ok((cluster, pushes)) => Mode::Cluster(cluster, pushes),
            Err(error) => {
                tracing::error!(
                    "{error}; is Redis running at cluster.redis-url (or are the sentinels of \
                     cluster.sentinels)?"
                );
                return ExitCode::FAILURE;
            }
        }
    };
    let addr = config.site.addr;
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(
                "cannot listen on {addr}: {error}; is another server running there? \
                 Set LEPTOS_SITE_ADDR to choose another address"
            );
            return ExitCode::FAILURE;
        }
    };
    match server::run_in(listener, config, mode, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("server failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A node's name when none is configured: the host's name and a random
/// suffix, so two nodes on one host differ.
fn made_up_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let host = if host.is_empty() { "node" } else { &host };
    format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// Descriptors kept for everything but client connections.
const RESERVED_FILES: u64 = 128;

/// Raises this process's open-file limit to the most it may have; returns
/// the limit in force.
fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail on Unix");
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received, shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
    }
}
