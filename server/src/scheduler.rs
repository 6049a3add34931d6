//! The clock that timed runs step by: one timer for all of them, firing
//! once per tick.
//!
//! A run that steps every few hundred milliseconds does not sleep on a
//! timer of its own. It waits in the scheduler's calendar, in the slot of
//! the tick its step is due in (its due time rounded up to the tick), and
//! the scheduler's driver wakes a whole slot at once. The runs step on the
//! tasks' threads and leave what they published in the scheduler's outbox;
//! at the next tick the driver, on the threads that serve the streams,
//! rings every doorbell in it. The streams' thread is woken once per tick,
//! not once per event, and the streams of one tick are written in one pass.
//!
//! The scheduler knows nothing of runs: it hands out [`Wait`]s, futures
//! that finish at the start of a tick, and rings [`Doorbell`]s.

use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};
use tokio_util::sync::CancellationToken;

/// Tick `n` starts `n` ticks after the scheduler's epoch.
type Tick = u64;

/// What tells a run's subscribers that a version is published.
pub trait Doorbell: Send + Sync {
    /// Rings for `version` (a doorbell only ever moves forward).
    fn ring(&self, version: u64);
}

/// Owns the calendar of waiting runs and the driver that wakes them.
#[derive(Clone)]
pub struct Scheduler {
    shared: Arc<Shared>,
}

/// What the waits and the driver share.
struct Shared {
    /// The granularity (`sessions.tick-ms`): waits due within one tick
    /// finish together.
    tick: Duration,
    /// When tick 0 starts.
    epoch: Instant,
    /// The waits not due yet, by tick.
    calendar: Mutex<Calendar>,
    /// Rung when a wait lands in a tick earlier than the one the driver
    /// sleeps until (or when it sleeps with nothing to wait for).
    earlier: Notify,
    /// Cancelled when the driver must stop.
    stop: CancellationToken,
}

/// The slots of the ticks that have waits.
#[derive(Default)]
struct Calendar {
    /// Each tick's waits, by their ids, with the waker to call.
    slots: BTreeMap<Tick, Vec<(u64, Waker)>>,
    /// The id of the next wait registered.
    next_id: u64,
    /// The tick the driver sleeps until, if it sleeps until one.
    armed: Option<Tick>,
    /// The versions published since the last tick, rung at the next.
    outbox: Vec<(Arc<dyn Doorbell>, u64)>,
}

impl Scheduler {
    /// A scheduler of `tick` (at least 1 ms) whose driver runs on the
    /// caller's tokio runtime until [`Scheduler::stop`].
    pub fn start(tick: Duration) -> Scheduler {
        let scheduler = Scheduler {
            shared: Arc::new(Shared {
                tick: tick.max(Duration::from_millis(1)),
                epoch: Instant::now(),
                calendar: Mutex::new(Calendar::default()),
                earlier: Notify::new(),
                stop: CancellationToken::new(),
            }),
        };
        tokio::spawn(scheduler.clone().drive());
        scheduler
    }

    /// Finishes at the start of the first tick at or after `due`: at most
    /// one tick late, never early.
    pub fn until(&self, due: Instant) -> Wait {
        let tick = self.shared.tick_at_or_after(due);
        Wait {
            shared: self.shared.clone(),
            deadline: self.shared.start_of(tick),
            tick,
            id: None,
        }
    }

    /// Rings `doorbell` for `version` at the next tick, with every other
    /// doorbell of that tick.
    pub fn publish(&self, doorbell: Arc<dyn Doorbell>, version: u64) {
        let next = self.shared.tick_at_or_before(Instant::now()) + 1;
        let mut calendar = self.shared.calendar();
        calendar.outbox.push((doorbell, version));
        let earlier = calendar.outbox.len() == 1 && calendar.armed.is_none_or(|armed| next < armed);
        drop(calendar);
        if earlier {
            self.shared.earlier.notify_one();
        }
    }

    /// Stops the driver; waits not finished yet never finish.
    pub fn stop(&self) {
        self.shared.stop.cancel();
    }

    /// The driver: sleeps until the earliest tick with waits (or the next
    /// tick, when there are versions to announce), then rings the
    /// doorbells of the last tick and wakes every wait due by now, all at
    /// once.
    async fn drive(self) {
        let shared = &self.shared;
        loop {
            let now = shared.tick_at_or_before(Instant::now());
            let next = shared.calendar().arm(now + 1);
            let sleep = async {
                match next {
                    Some(tick) => tokio::time::sleep_until(shared.start_of(tick)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shared.stop.cancelled() => return,
                () = shared.earlier.notified() => {}
                () = sleep => {
                    let now = shared.tick_at_or_before(Instant::now());
                    let (rung, due) = shared.calendar().take_due(now);
                    for (doorbell, version) in rung {
                        doorbell.ring(version);
                    }
                    for waker in due {
                        waker.wake();
                    }
                }
            }
        }
    }
}

impl Shared {
    fn calendar(&self) -> std::sync::MutexGuard<'_, Calendar> {
        self.calendar.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start_of(&self, tick: Tick) -> Instant {
        let nanos = u128::from(tick) * self.tick.as_nanos();
        self.epoch + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The tick `at` falls in.
    fn tick_at_or_before(&self, at: Instant) -> Tick {
        self.ticks_to(at, |since, tick| since / tick)
    }

    /// The first tick that starts at or after `at`.
    fn tick_at_or_after(&self, at: Instant) -> Tick {
        self.ticks_to(at, u128::div_ceil)
    }

    /// The ticks from the epoch to `at`, rounded by `round` (nanoseconds
    /// since the epoch, nanoseconds per tick).
    fn ticks_to(&self, at: Instant, round: fn(u128, u128) -> u128) -> Tick {
        let since = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(round(since, self.tick.as_nanos())).unwrap_or(u64::MAX)
    }
}

impl Calendar {
    /// The tick the driver now sleeps until: the earliest with waits, or
    /// `next` if that is earlier and there are versions to announce.
    fn arm(&mut self, next: Tick) -> Option<Tick> {
        let waits = self.slots.first_key_value().map(|(tick, _)| *tick);
        let announce = (!self.outbox.is_empty()).then_some(next);
        self.armed = waits.into_iter().chain(announce).min();
        self.armed
    }

    /// Takes the versions to announce, and the wakers of every tick up to
    /// `now`.
    #[allow(clippy::type_complexity)]
    fn take_due(&mut self, now: Tick) -> (Vec<(Arc<dyn Doorbell>, u64)>, Vec<Waker>) {
        let later = self.slots.split_off(&(now + 1));
        let due = std::mem::replace(&mut self.slots, later);
        let wakers = due.into_values().flatten().map(|(_, waker)| waker);
        (std::mem::take(&mut self.outbox), wakers.collect())
    }

    /// Puts a wait's waker in `tick`'s slot (replacing the one it had
    /// there); true if the driver must wake to sleep until an earlier tick.
    fn register(&mut self, tick: Tick, id: &mut Option<u64>, waker: &Waker) -> bool {
        let slot = self.slots.entry(tick).or_default();
        match id.and_then(|id| slot.iter_mut().find(|(each, _)| *each == id)) {
            Some((_, known)) => {
                if !known.will_wake(waker) {
                    *known = waker.clone();
                }
                false
            }
            None => {
                let new = self.next_id;
                self.next_id += 1;
                *id = Some(new);
                slot.push((new, waker.clone()));
                self.armed.is_none_or(|armed| tick < armed)
            }
        }
    }

    /// Takes a wait that is no longer wanted out of `tick`'s slot.
    fn deregister(&mut self, tick: Tick, id: u64) {
        if let Some(slot) = self.slots.get_mut(&tick) {
            slot.retain(|(each, _)| *each != id);
            if slot.is_empty() {
                self.slots.remove(&tick);
            }
        }
    }
}

/// Finishes at the start of its tick (see [`Scheduler::until`]).
pub struct Wait {
    shared: Arc<Shared>,
    /// When its tick starts.
    deadline: Instant,
    /// Its tick.
    tick: Tick,
    /// Its id in the tick's slot, once registered.
    id: Option<u64>,
}

impl Future for Wait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if Instant::now() >= this.deadline {
            if let Some(id) = this.id.take() {
                this.shared.calendar().deregister(this.tick, id);
            }
            return Poll::Ready(());
        }
        let earlier = this
            .shared
            .calendar()
            .register(this.tick, &mut this.id, cx.waker());
        if earlier {
            this.shared.earlier.notify_one();
        }
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.shared.calendar().deregister(self.tick, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_finish_at_the_start_of_their_tick_never_early() {
        let scheduler = Scheduler::start(Duration::from_millis(2));
        let start = Instant::now();
        scheduler.until(start + Duration::from_millis(3)).await;
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(4),
            "rounded up to the tick"
        );
        let at = Instant::now();
        scheduler.until(at + Duration::from_millis(10)).await;
        assert_eq!(
            at.elapsed(),
            Duration::from_millis(10),
            "on a tick: not late"
        );
        scheduler.until(Instant::now()).await;
        assert_eq!(at.elapsed(), Duration::from_millis(10), "due now: at once");
        scheduler.stop();
    }

    #[tokio::test(start_paused = true)]
    async fn waits_due_in_one_tick_finish_together() {
        let scheduler = Scheduler::start(Duration::from_millis(5));
        let start = Instant::now();
        let waits = (1..=5).map(|ms| {
            let wait = scheduler.until(start + Duration::from_millis(ms));
            async move {
                wait.await;
                Instant::now()
            }
        });
        let finished = futures::future::join_all(waits).await;
        assert!(finished
            .iter()
            .all(|at| *at == start + Duration::from_millis(5)));
        scheduler.stop();
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_wait_wakes_a_driver_armed_for_later() {
        let scheduler = Scheduler::start(Duration::from_millis(1));
        let start = Instant::now();
        let late = tokio::spawn({
            let wait = scheduler.until(start + Duration::from_secs(10));
            async move {
                wait.await;
                Instant::now()
            }
        });
        tokio::task::yield_now().await;
        scheduler.until(start + Duration::from_millis(20)).await;
        assert_eq!(start.elapsed(), Duration::from_millis(20));
        assert_eq!(late.await.unwrap(), start + Duration::from_secs(10));
        scheduler.stop();
    }

    #[derive(Default)]
    struct Rung(Mutex<Vec<(u64, Instant)>>);

    impl Doorbell for Rung {
        fn ring(&self, version: u64) {
            self.0.lock().unwrap().push((version, Instant::now()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn what_is_published_is_rung_at_the_next_tick_together() {
        let scheduler = Scheduler::start(Duration::from_millis(2));
        let start = Instant::now();
        let (a, b) = (Arc::new(Rung::default()), Arc::new(Rung::default()));
        tokio::time::sleep(Duration::from_micros(500)).await;
        scheduler.publish(a.clone(), 1);
        scheduler.publish(b.clone(), 7);
        scheduler.publish(a.clone(), 2);
        tokio::time::sleep(Duration::from_millis(3)).await;
        let tick = start + Duration::from_millis(2);
        assert_eq!(*a.0.lock().unwrap(), [(1, tick), (2, tick)]);
        assert_eq!(*b.0.lock().unwrap(), [(7, tick)]);
        scheduler.stop();
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_wait_leaves_no_slot() {
        let scheduler = Scheduler::start(Duration::from_millis(1));
        let start = Instant::now();
        {
            let mut wait = std::pin::pin!(scheduler.until(start + Duration::from_secs(1)));
            let waker = futures::task::noop_waker();
            assert!(wait
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending());
            assert_eq!(scheduler.shared.calendar().slots.len(), 1);
        }
        assert!(scheduler.shared.calendar().slots.is_empty());
        scheduler.stop();
    }
}
