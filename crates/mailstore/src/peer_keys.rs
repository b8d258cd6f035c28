//! Public keys of correspondents, learnt from their Autocrypt headers (autocrypt.org Level 1,
//! "peer state"): what inbound signature checks verify against, and what outbound encryption
//! will look up. Public keys only, kept in the clear like the users' own public keys; the
//! addresses they are stored under are metadata the server already sees in every delivery.

use letterlock_storage::Table;
use letterlock_types::EmailAddress;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::{get_record, now_unix, put_record, MailStore};

const PEER_KEYS: Table = Table::new("peer_keys");

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PeerKeyRecord {
    key: Vec<u8>,
    first_seen_unix: u64,
    last_seen_unix: u64,
}

impl MailStore {
    /// Remember `key` as `address`'s current key (the newest Autocrypt header wins, as the
    /// Autocrypt spec's peer state update does).
    pub fn record_peer_key(&self, address: &EmailAddress, key: &[u8]) -> Result<()> {
        let mut tx = self.engine.begin_write()?;
        let id = address.to_string();
        let now = now_unix();
        let first_seen_unix = get_record::<PeerKeyRecord>(tx.as_ref(), PEER_KEYS, id.as_bytes())?
            .filter(|record| record.key == key)
            .map(|record| record.first_seen_unix)
            .unwrap_or(now);
        put_record(
            tx.as_mut(),
            PEER_KEYS,
            id.as_bytes(),
            &PeerKeyRecord {
                key: key.to_vec(),
                first_seen_unix,
                last_seen_unix: now,
            },
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The key last seen for `address`, if any.
    pub fn peer_key(&self, address: &EmailAddress) -> Result<Option<Vec<u8>>> {
        let tx = self.engine.begin_read()?;
        Ok(
            get_record::<PeerKeyRecord>(tx.as_ref(), PEER_KEYS, address.to_string().as_bytes())?
                .map(|record| record.key),
        )
    }
}
