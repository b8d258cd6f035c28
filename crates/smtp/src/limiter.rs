//! An in-memory limiter of failed authentications, per account and per client address, so a
//! password guesser is slowed and then shut out for a while (DESIGN: "failed auth is
//! rate-limited"). Counts live in memory only: a restart forgets them, which is acceptable
//! because the Argon2id cost of each guess is the lasting defence.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys remembered at most; past it, expired entries are dropped, and if none are, the oldest
/// half goes (a flood of distinct keys must not grow memory without bound).
pub const TRACKED_KEYS_MAX: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    first: Instant,
}

/// Failed logins, counted within a window.
#[derive(Debug)]
pub struct AuthLimiter {
    per_account_max: u32,
    per_ip_max: u32,
    window: Duration,
    failures: Mutex<HashMap<Key, Failures>>,
}

impl AuthLimiter {
    pub fn new(per_account_max: u32, per_ip_max: u32, window: Duration) -> AuthLimiter {
        AuthLimiter {
            per_account_max,
            per_ip_max,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an attempt for `account` from `address` may be checked at all.
    pub fn allows(&self, account: &str, address: IpAddr) -> bool {
        let now = Instant::now();
        let failures = self.lock();
        let over = |key: Key, max: u32| {
            failures.get(&key).is_some_and(|entry| {
                now.duration_since(entry.first) < self.window && entry.count >= max
            })
        };
        !(over(Key::Account(account.to_lowercase()), self.per_account_max)
            || over(Key::Address(address), self.per_ip_max))
    }

    pub fn record_failure(&self, account: &str, address: IpAddr) {
        let now = Instant::now();
        let mut failures = self.lock();
        if failures.len() >= TRACKED_KEYS_MAX {
            failures.retain(|_, entry| now.duration_since(entry.first) < self.window);
            if failures.len() >= TRACKED_KEYS_MAX {
                let mut ages: Vec<Instant> = failures.values().map(|entry| entry.first).collect();
                ages.sort();
                let median = ages[ages.len() / 2];
                failures.retain(|_, entry| entry.first > median);
            }
        }
        for key in [Key::Account(account.to_lowercase()), Key::Address(address)] {
            let entry = failures.entry(key).or_insert(Failures {
                count: 0,
                first: now,
            });
            if now.duration_since(entry.first) >= self.window {
                *entry = Failures {
                    count: 0,
                    first: now,
                };
            }
            entry.count = entry.count.saturating_add(1);
        }
    }

    /// A successful login clears its account's count (not the address's: a sprayer that
    /// guesses one account right keeps its record for the others).
    pub fn record_success(&self, account: &str) {
        self.lock().remove(&Key::Account(account.to_lowercase()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Failures>> {
        // A panic while holding the lock leaves counts that are still meaningful.
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_and_an_address_are_shut_out_after_their_limits() {
        let limiter = AuthLimiter::new(2, 3, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let other_ip: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!(limiter.allows("alice@example.org", ip));
        limiter.record_failure("alice@example.org", ip);
        limiter.record_failure("Alice@example.org", other_ip);
        assert!(!limiter.allows("alice@example.org", "192.0.2.9".parse().expect("ip")));
        assert!(limiter.allows("bob@example.org", ip));
        limiter.record_failure("bob@example.org", ip);
        limiter.record_failure("carol@example.org", ip);
        assert!(
            !limiter.allows("dave@example.org", ip),
            "the address is over its limit"
        );
        assert!(limiter.allows("dave@example.org", other_ip));
    }

    #[test]
    fn failures_are_forgotten_after_the_window() {
        let limiter = AuthLimiter::new(1, 10, Duration::from_millis(20));
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        limiter.record_failure("alice@example.org", ip);
        assert!(!limiter.allows("alice@example.org", ip));
        std::thread::sleep(Duration::from_millis(30));
        assert!(limiter.allows("alice@example.org", ip));
    }
}
