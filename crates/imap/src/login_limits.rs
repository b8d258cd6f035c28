//! Counting failed logins per account and per client, so that guessing passwords is slow
//! and bounded (`DESIGN.md`: rate limiting and lockout of brute force per account and per IP).
//! The counter is shared by every IMAP session of the process.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::limits::{
    LOGIN_FAILURES_PER_ACCOUNT_MAX, LOGIN_FAILURES_PER_CLIENT_MAX, LOGIN_FAILURE_ENTRIES_MAX,
    LOGIN_FAILURE_WINDOW_SECS,
};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Account(String),
    /// An IPv4 address, or the /64 of an IPv6 address (one host's usual allocation).
    Client([u8; 16]),
}

fn client_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            octets
        }
    }
}

pub struct LoginLimiter {
    failures: Mutex<HashMap<Subject, (u32, Instant)>>,
    window: Duration,
}

impl Default for LoginLimiter {
    fn default() -> LoginLimiter {
        LoginLimiter {
            failures: Mutex::new(HashMap::new()),
            window: Duration::from_secs(LOGIN_FAILURE_WINDOW_SECS),
        }
    }
}

impl LoginLimiter {
    /// Whether a login for `account` from `client` may be tried now.
    pub fn allowed(&self, account: &str, client: IpAddr) -> bool {
        let Ok(failures) = self.failures.lock() else {
            return false;
        };
        let over = |subject: Subject, limit: u32| {
            failures
                .get(&subject)
                .is_some_and(|(count, start)| start.elapsed() < self.window && *count >= limit)
        };
        !over(
            Subject::Account(account.to_ascii_lowercase()),
            LOGIN_FAILURES_PER_ACCOUNT_MAX,
        ) && !over(
            Subject::Client(client_key(client)),
            LOGIN_FAILURES_PER_CLIENT_MAX,
        )
    }

    pub fn record_failure(&self, account: &str, client: IpAddr) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        if failures.len() >= LOGIN_FAILURE_ENTRIES_MAX {
            let window = self.window;
            failures.retain(|_, (_, start)| start.elapsed() < window);
            if failures.len() >= LOGIN_FAILURE_ENTRIES_MAX {
                failures.clear();
            }
        }
        for subject in [
            Subject::Account(account.to_ascii_lowercase()),
            Subject::Client(client_key(client)),
        ] {
            let entry = failures.entry(subject).or_insert((0, Instant::now()));
            if entry.1.elapsed() >= self.window {
                *entry = (0, Instant::now());
            }
            entry.0 = entry.0.saturating_add(1);
        }
    }

    /// A successful login clears the account's count (not the client's: one client guessing
    /// many accounts stays limited).
    pub fn record_success(&self, account: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&Subject::Account(account.to_ascii_lowercase()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_and_clients_are_limited() {
        let limiter = LoginLimiter::default();
        let client: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..LOGIN_FAILURES_PER_ACCOUNT_MAX {
            assert!(limiter.allowed("alice@example.org", client));
            limiter.record_failure("alice@example.org", client);
        }
        assert!(!limiter.allowed("ALICE@example.org", client));
        let other: IpAddr = "2001:db8::1".parse().expect("ip");
        assert!(
            !limiter.allowed("alice@example.org", other),
            "per account, from anywhere"
        );
        assert!(limiter.allowed("bob@example.org", other));
        for index in 0..LOGIN_FAILURES_PER_CLIENT_MAX {
            limiter.record_failure(&format!("user{index}@example.org"), other);
        }
        let same_64: IpAddr = "2001:db8::2".parse().expect("ip");
        assert!(!limiter.allowed("carol@example.org", same_64), "per /64");
        limiter.record_success("alice@example.org");
        assert!(limiter.allowed("alice@example.org", client));
    }
}
