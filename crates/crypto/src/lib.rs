//! The cryptography of Letterlock's encryption-at-rest model (`DESIGN.md`, "Encryption at rest").
//!
//! - [`kdf`]: Argon2id (RFC 9106) turns a password, app password or recovery code into
//!   a login verifier and a key-encryption key, from one KDF run.
//! - [`symmetric`]: AES-256-GCM sealing for wrapped keys and encrypted index records.
//! - [`openpgp`]: per-user OpenPGP keys (v4, Ed25519 + Cv25519, readable by GnuPG 2.2) and messages
//!   in the RFC 4880 SEIPDv1 format, with access to the per-message session key so a first
//!   unlock can promote it to a symmetric wrapping.
//! - [`smime`]: S/MIME (CMS SignedData) signature checks for inbound mail.
//! - [`wkd`]: Web Key Directory addressing (the z-base-32 SHA-1 of a local part, the URLs).
//!
//! No IO, no storage: bytes in, bytes out.

pub mod kdf;
pub mod openpgp;
pub mod smime;
pub mod symmetric;
pub mod wkd;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A wrapped key or sealed record did not authenticate: wrong key or tampered data.
    #[error("decryption failed: wrong key or damaged data")]
    Authentication,
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("OpenPGP: {0}")]
    OpenPgp(String),
    #[error("key derivation: {0}")]
    Kdf(String),
}

impl From<pgp::errors::Error> for CryptoError {
    fn from(error: pgp::errors::Error) -> CryptoError {
        CryptoError::OpenPgp(error.to_string())
    }
}

pub type Result<T, E = CryptoError> = std::result::Result<T, E>;
