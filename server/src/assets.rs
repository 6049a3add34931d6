//! The compiled site's files: sent precompressed when the build made
//! compressed copies (`cargo leptos build --release --precompress` writes
//! `.br` and `.gz` beside each file) and the browser takes them, and cached
//! for good when their names carry their content's hash (`hash-files` in
//! the workspace's Leptos metadata), so a deploy never serves an old copy.

use std::path::Path;

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::IntoResponse,
};
use tower_http::services::ServeDir;

/// The longest path segment looked up as a file: longer names do not exist
/// on any common file system (which would answer with an error, not "no
/// such file").
const MAX_SEGMENT_BYTES: usize = 255;

/// For a file whose name holds its content's hash: it never changes.
const FOR_GOOD: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");
/// For any other file: kept, but checked again (`Last-Modified`) before use.
const REVALIDATE: HeaderValue = HeaderValue::from_static("no-cache");

/// Whether the build hashed the site's file names: its hash file
/// (`hash_file`, as Leptos names it) is beside the running binary, where
/// cargo-leptos writes it and Leptos reads it to link the hashed names.
pub fn hashed(hash_file: &str) -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(hash_file)))
        .is_some_and(|path| path.is_file())
}

/// The site's files under `root`, `/pkg/` cached for good when `hashed`.
#[derive(Clone)]
pub struct Assets {
    /// Serves the files, and their compressed copies where the request
    /// accepts them.
    files: ServeDir,
    /// The route of the package directory, such as `/pkg/`.
    pkg: String,
    /// Whether the package's file names carry their content's hash.
    hashed: bool,
}

impl Assets {
    /// The files of the site at `root`, the package under `pkg_route`.
    pub fn new(root: &Path, pkg_route: String, hashed: bool) -> Assets {
        Assets {
            files: ServeDir::new(root).precompressed_br().precompressed_gzip(),
            pkg: pkg_route,
            hashed,
        }
    }

    /// A file of the compiled site, or 404.
    pub async fn serve(self, request: axum::extract::Request) -> axum::response::Response {
        let path = request.uri().path().to_owned();
        let too_long = path
            .split('/')
            .any(|segment| segment.len() > MAX_SEGMENT_BYTES);
        if too_long {
            return not_found().into_response();
        }
        let mut response = match tower::ServiceExt::oneshot(self.files, request).await {
            Ok(response) => response.into_response(),
            Err(never) => match never {},
        };
        match response.status() {
            StatusCode::NOT_FOUND => return not_found().into_response(),
            status if status.is_server_error() => {
                tracing::error!(%status, path, "a static file could not be served");
            }
            _ => {}
        }
        let cache = if self.hashed && path.starts_with(&self.pkg) {
            FOR_GOOD
        } else {
            REVALIDATE
        };
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, cache);
        // A cache between must not give a compressed copy to a browser
        // that did not ask for it.
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        response
    }
}

/// Anything that is neither a route nor a file.
pub fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "Page not found.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    /// A site with a hashed package file, its compressed copies (marked so
    /// each answer shows which was sent), and a file outside the package.
    fn site() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("pkg")).unwrap();
        let wasm = root.path().join("pkg/hailstone.Ab9_x.wasm");
        std::fs::write(&wasm, "plain").unwrap();
        std::fs::write(wasm.with_extension("wasm.br"), "brotli").unwrap();
        std::fs::write(wasm.with_extension("wasm.gz"), "gzip").unwrap();
        std::fs::write(root.path().join("favicon.svg"), "<svg/>").unwrap();
        root
    }

    /// (status, content-encoding, cache-control, body) of `path`.
    async fn get(
        assets: &Assets,
        path: &str,
        accept: Option<&str>,
    ) -> (StatusCode, Option<String>, Option<String>, String) {
        let mut request = axum::http::Request::get(path);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT_ENCODING, accept);
        }
        let response = assets
            .clone()
            .serve(request.body(Body::empty()).unwrap())
            .await;
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v: &HeaderValue| v.to_str().unwrap().to_owned())
        };
        let (encoding, cache) = (
            header(header::CONTENT_ENCODING),
            header(header::CACHE_CONTROL),
        );
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (
            status,
            encoding,
            cache,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_file_goes_compressed_as_the_browser_accepts_and_a_hashed_one_is_cached_for_good() {
        let root = site();
        let assets = Assets::new(root.path(), "/pkg/".to_owned(), true);
        let wasm = "/pkg/hailstone.Ab9_x.wasm";
        let forever = Some("public, max-age=31536000, immutable".to_owned());
        assert_eq!(
            get(&assets, wasm, Some("gzip, deflate, br")).await,
            (
                StatusCode::OK,
                Some("br".into()),
                forever.clone(),
                "brotli".into()
            )
        );
        assert_eq!(
            get(&assets, wasm, Some("gzip")).await,
            (
                StatusCode::OK,
                Some("gzip".into()),
                forever.clone(),
                "gzip".into()
            )
        );
        assert_eq!(
            get(&assets, wasm, None).await,
            (StatusCode::OK, None, forever, "plain".into())
        );
        let response = assets
            .clone()
            .serve(axum::http::Request::get(wasm).body(Body::empty()).unwrap())
            .await;
        assert_eq!(response.headers()[header::VARY], "accept-encoding");
        // Outside the package, a name without a hash: checked again.
        assert_eq!(
            get(&assets, "/favicon.svg", Some("br")).await,
            (
                StatusCode::OK,
                None,
                Some("no-cache".into()),
                "<svg/>".into()
            )
        );
        let (status, _, _, body) = get(&assets, "/pkg/hailstone.wasm", None).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::NOT_FOUND, "Page not found.")
        );
    }

    #[tokio::test]
    async fn without_hashed_names_nothing_is_cached_for_good() {
        let root = site();
        let assets = Assets::new(root.path(), "/pkg/".to_owned(), false);
        let (status, _, cache, _) = get(&assets, "/pkg/hailstone.Ab9_x.wasm", Some("br")).await;
        assert_eq!(
            (status, cache.as_deref()),
            (StatusCode::OK, Some("no-cache"))
        );
    }
}
