//! The real server binary, started as a process of the test's own on a
//! free address and a store of its own, killed when dropped.

use std::{
    net::{SocketAddr, TcpListener},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The server's process, killed when dropped: a failing assertion leaves no
/// server running behind the test.
pub struct Server(Child);

impl std::ops::Deref for Server {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The server binary on `addr` and `store`, with `env` on top.
pub fn start_with(addr: SocketAddr, store: &Path, env: &[(&str, &str)]) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_server"))
        .current_dir(Path::new(".."))
        .env("LEPTOS_SITE_ADDR", addr.to_string())
        .env("HAILSTONE_STORE_PATH", store)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Server(child)
}

/// Waits until the server at `addr` answers.
pub async fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if reqwest::get(format!("http://{addr}/healthz")).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("server not ready");
}

/// A directory for the store, the store's path in it, and a free address.
pub fn place() -> (tempfile::TempDir, std::path::PathBuf, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("hailstone.db");
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    (dir, store, addr)
}
