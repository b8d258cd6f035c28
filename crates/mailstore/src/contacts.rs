//! The account's own trusted keys for its correspondents (`DESIGN.md`: "the user's own
//! encrypted contacts"): keys the user vouches for, which outbound encryption prefers over keys
//! learnt from Autocrypt or found by WKD. Readable only with the account unlocked: each record
//! is sealed under a key derived from the account key, and stored under a keyed hash of the
//! address, so the store shows neither whom the user knows nor their keys.

use letterlock_crypto::openpgp::PublicKey;
use letterlock_storage::{KeyRange, Table, SCAN_ROWS_MAX};
use letterlock_types::EmailAddress;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::{now_unix, records, Unlocked};

pub(crate) const CONTACT_KEYS: Table = Table::new("contact_keys");

const INDEX_PURPOSE: &[u8] = b"letterlock contact index v1";
const SEAL_PURPOSE: &[u8] = b"letterlock contact keys v1";
/// Trusted keys one account keeps at most.
pub const CONTACT_KEYS_MAX: usize = 10_000;
/// The largest key accepted.
pub const CONTACT_KEY_SIZE_MAX_BYTES: usize = 512 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ContactKey {
    address: String,
    key: Vec<u8>,
    added_unix: u64,
}

/// A trusted key as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    pub address: EmailAddress,
    pub fingerprint: String,
    pub added_unix: u64,
}

/// Every contact key of `user_id` (for removing them with the account).
pub(crate) fn user_prefix(user_id: u64) -> Vec<u8> {
    records::u64_key(user_id).to_vec()
}

impl Unlocked {
    fn contact_row(&self, address: &EmailAddress) -> Vec<u8> {
        let mut row = user_prefix(self.user_id());
        let index = self
            .account_key()
            .derive(INDEX_PURPOSE)
            .derive(address.to_string().as_bytes());
        row.extend_from_slice(&index.expose()[..16]);
        row
    }

    /// Trust `key` (binary or armoured) for mail to `address`. The key must name the address
    /// in a user ID: a key for somebody else is a mistake or a trick.
    pub fn trust_key(&self, address: &EmailAddress, key: &[u8]) -> Result<String> {
        if key.len() > CONTACT_KEY_SIZE_MAX_BYTES {
            return Err(StoreError::InvalidKey(format!(
                "a key over {CONTACT_KEY_SIZE_MAX_BYTES} bytes"
            )));
        }
        let parsed = PublicKey::from_bytes(key)
            .or_else(|_| {
                letterlock_crypto::openpgp::dearmor(key)
                    .and_then(|binary| PublicKey::from_bytes(&binary))
            })
            .map_err(|error| StoreError::InvalidKey(error.to_string()))?;
        if !parsed.names_address(&address.to_string()) {
            return Err(StoreError::InvalidKey(format!(
                "the key's user IDs do not name {address}"
            )));
        }
        let row = self.contact_row(address);
        let record = ContactKey {
            address: address.to_string(),
            key: parsed
                .to_bytes()
                .map_err(|error| StoreError::InvalidKey(error.to_string()))?,
            added_unix: now_unix(),
        };
        let plain = postcard::to_stdvec(&record)
            .map_err(|error| StoreError::Corrupted(error.to_string()))?;
        let sealed = self.account_key().derive(SEAL_PURPOSE).seal(&row, &plain);
        let mut tx = self.store().engine.begin_write()?;
        if tx.get(CONTACT_KEYS, &row)?.is_none()
            && tx
                .scan(
                    CONTACT_KEYS,
                    KeyRange::prefix(&user_prefix(self.user_id())),
                    CONTACT_KEYS_MAX,
                )?
                .len()
                >= CONTACT_KEYS_MAX
        {
            return Err(StoreError::InvalidKey(format!(
                "already {CONTACT_KEYS_MAX} trusted keys"
            )));
        }
        tx.put(CONTACT_KEYS, &row, &sealed)?;
        tx.commit()?;
        Ok(parsed.fingerprint())
    }

    /// The key this account trusts for `address`, if any (binary).
    pub fn trusted_key(&self, address: &EmailAddress) -> Result<Option<Vec<u8>>> {
        let row = self.contact_row(address);
        let tx = self.store().engine.begin_read()?;
        let Some(sealed) = tx.get(CONTACT_KEYS, &row)? else {
            return Ok(None);
        };
        Ok(Some(self.open_contact(&row, &sealed)?.key))
    }

    /// Every trusted key, by address.
    pub fn trusted_keys(&self) -> Result<Vec<TrustedKey>> {
        let tx = self.store().engine.begin_read()?;
        let rows = tx.scan(
            CONTACT_KEYS,
            KeyRange::prefix(&user_prefix(self.user_id())),
            SCAN_ROWS_MAX,
        )?;
        let mut keys = Vec::with_capacity(rows.len());
        for (row, sealed) in rows {
            // A row sealed under an account key since replaced (written by a session that
            // outlived an admin reset) cannot be read, nor found by address: skip it.
            let Ok(record) = self.open_contact(&row, &sealed) else {
                continue;
            };
            let fingerprint = PublicKey::from_bytes(&record.key)
                .map(|key| key.fingerprint())
                .unwrap_or_default();
            keys.push(TrustedKey {
                address: EmailAddress::try_from(record.address.as_str())?,
                fingerprint,
                added_unix: record.added_unix,
            });
        }
        keys.sort_by_key(|key| key.address.to_string());
        Ok(keys)
    }

    /// Stop trusting the key for `address`. False when there was none.
    pub fn distrust_key(&self, address: &EmailAddress) -> Result<bool> {
        let row = self.contact_row(address);
        let mut tx = self.store().engine.begin_write()?;
        let removed = tx.delete(CONTACT_KEYS, &row)?;
        tx.commit()?;
        Ok(removed)
    }

    fn open_contact(&self, row: &[u8], sealed: &[u8]) -> Result<ContactKey> {
        let plain = self
            .account_key()
            .derive(SEAL_PURPOSE)
            .open(row, sealed)
            .map_err(|_| StoreError::Corrupted("a contact key does not open".into()))?;
        postcard::from_bytes(&plain).map_err(|error| StoreError::Corrupted(error.to_string()))
    }
}
