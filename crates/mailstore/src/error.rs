//! Errors of the mail store, split by what the caller should do: tell the user (permanent),
//! retry later (temporary), or treat as a bug or damage (corruption).

use letterlock_types::{Domain, EmailAddress, InvalidValue, MailboxName};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    #[error("domain {0} already exists")]
    DomainExists(Domain),
    #[error("domain {0} does not exist (add it with `letterlock domain add {0}`)")]
    NoSuchDomain(Domain),
    #[error(
        "domain {domain} still has {users} user(s) and {aliases} alias(es); remove them first"
    )]
    DomainInUse {
        domain: Domain,
        users: usize,
        aliases: usize,
    },
    #[error("{0} already exists")]
    AddressTaken(EmailAddress),
    #[error("user {0} does not exist")]
    NoSuchUser(EmailAddress),
    #[error("alias {0} does not exist")]
    NoSuchAlias(String),
    #[error("no such recipient: {0}")]
    UnknownRecipient(EmailAddress),
    #[error("wrong password")]
    WrongCredentials,
    #[error("wrong recovery code")]
    WrongRecoveryCode,
    #[error("password rejected: {0}")]
    WeakPassword(&'static str),
    #[error("no app password named {0:?}")]
    NoSuchAppPassword(String),
    #[error("an app password named {0:?} already exists")]
    AppPasswordExists(String),
    #[error("mailbox {0} does not exist")]
    NoSuchMailbox(MailboxName),
    #[error("mailbox {0} already exists")]
    MailboxExists(MailboxName),
    #[error("mailbox {0} cannot be removed: {1}")]
    MailboxProtected(MailboxName, &'static str),
    #[error("no message with UID {uid} in {mailbox}")]
    NoSuchMessage { mailbox: MailboxName, uid: u32 },
    #[error("mailbox of {address} is over quota ({used_bytes} of {quota_bytes} bytes used)")]
    OverQuota {
        address: EmailAddress,
        used_bytes: u64,
        quota_bytes: u64,
    },
    #[error("message of {size_bytes} bytes is over the limit of {limit_bytes} bytes")]
    MessageTooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    #[error("too many {what} (limit {limit})")]
    TooMany { what: &'static str, limit: usize },
    #[error(
        "message cannot be read: it was encrypted to a key this account no longer holds ({0})"
    )]
    KeyLost(String),
    #[error(transparent)]
    Storage(#[from] letterlock_storage::StorageError),
    #[error("cryptography: {0}")]
    Crypto(#[from] letterlock_crypto::CryptoError),
    #[error("stored record damaged: {0}")]
    Corrupted(String),
    #[error("key refused: {0}")]
    InvalidKey(String),
}

impl StoreError {
    /// Whether trying again later may succeed (SMTP 4xx, IMAP NO [UNAVAILABLE]).
    pub fn is_temporary(&self) -> bool {
        match self {
            StoreError::Storage(error) => error.is_temporary(),
            // RFC 5321 section 4.5.3.1.10: a full mailbox is a temporary condition.
            StoreError::OverQuota { .. } => true,
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
