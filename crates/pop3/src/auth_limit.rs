//! Brute-force protection for logins: failed attempts counted per client address and per
//! account over a sliding window, in a bounded amount of memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed logins a client address may make per window before it is turned away.
pub const FAILURES_PER_IP_MAX: u32 = 10;
/// Failed logins an account may see per window (from anywhere) before logins to it are refused
/// for the rest of the window: slows a distributed guess at one password.
pub const FAILURES_PER_ACCOUNT_MAX: u32 = 20;
pub const FAILURE_WINDOW_SECS: u64 = 300;
/// Addresses and accounts tracked at once; past this the oldest entries are forgotten first,
/// so a flood of distinct sources cannot exhaust memory.
pub const TRACKED_KEYS_MAX: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    ClientAddress,
    Account,
}

#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

#[derive(Default)]
pub struct AuthFailures {
    by_ip: HashMap<IpAddr, Window>,
    by_account: HashMap<String, Window>,
}

fn window() -> Duration {
    Duration::from_secs(FAILURE_WINDOW_SECS)
}

fn failures_now<K: std::hash::Hash + Eq>(map: &HashMap<K, Window>, key: &K, now: Instant) -> u32 {
    match map.get(key) {
        Some(entry) if now.duration_since(entry.started) < window() => entry.failures,
        _ => 0,
    }
}

fn record<K: std::hash::Hash + Eq + Clone>(map: &mut HashMap<K, Window>, key: &K, now: Instant) {
    if map.len() >= TRACKED_KEYS_MAX && !map.contains_key(key) {
        map.retain(|_, entry| now.duration_since(entry.started) < window());
        if map.len() >= TRACKED_KEYS_MAX {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, entry)| entry.started)
                .map(|(key, _)| key.clone())
            {
                map.remove(&oldest);
            }
        }
    }
    let entry = map.entry(key.clone()).or_insert(Window {
        started: now,
        failures: 0,
    });
    if now.duration_since(entry.started) >= window() {
        *entry = Window {
            started: now,
            failures: 0,
        };
    }
    entry.failures = entry.failures.saturating_add(1);
}

impl AuthFailures {
    /// Whether a login attempt from `ip` for `account` may go ahead.
    pub fn check(&self, ip: IpAddr, account: &str, now: Instant) -> Result<(), Blocked> {
        if failures_now(&self.by_ip, &ip, now) >= FAILURES_PER_IP_MAX {
            return Err(Blocked::ClientAddress);
        }
        if failures_now(&self.by_account, &account.to_string(), now) >= FAILURES_PER_ACCOUNT_MAX {
            return Err(Blocked::Account);
        }
        Ok(())
    }

    pub fn record_failure(&mut self, ip: IpAddr, account: &str, now: Instant) {
        record(&mut self.by_ip, &ip, now);
        record(&mut self.by_account, &account.to_string(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_an_address_then_forgives_after_the_window() {
        let mut failures = AuthFailures::default();
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let start = Instant::now();
        for _ in 0..FAILURES_PER_IP_MAX {
            assert_eq!(failures.check(ip, "a@x", start), Ok(()));
            failures.record_failure(ip, "a@x", start);
        }
        assert_eq!(
            failures.check(ip, "b@x", start),
            Err(Blocked::ClientAddress)
        );
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        assert_eq!(failures.check(other, "b@x", start), Ok(()));
        assert_eq!(failures.check(ip, "b@x", start + window()), Ok(()));
    }

    #[test]
    fn blocks_an_account_attacked_from_many_addresses() {
        let mut failures = AuthFailures::default();
        let now = Instant::now();
        for n in 0..FAILURES_PER_ACCOUNT_MAX {
            let ip = IpAddr::from([198, 51, 100, n as u8]);
            failures.record_failure(ip, "victim@x", now);
        }
        let fresh: IpAddr = "203.0.113.9".parse().expect("ip");
        assert_eq!(
            failures.check(fresh, "victim@x", now),
            Err(Blocked::Account)
        );
        assert_eq!(failures.check(fresh, "other@x", now), Ok(()));
    }

    #[test]
    fn memory_stays_bounded() {
        let mut failures = AuthFailures::default();
        let now = Instant::now();
        for n in 0..(TRACKED_KEYS_MAX as u32 + 100) {
            failures.record_failure(IpAddr::from(n.to_be_bytes()), "a@x", now);
        }
        assert!(failures.by_ip.len() <= TRACKED_KEYS_MAX);
    }
}
