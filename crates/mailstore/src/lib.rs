//! The mail store: domains, accounts, per-user OpenPGP keys, mailboxes and encrypted messages,
//! on top of the storage interface (it never learns which engine it runs on).
//!
//! The encryption-at-rest model of `DESIGN.md` lives here:
//! - every account has a random 256-bit *account key*, wrapped under the password (Argon2id),
//!   each app password and the recovery code; the user's OpenPGP secret key is sealed under it;
//! - delivery needs only the public key: each message is a standard OpenPGP message
//!   (PKESK + SEIPDv1) to the user's key, and its index record (envelope, parts) and search terms
//!   are sealed under a key derived from that message's session key;
//! - reading needs an [`Unlocked`] account (keys in memory, zeroised on drop). The first read of a
//!   message costs one public-key operation, after which its session key is kept sealed under the
//!   account key ("promoted"), so later opens cost symmetric work only.
//!
//! Every acknowledged write (a delivery, an APPEND, a flag change) is committed durably by the
//! engine before the call returns.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use letterlock_crypto::kdf::KdfParams;
use letterlock_storage::{Engine, ReadTransaction, Table, WriteTransaction};
use serde::de::DeserializeOwned;

mod accounts;
mod contacts;
mod delivery;
pub mod error;
mod export;
pub mod index;
mod notify;
mod peer_keys;
pub mod records;
mod search_index;
mod session;
mod spam_models;
mod unlock_cache;
mod user_settings;

pub use accounts::{PasswordAuthority, PasswordReset, UserCreated, UserSummary};
pub use contacts::{TrustedKey, CONTACT_KEYS_MAX};
pub use delivery::{DeliveryReport, Filing};
pub use error::{Result, StoreError};
pub use export::ExportSummary;
pub use notify::{ChangeCallback, MailboxChange, Subscription};
pub use records::SpecialUse;
pub use search_index::{MailboxSearchIndex, COMPACT_AFTER_MESSAGES_MIN, MERGE_BATCH_MESSAGES_MAX};
pub use session::{
    CopiedMessages, MailboxInfo, MailboxStatus, MessageFlags, MessageSummary, Unlocked,
};
pub use spam_models::ModelOwner;
pub use unlock_cache::{UnlockCacheStats, UNLOCK_CACHE_ENTRIES_MAX, UNLOCK_CACHE_TTL_SECS};
pub use user_settings::{EncryptionPolicy, UserSettings};

/// How the mail store is tuned; the server's configuration fills it in.
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    pub kdf: KdfParams,
    pub message_size_max_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            kdf: KdfParams::DEFAULT,
            message_size_max_bytes: letterlock_types::limits::MESSAGE_SIZE_MAX_BYTES,
        }
    }
}

/// The mail store. Cheap to clone; clones share the engine.
#[derive(Clone)]
pub struct MailStore {
    engine: Arc<dyn Engine>,
    options: StoreOptions,
    notifier: Arc<notify::Notifier>,
    unlock_cache: Arc<unlock_cache::UnlockCache>,
}

impl MailStore {
    pub fn new(engine: Arc<dyn Engine>, options: StoreOptions) -> MailStore {
        MailStore {
            engine,
            options,
            notifier: Arc::default(),
            unlock_cache: Arc::default(),
        }
    }

    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

pub(crate) fn get_record<T: DeserializeOwned>(
    tx: &(impl ReadTransaction + ?Sized),
    table: Table,
    key: &[u8],
) -> Result<Option<T>> {
    match tx.get(table, key)? {
        Some(bytes) => Ok(Some(records::decode(table.name(), &bytes)?)),
        None => Ok(None),
    }
}

pub(crate) fn put_record<T: serde::Serialize>(
    tx: &mut (impl WriteTransaction + ?Sized),
    table: Table,
    key: &[u8],
    value: &T,
) -> Result<()> {
    tx.put(table, key, &records::encode(value)?)?;
    Ok(())
}

/// The next value of a counter (1 for the first call): ids are never reused.
pub(crate) fn next_id(tx: &mut (impl WriteTransaction + ?Sized), counter: &[u8]) -> Result<u64> {
    let current = match tx.get(records::META, counter)? {
        Some(bytes) => records::decode_u64("counter", &bytes)?,
        None => 0,
    };
    let next = current
        .checked_add(1)
        .ok_or_else(|| StoreError::Corrupted("id counter overflow".into()))?;
    tx.put(records::META, counter, &next.to_be_bytes())?;
    Ok(next)
}
