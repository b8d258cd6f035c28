//! Reputation from the user's own history (`DESIGN.md`, "Spam"): the addresses a user wrote to
//! and the senders they took out of Junk are known correspondents, and mail from them counts
//! as wanted when its From: domain is authenticated (DMARC, or aligned DKIM/SPF where there
//! is no DMARC record; without that, anyone could claim to be a friend).
//!
//! Like the classifier's models, the set stores no addresses: each is a keyed hash (HMAC-SHA256
//! under the set's own random key, 64 bits), so a stolen set tells nobody who writes to whom,
//! yet delivery can check a sender while the user is away.

use std::collections::HashSet;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Correspondents one user keeps; past this the oldest cannot be told apart from new ones, so
/// the set stops growing (and says so).
pub const CORRESPONDENTS_MAX: usize = 100_000;
/// A known correspondent's mail keeps this share of its spam score.
pub const KNOWN_CORRESPONDENT_FACTOR: f64 = 0.2;
/// The reason listed in the verdict header.
pub const KNOWN_CORRESPONDENT_REASON: &str = "known-correspondent";

/// One user's known correspondents, as keyed hashes.
#[derive(Clone, Serialize, Deserialize)]
pub struct Correspondents {
    key: [u8; 32],
    known: HashSet<u64>,
}

impl std::fmt::Debug for Correspondents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Correspondents({})", self.known.len())
    }
}

impl Correspondents {
    pub fn new(key: [u8; 32]) -> Correspondents {
        Correspondents {
            key,
            known: HashSet::new(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Correspondents, postcard::Error> {
        postcard::from_bytes(bytes)
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    fn hash(&self, address: &str) -> u64 {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.key) else {
            return 0;
        };
        mac.update(address.trim().to_lowercase().as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }

    /// Remember `address`. False when the set is full and it was not added.
    pub fn add(&mut self, address: &str) -> bool {
        let hash = self.hash(address);
        if self.known.len() >= CORRESPONDENTS_MAX && !self.known.contains(&hash) {
            return false;
        }
        self.known.insert(hash);
        true
    }

    pub fn contains(&self, address: &str) -> bool {
        self.known.contains(&self.hash(address))
    }
}

/// `current` (a stored set, or none yet) with `addresses` added, ready to store again; a new
/// set gets `fresh_key`. A stored set that does not parse is started afresh.
pub fn remember(current: Option<&[u8]>, addresses: &[String], fresh_key: [u8; 32]) -> Vec<u8> {
    let mut known = current
        .and_then(|bytes| Correspondents::from_bytes(bytes).ok())
        .unwrap_or_else(|| Correspondents::new(fresh_key));
    for address in addresses {
        if !known.add(address) {
            break;
        }
    }
    known.to_bytes()
}

/// The address of the message's (first) From:, lowercase.
pub fn from_address(message: &[u8]) -> Option<String> {
    let parsed = mail_parser::MessageParser::new().parse_headers(message)?;
    let from = parsed.from()?.first()?;
    from.address().map(str::to_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_kept_as_keyed_hashes_case_insensitively() {
        let mut known = Correspondents::new([5u8; 32]);
        assert!(known.add("Carol@Work.example"));
        assert!(known.contains("carol@work.example"));
        assert!(!known.contains("mallory@work.example"));
        let bytes = known.to_bytes();
        assert!(!bytes.windows(5).any(|window| window == b"carol"));
        let restored = Correspondents::from_bytes(&bytes).expect("restore");
        assert!(restored.contains("CAROL@work.example"));
        // Another key, another set: hashes do not carry over.
        let mut other = Correspondents::new([6u8; 32]);
        other.add("someone@else.example");
        assert!(!other.contains("carol@work.example"));
    }

    #[test]
    fn the_from_address_is_read_from_the_header() {
        let message = b"From: \"Carol W.\" <Carol@Work.example>\r\nTo: a@b.example\r\n\r\nhi\r\n";
        assert_eq!(from_address(message).as_deref(), Some("carol@work.example"));
        assert_eq!(from_address(b"To: a@b.example\r\n\r\nno sender\r\n"), None);
    }
}
