//! The unlock cache (`DESIGN.md`, point 8): logins must not be bound by the password KDF, since
//! clients reconnect constantly. After a password login, the unwrapped account key is kept in
//! memory for a short time, keyed by HMAC-SHA256 (RFC 2104) under a per-process random key of
//! the address and the password, so the table never holds the password or an unsalted hash
//! of it, and a memory dump without the process key cannot be used to test password guesses
//! offline any faster than against the stored Argon2id verifier.
//!
//! Every entry also remembers the verifier of the wrap it was unlocked through; a hit is only
//! honoured while the account record still holds that verifier, so a password change made by
//! any path (even one that forgot to clear the cache) invalidates it. Password changes, resets,
//! app-password removal and [`MailStore::forget_unlocks`] also clear the address's entries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use letterlock_crypto::symmetric::SymmetricKey;
use letterlock_types::{EmailAddress, Secret};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::MailStore;

/// Entries kept at most: bounds memory (one account key and a verifier each, ~100 bytes)
/// and how many unwrapped keys sit in memory at once.
pub const UNLOCK_CACHE_ENTRIES_MAX: usize = 1024;
/// How long an entry lives: long enough for a client's burst of reconnections (mobile clients
/// open several connections within seconds, and reconnect every few minutes), short enough
/// that an idle account's key does not stay in memory.
pub const UNLOCK_CACHE_TTL_SECS: u64 = 5 * 60;

type CacheKey = [u8; 32];

struct Entry {
    address: EmailAddress,
    verifier: Vec<u8>,
    account_key: SymmetricKey,
    inserted: Instant,
}

pub(crate) struct UnlockCache {
    hmac_key: Zeroizing<[u8; 32]>,
    entries: Mutex<HashMap<CacheKey, Entry>>,
    ttl: Duration,
    /// Argon2id runs done for password logins: what the cache exists to avoid.
    password_kdf_runs: AtomicU64,
    hits: AtomicU64,
}

impl Default for UnlockCache {
    fn default() -> UnlockCache {
        let mut hmac_key = Zeroizing::new([0u8; 32]);
        rand::thread_rng().fill_bytes(hmac_key.as_mut());
        UnlockCache {
            hmac_key,
            entries: Mutex::new(HashMap::new()),
            ttl: Duration::from_secs(UNLOCK_CACHE_TTL_SECS),
            password_kdf_runs: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }
}

impl UnlockCache {
    fn key_of(&self, address: &EmailAddress, secret: &Secret) -> CacheKey {
        // The HMAC key is 32 bytes, always a valid HMAC key length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.hmac_key.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        let address = address.to_string();
        // Length-prefixed so that ("ab", "c") and ("a", "bc") differ.
        mac.update(&(address.len() as u64).to_be_bytes());
        mac.update(address.as_bytes());
        mac.update(secret.expose());
        mac.finalize().into_bytes().into()
    }

    /// The cached account key and the verifier it was unlocked through, if fresh.
    pub(crate) fn lookup(
        &self,
        address: &EmailAddress,
        secret: &Secret,
    ) -> Option<(SymmetricKey, Vec<u8>)> {
        let key = self.key_of(address, secret);
        let mut entries = self.entries.lock().ok()?;
        let entry = entries.get(&key)?;
        if entry.inserted.elapsed() > self.ttl || entry.address != *address {
            entries.remove(&key);
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some((entry.account_key.clone(), entry.verifier.clone()))
    }

    pub(crate) fn insert(
        &self,
        address: &EmailAddress,
        secret: &Secret,
        verifier: &[u8],
        account_key: &SymmetricKey,
    ) {
        let key = self.key_of(address, secret);
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let ttl = self.ttl;
        entries.retain(|_, entry| entry.inserted.elapsed() <= ttl);
        if entries.len() >= UNLOCK_CACHE_ENTRIES_MAX && !entries.contains_key(&key) {
            let oldest = entries
                .iter()
                .min_by_key(|(_, entry)| entry.inserted)
                .map(|(key, _)| *key);
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            key,
            Entry {
                address: address.clone(),
                verifier: verifier.to_vec(),
                account_key: account_key.clone(),
                inserted: Instant::now(),
            },
        );
    }

    /// Drop a cached unlock whose credential no longer holds.
    pub(crate) fn remove(&self, address: &EmailAddress, secret: &Secret) {
        let key = self.key_of(address, secret);
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&key);
        }
    }

    pub(crate) fn forget(&self, address: &EmailAddress) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, entry| entry.address != *address);
        }
    }

    pub(crate) fn count_password_kdf_run(&self) {
        self.password_kdf_runs.fetch_add(1, Ordering::Relaxed);
    }

    fn len(&self) -> usize {
        self.entries
            .lock()
            .map(|entries| entries.len())
            .unwrap_or(0)
    }
}

/// What the unlock cache has done since the store was opened (for tests and the benchmark).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnlockCacheStats {
    pub password_kdf_runs: u64,
    pub hits: u64,
    pub entries: usize,
}

impl MailStore {
    /// Forget every cached unlock of `address` (logout-all, key rotation); the next login
    /// runs the password KDF again.
    pub fn forget_unlocks(&self, address: &EmailAddress) {
        self.unlock_cache.forget(address);
    }

    pub fn unlock_cache_stats(&self) -> UnlockCacheStats {
        UnlockCacheStats {
            password_kdf_runs: self.unlock_cache.password_kdf_runs.load(Ordering::Relaxed),
            hits: self.unlock_cache.hits.load(Ordering::Relaxed),
            entries: self.unlock_cache.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> EmailAddress {
        EmailAddress::try_from(text).expect("address")
    }

    #[test]
    fn keys_depend_on_address_and_secret_and_process_key() {
        let cache = UnlockCache::default();
        let alice = address("alice@example.org");
        let bob = address("bob@example.org");
        let one = cache.key_of(&alice, &Secret::from("pw"));
        assert_eq!(one, cache.key_of(&alice, &Secret::from("pw")));
        assert_ne!(one, cache.key_of(&alice, &Secret::from("pw2")));
        assert_ne!(one, cache.key_of(&bob, &Secret::from("pw")));
        assert_ne!(
            one,
            UnlockCache::default().key_of(&alice, &Secret::from("pw"))
        );
    }

    #[test]
    fn bounded_and_expiring() {
        let mut cache = UnlockCache::default();
        let alice = address("alice@example.org");
        let key = SymmetricKey::generate();
        for index in 0..UNLOCK_CACHE_ENTRIES_MAX + 10 {
            cache.insert(&alice, &Secret::from(format!("pw{index}")), b"v", &key);
        }
        assert_eq!(cache.len(), UNLOCK_CACHE_ENTRIES_MAX);
        assert!(
            cache.lookup(&alice, &Secret::from("pw0")).is_none(),
            "oldest evicted"
        );
        assert!(cache
            .lookup(
                &alice,
                &Secret::from(format!("pw{}", UNLOCK_CACHE_ENTRIES_MAX + 9))
            )
            .is_some());
        cache.ttl = Duration::ZERO;
        std::thread::sleep(Duration::from_millis(2));
        assert!(
            cache.lookup(&alice, &Secret::from("pw20")).is_none(),
            "expired"
        );
        cache.forget(&alice);
        assert_eq!(cache.len(), 0);
    }
}
