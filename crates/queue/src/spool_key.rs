//! The server's spool key: the 256-bit secret that seals queued mail and DKIM private keys.
//!
//! It lives apart from the data (`DESIGN.md`, encryption at rest, point 1): in a key file the
//! operator keeps outside the data directory (created with mode 0600 when missing), or in an
//! environment variable set by the service manager. Whoever has the store but not the key sees
//! only ciphertext; whoever has both can read the queue, which is why the two are kept apart.
//!
//! The file holds the key as 64 hexadecimal digits and a newline; the environment variable
//! holds the same text.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use letterlock_crypto::symmetric::{SymmetricKey, KEY_SIZE_BYTES};
use zeroize::Zeroize;

use crate::error::{QueueError, Result};

/// HKDF purposes of the keys derived from the spool key: one per kind of record, so a record of
/// one kind can never be opened as another.
pub(crate) const QUEUE_KEY_PURPOSE: &[u8] = b"letterlock queue v1";
pub(crate) const DKIM_KEY_PURPOSE: &[u8] = b"letterlock dkim keys v1";

/// The spool key. Zeroised on drop, never printed.
#[derive(Clone, Debug)]
pub struct SpoolKey(SymmetricKey);

impl SpoolKey {
    /// A fresh random key (tests, and `load_or_create_file` on first run).
    pub fn generate() -> SpoolKey {
        SpoolKey(SymmetricKey::generate())
    }

    /// Read the key file at `path`, or create it (mode 0600, never overwriting) with a new key.
    /// A key file readable by group or others is refused: the key would not be apart from
    /// anything.
    pub fn load_or_create_file(path: &Path) -> Result<SpoolKey> {
        match std::fs::metadata(path) {
            Ok(metadata) => {
                let mode = metadata.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(QueueError::SpoolKey(format!(
                        "{} is readable by others (mode {:o}); chmod 600 it",
                        path.display(),
                        mode & 0o777
                    )));
                }
                let text = std::fs::read_to_string(path).map_err(|error| {
                    QueueError::SpoolKey(format!("cannot read {}: {error}", path.display()))
                })?;
                SpoolKey::from_hex(text.trim())
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = SpoolKey::generate();
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|error| {
                        QueueError::SpoolKey(format!("cannot create {}: {error}", path.display()))
                    })?;
                let written = file
                    .write_all(format!("{}\n", key.to_hex()).as_bytes())
                    .and_then(|()| file.sync_all());
                written.map_err(|error| {
                    QueueError::SpoolKey(format!("cannot write {}: {error}", path.display()))
                })?;
                Ok(key)
            }
            Err(error) => Err(QueueError::SpoolKey(format!(
                "cannot read {}: {error}",
                path.display()
            ))),
        }
    }

    /// The key from environment variable `name` (64 hex digits).
    pub fn from_env(name: &str) -> Result<SpoolKey> {
        let value = std::env::var(name)
            .map_err(|_| QueueError::SpoolKey(format!("environment variable {name} is not set")))?;
        SpoolKey::from_hex(value.trim())
    }

    fn from_hex(text: &str) -> Result<SpoolKey> {
        let malformed =
            || QueueError::SpoolKey(format!("expected {} hex digits", KEY_SIZE_BYTES * 2));
        if text.len() != KEY_SIZE_BYTES * 2 || !text.is_ascii() {
            return Err(malformed());
        }
        let mut bytes = [0u8; KEY_SIZE_BYTES];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte =
                u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).map_err(|_| malformed())?;
        }
        let key = SymmetricKey::from_bytes(bytes);
        bytes.zeroize();
        Ok(SpoolKey(key))
    }

    fn to_hex(&self) -> String {
        self.0
            .expose()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    pub(crate) fn derive(&self, purpose: &[u8]) -> SymmetricKey {
        self.0.derive(purpose)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_0600_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spool.key");
        let created = SpoolKey::load_or_create_file(&path).expect("create");
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = SpoolKey::load_or_create_file(&path).expect("load");
        assert_eq!(created.to_hex(), loaded.to_hex());
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spool.key");
        SpoolKey::load_or_create_file(&path).expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(SpoolKey::load_or_create_file(&path).is_err());
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(SpoolKey::from_hex("abc").is_err());
        assert!(SpoolKey::from_hex(&"zz".repeat(32)).is_err());
        assert!(SpoolKey::from_hex(&"ab".repeat(32)).is_ok());
    }
}
