//! The router answered in-process (`oneshot`), without a socket.

use std::path::Path;

use axum::body::Body;
use http::{Request, StatusCode};
use server::Config;
use tower::ServiceExt;

fn config() -> Config {
    let path = Path::new("../Leptos.toml");
    Config::load(path, |_| None).unwrap()
}

async fn get(uri: &str) -> (StatusCode, String) {
    let mut config = config();
    config.store.path = ":memory:".into();
    let store = server::store::open(&config.store.path, config.tick()).unwrap();
    let response = server::app(
        server::Hailstone::new(&config, config.session_settings(), store),
        &config,
    )
    .oneshot(Request::get(uri).body(Body::empty()).unwrap())
    .await
    .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn healthz_answers_ok() {
    assert_eq!(get("/healthz").await, (StatusCode::OK, "ok".to_owned()));
}

#[tokio::test]
async fn the_page_is_rendered_with_its_scripts() {
    let (status, html) = get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Collatz Conjecture"), "{html}");
    assert!(html.contains("/pkg/hailstone.js"), "{html}");
    assert!(html.contains("/pkg/hailstone.css"), "{html}");
}

#[tokio::test]
async fn the_page_goes_gzipped_to_a_browser_that_takes_it() {
    let mut config = config();
    config.store.path = ":memory:".into();
    let store = server::store::open(&config.store.path, config.tick()).unwrap();
    let app = server::app(
        server::Hailstone::new(&config, config.session_settings(), store),
        &config,
    );
    let request = Request::get("/")
        .header("accept-encoding", "gzip, deflate, br")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let mut html = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut html)
        .unwrap();
    assert!(html.contains("Collatz Conjecture"), "{html}");
}

#[tokio::test]
async fn an_unknown_path_is_404() {
    let (status, _) = get("/no-such-page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_path_segment_longer_than_any_file_name_is_404() {
    for length in [255, 256, 4096] {
        let (status, body) = get(&format!("/{}", "a".repeat(length))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{length}");
        assert_eq!(body, "Page not found.");
        let (status, _) = get(&format!("/pkg/{}.js", "b".repeat(length))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{length}");
    }
}
