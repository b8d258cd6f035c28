//! Putting messages into mailboxes: local delivery (needs only public keys) and APPEND.
//!
//! The plaintext lives only in memory: it is parsed for the index, encrypted once per
//! recipient account, and only ciphertext reaches the write transaction.

use std::collections::{BTreeMap, BTreeSet};

use letterlock_crypto::openpgp::{PublicKey, SessionKey};
use letterlock_storage::{KeyRange, ReadTransaction, WriteTransaction, SCAN_ROWS_MAX};
use letterlock_types::limits::RECIPIENTS_PER_MESSAGE_MAX;
use letterlock_types::{EmailAddress, MailboxName};

use crate::accounts::{resolve_in, user_record};
use crate::error::{Result, StoreError};
use crate::index::{IndexRecord, SearchTerms};
use crate::records::{
    self, MailboxRecord, MessageRecord, UsageRecord, UserRecord, BLOBS, MAILBOXES, MESSAGES,
    PROMOTED_KEYS, USAGE,
};
use crate::{get_record, next_id, put_record, MailStore};

pub(crate) const INDEX_KEY_PURPOSE: &[u8] = b"letterlock index record v1";
pub(crate) const INDEX_CONTEXT: &[u8] = b"letterlock index record";
pub(crate) const TERMS_KEY_PURPOSE: &[u8] = b"letterlock search terms v1";
pub(crate) const TERMS_CONTEXT: &[u8] = b"letterlock search terms";

/// Where the spam filter files a delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filing {
    Inbox,
    Junk,
}

/// The account's mailbox with the `\Junk` special use (RFC 6154), if it has one.
fn junk_mailbox(tx: &(impl ReadTransaction + ?Sized), user_id: u64) -> Result<Option<MailboxName>> {
    let prefix = records::u64_key(user_id);
    for (key, value) in tx.scan(MAILBOXES, KeyRange::prefix(&prefix), SCAN_ROWS_MAX)? {
        let record: MailboxRecord = records::decode("mailbox", &value)?;
        if record.special_use == Some(records::SpecialUse::Junk) {
            let name = String::from_utf8(key[8..].to_vec())
                .map_err(|_| StoreError::Corrupted("mailbox name".into()))?;
            return Ok(Some(MailboxName::try_from(name)?));
        }
    }
    Ok(None)
}

/// Where a delivery went: for each recipient as given, the accounts and the UIDs in their INBOX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub delivered: Vec<(EmailAddress, EmailAddress, u32)>,
}

/// A message encrypted for one account, ready to be written.
pub(crate) struct PreparedMessage {
    pub blob: Vec<u8>,
    pub record: MessageRecord,
    pub session_key: SessionKey,
}

/// Encrypt `message` to `user`'s current key and seal its index record. CPU work only.
pub(crate) fn prepare(
    user: &UserRecord,
    message: &[u8],
    extracted: &(IndexRecord, SearchTerms),
    flags: u8,
    internal_date_unix: i64,
) -> Result<PreparedMessage> {
    let key = user.current_key()?;
    let public_key = PublicKey::from_bytes(&key.public_key)?;
    let encrypted = public_key.encrypt(message)?;
    let index_key = encrypted.session_key.derive(INDEX_KEY_PURPOSE);
    let sealed_index = index_key.seal(INDEX_CONTEXT, &records::encode(&extracted.0)?);
    let terms_key = encrypted.session_key.derive(TERMS_KEY_PURPOSE);
    let sealed_terms = terms_key.seal(TERMS_CONTEXT, &records::encode(&extracted.1)?);
    Ok(PreparedMessage {
        blob: encrypted.bytes,
        record: MessageRecord {
            blob_id: 0,
            size_bytes: message.len() as u64,
            internal_date_unix,
            flags,
            keywords: Vec::new(),
            modseq: 0,
            key_fingerprint: key.fingerprint.clone(),
            sealed_index,
            sealed_terms,
        },
        session_key: encrypted.session_key,
    })
}

/// Write a prepared message into a mailbox inside `tx`: new UID, new MODSEQ, quota accounted.
pub(crate) fn store_prepared(
    tx: &mut (impl WriteTransaction + ?Sized),
    user: &UserRecord,
    mailbox_name: &MailboxName,
    mut prepared: PreparedMessage,
) -> Result<(u32, u64)> {
    let mailbox_key = records::mailbox_key(user.id, mailbox_name);
    let mut mailbox: MailboxRecord = get_record(tx, MAILBOXES, &mailbox_key)?
        .ok_or_else(|| StoreError::NoSuchMailbox(mailbox_name.clone()))?;
    let size = prepared.record.size_bytes;
    check_quota(tx, user, size)?;
    let usage_key = records::u64_key(user.id);
    let mut usage: UsageRecord = get_record(tx, USAGE, &usage_key)?.unwrap_or_default();
    let uid = mailbox.uid_next;
    mailbox.uid_next = uid.checked_add(1).ok_or(StoreError::TooMany {
        what: "messages in this mailbox's UID space",
        limit: u32::MAX as usize,
    })?;
    mailbox.highest_modseq += 1;
    let blob_id = next_id(tx, records::COUNTER_BLOB_ID)?;
    prepared.record.blob_id = blob_id;
    prepared.record.modseq = mailbox.highest_modseq;
    tx.put(BLOBS, &records::u64_key(blob_id), &prepared.blob)?;
    put_record(
        tx,
        MESSAGES,
        &records::message_key(mailbox.id, uid),
        &prepared.record,
    )?;
    put_record(tx, MAILBOXES, &mailbox_key, &mailbox)?;
    usage.bytes = usage.bytes.saturating_add(size);
    usage.messages = usage.messages.saturating_add(1);
    put_record(tx, USAGE, &usage_key, &usage)?;
    Ok((uid, blob_id))
}

/// Delete every message of a mailbox with its blob (for removing a whole account: quota and
/// promoted keys go with the account).
pub(crate) fn delete_mailbox_messages(
    tx: &mut (impl WriteTransaction + ?Sized),
    mailbox: &MailboxRecord,
) -> Result<()> {
    let prefix = records::u64_key(mailbox.id);
    for (key, value) in tx.scan(MESSAGES, KeyRange::prefix(&prefix), SCAN_ROWS_MAX)? {
        let record: MessageRecord = records::decode("message", &value)?;
        tx.delete(BLOBS, &records::u64_key(record.blob_id))?;
        tx.delete(MESSAGES, &key)?;
    }
    Ok(())
}

/// Remove one message record, its blob and its promoted key, and give back its quota.
pub(crate) fn delete_message(
    tx: &mut (impl WriteTransaction + ?Sized),
    user_id: u64,
    mailbox_id: u64,
    uid: u32,
    record: &MessageRecord,
) -> Result<()> {
    tx.delete(MESSAGES, &records::message_key(mailbox_id, uid))?;
    tx.delete(BLOBS, &records::u64_key(record.blob_id))?;
    tx.delete(
        PROMOTED_KEYS,
        &records::promoted_key(user_id, record.blob_id),
    )?;
    let usage_key = records::u64_key(user_id);
    let mut usage: UsageRecord = get_record(tx, USAGE, &usage_key)?.unwrap_or_default();
    usage.bytes = usage.bytes.saturating_sub(record.size_bytes);
    usage.messages = usage.messages.saturating_sub(1);
    put_record(tx, USAGE, &usage_key, &usage)
}

/// Refuse a message that would take an account over its quota, before anything is written.
pub(crate) fn check_quota(
    tx: &(impl ReadTransaction + ?Sized),
    user: &UserRecord,
    size_bytes: u64,
) -> Result<()> {
    if user.quota_bytes == 0 {
        return Ok(());
    }
    let usage: UsageRecord = get_record(tx, USAGE, &records::u64_key(user.id))?.unwrap_or_default();
    if usage.bytes.saturating_add(size_bytes) > user.quota_bytes {
        return Err(StoreError::OverQuota {
            address: user.address.clone(),
            used_bytes: usage.bytes,
            quota_bytes: user.quota_bytes,
        });
    }
    Ok(())
}

/// One message of a batch, encrypted for each of its accounts, waiting for the write.
struct PreparedDelivery<'a> {
    routes: Vec<(EmailAddress, EmailAddress)>,
    copies: Vec<(&'a UserRecord, PreparedMessage)>,
}

impl MailStore {
    /// Deliver one message to local recipients, each account getting its own copy encrypted to
    /// its own key, in its INBOX. All or nothing: one unknown recipient or full mailbox fails the
    /// whole delivery before anything is written. Returns after the durable commit.
    pub fn deliver(&self, recipients: &[EmailAddress], message: &[u8]) -> Result<DeliveryReport> {
        self.deliver_many(&[(recipients, message)])
            .pop()
            .unwrap_or_else(|| Err(StoreError::Corrupted("empty batch result".into())))
    }

    /// Deliver several messages with one durable commit (group commit): each message is all or
    /// nothing as in [`MailStore::deliver`], and none is reported delivered before the commit.
    /// If the commit itself fails, every message of the batch fails with that error.
    pub fn deliver_many(&self, batch: &[(&[EmailAddress], &[u8])]) -> Vec<Result<DeliveryReport>> {
        let filed: Vec<(&[EmailAddress], &[u8], Filing)> = batch
            .iter()
            .map(|(recipients, message)| (*recipients, *message, Filing::Inbox))
            .collect();
        self.deliver_many_filed(&filed)
    }

    /// [`MailStore::deliver_many`], each message filed where the spam filter says: the
    /// INBOX, or each account's Junk mailbox (its `\Junk` special use; the INBOX if it has none).
    pub fn deliver_many_filed(
        &self,
        batch: &[(&[EmailAddress], &[u8], Filing)],
    ) -> Vec<Result<DeliveryReport>> {
        match self.deliver_batch(batch) {
            Ok(results) => results,
            Err(error) => {
                let text = error.to_string();
                let temporary = error.is_temporary();
                batch
                    .iter()
                    .map(|_| {
                        Err(if temporary {
                            StoreError::Storage(letterlock_storage::StorageError::Unavailable(
                                text.clone(),
                            ))
                        } else {
                            StoreError::Corrupted(text.clone())
                        })
                    })
                    .collect()
            }
        }
    }

    fn deliver_batch(
        &self,
        batch: &[(&[EmailAddress], &[u8], Filing)],
    ) -> Result<Vec<Result<DeliveryReport>>> {
        // Resolve and encrypt outside the write transaction: it is the slow part.
        let mut accounts: BTreeMap<EmailAddress, UserRecord> = BTreeMap::new();
        let mut routed: Vec<Result<Vec<(EmailAddress, EmailAddress)>>> =
            Vec::with_capacity(batch.len());
        {
            let tx = self.engine.begin_read()?;
            for (recipients, message, _) in batch {
                routed.push(self.route(tx.as_ref(), recipients, message, &mut accounts));
            }
        }
        let now = crate::now_unix() as i64;
        let mut prepared: Vec<Result<PreparedDelivery<'_>>> = Vec::with_capacity(batch.len());
        for ((_, message, _), routes) in batch.iter().zip(routed) {
            prepared.push(routes.and_then(|routes| {
                let extracted = IndexRecord::extract(message);
                let mut seen = BTreeSet::new();
                let mut copies = Vec::new();
                for (_, account) in &routes {
                    if seen.insert(account.clone()) {
                        let user = accounts
                            .get(account)
                            .ok_or_else(|| StoreError::NoSuchUser(account.clone()))?;
                        copies.push((user, prepare(user, message, &extracted, 0, now)?));
                    }
                }
                Ok(PreparedDelivery { routes, copies })
            }));
        }

        let inbox = MailboxName::inbox();
        let mut tx = self.engine.begin_write()?;
        let mut results = Vec::with_capacity(batch.len());
        let mut changed = BTreeSet::new();
        for (delivery, (_, _, filing)) in prepared.into_iter().zip(batch) {
            let delivery = match delivery {
                Ok(delivery) => delivery,
                Err(error) => {
                    results.push(Err(error));
                    continue;
                }
            };
            if let Err(error) = delivery
                .copies
                .iter()
                .try_for_each(|(user, copy)| check_quota(tx.as_ref(), user, copy.record.size_bytes))
            {
                results.push(Err(error));
                continue;
            }
            let mut uids = BTreeMap::new();
            for (user, copy) in delivery.copies {
                let mailbox = match filing {
                    Filing::Inbox => inbox.clone(),
                    Filing::Junk => {
                        junk_mailbox(tx.as_ref(), user.id)?.unwrap_or_else(|| inbox.clone())
                    }
                };
                let (uid, _) = store_prepared(tx.as_mut(), user, &mailbox, copy)?;
                uids.insert(user.address.clone(), uid);
                changed.insert((user.address.clone(), mailbox));
            }
            let delivered = delivery
                .routes
                .into_iter()
                .filter_map(|(recipient, account)| {
                    uids.get(&account)
                        .map(|uid| (recipient, account.clone(), *uid))
                })
                .collect();
            results.push(Ok(DeliveryReport { delivered }));
        }
        tx.commit()?;
        for (account, mailbox) in changed {
            self.notify(&account, &mailbox);
        }
        Ok(results)
    }

    /// Check one message's limits and resolve its recipients to accounts.
    fn route(
        &self,
        tx: &(impl ReadTransaction + ?Sized),
        recipients: &[EmailAddress],
        message: &[u8],
        accounts: &mut BTreeMap<EmailAddress, UserRecord>,
    ) -> Result<Vec<(EmailAddress, EmailAddress)>> {
        if message.len() > self.options.message_size_max_bytes {
            return Err(StoreError::MessageTooLarge {
                size_bytes: message.len(),
                limit_bytes: self.options.message_size_max_bytes,
            });
        }
        if recipients.len() > RECIPIENTS_PER_MESSAGE_MAX {
            return Err(StoreError::TooMany {
                what: "recipients",
                limit: RECIPIENTS_PER_MESSAGE_MAX,
            });
        }
        let mut routes = Vec::new();
        for recipient in recipients {
            for account in resolve_in(tx, recipient)? {
                if !accounts.contains_key(&account) {
                    let user = user_record(tx, &account)?;
                    accounts.insert(account.clone(), user);
                }
                routes.push((recipient.clone(), account));
            }
        }
        Ok(routes)
    }
}
