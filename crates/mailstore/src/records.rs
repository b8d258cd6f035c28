//! What the mail store writes through the storage interface: tables, key layouts and records.
//!
//! Keys put big-endian integers first so rows of one user or one mailbox are adjacent and
//! ordered. Records are postcard-encoded (a stable, compact serde format).
//!
//! What is in the clear here is only what the server needs while the user is away
//! (`DESIGN.md`, point 3): ids, addresses of accounts, mailbox names, UIDs, MODSEQs, flags,
//! sizes, dates, public keys. Everything that reveals message content is sealed:
//! message blobs are OpenPGP messages, index records are AES-GCM under a key derived from
//! the message's session key, promoted session keys are sealed under the account key.

use letterlock_crypto::kdf::KdfParams;
use letterlock_storage::Table;
use letterlock_types::{EmailAddress, MailboxName};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Result, StoreError};

pub const META: Table = Table::new("meta");
pub const DOMAINS: Table = Table::new("domains");
pub const USERS: Table = Table::new("users");
pub const USERS_BY_ID: Table = Table::new("users_by_id");
pub const ALIASES: Table = Table::new("aliases");
pub const MAILBOXES: Table = Table::new("mailboxes");
pub const MESSAGES: Table = Table::new("messages");
pub const BLOBS: Table = Table::new("blobs");
pub const PROMOTED_KEYS: Table = Table::new("promoted_keys");
pub const USAGE: Table = Table::new("usage");

pub const COUNTER_USER_ID: &[u8] = b"counter/user_id";
pub const COUNTER_MAILBOX_ID: &[u8] = b"counter/mailbox_id";
pub const COUNTER_BLOB_ID: &[u8] = b"counter/blob_id";

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|error| StoreError::Corrupted(error.to_string()))
}

pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|error| StoreError::Corrupted(format!("{what}: {error}")))
}

/// Decodes a record of the current format `T`, or of the `Older` one before it (postcard has
/// no optional fields, so a field added at the end makes older records a different type).
pub fn decode_or_older<T: DeserializeOwned, Older: DeserializeOwned + Into<T>>(
    what: &str,
    bytes: &[u8],
) -> Result<T> {
    decode::<T>(what, bytes).or_else(|error| {
        postcard::from_bytes::<Older>(bytes)
            .map(Into::into)
            .map_err(|_| error)
    })
}

pub fn u64_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

pub fn decode_u64(what: &str, bytes: &[u8]) -> Result<u64> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupted(format!("{what}: not 8 bytes")))?;
    Ok(u64::from_be_bytes(array))
}

/// `mailboxes` key: user id, then the mailbox name.
pub fn mailbox_key(user_id: u64, name: &MailboxName) -> Vec<u8> {
    let mut key = user_id.to_be_bytes().to_vec();
    key.extend_from_slice(name.as_str().as_bytes());
    key
}

/// `messages` key: mailbox id, then UID.
pub fn message_key(mailbox_id: u64, uid: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&mailbox_id.to_be_bytes());
    key[8..].copy_from_slice(&uid.to_be_bytes());
    key
}

/// The UID in a `messages` key.
pub fn uid_of_message_key(key: &[u8]) -> Result<u32> {
    let bytes: [u8; 4] = key
        .get(8..12)
        .and_then(|slice| slice.try_into().ok())
        .ok_or_else(|| StoreError::Corrupted("message key".into()))?;
    Ok(u32::from_be_bytes(bytes))
}

/// `promoted_keys` key: user id, then blob id.
pub fn promoted_key(user_id: u64, blob_id: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&user_id.to_be_bytes());
    key[8..].copy_from_slice(&blob_id.to_be_bytes());
    key
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DomainRecord {
    pub created_unix: u64,
}

/// A credential's wrapping of the account key: the KDF salt, the verifier a login is
/// checked against, and the account key sealed under the credential's key-encryption key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CredentialWrap {
    pub salt: Vec<u8>,
    pub verifier: Vec<u8>,
    pub wrapped_account_key: Vec<u8>,
    /// `Some` for human-chosen passwords (Argon2id); `None` for server-generated secrets
    /// of 100+ bits (app passwords, recovery codes), where a slow KDF adds nothing.
    pub kdf: Option<KdfParams>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppPasswordRecord {
    pub name: String,
    pub created_unix: u64,
    pub wrap: CredentialWrap,
}

/// One OpenPGP key of the user. The newest is the one mail is encrypted to; older ones stay
/// to read older mail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    pub fingerprint: String,
    pub public_key: Vec<u8>,
    /// The transferable secret key sealed under the account key of `account_key_generation`.
    pub sealed_secret_key: Vec<u8>,
    pub account_key_generation: u32,
    pub created_unix: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: u64,
    pub address: EmailAddress,
    pub created_unix: u64,
    /// 0 means no quota.
    pub quota_bytes: u64,
    /// Bumped when an admin resets the password without the recovery code: the account key
    /// is replaced, and keys sealed under an older generation can no longer be opened.
    pub account_key_generation: u32,
    pub password: CredentialWrap,
    pub recovery: CredentialWrap,
    pub app_passwords: Vec<AppPasswordRecord>,
    pub keys: Vec<KeyRecord>,
}

impl UserRecord {
    pub fn current_key(&self) -> Result<&KeyRecord> {
        self.keys
            .last()
            .ok_or_else(|| StoreError::Corrupted(format!("user {} has no key", self.address)))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AliasRecord {
    pub targets: Vec<EmailAddress>,
    pub created_unix: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpecialUse {
    Sent,
    Drafts,
    Junk,
    Trash,
    Archive,
}

impl SpecialUse {
    /// The RFC 6154 attribute.
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Archive => "\\Archive",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MailboxRecord {
    pub id: u64,
    pub uid_validity: u32,
    pub uid_next: u32,
    pub highest_modseq: u64,
    pub special_use: Option<SpecialUse>,
    pub subscribed: bool,
    pub created_unix: u64,
}

/// IMAP system flags (RFC 9051 section 2.3.2) as bits; keywords are kept beside them.
pub mod flag_bits {
    pub const SEEN: u8 = 1;
    pub const ANSWERED: u8 = 2;
    pub const FLAGGED: u8 = 4;
    pub const DELETED: u8 = 8;
    pub const DRAFT: u8 = 16;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageRecord {
    pub blob_id: u64,
    /// Size of the plaintext message (RFC822.SIZE).
    pub size_bytes: u64,
    pub internal_date_unix: i64,
    pub flags: u8,
    pub keywords: Vec<String>,
    pub modseq: u64,
    /// Which of the user's keys the message is encrypted to.
    pub key_fingerprint: String,
    /// The [`crate::index::IndexRecord`], sealed under a key derived from the session key.
    pub sealed_index: Vec<u8>,
    /// The [`crate::index::SearchTerms`], sealed under another key derived from the session key.
    pub sealed_terms: Vec<u8>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UsageRecord {
    pub bytes: u64,
    pub messages: u64,
}
