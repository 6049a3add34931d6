//! The server's runtime: one owner per concern (sessions, tasks, metrics,
//! shutdown, limits), and what it does over time (commands, restoring,
//! expiry; in a cluster, bells and the scan for lapsed runs).

use std::{net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

use futures::StreamExt;
use governor::{
    clock::{Clock, DefaultClock},
    DefaultKeyedRateLimiter, Quota, RateLimiter,
};
use shared::{
    task::{Control, Machine, Task},
    wire::CommandError,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    backend::Backend,
    cluster::{self, Cluster},
    config::Config,
    id::{RunId, SessionId},
    metrics::Metrics,
    policy::Policy,
    rosters::Rosters,
    session::Session,
    sessions::{Created, Evicted, Found, Full, Sessions},
    store::{Store, StoreError},
    streams::Streams,
    tasks::Tasks,
};

/// The server's runtime, for sessions running tasks of kind `T`: one
/// owner per concern. It names no task kind.
pub struct Runtime<T: Task> {
    /// Every live session.
    pub sessions: Sessions<T>,
    /// Every background task.
    pub tasks: Tasks,
    /// Live counts for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Cancelled once, at shutdown: ends every task and event stream.
    pub shutdown: CancellationToken,
    /// Cancelled first when the server is told to stop: it takes no new
    /// work (no connection, no run taken over, no run started here), its
    /// streams end (their pages resume elsewhere meanwhile), and in a
    /// cluster it hands its runs over, before shutdown ends the rest.
    pub draining: CancellationToken,
    /// Rung when another node handed runs over: they are taken at once.
    handed_over: tokio::sync::Notify,
    /// How long an event stream lasts before the server ends it (the
    /// browser resumes it at once); `None`: until the client leaves.
    pub stream_lifetime: Option<Duration>,
    /// The origin, cookie and `/metrics` rules.
    pub http: Policy,
    /// Where sessions are kept (what expires or is evicted here is let go of).
    backend: Backend<T>,
    /// How many sessions each client address may start, per minute, here.
    new_sessions: DefaultKeyedRateLimiter<IpAddr>,
    /// The same limit, counted across a cluster (in Redis).
    new_per_minute: u32,
    /// The open event streams, bounded per address and per session.
    pub streams: Arc<Streams>,
    /// The most runs of one session that have not ended.
    pub live_runs: usize,
    /// The most runs one session keeps.
    pub kept_runs: usize,
    /// What the streams of each session share: its list of runs as last
    /// read, and a bell rung when a run of it is added or removed here.
    pub rosters: Arc<Rosters<T::Summary>>,
}

/// Why no session could be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoom {
    /// The cap is reached and no session may give way.
    Full,
    /// The client's address started too many sessions lately; it may try
    /// again after `retry_after`.
    TooMany {
        /// How long until it may start one.
        retry_after: Duration,
    },
    /// The store cannot be reached (a cluster's Redis is down).
    Unavailable,
}

/// Why no run was added to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewRunError {
    /// The session has this many runs that have not ended, the most it may.
    TooManyLive(usize),
    /// The session keeps this many runs, the most it may.
    TooManyKept(usize),
    /// No room among all runs, or the store cannot be reached.
    NoRoom(NoRoom),
}

/// Why a visitor's first command started no session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// No room (see [`NoRoom`]).
    NoRoom(NoRoom),
    /// The command was refused; nothing was made.
    Refused(CommandError),
}

impl<T: Task> Runtime<T> {
    /// A runtime for `config` whose runs have `settings`, saving sessions
    /// in `store`, its tasks on the caller's tokio runtime. Call
    /// [`Runtime::restore`] to bring back the stored sessions.
    pub fn new(
        config: &Config,
        settings: T::Settings,
        store: Arc<dyn Store<T::Saved>>,
    ) -> Arc<Runtime<T>> {
        let metrics = Arc::new(Metrics::new(""));
        let tasks = Tasks::new(metrics.clone(), config.tick());
        Runtime::with_tasks(config, settings, store.into(), tasks, metrics)
    }

    /// A runtime for `config` whose sessions are kept by `backend`, with
    /// the tasks on threads of their own at a lower priority than requests
    /// (see [`tasks`]). What [`run`] uses.
    pub fn with_tasks_on_own_threads(
        config: &Config,
        settings: T::Settings,
        backend: impl Into<Backend<T>>,
    ) -> std::io::Result<Arc<Runtime<T>>> {
        let backend = backend.into();
        let node = backend.cluster().map_or("", |cluster| cluster.node());
        let metrics = Arc::new(Metrics::new(node));
        let tasks = Tasks::on_own_threads(metrics.clone(), config.tick())?;
        Ok(Runtime::with_tasks(
            config, settings, backend, tasks, metrics,
        ))
    }

    fn with_tasks(
        config: &Config,
        settings: T::Settings,
        backend: Backend<T>,
        tasks: Tasks,
        metrics: Arc<Metrics>,
    ) -> Arc<Runtime<T>> {
        let shutdown = CancellationToken::new();
        let cluster = backend.cluster().cloned();
        let rosters = Arc::new(Rosters::default());
        Arc::new(Runtime {
            sessions: Sessions::new(
                settings,
                config.sessions.max,
                config.idle_timeout(),
                backend.clone(),
                shutdown.clone(),
                rosters.clone(),
            ),
            backend,
            new_sessions: RateLimiter::keyed(Quota::per_minute(
                NonZeroU32::new(config.sessions.new_per_minute).unwrap_or(NonZeroU32::MIN),
            )),
            new_per_minute: config.sessions.new_per_minute,
            tasks: tasks
                .limited_to(config.sessions.max_steps)
                .working_in(config.search.threads, cluster),
            metrics,
            shutdown,
            draining: CancellationToken::new(),
            handed_over: tokio::sync::Notify::new(),
            stream_lifetime: config.stream_lifetime(),
            http: Policy::new(&config.http),
            streams: Arc::new(Streams::new(
                config.limits.streams_per_address,
                config.limits.streams_per_session,
            )),
            live_runs: config.sessions.live_runs,
            kept_runs: config.sessions.kept_runs,
            rosters,
        })
    }

    /// Applies a user's command to `session` in its lock section, and spawns
    /// the task it starts, if any. Returns the version showing its effect.
    pub async fn command(
        &self,
        session: &Arc<Session<T>>,
        command: T::Command,
    ) -> Result<u64, CommandError> {
        let span = tracing::info_span!(
            "command",
            session = %session.id().short(),
            kind = command_kind::<T>(&command)
        );
        let arrived = std::time::Instant::now();
        self.metrics.commands.inc();
        // The task is spawned inside the lock section, before the new
        // version is published: the browser never sees "running" before
        // the task exists, and waking the stream is the last thing the
        // command does, so its event goes out next rather than behind
        // the task just spawned (tokio runs the last task woken first).
        // While draining (a node of a cluster stopping), a run a command
        // starts is handed over to another node instead.
        let draining = self.draining.is_cancelled() && self.cluster().is_some();
        let answer = session
            .command(&command, |started| {
                if !draining {
                    self.tasks.spawn(session.clone(), started);
                }
            })
            .instrument(span)
            .await
            .inspect_err(|error| tracing::debug!(%error, "refused"));
        if draining && answer.is_ok() {
            session.hand_over().await;
        }
        self.metrics
            .command_seconds
            .observe(arrived.elapsed().as_secs_f64());
        answer
    }

    /// The ids of `session`'s runs, oldest first (a cluster asks Redis; one
    /// process knows them all once it has read its store's index, so it
    /// waits for that: a session asked for just after a restart is loaded
    /// alone, before its other runs are known).
    pub async fn run_ids(&self, session: SessionId) -> Result<Vec<RunId>, StoreError> {
        match self.backend.cluster() {
            Some(cluster) => cluster.runs_of(session).await,
            None => {
                self.sessions.ready().await;
                Ok(self.sessions.runs_of(session))
            }
        }
    }

    /// `session`'s runs, oldest first; a run that cannot be rebuilt (its
    /// record is damaged) is left out, and is the second part.
    pub async fn runs(
        &self,
        session: SessionId,
    ) -> Result<(Vec<Arc<Session<T>>>, Option<StoreError>), StoreError> {
        self.load_runs(self.run_ids(session).await?).await
    }

    /// The runs `ids` names (see [`Runtime::runs`]).
    pub async fn load_runs(
        &self,
        ids: Vec<RunId>,
    ) -> Result<(Vec<Arc<Session<T>>>, Option<StoreError>), StoreError> {
        let mut runs = Vec::new();
        let mut damaged = None;
        for id in ids {
            match self.session(id).await {
                Ok(Some(run)) => runs.push(run),
                Ok(None) => {}
                Err(error @ (StoreError::Damaged { .. } | StoreError::Corrupt { .. })) => {
                    damaged = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Ok((runs, damaged))
    }

    /// The run a request of `session` means when it names none: its first
    /// run, or, once that is removed, its newest. `None` when the session
    /// has no run (it is gone).
    pub async fn default_run(
        &self,
        session: SessionId,
    ) -> Result<Option<Arc<Session<T>>>, StoreError> {
        if let Some(first) = self.session(RunId::first(session)).await? {
            return Ok(Some(first));
        }
        let (runs, damaged) = self.runs(session).await?;
        match (runs.into_iter().last(), damaged) {
            (None, Some(error)) => Err(error),
            (newest, _) => Ok(newest),
        }
    }

    /// Adds a run to `session`, beside its others, stored at once, with no
    /// number yet: refused when the session has as many live runs or kept
    /// runs as it may. Numbered by the millisecond it is made (above every
    /// run of the session so far).
    pub async fn new_run(&self, session: SessionId) -> Result<Arc<Session<T>>, NewRunError> {
        let (runs, damaged) = self.runs(session).await.map_err(|error| {
            tracing::error!(%error, "could not list a session's runs");
            NewRunError::NoRoom(NoRoom::Unavailable)
        })?;
        let kept = runs.len() + usize::from(damaged.is_some());
        if kept >= self.kept_runs {
            return Err(NewRunError::TooManyKept(self.kept_runs));
        }
        let mut live = 0;
        for run in &runs {
            live += usize::from(!run.read(|machine| machine.status().has_ended()).await);
        }
        if live >= self.live_runs {
            return Err(NewRunError::TooManyLive(self.live_runs));
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |since| since.as_millis() as u64);
        let newest = runs.last().map_or(0, |run| run.id().number);
        let mut number = now_ms.max(newest + 1);
        self.sessions.ready().await;
        // Another node may make a run of the same number at the same
        // moment: the next number is tried.
        for _ in 0..8 {
            let Created {
                session: run,
                evicted,
            } = self.sessions.create_run(session, number).map_err(|Full| {
                self.metrics.sessions_refused.inc();
                NewRunError::NoRoom(NoRoom::Full)
            })?;
            if let Some(evicted) = evicted {
                self.let_go(evicted).await;
            }
            let stored = self
                .backend
                .create_run(run.id(), &run.machine().await)
                .await;
            match stored {
                Ok(true) => {
                    self.sessions.unpin(&run);
                    self.rosters.ring(session);
                    tracing::info!(run = %run.id().short(), "a run was added to its session");
                    return Ok(run);
                }
                Ok(false) => {
                    self.sessions.remove(run.id());
                    number = run.id().number + 1;
                }
                Err(error) => {
                    tracing::error!(%error, "could not store a new run");
                    self.sessions.remove(run.id());
                    return Err(NewRunError::NoRoom(NoRoom::Unavailable));
                }
            }
        }
        Err(NewRunError::NoRoom(NoRoom::Unavailable))
    }

    /// Removes a run at its user's word: its task stops, it is deleted from
    /// the store (and from Redis, whichever node uses it), and its streams
    /// end.
    pub async fn remove_run(&self, run: &Arc<Session<T>>) -> Result<(), StoreError> {
        // Deleted in the run's lock section: a step of its task stored
        // after the deletion would bring it back.
        run.retire_deleted(|| self.backend.remove(run.id())).await?;
        self.sessions.remove(run.id());
        self.rosters.ring(run.id().session);
        tracing::info!(run = %run.id().short(), "a run was removed by its user");
        Ok(())
    }

    /// The session named `id`, rebuilt from the store if it was not yet (and
    /// its task resumed if it was running); `None` if there is none.
    pub async fn session(&self, id: RunId) -> Result<Option<Arc<Session<T>>>, StoreError> {
        let Some(found) = self.sessions.get(id).await? else {
            return Ok(None);
        };
        if found.rebuilt {
            self.metrics.sessions_rebuilt.inc();
            self.resume(&found.session).await;
        }
        Ok(Some(found.session))
    }

    /// A visitor's first command: checked first (a command that would be
    /// refused starts nothing), then a new session is made for it, subject
    /// to the per-address rate and the cap, and the command applied. A
    /// session whose command is refused (by the store, say) is let go of at
    /// once: only an answered first command leaves a session. Returns it,
    /// with the version that shows the command's effect.
    pub async fn start_session(
        &self,
        client: IpAddr,
        command: T::Command,
    ) -> Result<(Arc<Session<T>>, u64), StartError> {
        Machine::<T>::new(self.sessions.settings())
            .apply(&command)
            .map_err(StartError::Refused)?;
        let session = self
            .create_session(client)
            .await
            .map_err(StartError::NoRoom)?;
        match self.command(&session, command).await {
            Ok(version) => {
                self.sessions.unpin(&session);
                Ok((session, version))
            }
            Err(error) => {
                self.sessions.remove(session.id());
                session.retire().await;
                if let Err(error) = self.backend.abandon(session.id()).await {
                    tracing::warn!(%error, "could not delete a session whose first command was refused");
                }
                Err(StartError::Refused(error))
            }
        }
    }

    /// Starts a new session for a visitor at `client`, pinned until its
    /// first command is answered: at the cap, the longest-untouched session
    /// that may give way is evicted in the same step.
    async fn create_session(&self, client: IpAddr) -> Result<Arc<Session<T>>, NoRoom> {
        self.may_start_session(client).await?;
        self.sessions.ready().await;
        let Created { session, evicted } = self.sessions.create().map_err(|Full| {
            self.metrics.sessions_refused.inc();
            tracing::warn!("session cap reached and no session may give way; refusing a new one");
            NoRoom::Full
        })?;
        if let Some(evicted) = evicted {
            self.let_go(evicted).await;
        }
        match self
            .backend
            .create(session.id(), &session.machine().await)
            .await
        {
            Ok(true) => Ok(session),
            stored => {
                // Taken (128 random bits: never seen), or not stored.
                tracing::error!(?stored, "could not store a new session");
                self.sessions.remove(session.id());
                Err(NoRoom::Unavailable)
            }
        }
    }

    /// Whether `client` may start another session: this node's count first
    /// (no round trip), then the cluster's.
    async fn may_start_session(&self, client: IpAddr) -> Result<(), NoRoom> {
        let refused = match self.new_sessions.check_key(&client) {
            Ok(()) => self
                .backend
                .may_start_session(client, self.new_per_minute)
                .await
                .map_err(|error| {
                    tracing::error!(%error, "could not count a new session");
                    NoRoom::Unavailable
                })?,
            Err(not_until) => Some(not_until.wait_time_from(DefaultClock::default().now())),
        };
        match refused {
            None => Ok(()),
            Some(wait) => {
                self.metrics.sessions_refused.inc();
                Err(NoRoom::TooMany { retry_after: wait })
            }
        }
    }

    /// Stops the task of a session evicted at the cap and deletes it.
    async fn let_go(&self, evicted: Evicted<T>) {
        if let Some(session) = &evicted.session {
            session.retire().await;
        }
        self.metrics.sessions_evicted.inc();
        self.rosters.ring(evicted.id.session);
        tracing::info!(session = %evicted.id.short(), "evicted to make room for a new session");
        if let Err(error) = self.backend.evict(evicted.id).await {
            tracing::error!(%error, "could not delete an evicted session");
        }
    }

    /// Spawns the task of a rebuilt session that was running.
    async fn resume(&self, session: &Arc<Session<T>>) {
        if let Some(started) = session.update(|state| state.resume()).await {
            self.tasks.spawn(session.clone(), started);
        }
    }

    /// Reads the store's index, then rebuilds the sessions that were running
    /// and resumes their tasks, a few at a time. The others are rebuilt
    /// when first asked for. Returns how many were resumed.
    pub async fn restore(self: &Arc<Self>) -> Result<usize, StoreError> {
        let running = self.sessions.load_index().await?;
        let count = running.len();
        futures::stream::iter(running)
            .for_each_concurrent(RESUME_PARALLELISM, |id| async move {
                if let Err(error) = self.session(id).await {
                    tracing::error!(%error, session = %id.short(), "could not resume a running session");
                }
            })
            .await;
        Ok(count)
    }

    /// Drops idle sessions every so often until shutdown.
    pub async fn expire_idle_sessions(self: Arc<Self>, timeout: Duration) {
        let period = crate::config::sweep_period(timeout);
        let mut ticks = tokio::time::interval(period);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = ticks.tick() => {
                    self.new_sessions.retain_recent();
                    if let Some(cluster) = self.backend.cluster() {
                        // Sessions used here stay in Redis, marked as used by
                        // this node: watched, running, or asked for since
                        // the last sweep.
                        cluster.touch(&self.sessions.in_use(period)).await;
                    }
                    let expired = self.sessions.expire(timeout).await;
                    if expired > 0 {
                        tracing::info!(expired, live = self.sessions.len(), "idle sessions expired");
                    }
                }
            }
        }
    }

    /// Every [`UNWATCHED_CHECK`] until shutdown: pauses or cancels the
    /// running runs nobody watched for as long as their policy allows (no
    /// page open since then: in a cluster, on no node; each node marks in
    /// Redis the runs it streams).
    pub async fn lapse_unwatched_runs(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(UNWATCHED_CHECK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if let Some(cluster) = self.cluster() {
                let watched = self.sessions.watched();
                if !watched.is_empty() {
                    cluster.mark_watched(&watched).await;
                }
            }
            for (run, unwatched_for) in self.sessions.unwatched_running() {
                let Some(minutes) = run.unwatched_minutes() else {
                    continue;
                };
                let wait = Duration::from_secs(u64::from(minutes) * 60);
                if unwatched_for < wait {
                    continue;
                }
                if let Some(cluster) = self.cluster() {
                    // Watched through another node within the wait: kept.
                    match cluster.watched_within(run.id(), wait).await {
                        Ok(false) => {}
                        Ok(true) | Err(_) => continue,
                    }
                }
                if run.lapse().await {
                    tracing::info!(run = %run.id().short(), minutes, "a run nobody watched was paused or cancelled, as its policy says");
                }
            }
        }
    }

    /// Cluster mode: passes each bell from Redis to the session it names
    /// (if this node holds it), and after a lost connection tells every
    /// session that bells may have been missed.
    pub async fn listen_for_bells(self: Arc<Self>, mut pushes: cluster::Pushes) {
        loop {
            let push = tokio::select! {
                () = self.shutdown.cancelled() => return,
                push = pushes.recv() => push,
            };
            let Some(push) = push else { return };
            if push.kind == redis::PushKind::Disconnection {
                if let Some(cluster) = self.backend.cluster() {
                    cluster.bells_lost();
                }
                for session in self.sessions.all_live() {
                    session.distrust();
                }
            } else if cluster::is_handover(&push) {
                self.handed_over.notify_one();
            } else if let Some((id, node, heard)) = cluster::bell::<T::Command, T::Work>(&push) {
                // This node's own commits are in its copies already (one
                // whose answer was lost makes the copy read the store).
                let own = self
                    .backend
                    .cluster()
                    .is_some_and(|cluster| cluster.node() == node);
                if let (false, Some(session)) = (own, self.sessions.live(id)) {
                    session.notice(heard);
                }
            }
        }
    }

    /// Cluster mode: every scan period, checks that Redis answers (and is
    /// the same process), and takes over the runs whose owner stopped
    /// renewing its lease, resuming each here.
    pub async fn take_over_lapsed_runs(self: Arc<Self>, cluster: Arc<Cluster>) {
        let mut ticks = tokio::time::interval(cluster.scan_period());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // A handover is taken at once: Redis just answered the node
            // that made it, so the check can wait for the next tick.
            let check = tokio::select! {
                biased;
                // A stopping node takes nothing over (not even the runs it
                // just handed over itself).
                () = self.draining.cancelled() => return,
                _ = ticks.tick() => true,
                () = self.handed_over.notified() => false,
                // A request failed as if the primary moved: ask at once (a
                // moment after, so a burst of failures asks once).
                () = cluster.recheck_asked() => {
                    tokio::time::sleep(RECHECK_AFTER).await;
                    ticks.reset();
                    true
                }
            };
            if check && !self.check_primary(&cluster).await {
                continue;
            }
            // Pass after pass while they come back full: a dead node's runs
            // are all taken over in this scan.
            loop {
                if self.draining.is_cancelled() {
                    return;
                }
                let taken = match cluster.take_over().await {
                    Ok(taken) => taken,
                    Err(error) => {
                        tracing::warn!(node = cluster.node(), %error, "cannot look for lapsed runs");
                        break;
                    }
                };
                let full = taken.len() == cluster::SCAN_BATCH;
                futures::stream::iter(taken)
                    .for_each_concurrent(TAKEOVER_PARALLELISM, |taken| {
                        self.adopt(cluster.node(), taken)
                    })
                    .await;
                if !full {
                    break;
                }
            }
        }
    }

    /// Checks that Redis answers and is the same process (every session
    /// is read again if not). False when it cannot be reached.
    async fn check_primary(&self, cluster: &Cluster) -> bool {
        let checked = cluster.check().await;
        self.metrics.store_up.set(i64::from(checked.is_ok()));
        match checked {
            Ok(false) => true,
            Ok(true) => {
                tracing::warn!(
                    node = cluster.node(),
                    "Redis restarted; every session is read again"
                );
                for session in self.sessions.all_live() {
                    session.distrust();
                }
                true
            }
            Err(error) => {
                tracing::warn!(node = cluster.node(), %error, "Redis cannot be reached");
                false
            }
        }
    }

    /// Resumes here a run taken over.
    async fn adopt(&self, node: &str, taken: cluster::Taken) {
        let cluster::Taken {
            id,
            epoch,
            since_commit,
        } = taken;
        self.metrics.takeovers.inc();
        tracing::info!(node, session = %id.short(), epoch, "took over a run whose lease lapsed or was handed over");
        match self.sessions.get(id).await {
            Ok(Some(Found { session, rebuilt })) => {
                // Loaded just now, after the lease was taken, the copy is
                // current; one held before is read again.
                if rebuilt {
                    self.metrics.sessions_rebuilt.inc();
                }
                if let Some(started) = session.adopt(epoch, since_commit, !rebuilt).await {
                    if self.draining.is_cancelled() {
                        // Taken just as this node began to stop: passed on.
                        session.hand_over().await;
                    } else {
                        self.tasks.spawn(session, started);
                    }
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::error!(%error, session = %id.short(), "could not load a run taken over");
            }
        }
    }

    /// This node's part of the cluster, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.backend.cluster()
    }

    /// Cluster mode: whether Redis failed to answer last time.
    pub fn store_is_down(&self) -> bool {
        self.backend
            .cluster()
            .is_some_and(|cluster| !*cluster.up().borrow())
    }

    /// Cluster mode: a receiver of whether Redis answers.
    pub fn store_up(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.backend.cluster().map(|cluster| cluster.up())
    }

    /// The first part of stopping: no new work is taken, and in a cluster
    /// every run stepped here is handed over to another node (its lease
    /// released), a few at a time, within `within`.
    pub async fn drain(&self, within: Duration) {
        self.draining.cancel();
        if self.cluster().is_none() {
            return;
        }
        let started = std::time::Instant::now();
        let runs = self
            .sessions
            .all_live()
            .into_iter()
            .filter(|s| s.is_running());
        let handing = futures::stream::iter(runs)
            .map(|session| async move { session.hand_over().await })
            .buffer_unordered(HANDOVER_PARALLELISM)
            .filter(|handed| std::future::ready(*handed))
            .count();
        match tokio::time::timeout(within, handing).await {
            Ok(handed) => tracing::info!(
                handed,
                seconds = started.elapsed().as_secs_f64(),
                "runs handed over to other nodes"
            ),
            Err(_) => tracing::warn!("runs not handed over within {within:?}; their leases lapse"),
        }
    }

    /// Cancels every task and stream, and waits for the tasks to end.
    pub async fn stop(&self) {
        self.draining.cancel();
        self.shutdown.cancel();
        self.tasks.wait().await;
    }
}

/// How soon after a request failed as if the primary moved a node asks
/// the sentinels where it is.
const RECHECK_AFTER: Duration = Duration::from_millis(100);

/// How often the runs nobody watches are looked at (and, in a cluster, the
/// runs a node streams are marked as watched).
pub const UNWATCHED_CHECK: Duration = Duration::from_secs(5);

/// How many stored running sessions are rebuilt at once after a restart.
const RESUME_PARALLELISM: usize = 8;

/// How many runs a stopping node hands over at once (each is a round trip).
const HANDOVER_PARALLELISM: usize = 64;

/// How many runs a node of a cluster takes over at once: each is a read or
/// two, which go to Redis together in rounds (a scan's whole pass).
const TAKEOVER_PARALLELISM: usize = 256;

/// What a command does, as logs name it: the same words for every kind.
fn command_kind<T: Task>(command: &T::Command) -> &'static str {
    match T::control(command) {
        Control::Begin(_) => "begin",
        Control::Running(true) => "running_on",
        Control::Running(false) => "running_off",
        Control::Interval(_) => "interval",
        Control::Cancel => "cancel",
        Control::Unwatched(_) => "unwatched",
    }
}
