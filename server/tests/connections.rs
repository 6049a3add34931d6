//! What one client can hold open: connections per address, the header
//! timeout, and who gives way at the global cap. Clients come from other
//! loopback addresses (127.0.0.2, 127.0.0.3, ...), which Linux routes to
//! the server on 127.0.0.1.

mod support;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use support::TestServer;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

/// A connection to `server` from the loopback address `from`.
async fn connect_from(from: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(server).await.unwrap()
}

/// Sends `request` and reads until the response head is complete.
async fn head_of(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(read > 0, "closed before the head: {answer:?}");
        answer.push(byte[0]);
    }
    String::from_utf8(answer).unwrap()
}

/// A connection from `from` that holds an event stream open (a request in
/// flight, so it is busy).
async fn stream_from(from: &str, server: SocketAddr) -> TcpStream {
    let mut stream = connect_from(from, server).await;
    let head = head_of(&mut stream, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream
}

/// A connection from `from` kept alive after one request (idle).
async fn kept_alive_from(from: &str, server: SocketAddr) -> TcpStream {
    let mut stream = connect_from(from, server).await;
    let head = head_of(&mut stream, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = [0u8; 2];
    stream.read_exact(&mut body).await.unwrap();
    stream
}

/// Reads from `stream` until the server closes it; what it sent. Fails
/// after `within`.
async fn closed_within(mut stream: TcpStream, within: Duration) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut answer))
        .await
        .expect("closed by the server")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

/// `/healthz` over a new connection from `from`.
async fn health_from(from: &str, server: SocketAddr) -> String {
    let mut stream = connect_from(from, server).await;
    head_of(
        &mut stream,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
}

#[tokio::test]
async fn one_address_holds_its_cap_while_another_is_served_at_once() {
    let mut config = support::config();
    config.limits.connections_per_address = 4;
    config.limits.max_connections = 64;
    let server = TestServer::start(config).await;
    // Four streams: the address's cap, all of them busy.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(stream_from("127.0.0.2", server.addr).await);
    }
    let over = connect_from("127.0.0.2", server.addr).await;
    let answer = closed_within(over, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("Retry-After: 5"), "{answer}");
    assert!(answer.contains("from your address"), "{answer}");
    // Another address is served at once, while the first holds its cap.
    let started = Instant::now();
    let head = health_from("127.0.0.3", server.addr).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(started.elapsed() < Duration::from_secs(2), "served at once");
    // A place freed is the address's again.
    drop(held.pop());
    support::cluster::until(Duration::from_secs(10), "the place is freed", || async {
        health_from("127.0.0.2", server.addr)
            .await
            .starts_with("HTTP/1.1 200")
    })
    .await;
    drop(held);
    server.stop().await;
}

#[tokio::test]
async fn an_address_at_its_cap_makes_room_with_its_own_idle_connections() {
    let mut config = support::config();
    config.limits.connections_per_address = 3;
    let server = TestServer::start(config).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(kept_alive_from("127.0.0.2", server.addr).await);
    }
    // A fourth is served: the longest idle of its own gives way.
    let head = health_from("127.0.0.2", server.addr).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let oldest = idle.remove(0);
    closed_within(oldest, Duration::from_secs(10)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_new_connection_without_a_whole_request_head_is_closed_within_the_header_timeout() {
    let mut config = support::config();
    config.limits.header_read_timeout_secs = 1;
    config.limits.connection_idle_timeout_secs = 60;
    let server = TestServer::start(config).await;
    let silent = connect_from("127.0.0.2", server.addr).await;
    // Too little for the server to tell HTTP/1.1 from HTTP/2.
    let mut two_bytes = connect_from("127.0.0.2", server.addr).await;
    two_bytes.write_all(b"PR").await.unwrap();
    let mut half_line = connect_from("127.0.0.2", server.addr).await;
    half_line.write_all(b"GET /heal").await.unwrap();
    let mut half_head = connect_from("127.0.0.2", server.addr).await;
    half_head
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    for (name, stream) in [
        ("silent", silent),
        ("two bytes", two_bytes),
        ("half a line", half_line),
        ("half a head", half_head),
    ] {
        let answer = closed_within(stream, Duration::from_secs(30)).await;
        assert!(!answer.contains(" 200 "), "{name}: {answer}");
    }
    // Well before the idle timeout of 60 s.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn at_the_global_cap_idle_connections_give_way_and_only_busy_ones_make_it_full() {
    let mut config = support::config();
    config.limits.max_connections = 4;
    config.limits.connections_per_address = 4;
    let server = TestServer::start(config).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(kept_alive_from("127.0.0.2", server.addr).await);
    }
    // The server is full of idle connections: a new visitor is served, and
    // the longest idle gives way.
    let head = health_from("127.0.0.3", server.addr).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    closed_within(idle.remove(0), Duration::from_secs(10)).await;
    // Full of busy ones (event streams), a new visitor gets 503.
    drop(idle);
    let mut busy = Vec::new();
    for from in ["127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7"] {
        busy.push(stream_from(from, server.addr).await);
    }
    let over = connect_from("127.0.0.8", server.addr).await;
    let answer = closed_within(over, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Too many connections"), "{answer}");
    // /metrics itself needs a place: free one first.
    drop(busy.pop());
    support::cluster::until(Duration::from_secs(10), "a place is free", || async {
        health_from("127.0.0.9", server.addr)
            .await
            .starts_with("HTTP/1.1 200")
    })
    .await;
    let refused = support::metric_at(
        &server.url(""),
        support::METRICS_TOKEN,
        "hailstone_connections_refused_total",
    )
    .await;
    assert!(refused >= 1.0, "{refused}");
    drop(busy);
    server.stop().await;
}

#[tokio::test]
async fn kept_alive_connections_are_closed_when_idle() {
    let mut config = support::config();
    config.limits.connection_idle_timeout_secs = 1;
    let server = TestServer::start(config).await;
    let kept = kept_alive_from("127.0.0.2", server.addr).await;
    closed_within(kept, Duration::from_secs(30)).await;
    server.stop().await;
}

#[tokio::test]
async fn behind_a_proxy_each_client_has_its_cap_of_requests_in_flight() {
    let mut config = support::config();
    config.http.client_address_header = "x-forwarded-for".into();
    config.limits.connections_per_address = 2;
    let server = TestServer::start(config).await;
    let through_proxy = |client: &'static str| async move {
        let mut stream = connect_from("127.0.0.2", server.addr).await;
        let head = head_of(
            &mut stream,
            &format!("GET /events HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {client}\r\n\r\n"),
        )
        .await;
        (head, stream)
    };
    let (first, _a) = through_proxy("203.0.113.7").await;
    let (second, _b) = through_proxy("203.0.113.7").await;
    assert!(first.starts_with("HTTP/1.1 200") && second.starts_with("HTTP/1.1 200"));
    let (third, _c) = through_proxy("203.0.113.7").await;
    assert!(third.starts_with("HTTP/1.1 429"), "{third}");
    // The proxy's own connections are not capped per address, and another
    // client behind it is served.
    let (other, _d) = through_proxy("203.0.113.8").await;
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    // An IPv6 client counts by its /64.
    let (v6a, _e) = through_proxy("2001:db8:1:2::1").await;
    let (v6b, _f) = through_proxy("2001:db8:1:2::2").await;
    let (v6c, _g) = through_proxy("2001:db8:1:2::3").await;
    assert!(v6a.starts_with("HTTP/1.1 200") && v6b.starts_with("HTTP/1.1 200"));
    assert!(v6c.starts_with("HTTP/1.1 429"), "{v6c}");
    server.stop().await;
}
