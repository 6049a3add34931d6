//! The runtime over real HTTP: sessions, commands, the event stream.

mod support;

use serde_json::json;
use shared::wire::{Command, Cursor, EventId, Snapshot, Status, Update};
use support::{trajectory, Browser, Events, TestServer};

/// `server`, and one browser that has loaded its page (and has a session).
async fn browsing(server: TestServer) -> (TestServer, Browser) {
    let mut browser = Browser::new(&server);
    browser.visit().await;
    browser.attach().await;
    (server, browser)
}

fn set_number(text: &str) -> Command {
    Command::SetNumber { text: text.into() }
}

/// Reads `events` until the run has finished, folding every update into a
/// client-side snapshot; returns the values in the order they arrived.
async fn values_until_finished(
    events: &mut Events,
    mut client: Option<Snapshot>,
) -> (Vec<String>, Snapshot) {
    let mut values = Vec::new();
    let mut last_id = 0;
    while let Some((cursor, update)) = events.next().await {
        let id = cursor.cursor.version;
        assert!(
            id > last_id || client.is_none(),
            "ids grow: {id} after {last_id}"
        );
        last_id = id;
        match update {
            Update::Snapshot(snapshot) => {
                assert_eq!(snapshot.version, id);
                values = snapshot
                    .run
                    .as_ref()
                    .map_or(Vec::new(), |run| run.recent.iter().cloned().collect());
                client = Some(snapshot);
            }
            Update::Delta(delta) => {
                assert_eq!(delta.version, id);
                if delta.restart {
                    values.clear();
                }
                values.extend(delta.change.appended.iter().cloned());
                client
                    .as_mut()
                    .expect("a snapshot first")
                    .apply(&delta, usize::MAX)
                    .unwrap();
            }
        }
        let client = client.as_ref().unwrap();
        if client.status == Status::Finished {
            return (values, client.clone());
        }
    }
    panic!("stream ended before the run finished");
}

#[tokio::test]
async fn twenty_seven_reaches_one_in_order_for_two_subscribers() {
    let (server, browser) = browsing(TestServer::with_interval(1).await).await;
    let mut first = browser.events(None).await;
    let mut second = browser.events(None).await;
    // Both streams open with a snapshot of the idle session.
    let mut idle = Vec::new();
    for events in [&mut first, &mut second] {
        let (id, update) = events.next().await.unwrap();
        assert_eq!(id.cursor.version, 0);
        let Update::Snapshot(snapshot @ Snapshot { run: None, .. }) = update else {
            panic!("an idle snapshot first")
        };
        idle.push(snapshot);
    }
    browser.command(set_number("27")).await;
    let expected = trajectory(27);
    assert_eq!(expected.len(), 112);
    for (events, idle) in [&mut first, &mut second].into_iter().zip(idle) {
        let (values, snapshot) = values_until_finished(events, Some(idle)).await;
        assert_eq!(values, expected);
        let run = snapshot.run.unwrap();
        assert_eq!((run.steps, run.peak.as_str()), (111, "9232"));
        // The reconnection delay comes once, with the first event: a
        // browser keeps it; every event after it is the smaller for it.
        let (first, rest) = events.retries.split_first().unwrap();
        assert_eq!(*first, Some(std::time::Duration::from_secs(1)));
        assert!(!rest.is_empty() && rest.iter().all(Option::is_none));
    }
    server.stop().await;
}

#[tokio::test]
async fn a_reconnect_gets_exactly_the_missed_deltas() {
    let (server, browser) = browsing(TestServer::with_interval(20).await).await;
    browser.command(set_number("27")).await;
    let mut events = browser.events(None).await;
    let mut values = Vec::new();
    let mut last_id = None;
    // Read a few updates, then drop the connection.
    for _ in 0..4 {
        let (id, update) = events.next().await.unwrap();
        match update {
            Update::Snapshot(snapshot) => values.extend(snapshot.run.unwrap().recent),
            Update::Delta(delta) => values.extend(delta.change.appended),
        }
        last_id = Some(id);
    }
    let last_id = last_id.unwrap();
    drop(events);
    // Let the task run on without a subscriber.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut events = browser.events(Some(last_id)).await;
    let (id, update) = events.next().await.unwrap();
    let Update::Delta(delta) = update else {
        panic!("a reconnect within the window gets deltas, not a snapshot");
    };
    assert_eq!(
        delta.base, last_id.cursor.version,
        "exactly from where it left"
    );
    assert!(
        delta.change.appended.len() > 1,
        "the missed values, merged into one event"
    );
    assert_eq!(id.cursor.version, delta.version);
    values.extend(delta.change.appended);
    let expected = trajectory(27);
    assert_eq!(values[..], expected[..values.len()], "no gap, no duplicate");
    server.stop().await;
}

#[tokio::test]
async fn a_reconnect_past_the_log_gets_a_snapshot() {
    let mut config = support::config();
    config.collatz.step_interval_ms = 1;
    config.sessions.window = 4;
    let (server, browser) = browsing(TestServer::start(config).await).await;
    let (first, _) = browser.events(None).await.next().await.unwrap();
    browser.command(set_number("27")).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Version 1 began the run: 111 values later, a window of 4 cannot
    // bring it up to date.
    let mut events = browser
        .events(Some(EventId {
            incarnation: first.incarnation,
            cursor: Cursor {
                version: 1,
                steps: 0,
            },
        }))
        .await;
    let (id, update) = events.next().await.unwrap();
    let Update::Snapshot(snapshot) = update else {
        panic!("the window no longer holds what it missed: a snapshot is due");
    };
    assert_eq!(id.cursor.version, snapshot.version);
    assert!(snapshot.version > 5);
    server.stop().await;
}

#[tokio::test]
async fn sessions_are_isolated_and_forged_ids_get_a_fresh_session() {
    let server = TestServer::with_interval(1000).await;
    let mut alice = Browser::new(&server);
    alice.visit().await;
    alice.command(set_number("27")).await;

    let mut bob = Browser::new(&server);
    bob.visit().await;
    assert_eq!(bob.cookie(), None, "looking starts no session");
    let (id, update) = bob.events(None).await.next().await.unwrap();
    assert!(
        matches!(update, Update::Snapshot(Snapshot { run: None, .. })),
        "Bob sees an idle page"
    );
    assert_eq!(id.incarnation, 0, "not attached to any session");
    bob.command(set_number("6")).await;
    assert!(bob.cookie().is_some());
    assert_ne!(alice.cookie(), bob.cookie());

    let (_, update) = alice.events(None).await.next().await.unwrap();
    let Update::Snapshot(snapshot) = update else {
        panic!()
    };
    assert_eq!(
        snapshot.run.unwrap().start,
        "27",
        "Bob's command did not touch Alice's run"
    );

    // A forged id names no session: looking makes none, the first command
    // makes a new one, with a new cookie.
    let forged = format!("hailstone_session={}", "0".repeat(32));
    let mallory = Browser::new(&server);
    mallory.set_cookie(forged.clone());
    let response = mallory.get("/").send().await.unwrap();
    assert!(response.headers().get("set-cookie").is_none());
    let response = mallory
        .post("/api/command")
        .header("content-type", "application/json")
        .body(json!({ "command": set_number("5") }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        set_cookie.contains("HttpOnly")
            && set_cookie.contains("SameSite=Lax")
            && set_cookie.contains("Path=/")
    );
    mallory.keep_cookie(&response);
    assert_ne!(mallory.cookie(), Some(forged));
    let (_, update) = mallory.events(None).await.next().await.unwrap();
    let Update::Snapshot(snapshot) = update else {
        panic!()
    };
    assert_eq!(snapshot.run.unwrap().start, "5");
    server.stop().await;
}

#[tokio::test]
async fn looking_costs_no_session() {
    let server = TestServer::with_interval(1000).await;
    let client = reqwest::Client::new();
    for _ in 0..20 {
        let page = client.get(server.url("/")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.headers().get("set-cookie").is_none());
        let data = client
            .post(server.url("/api/page"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(data.status(), 200);
        let stream = client.get(server.url("/events")).send().await.unwrap();
        assert_eq!(stream.status(), 200);
        drop(stream);
        // Refused requests make none either.
        let wrong_method = client.get(server.url("/api/command")).send().await.unwrap();
        assert_eq!(wrong_method.status(), 405);
        let bad = client
            .post(server.url("/api/command"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);
    }
    let metrics = support::metrics(&server).await;
    assert!(
        metrics.lines().any(|l| l == "hailstone_sessions 0"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn each_address_starts_sessions_at_a_bounded_rate() {
    let mut config = support::config();
    config.sessions.new_per_minute = 3;
    config.http.client_address_header = "x-forwarded-for".into();
    let server = TestServer::start(config).await;
    let first_command = |address: &'static str| {
        reqwest::Client::new()
            .post(server.url("/api/command"))
            .header("x-forwarded-for", format!("198.51.100.7, {address}"))
            .header("content-type", "application/json")
            .body(json!({ "command": set_number("27") }).to_string())
            .send()
    };
    for _ in 0..3 {
        assert_eq!(first_command("203.0.113.1").await.unwrap().status(), 200);
    }
    let refused = first_command("203.0.113.1").await.unwrap();
    assert_eq!(refused.status(), 429);
    let error: app::api::AppError = serde_json::from_str(&refused.text().await.unwrap()).unwrap();
    assert_eq!(error, app::api::AppError::TooManySessions);
    assert!(error.to_string().contains("Too many new sessions"));
    // The proxy's last entry is the client: another address is not limited.
    assert_eq!(first_command("203.0.113.2").await.unwrap().status(), 200);
    // An IPv6 client counts by its /64, which it may change addresses in
    // at will; another /64 is another client.
    for address in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"] {
        assert_eq!(first_command(address).await.unwrap().status(), 200);
    }
    assert_eq!(
        first_command("2001:db8:1:2::4").await.unwrap().status(),
        429
    );
    assert_eq!(
        first_command("2001:db8:1:3::1").await.unwrap().status(),
        200
    );
    // An IPv4 address written as IPv6 is that IPv4 address.
    assert_eq!(
        first_command("::ffff:203.0.113.1").await.unwrap().status(),
        429
    );
    // A session that exists is not limited.
    let browser = Browser::new(&server);
    for _ in 0..5 {
        let (status, _) = browser.send(Command::SetInterval { ms: 100 }).await;
        assert_eq!(status, 200);
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_typed_error_and_changes_nothing() {
    let (server, browser) = browsing(TestServer::with_interval(1000).await).await;
    let version = browser.command(set_number("27")).await;
    for text in ["", "abc", "-7", "1.5", "1e3", "1_000", &"9".repeat(1001)] {
        let (status, body) = browser.send(set_number(text)).await;
        assert_eq!(status, 422, "{text:?}: {body}");
        let error: app::api::AppError = serde_json::from_str(&body).unwrap();
        assert!(matches!(error, app::api::AppError::Command(_)), "{body}");
    }
    let (_, update) = browser.events(None).await.next().await.unwrap();
    let Update::Snapshot(snapshot) = update else {
        panic!()
    };
    assert_eq!(snapshot.version, version, "nothing changed");
    assert_eq!(snapshot.run.unwrap().start, "27");
    server.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_4xx_with_a_message() {
    let mut config = support::config();
    config.limits.max_body_bytes = 4096;
    let (server, browser) = browsing(TestServer::start(config).await).await;

    let cases: [(&str, &str, String, u16); 5] = [
        (
            "malformed JSON",
            "application/json",
            "{not json".into(),
            400,
        ),
        (
            "unknown command",
            "application/json",
            r#"{"command":{"type":"explode"}}"#.into(),
            400,
        ),
        (
            "wrong content type",
            "text/plain",
            r#"{"command":{"type":"set_running","running":true}}"#.into(),
            415,
        ),
        (
            "a content type that only starts like JSON",
            "application/jsonfoo",
            r#"{"command":{"type":"set_running","running":true}}"#.into(),
            415,
        ),
        (
            "oversize body",
            "application/json",
            format!(
                r#"{{"command":{{"type":"set_number","text":"{}"}}}}"#,
                "9".repeat(5000)
            ),
            413,
        ),
    ];
    for (name, content_type, body, status) in cases {
        let response = browser
            .post("/api/command")
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{name}");
        assert!(
            !response.text().await.unwrap().is_empty(),
            "{name}: a message"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_cross_origin_post_is_refused() {
    let (server, browser) = browsing(TestServer::with_interval(1000).await).await;
    let response = browser
        .post("/api/command")
        .header("content-type", "application/json")
        .header("origin", "http://evil.example")
        .body(r#"{"command":{"type":"set_number","text":"27"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let (_, update) = browser.events(None).await.next().await.unwrap();
    assert!(
        matches!(update, Update::Snapshot(Snapshot { run: None, .. })),
        "nothing changed"
    );
    // The same request from the page's own origin is accepted.
    let response = browser
        .post("/api/command")
        .header("content-type", "application/json")
        .header("origin", server.url(""))
        .body(r#"{"command":{"type":"set_number","text":"27"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn at_the_cap_the_longest_untouched_give_way_and_watched_ones_stay() {
    let mut config = support::config();
    config.sessions.max = 2;
    let server = TestServer::start(config).await;
    let alice = Browser::new(&server);
    alice.command(Command::SetInterval { ms: 250 }).await;
    let bob = Browser::new(&server);
    bob.command(Command::SetInterval { ms: 250 }).await;
    // Bob's page is open: watched sessions never give way.
    let mut bob_events = bob.events(None).await;
    bob_events.next().await.unwrap();
    // Carol's first command takes Alice's place (no page, nothing running).
    let carol = Browser::new(&server);
    carol.command(set_number("27")).await; // running, but watched below
    let mut carol_events = carol.events(None).await;
    carol_events.next().await.unwrap();
    let metrics = support::metrics(&server).await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "hailstone_sessions_evicted_total 1"),
        "{metrics}"
    );
    // Alice's session is gone: her next command starts a new one, for
    // which nobody may give way now.
    let (status, body) = alice.send(Command::SetInterval { ms: 250 }).await;
    assert_eq!(status, 503, "{body}");
    let error: app::api::AppError = serde_json::from_str(&body).unwrap();
    assert_eq!(error, app::api::AppError::AtCapacity);
    assert!(error.to_string().contains("capacity"));
    // The sessions that exist still work.
    bob.command(set_number("5")).await;
    drop(bob_events);
    drop(carol_events);
    server.stop().await;
}

#[tokio::test]
async fn health_and_metrics() {
    let (server, browser) = browsing(TestServer::with_interval(1).await).await;
    let mut events = browser.events(None).await;
    browser.command(set_number("27")).await;
    values_until_finished(&mut events, None).await;

    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    // /metrics is for whoever has the token, not for the public.
    let client = reqwest::Client::new();
    for token in [None, Some("wrong"), Some("test-token-")] {
        let mut request = client.get(server.url("/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        assert_eq!(request.send().await.unwrap().status(), 401, "{token:?}");
    }
    let metrics = support::metrics(&server).await;
    for line in [
        "hailstone_sessions 1",
        "hailstone_subscribers 1",
        "hailstone_steps_total 111",
        "hailstone_values_streamed_total 112",
        // The page's first command (which started the session), then 27.
        "hailstone_commands_total 2",
        "hailstone_command_seconds_count 2",
        "hailstone_server_fn_seconds_count 2",
        // Applying a command takes well under a second (the last bucket).
        "hailstone_command_seconds_bucket{le=\"1.6384\"} 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    // /healthz and /metrics make no session.
    assert!(!metrics.contains("hailstone_sessions 2"));
    drop(events);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let (server, browser) = browsing(TestServer::with_interval(1000).await).await;
    browser.command(set_number("27")).await;
    let mut events = browser.events(None).await;
    events.next().await.unwrap();
    server.stop().await; // waits for run() to return, so the stream must end
    while events.next().await.is_some() {}
}

#[tokio::test]
async fn a_stream_ended_by_the_server_resumes_without_loss() {
    let mut config = support::config();
    config.collatz.step_interval_ms = 20; // 111 steps: over two seconds
    config.limits.stream_lifetime_secs = 1;
    let (server, browser) = browsing(TestServer::start(config).await).await;
    let mut events = browser.events(None).await;
    let (mut last_id, first) = events.next().await.unwrap();
    let Update::Snapshot(mut client) = first else {
        panic!()
    };
    browser.command(set_number("27")).await;
    let mut values = Vec::new();
    let mut reconnects = 0;
    while client.status != Status::Finished || values.len() < 112 {
        match events.next().await {
            Some((id, Update::Delta(delta))) => {
                if delta.restart {
                    values.clear();
                }
                values.extend(delta.change.appended.iter().cloned());
                client.apply(&delta, usize::MAX).unwrap();
                last_id = id;
            }
            Some((_, Update::Snapshot(_))) => panic!("a resume within the window gets deltas"),
            None => {
                // The server ended the stream: resume as a browser does.
                reconnects += 1;
                events = browser.events(Some(last_id)).await;
            }
        }
    }
    assert_eq!(values, trajectory(27));
    assert!(reconnects >= 1, "the server ended the stream at least once");
    server.stop().await;
}

#[tokio::test]
async fn the_first_html_already_shows_the_run() {
    let (server, mut browser) = browsing(TestServer::with_interval(1).await).await;
    let mut events = browser.events(None).await;
    browser.command(set_number("27")).await;
    values_until_finished(&mut events, None).await;
    let html = browser.visit().await;
    // The newest values, numbered by step (hydration markers may follow the
    // text), the stats and the status line.
    let row = |step: u64| {
        let at = html
            .find(&format!(r#"<li value="{step}""#))
            .unwrap_or_else(|| panic!("no row {step}: {html}"));
        let text = &html[at..];
        let start = text.find('>').unwrap() + 1;
        text[start..start + text[start..].find('<').unwrap()].to_owned()
    };
    assert_eq!(row(111), "1");
    assert_eq!(row(110), "2");
    assert_eq!(row(0), "27");
    assert!(html.contains("9,232"));
    assert!(html.contains("Reached 1 in 111 steps."));
    assert!(html.contains(r#"aria-checked="false""#));
    server.stop().await;
}

#[tokio::test]
async fn browsers_behind_an_http2_proxy_share_a_connection_and_nothing_else() {
    let server = TestServer::with_interval(1).await;
    // One HTTP/2 connection (cleartext, prior knowledge) for both.
    let proxy = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut alice = Browser::over(&server.url(""), proxy.clone());
    let mut bob = Browser::over(&server.url(""), proxy);
    alice.visit().await;
    bob.visit().await;
    alice.attach().await;
    bob.attach().await;
    assert_ne!(alice.cookie(), bob.cookie(), "a session each");
    let health = alice.get("/healthz").send().await.unwrap();
    assert_eq!(health.version(), reqwest::Version::HTTP_2);
    // HTTP/2 has no Host header: the page's own origin is matched against
    // the request's authority, and another site is still refused.
    for (origin, status) in [(server.url(""), 200), ("http://evil.example".into(), 403)] {
        let response = alice
            .post("/api/command")
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(json!({ "command": Command::SetInterval { ms: 1 } }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status);
    }

    let mut events = alice.events(None).await;
    alice.command(set_number("27")).await;
    let (values, _) = values_until_finished(&mut events, None).await;
    assert_eq!(values, trajectory(27));
    let (_, update) = bob.events(None).await.next().await.unwrap();
    assert!(
        matches!(update, Update::Snapshot(Snapshot { run: None, .. })),
        "Bob's session is untouched"
    );
    server.stop().await;
}

#[tokio::test]
async fn metrics_are_not_served_without_a_token() {
    let mut config = support::config();
    config.http.metrics_token = String::new();
    let server = TestServer::start(config).await;
    let response = reqwest::get(server.url("/metrics")).await.unwrap();
    assert_eq!(response.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn behind_a_tls_proxy_the_public_origin_is_the_site() {
    let mut config = support::config();
    config.http.public_origin = "https://hailstone.example".into();
    let server = TestServer::start(config).await;
    // The proxy forwards `Host: hailstone.example:443`; the browser's Origin
    // is the public one.
    let command = |origin: &'static str| {
        reqwest::Client::new()
            .post(server.url("/api/command"))
            .header("host", "hailstone.example:443")
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(json!({ "command": set_number("27") }).to_string())
            .send()
    };
    let response = command("https://hailstone.example").await.unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("__Host-hailstone_session="), "{cookie}");
    for attribute in ["Secure", "HttpOnly", "Path=/", "SameSite=Lax"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    // Anything else is another site, the server's own address included.
    for origin in [
        "http://hailstone.example",
        "https://evil.example",
        "http://127.0.0.1",
    ] {
        assert_eq!(command(origin).await.unwrap().status(), 403, "{origin}");
    }
    server.stop().await;
}

#[tokio::test]
async fn of_two_session_cookies_the_valid_one_wins() {
    let (server, browser) = browsing(TestServer::with_interval(1000).await).await;
    browser.command(set_number("27")).await;
    let valid = browser.cookie().unwrap();
    // A stale cookie of the same name first, as a browser sends one set for
    // a longer path before the one for `/`.
    browser.set_cookie(format!("hailstone_session={}; {valid}", "0".repeat(32)));
    let (_, update) = browser.events(None).await.next().await.unwrap();
    let Update::Snapshot(snapshot) = update else {
        panic!()
    };
    assert_eq!(
        snapshot.run.unwrap().start,
        "27",
        "the live session, not a new one"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_id_from_another_incarnation_gets_a_snapshot() {
    let (server, browser) = browsing(TestServer::with_interval(1000).await).await;
    browser.command(set_number("27")).await;
    let (id, _) = browser.events(None).await.next().await.unwrap();
    // The same version and steps under another incarnation: a client of an
    // earlier life of the session, whose versions may name other states.
    let other = EventId {
        incarnation: id.incarnation ^ 1,
        cursor: Cursor {
            version: id.cursor.version - 1,
            steps: 0,
        },
    };
    let (again, update) = browser.events(Some(other)).await.next().await.unwrap();
    assert!(matches!(update, Update::Snapshot(_)), "{update:?}");
    assert_eq!(again, id);
    server.stop().await;
}

/// Reads from `stream` until the server closes it; fails after 30 s.
async fn closed_by_server(mut stream: tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("closed by the server")
    .ok();
    answer
}

#[tokio::test]
async fn an_open_stream_is_not_idle() {
    let mut config = support::config();
    config.limits.connection_idle_timeout_secs = 1;
    config.collatz.step_interval_ms = 1000;
    let (server, browser) = browsing(TestServer::start(config).await).await;
    let mut events = browser.events(None).await;
    events.next().await.unwrap();
    browser.command(set_number("27")).await;
    // Three steps, a second apart: the stream outlives the idle timeout.
    let mut deltas = 0;
    while deltas < 3 {
        if let Some((_, Update::Delta(delta))) = events.next().await {
            deltas += delta.change.appended.len();
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_slow_request_body_times_out() {
    use tokio::{io::AsyncWriteExt, net::TcpStream};
    let mut config = support::config();
    config.limits.request_timeout_secs = 1;
    let server = TestServer::start(config).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(
        b"POST /api/command HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"command\":",
    )
    .await
    .unwrap();
    let answer = String::from_utf8_lossy(&closed_by_server(slow).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn streams_are_bounded_per_session_and_per_address() {
    let mut config = support::config();
    config.limits.streams_per_session = 2;
    config.limits.streams_per_address = 3;
    let (server, browser) = browsing(TestServer::start(config).await).await;
    let first = browser.events(None).await;
    let second = browser.events(None).await;
    let third = browser.get("/events").send().await.unwrap();
    assert_eq!(third.status(), 429, "a third page of one session");
    // Another visitor from the same address: one more, then none.
    let other = Browser::new(&server);
    let fourth = other.get("/events").send().await.unwrap();
    assert_eq!(fourth.status(), 200);
    let fifth = other.get("/events").send().await.unwrap();
    assert_eq!(fifth.status(), 429, "a fourth stream of one address");
    // A closed page frees its place.
    drop(first);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let again = other.get("/events").send().await.unwrap();
        if again.status() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the place is freed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop((second, fourth));
    server.stop().await;
}

#[tokio::test]
async fn an_unsaved_command_is_answered_503_and_changes_nothing() {
    let server = TestServer::start_with(support::config(), support::FaultyStore::full()).await;
    let browser = Browser::new(&server);
    let (status, body) = browser.send(set_number("27")).await;
    assert_eq!(status, 503, "{body}");
    let error: app::api::AppError = serde_json::from_str(&body).unwrap();
    assert_eq!(
        error,
        app::api::AppError::Command(shared::wire::CommandError::Unsaved)
    );
    assert!(error.to_string().contains("could not be saved"));
    let (_, update) = browser.events(None).await.next().await.unwrap();
    assert!(
        matches!(update, Update::Snapshot(Snapshot { run: None, .. })),
        "nothing changed"
    );
    server.stop().await;
}
