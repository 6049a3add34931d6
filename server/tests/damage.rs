//! Damage is found, not served: a stored session that cannot be rebuilt
//! exactly is reported (the log names the file and the session) and its
//! visitor told so, lastingly, never given an empty or another run; and
//! once the store's file is found damaged, nothing more is written to it.
//! The real server binary, on stores damaged by hand.

mod support;

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use server::{
    session::RunId,
    store::{SqliteStore, Store},
};
use shared::{
    wire::{Command as UserCommand, Status},
    Collatz, Saved, Settings,
};
use support::Browser;

/// The server binary on `store`, its log in `log`; killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    async fn start(store: &Path, env: &[(&str, &str)]) -> Server {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let log = store.with_extension("log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_server"))
            .current_dir(Path::new(".."))
            .env("LEPTOS_SITE_ADDR", addr.to_string())
            .env("HAILSTONE_STORE_PATH", store)
            .env("HAILSTONE_METRICS_TOKEN", support::METRICS_TOKEN)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        let server = Server { child, addr, log };
        let health = format!("{}/healthz", server.url());
        support::cluster::until(Duration::from_secs(30), "the server answers", || {
            let health = health.clone();
            async move { reqwest::get(health).await.is_ok() }
        })
        .await;
        server
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn logged(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and waits for the process to end.
    fn stop(mut self) {
        // SAFETY: a plain system call on a child process of this test.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}: {}", self.logged());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A paused run from `start`, as a store keeps it.
fn paused_run(start: u64) -> Saved {
    let mut machine = Collatz::new(Settings::default());
    let set = |text: String| UserCommand::SetNumber { text };
    machine.apply(&set(start.to_string())).unwrap();
    machine
        .apply(&UserCommand::SetRunning { running: false })
        .unwrap();
    machine.saved()
}

/// Stores `sessions` in a new store at `path` and closes it (its log
/// copied into the file).
async fn store_sessions(path: &Path, sessions: &[(RunId, Saved)]) {
    let store = SqliteStore::open(path).unwrap();
    for (id, saved) in sessions {
        store.save(*id, saved.clone()).await.unwrap();
    }
}

/// A browser of the server at `url` with session `id`'s cookie.
fn browser_of(url: &str, id: RunId) -> Browser {
    let browser = Browser::at(url);
    browser.set_cookie(format!("{}={id}", server::http::SESSION_COOKIE));
    browser
}

/// `load_page` for `browser`: its status and body.
async fn page_of(browser: &Browser) -> (u16, String) {
    let response = browser
        .post("/api/page")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_session_that_cannot_be_rebuilt_is_told_so_lastingly_and_kept_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hailstone.db");
    let (good, damaged, other) = (RunId::random(), RunId::random(), RunId::random());
    // Sound bytes, but a start that is not a number.
    let mut broken = paused_run(27);
    broken.run.start = Some("abc".into());
    store_sessions(
        &path,
        &[
            (good, paused_run(27)),
            (damaged, broken.clone()),
            (other, paused_run(97)),
        ],
    )
    .await;
    let server = Server::start(&path, &[("HAILSTONE_SESSION_IDLE_TIMEOUT_SECS", "2")]).await;
    let visitor = browser_of(&server.url(), damaged);
    for _ in 0..2 {
        let (status, body) = page_of(&visitor).await;
        assert_eq!(status, 500, "{body}");
        let error: app::api::AppError = serde_json::from_str(&body).unwrap();
        assert_eq!(error, app::api::AppError::Damaged, "lasting, and said so");
    }
    let (status, body) = visitor
        .send(UserCommand::SetNumber { text: "5".into() })
        .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        visitor.cookie().unwrap(),
        format!("{}={damaged}", server::http::SESSION_COOKIE),
        "no new session in its place"
    );
    // The page says so too, and its stream is not an empty run.
    let html = visitor.get("/").send().await.unwrap().text().await.unwrap();
    assert!(html.contains("damaged"), "{html}");
    let events = visitor.get("/events").send().await.unwrap();
    assert_eq!(events.status(), 500);
    let logged = server.logged();
    assert!(logged.contains(&path.display().to_string()), "{logged}");
    assert!(logged.contains(&damaged.to_string()), "{logged}");
    // The others are served as they were.
    let healthy = browser_of(&server.url(), good);
    let (status, body) = page_of(&healthy).await;
    assert_eq!(status, 200, "{body}");
    let page: app::api::Page = serde_json::from_str(&body).unwrap();
    assert_eq!(page.snapshot.run.unwrap().start, "27");
    // Healthy idle sessions expire; the damaged one is kept for the
    // operator.
    let url = server.url();
    support::cluster::until(Duration::from_secs(30), "the healthy ones expire", || {
        let url = url.clone();
        async move {
            support::metric_at(&url, support::METRICS_TOKEN, "hailstone_sessions").await == 1.0
        }
    })
    .await;
    server.stop();
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.get(damaged).await.unwrap(), Some(broken), "untouched");
    assert_eq!(store.get(good).await.unwrap(), None, "expired");
    assert_eq!(store.get(other).await.unwrap(), None, "expired");
}

/// The sessions of a store of `count` paused runs (starts 2, 3, ...).
fn many(count: u64) -> Vec<(RunId, Saved)> {
    (0..count)
        .map(|i| (RunId::random(), paused_run(i + 2)))
        .collect()
}

/// The root page of the table or index `name` in the SQLite file at `path`.
fn root_page(path: &Path, name: &str) -> u64 {
    let connection = rusqlite::Connection::open(path).unwrap();
    connection
        .query_row(
            "SELECT rootpage FROM sqlite_schema WHERE name = ?1",
            [name],
            |row| row.get(0),
        )
        .unwrap()
}

const PAGE: usize = 4096;

/// Overwrites page `number` (from 1) of the file at `path` with garbage.
fn damage_page(path: &Path, number: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = (number as usize - 1) * PAGE;
    bytes[at..at + PAGE].fill(0xff);
    std::fs::write(path, bytes).unwrap();
}

/// A page in the middle of the table `sessions`, one level below its root
/// (an interior page: its cells begin with their child's page number).
fn middle_leaf(path: &Path) -> u64 {
    let root = root_page(path, "sessions");
    let bytes = std::fs::read(path).unwrap();
    let page = &bytes[(root as usize - 1) * PAGE..root as usize * PAGE];
    // The table is WITHOUT ROWID, an index b-tree: 0x02 interior.
    assert_eq!(page[0], 0x02, "the table's root is an interior page");
    let cells = u16::from_be_bytes([page[3], page[4]]) as usize;
    let pointer = 12 + 2 * (cells / 2);
    let cell = u16::from_be_bytes([page[pointer], page[pointer + 1]]) as usize;
    u64::from(u32::from_be_bytes(page[cell..cell + 4].try_into().unwrap()))
}

/// Asks for every session's page: each is its run, or the store's lasting
/// error. Returns how many got the error.
async fn ask_all(server: &Server, sessions: &[(RunId, Saved)]) -> usize {
    let mut refused = 0;
    for (id, saved) in sessions {
        let browser = browser_of(&server.url(), *id);
        let (status, body) = page_of(&browser).await;
        match status {
            200 => {
                let page: app::api::Page = serde_json::from_str(&body).unwrap();
                let run = page.snapshot.run.expect("never an empty page in its place");
                assert_eq!(Some(run.start), saved.run.start, "never another run");
                assert_eq!(page.snapshot.status, Status::Paused);
            }
            500 => {
                let error: app::api::AppError = serde_json::from_str(&body).unwrap();
                assert!(
                    matches!(
                        error,
                        app::api::AppError::Command(shared::wire::CommandError::StoreDamaged)
                            | app::api::AppError::Damaged
                    ),
                    "{error:?}"
                );
                // Lasting: asked again, the same.
                assert_eq!(page_of(&browser).await, (status, body));
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    refused
}

#[tokio::test]
async fn a_damaged_page_in_the_middle_of_the_table_is_reported_and_never_served_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hailstone.db");
    let sessions = many(400);
    store_sessions(&path, &sessions).await;
    damage_page(&path, middle_leaf(&path));
    let server = Server::start(&path, &[]).await;
    let refused = ask_all(&server, &sessions).await;
    assert!(refused > 0, "the damaged page was met");
    // Once found, no change is written: commands are refused, lastingly.
    let browser = browser_of(&server.url(), sessions[0].0);
    let (status, body) = browser.send(UserCommand::SetInterval { ms: 100 }).await;
    assert_eq!(status, 500, "{body}");
    let logged = server.logged();
    assert!(logged.contains(&path.display().to_string()), "{logged}");
    assert!(logged.contains("damaged"), "{logged}");
    server.stop();
}

#[tokio::test]
async fn once_the_file_is_found_damaged_nothing_writes_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hailstone.db");
    let sessions = many(400);
    store_sessions(&path, &sessions).await;
    // The index read at start meets the damage, before anything is written.
    damage_page(&path, root_page(&path, "sessions_index"));
    let before = std::fs::read(&path).unwrap();
    let server = Server::start(&path, &[]).await;
    let url = server.url();
    support::cluster::until(Duration::from_secs(30), "the damage is found", || async {
        server.logged().contains("the session store is damaged")
    })
    .await;
    // Every session would be rebuilt with a raised version, written first:
    // each is refused instead, lastingly, and so is every change.
    let refused = ask_all(&server, &sessions).await;
    assert_eq!(refused, sessions.len());
    let fresh = Browser::at(&url);
    let (status, body) = fresh
        .send(UserCommand::SetNumber { text: "27".into() })
        .await;
    assert_eq!(status, 500, "{body}");
    server.stop();
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the file is as it was"
    );
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    assert_eq!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()),
        0,
        "nothing in its log"
    );
}
