//! The background tasks: one stepper per running run, tracked so shutdown
//! can cancel and wait for every one.
//!
//! In the server the steppers run on a runtime of their own, whose threads
//! run at a lower OS priority than the threads that answer requests.
//! Stepping as fast as possible then takes the CPU only while no request or
//! stream needs it, so the page stays interactive however busy the tasks
//! are. A timed run has no timer of its own: it waits in the
//! [`Scheduler`]'s calendar, which wakes the runs of one tick together, and
//! its steps are announced to their streams by the scheduler at the next
//! tick, all at once: one wake-up of the streams' thread per tick, not one
//! per event.

use std::{
    panic::AssertUnwindSafe,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use futures::FutureExt;
use shared::{
    task::Task,
    wire::{Change, Failure},
};
use tokio::{
    runtime::{Handle, Runtime},
    sync::{watch, Semaphore},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use crate::{
    backend::CommitError,
    cluster::Cluster,
    metrics::Metrics,
    scheduler::Scheduler,
    session::{Session, Started, StepError, Stepped},
};

/// Steps per lock section at interval 0; at most a checkpoint's worth (see
/// `local::RESTORE_VERSION_GAP`).
const BURST: usize = 32;
const _: () = assert!(BURST as u64 <= crate::local::CHECKPOINT_EVERY);

/// How long a task waits before trying again when its steps could not be
/// committed because the store is unreachable (no step without a commit).
const RETRY_AFTER: Duration = Duration::from_millis(250);

/// At interval 0, a task announces its steps after this many batches or
/// [`ANNOUNCE_EVERY`], whichever comes first, not after each batch: each
/// announcement wakes the threads that serve streams (on a shared core, a
/// switch of threads each). Four batches are 128 values, well inside the
/// window a subscriber catches up from.
const ANNOUNCE_AFTER_BATCHES: u32 = 4;
/// See [`ANNOUNCE_AFTER_BATCHES`].
const ANNOUNCE_EVERY: Duration = Duration::from_millis(1);

/// The nice value of the tasks' threads: below request handling (0), so the
/// kernel runs a request as soon as it arrives, yet not starved (19).
const NICENESS: i32 = 10;

/// Owns every background task.
pub struct Tasks {
    /// What each task is spawned with.
    crew: Crew,
    /// The tasks' own runtime, if they have one; shut down after the last
    /// task has ended.
    own: Mutex<Option<Runtime>>,
}

/// The threads that do the work of steps outside their run's lock (see
/// `Task::plan`): `ways` threads of their own at the lowest priority
/// there is (`SCHED_IDLE`: the CPU that requests, streams and steps leave
/// over), one piece at a time each. In a cluster the pieces
/// are chunks shared by every node (see [`crate::chunks`]).
#[derive(Clone)]
pub struct Workers {
    /// One per piece of work being done.
    permits: Arc<Semaphore>,
    /// How many pieces all runs do at once here.
    ways: usize,
    /// How many pieces one run plans at once: `ways`, or in a cluster
    /// every node's (as the nodes last said).
    planned: Arc<AtomicUsize>,
    /// The cluster the pieces are shared in, in cluster mode.
    cluster: Option<Arc<Cluster>>,
    /// The threads, started on the first piece.
    pool: Arc<std::sync::OnceLock<Pool>>,
}

/// A piece of work for the pool.
type Piece = Box<dyn FnOnce() + Send>;

/// `Workers`' threads and the queue they take pieces from.
struct Pool {
    pieces: std::sync::mpsc::Sender<Piece>,
}

impl Pool {
    /// `threads` threads, each lowered to `SCHED_IDLE`; they end when the
    /// pool is dropped.
    fn start(threads: usize) -> Pool {
        let (pieces, queue) = std::sync::mpsc::channel::<Piece>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..threads {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name("hailstone-work".into())
                .spawn(move || {
                    idle_priority();
                    loop {
                        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match next {
                            Ok(piece) => piece(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a work thread");
            }
        }
        Pool { pieces }
    }

    /// Runs `work` on a thread of the pool; its panic, if it panics.
    async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> std::thread::Result<R> {
        let (done, result) = tokio::sync::oneshot::channel();
        let piece: Piece = Box::new(move || {
            let _ = done.send(std::panic::catch_unwind(AssertUnwindSafe(work)));
        });
        if self.pieces.send(piece).is_err() {
            return Err(Box::new("the work threads are gone"));
        }
        result
            .await
            .unwrap_or_else(|_| Err(Box::new("a work thread ended")))
    }
}

/// Moves the calling thread to `SCHED_IDLE`: it runs only when nothing
/// else wants the CPU, and yields at once to any thread that wakes. Best
/// effort: otherwise it keeps the tasks' nice value.
fn idle_priority() {
    lower_priority();
    #[cfg(target_os = "linux")]
    // SAFETY: a plain system call on the calling thread with a valid
    // parameter block.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "cannot give the work threads the idle priority"
            );
        }
    }
}

/// How often a run's node looks for the results of its chunks.
const RESULTS_EVERY: Duration = Duration::from_millis(5);
/// The longest an idle chunk worker waits before it looks again (it looks
/// again at once after a chunk, and backs off from 5 ms while none come).
const IDLE_AT_MOST: Duration = Duration::from_millis(50);

impl Workers {
    /// Up to `ways` pieces at once (at least one).
    pub fn new(ways: usize) -> Workers {
        let ways = ways.max(1);
        Workers {
            permits: Arc::new(Semaphore::new(ways)),
            ways,
            planned: Arc::new(AtomicUsize::new(ways)),
            cluster: None,
            pool: Arc::new(std::sync::OnceLock::new()),
        }
    }

    /// Runs one piece of work on the pool, which starts on the first.
    async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> std::thread::Result<R> {
        self.pool
            .get_or_init(|| Pool::start(self.ways))
            .run(work)
            .await
    }

    /// How many pieces a run plans at once.
    fn planned(&self) -> usize {
        self.planned.load(Ordering::Relaxed).max(1)
    }

    /// One per core.
    fn per_core() -> Workers {
        Workers::new(std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// Does `plans` at once, each on a work thread once a
    /// permit is free; `None` if `cancel` comes first (work already begun
    /// finishes unseen). A piece that panics panics the task, whose run is
    /// then failed.
    async fn work<T: Task>(
        &self,
        plans: Vec<T::Plan>,
        cancel: &CancellationToken,
    ) -> Option<Vec<T::Work>> {
        if let Some(cluster) = &self.cluster {
            return shared_work::<T>(cluster, plans, cancel).await;
        }
        let pieces = plans.into_iter().map(|plan| {
            let permits = self.permits.clone();
            async move {
                let permit = permits.acquire_owned().await.expect("never closed");
                self.run(move || {
                    let work = T::work(plan);
                    drop(permit);
                    work
                })
                .await
            }
        });
        let done = tokio::select! {
            biased;
            () = cancel.cancelled() => return None,
            done = futures::future::join_all(pieces) => done,
        };
        let work = done.into_iter().map(|piece| match piece {
            Ok(work) => work,
            Err(panic) => std::panic::resume_unwind(panic),
        });
        Some(work.collect())
    }
}

impl Tasks {
    /// Tasks on the caller's runtime (tests use it to pause time), whose
    /// timed runs wait in a scheduler of `tick`.
    pub fn new(metrics: Arc<Metrics>, tick: Duration) -> Tasks {
        Tasks {
            crew: Crew {
                tracker: TaskTracker::new(),
                tasks: Handle::current(),
                scheduler: Scheduler::start(tick),
                metrics,
                max_steps: u64::MAX,
                workers: Workers::per_core(),
            },
            own: Mutex::new(None),
        }
    }

    /// The same tasks, failing a run once it has taken `max_steps`.
    pub fn limited_to(mut self, max_steps: u64) -> Tasks {
        self.crew.max_steps = max_steps;
        self
    }

    /// The same tasks, doing steps' work `ways` pieces at once (0: one
    /// per core), shared with the other nodes of `cluster` if there is one.
    pub fn working_in(mut self, ways: usize, cluster: Option<Arc<Cluster>>) -> Tasks {
        let workers = match ways {
            0 => Workers::per_core(),
            ways => Workers::new(ways),
        };
        self.crew.workers = Workers { cluster, ..workers };
        self
    }

    /// Tasks on a runtime of their own, whose threads run at a lower OS
    /// priority than the caller's. It has as many threads as tokio gives a
    /// runtime by default (one per core, or `TOKIO_WORKER_THREADS`), so the
    /// tasks can use every core that requests leave idle. The scheduler's
    /// driver runs on the caller's runtime, where the streams are served.
    pub fn on_own_threads(metrics: Arc<Metrics>, tick: Duration) -> std::io::Result<Tasks> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("hailstone-tasks")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        let mut tasks = Tasks::new(metrics, tick);
        tasks.crew.tasks = runtime.handle().clone();
        tasks.own = Mutex::new(Some(runtime));
        Ok(tasks)
    }

    /// Spawns the stepper a command started. If it panics, its run is
    /// failed, so the switch never says running while nothing runs.
    pub fn spawn<T: Task>(&self, session: Arc<Session<T>>, started: Started) {
        let span = tracing::info_span!(
            "task",
            session = %session.id().short(),
            generation = started.generation
        );
        let crew = self.crew.clone();
        crew.metrics.running_tasks.inc();
        self.crew.tracker.spawn_on(
            async move {
                let generation = started.generation;
                let stepping = async {
                    let stepper = Stepper::start(session.clone(), started, &crew.workers).await;
                    step_until_stopped(stepper, &crew).await;
                };
                if AssertUnwindSafe(stepping).catch_unwind().await.is_err() {
                    tracing::error!("task panicked; its run is failed");
                    session.halt(generation, Failure::Crashed).await;
                }
                crew.metrics.running_tasks.dec();
            }
            .instrument(span),
            &self.crew.tasks,
        );
    }

    /// Stops accepting tasks and waits until every one has ended (their
    /// tokens are children of the shutdown token, so they end promptly),
    /// then stops the scheduler and shuts the tasks' own runtime down, if
    /// they have one.
    pub async fn wait(&self) {
        self.crew.tracker.close();
        self.crew.tracker.wait().await;
        self.crew.scheduler.stop();
        let own = self.own.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(runtime) = own {
            // Dropping a runtime joins its threads: not on a runtime's own.
            let _ = tokio::task::spawn_blocking(move || drop(runtime)).await;
        }
    }

    /// The runtime the tasks run on.
    pub fn handle(&self) -> &Handle {
        &self.crew.tasks
    }

    /// Where steps' work is done.
    pub fn workers(&self) -> &Workers {
        &self.crew.workers
    }

    /// Tasks alive now.
    pub fn len(&self) -> usize {
        self.crew.tracker.len()
    }

    /// True when no task is alive.
    pub fn is_empty(&self) -> bool {
        self.crew.tracker.is_empty()
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.crew.scheduler.stop();
    }
}

/// What every run's task needs: cloned into each.
#[derive(Clone)]
struct Crew {
    /// Every task spawned, so shutdown can wait for them.
    tracker: TaskTracker,
    /// The runtime the tasks run on.
    tasks: Handle,
    /// The clock timed runs wait on, and announces their steps.
    scheduler: Scheduler,
    /// Counts tasks and steps.
    metrics: Arc<Metrics>,
    /// The most steps one run may take (`sessions.max-steps`).
    max_steps: u64,
    /// Where steps' work is done outside the lock.
    workers: Workers,
}

/// Lowers the calling thread's scheduling priority to [`NICENESS`]. Best
/// effort: at worst the tasks share the CPU evenly with requests.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread; no memory is shared.
    unsafe {
        // On Linux the nice value belongs to the thread, named by its id.
        let thread = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, thread, NICENESS) != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "cannot lower the tasks' priority; they share the CPU evenly with requests"
            );
        }
    }
}

/// One run's stepping: what its task's loop keeps between batches.
struct Stepper<T: Task> {
    session: Arc<Session<T>>,
    /// The generation it steps for.
    generation: u64,
    /// Cancelled when the run is no longer wanted (stop, shutdown).
    cancel: CancellationToken,
    /// When it steps next.
    beat: Beat,
    /// Steps the run has taken.
    steps: u64,
    /// The work of the next steps, planned by the last one.
    plans: Vec<T::Plan>,
    /// The store was unreachable at the last try (logged once per outage).
    unreachable: bool,
}

impl<T: Task> Stepper<T> {
    /// The stepper of the task `started`: its beat, and the steps taken
    /// and the work of the next step as the state has them.
    async fn start(session: Arc<Session<T>>, started: Started, workers: &Workers) -> Stepper<T> {
        let beat = Beat::new(&session, started.since_step).await;
        let (steps, plans) = session
            .read(|machine| match machine.run() {
                Some(run) if !run.done() => (
                    run.steps(),
                    run.plan(&machine.settings(), workers.planned()),
                ),
                run => (run.map_or(0, T::steps), Vec::new()),
            })
            .await;
        Stepper {
            session,
            generation: started.generation,
            cancel: started.cancel,
            beat,
            steps,
            plans,
            unreachable: false,
        }
    }

    /// Takes the next batch of steps (up to `batch`, or one per piece of
    /// `work`) in the lock section; what the task does next.
    async fn take_steps(
        &mut self,
        batch: usize,
        work: Vec<T::Work>,
        workers: &Workers,
        metrics: &Metrics,
    ) -> Turn<T> {
        let stepped = self
            .session
            .step(self.generation, batch, work, workers.planned())
            .await;
        match stepped {
            Ok(stepped) => {
                self.unreachable = false;
                // Counted before it is announced, so `/metrics` never lags
                // behind what subscribers were told.
                metrics
                    .steps
                    .inc_by(stepped.delta.version - stepped.delta.base);
                self.steps = stepped.delta.change.steps();
                Turn::Stepped(stepped)
            }
            Err(StepError::Refused(refused)) => {
                tracing::debug!(?refused, "refused");
                Turn::Stop
            }
            Err(StepError::Commit(CommitError::Conflict)) => {
                self.beat.at_once = true;
                Turn::Again
            }
            Err(StepError::Commit(
                CommitError::Unavailable(error) | CommitError::Damaged(error),
            )) => {
                if !std::mem::replace(&mut self.unreachable, true) {
                    tracing::warn!(%error, "steps cannot be committed; the run waits for the store");
                }
                tokio::select! {
                    () = self.cancel.cancelled() => Turn::Stop,
                    () = tokio::time::sleep(RETRY_AFTER) => Turn::Again,
                }
            }
            Err(StepError::Commit(CommitError::Fenced)) => {
                metrics.fenced_commits.inc();
                tracing::warn!("another node took the run over; this task stops");
                Turn::Stop
            }
            Err(StepError::Commit(CommitError::Gone)) => {
                tracing::warn!("the session is gone from the store; its task stops");
                Turn::Stop
            }
        }
    }
}

/// What a batch of steps leaves the task to do.
enum Turn<T: Task> {
    /// They were taken: announce them, await their checkpoint.
    Stepped(Stepped<T::Change, T::Plan>),
    /// None was taken; try again (the beat says when).
    Again,
    /// None was taken, nor will be: the task ends.
    Stop,
}

/// When a task steps next: the interval as the lock section last set it,
/// kept as a steady beat.
struct Beat {
    /// The interval: a change wakes the wait, so a task sleeping 10 s steps
    /// at once when the user picks 0.
    interval_ms: watch::Receiver<u32>,
    /// A node renews its lease this often while the interval is longer.
    renew_every: Option<Duration>,
    /// When the last step was due; the next is one interval later (a run
    /// taken over keeps the beat it had on its old node).
    last_due: Instant,
    /// Step again without waiting (another node changed the state first).
    at_once: bool,
}

/// What a beat says.
enum Next {
    /// Step now, at this interval.
    Step(Duration),
    /// The task must stop (cancelled, or fenced while renewing).
    Stop,
}

impl Beat {
    async fn new<T: Task>(session: &Session<T>, since_step: Duration) -> Beat {
        Beat {
            interval_ms: session.watch_interval(),
            renew_every: session.renew_every().await,
            last_due: Instant::now()
                .checked_sub(since_step)
                .unwrap_or_else(Instant::now),
            at_once: false,
        }
    }

    /// Waits until the next step is due: in the scheduler's tick, or at
    /// interval 0 after a yield to other tasks.
    async fn next<T: Task>(
        &mut self,
        session: &Session<T>,
        cancel: &CancellationToken,
        crew: &Crew,
    ) -> Next {
        loop {
            let interval = Duration::from_millis(u64::from(*self.interval_ms.borrow_and_update()));
            if interval.is_zero() || std::mem::take(&mut self.at_once) {
                // As fast as possible, but let other tasks run.
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => return Next::Stop,
                    () = tokio::task::yield_now() => {
                        self.last_due = Instant::now();
                        return Next::Step(interval);
                    }
                }
            }
            // Keep a steady beat; after a stall, start again from now rather
            // than stepping in a burst.
            let due = (self.last_due + interval).max(Instant::now());
            let renew_every = self.renew_every;
            let renewal = async {
                match renew_every {
                    Some(every) if every < interval => tokio::time::sleep(every).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Next::Stop,
                () = crew.scheduler.until(due) => {
                    self.last_due = due;
                    return Next::Step(interval);
                }
                // The interval changed: wait the new one from the last step.
                Ok(()) = self.interval_ms.changed() => {}
                // A long interval: the lease must not lapse meanwhile.
                () = renewal => {
                    if session.renew().await == Err(CommitError::Fenced) {
                        crew.metrics.fenced_commits.inc();
                        tracing::warn!("another node took the run over; this task stops");
                        return Next::Stop;
                    }
                }
            }
        }
    }
}

/// The task's loop: wait for the beat outside the lock (or, for steps that
/// have work, do it there: they go as fast as it is done), then in the lock
/// section take the steps if this task's generation is still the current
/// one and they are committed. Ends when refused (stopped, superseded,
/// finished, fenced by another node), cancelled, or when the run has taken
/// `max_steps` (it is failed, saying so).
async fn step_until_stopped<T: Task>(mut stepper: Stepper<T>, crew: &Crew) {
    tracing::debug!("started");
    let mut coalescing = Coalescing::default();
    loop {
        let steps = stepper.steps;
        if steps >= crew.max_steps {
            coalescing.flush(&stepper.session);
            tracing::warn!(
                max_steps = crew.max_steps,
                "the run took as many steps as one run may; it is failed"
            );
            stepper
                .session
                .halt(stepper.generation, Failure::StepLimit)
                .await;
            break;
        }
        let left = usize::try_from(crew.max_steps - steps).unwrap_or(usize::MAX);
        let (interval, mut work) = if stepper.plans.is_empty() {
            let next = stepper
                .beat
                .next(&stepper.session, &stepper.cancel, crew)
                .await;
            match next {
                Next::Step(interval) => (interval, Vec::new()),
                Next::Stop => break,
            }
        } else {
            // Steps with work go as fast as it is done.
            let plans = std::mem::take(&mut stepper.plans);
            let Some(work) = crew.workers.work::<T>(plans, &stepper.cancel).await else {
                break;
            };
            (Duration::ZERO, work)
        };
        work.truncate(left);
        let worked = !work.is_empty();
        // As fast as possible: several steps per lock section and one
        // published delta for them, so the per-event cost is shared.
        let batch = if interval.is_zero() { BURST } else { 1 }.min(left);
        let stepped = match stepper
            .take_steps(batch, work, &crew.workers, &crew.metrics)
            .await
        {
            Turn::Stepped(stepped) => stepped,
            Turn::Again => continue,
            Turn::Stop => break,
        };
        let Stepped {
            delta,
            checkpoint,
            plans,
        } = stepped;
        stepper.plans = plans;
        let running = delta.still_running();
        if interval.is_zero() || worked {
            // Steps that had work come a few times a second: each is told.
            let hold = interval.is_zero() && !worked && running;
            coalescing.announce(&stepper.session, delta.version, hold);
        } else {
            // A timed step is told with the rest of its tick's.
            crew.scheduler
                .publish(stepper.session.clone(), delta.version);
        }
        // The checkpoint is awaited outside the lock section: a command never
        // waits for the disk behind a step. If it cannot be stored, the run
        // is failed, so the page never says running past what is stored.
        if let Some(checkpoint) = checkpoint {
            if checkpoint.await.is_err() {
                tracing::error!("checkpoint failed; the run is failed");
                coalescing.flush(&stepper.session);
                stepper
                    .session
                    .halt(stepper.generation, Failure::StoreRefused)
                    .await;
                break;
            }
        }
        if !running {
            break;
        }
    }
    coalescing.flush(&stepper.session);
    tracing::debug!("ended");
}

/// At interval 0, the version stepped to but not announced yet, with the
/// batches it holds, and when the last announcement was (real time: tests
/// pause tokio's clock).
struct Coalescing {
    unannounced: Option<(u64, u32)>,
    announced: std::time::Instant,
}

impl Default for Coalescing {
    fn default() -> Coalescing {
        Coalescing {
            unannounced: None,
            announced: std::time::Instant::now(),
        }
    }
}

impl Coalescing {
    /// Announces `version`, or, when `hold` (interval 0), keeps it for a
    /// later batch unless [`ANNOUNCE_AFTER_BATCHES`] or
    /// [`ANNOUNCE_EVERY`] has passed: each announcement wakes the threads
    /// that serve streams, and a batch can come every few microseconds.
    fn announce<T: Task>(&mut self, session: &Session<T>, version: u64, hold: bool) {
        let batches = self.unannounced.map_or(1, |(_, batches)| batches + 1);
        if hold && batches < ANNOUNCE_AFTER_BATCHES && self.announced.elapsed() < ANNOUNCE_EVERY {
            self.unannounced = Some((version, batches));
        } else {
            session.announce(version);
            self.announced = std::time::Instant::now();
            self.unannounced = None;
        }
    }

    /// Announces what was stepped and not announced yet.
    fn flush<T: Task>(&mut self, session: &Session<T>) {
        if let Some((version, _)) = self.unannounced.take() {
            session.announce(version);
        }
    }
}
/// Cluster mode: offers `plans` as chunks to every node and waits for their
/// results, in order; `None` if `cancel` comes first (the chunks are then
/// dropped: one being computed finishes unseen). While Redis cannot be
/// reached it keeps trying.
async fn shared_work<T: Task>(
    cluster: &Cluster,
    plans: Vec<T::Plan>,
    cancel: &CancellationToken,
) -> Option<Vec<T::Work>> {
    let plans: Vec<String> = plans
        .iter()
        .map(|plan| serde_json::to_string(plan).expect("a plan serialises"))
        .collect();
    let ids = loop {
        match cluster.offer_chunks(&plans).await {
            Ok(ids) => break ids,
            Err(error) => tracing::warn!(%error, "cannot offer chunks; trying again"),
        }
        tokio::select! {
            () = cancel.cancelled() => return None,
            () = tokio::time::sleep(RETRY_AFTER) => {}
        }
    };
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                let _ = cluster.drop_chunks(&ids).await;
                return None;
            }
            () = tokio::time::sleep(RESULTS_EVERY) => {}
        }
        let Ok(results) = cluster.chunk_results(&ids).await else {
            continue;
        };
        if results.iter().all(Option::is_some) {
            let _ = cluster.drop_chunks(&ids).await;
            // A result that does not read (a node of another build) is no
            // work: the step does its own.
            let work = results
                .into_iter()
                .flatten()
                .map(|result| serde_json::from_str(&result).unwrap_or_default());
            return Some(work.collect());
        }
    }
}

impl Workers {
    /// Cluster mode: takes chunks of any node's runs while a work thread is
    /// free, until `stop`; each is computed on a work thread under a
    /// lease renewed as it goes, and its result committed once, by this
    /// node while it holds the lease. Chunks whose node died go back to
    /// the queue once their lease lapses (looked for every `scan`).
    pub async fn serve_chunks<T: Task>(
        &self,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
        scan: Duration,
    ) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let reclaiming = {
            let (cluster, stop, ways) = (cluster.clone(), stop.clone(), self.ways);
            let planned = self.planned.clone();
            async move {
                let mut ticks = tokio::time::interval(scan);
                while tokio::select! { () = stop.cancelled() => false, _ = ticks.tick() => true } {
                    if let Ok(all) = cluster.working(ways, scan * 3).await {
                        planned.store(all, Ordering::Relaxed);
                    }
                    if let Ok(back) = cluster.reclaim_chunks().await {
                        if back > 0 {
                            tracing::info!(back, "chunks whose node stopped were put back");
                        }
                    }
                }
            }
        };
        let serving = (0..self.ways).map(|_| take_chunks::<T>(self, &cluster, &metrics, &stop));
        futures::future::join(reclaiming, futures::future::join_all(serving)).await;
    }
}

/// One work thread's loop of [`Workers::serve_chunks`].
async fn take_chunks<T: Task>(
    workers: &Workers,
    cluster: &Arc<Cluster>,
    metrics: &Metrics,
    stop: &CancellationToken,
) {
    let mut idle = Duration::ZERO;
    loop {
        if !idle.is_zero() {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(idle) => {}
            }
        }
        let permit = tokio::select! {
            () = stop.cancelled() => return,
            permit = workers.permits.clone().acquire_owned() => permit.expect("never closed"),
        };
        let taken = match cluster.take_chunk().await {
            Ok(Some(taken)) => taken,
            Ok(None) => {
                idle = (idle * 2).clamp(Duration::from_millis(5), IDLE_AT_MOST);
                continue;
            }
            Err(_) => {
                idle = RETRY_AFTER;
                continue;
            }
        };
        idle = Duration::ZERO;
        let Ok(plan) = serde_json::from_str::<T::Plan>(&taken.plan) else {
            tracing::warn!(chunk = taken.id, "a chunk whose plan does not read is left");
            continue;
        };
        let mut computing = std::pin::pin!(workers.run(move || {
            let work = T::work(plan);
            drop(permit);
            work
        }));
        let mut renew = tokio::time::interval(cluster.lease_period() / 3);
        renew.tick().await;
        let work = loop {
            tokio::select! {
                done = &mut computing => break done,
                _ = renew.tick() => {
                    if cluster.renew_chunk(taken.id).await == Ok(false) {
                        tracing::warn!(chunk = taken.id, "a chunk's lease was lost; another node takes it");
                    }
                }
            }
        };
        let work = match work {
            Ok(work) => work,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let result = serde_json::to_string(&work).expect("work serialises");
        if cluster.finish_chunk(taken.id, &result).await == Ok(true) {
            metrics.chunks_done.inc();
        }
    }
}
