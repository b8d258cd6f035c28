//! The merged search index (`DESIGN.md`, point 6): body search without decrypting every
//! message on every search.
//!
//! Delivery seals each message's terms under a key derived from that message's session key
//! (only the public key is needed). An unlocked session merges the terms of messages it has
//! not merged yet into one inverted index per mailbox (term → UIDs), sealed under a key
//! derived from the account key and stored, so the next session starts from it; the session
//! also keeps the index in memory, so repeated searches cost a lookup.
//!
//! Expunged UIDs stay in the postings for a while (callers match only UIDs still in the
//! mailbox): once the index has taken in as many messages as the mailbox held at its last
//! compaction (at least [`COMPACT_AFTER_MESSAGES_MIN`]), a merge drops every UID no longer in
//! the mailbox. A first build counts as a compaction (it merged the mailbox as it was). So the index stays within about twice the mailbox's size, however much mail
//! passes through it, and the compaction's one read of the mailbox's records costs about as
//! much as the merges that led to it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use letterlock_storage::{KeyRange, Table, SCAN_ROWS_MAX};
use letterlock_types::MailboxName;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::records::{self, MESSAGES};
use crate::session::Unlocked;

pub(crate) const SEARCH_INDEX: Table = Table::new("search_index");
const SEARCH_INDEX_PURPOSE: &[u8] = b"letterlock search index v1";
/// Messages merged per call: a first search of a huge mailbox merges in steps this large,
/// each saved, so an interrupted session loses little work.
pub const MERGE_BATCH_MESSAGES_MAX: usize = 20_000;
/// The fewest messages merged between two compactions.
pub const COMPACT_AFTER_MESSAGES_MIN: u32 = 1_000;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StoredIndex {
    uid_validity: u32,
    merged_through_uid: u32,
    postings: BTreeMap<String, Vec<u32>>,
    compaction: Compaction,
}

/// The stored index as written before compaction existed (postcard has no optional fields).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StoredIndexV1 {
    uid_validity: u32,
    merged_through_uid: u32,
    postings: BTreeMap<String, Vec<u32>>,
}

/// When the next compaction is due.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Compaction {
    /// The index is being built from nothing: what it merges is the mailbox as it is, so
    /// there is nothing to compact yet, and the count becomes the baseline when it is done.
    building: bool,
    /// Messages merged since the last compaction.
    merged_since: u32,
    /// Messages in the mailbox at the last compaction.
    live_at_last: u32,
}

impl Default for Compaction {
    fn default() -> Compaction {
        Compaction {
            building: true,
            merged_since: 0,
            live_at_last: 0,
        }
    }
}

impl Compaction {
    fn due(&self) -> bool {
        !self.building && self.merged_since >= COMPACT_AFTER_MESSAGES_MIN.max(self.live_at_last)
    }

    /// `count` more messages merged; `complete` when none are left to merge.
    fn merged(&mut self, count: usize, complete: bool) {
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        if self.building {
            self.live_at_last = self.live_at_last.saturating_add(count);
            self.building = !complete;
        } else {
            self.merged_since = self.merged_since.saturating_add(count);
        }
    }
}

/// A mailbox's search index, decrypted.
#[derive(Debug, Clone, Default)]
pub struct MailboxSearchIndex {
    postings: BTreeMap<String, Vec<u32>>,
    compaction: Compaction,
}

impl MailboxSearchIndex {
    /// UIDs of messages with a term containing `word` (lowercased; IMAP SEARCH matches
    /// substrings, so a word inside a term counts).
    pub fn uids_with(&self, word: &str) -> HashSet<u32> {
        let word = word.to_lowercase();
        let mut found = HashSet::new();
        if let Some(uids) = self.postings.get(&word) {
            found.extend(uids.iter().copied());
        }
        for (term, uids) in &self.postings {
            if term.len() > word.len() && term.contains(&word) {
                found.extend(uids.iter().copied());
            }
        }
        found
    }

    pub fn terms(&self) -> usize {
        self.postings.len()
    }

    /// Distinct UIDs in the postings (expunged ones included until a compaction).
    pub fn indexed_uids(&self) -> usize {
        self.postings
            .values()
            .flatten()
            .collect::<HashSet<_>>()
            .len()
    }
}

fn decode_stored(bytes: &[u8]) -> Result<StoredIndex> {
    records::decode_or_older::<StoredIndex, StoredIndexV1>("search index", bytes)
}

impl From<StoredIndexV1> for StoredIndex {
    fn from(old: StoredIndexV1) -> StoredIndex {
        StoredIndex {
            uid_validity: old.uid_validity,
            merged_through_uid: old.merged_through_uid,
            postings: old.postings,
            // Due at the next merge: an old index may carry any number of expunged UIDs.
            compaction: Compaction {
                building: false,
                merged_since: u32::MAX,
                live_at_last: 0,
            },
        }
    }
}

/// The session's decrypted indexes, by mailbox id: (UIDVALIDITY, merged through UID, index).
pub(crate) type IndexCache = HashMap<u64, (u32, u32, Arc<MailboxSearchIndex>)>;

pub(crate) fn index_key(user_id: u64, mailbox_id: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&user_id.to_be_bytes());
    key[8..].copy_from_slice(&mailbox_id.to_be_bytes());
    key
}

impl Unlocked {
    /// The mailbox's search index, with every message delivered so far merged in.
    pub fn search_index(&self, mailbox_name: &MailboxName) -> Result<Arc<MailboxSearchIndex>> {
        loop {
            let (index, complete) = self.merge_step(mailbox_name)?;
            if complete {
                return Ok(index);
            }
        }
    }

    /// Merge at most [`MERGE_BATCH_MESSAGES_MAX`] new messages; says whether all are merged.
    fn merge_step(&self, mailbox_name: &MailboxName) -> Result<(Arc<MailboxSearchIndex>, bool)> {
        let user_id = self.user_id();
        let sealer = self.account_key().derive(SEARCH_INDEX_PURPOSE);
        let tx = self.store().engine.begin_read()?;
        let mailbox = self.mailbox_record(tx.as_ref(), mailbox_name)?;
        let key = index_key(user_id, mailbox.id);

        // This session's copy, if it is of this mailbox incarnation.
        let cached = self
            .search_cache()
            .lock()
            .ok()
            .and_then(|cache| cache.get(&mailbox.id).cloned())
            .filter(|(uid_validity, _, _)| *uid_validity == mailbox.uid_validity);
        // The stored index when this session has none.
        let stored_index = match &cached {
            Some(_) => None,
            None => {
                // The index is a cache of what the messages hold: one that does not open (sealed
                // under an account key since replaced, by a session that outlived an admin
                // reset) is built again rather than standing in the way of search.
                let mut stored = tx
                    .get(SEARCH_INDEX, &key)?
                    .and_then(|sealed| sealer.open(&key, &sealed).ok())
                    .and_then(|plain| decode_stored(&plain).ok())
                    .unwrap_or_default();
                if stored.uid_validity != mailbox.uid_validity {
                    stored = StoredIndex {
                        uid_validity: mailbox.uid_validity,
                        ..StoredIndex::default()
                    };
                }
                Some(stored)
            }
        };
        let merged_through_uid = match (&cached, &stored_index) {
            (Some((_, merged, _)), _) => *merged,
            (None, Some(stored)) => stored.merged_through_uid,
            (None, None) => 0,
        };

        // Messages not merged yet: UIDs above the high-water mark.
        let start = records::message_key(mailbox.id, merged_through_uid.saturating_add(1));
        let end = records::message_key(mailbox.id.saturating_add(1), 0);
        let rows = tx.scan(
            MESSAGES,
            KeyRange::between(&start, &end),
            MERGE_BATCH_MESSAGES_MAX.min(SCAN_ROWS_MAX),
        )?;
        drop(tx);
        let complete = rows.len() < MERGE_BATCH_MESSAGES_MAX;
        if rows.is_empty() {
            // Nothing new: the session's copy as it is (no copy of the postings), else the
            // stored one, kept for next time.
            if let Some((_, _, index)) = cached {
                return Ok((index, true));
            }
            let stored = stored_index.unwrap_or_default();
            let index = Arc::new(MailboxSearchIndex {
                postings: stored.postings,
                compaction: stored.compaction,
            });
            self.remember(mailbox.id, mailbox.uid_validity, merged_through_uid, &index);
            return Ok((index, true));
        }
        let mut stored = match (cached, stored_index) {
            (Some((uid_validity, merged, index)), _) => StoredIndex {
                uid_validity,
                merged_through_uid: merged,
                postings: index.postings.clone(),
                compaction: index.compaction,
            },
            (None, Some(stored)) => stored,
            (None, None) => StoredIndex::default(),
        };
        let mut uids = Vec::with_capacity(rows.len());
        for (key, _) in &rows {
            uids.push(records::uid_of_message_key(key)?);
        }
        let last_uid = uids.last().copied().unwrap_or(stored.merged_through_uid);
        for (uid, terms) in self.search_terms_many(mailbox_name, &uids)? {
            for term in terms.terms {
                stored.postings.entry(term).or_default().push(uid);
            }
        }
        stored.merged_through_uid = last_uid;
        stored.compaction.merged(uids.len(), complete);
        if stored.compaction.due() {
            let live = self.live_uids(mailbox.id)?;
            for uids in stored.postings.values_mut() {
                uids.retain(|uid| live.contains(uid));
            }
            stored.postings.retain(|_, uids| !uids.is_empty());
            stored.compaction = Compaction {
                building: false,
                merged_since: 0,
                live_at_last: u32::try_from(live.len()).unwrap_or(u32::MAX),
            };
        }
        let sealed = sealer.seal(&key, &records::encode(&stored)?);
        let mut write = self.store().engine.begin_write()?;
        write.put(SEARCH_INDEX, &key, &sealed)?;
        write.commit()?;
        let index = Arc::new(MailboxSearchIndex {
            postings: stored.postings,
            compaction: stored.compaction,
        });
        self.remember(mailbox.id, mailbox.uid_validity, last_uid, &index);
        Ok((index, complete))
    }

    /// The UIDs of the mailbox's messages now, read in pages of [`MERGE_BATCH_MESSAGES_MAX`].
    fn live_uids(&self, mailbox_id: u64) -> Result<HashSet<u32>> {
        let mut live = HashSet::new();
        let end = records::message_key(mailbox_id.saturating_add(1), 0);
        let mut start = records::message_key(mailbox_id, 0).to_vec();
        loop {
            let tx = self.store().engine.begin_read()?;
            let rows = tx.scan(
                MESSAGES,
                KeyRange::between(&start, &end),
                MERGE_BATCH_MESSAGES_MAX,
            )?;
            drop(tx);
            for (key, _) in &rows {
                live.insert(records::uid_of_message_key(key)?);
            }
            match rows.last() {
                Some((last, _)) if rows.len() == MERGE_BATCH_MESSAGES_MAX => {
                    start = last.clone();
                    start.push(0);
                }
                _ => return Ok(live),
            }
        }
    }

    fn remember(
        &self,
        mailbox_id: u64,
        uid_validity: u32,
        merged: u32,
        index: &Arc<MailboxSearchIndex>,
    ) {
        if let Ok(mut cache) = self.search_cache().lock() {
            cache.insert(mailbox_id, (uid_validity, merged, Arc::clone(index)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_stored_before_compaction_existed_reads_and_is_due() {
        let old = StoredIndexV1 {
            uid_validity: 7,
            merged_through_uid: 3,
            postings: BTreeMap::from([("zebra".to_string(), vec![1, 3])]),
        };
        let stored = decode_stored(&records::encode(&old).expect("encode")).expect("decode");
        assert_eq!((stored.uid_validity, stored.merged_through_uid), (7, 3));
        assert_eq!(stored.postings["zebra"], vec![1, 3]);
        assert!(stored.compaction.due());
        let new = decode_stored(&records::encode(&stored).expect("encode")).expect("decode");
        assert_eq!(new.compaction.merged_since, u32::MAX);
        assert!(decode_stored(b"\xff\xff").is_err());
    }
}
