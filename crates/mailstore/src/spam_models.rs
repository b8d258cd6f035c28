//! Storage for the spam classifier's models: the global one and one per account, as opaque
//! bytes (the filter crate's serialised `Model`, whose features are keyed hashes: a stolen
//! model reveals no words), and each account's known correspondents (the filter crate's
//! `Correspondents`, keyed hashes of addresses too). They stay readable without the user's key
//! because delivery scores mail while the user is away.

use letterlock_storage::Table;
use letterlock_types::EmailAddress;

use crate::accounts::user_record;
use crate::error::Result;
use crate::MailStore;

pub(crate) const SPAM_MODELS: Table = Table::new("spam_models");
const GLOBAL_KEY: &[u8] = b"global";

/// Whose model.
#[derive(Debug, Clone, Copy)]
pub enum ModelOwner<'a> {
    Global,
    User(&'a EmailAddress),
    /// The account's known correspondents (reputation from its own history).
    Correspondents(&'a EmailAddress),
}

/// The key of an account's correspondents, for removing them with the account.
pub(crate) fn correspondents_key(user_id: u64) -> Vec<u8> {
    let mut key = b"correspondents/".to_vec();
    key.extend_from_slice(&user_id.to_be_bytes());
    key
}

/// The key of an account's model, for removing it with the account.
pub(crate) fn user_model_key(user_id: u64) -> Vec<u8> {
    let mut key = b"user/".to_vec();
    key.extend_from_slice(&user_id.to_be_bytes());
    key
}

impl MailStore {
    fn model_key(
        &self,
        tx: &dyn letterlock_storage::ReadTransaction,
        owner: ModelOwner<'_>,
    ) -> Result<Vec<u8>> {
        Ok(match owner {
            ModelOwner::Global => GLOBAL_KEY.to_vec(),
            ModelOwner::User(address) => user_model_key(user_record(tx, address)?.id),
            ModelOwner::Correspondents(address) => correspondents_key(user_record(tx, address)?.id),
        })
    }

    pub fn spam_model(&self, owner: ModelOwner<'_>) -> Result<Option<Vec<u8>>> {
        let tx = self.engine.begin_read()?;
        let key = self.model_key(tx.as_ref(), owner)?;
        Ok(tx.get(SPAM_MODELS, &key)?)
    }

    /// Read, change and write a model in one durable transaction, so concurrent training by
    /// several sessions loses no update.
    pub fn update_spam_model(
        &self,
        owner: ModelOwner<'_>,
        update: impl FnOnce(Option<Vec<u8>>) -> Vec<u8>,
    ) -> Result<()> {
        let mut tx = self.engine.begin_write()?;
        let key = self.model_key(tx.as_ref(), owner)?;
        let current = tx.get(SPAM_MODELS, &key)?;
        let updated = update(current);
        tx.put(SPAM_MODELS, &key, &updated)?;
        tx.commit()?;
        Ok(())
    }
}
