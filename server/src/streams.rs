//! The open event streams, counted per client address and bounded.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

/// The open event streams per client address, bounded.
pub struct Streams {
    /// Open streams by address; an address with none is not kept.
    by_address: Mutex<HashMap<IpAddr, usize>>,
    /// The most streams one address may have open.
    per_address: usize,
    /// The most streams one session may have open.
    pub per_session: usize,
}

/// One open stream of an address; frees its place when dropped.
pub struct Slot {
    streams: Arc<Streams>,
    client: IpAddr,
}

impl Streams {
    /// No stream open yet.
    pub fn new(per_address: usize, per_session: usize) -> Streams {
        Streams {
            by_address: Mutex::new(HashMap::new()),
            per_address,
            per_session,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.by_address.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Streams {
    /// A place for one more stream of `client`, unless it has its most.
    pub fn open(self: &Arc<Self>, client: IpAddr) -> Option<Slot> {
        let mut open = self.lock();
        let count = open.entry(client).or_insert(0);
        if *count >= self.per_address {
            return None;
        }
        *count += 1;
        Some(Slot {
            streams: self.clone(),
            client,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.streams.lock();
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}
