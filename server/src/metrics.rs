//! Live counts, exposed at `/metrics` in Prometheus text format.

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

/// The server's counters and gauges. Cheap to update: each is one atomic.
pub struct Metrics {
    /// Every metric, for encoding.
    registry: Registry,
    /// Live sessions; set from the registry when scraped.
    pub sessions: Gauge,
    /// Background tasks alive now.
    pub running_tasks: Gauge,
    /// Open event streams.
    pub subscribers: Gauge,
    /// Open connections.
    pub connections: Gauge,
    /// Connections answered 503 and closed because the cap was reached.
    pub connections_refused: Counter,
    /// Event streams refused (too many for the session or the address).
    pub streams_refused: Counter,
    /// Steps committed, of every run.
    pub steps: Counter,
    /// Values sent to subscribers (a value sent to two counts twice).
    pub values_streamed: Counter,
    /// Commands applied (accepted or refused).
    pub commands: Counter,
    /// Stored sessions rebuilt in memory (after a restart, when first asked
    /// for, or resumed because they were running).
    pub sessions_rebuilt: Counter,
    /// Sessions evicted at the cap to make room for a new one.
    pub sessions_evicted: Counter,
    /// New sessions refused (cap reached with nothing to evict, or an
    /// address over its rate).
    pub sessions_refused: Counter,
    /// Cluster mode: commits of this node's tasks refused because another
    /// node took the run over (this node was paused or cut off past its
    /// lease); each stops its task.
    pub fenced_commits: Counter,
    /// Cluster mode: runs this node took over after their lease lapsed.
    pub takeovers: Counter,
    /// Cluster mode: chunks of steps' work (any node's runs) this node
    /// computed and committed.
    pub chunks_done: Counter,
    /// Whether the store answered when last asked (cluster mode: Redis, at
    /// each scan); always 1 for one process.
    pub store_up: Gauge,
    /// Seconds from a command's arrival at the runtime to its answer: the
    /// wait for the session's lock, the change and its write to the store.
    pub command_seconds: Histogram,
    /// Seconds a server-function request takes in the server, from the
    /// router to its answer: decoding, the function, encoding.
    pub server_fn_seconds: Histogram,
}

impl Metrics {
    /// Registers every metric under the `hailstone_` prefix, labelled with
    /// `node` when this is a node of a cluster (`node` not empty).
    pub fn new(node: &str) -> Metrics {
        let labels = (!node.is_empty()).then(|| ("node".into(), node.to_owned().into()));
        let mut registry = Registry::with_prefix_and_labels("hailstone", labels.into_iter());
        let metrics = Metrics {
            sessions: Gauge::default(),
            running_tasks: Gauge::default(),
            subscribers: Gauge::default(),
            connections: Gauge::default(),
            connections_refused: Counter::default(),
            streams_refused: Counter::default(),
            steps: Counter::default(),
            values_streamed: Counter::default(),
            commands: Counter::default(),
            sessions_rebuilt: Counter::default(),
            sessions_evicted: Counter::default(),
            sessions_refused: Counter::default(),
            fenced_commits: Counter::default(),
            takeovers: Counter::default(),
            chunks_done: Counter::default(),
            store_up: Gauge::default(),
            command_seconds: latency_histogram(),
            server_fn_seconds: latency_histogram(),
            registry: Registry::default(),
        };
        registry.register("sessions", "Live sessions", metrics.sessions.clone());
        registry.register(
            "running_tasks",
            "Background tasks alive now",
            metrics.running_tasks.clone(),
        );
        registry.register(
            "subscribers",
            "Open event streams",
            metrics.subscribers.clone(),
        );
        registry.register(
            "connections",
            "Open connections",
            metrics.connections.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused at the cap",
            metrics.connections_refused.clone(),
        );
        registry.register(
            "streams_refused",
            "Event streams refused",
            metrics.streams_refused.clone(),
        );
        registry.register("steps", "Steps committed", metrics.steps.clone());
        registry.register(
            "values_streamed",
            "Values sent to subscribers",
            metrics.values_streamed.clone(),
        );
        registry.register("commands", "Commands applied", metrics.commands.clone());
        registry.register(
            "sessions_rebuilt",
            "Stored sessions rebuilt in memory",
            metrics.sessions_rebuilt.clone(),
        );
        registry.register(
            "sessions_evicted",
            "Sessions evicted at the cap",
            metrics.sessions_evicted.clone(),
        );
        registry.register(
            "sessions_refused",
            "New sessions refused",
            metrics.sessions_refused.clone(),
        );
        registry.register(
            "fenced_commits",
            "Commits refused because another node took the run over",
            metrics.fenced_commits.clone(),
        );
        registry.register(
            "takeovers",
            "Runs taken over after their lease lapsed",
            metrics.takeovers.clone(),
        );
        registry.register(
            "chunks_done",
            "Chunks of steps' work computed and committed here",
            metrics.chunks_done.clone(),
        );
        registry.register(
            "store_up",
            "Whether the store answered when last asked",
            metrics.store_up.clone(),
        );
        registry.register(
            "command_seconds",
            "Time to apply a command: lock wait, change, store write",
            metrics.command_seconds.clone(),
        );
        registry.register(
            "server_fn_seconds",
            "Time a server-function request takes in the server",
            metrics.server_fn_seconds.clone(),
        );
        metrics.store_up.set(1);
        Metrics {
            registry,
            ..metrics
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// A histogram of durations from 50 µs to 1.6 s, its buckets doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(50e-6, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new("")
    }
}

/// The value of metric `name` in a `/metrics` text, summed over its label
/// sets (a node's metrics carry its name); `None` if it is not there. For
/// the tests and tools that read a server's metrics.
pub fn value_in(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            let key = key.split_once('{').map_or(key, |(key, _)| key);
            (key == name).then(|| value.parse::<f64>().ok())?
        })
        .reduce(|sum, value| sum + value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_metric_of_the_text_it_encodes() {
        let metrics = Metrics::new("n1");
        metrics.commands.inc_by(3);
        let text = metrics.encode();
        assert_eq!(value_in(&text, "hailstone_commands_total"), Some(3.0));
        assert_eq!(value_in(&text, "hailstone_store_up"), Some(1.0));
        assert_eq!(value_in(&text, "hailstone_no_such_metric"), None);
        // A histogram's name alone is not one of its series.
        assert_eq!(value_in(&text, "hailstone_command_seconds"), None);
        assert_eq!(
            value_in(&text, "hailstone_command_seconds_count"),
            Some(0.0)
        );
    }
}
