//! What every simulated browser adds to, and the report printed at the end.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

use hdrhistogram::Histogram;

use crate::check::Counts;

/// Counters and latency histograms shared by every browser.
pub struct Totals {
    /// What the checks found, summed over every browser as they go.
    counts: Mutex<Counts>,
    /// SSE messages received.
    pub messages: AtomicU64,
    /// Snapshots after the first message of a stream (catch-ups).
    pub snapshots: AtomicU64,
    /// Failed requests or streams.
    pub errors: AtomicU64,
    /// |gap between consecutive deltas − interval|.
    pub jitter: Latency,
    /// From sending "set number" to the stream showing it.
    pub round_trip: Latency,
    /// From sending "set number" to its HTTP answer.
    pub acknowledged: Latency,
    /// The longest time each browser's run went without a new value while
    /// running (one sample per browser, at the end): a failover shows here.
    pub longest_gap: Latency,
    /// Streams resumed after they ended (`--resume`).
    pub reconnects: AtomicU64,
    /// Commands sent again after a 502 or 503 (`--resume`).
    pub command_retries: AtomicU64,
    /// Commands answered 200 whose effect never showed: the state that
    /// should show it (its version reached) runs another start. Each is a
    /// bug (an acknowledged change lost).
    pub commands_lost: AtomicU64,
    /// Whether the measurement window is open (latencies are kept only then).
    pub measuring: AtomicBool,
}

/// A histogram of durations in microseconds, 1 µs to 10 minutes.
pub struct Latency(Mutex<Histogram<u64>>);

impl Default for Latency {
    fn default() -> Latency {
        Latency(Mutex::new(
            Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
        ))
    }
}

impl Latency {
    /// The samples so far, and a fresh histogram in their place.
    fn take(&self) -> Histogram<u64> {
        let mut histogram = self.0.lock().unwrap();
        let taken = histogram.clone();
        histogram.reset();
        taken
    }
}

impl Default for Totals {
    fn default() -> Totals {
        Totals {
            counts: Mutex::default(),
            messages: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            jitter: Latency::default(),
            round_trip: Latency::default(),
            acknowledged: Latency::default(),
            longest_gap: Latency::default(),
            reconnects: AtomicU64::new(0),
            command_retries: AtomicU64::new(0),
            commands_lost: AtomicU64::new(0),
            measuring: AtomicBool::new(false),
        }
    }
}

impl Totals {
    /// Keeps `value` in `latency` while measuring.
    pub fn sample(&self, latency: &Latency, value: Duration) {
        if self.measuring.load(Ordering::Relaxed) {
            let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX).max(1);
            let _ = latency.0.lock().unwrap().record(micros.min(600_000_000));
        }
    }

    /// Adds one browser's findings since it last reported.
    pub fn add(&self, counts: Counts) {
        self.counts.lock().unwrap().add(counts);
    }

    /// Everything found so far.
    pub fn counts(&self) -> Counts {
        *self.counts.lock().unwrap()
    }

    /// Prints the latency lines: `NAME_pP_ms`, one per percentile.
    pub fn print_latencies(&self, jitter: bool) {
        if jitter {
            print_percentiles("jitter", &self.jitter.take(), &[50.0, 99.0]);
        }
        let round_trip = self.round_trip.take();
        println!("round_trip_samples  {}", round_trip.len());
        print_percentiles("round_trip", &round_trip, &[50.0, 95.0, 99.0]);
        print_percentiles("acknowledged", &self.acknowledged.take(), &[50.0, 99.0]);
        let gaps = self.longest_gap.take();
        if !gaps.is_empty() {
            print_percentiles("longest_gap", &gaps, &[50.0, 99.0, 100.0]);
        }
    }

    /// Keeps `value` in `latency` whether measuring or not.
    pub fn record(&self, latency: &Latency, value: Duration) {
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = latency.0.lock().unwrap().record(micros.min(600_000_000));
    }
}

fn print_percentiles(name: &str, histogram: &Histogram<u64>, percentiles: &[f64]) {
    for &p in percentiles {
        let key = format!("{name}_p{p}_ms");
        if histogram.is_empty() {
            println!("{key:<20}n/a");
        } else {
            let ms = histogram.value_at_quantile(p / 100.0) as f64 / 1000.0;
            println!("{key:<20}{ms:.2}");
        }
    }
}

/// Resident memory of a process, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time a process spent, in clock ticks (`USER_HZ`), from /proc.
#[derive(Clone, Copy)]
pub struct CpuTicks {
    /// In user space.
    pub user: u64,
    /// In the kernel on its behalf (system calls, its sockets' writes).
    pub system: u64,
}

impl CpuTicks {
    /// User and system time together.
    pub fn total(self) -> u64 {
        self.user + self.system
    }

    /// The time from `self` to `later`.
    pub fn until(self, later: CpuTicks) -> CpuTicks {
        CpuTicks {
            user: later.user.saturating_sub(self.user),
            system: later.system.saturating_sub(self.system),
        }
    }
}

/// User and system CPU time of a process, from /proc.
pub fn cpu_ticks(pid: u32) -> Option<CpuTicks> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(CpuTicks {
        user: utime,
        system: stime,
    })
}

/// The machine's CPU time so far, in clock ticks over every core, from
/// /proc/stat: all of it, and what the hypervisor took for other guests
/// (steal: time a runnable virtual CPU did not run).
#[derive(Clone, Copy)]
pub struct MachineTicks {
    /// Every state's ticks together.
    pub total: u64,
    /// Stolen by the hypervisor.
    pub steal: u64,
}

/// The machine's CPU time so far (see [`MachineTicks`]).
pub fn machine_ticks() -> Option<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal guest guest_nice;
    // guest time is counted in user time already.
    Some(MachineTicks {
        total: fields.iter().take(8).sum(),
        steal: *fields.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_count_only_while_measuring() {
        let totals = Totals::default();
        totals.sample(&totals.jitter, Duration::from_millis(5));
        assert!(totals.jitter.take().is_empty());
        totals.measuring.store(true, Ordering::Relaxed);
        for ms in 1..=100 {
            totals.sample(&totals.jitter, Duration::from_millis(ms));
        }
        let histogram = totals.jitter.take();
        assert_eq!(histogram.len(), 100);
        let p99 = histogram.value_at_quantile(0.99);
        assert!((98_000..=100_000).contains(&p99), "{p99}");
    }
}
