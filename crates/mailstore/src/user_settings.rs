//! Per-account settings of outbound end-to-end protection (`DESIGN.md`, "End-to-end encryption
//! and keys"): when submitted mail is encrypted to its recipients' keys, and whether it is signed
//! with the account's key. Kept in the clear by account id: they are choices, not content.

use letterlock_storage::Table;
use letterlock_types::EmailAddress;
use serde::{Deserialize, Serialize};

use crate::accounts::user_record;
use crate::error::Result;
use crate::{get_record, put_record, MailStore};

pub(crate) const USER_SETTINGS: Table = Table::new("user_settings");

/// When submitted mail to remote recipients is encrypted (OpenPGP, PGP/MIME).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncryptionPolicy {
    /// Never: mail leaves as written.
    Never,
    /// Every recipient with a known key gets an encrypted copy, the others the clear one.
    #[default]
    PerRecipient,
    /// Encrypted only when every remote recipient has a key; otherwise all in the clear.
    WhenAllHaveKeys,
    /// Always: a submission to a recipient without a key is refused.
    Always,
}

impl EncryptionPolicy {
    pub const NAMES: [&'static str; 4] = ["never", "per-recipient", "when-all-have-keys", "always"];

    pub fn name(self) -> &'static str {
        match self {
            EncryptionPolicy::Never => "never",
            EncryptionPolicy::PerRecipient => "per-recipient",
            EncryptionPolicy::WhenAllHaveKeys => "when-all-have-keys",
            EncryptionPolicy::Always => "always",
        }
    }

    pub fn from_name(name: &str) -> Option<EncryptionPolicy> {
        [
            EncryptionPolicy::Never,
            EncryptionPolicy::PerRecipient,
            EncryptionPolicy::WhenAllHaveKeys,
            EncryptionPolicy::Always,
        ]
        .into_iter()
        .find(|policy| policy.name() == name)
    }
}

/// An account's settings; the default when none were set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSettings {
    pub encryption: EncryptionPolicy,
    /// Sign submitted mail (PGP/MIME, RFC 3156) with the account's current key.
    pub sign: bool,
}

pub(crate) fn settings_key(user_id: u64) -> [u8; 8] {
    user_id.to_be_bytes()
}

impl MailStore {
    pub fn user_settings(&self, address: &EmailAddress) -> Result<UserSettings> {
        let tx = self.engine.begin_read()?;
        let id = user_record(tx.as_ref(), address)?.id;
        Ok(get_record(tx.as_ref(), USER_SETTINGS, &settings_key(id))?.unwrap_or_default())
    }

    pub fn set_user_settings(&self, address: &EmailAddress, settings: UserSettings) -> Result<()> {
        let mut tx = self.engine.begin_write()?;
        let id = user_record(tx.as_ref(), address)?.id;
        put_record(tx.as_mut(), USER_SETTINGS, &settings_key(id), &settings)?;
        tx.commit()?;
        Ok(())
    }
}
