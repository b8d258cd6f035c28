//! An unlocked account: the account key and OpenPGP secret keys in memory for the life of a
//! session (`DESIGN.md`, point 5, session unlock), zeroised when it is dropped.

use letterlock_crypto::openpgp::{decrypt_with_session_key, SessionKey, UserKey};
use letterlock_crypto::symmetric::SymmetricKey;
use letterlock_storage::{KeyRange, ReadTransaction, SCAN_ROWS_MAX};
use letterlock_types::limits::{KEYWORDS_PER_MESSAGE_MAX, MAILBOXES_PER_USER_MAX};
use letterlock_types::{EmailAddress, MailboxName};

use crate::accounts::{create_mailbox_in, open_user_keys, user_record};
use crate::delivery::{
    delete_message, prepare, store_prepared, INDEX_CONTEXT, INDEX_KEY_PURPOSE, TERMS_CONTEXT,
    TERMS_KEY_PURPOSE,
};
use crate::error::{Result, StoreError};
use crate::index::{IndexRecord, SearchTerms};
use crate::records::{
    self, MailboxRecord, MessageRecord, SpecialUse, UserRecord, BLOBS, MAILBOXES, MESSAGES,
    PROMOTED_KEYS,
};
use crate::{get_record, put_record, MailStore};

const PROMOTED_KEY_PURPOSE: &[u8] = b"letterlock promoted session keys v1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    /// Stable for the mailbox's life, across renames (IMAP OBJECTID's MAILBOXID, RFC 8474).
    pub id: u64,
    pub name: MailboxName,
    pub special_use: Option<SpecialUse>,
    pub uid_validity: u32,
    pub uid_next: u32,
    pub highest_modseq: u64,
    pub subscribed: bool,
}

#[derive(Debug, Clone)]
pub struct MessageSummary {
    pub uid: u32,
    pub flags: u8,
    pub keywords: Vec<String>,
    pub size_bytes: u64,
    pub internal_date_unix: i64,
    pub modseq: u64,
    /// `None` when the message is encrypted to a key this account no longer holds.
    pub index: Option<IndexRecord>,
}

/// One message as stored: for export.
pub(crate) struct StoredMessage {
    pub uid: u32,
    pub flags: u8,
    pub internal_date_unix: i64,
    pub openpgp_bytes: Vec<u8>,
}

pub struct Unlocked {
    store: MailStore,
    user: UserRecord,
    account_key: SymmetricKey,
    promoted_key_sealer: SymmetricKey,
    keys: Vec<UserKey>,
    /// Decrypted merged search indexes of this session (see `search_index`).
    search_cache: std::sync::Mutex<crate::search_index::IndexCache>,
}

impl std::fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Unlocked({})", self.user.address)
    }
}

impl Unlocked {
    pub(crate) fn open(
        store: MailStore,
        user: UserRecord,
        account_key: SymmetricKey,
    ) -> Result<Unlocked> {
        let keys = open_user_keys(&user, &account_key)?;
        Ok(Unlocked {
            store,
            promoted_key_sealer: account_key.derive(PROMOTED_KEY_PURPOSE),
            account_key,
            user,
            keys,
            search_cache: std::sync::Mutex::default(),
        })
    }

    pub(crate) fn user_id(&self) -> u64 {
        self.user.id
    }

    /// Whether the account still has the account key this session holds: false after an
    /// administrator's reset without the recovery code (the account got a new key, often
    /// because it was taken over) or once the account is removed. Sessions check it before
    /// each command and end when it is false. One read of the account record.
    pub fn is_current(&self) -> Result<bool> {
        let tx = self.store.engine.begin_read()?;
        let current: Option<UserRecord> = get_record(
            tx.as_ref(),
            records::USERS,
            self.user.address.to_string().as_bytes(),
        )?;
        Ok(current.is_some_and(|user| {
            user.id == self.user.id
                && user.account_key_generation == self.user.account_key_generation
        }))
    }

    pub(crate) fn store(&self) -> &MailStore {
        &self.store
    }

    pub(crate) fn search_cache(&self) -> &std::sync::Mutex<crate::search_index::IndexCache> {
        &self.search_cache
    }

    pub(crate) fn mailbox_record(
        &self,
        tx: &(impl ReadTransaction + ?Sized),
        name: &MailboxName,
    ) -> Result<MailboxRecord> {
        self.mailbox(tx, name)
    }

    pub(crate) fn account_key(&self) -> &SymmetricKey {
        &self.account_key
    }

    /// Bytes used and the quota in bytes (0: none), for IMAP QUOTA (RFC 9208).
    pub fn quota(&self) -> Result<(u64, u64)> {
        let tx = self.store.engine.begin_read()?;
        let user = crate::accounts::user_record(tx.as_ref(), &self.user.address)?;
        let usage: records::UsageRecord =
            get_record(tx.as_ref(), records::USAGE, &records::u64_key(user.id))?
                .unwrap_or_default();
        Ok((usage.bytes, user.quota_bytes))
    }

    pub fn address(&self) -> &EmailAddress {
        &self.user.address
    }

    /// The user's current OpenPGP key.
    pub fn current_key(&self) -> Result<&UserKey> {
        self.keys
            .last()
            .ok_or_else(|| StoreError::Corrupted("unlocked account without a key".into()))
    }

    /// Every key this session can decrypt with (older ones read older mail).
    pub fn keys(&self) -> &[UserKey] {
        &self.keys
    }

    fn mailbox(
        &self,
        tx: &(impl ReadTransaction + ?Sized),
        name: &MailboxName,
    ) -> Result<MailboxRecord> {
        get_record(tx, MAILBOXES, &records::mailbox_key(self.user.id, name))?
            .ok_or_else(|| StoreError::NoSuchMailbox(name.clone()))
    }

    pub fn mailboxes(&self) -> Result<Vec<MailboxInfo>> {
        let tx = self.store.engine.begin_read()?;
        let prefix = records::u64_key(self.user.id);
        tx.scan(MAILBOXES, KeyRange::prefix(&prefix), MAILBOXES_PER_USER_MAX)?
            .into_iter()
            .map(|(key, value)| {
                let record: MailboxRecord = records::decode("mailbox", &value)?;
                let name = String::from_utf8(key[8..].to_vec())
                    .map_err(|_| StoreError::Corrupted("mailbox name".into()))?;
                Ok(MailboxInfo {
                    id: record.id,
                    name: MailboxName::try_from(name)?,
                    special_use: record.special_use,
                    uid_validity: record.uid_validity,
                    uid_next: record.uid_next,
                    highest_modseq: record.highest_modseq,
                    subscribed: record.subscribed,
                })
            })
            .collect()
    }

    pub fn create_mailbox(&self, name: &MailboxName) -> Result<()> {
        let mut tx = self.store.engine.begin_write()?;
        let prefix = records::u64_key(self.user.id);
        let count = tx
            .scan(
                MAILBOXES,
                KeyRange::prefix(&prefix),
                MAILBOXES_PER_USER_MAX + 1,
            )?
            .len();
        if count >= MAILBOXES_PER_USER_MAX {
            return Err(StoreError::TooMany {
                what: "mailboxes",
                limit: MAILBOXES_PER_USER_MAX,
            });
        }
        create_mailbox_in(tx.as_mut(), self.user.id, name, None)?;
        tx.commit()?;
        Ok(())
    }

    /// Delete a mailbox and its messages. INBOX cannot be deleted (RFC 9051 section 6.3.4).
    pub fn delete_mailbox(&self, name: &MailboxName) -> Result<()> {
        if name.is_inbox() {
            return Err(StoreError::MailboxProtected(
                name.clone(),
                "INBOX cannot be deleted",
            ));
        }
        let mut tx = self.store.engine.begin_write()?;
        let mailbox = self.mailbox(tx.as_ref(), name)?;
        for (uid, record) in message_rows(tx.as_ref(), &mailbox)? {
            delete_message(tx.as_mut(), self.user.id, mailbox.id, uid, &record)?;
        }
        tx.delete(MAILBOXES, &records::mailbox_key(self.user.id, name))?;
        tx.delete(
            crate::search_index::SEARCH_INDEX,
            &crate::search_index::index_key(self.user.id, mailbox.id),
        )?;
        tx.commit()?;
        self.store.notify(&self.user.address, name);
        Ok(())
    }

    /// Store a message the user supplies (IMAP APPEND, a copy of sent mail), encrypted like a
    /// delivery. Returns its UID after the durable commit.
    pub fn append(
        &self,
        mailbox: &MailboxName,
        message: &[u8],
        flags: u8,
        internal_date_unix: i64,
    ) -> Result<u32> {
        let size_max = self.store.options.message_size_max_bytes;
        if message.len() > size_max {
            return Err(StoreError::MessageTooLarge {
                size_bytes: message.len(),
                limit_bytes: size_max,
            });
        }
        let extracted = IndexRecord::extract(message);
        let user = {
            let tx = self.store.engine.begin_read()?;
            user_record(tx.as_ref(), &self.user.address)?
        };
        let prepared = prepare(&user, message, &extracted, flags, internal_date_unix)?;
        let session_key = prepared.session_key.clone();
        let mut tx = self.store.engine.begin_write()?;
        let (uid, blob_id) = store_prepared(tx.as_mut(), &user, mailbox, prepared)?;
        // The session key is at hand: promote it now, saving the public-key operation later.
        let promoted = records::promoted_key(self.user.id, blob_id);
        tx.put(
            PROMOTED_KEYS,
            &promoted,
            &self
                .promoted_key_sealer
                .seal(&promoted, &session_key.to_bytes()),
        )?;
        tx.commit()?;
        self.store.notify(&self.user.address, mailbox);
        Ok(uid)
    }

    /// Every message of a mailbox with its flags and decrypted index record, in UID order.
    ///
    /// Messages read for the first time cost one public-key operation each; their session keys
    /// are then promoted (sealed under the account key) in one durable transaction, so the next
    /// listing costs symmetric work only.
    pub fn list_messages(&self, mailbox_name: &MailboxName) -> Result<Vec<MessageSummary>> {
        let tx = self.store.engine.begin_read()?;
        let mailbox = self.mailbox(tx.as_ref(), mailbox_name)?;
        let rows = message_rows(tx.as_ref(), &mailbox)?;
        self.summarise(tx, rows)
    }

    /// Summaries of `rows` read in `tx`, promoting the session keys read for the first time.
    fn summarise(
        &self,
        tx: Box<dyn ReadTransaction + '_>,
        rows: Vec<(u32, MessageRecord)>,
    ) -> Result<Vec<MessageSummary>> {
        let mut promotions = Vec::new();
        let mut out = Vec::with_capacity(rows.len());
        for (uid, record) in rows {
            let index = match self.session_key(tx.as_ref(), &record, &mut promotions) {
                Ok(session_key) => Some(open_index(&session_key, &record)?),
                Err(StoreError::KeyLost(_)) => None,
                Err(error) => return Err(error),
            };
            out.push(MessageSummary {
                uid,
                flags: record.flags,
                keywords: record.keywords,
                size_bytes: record.size_bytes,
                internal_date_unix: record.internal_date_unix,
                modseq: record.modseq,
                index,
            });
        }
        drop(tx);
        self.save_promotions(promotions)?;
        Ok(out)
    }

    /// The exact bytes of one message.
    pub fn fetch(&self, mailbox_name: &MailboxName, uid: u32) -> Result<Vec<u8>> {
        let tx = self.store.engine.begin_read()?;
        let (record, blob) = self.message(tx.as_ref(), mailbox_name, uid)?;
        let mut promotions = Vec::new();
        let session_key = self.session_key(tx.as_ref(), &record, &mut promotions)?;
        drop(tx);
        self.save_promotions(promotions)?;
        Ok(decrypt_with_session_key(
            &blob,
            &session_key,
            self.store.options.message_size_max_bytes,
        )?)
    }

    /// The stored OpenPGP message, as exported.
    pub fn fetch_encrypted(&self, mailbox_name: &MailboxName, uid: u32) -> Result<Vec<u8>> {
        let tx = self.store.engine.begin_read()?;
        Ok(self.message(tx.as_ref(), mailbox_name, uid)?.1)
    }

    fn message(
        &self,
        tx: &(impl ReadTransaction + ?Sized),
        mailbox_name: &MailboxName,
        uid: u32,
    ) -> Result<(MessageRecord, Vec<u8>)> {
        let mailbox = self.mailbox(tx, mailbox_name)?;
        let no_such = || StoreError::NoSuchMessage {
            mailbox: mailbox_name.clone(),
            uid,
        };
        let record: MessageRecord =
            get_record(tx, MESSAGES, &records::message_key(mailbox.id, uid))?
                .ok_or_else(no_such)?;
        let blob = stored_blob(tx, &record)?;
        Ok((record, blob))
    }

    /// The search terms of one message (the per-user search index of the IMAP layer merges
    /// these at unlock).
    pub fn search_terms(&self, mailbox_name: &MailboxName, uid: u32) -> Result<SearchTerms> {
        let tx = self.store.engine.begin_read()?;
        let (record, _) = self.message(tx.as_ref(), mailbox_name, uid)?;
        let mut promotions = Vec::new();
        let session_key = self.session_key(tx.as_ref(), &record, &mut promotions)?;
        drop(tx);
        self.save_promotions(promotions)?;
        let bytes = session_key
            .derive(TERMS_KEY_PURPOSE)
            .open(TERMS_CONTEXT, &record.sealed_terms)?;
        records::decode("search terms", &bytes)
    }

    /// Replace a message's flags and keywords; returns the new MODSEQ.
    pub fn set_flags(
        &self,
        mailbox_name: &MailboxName,
        uid: u32,
        flags: u8,
        keywords: &[String],
    ) -> Result<u64> {
        if keywords.len() > KEYWORDS_PER_MESSAGE_MAX {
            return Err(StoreError::TooMany {
                what: "keywords",
                limit: KEYWORDS_PER_MESSAGE_MAX,
            });
        }
        let mut tx = self.store.engine.begin_write()?;
        let mailbox_key = records::mailbox_key(self.user.id, mailbox_name);
        let mut mailbox = self.mailbox(tx.as_ref(), mailbox_name)?;
        let message_key = records::message_key(mailbox.id, uid);
        let mut record: MessageRecord = get_record(tx.as_ref(), MESSAGES, &message_key)?
            .ok_or_else(|| StoreError::NoSuchMessage {
                mailbox: mailbox_name.clone(),
                uid,
            })?;
        mailbox.highest_modseq += 1;
        record.flags = flags;
        record.keywords = keywords.to_vec();
        record.modseq = mailbox.highest_modseq;
        put_record(tx.as_mut(), MESSAGES, &message_key, &record)?;
        put_record(tx.as_mut(), MAILBOXES, &mailbox_key, &mailbox)?;
        tx.commit()?;
        self.store.notify(&self.user.address, mailbox_name);
        Ok(record.modseq)
    }

    /// Remove every message flagged `\Deleted`; returns their UIDs.
    pub fn expunge(&self, mailbox_name: &MailboxName) -> Result<Vec<u32>> {
        self.expunge_where(mailbox_name, |_, record| {
            record.flags & records::flag_bits::DELETED != 0
        })
    }

    /// Remove the messages with these UIDs (POP3 DELE then QUIT, IMAP UID EXPUNGE);
    /// returns the UIDs that existed and were removed.
    pub fn expunge_uids(&self, mailbox_name: &MailboxName, uids: &[u32]) -> Result<Vec<u32>> {
        let wanted: std::collections::BTreeSet<u32> = uids.iter().copied().collect();
        self.expunge_where(mailbox_name, |uid, _| wanted.contains(&uid))
    }

    fn expunge_where(
        &self,
        mailbox_name: &MailboxName,
        remove: impl Fn(u32, &MessageRecord) -> bool,
    ) -> Result<Vec<u32>> {
        let mut tx = self.store.engine.begin_write()?;
        let mailbox_key = records::mailbox_key(self.user.id, mailbox_name);
        let mut mailbox = self.mailbox(tx.as_ref(), mailbox_name)?;
        let mut expunged = Vec::new();
        for (uid, record) in message_rows(tx.as_ref(), &mailbox)? {
            if !remove(uid, &record) {
                continue;
            }
            delete_message(tx.as_mut(), self.user.id, mailbox.id, uid, &record)?;
            expunged.push(uid);
        }
        if !expunged.is_empty() {
            mailbox.highest_modseq += 1;
            put_record(tx.as_mut(), MAILBOXES, &mailbox_key, &mailbox)?;
        }
        tx.commit()?;
        if !expunged.is_empty() {
            self.store.notify(&self.user.address, mailbox_name);
        }
        Ok(expunged)
    }

    /// The session key of a stored message: from its promoted (symmetric) wrapping if there is
    /// one, else by one public-key operation, queued in `promotions` to be saved.
    fn session_key(
        &self,
        tx: &(impl ReadTransaction + ?Sized),
        record: &MessageRecord,
        promotions: &mut Vec<([u8; 16], SessionKey)>,
    ) -> Result<SessionKey> {
        let promoted = records::promoted_key(self.user.id, record.blob_id);
        // A wrapping that does not open was made under an account key since replaced (by a
        // session that outlived an admin reset): the public-key path decides, and replaces it.
        if let Some(bytes) = tx
            .get(PROMOTED_KEYS, &promoted)?
            .and_then(|sealed| self.promoted_key_sealer.open(&promoted, &sealed).ok())
        {
            let bytes = zeroize::Zeroizing::new(bytes);
            return Ok(SessionKey::from_bytes(&bytes)?);
        }
        let key = self
            .keys
            .iter()
            .find(|key| key.fingerprint() == record.key_fingerprint)
            .ok_or_else(|| StoreError::KeyLost(record.key_fingerprint.clone()))?;
        let blob = stored_blob(tx, record)?;
        let session_key = key.session_key_of(&blob)?;
        promotions.push((promoted, session_key.clone()));
        Ok(session_key)
    }

    fn save_promotions(&self, promotions: Vec<([u8; 16], SessionKey)>) -> Result<()> {
        if promotions.is_empty() {
            return Ok(());
        }
        let mut tx = self.store.engine.begin_write()?;
        for (key, session_key) in promotions {
            tx.put(
                PROMOTED_KEYS,
                &key,
                &self.promoted_key_sealer.seal(&key, &session_key.to_bytes()),
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The secret keys this session holds, armoured and locked with `password`.
    pub fn export_secret_keys(&self, password: &[u8]) -> Result<String> {
        let mut out = String::new();
        for key in &self.keys {
            out.push_str(&key.export_locked_armored(password)?);
        }
        Ok(out)
    }

    /// For each message of a mailbox: UID, flags, internal date and the stored OpenPGP bytes.
    pub(crate) fn encrypted_messages(
        &self,
        mailbox_name: &MailboxName,
    ) -> Result<Vec<StoredMessage>> {
        let tx = self.store.engine.begin_read()?;
        let mailbox = self.mailbox(tx.as_ref(), mailbox_name)?;
        let mut out = Vec::new();
        for (uid, record) in message_rows(tx.as_ref(), &mailbox)? {
            let blob = stored_blob(tx.as_ref(), &record)?;
            out.push(StoredMessage {
                uid,
                flags: record.flags,
                internal_date_unix: record.internal_date_unix,
                openpgp_bytes: blob,
            });
        }
        Ok(out)
    }

    /// The promoted keys this account has, by blob id: for tests and the benchmark.
    pub fn promoted_key_count(&self) -> Result<usize> {
        let tx = self.store.engine.begin_read()?;
        Ok(tx
            .scan(
                PROMOTED_KEYS,
                KeyRange::prefix(&records::u64_key(self.user.id)),
                SCAN_ROWS_MAX,
            )?
            .len())
    }
}

/// Every message of a mailbox, in UID order.
fn message_rows(
    tx: &(impl ReadTransaction + ?Sized),
    mailbox: &MailboxRecord,
) -> Result<Vec<(u32, MessageRecord)>> {
    tx.scan(
        MESSAGES,
        KeyRange::prefix(&records::u64_key(mailbox.id)),
        SCAN_ROWS_MAX,
    )?
    .into_iter()
    .map(|(key, value)| {
        Ok((
            records::uid_of_message_key(&key)?,
            records::decode("message", &value)?,
        ))
    })
    .collect()
}

/// The OpenPGP bytes of a message record; a record without its blob is damage.
fn stored_blob(tx: &(impl ReadTransaction + ?Sized), record: &MessageRecord) -> Result<Vec<u8>> {
    tx.get(BLOBS, &records::u64_key(record.blob_id))?
        .ok_or_else(|| StoreError::Corrupted(format!("blob {} missing", record.blob_id)))
}

fn open_index(session_key: &SessionKey, record: &MessageRecord) -> Result<IndexRecord> {
    let bytes = session_key
        .derive(INDEX_KEY_PURPOSE)
        .open(INDEX_CONTEXT, &record.sealed_index)?;
    IndexRecord::decode(&bytes)
}

/// A mailbox's counts, read from the clear metadata only (no decryption): IMAP STATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailboxStatus {
    /// See [`MailboxInfo::id`].
    pub mailbox_id: u64,
    pub messages: u64,
    pub unseen: u64,
    pub deleted: u64,
    pub size_bytes: u64,
    pub uid_next: u32,
    pub uid_validity: u32,
    pub highest_modseq: u64,
}

/// A message's clear metadata (no decryption): what SELECT and change tracking need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFlags {
    pub uid: u32,
    /// The stored message's own id (IMAP OBJECTID's EMAILID, RFC 8474).
    pub email_id: u64,
    pub flags: u8,
    pub keywords: Vec<String>,
    pub modseq: u64,
    pub size_bytes: u64,
    pub internal_date_unix: i64,
}

/// Where COPY or MOVE put the messages: the target's UIDVALIDITY and (source UID, new UID)
/// pairs, for the RFC 4315 COPYUID response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedMessages {
    pub uid_validity: u32,
    pub uids: Vec<(u32, u32)>,
}

/// Looking up UIDs one by one beats scanning the mailbox below this many.
const UID_LOOKUPS_BEFORE_SCAN_MAX: usize = 64;

impl Unlocked {
    /// Counts for IMAP STATUS, without decrypting anything.
    pub fn mailbox_status(&self, name: &MailboxName) -> Result<MailboxStatus> {
        let tx = self.store.engine.begin_read()?;
        let mailbox = self.mailbox(tx.as_ref(), name)?;
        let mut status = MailboxStatus {
            mailbox_id: mailbox.id,
            uid_next: mailbox.uid_next,
            uid_validity: mailbox.uid_validity,
            highest_modseq: mailbox.highest_modseq,
            ..MailboxStatus::default()
        };
        for (_, record) in message_rows(tx.as_ref(), &mailbox)? {
            status.messages += 1;
            status.size_bytes = status.size_bytes.saturating_add(record.size_bytes);
            if record.flags & records::flag_bits::SEEN == 0 {
                status.unseen += 1;
            }
            if record.flags & records::flag_bits::DELETED != 0 {
                status.deleted += 1;
            }
        }
        Ok(status)
    }

    /// The mailbox and every message's clear metadata, from one consistent snapshot.
    pub fn list_flags(&self, name: &MailboxName) -> Result<(MailboxInfo, Vec<MessageFlags>)> {
        let tx = self.store.engine.begin_read()?;
        let mailbox = self.mailbox(tx.as_ref(), name)?;
        let messages = message_rows(tx.as_ref(), &mailbox)?
            .into_iter()
            .map(|(uid, record)| MessageFlags {
                uid,
                email_id: record.blob_id,
                flags: record.flags,
                keywords: record.keywords,
                modseq: record.modseq,
                size_bytes: record.size_bytes,
                internal_date_unix: record.internal_date_unix,
            })
            .collect();
        Ok((info_of(name.clone(), &mailbox), messages))
    }

    /// Like [`Unlocked::list_messages`] for some UIDs only (those that no longer exist are
    /// left out), in UID order.
    pub fn summaries(
        &self,
        mailbox_name: &MailboxName,
        uids: &[u32],
    ) -> Result<Vec<MessageSummary>> {
        let tx = self.store.engine.begin_read()?;
        let mailbox = self.mailbox(tx.as_ref(), mailbox_name)?;
        let rows = rows_for(tx.as_ref(), &mailbox, uids)?;
        self.summarise(tx, rows)
    }

    /// The search terms of several messages from one snapshot; messages encrypted to a lost
    /// key, or gone, are left out.
    pub fn search_terms_many(
        &self,
        mailbox_name: &MailboxName,
        uids: &[u32],
    ) -> Result<Vec<(u32, SearchTerms)>> {
        let tx = self.store.engine.begin_read()?;
        let mailbox = self.mailbox(tx.as_ref(), mailbox_name)?;
        let rows = rows_for(tx.as_ref(), &mailbox, uids)?;
        let mut promotions = Vec::new();
        let mut out = Vec::with_capacity(rows.len());
        for (uid, record) in rows {
            let session_key = match self.session_key(tx.as_ref(), &record, &mut promotions) {
                Ok(session_key) => session_key,
                Err(StoreError::KeyLost(_)) => continue,
                Err(error) => return Err(error),
            };
            let bytes = session_key
                .derive(TERMS_KEY_PURPOSE)
                .open(TERMS_CONTEXT, &record.sealed_terms)?;
            out.push((uid, records::decode("search terms", &bytes)?));
        }
        drop(tx);
        self.save_promotions(promotions)?;
        Ok(out)
    }

    /// Replace the flags and keywords of several messages in one durable commit; UIDs that no
    /// longer exist are skipped. Returns (UID, new MODSEQ) for each message changed.
    pub fn set_flags_many(
        &self,
        mailbox_name: &MailboxName,
        changes: &[(u32, u8, Vec<String>)],
    ) -> Result<Vec<(u32, u64)>> {
        if let Some((_, _, keywords)) = changes
            .iter()
            .find(|(_, _, keywords)| keywords.len() > KEYWORDS_PER_MESSAGE_MAX)
        {
            return Err(StoreError::TooMany {
                what: "keywords",
                limit: KEYWORDS_PER_MESSAGE_MAX.min(keywords.len()),
            });
        }
        let mut tx = self.store.engine.begin_write()?;
        let mailbox_key = records::mailbox_key(self.user.id, mailbox_name);
        let mut mailbox = self.mailbox(tx.as_ref(), mailbox_name)?;
        let mut changed = Vec::with_capacity(changes.len());
        for (uid, flags, keywords) in changes {
            let message_key = records::message_key(mailbox.id, *uid);
            let Some(mut record) =
                get_record::<MessageRecord>(tx.as_ref(), MESSAGES, &message_key)?
            else {
                continue;
            };
            mailbox.highest_modseq += 1;
            record.flags = *flags;
            record.keywords = keywords.clone();
            record.modseq = mailbox.highest_modseq;
            put_record(tx.as_mut(), MESSAGES, &message_key, &record)?;
            changed.push((*uid, record.modseq));
        }
        if changed.is_empty() {
            return Ok(changed);
        }
        put_record(tx.as_mut(), MAILBOXES, &mailbox_key, &mailbox)?;
        tx.commit()?;
        self.store.notify(&self.user.address, mailbox_name);
        Ok(changed)
    }

    /// Copy messages into another mailbox (IMAP COPY): the stored OpenPGP message is copied
    /// as it is (no re-encryption), with its promoted key; quota is charged per copy.
    pub fn copy_messages(
        &self,
        from: &MailboxName,
        uids: &[u32],
        to: &MailboxName,
    ) -> Result<CopiedMessages> {
        let mut tx = self.store.engine.begin_write()?;
        let source = self.mailbox(tx.as_ref(), from)?;
        let target_key = records::mailbox_key(self.user.id, to);
        let mut target = self.mailbox(tx.as_ref(), to)?;
        let user = user_record(tx.as_ref(), &self.user.address)?;
        let usage_key = records::u64_key(self.user.id);
        let mut copied = Vec::new();
        for (uid, mut record) in rows_for(tx.as_ref(), &source, uids)? {
            crate::delivery::check_quota(tx.as_ref(), &user, record.size_bytes)?;
            let blob = stored_blob(tx.as_ref(), &record)?;
            let old_promoted = records::promoted_key(self.user.id, record.blob_id);
            // One that does not open (see `session_key`) is not copied.
            let promoted_session_key = tx
                .get(PROMOTED_KEYS, &old_promoted)?
                .and_then(|sealed| self.promoted_key_sealer.open(&old_promoted, &sealed).ok())
                .map(zeroize::Zeroizing::new);
            let blob_id = crate::next_id(tx.as_mut(), records::COUNTER_BLOB_ID)?;
            tx.put(BLOBS, &records::u64_key(blob_id), &blob)?;
            if let Some(session_key) = promoted_session_key {
                let promoted = records::promoted_key(self.user.id, blob_id);
                tx.put(
                    PROMOTED_KEYS,
                    &promoted,
                    &self.promoted_key_sealer.seal(&promoted, &session_key),
                )?;
            }
            let new_uid = take_uid(&mut target)?;
            target.highest_modseq += 1;
            record.blob_id = blob_id;
            record.modseq = target.highest_modseq;
            put_record(
                tx.as_mut(),
                MESSAGES,
                &records::message_key(target.id, new_uid),
                &record,
            )?;
            let mut usage: crate::records::UsageRecord =
                get_record(tx.as_ref(), crate::records::USAGE, &usage_key)?.unwrap_or_default();
            usage.bytes = usage.bytes.saturating_add(record.size_bytes);
            usage.messages = usage.messages.saturating_add(1);
            put_record(tx.as_mut(), crate::records::USAGE, &usage_key, &usage)?;
            copied.push((uid, new_uid));
        }
        put_record(tx.as_mut(), MAILBOXES, &target_key, &target)?;
        tx.commit()?;
        if !copied.is_empty() {
            self.store.notify(&self.user.address, to);
        }
        Ok(CopiedMessages {
            uid_validity: target.uid_validity,
            uids: copied,
        })
    }

    /// Move messages into another mailbox (IMAP MOVE, RFC 6851) in one transaction: the
    /// records are re-keyed under the target with new UIDs; blobs and promoted keys stay.
    pub fn move_messages(
        &self,
        from: &MailboxName,
        uids: &[u32],
        to: &MailboxName,
    ) -> Result<CopiedMessages> {
        let mut tx = self.store.engine.begin_write()?;
        let source_key = records::mailbox_key(self.user.id, from);
        let mut source = self.mailbox(tx.as_ref(), from)?;
        let target_key = records::mailbox_key(self.user.id, to);
        let mut target = self.mailbox(tx.as_ref(), to)?;
        if source.id == target.id {
            return Err(StoreError::MailboxExists(to.clone()));
        }
        let mut moved = Vec::new();
        for (uid, mut record) in rows_for(tx.as_ref(), &source, uids)? {
            tx.delete(MESSAGES, &records::message_key(source.id, uid))?;
            let new_uid = take_uid(&mut target)?;
            target.highest_modseq += 1;
            record.modseq = target.highest_modseq;
            put_record(
                tx.as_mut(),
                MESSAGES,
                &records::message_key(target.id, new_uid),
                &record,
            )?;
            moved.push((uid, new_uid));
        }
        if !moved.is_empty() {
            source.highest_modseq += 1;
            put_record(tx.as_mut(), MAILBOXES, &source_key, &source)?;
            put_record(tx.as_mut(), MAILBOXES, &target_key, &target)?;
        }
        tx.commit()?;
        if !moved.is_empty() {
            self.store.notify(&self.user.address, from);
            self.store.notify(&self.user.address, to);
        }
        Ok(CopiedMessages {
            uid_validity: target.uid_validity,
            uids: moved,
        })
    }

    /// Rename a mailbox and its children (RFC 9051 section 6.3.6). Renaming INBOX moves its
    /// messages into a new mailbox and leaves INBOX empty, as the RFC asks.
    pub fn rename_mailbox(&self, from: &MailboxName, to: &MailboxName) -> Result<()> {
        let mut tx = self.store.engine.begin_write()?;
        let source = self.mailbox(tx.as_ref(), from)?;
        if tx
            .get(MAILBOXES, &records::mailbox_key(self.user.id, to))?
            .is_some()
        {
            return Err(StoreError::MailboxExists(to.clone()));
        }
        if from.is_inbox() {
            let mut target = create_mailbox_in(tx.as_mut(), self.user.id, to, None)?;
            for (uid, record) in message_rows(tx.as_ref(), &source)? {
                tx.delete(MESSAGES, &records::message_key(source.id, uid))?;
                put_record(
                    tx.as_mut(),
                    MESSAGES,
                    &records::message_key(target.id, uid),
                    &record,
                )?;
            }
            target.uid_next = source.uid_next;
            target.highest_modseq = source.highest_modseq;
            put_record(
                tx.as_mut(),
                MAILBOXES,
                &records::mailbox_key(self.user.id, to),
                &target,
            )?;
            let mut inbox = source;
            inbox.highest_modseq += 1;
            put_record(
                tx.as_mut(),
                MAILBOXES,
                &records::mailbox_key(self.user.id, from),
                &inbox,
            )?;
        } else {
            let child_prefix = format!("{}{}", from.as_str(), MailboxName::HIERARCHY_SEPARATOR);
            let mut renames = vec![(from.clone(), to.clone(), source)];
            let user_prefix = records::u64_key(self.user.id);
            for (key, value) in tx.scan(
                MAILBOXES,
                KeyRange::prefix(&[&user_prefix[..], child_prefix.as_bytes()].concat()),
                MAILBOXES_PER_USER_MAX,
            )? {
                let old_name = String::from_utf8(key[8..].to_vec())
                    .map_err(|_| StoreError::Corrupted("mailbox name".into()))?;
                let new_name = format!("{}{}", to.as_str(), &old_name[from.as_str().len()..]);
                renames.push((
                    MailboxName::try_from(old_name)?,
                    MailboxName::try_from(new_name)?,
                    records::decode("mailbox", &value)?,
                ));
            }
            for (old_name, new_name, record) in &renames {
                let new_key = records::mailbox_key(self.user.id, new_name);
                if tx.get(MAILBOXES, &new_key)?.is_some() {
                    return Err(StoreError::MailboxExists(new_name.clone()));
                }
                tx.delete(MAILBOXES, &records::mailbox_key(self.user.id, old_name))?;
                put_record(tx.as_mut(), MAILBOXES, &new_key, record)?;
            }
        }
        tx.commit()?;
        self.store.notify(&self.user.address, from);
        self.store.notify(&self.user.address, to);
        Ok(())
    }

    /// Mark a mailbox subscribed or not (IMAP SUBSCRIBE, UNSUBSCRIBE, LSUB).
    pub fn set_subscribed(&self, name: &MailboxName, subscribed: bool) -> Result<()> {
        let mut tx = self.store.engine.begin_write()?;
        let key = records::mailbox_key(self.user.id, name);
        let mut mailbox = self.mailbox(tx.as_ref(), name)?;
        if mailbox.subscribed == subscribed {
            return Ok(());
        }
        mailbox.subscribed = subscribed;
        put_record(tx.as_mut(), MAILBOXES, &key, &mailbox)?;
        tx.commit()?;
        Ok(())
    }
}

fn info_of(name: MailboxName, record: &MailboxRecord) -> MailboxInfo {
    MailboxInfo {
        id: record.id,
        name,
        special_use: record.special_use,
        uid_validity: record.uid_validity,
        uid_next: record.uid_next,
        highest_modseq: record.highest_modseq,
        subscribed: record.subscribed,
    }
}

fn take_uid(mailbox: &mut MailboxRecord) -> Result<u32> {
    let uid = mailbox.uid_next;
    mailbox.uid_next = uid.checked_add(1).ok_or(StoreError::TooMany {
        what: "messages in this mailbox's UID space",
        limit: u32::MAX as usize,
    })?;
    Ok(uid)
}

/// The messages of a mailbox with these UIDs, in UID order; missing ones are left out.
fn rows_for(
    tx: &(impl ReadTransaction + ?Sized),
    mailbox: &MailboxRecord,
    uids: &[u32],
) -> Result<Vec<(u32, MessageRecord)>> {
    let wanted: std::collections::BTreeSet<u32> = uids.iter().copied().collect();
    if wanted.len() > UID_LOOKUPS_BEFORE_SCAN_MAX {
        return Ok(message_rows(tx, mailbox)?
            .into_iter()
            .filter(|(uid, _)| wanted.contains(uid))
            .collect());
    }
    let mut out = Vec::with_capacity(wanted.len());
    for uid in wanted {
        if let Some(record) = get_record(tx, MESSAGES, &records::message_key(mailbox.id, uid))? {
            out.push((uid, record));
        }
    }
    Ok(out)
}
