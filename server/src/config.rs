//! The server's runtime configuration: `Leptos.toml`, then environment
//! variables on top.
//!
//! cargo-leptos reads its *build* settings from `[[workspace.metadata.leptos]]`
//! in Cargo.toml and passes the ones the server needs as `LEPTOS_*` variables
//! when it starts the server; those variables override the file here, so a
//! server started by cargo-leptos and one started by hand agree.

use std::{
    fmt::Display,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use leptos::config::LeptosOptions;
use serde::Deserialize;
use shared::{
    job::JobSettings,
    search::SearchSettings,
    wire::{Unwatched, MAX_INTERVAL_MS},
    Settings,
};

/// The variable that names another configuration file.
pub const CONFIG_PATH_VAR: &str = "HAILSTONE_CONFIG";
/// The file read when [`CONFIG_PATH_VAR`] is not set, relative to the working
/// directory (the workspace root under cargo-leptos).
pub const DEFAULT_CONFIG_PATH: &str = "Leptos.toml";

/// Everything the server reads at start.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the server listens and where cargo-leptos put the compiled site.
    pub site: Site,
    /// How the Collatz tasks behave.
    pub collatz: Collatz,
    /// Bounds on what a client may ask of the server.
    pub limits: Limits,
    /// How many sessions live, and for how long.
    pub sessions: Sessions,
    /// Where sessions are kept across restarts.
    pub store: Store,
    /// How the server meets the public internet (behind a proxy or not).
    #[serde(default)]
    pub http: Http,
    /// Cluster mode: sessions in Redis, shared by every node.
    #[serde(default)]
    pub cluster: Cluster,
    /// How record searches run.
    #[serde(default)]
    pub search: Search,
}

/// The `[search]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Search {
    /// Threads that check stretches at once, over every search of the
    /// process; one search uses them all when alone. 0: one per core.
    pub threads: usize,
    /// The longest text of a search's From or To, separators included.
    pub max_input_chars: usize,
    /// Starts per step of a search: how much one thread checks between
    /// two updates of its page.
    pub stretch: u64,
}

impl Default for Search {
    fn default() -> Self {
        Search {
            threads: 0,
            max_input_chars: shared::search::DEFAULT_MAX_INPUT_CHARS,
            stretch: shared::search::STRETCH,
        }
    }
}

/// The `[cluster]` table. Without a Redis URL the server is one process
/// with its sessions in SQLite; with one, it is a node of a cluster whose
/// only store and coordination is that Redis.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Cluster {
    /// Such as `redis://127.0.0.1:6379/`. Empty: not a cluster (unless
    /// sentinels are named).
    pub redis_url: String,
    /// Redis Sentinels (`host:port`) that say where the primary is: nodes
    /// ask them at start and whenever the primary fails, and follow a
    /// failover by themselves. Empty: `redis-url` is the primary.
    #[serde(default)]
    pub sentinels: Addresses,
    /// The name the sentinels monitor the primary under.
    #[serde(default = "defaults::sentinel_master")]
    pub sentinel_master: String,
    /// With sentinels: how long a commit waits for a replica to have it
    /// (`WAIT`) before it is refused (503), and before anything it changed
    /// is shown to a page.
    #[serde(default = "defaults::replica_wait_ms")]
    pub replica_wait_ms: u64,
    /// This node's name in logs, metrics and leases. Empty: one is made up
    /// at start from the host name and a random suffix.
    pub node_id: String,
    /// How long a node owns a running session without committing: a node
    /// that dies or stalls loses its runs to another after this.
    pub lease_ms: u64,
    /// How often each node looks for running sessions whose lease lapsed.
    /// A dead node's runs resume within `lease-ms` plus this.
    pub scan_ms: u64,
    /// How many recent changes Redis keeps per session, for the nodes that
    /// hold a copy of it to catch up by replaying them; a copy further
    /// behind is loaded whole instead. Bounds Redis's memory per session.
    pub log_len: u64,
}

impl Cluster {
    /// Whether the server is a node of a cluster (a Redis is named).
    pub fn enabled(&self) -> bool {
        !self.redis_url.is_empty() || !self.sentinels.0.is_empty()
    }
}

/// `host:port` addresses: an array in the file, comma-separated in the
/// environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Addresses(pub Vec<String>);

impl FromStr for Addresses {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Addresses, Self::Err> {
        Ok(Addresses(
            text.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
        ))
    }
}

impl Default for Cluster {
    fn default() -> Cluster {
        Cluster {
            redis_url: String::new(),
            sentinels: Addresses::default(),
            sentinel_master: defaults::sentinel_master(),
            replica_wait_ms: defaults::replica_wait_ms(),
            node_id: String::new(),
            lease_ms: 2000,
            scan_ms: 500,
            log_len: 64,
        }
    }
}

/// The `[http]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Http {
    /// The origin browsers see, such as `https://hailstone.example`, when
    /// the server is behind a proxy: state-changing requests must come from
    /// it, and over https the session cookie is `Secure` with the `__Host-`
    /// prefix. Empty: the request's own `Host` is the origin.
    pub public_origin: String,
    /// The bearer token `/metrics` asks for. Empty: `/metrics` is not served.
    pub metrics_token: String,
    /// The header a trusted proxy puts the client's address in (its last
    /// entry is taken), such as `x-forwarded-for`. Empty: the address of the
    /// connection. Set it only when clients cannot reach the server but
    /// through that proxy, or any client can claim any address.
    pub client_address_header: String,
}

impl Http {
    /// The trusted proxy's client header, if one is configured (and a
    /// valid header name).
    pub fn client_address_header(&self) -> Option<axum::http::HeaderName> {
        axum::http::HeaderName::from_bytes(self.client_address_header.trim().as_bytes()).ok()
    }
}

/// The `[store]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Store {
    /// The SQLite file (created on first start); `:memory:` keeps nothing.
    pub path: PathBuf,
}

/// The `[site]` table: the values cargo-leptos also knows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Site {
    /// The socket address to listen on.
    pub addr: SocketAddr,
    /// The folder holding the compiled site (static files are served from it).
    pub root: String,
    /// The folder under `root` with the wasm, JS and CSS.
    pub pkg_dir: String,
    /// The file name (without extension) of the wasm, JS and CSS.
    pub output_name: String,
    /// The port of cargo-leptos's live-reload socket, used in `watch` mode.
    pub reload_port: u32,
}

/// The `[collatz]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Collatz {
    /// Milliseconds between two steps of a new session's task.
    pub step_interval_ms: u64,
    /// The most digits a number typed by a user may have.
    pub max_digits: usize,
}

/// The `[limits]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    /// The largest request body, in bytes, the server reads before refusing.
    pub max_body_bytes: usize,
    /// Seconds after which the server ends an event stream (the browser
    /// resumes it with `Last-Event-ID`, losing nothing); 0 for never. Lets
    /// proxies and load balancers rotate long connections.
    pub stream_lifetime_secs: u64,
    /// The most open connections; more are answered 503 and closed (and
    /// never more than the open-file limit leaves room for).
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// The most open connections one client address may have (an IPv6
    /// client by its /64); behind a trusted proxy, the most requests in
    /// flight for one client its header names.
    #[serde(default = "defaults::connections_per_address")]
    pub connections_per_address: usize,
    /// Seconds a client has to send a complete request head, on a new
    /// connection whatever it sent, and (HTTP/1.1) for every request.
    #[serde(default = "defaults::header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// Seconds a connection with no request in flight is kept open.
    #[serde(default = "defaults::connection_idle_timeout_secs")]
    pub connection_idle_timeout_secs: u64,
    /// Seconds a server-function request may take, its body included.
    #[serde(default = "defaults::request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// The most event streams one session may have open.
    #[serde(default = "defaults::streams_per_session")]
    pub streams_per_session: usize,
    /// The most event streams one client address may have open.
    #[serde(default = "defaults::streams_per_address")]
    pub streams_per_address: usize,
}

/// Defaults of the keys added after the first release, so older files load.
mod defaults {
    pub fn max_connections() -> usize {
        4096
    }
    pub fn connections_per_address() -> usize {
        256
    }
    pub fn sentinel_master() -> String {
        "hailstone".into()
    }
    pub fn replica_wait_ms() -> u64 {
        1000
    }
    pub fn header_read_timeout_secs() -> u64 {
        10
    }
    pub fn connection_idle_timeout_secs() -> u64 {
        60
    }
    pub fn request_timeout_secs() -> u64 {
        15
    }
    pub fn streams_per_session() -> usize {
        8
    }
    pub fn streams_per_address() -> usize {
        64
    }
    pub fn window_bytes() -> usize {
        16384
    }
    pub fn live_runs() -> usize {
        4
    }
    pub fn kept_runs() -> usize {
        20
    }
    pub fn unwatched() -> String {
        "keep".into()
    }
    pub fn unwatched_minutes() -> u32 {
        30
    }
    pub fn max_steps() -> u64 {
        100_000_000
    }
    pub fn tick_ms() -> u64 {
        2
    }
}

/// The `[sessions]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Sessions {
    /// The most live sessions; a new browser beyond it gets 503.
    pub max: usize,
    /// Seconds an idle session (no subscriber, nothing running) is kept.
    pub idle_timeout_secs: u64,
    /// How many recent values a session keeps for the page, and for a
    /// stream that fell behind or reconnects (past that, it gets a snapshot).
    pub window: usize,
    /// The most bytes of decimal digits that window holds (at least one
    /// value is always kept).
    #[serde(default = "defaults::window_bytes")]
    pub window_bytes: usize,
    /// How many new sessions one client address may start per minute (in a
    /// cluster, on all nodes together).
    #[serde(default = "default_new_per_minute")]
    pub new_per_minute: u32,
    /// The most runs of one session that have not ended (idle, running or
    /// paused): "New run" beyond it is refused.
    #[serde(default = "defaults::live_runs")]
    pub live_runs: usize,
    /// The most runs one session keeps, ended ones included: "New run"
    /// beyond it is refused until one is removed.
    #[serde(default = "defaults::kept_runs")]
    pub kept_runs: usize,
    /// What a new run does while no page of it is open: `keep` running,
    /// `pause` or `cancel` it after `unwatched-minutes`. Each run can
    /// choose otherwise on its page.
    #[serde(default = "defaults::unwatched")]
    pub unwatched: String,
    /// The minutes of `pause` and `cancel`.
    #[serde(default = "defaults::unwatched_minutes")]
    pub unwatched_minutes: u32,
    /// The most steps one run may take: a run that has taken them fails,
    /// saying so. Bounds the CPU one run can cost the server.
    #[serde(default = "defaults::max_steps")]
    pub max_steps: u64,
    /// The scheduler's granularity, 1 to 5 ms: runs due within one tick
    /// step together, so their events leave together (a step is at most
    /// one tick late).
    #[serde(default = "defaults::tick_ms")]
    pub tick_ms: u64,
}

fn default_new_per_minute() -> u32 {
    30
}

/// Why the configuration could not be loaded. Each message names the file or
/// the variable and the key at fault, so the operator can fix it at once.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing or unreadable.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not valid TOML, lacks a key, or has a value of the wrong type.
    #[error("invalid configuration file {path}: {message}")]
    Parse {
        /// The file at fault.
        path: PathBuf,
        /// The parser's message, which names the key, line and column.
        message: String,
    },
    /// An overriding environment variable does not parse.
    #[error("invalid environment variable {var}={value:?} (overrides `{key}`): {message}")]
    Env {
        /// The variable at fault.
        var: &'static str,
        /// The key of the file it overrides.
        key: &'static str,
        /// Its value.
        value: String,
        /// Why it was refused.
        message: String,
    },
    /// A value parses but makes no sense.
    #[error("invalid configuration: `{key}` {message}")]
    Invalid {
        /// The key at fault.
        key: &'static str,
        /// What is wrong with it.
        message: &'static str,
    },
}

impl Config {
    /// Loads the file named by `HAILSTONE_CONFIG` (or `Leptos.toml`) and
    /// applies the process's environment on top.
    pub fn from_env() -> Result<Self, ConfigError> {
        let path = std::env::var_os(CONFIG_PATH_VAR)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
        Self::load(&path, |var| std::env::var(var).ok())
    }

    /// Loads `path`, then overrides its values with those `env` returns.
    pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        config.override_from(&env)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses the text of a configuration file.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    fn override_from(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for (var, key, field) in OVERRIDES {
            if let Some(value) = env(var) {
                field(self)
                    .set(value.trim())
                    .map_err(|message| ConfigError::Env {
                        var,
                        key,
                        message,
                        value,
                    })?;
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message| Err(ConfigError::Invalid { key, message });
        if self.site.output_name.is_empty() {
            return invalid("site.output-name", "must not be empty");
        }
        if self.collatz.max_digits == 0 {
            return invalid("collatz.max-digits", "must be at least 1");
        }
        if self.search.stretch == 0 {
            return invalid("search.stretch", "must be at least 1");
        }
        if self.search.max_input_chars < 20 {
            return invalid(
                "search.max-input-chars",
                "must be at least 20 (the digits of the largest start)",
            );
        }
        if self.limits.max_body_bytes == 0 {
            return invalid("limits.max-body-bytes", "must be at least 1");
        }
        if self
            .cluster
            .node_id
            .contains(|c: char| c == ':' || c.is_whitespace())
        {
            return invalid("cluster.node-id", "must not contain ':' or spaces");
        }
        let header = &self.http.client_address_header;
        if !header.trim().is_empty() && self.http.client_address_header().is_none() {
            return invalid(
                "http.client-address-header",
                "must be a header name such as x-forwarded-for",
            );
        }
        if self.limits.connections_per_address > self.limits.max_connections {
            return invalid(
                "limits.connections-per-address",
                "must be at most limits.max-connections",
            );
        }
        if !self.cluster.sentinels.0.iter().all(|a| is_host_port(a)) {
            return invalid(
                "cluster.sentinels",
                "must be host:port addresses, such as 127.0.0.1:26379",
            );
        }
        if !self.cluster.sentinels.0.is_empty() && self.cluster.sentinel_master.is_empty() {
            return invalid("cluster.sentinel-master", "must not be empty");
        }
        if self.cluster.scan_ms > self.cluster.lease_ms {
            return invalid("cluster.scan-ms", "must be at most cluster.lease-ms");
        }
        if self.collatz.step_interval_ms > u64::from(MAX_INTERVAL_MS) {
            return invalid("collatz.step-interval-ms", "must be at most 10000");
        }
        if !(1..=5).contains(&self.sessions.tick_ms) {
            return invalid("sessions.tick-ms", "must be 1 to 5");
        }
        match self.unwatched() {
            None => return invalid("sessions.unwatched", "must be keep, pause or cancel"),
            Some(policy) if policy.check().is_err() => {
                return invalid("sessions.unwatched-minutes", "must be 1 to 1440");
            }
            Some(_) => {}
        }
        let origin = &self.http.public_origin;
        if !origin.is_empty() && public_origin(origin).is_none() {
            return invalid(
                "http.public-origin",
                "must be a scheme and host such as https://hailstone.example, with no path",
            );
        }
        for (key, value) in [
            ("sessions.max", self.sessions.max),
            ("sessions.window", self.sessions.window),
            (
                "sessions.new-per-minute",
                self.sessions.new_per_minute as usize,
            ),
            ("sessions.window-bytes", self.sessions.window_bytes),
            (
                "sessions.max-steps",
                usize::try_from(self.sessions.max_steps).unwrap_or(usize::MAX),
            ),
            ("limits.max-connections", self.limits.max_connections),
            (
                "limits.connections-per-address",
                self.limits.connections_per_address,
            ),
            (
                "cluster.replica-wait-ms",
                self.cluster.replica_wait_ms as usize,
            ),
            (
                "limits.header-read-timeout-secs",
                self.limits.header_read_timeout_secs as usize,
            ),
            (
                "limits.connection-idle-timeout-secs",
                self.limits.connection_idle_timeout_secs as usize,
            ),
            (
                "limits.request-timeout-secs",
                self.limits.request_timeout_secs as usize,
            ),
            (
                "limits.streams-per-session",
                self.limits.streams_per_session,
            ),
            (
                "limits.streams-per-address",
                self.limits.streams_per_address,
            ),
            ("cluster.lease-ms", self.cluster.lease_ms as usize),
            ("cluster.scan-ms", self.cluster.scan_ms as usize),
            ("cluster.log-len", self.cluster.log_len as usize),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        Ok(())
    }

    /// The step interval of a new session's task.
    pub fn step_interval(&self) -> Duration {
        Duration::from_millis(self.collatz.step_interval_ms)
    }

    /// How long an event stream lasts, if limited.
    pub fn stream_lifetime(&self) -> Option<Duration> {
        let secs = self.limits.stream_lifetime_secs;
        (secs > 0).then(|| Duration::from_secs(secs))
    }

    /// What a connection may hold.
    pub fn connection_limits(&self) -> crate::serve::Limits {
        crate::serve::Limits {
            max_connections: self.limits.max_connections,
            connections_per_address: self.limits.connections_per_address,
            client_address_header: self.http.client_address_header(),
            header_read_timeout: Duration::from_secs(self.limits.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(self.limits.connection_idle_timeout_secs),
        }
    }

    /// The scheduler's tick (`sessions.tick-ms`).
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.sessions.tick_ms)
    }

    /// How long an idle session is kept.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.sessions.idle_timeout_secs)
    }

    /// What a new run does while nobody watches it; `None` for a word
    /// other than keep, pause or cancel.
    pub fn unwatched(&self) -> Option<Unwatched> {
        let minutes = self.sessions.unwatched_minutes;
        match self.sessions.unwatched.as_str() {
            "keep" => Some(Unwatched::Keep),
            "pause" => Some(Unwatched::Pause { minutes }),
            "cancel" => Some(Unwatched::Cancel { minutes }),
            _ => None,
        }
    }

    /// The fixed choices of every new session.
    pub fn session_settings(&self) -> JobSettings {
        JobSettings {
            collatz: self.collatz_settings(),
            search: SearchSettings {
                max_input_chars: self.search.max_input_chars,
                stretch: self.search.stretch,
            },
        }
    }

    /// What the Collatz runs of a session are made with.
    pub fn collatz_settings(&self) -> Settings {
        Settings {
            // Validated above: at most MAX_INTERVAL_MS.
            interval_ms: self.collatz.step_interval_ms as u32,
            max_digits: self.collatz.max_digits,
            window: self.sessions.window,
            window_bytes: self.sessions.window_bytes,
            // Validated above: a known word and minutes in range.
            unwatched: self.unwatched().unwrap_or_default(),
        }
    }

    /// The options Leptos renders with (script and style paths, reload port).
    /// Hashed file names are used when the build made them.
    pub fn leptos_options(&self) -> LeptosOptions {
        let mut options = LeptosOptions::builder()
            .output_name(self.site.output_name.as_str())
            .site_root(self.site.root.as_str())
            .site_pkg_dir(self.site.pkg_dir.as_str())
            .site_addr(self.site.addr)
            .reload_port(self.site.reload_port)
            .build();
        options.hash_files = crate::assets::hashed(&options.hash_file);
        options
    }
}

/// The public origin, normalised (`https://host[:port]`, lower case, no
/// trailing slash); `None` when `text` is not one.
pub fn public_origin(text: &str) -> Option<String> {
    let text = text.trim().trim_end_matches('/').to_ascii_lowercase();
    let host = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))?;
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    valid.then_some(text)
}

/// Whether `text` is `host:port` with a port number.
fn is_host_port(text: &str) -> bool {
    text.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains(char::is_whitespace) && port.parse::<u16>().is_ok()
    })
}

/// A value of the configuration that an environment variable can set.
trait Setting {
    /// Replaces the value with the one `text` names.
    fn set(&mut self, text: &str) -> Result<(), String>;
}

impl<T> Setting for T
where
    T: FromStr,
    T::Err: Display,
{
    fn set(&mut self, text: &str) -> Result<(), String> {
        *self = text.parse().map_err(|e: T::Err| e.to_string())?;
        Ok(())
    }
}

/// The value an override sets.
type Field = fn(&mut Config) -> &mut dyn Setting;

/// Every environment variable that overrides a key of the file: the
/// variable, the key it overrides, and the value it sets.
#[rustfmt::skip]
const OVERRIDES: &[(&str, &str, Field)] = &[
    ("LEPTOS_SITE_ADDR", "site.addr", |c| &mut c.site.addr),
    ("LEPTOS_SITE_ROOT", "site.root", |c| &mut c.site.root),
    ("LEPTOS_SITE_PKG_DIR", "site.pkg-dir", |c| &mut c.site.pkg_dir),
    ("LEPTOS_OUTPUT_NAME", "site.output-name", |c| &mut c.site.output_name),
    ("LEPTOS_RELOAD_PORT", "site.reload-port", |c| &mut c.site.reload_port),
    ("HAILSTONE_STEP_INTERVAL_MS", "collatz.step-interval-ms", |c| &mut c.collatz.step_interval_ms),
    ("HAILSTONE_MAX_DIGITS", "collatz.max-digits", |c| &mut c.collatz.max_digits),
    ("HAILSTONE_MAX_BODY_BYTES", "limits.max-body-bytes", |c| &mut c.limits.max_body_bytes),
    ("HAILSTONE_STREAM_LIFETIME_SECS", "limits.stream-lifetime-secs", |c| &mut c.limits.stream_lifetime_secs),
    ("HAILSTONE_MAX_CONNECTIONS", "limits.max-connections", |c| &mut c.limits.max_connections),
    ("HAILSTONE_CONNECTIONS_PER_ADDRESS", "limits.connections-per-address", |c| &mut c.limits.connections_per_address),
    ("HAILSTONE_HEADER_READ_TIMEOUT_SECS", "limits.header-read-timeout-secs", |c| &mut c.limits.header_read_timeout_secs),
    ("HAILSTONE_CONNECTION_IDLE_TIMEOUT_SECS", "limits.connection-idle-timeout-secs", |c| &mut c.limits.connection_idle_timeout_secs),
    ("HAILSTONE_REQUEST_TIMEOUT_SECS", "limits.request-timeout-secs", |c| &mut c.limits.request_timeout_secs),
    ("HAILSTONE_STREAMS_PER_SESSION", "limits.streams-per-session", |c| &mut c.limits.streams_per_session),
    ("HAILSTONE_STREAMS_PER_ADDRESS", "limits.streams-per-address", |c| &mut c.limits.streams_per_address),
    ("HAILSTONE_MAX_SESSIONS", "sessions.max", |c| &mut c.sessions.max),
    ("HAILSTONE_SESSION_IDLE_TIMEOUT_SECS", "sessions.idle-timeout-secs", |c| &mut c.sessions.idle_timeout_secs),
    ("HAILSTONE_WINDOW", "sessions.window", |c| &mut c.sessions.window),
    ("HAILSTONE_WINDOW_BYTES", "sessions.window-bytes", |c| &mut c.sessions.window_bytes),
    ("HAILSTONE_NEW_SESSIONS_PER_MINUTE", "sessions.new-per-minute", |c| &mut c.sessions.new_per_minute),
    ("HAILSTONE_LIVE_RUNS", "sessions.live-runs", |c| &mut c.sessions.live_runs),
    ("HAILSTONE_KEPT_RUNS", "sessions.kept-runs", |c| &mut c.sessions.kept_runs),
    ("HAILSTONE_UNWATCHED", "sessions.unwatched", |c| &mut c.sessions.unwatched),
    ("HAILSTONE_UNWATCHED_MINUTES", "sessions.unwatched-minutes", |c| &mut c.sessions.unwatched_minutes),
    ("HAILSTONE_MAX_STEPS", "sessions.max-steps", |c| &mut c.sessions.max_steps),
    ("HAILSTONE_TICK_MS", "sessions.tick-ms", |c| &mut c.sessions.tick_ms),
    ("HAILSTONE_STORE_PATH", "store.path", |c| &mut c.store.path),
    ("HAILSTONE_PUBLIC_ORIGIN", "http.public-origin", |c| &mut c.http.public_origin),
    ("HAILSTONE_METRICS_TOKEN", "http.metrics-token", |c| &mut c.http.metrics_token),
    ("HAILSTONE_CLIENT_ADDRESS_HEADER", "http.client-address-header", |c| &mut c.http.client_address_header),
    ("HAILSTONE_REDIS_URL", "cluster.redis-url", |c| &mut c.cluster.redis_url),
    ("HAILSTONE_REDIS_SENTINELS", "cluster.sentinels", |c| &mut c.cluster.sentinels),
    ("HAILSTONE_REDIS_SENTINEL_MASTER", "cluster.sentinel-master", |c| &mut c.cluster.sentinel_master),
    ("HAILSTONE_REPLICA_WAIT_MS", "cluster.replica-wait-ms", |c| &mut c.cluster.replica_wait_ms),
    ("HAILSTONE_NODE_ID", "cluster.node-id", |c| &mut c.cluster.node_id),
    ("HAILSTONE_LEASE_MS", "cluster.lease-ms", |c| &mut c.cluster.lease_ms),
    ("HAILSTONE_SCAN_MS", "cluster.scan-ms", |c| &mut c.cluster.scan_ms),
    ("HAILSTONE_LOG_LEN", "cluster.log-len", |c| &mut c.cluster.log_len),
    ("HAILSTONE_SEARCH_THREADS", "search.threads", |c| &mut c.search.threads),
    ("HAILSTONE_SEARCH_MAX_INPUT_CHARS", "search.max-input-chars", |c| &mut c.search.max_input_chars),
    ("HAILSTONE_SEARCH_STRETCH", "search.stretch", |c| &mut c.search.stretch),
];

/// How often sessions idle for `idle_timeout` are looked for: a quarter of
/// it, from 1 s to 60 s. A node of a cluster keeps the sessions it uses
/// alive in Redis at the same pace.
pub fn sweep_period(idle_timeout: Duration) -> Duration {
    (idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [site]
        addr = "127.0.0.1:3000"
        root = "target/site"
        pkg-dir = "pkg"
        output-name = "hailstone"
        reload-port = 3001
        [collatz]
        step-interval-ms = 500
        max-digits = 1000
        [limits]
        max-body-bytes = 16384
        stream-lifetime-secs = 0
        [sessions]
        max = 10
        idle-timeout-secs = 60
        window = 256
        [store]
        path = "hailstone.db"
    "#;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Leptos.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_every_value() {
        let (_dir, path) = write(GOOD);
        let config = Config::load(&path, |_| None).unwrap();
        assert_eq!(config.site.addr, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(config.step_interval(), Duration::from_millis(500));
        assert_eq!(config.collatz.max_digits, 1000);
        assert_eq!(config.limits.max_body_bytes, 16384);
        let options = config.leptos_options();
        assert_eq!(&*options.output_name, "hailstone");
        assert_eq!(options.css_path(), "/pkg/hailstone.css");
    }

    #[test]
    fn environment_overrides_the_file() {
        let (_dir, path) = write(GOOD);
        let config = Config::load(&path, |var| match var {
            "LEPTOS_SITE_ADDR" => Some("127.0.0.1:4000".into()),
            "HAILSTONE_STEP_INTERVAL_MS" => Some("5".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.site.addr.port(), 4000);
        assert_eq!(config.collatz.step_interval_ms, 5);
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Leptos.toml");
        let message = Config::load(&path, |_| None).unwrap_err().to_string();
        assert!(
            message.contains("cannot read configuration file"),
            "{message}"
        );
        assert!(message.contains(&path.display().to_string()), "{message}");
    }

    #[test]
    fn a_missing_key_is_named_with_the_file() {
        let (_dir, path) = write(&GOOD.replace("max-digits = 1000", ""));
        let message = Config::load(&path, |_| None).unwrap_err().to_string();
        assert!(message.contains("Leptos.toml"), "{message}");
        assert!(message.contains("max-digits"), "{message}");
    }

    #[test]
    fn a_wrong_type_is_named_with_the_file() {
        let (_dir, path) =
            write(&GOOD.replace("step-interval-ms = 500", "step-interval-ms = \"fast\""));
        let message = Config::load(&path, |_| None).unwrap_err().to_string();
        assert!(message.contains("Leptos.toml"), "{message}");
        assert!(message.contains("step-interval-ms"), "{message}");
    }

    #[test]
    fn malformed_toml_is_reported() {
        let (_dir, path) = write("[site\naddr = ");
        let message = Config::load(&path, |_| None).unwrap_err().to_string();
        assert!(
            message.starts_with("invalid configuration file"),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let (_dir, path) =
            write(&GOOD.replace("max-digits = 1000", "max-digits = 1000\nmax-digit = 5"));
        let message = Config::load(&path, |_| None).unwrap_err().to_string();
        assert!(message.contains("max-digit"), "{message}");
    }

    #[test]
    fn a_bad_environment_value_names_the_variable_and_key() {
        let (_dir, path) = write(GOOD);
        let message = Config::load(&path, |var| {
            (var == "HAILSTONE_MAX_DIGITS").then(|| "many".to_owned())
        })
        .unwrap_err()
        .to_string();
        assert!(message.contains("HAILSTONE_MAX_DIGITS"), "{message}");
        assert!(message.contains("collatz.max-digits"), "{message}");
    }

    #[test]
    fn the_public_origin_is_checked_and_normalised() {
        let (_dir, path) = write(GOOD);
        let load = |origin: &'static str| {
            Config::load(&path, move |var| {
                (var == "HAILSTONE_PUBLIC_ORIGIN").then(|| origin.to_owned())
            })
        };
        assert_eq!(load("").unwrap().http.public_origin, "");
        assert!(load("https://Site.example/").is_ok());
        for bad in [
            "site.example",
            "https://site.example/app",
            "ftp://x",
            "https://",
        ] {
            let message = load(bad).unwrap_err().to_string();
            assert!(message.contains("http.public-origin"), "{bad}: {message}");
        }
        assert_eq!(
            public_origin("https://Site.example:8443/").as_deref(),
            Some("https://site.example:8443")
        );
    }

    /// Leptos.toml names, above each key, the variable that overrides it
    /// (`# HAILSTONE_MAX_DIGITS: ...`): each is in the table, for that key,
    /// and the table has nothing the file does not document.
    #[test]
    fn every_documented_variable_overrides_its_key_and_no_other() {
        let text = std::fs::read_to_string("../Leptos.toml").unwrap();
        let (mut table, mut pending) = (String::new(), None::<String>);
        let mut documented = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                table = name.to_owned();
            } else if let Some(comment) = line.strip_prefix("# ") {
                let var = comment.split(':').next().unwrap_or("");
                if comment.contains(':')
                    && !var.is_empty()
                    && var.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                {
                    pending = Some(var.to_owned());
                }
            } else if let (Some((key, _)), Some(var)) = (line.split_once(" = "), pending.take()) {
                documented.push((var, format!("{table}.{key}")));
            }
        }
        let mut table: Vec<(String, String)> = OVERRIDES
            .iter()
            .map(|(var, key, _)| (var.to_string(), key.to_string()))
            .collect();
        documented.sort();
        table.sort();
        assert_eq!(documented, table);
    }

    #[test]
    fn every_variable_sets_a_value_that_parses() {
        let (_dir, path) = write(GOOD);
        let config = Config::load(&path, |var| {
            (var == "HAILSTONE_CONNECTIONS_PER_ADDRESS").then(|| "7".to_owned())
        })
        .unwrap();
        assert_eq!(config.limits.connections_per_address, 7);
        let config = Config::load(&path, |var| {
            (var == "HAILSTONE_REDIS_SENTINELS").then(|| " 127.0.0.1:26379, h:26380 ".to_owned())
        })
        .unwrap();
        assert_eq!(
            config.cluster.sentinels.0,
            ["127.0.0.1:26379".to_owned(), "h:26380".to_owned()]
        );
        assert!(config.cluster.enabled());
        let message = Config::load(&path, |var| {
            (var == "HAILSTONE_REDIS_SENTINELS").then(|| "127.0.0.1".to_owned())
        })
        .unwrap_err()
        .to_string();
        assert!(message.contains("cluster.sentinels"), "{message}");
    }

    #[test]
    fn zero_digits_is_refused() {
        let (_dir, path) = write(&GOOD.replace("max-digits = 1000", "max-digits = 0"));
        let message = Config::load(&path, |_| None).unwrap_err().to_string();
        assert!(message.contains("collatz.max-digits"), "{message}");
    }
}
