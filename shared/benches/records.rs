//! Record search against a plain loop: starts checked per second on one
//! core and on every core, the records of `[1, N]`, and that both find the
//! same records. Not criterion: a run is minutes, not microseconds.
//!
//! `cargo bench -p shared --bench records -- [N] [PLAIN_N]` (defaults
//! 10^9 and 10^8); `scripts/bench.sh records` runs it; figures in
//! BENCHMARKS.md.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use shared::records::{plain, scan, Search, Stretch};

/// Starts per stretch a thread takes at a time.
const STRETCH: u64 = 1 << 20;

/// The records of `[from, to]`, stretches shared among `threads` threads.
fn search(from: u64, to: u64, threads: usize) -> Search {
    let count = (to - from) / STRETCH + 1;
    let taken = AtomicU64::new(0);
    let mut done: Vec<(u64, Stretch)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = taken.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            return mine;
                        }
                        let first = from + i * STRETCH;
                        let last = to.min(first + STRETCH - 1);
                        mine.push((i, scan(from, first, last)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("a worker"))
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    let mut search = Search::new(from, to).expect("a range");
    for (_, stretch) in &done {
        search.absorb(stretch);
    }
    search
}

fn rate(starts: u64, seconds: f64) -> String {
    format!("{:.3e} starts/s ({seconds:.2} s)", starts as f64 / seconds)
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(|a| {
            a.replace('_', "")
                .parse::<u64>()
                .expect("a number of starts")
        });
    let n = args.next().unwrap_or(1_000_000_000);
    let plain_n = args.next().unwrap_or(100_000_000).min(n);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());

    let began = Instant::now();
    let reference = plain(1, plain_n);
    let plain_s = began.elapsed().as_secs_f64();
    println!(
        "plain loop, [1, {plain_n}], one core: {}",
        rate(plain_n, plain_s)
    );

    let began = Instant::now();
    let same = search(1, plain_n, 1);
    let same_s = began.elapsed().as_secs_f64();
    assert_eq!(
        same.records(),
        &reference[..],
        "the search finds what the plain loop finds"
    );
    println!(
        "search, [1, {plain_n}], one core: {} — {:.1} x the plain loop, the same {} records",
        rate(plain_n, same_s),
        plain_s / same_s,
        reference.len()
    );

    let began = Instant::now();
    let one = search(1, n, 1);
    let one_s = began.elapsed().as_secs_f64();
    println!("search, [1, {n}], one core: {}", rate(n, one_s));

    let began = Instant::now();
    let all = search(1, n, cores);
    let all_s = began.elapsed().as_secs_f64();
    assert_eq!(
        all.records(),
        one.records(),
        "as many threads, the same records"
    );
    println!(
        "search, [1, {n}], {cores} cores: {} — {:.2} x one core",
        rate(n, all_s),
        one_s / all_s
    );
    println!("records of [1, {n}]: {}", all.records().len());
    for record in all.records() {
        println!(
            "  {:?} {} {} {}",
            record.kind, record.start, record.steps, record.peak
        );
    }
}
