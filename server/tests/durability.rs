//! A restart loses nothing: the real server binary is killed with SIGKILL
//! mid-run and started again on the same store.

mod support;

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use shared::wire::{Command as UserCommand, Cursor, EventId, Status, Update};
use support::{trajectory, Browser};

/// The server's process, killed when dropped: a failing assertion leaves no
/// server running behind the test.
struct Server(Child);

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

fn start(addr: SocketAddr, store: &Path) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_server"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .env("LEPTOS_SITE_ADDR", addr.to_string())
        .env("HAILSTONE_STORE_PATH", store)
        .env("HAILSTONE_STEP_INTERVAL_MS", "50")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Server(child)
}

async fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if reqwest::get(format!("http://{addr}/healthz")).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("server not ready");
}

/// Records values by step index; a value seen twice must agree.
fn record(seen: &mut BTreeMap<u64, String>, first_step: u64, values: &[String]) {
    for (offset, value) in values.iter().enumerate() {
        let step = first_step + offset as u64;
        if let Some(old) = seen.insert(step, value.clone()) {
            assert_eq!(&old, value, "step {step} changed after the restart");
        }
    }
}

#[tokio::test]
async fn a_killed_server_comes_back_with_every_session_and_its_task() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("hailstone.db");
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut server = start(addr, &store);
    wait_ready(addr).await;

    let base = support::TestServer::url_for(addr);
    let mut browser = Browser::at(&base);
    browser.visit().await;
    let mut idle = Browser::at(&base);
    idle.visit().await;
    idle.command(UserCommand::SetInterval { ms: 250 }).await;

    let mut events = browser.events(None).await;
    browser
        .command(UserCommand::SetNumber { text: "27".into() })
        .await;
    let mut seen = BTreeMap::new();
    let mut last_version = EventId {
        incarnation: 0,
        cursor: Cursor {
            version: 0,
            steps: 0,
        },
    };
    while seen.len() < 40 {
        let (id, update) = events.next().await.unwrap();
        if let Update::Delta(delta) = update {
            record(
                &mut seen,
                delta.steps + 1 - delta.appended.len() as u64,
                &delta.appended,
            );
        }
        last_version = id;
    }

    server.kill().unwrap(); // SIGKILL: no shutdown, no last write
    server.wait().unwrap();
    let mut server = start(addr, &store);
    wait_ready(addr).await;

    // The open page's stream resumes by itself. Its Last-Event-ID names a
    // version of the old process, below every version of the new one, so it
    // is given the whole run again (a snapshot, or a delta that restarts the
    // list), never an older version.
    let mut events = browser.events(Some(last_version)).await;
    let (id, update) = events.next().await.unwrap();
    assert!(
        id.cursor.version > last_version.cursor.version,
        "versions never go backwards: {id} after {last_version}"
    );
    let (mut status, steps, first_step, values) = match update {
        Update::Snapshot(snapshot) => {
            let run = snapshot.run.unwrap();
            let first = run.first_recent_step();
            (snapshot.status, run.steps, first, Vec::from(run.recent))
        }
        Update::Delta(delta) => {
            assert!(delta.restart, "the list starts again");
            (delta.status, delta.steps, 0, delta.appended)
        }
    };
    assert_eq!(status, Status::Running, "the run resumed");
    assert!(
        steps + 1 + 32 >= seen.len() as u64,
        "at most a checkpoint's worth is redone"
    );
    record(&mut seen, first_step, &values);
    while status == Status::Running {
        let Some((_, Update::Delta(delta))) = events.next().await else {
            panic!("deltas follow")
        };
        assert!(!delta.restart);
        record(
            &mut seen,
            delta.steps + 1 - delta.appended.len() as u64,
            &delta.appended,
        );
        status = delta.status;
    }
    assert_eq!(status, Status::Finished);
    assert_eq!(
        seen.into_values().collect::<Vec<_>>(),
        trajectory(27),
        "no gap, no duplicate"
    );

    // The other session is back too, with its own settings.
    let (_, update) = idle.events(None).await.next().await.unwrap();
    let Update::Snapshot(other) = update else {
        panic!()
    };
    assert_eq!(other.interval_ms, 250);
    assert_eq!(other.run, None);

    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test]
async fn a_damaged_store_stops_the_start_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("hailstone.db");
    std::fs::write(&store, b"not a database at all".repeat(200)).unwrap();
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_server"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .env("LEPTOS_SITE_ADDR", addr.to_string())
        .env("HAILSTONE_STORE_PATH", &store)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let log = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(log.contains(&store.display().to_string()), "{log}");
    assert_eq!(
        std::fs::read(&store).unwrap(),
        b"not a database at all".repeat(200)
    );
}
