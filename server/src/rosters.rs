//! What the streams of one session share: a bell rung when a run of the
//! session is added or removed on this node, another rung when one of its
//! runs changes state here, and the session's list of runs as last read,
//! so that a session's eight streams read its runs once per change rather
//! than eight times, and a session of one run is not read at all until a
//! run is added.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError, Weak},
    time::Duration,
};

use shared::wire::ListedOf;
use tokio::{sync::watch, time::Instant};

use crate::id::SessionId;

/// A session's runs as a page's list shows them, shared.
pub type Listed<S> = Arc<Vec<ListedOf<S>>>;

/// Every session with a stream open here, by id.
pub struct Rosters<S> {
    /// Held weakly: a roster lives as long as its session's streams.
    map: Mutex<Map<S>>,
}

struct Map<S> {
    rosters: HashMap<SessionId, Weak<Roster<S>>>,
    /// The map is swept of dead rosters when it grows to this (twice what
    /// was left at the last sweep), so sweeping costs O(1) per join.
    sweep_at: usize,
}

/// One session's: see the module.
pub struct Roster<S> {
    /// Rung when a run of the session is added or removed here.
    bell: watch::Sender<()>,
    /// Rung when a run of the session changes state here (see
    /// [`Rosters::moved`]): only streams of a session of several runs
    /// listen, since a page of one run sees its state from its own stream.
    moved: watch::Sender<()>,
    /// The session's runs as last read, and when.
    list: Mutex<Kept<S>>,
}

/// A roster's list, and how often it was made stale.
struct Kept<S> {
    /// The list as last read, and when; `None` after a bell.
    list: Option<(Instant, Listed<S>)>,
    /// Bells rung so far: a list whose reading began before the last bell
    /// may miss what it rang for, and is not kept.
    rings: u64,
}

/// A stream's reading of the list, begun when no fresh one was kept: what
/// it reads is kept for the others only if no bell rang meanwhile.
pub struct Reading(u64);

/// The least the map is swept at.
const SWEEP_AT_LEAST: usize = 1024;

impl<S> Default for Rosters<S> {
    fn default() -> Self {
        Rosters {
            map: Mutex::new(Map {
                rosters: HashMap::new(),
                sweep_at: SWEEP_AT_LEAST,
            }),
        }
    }
}

impl<S> Rosters<S> {
    /// The roster of `session`, made if no stream of it is open.
    pub fn join(&self, session: SessionId) -> Arc<Roster<S>> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(roster) = map.rosters.get(&session).and_then(Weak::upgrade) {
            return roster;
        }
        if map.rosters.len() >= map.sweep_at {
            map.rosters.retain(|_, roster| roster.strong_count() > 0);
            map.sweep_at = (2 * map.rosters.len()).max(SWEEP_AT_LEAST);
        }
        let roster = Arc::new(Roster {
            bell: watch::Sender::new(()),
            moved: watch::Sender::new(()),
            list: Mutex::new(Kept {
                list: None,
                rings: 0,
            }),
        });
        map.rosters.insert(session, Arc::downgrade(&roster));
        roster
    }

    /// A run of `session` was added or removed: its streams read its runs.
    pub fn ring(&self, session: SessionId) {
        self.stale(session, |roster| &roster.bell);
    }

    /// A run of `session` changed state (its [`shared::task::Standing`]):
    /// the streams of a session of several runs read its runs.
    pub fn moved(&self, session: SessionId) {
        self.stale(session, |roster| &roster.moved);
    }

    /// Drops the list `session`'s streams share, if they are open here,
    /// and rings the bell `bell` picks.
    fn stale(&self, session: SessionId, bell: impl FnOnce(&Roster<S>) -> &watch::Sender<()>) {
        let roster = {
            let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            map.rosters.get(&session).and_then(Weak::upgrade)
        };
        if let Some(roster) = roster {
            let mut kept = roster.list.lock().unwrap_or_else(PoisonError::into_inner);
            kept.list = None;
            kept.rings += 1;
            drop(kept);
            bell(&roster).send_replace(());
        }
    }
}

impl<S> Roster<S> {
    /// Rings when the session's runs change here (see [`Rosters::ring`]).
    pub fn bell(&self) -> watch::Receiver<()> {
        self.bell.subscribe()
    }

    /// Rings when one of the session's runs changes state here (see
    /// [`Rosters::moved`]).
    pub fn moved(&self) -> watch::Receiver<()> {
        self.moved.subscribe()
    }

    /// The list as last read, if read within `age` and no bell rang
    /// since; otherwise the reading the caller begins.
    pub fn fresh(&self, age: Duration) -> Result<Listed<S>, Reading> {
        let kept = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        kept.list
            .as_ref()
            .filter(|(read, _)| read.elapsed() < age)
            .map(|(_, listed)| listed.clone())
            .ok_or(Reading(kept.rings))
    }

    /// Keeps `listed`, read in `reading`, for the session's other streams,
    /// unless a bell rang since the reading began.
    pub fn keep(&self, listed: Listed<S>, reading: Reading) {
        let mut kept = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.rings == reading.0 {
            kept.list = Some((Instant::now(), listed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(id: &str) -> Listed<()> {
        Arc::new(vec![ListedOf {
            id: id.into(),
            status: shared::wire::Status::Idle,
            steps: 0,
            failure: None,
            started_at: None,
            run: None,
        }])
    }

    /// What a stream finds in `roster`: the list kept, if fresh.
    fn found(roster: &Roster<()>) -> Option<Listed<()>> {
        roster.fresh(Duration::from_secs(1)).ok()
    }

    /// A stream's read of the list: begun, then kept.
    fn read(roster: &Roster<()>, id: &str) {
        let reading = roster.fresh(Duration::ZERO).err().unwrap();
        roster.keep(listed(id), reading);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sessions_streams_share_one_roster_its_list_and_its_bell() {
        let rosters = Rosters::<()>::default();
        let (a, b) = (SessionId::random(), SessionId::random());
        let first = rosters.join(a);
        assert!(Arc::ptr_eq(&first, &rosters.join(a)));
        assert!(!Arc::ptr_eq(&first, &rosters.join(b)));
        read(&first, "x");
        assert_eq!(found(&rosters.join(a)), Some(listed("x")));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(found(&first), None, "too old");
        // A ring wakes the session's streams, not another's, and drops its list.
        read(&first, "y");
        let other = rosters.join(b);
        let (mut bell_a, mut bell_b) = (first.bell(), other.bell());
        rosters.ring(a);
        assert!(bell_a.has_changed().unwrap());
        assert!(!bell_b.has_changed().unwrap());
        assert_eq!(found(&first), None);
        bell_a.mark_unchanged();
        bell_b.mark_unchanged();
        // A run that changed state rings the other bell, and drops the list.
        read(&first, "z");
        let moved_a = first.moved();
        rosters.moved(a);
        assert!(moved_a.has_changed().unwrap());
        assert!(
            !bell_a.has_changed().unwrap(),
            "no run was added or removed"
        );
        assert_eq!(found(&first), None);
    }

    #[test]
    fn a_list_read_across_a_bell_is_not_kept_for_the_other_streams() {
        let rosters = Rosters::<()>::default();
        let session = SessionId::random();
        let roster = rosters.join(session);
        // A stream begins reading; a run changes state before it is done.
        let reading = roster.fresh(Duration::from_secs(1)).err().unwrap();
        rosters.moved(session);
        roster.keep(listed("old"), reading);
        assert_eq!(found(&roster), None, "the stream woken by the bell reads");
        read(&roster, "new");
        assert_eq!(found(&roster), Some(listed("new")));
    }

    #[test]
    fn rosters_without_streams_are_swept_as_the_map_grows() {
        let rosters = Rosters::<()>::default();
        let kept: Vec<_> = (0..10).map(|_| rosters.join(SessionId::random())).collect();
        for _ in 0..10 * SWEEP_AT_LEAST {
            drop(rosters.join(SessionId::random()));
        }
        let map = rosters.map.lock().unwrap();
        assert!(
            map.rosters.len() <= 2 * SWEEP_AT_LEAST,
            "{}",
            map.rosters.len()
        );
        drop(map);
        for roster in &kept {
            assert_eq!(Arc::strong_count(roster), 1);
        }
        assert_eq!(
            rosters
                .map
                .lock()
                .unwrap()
                .rosters
                .values()
                .filter(|r| r.strong_count() > 0)
                .count(),
            10
        );
    }
}
