//! The storage interface of Letterlock: a narrow, transactional, ordered key-value store.
//!
//! Everything above this crate (the mail store, the queue) sees only [`Engine`],
//! [`ReadTransaction`] and [`WriteTransaction`]; it never learns which engine runs underneath.
//! Two engines are planned: the embedded one in [`embedded`] (redb, the default) and PostgreSQL.
//! Both store only what they are given; the layers above hand them ciphertext for anything that
//! reveals message content.
//!
//! The contract every engine keeps, checked by the suite in [`conformance`]:
//! - a transaction sees a consistent snapshot; writes of an uncommitted transaction are invisible
//!   to others and vanish if it is dropped;
//! - keys are ordered bytewise, scans return ascending order and respect their limit;
//! - [`WriteTransaction::commit`] returns only once the data is durable (fsync or database commit):
//!   a process killed right after `commit` returned loses nothing;
//! - keys and values over [`KEY_SIZE_MAX_BYTES`] and [`VALUE_SIZE_MAX_BYTES`] are refused with
//!   [`StorageError::TooLarge`] before anything is written.

use std::ops::Bound;

pub mod conformance;
pub mod embedded;

/// The longest key an engine must accept. Keys are built from ids and addresses
/// (an address is at most 254 octets, RFC 5321 section 4.5.3.1.3), so 1 KiB leaves room.
pub const KEY_SIZE_MAX_BYTES: usize = 1024;

/// The largest value an engine must accept: an encrypted message at the largest message size
/// Letterlock accepts (64 MiB), plus OpenPGP framing overhead.
pub const VALUE_SIZE_MAX_BYTES: usize = 65 * 1024 * 1024;

/// The most rows one scan may return; callers page through longer ranges.
pub const SCAN_ROWS_MAX: usize = 1_000_000;

/// A named keyspace. Table names are fixed at compile time by the layers above.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Table(&'static str);

impl Table {
    /// A table name: lowercase ASCII letters, digits and `_`, 1 to 64 characters.
    /// Checked at compile time when used in a `const`.
    pub const fn new(name: &'static str) -> Table {
        let bytes = name.as_bytes();
        assert!(!bytes.is_empty() && bytes.len() <= 64, "table name length");
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            assert!(
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_',
                "table name characters"
            );
            i += 1;
        }
        Table(name)
    }

    pub fn name(&self) -> &'static str {
        self.0
    }
}

/// A range of keys for a scan.
#[derive(Clone, Debug)]
pub struct KeyRange {
    pub start: Bound<Vec<u8>>,
    pub end: Bound<Vec<u8>>,
}

impl KeyRange {
    pub fn all() -> KeyRange {
        KeyRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> KeyRange {
        KeyRange {
            start: Bound::Included(prefix.to_vec()),
            end: match prefix_successor(prefix) {
                Some(end) => Bound::Excluded(end),
                None => Bound::Unbounded,
            },
        }
    }

    /// Keys from `start` (included) to `end` (excluded).
    pub fn between(start: &[u8], end: &[u8]) -> KeyRange {
        KeyRange {
            start: Bound::Included(start.to_vec()),
            end: Bound::Excluded(end.to_vec()),
        }
    }
}

/// The smallest key greater than every key that starts with `prefix`,
/// or `None` when there is none (the prefix is empty or all `0xff`).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// One key and its value, as a scan returns them.
pub type Row = (Vec<u8>, Vec<u8>);

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A key or value over the engine's limits. Permanent: retrying cannot help.
    #[error("{what} of {size_bytes} bytes is over the limit of {limit_bytes} bytes")]
    TooLarge {
        what: &'static str,
        size_bytes: usize,
        limit_bytes: usize,
    },
    /// The engine could not do the work now (I/O error, lock, lost connection).
    /// Temporary: the caller may retry, and must not acknowledge anything.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The stored data is not what the engine wrote. Permanent.
    #[error("storage corrupted: {0}")]
    Corrupted(String),
}

impl StorageError {
    /// Whether a retry might succeed (a 4xx rather than a 5xx, in SMTP terms).
    pub fn is_temporary(&self) -> bool {
        matches!(self, StorageError::Unavailable(_))
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A storage engine. Cheap to share behind an `Arc`; every method may be called from any thread.
/// Calls block: async code runs them on a blocking thread.
pub trait Engine: Send + Sync {
    /// A short name for logs and `letterlock doctor` ("embedded", "postgresql").
    fn name(&self) -> &'static str;
    fn begin_read(&self) -> Result<Box<dyn ReadTransaction + '_>>;
    /// Write transactions may be serialised by the engine; keep them short.
    fn begin_write(&self) -> Result<Box<dyn WriteTransaction + '_>>;
}

pub trait ReadTransaction {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Rows of `table` in `range`, ascending by key, at most `limit` (and at most [`SCAN_ROWS_MAX`]).
    fn scan(&self, table: Table, range: KeyRange, limit: usize) -> Result<Vec<Row>>;
    /// Rows of `table` in `range`, descending by key, at most `limit`.
    fn scan_rev(&self, table: Table, range: KeyRange, limit: usize) -> Result<Vec<Row>>;
}

pub trait WriteTransaction: ReadTransaction {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<()>;
    /// Returns whether the key existed.
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool>;
    /// Make every write of this transaction durable, or none of them.
    /// Returns only after the data is on stable storage.
    fn commit(self: Box<Self>) -> Result<()>;
    /// Discard the transaction. Dropping it does the same.
    fn abort(self: Box<Self>) -> Result<()>;
}

/// Checks shared by every engine, so each refuses oversized input the same way
/// and before it writes anything.
pub fn check_key(key: &[u8]) -> Result<()> {
    if key.len() > KEY_SIZE_MAX_BYTES {
        return Err(StorageError::TooLarge {
            what: "key",
            size_bytes: key.len(),
            limit_bytes: KEY_SIZE_MAX_BYTES,
        });
    }
    Ok(())
}

pub fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > VALUE_SIZE_MAX_BYTES {
        return Err(StorageError::TooLarge {
            what: "value",
            size_bytes: value.len(),
            limit_bytes: VALUE_SIZE_MAX_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_handles_carry_and_all_ff() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
        assert_eq!(prefix_successor(b""), None);
    }

    #[test]
    #[should_panic(expected = "table name characters")]
    fn table_names_are_checked() {
        let _ = Table::new("Bad-Name");
    }
}
