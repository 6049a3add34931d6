//! The open connections, counted in all and per client address, and who
//! gives way when a new one would pass a cap.
//!
//! A new connection is admitted while its address holds fewer than its cap
//! and the server fewer than the global cap. At either cap, the connection
//! idle longest (no request in flight: kept alive after a request, or
//! never having sent a whole one) gives way to it: of the same address at
//! the address's cap, of anyone at the global cap. Only when none is idle
//! is the new connection refused. So one address can never hold more than
//! its cap, and a full server still takes a visitor in as long as anyone
//! holds a connection it is not using.
//!
//! Behind a trusted proxy every connection comes from the proxy, so the
//! address cap counts requests in flight per client instead, as the proxy's
//! header names it (over HTTP/1.1 a proxy's connection carries one
//! client's request at a time).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Every open connection, and the requests in flight per client behind a
/// proxy.
pub struct Connections {
    /// The connections and the counts per address.
    open: Mutex<Open>,
    /// The most open connections.
    max: usize,
    /// The most connections (or, behind a proxy, requests in flight) of one
    /// client address.
    per_address: usize,
    /// Behind a trusted proxy: connections are not counted per address
    /// (they are the proxy's), requests are.
    behind_proxy: bool,
    /// When the registry started: connections note their activity in
    /// milliseconds since.
    epoch: Instant,
}

#[derive(Default)]
struct Open {
    /// By id.
    connections: HashMap<u64, Arc<Connection>>,
    /// Open connections per client address (not behind a proxy).
    per_address: HashMap<IpAddr, usize>,
    /// Requests in flight per client address (behind a proxy).
    requests: HashMap<IpAddr, usize>,
    /// The next connection's id.
    next: u64,
}

/// One open connection as the registry sees it.
pub struct Connection {
    /// Its key in the registry.
    id: u64,
    /// The client address it counts for (the proxy's, behind one).
    address: IpAddr,
    /// Requests whose response has not been sent whole.
    in_flight: AtomicUsize,
    /// Requests started on it so far.
    requests: AtomicU64,
    /// Milliseconds since the registry's epoch when it was last active: it
    /// opened, or a request ended.
    last_ms: AtomicU64,
    /// Cancelled when it must give way to a new connection.
    give_way: CancellationToken,
}

/// Why a connection or request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its address holds its cap, none of it idle.
    Address,
    /// The server holds its cap, none of it idle.
    Full,
}

/// A connection's place in the registry; freed when dropped.
pub struct Admitted {
    connections: Arc<Connections>,
    /// The connection.
    pub connection: Arc<Connection>,
}

/// A request in flight; its end is noted when dropped (when the response
/// was sent whole, or dropped).
pub struct InFlight {
    connections: Arc<Connections>,
    connection: Arc<Connection>,
    /// Behind a proxy: the client it counts for.
    client: Option<IpAddr>,
}

impl Connections {
    /// No connection yet.
    pub fn new(max: usize, per_address: usize, behind_proxy: bool) -> Arc<Connections> {
        Arc::new(Connections {
            open: Mutex::new(Open::default()),
            max,
            per_address,
            behind_proxy,
            epoch: Instant::now(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // Every operation leaves the maps consistent: poisoning is ignored.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Admits a new connection from `address`, asking the longest idle
    /// one to give way at a cap.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Admitted, Refused> {
        let mut open = self.lock();
        if !self.behind_proxy
            && open.per_address.get(&address).copied().unwrap_or(0) >= self.per_address
        {
            let idle = open.longest_idle(|c| c.address == address);
            open.give_way(idle.ok_or(Refused::Address)?);
        }
        if open.connections.len() >= self.max {
            let idle = open.longest_idle(|_| true);
            open.give_way(idle.ok_or(Refused::Full)?);
        }
        let id = open.next;
        open.next += 1;
        let connection = Arc::new(Connection {
            id,
            address,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_ms: AtomicU64::new(self.now_ms()),
            give_way: CancellationToken::new(),
        });
        open.connections.insert(id, connection.clone());
        if !self.behind_proxy {
            *open.per_address.entry(address).or_insert(0) += 1;
        }
        Ok(Admitted {
            connections: self.clone(),
            connection,
        })
    }

    /// Notes a request starting on `connection`, from `client` behind a
    /// proxy (`None` directly); refused when that client has its cap of
    /// requests in flight.
    pub fn begin(
        self: &Arc<Self>,
        connection: &Arc<Connection>,
        client: Option<IpAddr>,
    ) -> Result<InFlight, Refused> {
        let client = client.filter(|_| self.behind_proxy);
        if let Some(client) = client {
            let mut open = self.lock();
            let count = open.requests.entry(client).or_insert(0);
            if *count >= self.per_address {
                return Err(Refused::Address);
            }
            *count += 1;
        }
        connection.in_flight.fetch_add(1, Ordering::AcqRel);
        connection.requests.fetch_add(1, Ordering::AcqRel);
        Ok(InFlight {
            connections: self.clone(),
            connection: connection.clone(),
            client,
        })
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.lock().connections.len()
    }

    /// True when none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Open {
    /// The connection matching `which` that has no request in flight and
    /// was last active longest ago.
    fn longest_idle(&self, which: impl Fn(&Connection) -> bool) -> Option<u64> {
        self.connections
            .values()
            .filter(|c| which(c) && c.in_flight.load(Ordering::Acquire) == 0)
            .filter(|c| !c.give_way.is_cancelled())
            // The older connection first among those active at once.
            .min_by_key(|c| (c.last_ms.load(Ordering::Acquire), c.id))
            .map(|c| c.id)
    }

    /// Takes connection `id` out of the counts and tells it to close: its
    /// place is the new connection's at once (an idle connection closes in
    /// moments; its descriptor is within the room the cap leaves).
    fn give_way(&mut self, id: u64) {
        if let Some(connection) = self.connections.remove(&id) {
            self.forget_address(connection.address);
            connection.give_way.cancel();
        }
    }

    fn forget_address(&mut self, address: IpAddr) {
        if let Some(count) = self.per_address.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&address);
            }
        }
    }
}

impl Connection {
    /// Cancelled when the connection must close to make room.
    pub fn give_way(&self) -> &CancellationToken {
        &self.give_way
    }

    /// Whether a request is in flight on it.
    pub fn is_busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Whether any request has started on it.
    pub fn has_had_requests(&self) -> bool {
        self.requests.load(Ordering::Acquire) > 0
    }

    /// Milliseconds since the registry's epoch when it was last active.
    pub fn last_active_ms(&self) -> u64 {
        self.last_ms.load(Ordering::Acquire)
    }
}

impl Admitted {
    /// When the connection was last active, in the registry's clock.
    pub fn last_active(&self) -> Instant {
        let ms = self.connection.last_active_ms();
        self.connections.epoch + std::time::Duration::from_millis(ms)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.connections.lock();
        // A connection that gave way was taken out already.
        if open.connections.remove(&self.connection.id).is_some() {
            open.forget_address(self.connection.address);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.connections.now_ms();
        self.connection.last_ms.store(now, Ordering::Release);
        self.connection.in_flight.fetch_sub(1, Ordering::AcqRel);
        if let Some(client) = self.client {
            let mut open = self.connections.lock();
            if let Some(count) = open.requests.get_mut(&client) {
                *count -= 1;
                if *count == 0 {
                    open.requests.remove(&client);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_at_its_cap_gives_way_with_its_own_idle_connections_only() {
        let connections = Connections::new(10, 2, false);
        let a1 = connections.admit(ip("10.0.0.1")).unwrap();
        let a2 = connections.admit(ip("10.0.0.1")).unwrap();
        let busy = connections.begin(&a2.connection, None).unwrap();
        let _b = connections.admit(ip("10.0.0.2")).unwrap();
        // The idle one of the address gives way; the busy one stays.
        let a3 = connections.admit(ip("10.0.0.1")).unwrap();
        assert!(a1.connection.give_way().is_cancelled());
        assert!(!a2.connection.give_way().is_cancelled());
        // Now both of its connections are busy: refused.
        let _busy3 = connections.begin(&a3.connection, None).unwrap();
        assert_eq!(
            connections.admit(ip("10.0.0.1")).err(),
            Some(Refused::Address)
        );
        // Another address is admitted at once.
        assert!(connections.admit(ip("10.0.0.3")).is_ok());
        drop(busy);
        assert!(connections.admit(ip("10.0.0.1")).is_ok(), "idle again");
        assert!(a2.connection.give_way().is_cancelled());
    }

    #[test]
    fn at_the_global_cap_the_longest_idle_gives_way_and_busy_ones_never() {
        let connections = Connections::new(3, 3, false);
        let old = connections.admit(ip("10.0.0.1")).unwrap();
        let newer = connections.admit(ip("10.0.0.2")).unwrap();
        let busy = connections.admit(ip("10.0.0.3")).unwrap();
        let _request = connections.begin(&busy.connection, None).unwrap();
        let _fourth = connections.admit(ip("10.0.0.4")).unwrap();
        assert!(old.connection.give_way().is_cancelled(), "longest idle");
        assert!(!newer.connection.give_way().is_cancelled());
        assert_eq!(connections.len(), 3);
        drop(old);
        assert_eq!(connections.len(), 3, "counted once");
        let _r2 = connections.begin(&newer.connection, None).unwrap();
        let _r4 = connections.begin(&_fourth.connection, None).unwrap();
        assert_eq!(connections.admit(ip("10.0.0.5")).err(), Some(Refused::Full));
    }

    #[test]
    fn behind_a_proxy_requests_in_flight_are_counted_per_client() {
        let connections = Connections::new(100, 2, true);
        let proxy = ip("10.0.0.9");
        let c: Vec<_> = (0..4).map(|_| connections.admit(proxy).unwrap()).collect();
        assert_eq!(
            connections.len(),
            4,
            "the proxy's connections are not capped"
        );
        let client = Some(ip("203.0.113.7"));
        let r1 = connections.begin(&c[0].connection, client).unwrap();
        let _r2 = connections.begin(&c[1].connection, client).unwrap();
        assert_eq!(
            connections.begin(&c[2].connection, client).err(),
            Some(Refused::Address)
        );
        assert!(connections
            .begin(&c[2].connection, Some(ip("203.0.113.8")))
            .is_ok());
        drop(r1);
        assert!(connections.begin(&c[3].connection, client).is_ok());
    }
}
