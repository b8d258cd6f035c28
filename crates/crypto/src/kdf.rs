//! Argon2id (RFC 9106) for every human-held secret: passwords, app passwords, recovery codes.
//!
//! One Argon2id run yields a 32-byte master secret; HKDF splits it into a *verifier* (stored,
//! compared in constant time to check a login) and a *key-encryption key* (never stored,
//! unwraps the account key). Logging in and unlocking therefore cost one KDF run, not two.

use serde::{Deserialize, Serialize};
use subtle_compare::constant_time_eq;

use crate::symmetric::{derive_key, SymmetricKey};
use crate::{CryptoError, Result};

pub const SALT_SIZE_BYTES: usize = 16;

/// Argon2id cost parameters. Stored beside each wrap so they can be raised later
/// without breaking existing credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl KdfParams {
    /// OWASP's Argon2id recommendation (19 MiB, 2 passes, 1 lane). RFC 9106's second option
    /// (64 MiB, 3 passes) measured 350 ms per login on the 2-core reference machine, too slow
    /// for clients that reconnect constantly; this one costs about a fifth of that.
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    /// Cheap parameters for tests only (a test configuration sets them through `[kdf]`).
    pub const INSECURE_FOR_TESTS: KdfParams = KdfParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };
}

impl Default for KdfParams {
    fn default() -> KdfParams {
        KdfParams::DEFAULT
    }
}

/// What one Argon2id run over a credential yields.
pub struct DerivedCredential {
    pub verifier: [u8; 32],
    pub key_encryption_key: SymmetricKey,
}

impl DerivedCredential {
    pub fn verifies(&self, stored_verifier: &[u8]) -> bool {
        constant_time_eq(&self.verifier, stored_verifier)
    }
}

pub fn derive(secret: &[u8], salt: &[u8], params: KdfParams) -> Result<DerivedCredential> {
    let argon_params = argon2::Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(32),
    )
    .map_err(|error| CryptoError::Kdf(error.to_string()))?;
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon_params,
    );
    let mut master = zeroize::Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(secret, salt, master.as_mut())
        .map_err(|error| CryptoError::Kdf(error.to_string()))?;
    let verifier = *derive_key(master.as_ref(), b"letterlock credential verifier v1").expose();
    let key_encryption_key = derive_key(master.as_ref(), b"letterlock key-encryption key v1");
    Ok(DerivedCredential {
        verifier,
        key_encryption_key,
    })
}

/// For server-generated secrets of 100 bits or more (app passwords, recovery codes): a slow KDF
/// protects guessable secrets and adds nothing to unguessable ones, so HKDF-SHA256 is used and a
/// login with an app password costs microseconds, not an Argon2id run.
pub fn derive_high_entropy(secret: &[u8], salt: &[u8]) -> DerivedCredential {
    let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), secret);
    let mut master = zeroize::Zeroizing::new([0u8; 32]);
    // 32 bytes is far under HKDF-SHA256's output limit, so expand cannot fail.
    let _ = hkdf.expand(b"letterlock high-entropy credential v1", master.as_mut());
    DerivedCredential {
        verifier: *derive_key(master.as_ref(), b"letterlock credential verifier v1").expose(),
        key_encryption_key: derive_key(master.as_ref(), b"letterlock key-encryption key v1"),
    }
}

pub fn random_salt() -> [u8; SALT_SIZE_BYTES] {
    use rand::RngCore;
    let mut salt = [0u8; SALT_SIZE_BYTES];
    rand::thread_rng().fill_bytes(&mut salt);
    salt
}

mod subtle_compare {
    /// Compare without an early exit, so timing reveals nothing of where two values differ.
    pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_input_same_output_and_different_password_differs() {
        let salt = random_salt();
        let params = KdfParams::INSECURE_FOR_TESTS;
        let a = derive(b"correct horse", &salt, params).expect("derive");
        let b = derive(b"correct horse", &salt, params).expect("derive");
        let c = derive(b"wrong horse", &salt, params).expect("derive");
        assert!(a.verifies(&b.verifier));
        assert!(!a.verifies(&c.verifier));
        assert_eq!(a.key_encryption_key.expose(), b.key_encryption_key.expose());
        assert_ne!(
            a.verifier.as_slice(),
            a.key_encryption_key.expose().as_slice()
        );
    }

    #[test]
    fn bad_parameters_are_an_error_not_a_panic() {
        let params = KdfParams {
            memory_kib: 0,
            iterations: 0,
            parallelism: 0,
        };
        assert!(derive(b"x", &random_salt(), params).is_err());
    }
}
