//! Finding a recipient's OpenPGP key by Web Key Directory (draft-koch-openpgp-webkey-service
//! section 3.1), for outbound encryption when no Autocrypt header taught us one: the advanced
//! method on `openpgpkey.<domain>` when that host exists, otherwise the direct method on the
//! domain itself, over HTTPS with the certificate verified (the domain vouches for the key).
//!
//! A key counts only if one of its user IDs names the address. Answers are cached in memory:
//! found keys for a day, misses for an hour (a domain without WKD is not asked for every
//! message), at most [`CACHE_ENTRIES_MAX`] addresses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use letterlock_crypto::openpgp::PublicKey;
use letterlock_types::EmailAddress;

use crate::https::{self, HttpsSettings};
use crate::resolver::{DnsError, Resolver};

/// The largest key accepted (keys with many signatures run to a few hundred KiB).
pub const KEY_SIZE_MAX_BYTES: usize = 512 * 1024;
/// One lookup, both methods, at most this long: a submission waits for it.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
pub const FOUND_TTL: Duration = Duration::from_secs(24 * 3600);
pub const MISSING_TTL: Duration = Duration::from_secs(3600);
pub const CACHE_ENTRIES_MAX: usize = 10_000;

type Cache = HashMap<String, (Instant, Option<Vec<u8>>)>;

/// WKD lookups with their cache. Share one per server.
pub struct KeyDiscovery {
    resolver: Arc<dyn Resolver>,
    https: HttpsSettings,
    timeout: Duration,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for KeyDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyDiscovery")
            .field("port", &self.https.port)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl KeyDiscovery {
    pub fn new(resolver: Arc<dyn Resolver>, https: HttpsSettings) -> KeyDiscovery {
        KeyDiscovery {
            resolver,
            https,
            timeout: LOOKUP_TIMEOUT,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> KeyDiscovery {
        self.timeout = timeout;
        self
    }

    /// `address`'s key (binary, as published), from the cache or WKD; `None` when it has none
    /// or it could not be fetched in time.
    pub async fn key_for(&self, address: &EmailAddress) -> Option<Vec<u8>> {
        let id = address.to_string().to_lowercase();
        if let Ok(cache) = self.cache.lock() {
            if let Some((fetched, key)) = cache.get(&id) {
                let ttl = if key.is_some() {
                    FOUND_TTL
                } else {
                    MISSING_TTL
                };
                if fetched.elapsed() < ttl {
                    return key.clone();
                }
            }
        }
        let found = match tokio::time::timeout(self.timeout, self.lookup(address)).await {
            Ok(Ok(found)) => found,
            Ok(Err(error)) => {
                tracing::info!(%address, %error, "WKD lookup failed");
                None
            }
            Err(_) => {
                tracing::info!(%address, "WKD lookup timed out");
                None
            }
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_ENTRIES_MAX {
                cache.retain(|_, (fetched, key)| {
                    fetched.elapsed()
                        < if key.is_some() {
                            FOUND_TTL
                        } else {
                            MISSING_TTL
                        }
                });
                if cache.len() >= CACHE_ENTRIES_MAX {
                    cache.clear();
                }
            }
            cache.insert(id, (Instant::now(), found.clone()));
        }
        found
    }

    async fn lookup(&self, address: &EmailAddress) -> Result<Option<Vec<u8>>, String> {
        let text = address.to_string();
        let (local_part, domain) = text.rsplit_once('@').ok_or("not an address")?;
        let [advanced, direct] = letterlock_crypto::wkd::key_locations(local_part, domain);
        // The advanced method's host existing decides the method (section 3.1).
        let (host, path) = match self.resolver.ip(&advanced.0).await {
            Ok(addresses) if !addresses.is_empty() => advanced,
            Ok(_) | Err(DnsError::NoRecords) => direct,
            Err(error) => return Err(error.to_string()),
        };
        let fetched = match https::get(
            self.resolver.as_ref(),
            &self.https,
            &host,
            &path,
            KEY_SIZE_MAX_BYTES,
        )
        .await
        {
            Ok(fetched) => fetched,
            // A 404 (or any refusal) is the domain saying it has no key for this address.
            Err(error) if error.contains("the server replied") => return Ok(None),
            Err(error) => return Err(error),
        };
        let key = PublicKey::from_bytes(&fetched.body)
            .map_err(|error| format!("{host} served no readable key: {error}"))?;
        if !key.names_address(&text) {
            return Err(format!("{host} served a key that does not name {text}"));
        }
        key.to_bytes().map(Some).map_err(|error| error.to_string())
    }
}
