//! What the streams of one session share: a bell rung when a run of the
//! session is added or removed on this node, and the session's list of
//! runs as last read, so that a session's eight streams read its runs once
//! a second rather than eight times, and a session of one run is not read
//! at all until the bell rings.

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
    /// The session's runs as last read, and when.
    list: Mutex<Option<(Instant, Listed<S>)>>,
}

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
            list: Mutex::new(None),
        });
        map.rosters.insert(session, Arc::downgrade(&roster));
        roster
    }

    /// A run of `session` was added or removed: its streams read its runs.
    pub fn ring(&self, session: SessionId) {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(roster) = map.rosters.get(&session).and_then(Weak::upgrade) {
            roster
                .list
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            roster.bell.send_replace(());
        }
    }
}

impl<S> Roster<S> {
    /// Rings when the session's runs change here (see [`Rosters::ring`]).
    pub fn bell(&self) -> watch::Receiver<()> {
        self.bell.subscribe()
    }

    /// The list as last read, if read within `age`.
    pub fn fresh(&self, age: Duration) -> Option<Listed<S>> {
        let list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        list.as_ref()
            .filter(|(read, _)| read.elapsed() < age)
            .map(|(_, listed)| listed.clone())
    }

    /// Keeps `listed`, just read, for the session's other streams.
    pub fn keep(&self, listed: Listed<S>) {
        *self.list.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), listed));
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

    #[tokio::test(start_paused = true)]
    async fn a_sessions_streams_share_one_roster_its_list_and_its_bell() {
        let rosters = Rosters::<()>::default();
        let (a, b) = (SessionId::random(), SessionId::random());
        let first = rosters.join(a);
        assert!(Arc::ptr_eq(&first, &rosters.join(a)));
        assert!(!Arc::ptr_eq(&first, &rosters.join(b)));
        first.keep(listed("x"));
        assert_eq!(
            rosters.join(a).fresh(Duration::from_secs(1)),
            Some(listed("x"))
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(first.fresh(Duration::from_secs(1)), None, "too old");
        // A ring wakes the session's streams, not another's, and drops its list.
        first.keep(listed("y"));
        let other = rosters.join(b);
        let (mut bell_a, mut bell_b) = (first.bell(), other.bell());
        rosters.ring(a);
        assert!(bell_a.has_changed().unwrap());
        assert!(!bell_b.has_changed().unwrap());
        assert_eq!(first.fresh(Duration::from_secs(1)), None);
        bell_a.mark_unchanged();
        bell_b.mark_unchanged();
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
