//! The server functions the page calls, and the boundary they cross.
//!
//! Their bodies run on the server and reach the session through
//! [`SessionApi`], a trait the `server` crate implements and puts in each
//! request's extensions, so `app` never depends on `server`.

use leptos::prelude::*;
use leptos::server_fn::{
    codec::{Json, JsonEncoding},
    error::{FromServerFnError, ServerFnErrorErr},
};
use serde::{Deserialize, Serialize};
use shared::{
    job::Listed,
    trajectory::{Page as Values, PageError},
    wire::{Command, CommandError, Snapshot, Window},
};

/// Everything a server function can answer instead of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// The command was refused; the state is unchanged.
    #[error("{0}")]
    Command(CommandError),
    /// A page of the run's values cannot be given.
    #[error("{0}")]
    Values(PageError),
    /// The request was malformed.
    #[error("The request could not be read: {0}")]
    BadRequest(String),
    /// The session's stored state is damaged and cannot be rebuilt: it is
    /// not shown (never an empty or another run in its place), and kept as
    /// it is for the operator.
    #[error(
        "Your saved session is damaged and cannot be restored, so it is not shown; it is \
         kept as it was for the site's operator. Nothing was changed."
    )]
    Damaged,
    /// The run asked for is not the session's, or no longer is (removed,
    /// or expired).
    #[error("That run is gone (removed, or expired); pick another.")]
    NoRun,
    /// "New run" with as many runs not yet ended as a session may have.
    #[error(
        "You have {max} runs that have not ended, the most one session may have; \
         cancel one or let it finish first."
    )]
    TooManyLiveRuns {
        /// The most.
        max: usize,
    },
    /// "New run" with as many runs kept as a session may have.
    #[error("This session keeps at most {max} runs; remove one first.")]
    TooManyKeptRuns {
        /// The most.
        max: usize,
    },
    /// The request carried no session (the server answers 503 before this
    /// when it has no room for one).
    #[error("Your session could not be found; reload the page.")]
    NoSession,
    /// A new session is needed and there is no room for one, even after the
    /// longest-untouched sessions gave way.
    #[error("Hailstone is at capacity right now; please try again in a minute.")]
    AtCapacity,
    /// This address started too many sessions in a short time.
    #[error("Too many new sessions from your address; please wait a minute and try again.")]
    TooManySessions,
    /// The server could not be reached (only ever made in the browser).
    #[error("The server cannot be reached; check the connection and try again.")]
    Unreachable(String),
    /// Anything else; the details are in the server's log.
    #[error("Something went wrong on the server; please try again.")]
    Internal,
}

impl AppError {
    /// The HTTP status a direct caller sees.
    pub fn status(&self) -> u16 {
        match self {
            AppError::Command(CommandError::Unsaved) | AppError::AtCapacity => 503,
            AppError::Command(CommandError::Ended) => 409,
            AppError::Command(CommandError::StoreDamaged) | AppError::Damaged => 500,
            AppError::Command(_) => 422,
            AppError::Values(PageError::Count { .. }) => 400,
            AppError::Values(PageError::NoRun | PageError::Beyond { .. }) => 404,
            AppError::BadRequest(_) => 400,
            AppError::NoSession => 401,
            AppError::NoRun => 404,
            AppError::TooManyLiveRuns { .. } | AppError::TooManyKeptRuns { .. } => 409,
            AppError::TooManySessions => 429,
            AppError::Unreachable(_) | AppError::Internal => 500,
        }
    }
}

impl From<CommandError> for AppError {
    fn from(error: CommandError) -> Self {
        AppError::Command(error)
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Args(message)
            | ServerFnErrorErr::MissingArg(message)
            | ServerFnErrorErr::Deserialization(message) => AppError::BadRequest(message),
            ServerFnErrorErr::Request(message) => AppError::Unreachable(message),
            _ => AppError::Internal,
        }
    }
}

/// A future that can cross the trait boundary.
#[cfg(feature = "ssr")]
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// One session, as the server functions see it.
#[cfg(feature = "ssr")]
pub trait SessionApi: Send + Sync + 'static {
    /// Applies a command to run `run` (or, naming none, the session's
    /// default run) while holding its lock; returns the version that shows
    /// its effect. The first command of a visitor without a session creates
    /// one (nothing else does).
    fn command(
        &self,
        run: Option<String>,
        command: Command,
    ) -> BoxFuture<'_, Result<u64, AppError>>;

    /// Run `run`'s state now (or the default run's), with its id; a fresh
    /// idle state when there is no session; an error when it cannot be
    /// shown.
    fn snapshot(
        &self,
        run: Option<String>,
    ) -> BoxFuture<'_, Result<(Option<String>, Snapshot), AppError>>;

    /// The session's runs, newest first.
    fn runs(&self) -> BoxFuture<'_, Result<Vec<Listed>, AppError>>;

    /// Has run `run` (or the default run) search From…To, as typed:
    /// raising To goes on, another range starts over.
    fn search(
        &self,
        run: Option<String>,
        from: String,
        to: String,
    ) -> BoxFuture<'_, Result<u64, AppError>>;

    /// Run `run`'s state now, whatever its kind.
    fn search_snapshot(
        &self,
        run: String,
    ) -> BoxFuture<'_, Result<shared::job::Snapshot, AppError>>;

    /// The longest text a search's From or To may be.
    fn max_input_chars(&self) -> usize;

    /// Adds a run to the session; its id.
    fn new_run(&self) -> BoxFuture<'_, Result<String, AppError>>;

    /// Removes run `run` of the session.
    fn remove_run(&self, run: String) -> BoxFuture<'_, Result<(), AppError>>;

    /// The most digits a typed number may have.
    fn max_digits(&self) -> usize;

    /// The window of recent values the server keeps, which the page follows.
    fn window(&self) -> Window;

    /// `count` values of run `run` (or the default run) from step `from`,
    /// recomputed exactly (off the async threads).
    fn values(
        &self,
        run: Option<String>,
        from: u64,
        count: u64,
    ) -> BoxFuture<'_, Result<Values, AppError>>;
}

/// The session of the request being handled, put in its extensions by the
/// server's session layer.
#[cfg(feature = "ssr")]
#[derive(Clone)]
pub struct CurrentSession(pub std::sync::Arc<dyn SessionApi>);

#[cfg(feature = "ssr")]
fn current_session() -> Result<CurrentSession, AppError> {
    use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<CurrentSession>().cloned())
        .ok_or(AppError::NoSession)
}

/// Sends one command of the user's to run `run` (or, naming none, the
/// session's first run); answers the version that shows it.
/// `POST /api/command` with `{"command": {...}, "run": "…"}`.
#[server(endpoint = "command", input = Json)]
pub async fn send_command(
    command: Command,
    #[server(default)] run: Option<String>,
) -> Result<u64, AppError> {
    current_session()?.0.command(run, command).await
}

/// Has run `run` search `from`…`to` (as typed; checked on the server as
/// in the page): raising To goes on, another range starts over. Answers
/// the version that shows it. `POST /api/search`.
#[server(endpoint = "search", input = Json)]
pub async fn send_search(
    from: String,
    to: String,
    #[server(default)] run: Option<String>,
) -> Result<u64, AppError> {
    current_session()?.0.search(run, from, to).await
}

/// Run `run`'s state, a search's included. `POST /api/search_state`.
#[server(endpoint = "search_state", input = Json)]
pub async fn load_search(run: String) -> Result<shared::job::Snapshot, AppError> {
    current_session()?.0.search_snapshot(run).await
}

/// Adds a run to the session, beside its others; answers its id.
/// `POST /api/new_run`.
#[server(endpoint = "new_run", input = Json)]
pub async fn new_run() -> Result<String, AppError> {
    current_session()?.0.new_run().await
}

/// Removes run `run` of the session. `POST /api/remove_run`.
#[server(endpoint = "remove_run", input = Json)]
pub async fn remove_run(run: String) -> Result<(), AppError> {
    current_session()?.0.remove_run(run).await
}

/// What the page needs to render: the session's state and the settings the
/// browser validates with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The id of the run shown; `None` without a session.
    pub run: Option<String>,
    /// The run's state.
    pub snapshot: Snapshot,
    /// The session's runs, newest first.
    pub runs: Vec<Listed>,
    /// The most digits a typed number may have.
    pub max_digits: usize,
    /// The longest text a search's From or To may be.
    pub max_input_chars: usize,
    /// The window of recent values the server keeps; the page keeps the same.
    pub window: Window,
}

/// How the page's data travels inside the HTML for hydration: JSON, read
/// from bytes as server functions read their answers, so each type the page
/// reads both ways is compiled once into the download (read from text as
/// well, it was twice: some 4 KiB of gzip).
pub struct JsonBytes;

impl<T: Serialize> leptos::server::codee::Encoder<T> for JsonBytes {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(value: &T) -> Result<String, serde_json::Error> {
        serde_json::to_string(value)
    }
}

impl<T: serde::de::DeserializeOwned> leptos::server::codee::Decoder<T> for JsonBytes {
    type Error = serde_json::Error;
    type Encoded = str;

    fn decode(text: &str) -> Result<T, serde_json::Error> {
        serde_json::from_slice(text.as_bytes())
    }
}

/// Loads the page's data for run `run` (or the session's default run);
/// during server rendering, before any HTML is sent. `POST /api/page`.
#[server(endpoint = "page", input = Json)]
pub async fn load_page(#[server(default)] run: Option<String>) -> Result<Page, AppError> {
    let session = current_session()?.0;
    let (run, snapshot) = session.snapshot(run).await?;
    Ok(Page {
        run,
        snapshot,
        runs: session.runs().await?,
        max_digits: session.max_digits(),
        max_input_chars: session.max_input_chars(),
        window: session.window(),
    })
}

/// A page of the run's values: steps `from ..= from + count - 1` (cut at the
/// run's last step), at most [`shared::trajectory::MAX_PAGE`]. Older values
/// than the page holds come from here. `POST /api/values`.
#[server(endpoint = "values", input = Json)]
pub async fn load_values(
    from: u64,
    count: u64,
    #[server(default)] run: Option<String>,
) -> Result<Values, AppError> {
    current_session()?.0.values(run, from, count).await
}
