//! The command line.

use std::time::Duration;

use clap::Parser;

/// Drives a running Hailstone server as many browsers would, and checks
/// every value it is sent. Exits with 1 when a request failed or a value was
/// lost, duplicated or out of order.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadgen", version)]
pub struct Args {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub addr: String,
    /// Simulated browsers.
    #[arg(long, default_value_t = 100)]
    pub sessions: usize,
    /// The step interval each sets, in milliseconds.
    #[arg(long = "interval", default_value_t = 500)]
    pub interval_ms: u32,
    /// Seconds to measure, after every session has started.
    #[arg(long = "duration", default_value = "20", value_parser = seconds)]
    pub duration: Duration,
    /// Seconds between a browser's "set number" commands.
    #[arg(long = "command-every", default_value = "5", value_parser = seconds)]
    pub command_every: Duration,
    /// The server's process id, for memory and CPU figures.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Sessions started per second while ramping up.
    #[arg(long = "ramp", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub ramp_per_sec: u64,
    /// Start every run from this number instead of the built-in ones.
    #[arg(long)]
    pub start: Option<String>,
    /// Browsers per shared HTTP/2 connection (cleartext, prior knowledge),
    /// as behind a multiplexing proxy; without it, HTTP/1.1 with a
    /// connection per browser's stream. The server allows 200 streams per
    /// connection and each browser needs up to two.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub http2: Option<u64>,
    /// The token for the server's `/metrics` (its steps per second).
    #[arg(long, env = "HAILSTONE_METRICS_TOKEN")]
    pub metrics_token: Option<String>,
    /// Where to read `/metrics` (steps per second) when not at `--addr`:
    /// every node of a cluster behind a balancer (summed). Repeatable.
    #[arg(long = "metrics-addr")]
    pub metrics_addrs: Vec<String>,
    /// A stream that ends is resumed with `Last-Event-ID`, as a browser
    /// does (a node of a cluster died); without it, an ended stream is an
    /// error. A command answered 502 or 503 is sent again after 100 ms.
    #[arg(long)]
    pub resume: bool,
    /// Another process whose CPU time to report, as `NAME=PID` (the nodes,
    /// Redis and the balancer of a cluster). Repeatable.
    #[arg(long = "watch", value_parser = named_pid)]
    pub watch: Vec<(String, u32)>,
    /// Runs per session: each group of this many browsers shares one
    /// session, its first browser's run and the others' added with "New
    /// run", each followed by its own stream (the server's
    /// `sessions.live-runs` must allow as many). `--sessions` counts
    /// browsers, that is runs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: u64,
}

fn named_pid(text: &str) -> Result<(String, u32), String> {
    let (name, pid) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected NAME=PID"))?;
    let pid = pid.parse().map_err(|e| format!("{text:?}: {e}"))?;
    Ok((name.to_owned(), pid))
}

fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_flags_and_refuses_nonsense() {
        let args = Args::try_parse_from([
            "loadgen",
            "--sessions",
            "7",
            "--interval",
            "0",
            "--duration",
            "3",
            "--http2",
            "50",
        ])
        .unwrap();
        assert_eq!((args.sessions, args.interval_ms), (7, 0));
        assert_eq!(args.duration, Duration::from_secs(3));
        assert_eq!(args.http2, Some(50));
        assert!(Args::try_parse_from(["loadgen", "--http2", "0"]).is_err());
        let watched = Args::try_parse_from(["loadgen", "--watch", "redis=42", "--resume"]).unwrap();
        assert_eq!(watched.watch, [("redis".to_owned(), 42)]);
        assert!(watched.resume);
        assert!(Args::try_parse_from(["loadgen", "--watch", "redis"]).is_err());
        assert!(Args::try_parse_from(["loadgen", "--sessions", "many"]).is_err());
        assert!(Args::try_parse_from(["loadgen", "--bogus"]).is_err());
    }
}
