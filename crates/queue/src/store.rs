//! The durable queue on the storage interface: its own tables, sealed records, and claims with
//! a lease so two runners (two threads, or two nodes on one database) never deliver one entry
//! at the same time.
//!
//! Tables (what is on disk, and what is in the clear):
//! - `queue_entries`: entry id (u64, big-endian) → [`EntryRecord`]: times, attempt count, the
//!   lease, the size, and the *sealed* envelope (sender, recipients, their states and the
//!   remote servers' replies: who writes to whom is as private as what they write).
//! - `queue_bodies`: entry id → the message, sealed.
//! - `queue_due`: due time (unix seconds, u64 big-endian) then entry id → nothing. An index
//!   holding exactly one row per entry, at its next attempt or, while it is claimed, at the
//!   end of its lease (so an entry whose runner died becomes due again by itself).
//! - `queue_meta`: the entry id counter.
//!
//! Sealing: AES-256-GCM under keys derived from the spool key, with the entry id bound in as
//! associated data, so a sealed body cannot be swapped onto another entry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use letterlock_crypto::symmetric::SymmetricKey;
use letterlock_storage::{Engine, KeyRange, ReadTransaction, Table, WriteTransaction};
use letterlock_types::{Domain, EmailAddress};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::{QueueError, Result};
use crate::spool_key::{SpoolKey, QUEUE_KEY_PURPOSE};

pub const QUEUE_ENTRIES: Table = Table::new("queue_entries");
pub const QUEUE_BODIES: Table = Table::new("queue_bodies");
pub const QUEUE_DUE: Table = Table::new("queue_due");
pub const QUEUE_META: Table = Table::new("queue_meta");

const COUNTER_ENTRY_ID: &[u8] = b"counter/entry_id";
const ENVELOPE_CONTEXT: &[u8] = b"letterlock queue envelope";
const BODY_CONTEXT: &[u8] = b"letterlock queue body";

/// RFC 5321 section 4.5.4.1: give up after "at least 4-5 days".
pub const EXPIRY_SECS_DEFAULT: u64 = 5 * 24 * 3600;
/// Entries one `list` returns at most; the operator pages with `list_from`.
pub const LIST_ENTRIES_MAX: usize = 10_000;
/// The largest queued message: the workspace's message size limit.
pub const MESSAGE_SIZE_MAX_BYTES: usize = letterlock_types::limits::MESSAGE_SIZE_MAX_BYTES;
/// Recipients of one queued message (RFC 5321 section 4.5.3.1.8).
pub const RECIPIENTS_PER_ENTRY_MAX: usize = letterlock_types::limits::RECIPIENTS_PER_MESSAGE_MAX;
/// A remote reply kept for the operator and the bounce is cut to this length.
pub const REPLY_TEXT_MAX_BYTES: usize = 512;

/// A queue entry's number, as the operator sees it (`letterlock queue show 42`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QueueId(pub u64);

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for QueueId {
    type Err = std::num::ParseIntError;
    fn from_str(text: &str) -> std::result::Result<QueueId, Self::Err> {
        text.parse().map(QueueId)
    }
}

/// The clear part of an entry: what the scheduler needs, nothing about the mail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryRecord {
    pub created_unix: i64,
    pub expires_unix: i64,
    pub next_attempt_unix: i64,
    pub attempts: u32,
    pub lease: Option<Lease>,
    pub size_bytes: u64,
    /// The [`Envelope`], sealed under the queue key.
    pub sealed_envelope: Vec<u8>,
}

/// A runner's claim on an entry, until `until_unix`. The token proves, at the end of a
/// delivery, that the claim was not lost to another runner meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub token: u64,
    pub until_unix: i64,
}

/// Where one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecipientState {
    /// Not delivered yet; retried.
    Pending,
    /// The remote server accepted it (2xx after DATA).
    Delivered,
    /// Refused for good (5xx), or expired: it is in the bounce.
    Failed,
}

/// RFC 3461 NOTIFY: which reports the submitter wants for a recipient.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    /// NOTIFY was given; without it, failures are reported and nothing else.
    pub given: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl Notify {
    pub const NEVER: Notify = Notify {
        given: true,
        success: false,
        failure: false,
        delay: false,
    };

    pub fn wants_failure(&self) -> bool {
        !self.given || self.failure
    }

    /// The RCPT parameter value (`SUCCESS,FAILURE`, `NEVER`), or `None` when not given.
    pub fn parameter(&self) -> Option<String> {
        if !self.given {
            return None;
        }
        let mut kinds = Vec::new();
        for (wanted, name) in [
            (self.success, "SUCCESS"),
            (self.failure, "FAILURE"),
            (self.delay, "DELAY"),
        ] {
            if wanted {
                kinds.push(name);
            }
        }
        Some(if kinds.is_empty() {
            "NEVER".into()
        } else {
            kinds.join(",")
        })
    }
}

/// RFC 3461, the message's part: RET and ENVID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsnRequest {
    /// RET=FULL: a failure report returns the whole message (otherwise its header section).
    pub ret_full: bool,
    /// ENVID, decoded from xtext.
    pub envid: Option<String>,
}

/// A recipient to queue, with its DSN parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientRequest {
    pub address: EmailAddress,
    pub notify: Notify,
    /// ORCPT (the address as the submitter gave it), decoded from xtext.
    pub orcpt: Option<String>,
}

impl From<EmailAddress> for RecipientRequest {
    fn from(address: EmailAddress) -> RecipientRequest {
        RecipientRequest {
            address,
            notify: Notify::default(),
            orcpt: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: EmailAddress,
    pub state: RecipientState,
    /// The last reply (or local reason) for this recipient, e.g. `550 5.1.1 no such user`.
    pub last_reply: Option<String>,
    pub notify: Notify,
    pub orcpt: Option<String>,
    /// A delay report (NOTIFY=DELAY) went out already.
    pub delay_reported: bool,
}

/// The envelope of a queued message (RFC 5321 section 2.3.1), with each recipient's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The reverse-path; `None` is the null sender `<>` of a bounce, which never bounces.
    pub sender: Option<EmailAddress>,
    /// RFC 8689: deliver only over verified TLS to servers that offer REQUIRETLS.
    pub requiretls: bool,
    pub dsn: DsnRequest,
    pub recipients: Vec<Recipient>,
    /// The last failure that concerned the whole entry (DNS, connection, TLS).
    pub last_error: Option<String>,
}

impl Envelope {
    /// Pending recipients grouped by destination domain: one SMTP transaction per domain.
    pub fn pending_by_domain(&self) -> BTreeMap<Domain, Vec<EmailAddress>> {
        let mut groups: BTreeMap<Domain, Vec<EmailAddress>> = BTreeMap::new();
        for recipient in &self.recipients {
            if recipient.state == RecipientState::Pending {
                groups
                    .entry(recipient.address.domain().clone())
                    .or_default()
                    .push(recipient.address.clone());
            }
        }
        groups
    }

    pub fn has_pending(&self) -> bool {
        self.recipients
            .iter()
            .any(|recipient| recipient.state == RecipientState::Pending)
    }

    /// Record a reply for a recipient that stays pending (a temporary failure).
    pub fn note(&mut self, address: &EmailAddress, reply: &str) {
        for recipient in &mut self.recipients {
            if &recipient.address == address && recipient.state == RecipientState::Pending {
                recipient.last_reply = Some(truncate(reply));
            }
        }
    }

    pub fn set_state(&mut self, address: &EmailAddress, state: RecipientState, reply: &str) {
        for recipient in &mut self.recipients {
            if &recipient.address == address && recipient.state == RecipientState::Pending {
                recipient.state = state;
                recipient.last_reply = Some(truncate(reply));
            }
        }
    }
}

/// What the operator sees of an entry: the envelope and its status, never the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryStatus {
    pub id: QueueId,
    pub envelope: Envelope,
    pub created_unix: i64,
    pub expires_unix: i64,
    pub next_attempt_unix: i64,
    pub attempts: u32,
    pub size_bytes: u64,
    /// A runner holds it now (until the lease ends).
    pub in_delivery: bool,
}

/// An entry a runner has claimed: everything it needs to deliver, and the lease token.
pub struct Claimed {
    pub id: QueueId,
    pub token: u64,
    pub envelope: Envelope,
    pub message: Vec<u8>,
    pub attempts: u32,
    pub created_unix: i64,
    pub expires_unix: i64,
}

/// How a runner ends its claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Every recipient is delivered or failed (and bounced): the entry goes.
    Done,
    /// Some recipients wait: keep the new states, count the attempt, try again at this time.
    RetryAt(i64),
}

/// The queue's tuning.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    pub expiry_secs: u64,
    pub message_size_max_bytes: usize,
}

impl Default for QueueSettings {
    fn default() -> QueueSettings {
        QueueSettings {
            expiry_secs: EXPIRY_SECS_DEFAULT,
            message_size_max_bytes: MESSAGE_SIZE_MAX_BYTES,
        }
    }
}

/// One message to queue, with its envelope (see [`Queue::enqueue_many`]).
pub struct Submission<'a> {
    pub sender: Option<EmailAddress>,
    pub recipients: &'a [RecipientRequest],
    pub requiretls: bool,
    pub dsn: DsnRequest,
    pub message: &'a [u8],
}

/// The outbound queue. Cheap to clone; clones share the engine.
#[derive(Clone)]
pub struct Queue {
    engine: Arc<dyn Engine>,
    key: Arc<SymmetricKey>,
    settings: QueueSettings,
}

impl Queue {
    /// The queue on `engine` (the same engine the mail store uses: the queue's tables are its
    /// own), sealed under `spool_key`.
    pub fn new(engine: Arc<dyn Engine>, spool_key: &SpoolKey, settings: QueueSettings) -> Queue {
        Queue {
            engine,
            key: Arc::new(spool_key.derive(QUEUE_KEY_PURPOSE)),
            settings,
        }
    }

    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    /// The engine and the queue key, for the queue's other tables (the MTA-STS policy cache).
    pub(crate) fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    pub(crate) fn key(&self) -> &SymmetricKey {
        &self.key
    }

    /// Put a message in the queue, durably: when this returns, the entry survives a crash.
    /// `sender` `None` is the null reverse-path (bounces). No DSN parameters: failures are
    /// reported, nothing else.
    pub fn enqueue(
        &self,
        sender: Option<EmailAddress>,
        recipients: &[EmailAddress],
        requiretls: bool,
        message: &[u8],
    ) -> Result<QueueId> {
        let recipients: Vec<RecipientRequest> = recipients
            .iter()
            .cloned()
            .map(RecipientRequest::from)
            .collect();
        self.enqueue_with_dsn(
            sender,
            &recipients,
            requiretls,
            DsnRequest::default(),
            message,
        )
    }

    /// [`Queue::enqueue`] with the submitter's DSN parameters (RFC 3461).
    pub fn enqueue_with_dsn(
        &self,
        sender: Option<EmailAddress>,
        recipients: &[RecipientRequest],
        requiretls: bool,
        dsn: DsnRequest,
        message: &[u8],
    ) -> Result<QueueId> {
        let ids = self.enqueue_many(&[Submission {
            sender,
            recipients,
            requiretls,
            dsn,
            message,
        }])?;
        ids.into_iter()
            .next()
            .ok_or_else(|| QueueError::Corrupted("no entry made".into()))
    }

    /// Several entries in one durable commit: all are queued, or (on any error) none. A
    /// submission that leaves as several copies (one per encryption group) is queued so, and a
    /// client retrying after a failure cannot make the earlier copies go out twice.
    pub fn enqueue_many(&self, submissions: &[Submission<'_>]) -> Result<Vec<QueueId>> {
        let mut prepared = Vec::with_capacity(submissions.len());
        for submission in submissions {
            prepared.push((self.envelope_of(submission)?, submission.message));
        }
        let now = now_unix();
        let mut tx = self.engine.begin_write()?;
        let mut ids = Vec::with_capacity(prepared.len());
        for (envelope, message) in prepared {
            let id = next_id(tx.as_mut())?;
            let record = EntryRecord {
                created_unix: now,
                expires_unix: now.saturating_add(self.settings.expiry_secs as i64),
                next_attempt_unix: now,
                attempts: 0,
                lease: None,
                size_bytes: message.len() as u64,
                sealed_envelope: self.seal_envelope(id, &envelope)?,
            };
            tx.put(
                QUEUE_BODIES,
                &id.0.to_be_bytes(),
                &self.seal_body(id, message),
            )?;
            tx.put(
                QUEUE_ENTRIES,
                &id.0.to_be_bytes(),
                &postcard::to_stdvec(&record)?,
            )?;
            tx.put(QUEUE_DUE, &due_key(now, id), &[])?;
            ids.push(id);
        }
        tx.commit()?;
        Ok(ids)
    }

    /// The envelope of a submission, after its limits are checked.
    fn envelope_of(&self, submission: &Submission<'_>) -> Result<Envelope> {
        let recipients = submission.recipients;
        if recipients.is_empty() {
            return Err(QueueError::NoRecipients);
        }
        if recipients.len() > RECIPIENTS_PER_ENTRY_MAX {
            return Err(QueueError::TooManyRecipients {
                count: recipients.len(),
                limit: RECIPIENTS_PER_ENTRY_MAX,
            });
        }
        if submission.message.len() > self.settings.message_size_max_bytes {
            return Err(QueueError::MessageTooLarge {
                size_bytes: submission.message.len(),
                limit_bytes: self.settings.message_size_max_bytes,
            });
        }
        let mut unique: Vec<&RecipientRequest> = Vec::with_capacity(recipients.len());
        for recipient in recipients {
            if !unique.iter().any(|seen| seen.address == recipient.address) {
                unique.push(recipient);
            }
        }
        Ok(Envelope {
            sender: submission.sender.clone(),
            requiretls: submission.requiretls,
            dsn: submission.dsn.clone(),
            recipients: unique
                .into_iter()
                .map(|request| Recipient {
                    address: request.address.clone(),
                    state: RecipientState::Pending,
                    last_reply: None,
                    notify: request.notify,
                    orcpt: request.orcpt.clone(),
                    delay_reported: false,
                })
                .collect(),
            last_error: None,
        })
    }

    /// Every entry, oldest first (at most [`LIST_ENTRIES_MAX`]).
    pub fn list(&self) -> Result<Vec<EntryStatus>> {
        let tx = self.engine.begin_read()?;
        let rows = tx.scan(QUEUE_ENTRIES, KeyRange::all(), LIST_ENTRIES_MAX)?;
        let now = now_unix();
        rows.into_iter()
            .map(|(key, value)| {
                let id = id_of_key(&key)?;
                self.status_of(id, &decode_record(&value)?, now)
            })
            .collect()
    }

    /// One entry's envelope and status (not its body).
    pub fn show(&self, id: QueueId) -> Result<EntryStatus> {
        let tx = self.engine.begin_read()?;
        let record = load_record(tx.as_ref(), id)?;
        self.status_of(id, &record, now_unix())
    }

    /// Make an entry due now (the operator's `queue retry`). An entry being delivered is left
    /// alone ([`QueueError::Busy`]): its runner will reschedule it.
    pub fn retry_now(&self, id: QueueId) -> Result<()> {
        let now = now_unix();
        let mut tx = self.engine.begin_write()?;
        let mut record = load_record(tx.as_ref(), id)?;
        if is_leased(&record, now) {
            return Err(QueueError::Busy(id.0));
        }
        tx.delete(QUEUE_DUE, &due_key(effective_due(&record), id))?;
        record.lease = None;
        record.next_attempt_unix = now;
        tx.put(QUEUE_DUE, &due_key(now, id), &[])?;
        tx.put(
            QUEUE_ENTRIES,
            &id.0.to_be_bytes(),
            &postcard::to_stdvec(&record)?,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Remove an entry without delivering or bouncing it (the operator's `queue delete`).
    pub fn delete(&self, id: QueueId) -> Result<()> {
        let now = now_unix();
        let mut tx = self.engine.begin_write()?;
        let record = load_record(tx.as_ref(), id)?;
        if is_leased(&record, now) {
            return Err(QueueError::Busy(id.0));
        }
        remove_entry(tx.as_mut(), id, &record)?;
        tx.commit()?;
        Ok(())
    }

    /// Claim up to `count_max` entries due at `now`, each for `lease_secs`, in one write
    /// transaction: the engine serialises write transactions, so a second runner's claim sees
    /// the leases of the first and skips those entries.
    pub fn claim(&self, now: i64, lease_secs: u64, count_max: usize) -> Result<Vec<Claimed>> {
        let mut tx = self.engine.begin_write()?;
        let due_end = due_key(now.saturating_add(1), QueueId(0));
        let rows = tx.scan(QUEUE_DUE, KeyRange::between(&[], &due_end), count_max)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for (due, _) in rows {
            let id = id_of_due_key(&due)?;
            let mut record = load_record(tx.as_ref(), id)?;
            if is_leased(&record, now) {
                // The index says due but the record says held: a damaged index. Repair it.
                tx.delete(QUEUE_DUE, &due)?;
                tx.put(QUEUE_DUE, &due_key(effective_due(&record), id), &[])?;
                continue;
            }
            let token = rand::thread_rng().next_u64();
            let lease = Lease {
                token,
                until_unix: now.saturating_add(lease_secs as i64),
            };
            tx.delete(QUEUE_DUE, &due)?;
            record.lease = Some(lease);
            tx.put(QUEUE_DUE, &due_key(lease.until_unix, id), &[])?;
            tx.put(
                QUEUE_ENTRIES,
                &id.0.to_be_bytes(),
                &postcard::to_stdvec(&record)?,
            )?;
            let envelope = self.open_envelope(id, &record.sealed_envelope)?;
            let sealed_body = tx
                .get(QUEUE_BODIES, &id.0.to_be_bytes())?
                .ok_or_else(|| QueueError::Corrupted(format!("entry {id} has no body")))?;
            let message = self.open_body(id, &sealed_body)?;
            claimed.push(Claimed {
                id,
                token,
                envelope,
                message,
                attempts: record.attempts,
                created_unix: record.created_unix,
                expires_unix: record.expires_unix,
            });
        }
        tx.commit()?;
        Ok(claimed)
    }

    /// End a claim: remove the entry, or store the recipients' new states and reschedule it.
    /// Refused with [`QueueError::Busy`] when the lease was lost (it ran out and another runner
    /// claimed the entry): the other runner's view wins.
    pub fn finish(&self, claimed: &Claimed, envelope: &Envelope, finish: Finish) -> Result<()> {
        let id = claimed.id;
        let mut tx = self.engine.begin_write()?;
        let mut record = load_record(tx.as_ref(), id)?;
        if record.lease.map(|lease| lease.token) != Some(claimed.token) {
            return Err(QueueError::Busy(id.0));
        }
        match finish {
            Finish::Done => remove_entry(tx.as_mut(), id, &record)?,
            Finish::RetryAt(next_attempt_unix) => {
                tx.delete(QUEUE_DUE, &due_key(effective_due(&record), id))?;
                record.lease = None;
                record.attempts = record.attempts.saturating_add(1);
                record.next_attempt_unix = next_attempt_unix;
                record.sealed_envelope = self.seal_envelope(id, envelope)?;
                tx.put(QUEUE_DUE, &due_key(next_attempt_unix, id), &[])?;
                tx.put(
                    QUEUE_ENTRIES,
                    &id.0.to_be_bytes(),
                    &postcard::to_stdvec(&record)?,
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The earliest due time of any entry (to sleep until it), or `None` when the queue is empty.
    pub fn next_due_unix(&self) -> Result<Option<i64>> {
        let tx = self.engine.begin_read()?;
        let rows = tx.scan(QUEUE_DUE, KeyRange::all(), 1)?;
        match rows.first() {
            Some((key, _)) => Ok(Some(due_of_due_key(key)?)),
            None => Ok(None),
        }
    }

    fn status_of(&self, id: QueueId, record: &EntryRecord, now: i64) -> Result<EntryStatus> {
        Ok(EntryStatus {
            id,
            envelope: self.open_envelope(id, &record.sealed_envelope)?,
            created_unix: record.created_unix,
            expires_unix: record.expires_unix,
            next_attempt_unix: record.next_attempt_unix,
            attempts: record.attempts,
            size_bytes: record.size_bytes,
            in_delivery: is_leased(record, now),
        })
    }

    fn seal_envelope(&self, id: QueueId, envelope: &Envelope) -> Result<Vec<u8>> {
        let plain = postcard::to_stdvec(envelope)?;
        Ok(self.key.seal(&context(ENVELOPE_CONTEXT, id), &plain))
    }

    fn open_envelope(&self, id: QueueId, sealed: &[u8]) -> Result<Envelope> {
        let plain = self.key.open(&context(ENVELOPE_CONTEXT, id), sealed)?;
        Ok(postcard::from_bytes(&plain)?)
    }

    fn seal_body(&self, id: QueueId, message: &[u8]) -> Vec<u8> {
        self.key.seal(&context(BODY_CONTEXT, id), message)
    }

    fn open_body(&self, id: QueueId, sealed: &[u8]) -> Result<Vec<u8>> {
        Ok(self.key.open(&context(BODY_CONTEXT, id), sealed)?)
    }
}

fn context(purpose: &[u8], id: QueueId) -> Vec<u8> {
    let mut context = purpose.to_vec();
    context.extend_from_slice(&id.0.to_be_bytes());
    context
}

fn remove_entry(tx: &mut dyn WriteTransaction, id: QueueId, record: &EntryRecord) -> Result<()> {
    tx.delete(QUEUE_DUE, &due_key(effective_due(record), id))?;
    tx.delete(QUEUE_BODIES, &id.0.to_be_bytes())?;
    tx.delete(QUEUE_ENTRIES, &id.0.to_be_bytes())?;
    Ok(())
}

fn is_leased(record: &EntryRecord, now: i64) -> bool {
    record.lease.is_some_and(|lease| lease.until_unix > now)
}

/// Where the entry's row in `queue_due` is: the end of its lease while it has one.
fn effective_due(record: &EntryRecord) -> i64 {
    match record.lease {
        Some(lease) => lease.until_unix,
        None => record.next_attempt_unix,
    }
}

fn load_record(tx: &dyn ReadTransaction, id: QueueId) -> Result<EntryRecord> {
    match tx.get(QUEUE_ENTRIES, &id.0.to_be_bytes())? {
        Some(bytes) => decode_record(&bytes),
        None => Err(QueueError::NoSuchEntry(id.0)),
    }
}

fn decode_record(bytes: &[u8]) -> Result<EntryRecord> {
    Ok(postcard::from_bytes(bytes)?)
}

fn next_id(tx: &mut dyn WriteTransaction) -> Result<QueueId> {
    let current = match tx.get(QUEUE_META, COUNTER_ENTRY_ID)? {
        Some(bytes) => u64::from_be_bytes(
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| QueueError::Corrupted("entry id counter".into()))?,
        ),
        None => 0,
    };
    let next = current
        .checked_add(1)
        .ok_or_else(|| QueueError::Corrupted("entry id counter overflow".into()))?;
    tx.put(QUEUE_META, COUNTER_ENTRY_ID, &next.to_be_bytes())?;
    Ok(QueueId(next))
}

/// Times before 1970 sort as 0: nothing is due before the epoch.
fn due_key(due_unix: i64, id: QueueId) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&(due_unix.max(0) as u64).to_be_bytes());
    key[8..].copy_from_slice(&id.0.to_be_bytes());
    key
}

fn id_of_key(key: &[u8]) -> Result<QueueId> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| QueueError::Corrupted("queue entry key".into()))?;
    Ok(QueueId(u64::from_be_bytes(bytes)))
}

fn id_of_due_key(key: &[u8]) -> Result<QueueId> {
    key.get(8..16)
        .ok_or_else(|| QueueError::Corrupted("queue due key".into()))
        .and_then(id_of_key)
}

fn due_of_due_key(key: &[u8]) -> Result<i64> {
    let bytes: [u8; 8] = key
        .get(..8)
        .and_then(|slice| slice.try_into().ok())
        .ok_or_else(|| QueueError::Corrupted("queue due key".into()))?;
    Ok(u64::from_be_bytes(bytes).min(i64::MAX as u64) as i64)
}

fn truncate(reply: &str) -> String {
    if reply.len() <= REPLY_TEXT_MAX_BYTES {
        return reply.to_string();
    }
    let mut end = REPLY_TEXT_MAX_BYTES;
    while !reply.is_char_boundary(end) {
        end -= 1;
    }
    reply[..end].to_string()
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}
