//! Errors of the queue, split the way SMTP splits them: temporary (try again later) or
//! permanent (give up, bounce).

use letterlock_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A record did not decode or did not open under the spool key: damage, or the wrong key.
    #[error("queue record damaged or sealed under another spool key: {0}")]
    Corrupted(String),
    #[error("no queue entry {0}")]
    NoSuchEntry(u64),
    /// The entry is being delivered by a runner right now; try again when its lease ends.
    #[error("queue entry {0} is being delivered right now")]
    Busy(u64),
    #[error("spool key: {0}")]
    SpoolKey(String),
    #[error("message of {size_bytes} bytes is over the queue limit of {limit_bytes} bytes")]
    MessageTooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    #[error("too many recipients: {count} (limit {limit})")]
    TooManyRecipients { count: usize, limit: usize },
    #[error("no recipients")]
    NoRecipients,
    #[error("an account may trust keys for at most {limit} correspondents")]
    TooManyTrustedKeys { limit: usize },
    #[error("DKIM: {0}")]
    Dkim(String),
    #[error("bounce could not be delivered: {0}")]
    Bounce(String),
}

impl QueueError {
    /// Whether a retry might succeed.
    pub fn is_temporary(&self) -> bool {
        match self {
            QueueError::Storage(error) => error.is_temporary(),
            QueueError::Busy(_) | QueueError::Bounce(_) => true,
            _ => false,
        }
    }
}

impl From<letterlock_crypto::CryptoError> for QueueError {
    fn from(error: letterlock_crypto::CryptoError) -> QueueError {
        QueueError::Corrupted(error.to_string())
    }
}

impl From<postcard::Error> for QueueError {
    fn from(error: postcard::Error) -> QueueError {
        QueueError::Corrupted(error.to_string())
    }
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;
