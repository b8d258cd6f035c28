//! Counts open connections, over every service together, per client and in total, so one
//! client cannot take every connection the server is willing to hold.
//!
//! A client is an IPv4 address or an IPv6 /64 ([`IPV6_CLIENT_PREFIX_BITS`]): one host
//! commonly has a whole /64 to pick addresses from, so counting single IPv6 addresses would
//! not limit anyone.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

/// An IPv6 client is counted by its first 64 bits: the usual size of one site's subnet.
pub const IPV6_CLIENT_PREFIX_BITS: u32 = 64;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitExceeded {
    /// The client already has `limits.connections_per_ip_max` connections open.
    PerClient,
    /// The server already has `limits.connections_max` connections open.
    Total,
}

#[derive(Debug)]
pub struct ConnectionLimiter {
    per_client_max: usize,
    total_max: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Only clients with an open connection have an entry, so this holds at most
    /// `total_max` entries.
    per_client: HashMap<IpAddr, usize>,
}

/// One counted connection; dropping it gives the place back.
#[derive(Debug)]
pub struct ConnectionPermit {
    limiter: Arc<ConnectionLimiter>,
    client: IpAddr,
}

impl ConnectionLimiter {
    pub fn new(per_client_max: usize, total_max: usize) -> Arc<ConnectionLimiter> {
        Arc::new(ConnectionLimiter {
            per_client_max,
            total_max,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Counts a new connection from `address`, unless a limit is reached.
    pub fn try_acquire(
        self: &Arc<Self>,
        address: IpAddr,
    ) -> Result<ConnectionPermit, LimitExceeded> {
        let client = client_of(address);
        // The counts stay consistent even if a holder panicked: every change is one statement.
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.total >= self.total_max {
            return Err(LimitExceeded::Total);
        }
        let open = counts.per_client.get(&client).copied().unwrap_or(0);
        if open >= self.per_client_max {
            return Err(LimitExceeded::PerClient);
        }
        counts.per_client.insert(client, open + 1);
        counts.total += 1;
        Ok(ConnectionPermit {
            limiter: Arc::clone(self),
            client,
        })
    }

    /// Connections open now.
    pub fn open_total(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    fn release(&self, client: IpAddr) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(open) = counts.per_client.get_mut(&client) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                counts.per_client.remove(&client);
            }
        }
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limiter.release(self.client);
    }
}

/// The key a connection is counted under: the IPv4 address (also when it arrives mapped
/// into IPv6 on a dual-stack socket), or the IPv6 /64.
fn client_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mask = u128::MAX << (128 - IPV6_CLIENT_PREFIX_BITS);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn per_client_limit_refuses_then_frees_on_drop() {
        let limiter = ConnectionLimiter::new(2, 10);
        let first = limiter.try_acquire(ip("192.0.2.1")).expect("first");
        let _second = limiter.try_acquire(ip("192.0.2.1")).expect("second");
        assert_eq!(
            limiter.try_acquire(ip("192.0.2.1")).err(),
            Some(LimitExceeded::PerClient)
        );
        let _other = limiter
            .try_acquire(ip("192.0.2.2"))
            .expect("another client");
        drop(first);
        let _third = limiter.try_acquire(ip("192.0.2.1")).expect("freed");
        assert_eq!(limiter.open_total(), 3);
    }

    #[test]
    fn total_limit_refuses_everyone() {
        let limiter = ConnectionLimiter::new(5, 2);
        let _a = limiter.try_acquire(ip("192.0.2.1")).expect("a");
        let _b = limiter.try_acquire(ip("192.0.2.2")).expect("b");
        assert_eq!(
            limiter.try_acquire(ip("192.0.2.3")).err(),
            Some(LimitExceeded::Total)
        );
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        let limiter = ConnectionLimiter::new(1, 10);
        let _a = limiter.try_acquire(ip("2001:db8:1:2::1")).expect("a");
        assert_eq!(
            limiter.try_acquire(ip("2001:db8:1:2:ffff::9")).err(),
            Some(LimitExceeded::PerClient)
        );
        let _b = limiter
            .try_acquire(ip("2001:db8:1:3::1"))
            .expect("other /64");
        let _c = limiter.try_acquire(ip("192.0.2.7")).expect("v4");
        assert_eq!(
            limiter.try_acquire(ip("::ffff:192.0.2.7")).err(),
            Some(LimitExceeded::PerClient)
        );
    }

    #[test]
    fn counts_return_to_zero() {
        let limiter = ConnectionLimiter::new(3, 3);
        let permits: Vec<_> = (0..3)
            .map(|_| limiter.try_acquire(ip("::1")).expect("permit"))
            .collect();
        drop(permits);
        assert_eq!(limiter.open_total(), 0);
        assert!(limiter.counts.lock().expect("lock").per_client.is_empty());
    }
}
