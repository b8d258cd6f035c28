//! AES-256-GCM (NIST SP 800-38D) for everything Letterlock wraps or seals with a symmetric key.
//!
//! Sealed format: `version (1 byte) || nonce (12 bytes) || ciphertext || tag (16 bytes)`.
//! Nonces are random; each key seals far fewer than 2^32 records, the bound for random
//! 96-bit nonces. The caller's `context` is bound in as associated data, so a record sealed
//! for one purpose (say, user 7's key wrap) cannot be replayed as another.
//!
//! AES-GCM rather than another AEAD because rPGP already builds it: no new dependency.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{CryptoError, Result};

pub const KEY_SIZE_BYTES: usize = 32;
const NONCE_SIZE_BYTES: usize = 12;
const TAG_SIZE_BYTES: usize = 16;
const FORMAT_VERSION: u8 = 1;
/// Bytes a sealed record adds to its plaintext.
pub const SEAL_OVERHEAD_BYTES: usize = 1 + NONCE_SIZE_BYTES + TAG_SIZE_BYTES;

/// A 256-bit symmetric key. Zeroised on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SymmetricKey([u8; KEY_SIZE_BYTES]);

impl SymmetricKey {
    pub fn generate() -> SymmetricKey {
        let mut bytes = [0u8; KEY_SIZE_BYTES];
        rand::thread_rng().fill_bytes(&mut bytes);
        SymmetricKey(bytes)
    }

    pub fn from_bytes(bytes: [u8; KEY_SIZE_BYTES]) -> SymmetricKey {
        SymmetricKey(bytes)
    }

    pub fn from_slice(bytes: &[u8]) -> Result<SymmetricKey> {
        let array: [u8; KEY_SIZE_BYTES] = bytes.try_into().map_err(|_| CryptoError::Malformed {
            what: "symmetric key",
            detail: format!("{} bytes, expected {KEY_SIZE_BYTES}", bytes.len()),
        })?;
        Ok(SymmetricKey(array))
    }

    pub fn expose(&self) -> &[u8; KEY_SIZE_BYTES] {
        &self.0
    }

    /// A subkey for one purpose, by HKDF-SHA256 (RFC 5869).
    pub fn derive(&self, purpose: &[u8]) -> SymmetricKey {
        derive_key(&self.0, purpose)
    }

    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new((&self.0).into());
        let mut nonce = [0u8; NONCE_SIZE_BYTES];
        rand::thread_rng().fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD_BYTES);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&nonce);
        // AES-GCM encryption cannot fail for inputs under 64 GiB, which every caller's limits ensure.
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .unwrap_or_default();
        out.extend_from_slice(&ciphertext);
        out
    }

    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < SEAL_OVERHEAD_BYTES || sealed[0] != FORMAT_VERSION {
            return Err(CryptoError::Malformed {
                what: "sealed record",
                detail: "too short or unknown version".into(),
            });
        }
        let cipher = Aes256Gcm::new((&self.0).into());
        let nonce = Nonce::from_slice(&sealed[1..1 + NONCE_SIZE_BYTES]);
        cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &sealed[1 + NONCE_SIZE_BYTES..],
                    aad: context,
                },
            )
            .map_err(|_| CryptoError::Authentication)
    }
}

impl std::fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SymmetricKey(..)")
    }
}

/// HKDF-SHA256 from any secret input keying material to a 256-bit key for one purpose.
pub fn derive_key(input_key_material: &[u8], purpose: &[u8]) -> SymmetricKey {
    let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(None, input_key_material);
    let mut out = [0u8; KEY_SIZE_BYTES];
    // 32 bytes is far under HKDF-SHA256's 8160-byte output limit, so expand cannot fail.
    let _ = hkdf.expand(purpose, &mut out);
    SymmetricKey(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let key = SymmetricKey::generate();
        let sealed = key.seal(b"ctx", b"hello");
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD_BYTES);
        assert_eq!(key.open(b"ctx", &sealed).expect("opens"), b"hello");
        assert!(matches!(
            key.open(b"other", &sealed),
            Err(CryptoError::Authentication)
        ));
        assert!(SymmetricKey::generate().open(b"ctx", &sealed).is_err());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(key.open(b"ctx", &tampered).is_err());
        assert!(key.open(b"ctx", &sealed[..5]).is_err());
    }

    #[test]
    fn derived_keys_differ_by_purpose() {
        let key = SymmetricKey::generate();
        assert_ne!(key.derive(b"a").expose(), key.derive(b"b").expose());
        assert_eq!(key.derive(b"a").expose(), key.derive(b"a").expose());
    }
}
