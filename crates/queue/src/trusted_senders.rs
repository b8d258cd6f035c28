//! The public keys users trust for their correspondents (`letterlock user contact-key add`), in
//! a second copy the server can read while the user is away. The user's own contact list
//! (`letterlock_mailstore` contacts) is sealed under the account key, which only an unlocked
//! session holds; inbound signatures are checked at delivery, when the account is usually
//! locked. So each trusted key is also kept here, sealed under the spool key like queued mail
//! (`DESIGN.md`: a key kept apart from the data), under keyed hashes of the account and of the
//! correspondent: the table shows neither whose contacts they are nor who the contacts are,
//! and someone with the data but not the spool key learns nothing from it.
//!
//! Written and removed together with the sealed contact by the CLI; an account's rows go when
//! the account does.

use letterlock_storage::{KeyRange, Table};
use letterlock_types::EmailAddress;
use serde::{Deserialize, Serialize};

use crate::error::{QueueError, Result};
use crate::store::Queue;

const TRUSTED_SENDER_KEYS: Table = Table::new("trusted_sender_keys");
const ACCOUNT_PURPOSE: &[u8] = b"letterlock trusted-sender account v1";
const ADDRESS_PURPOSE: &[u8] = b"letterlock trusted-sender address v1";
const CONTEXT: &[u8] = b"letterlock trusted-sender key v1";
/// Rows one account may hold: the mail store's own bound on trusted contacts.
pub const TRUSTED_SENDERS_PER_ACCOUNT_MAX: usize = 10_000;

#[derive(Serialize, Deserialize)]
struct Entry {
    key: Vec<u8>,
}

/// Trusted correspondents' public keys, per account, readable at delivery.
#[derive(Clone)]
pub struct TrustedSenderKeys {
    queue: Queue,
}

impl TrustedSenderKeys {
    /// On the queue's engine, sealed under its key.
    pub fn new(queue: Queue) -> TrustedSenderKeys {
        TrustedSenderKeys { queue }
    }

    fn account_prefix(&self, account: &EmailAddress) -> [u8; 16] {
        crate::sealed::keyed_index(&self.queue, ACCOUNT_PURPOSE, &account.to_string())
    }

    fn row(&self, account: &EmailAddress, correspondent: &EmailAddress) -> Vec<u8> {
        let mut row = self.account_prefix(account).to_vec();
        row.extend_from_slice(&crate::sealed::keyed_index(
            &self.queue,
            ADDRESS_PURPOSE,
            &correspondent.to_string(),
        ));
        row
    }

    /// `account` trusts `key` (an OpenPGP public key, binary) for `correspondent`, replacing
    /// any key it trusted for them before.
    pub fn remember(
        &self,
        account: &EmailAddress,
        correspondent: &EmailAddress,
        key: &[u8],
    ) -> Result<()> {
        let row = self.row(account, correspondent);
        let mut tx = self.queue.engine().begin_write()?;
        if tx.get(TRUSTED_SENDER_KEYS, &row)?.is_none()
            && tx
                .scan(
                    TRUSTED_SENDER_KEYS,
                    KeyRange::prefix(&self.account_prefix(account)),
                    TRUSTED_SENDERS_PER_ACCOUNT_MAX,
                )?
                .len()
                >= TRUSTED_SENDERS_PER_ACCOUNT_MAX
        {
            return Err(QueueError::TooManyTrustedKeys {
                limit: TRUSTED_SENDERS_PER_ACCOUNT_MAX,
            });
        }
        let sealed =
            crate::sealed::seal_json(&self.queue, CONTEXT, &row, &Entry { key: key.to_vec() })?;
        tx.put(TRUSTED_SENDER_KEYS, &row, &sealed)?;
        tx.commit()?;
        Ok(())
    }

    /// The key `account` trusts for `correspondent`, if any.
    pub fn key(
        &self,
        account: &EmailAddress,
        correspondent: &EmailAddress,
    ) -> Result<Option<Vec<u8>>> {
        let row = self.row(account, correspondent);
        let tx = self.queue.engine().begin_read()?;
        match tx.get(TRUSTED_SENDER_KEYS, &row)? {
            Some(sealed) => {
                let entry: Entry = crate::sealed::open_json(&self.queue, CONTEXT, &row, &sealed)?;
                Ok(Some(entry.key))
            }
            None => Ok(None),
        }
    }

    /// `account` no longer trusts a key for `correspondent`; false when it trusted none.
    pub fn forget(&self, account: &EmailAddress, correspondent: &EmailAddress) -> Result<bool> {
        let mut tx = self.queue.engine().begin_write()?;
        let removed = tx.delete(TRUSTED_SENDER_KEYS, &self.row(account, correspondent))?;
        tx.commit()?;
        Ok(removed)
    }

    /// Every row of `account` (the account is being removed); how many went.
    pub fn forget_account(&self, account: &EmailAddress) -> Result<usize> {
        let mut tx = self.queue.engine().begin_write()?;
        let rows = tx.scan(
            TRUSTED_SENDER_KEYS,
            KeyRange::prefix(&self.account_prefix(account)),
            TRUSTED_SENDERS_PER_ACCOUNT_MAX,
        )?;
        for (row, _) in &rows {
            tx.delete(TRUSTED_SENDER_KEYS, row)?;
        }
        tx.commit()?;
        Ok(rows.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{QueueSettings, SpoolKey};
    use letterlock_storage::embedded::EmbeddedEngine;
    use std::sync::Arc;

    fn address(text: &str) -> EmailAddress {
        EmailAddress::try_from(text).expect("address")
    }

    #[test]
    fn kept_per_account_sealed_and_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine: Arc<dyn letterlock_storage::Engine> =
            Arc::new(EmbeddedEngine::open(&dir.path().join("store")).expect("engine"));
        let queue = Queue::new(
            Arc::clone(&engine),
            &SpoolKey::generate(),
            QueueSettings::default(),
        );
        let trusted = TrustedSenderKeys::new(queue);
        let (alice, bob, dave) = (
            address("alice@example.org"),
            address("bob@example.org"),
            address("dave@outside.example"),
        );
        // The second replaces the first.
        for key in [&b"dave's key, as alice has it"[..], b"replaced"] {
            trusted.remember(&alice, &dave, key).expect("remember");
            assert_eq!(
                trusted.key(&alice, &dave).expect("key").as_deref(),
                Some(key)
            );
        }
        assert_eq!(trusted.key(&bob, &dave).expect("key"), None, "per account");
        // Neither address nor key is readable in the stored rows.
        let tx = engine.begin_read().expect("read");
        let rows = tx
            .scan(TRUSTED_SENDER_KEYS, KeyRange::all(), 10)
            .expect("scan");
        assert_eq!(rows.len(), 1);
        for (row, value) in &rows {
            for probe in [&b"dave"[..], b"alice", b"replaced", b"example"] {
                assert!(!row.windows(probe.len()).any(|window| window == probe));
                assert!(!value.windows(probe.len()).any(|window| window == probe));
            }
        }
        drop(tx);
        // Another spool key reads nothing.
        let other = TrustedSenderKeys::new(Queue::new(
            Arc::clone(&engine),
            &SpoolKey::generate(),
            QueueSettings::default(),
        ));
        assert_eq!(other.key(&alice, &dave).expect("key"), None);

        trusted.remember(&alice, &bob, b"bob's").expect("remember");
        trusted
            .remember(&bob, &dave, b"bob's dave")
            .expect("remember");
        assert!(trusted.forget(&alice, &bob).expect("forget"));
        assert!(
            !trusted.forget(&alice, &bob).expect("forget"),
            "already gone"
        );
        assert_eq!(trusted.forget_account(&alice).expect("forget"), 1);
        assert_eq!(trusted.key(&alice, &dave).expect("key"), None);
        assert!(
            trusted.key(&bob, &dave).expect("key").is_some(),
            "bob's stay"
        );
    }
}
