//! The `server` binary as an operator meets it: it serves, it stops cleanly on
//! SIGTERM and SIGINT, and it refuses clearly when its port is taken.

use std::{
    net::{SocketAddr, TcpListener},
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

fn server_command(addr: SocketAddr) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_server"));
    command
        .current_dir(Path::new(".."))
        .env("LEPTOS_SITE_ADDR", addr.to_string())
        .env("HAILSTONE_STORE_PATH", ":memory:")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Polls `/healthz` until it answers, or fails after 30 s.
async fn wait_ready(addr: SocketAddr, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = reqwest::Client::new();
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("http://{addr}/healthz")).send().await {
            assert!(response.status().is_success());
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "server exited early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server not ready after 30 s");
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn finish(child: Child) -> (Output, String) {
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output, log)
}

/// Held while a server runs: a free port is found by binding port 0 and
/// releasing it, so two tests at once could be handed the same one.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn stops_cleanly_on(signal_name: &str) {
    let _one = ONE_AT_A_TIME.lock().await;
    let addr = free_addr();
    let mut child = server_command(addr).spawn().unwrap();
    wait_ready(addr, &mut child).await;
    signal(&child, signal_name);
    let (output, log) = finish(child);
    assert!(output.status.success(), "exit {:?}\n{log}", output.status);
    assert!(log.contains(&format!("{signal_name} received")), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[tokio::test]
async fn stops_cleanly_on_sigterm() {
    stops_cleanly_on("SIGTERM").await;
}

#[tokio::test]
async fn stops_cleanly_on_sigint() {
    stops_cleanly_on("SIGINT").await;
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (output, log) = finish(server_command(addr).spawn().unwrap());
    assert!(!output.status.success());
    assert!(log.contains(&format!("cannot listen on {addr}")), "{log}");
    assert!(log.contains("LEPTOS_SITE_ADDR"), "{log}");
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let (output, log) = finish(
        server_command(free_addr())
            .env("HAILSTONE_CONFIG", "does-not-exist.toml")
            .spawn()
            .unwrap(),
    );
    assert!(!output.status.success());
    assert!(
        log.contains("cannot read configuration file does-not-exist.toml"),
        "{log}"
    );
}
