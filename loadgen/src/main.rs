//! Hailstone's load generator: drives a running server over real HTTP as
//! browsers would, and checks every value it is sent.
//!
//! Each simulated browser sets the step interval (its first command, which
//! starts its session and sets its cookie), opens `/events`, starts a run,
//! and reads the stream; every value is checked against the trajectory
//! computed here, so lost, duplicated and out-of-order values are counted
//! exactly. A browser that reads more slowly than its run steps is sent a
//! snapshot of the newest values once it is a window behind; the values it
//! skipped are counted as coalesced, apart. While the tasks run, each browser
//! sends a new number every few seconds and times how long until the stream
//! shows it. Bounded in time; it stops by itself, and exits with 1 when a
//! request failed or a value was lost, duplicated or out of order.
//!
//! By default each browser holds its own HTTP/1.1 connection for its event
//! stream, as a browser talking to the server directly does. With `--http2`,
//! browsers share HTTP/2 connections, that many to a connection, as they do
//! behind a proxy that multiplexes its upstream connections.

mod args;
mod browser;
mod check;
mod report;

use std::{
    process::ExitCode,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use clap::Parser;

use crate::{
    args::Args,
    browser::Browser,
    report::{cpu_ticks, machine_ticks, rss_kib, CpuTicks, Totals},
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    // HTTP/1.1: commands share a small pool of connections, as the event
    // streams already take one socket per browser. HTTP/2: one client, so
    // one connection, per group of browsers.
    let http1 = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build()
        .expect("an HTTP client");
    let per_connection = args.http2.map(|n| n as usize);
    let http2: Vec<reqwest::Client> = per_connection
        .map(|per| {
            (0..args.sessions.div_ceil(per))
                .map(|_| {
                    reqwest::Client::builder()
                        .http2_prior_knowledge()
                        .build()
                        .expect("an HTTP/2 client")
                })
                .collect()
        })
        .unwrap_or_default();
    let client_of = |browser: usize| match per_connection {
        Some(per) => http2[browser / per].clone(),
        None => http1.clone(),
    };
    let totals = Arc::new(Totals::default());
    let idle_rss = args.pid.and_then(rss_kib);
    let stop = tokio_util::sync::CancellationToken::new();

    // Ramp up.
    let ramp = args.ramp_per_sec as usize;
    let ramp_started = Instant::now();
    let mut browsers = Vec::with_capacity(args.sessions);
    let runs = args.runs as usize;
    let mut session = tokio::sync::watch::channel(None).0;
    for id in 0..args.sessions {
        if id % runs == 0 {
            session = tokio::sync::watch::channel(None).0;
        }
        let browser = Browser {
            id,
            args: args.clone(),
            client: client_of(id),
            totals: totals.clone(),
            stop: stop.clone(),
            session: session.clone(),
            adds_run: id % runs != 0,
        };
        browsers.push(tokio::spawn(browser.run()));
        if (id + 1) % ramp.min(args.sessions) == 0 {
            let due = ramp_started + Duration::from_secs(((id + 1) / ramp) as u64);
            tokio::time::sleep_until(due.into()).await;
        }
    }
    // Let the last sessions settle, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = totals.counts();
    let before_messages = totals.messages.load(Ordering::Relaxed);
    let before_steps = steps_total(&http1, &args).await;
    let before_cpu = args.pid.and_then(cpu_ticks);
    let watched_before: Vec<Option<CpuTicks>> =
        args.watch.iter().map(|(_, pid)| cpu_ticks(*pid)).collect();
    let own_before = cpu_ticks(std::process::id());
    let machine_before = machine_ticks();
    totals.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(args.duration).await;
    totals.measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let values = totals.counts().values - before.values;
    let messages = totals.messages.load(Ordering::Relaxed) - before_messages;
    let after_cpu = args.pid.and_then(cpu_ticks);
    let watched_after: Vec<Option<CpuTicks>> =
        args.watch.iter().map(|(_, pid)| cpu_ticks(*pid)).collect();
    let after_steps = steps_total(&http1, &args).await;
    let own_after = cpu_ticks(std::process::id());
    let machine_after = machine_ticks();
    let load_rss = args.pid.and_then(rss_kib);
    stop.cancel();
    for browser in browsers {
        let _ = tokio::time::timeout(Duration::from_secs(10), browser).await;
    }

    // Report.
    println!("sessions            {}", args.sessions);
    println!("interval_ms         {}", args.interval_ms);
    match per_connection {
        Some(per) => println!("transport           http2, {per} browsers per connection"),
        None => println!("transport           http1.1, a connection per browser"),
    }
    println!("measured_s          {elapsed:.1}");
    println!("values_per_s        {:.0}", values as f64 / elapsed);
    println!("messages_per_s      {:.0}", messages as f64 / elapsed);
    // What the server computed, delivered or not.
    if let (Some(before), Some(after)) = (before_steps, after_steps) {
        println!(
            "server_steps_per_s  {:.0}",
            (after - before) as f64 / elapsed
        );
    }
    let counts = totals.counts();
    let errors = totals.errors.load(Ordering::Relaxed);
    let commands_lost = totals.commands_lost.load(Ordering::Relaxed);
    for (name, value) in [
        ("lost", counts.lost),
        ("duplicated", counts.duplicated),
        ("out_of_order", counts.out_of_order),
        ("coalesced", counts.coalesced),
        ("snapshots", totals.snapshots.load(Ordering::Relaxed)),
        ("reconnects", totals.reconnects.load(Ordering::Relaxed)),
        (
            "command_retries",
            totals.command_retries.load(Ordering::Relaxed),
        ),
        ("commands_lost", commands_lost),
        ("errors", errors),
    ] {
        println!("{name:<20}{value}");
    }
    totals.print_latencies(args.interval_ms > 0);
    if let (Some(idle), Some(load)) = (idle_rss, load_rss) {
        println!("rss_idle_kib        {idle}");
        println!("rss_load_kib        {load}");
        println!(
            "rss_per_session_kib {:.1}",
            load.saturating_sub(idle) as f64 / args.sessions as f64
        );
    }
    const TICKS_PER_S: f64 = 100.0; // USER_HZ on Linux
    let percent = |before: Option<CpuTicks>, after: Option<CpuTicks>| {
        before
            .zip(after)
            .map(|(b, a)| b.until(a).total() as f64 / TICKS_PER_S / elapsed * 100.0)
    };
    if let Some(cpu) = percent(before_cpu, after_cpu) {
        println!("server_cpu_percent  {cpu:.0}");
    }
    // What one delivered event (an SSE message a browser read) cost the
    // server, and how much of it was the kernel's.
    if let Some(spent) = before_cpu.zip(after_cpu).map(|(b, a)| b.until(a)) {
        if messages > 0 && spent.total() > 0 {
            let micros = spent.total() as f64 / TICKS_PER_S * 1e6 / messages as f64;
            println!("server_cpu_us_per_event {micros:.1}");
            println!(
                "server_cpu_system_percent {:.0}",
                spent.system as f64 / spent.total() as f64 * 100.0
            );
        }
    }
    for (((name, _), before), after) in args.watch.iter().zip(watched_before).zip(watched_after) {
        if let Some(cpu) = percent(before, after) {
            println!("{:<20}{cpu:.0}", format!("cpu_percent_{name}"));
        }
    }
    // On a virtual machine, time its CPUs were runnable but not running:
    // latency figures of a run with much of it say more about the host.
    if let Some((before, after)) = machine_before.zip(machine_after) {
        let total = after.total.saturating_sub(before.total);
        if total > 0 {
            let steal = after.steal.saturating_sub(before.steal) as f64 / total as f64;
            println!("machine_steal_percent {:.1}", steal * 100.0);
        }
    }
    // Near 100 %, the load generator itself limits the latency figures.
    if let Some(cpu) = percent(own_before, own_after) {
        println!("loadgen_cpu_percent {cpu:.0}");
    }
    if counts.bad() > 0 || errors > 0 || commands_lost > 0 {
        eprintln!(
            "loadgen: FAILED: {} lost, {} duplicated, {} out of order, {commands_lost} \
             acknowledged commands lost, {errors} request errors",
            counts.lost, counts.duplicated, counts.out_of_order
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The server's count of steps taken, from `/metrics` (when the token is
/// given).
async fn steps_total(client: &reqwest::Client, args: &Args) -> Option<u64> {
    let token = args.metrics_token.as_deref()?;
    let addrs = match args.metrics_addrs.as_slice() {
        [] => std::slice::from_ref(&args.addr),
        addrs => addrs,
    };
    let mut total = 0;
    for addr in addrs {
        let text = client
            .get(format!("http://{addr}/metrics"))
            .bearer_auth(token)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        // A node of a cluster labels its metrics with its name. (The same
        // reading as `server::metrics::value_in`: loadgen talks to the
        // server over HTTP only and does not link it.)
        total += text
            .lines()
            .find_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                (name.split('{').next()? == "hailstone_steps_total").then_some(value)
            })?
            .trim()
            .parse::<u64>()
            .ok()?;
    }
    Some(total)
}
