//! Records of the queue's side tables (the MTA-STS policy cache, DMARC and TLS reports), sealed
//! under the queue key as JSON, stored under a keyed hash of the domain they concern: the
//! tables show neither the domains the server exchanges mail with nor what it learnt about
//! them.

use serde::{Deserialize, Serialize};

use crate::error::{QueueError, Result};
use crate::store::Queue;

/// A 16-byte keyed hash of `name` (HKDF under the queue key, per `purpose`).
pub(crate) fn keyed_index(queue: &Queue, purpose: &[u8], name: &str) -> [u8; 16] {
    let derived = queue
        .key()
        .derive(purpose)
        .derive(name.to_ascii_lowercase().as_bytes());
    let mut index = [0u8; 16];
    index.copy_from_slice(&derived.expose()[..16]);
    index
}

/// `value` as JSON, sealed with `context` and the row's `key` bound in.
pub(crate) fn seal_json<T: Serialize>(
    queue: &Queue,
    context: &[u8],
    key: &[u8],
    value: &T,
) -> Result<Vec<u8>> {
    let plain = serde_json::to_vec(value)
        .map_err(|error| QueueError::Corrupted(format!("sealed record: {error}")))?;
    Ok(queue.key().seal(&[context, key].concat(), &plain))
}

pub(crate) fn open_json<T: for<'de> Deserialize<'de>>(
    queue: &Queue,
    context: &[u8],
    key: &[u8],
    sealed: &[u8],
) -> Result<T> {
    let plain = queue.key().open(&[context, key].concat(), sealed)?;
    serde_json::from_slice(&plain)
        .map_err(|error| QueueError::Corrupted(format!("sealed record: {error}")))
}
