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
        assert!(Args::try_parse_from(["loadgen", "--sessions", "many"]).is_err());
        assert!(Args::try_parse_from(["loadgen", "--bogus"]).is_err());
    }
}
