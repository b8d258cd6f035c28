//! Per-user OpenPGP keys and messages (RFC 4880 formats, readable by GnuPG 2.2).
//!
//! Keys are v4: an Ed25519 primary key (certify, sign) and a Cv25519 ECDH subkey (encrypt),
//! the user id being the address. Messages are PKESK v3 + SEIPDv1 with AES-256: GnuPG 2.2,
//! Debian's, reads nothing newer (RFC 9580 v6 keys and SEIPDv2 it cannot).
//!
//! The one thing this module adds to rPGP is access to the per-message *session key*:
//! [`PublicKey::encrypt`] hands it back, and [`UserKey::session_key_of`] recovers it with one
//! public-key operation, so the mail store can keep it under a symmetric wrapping after a first
//! unlock and never pay the public-key cost for that message again (`DESIGN.md`, point 7).

use std::io::Read;

use pgp::composed::{
    ArmorOptions, Deserializable, EncryptionCaps, Esk, KeyType, Message, MessageBuilder,
    PlainSessionKey, RawSessionKey, SecretKeyParamsBuilder, SignedPublicKey, SignedSecretKey,
    SubkeyParamsBuilder,
};
use pgp::crypto::ecc_curve::ECCCurve;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::ser::Serialize;
use pgp::types::{DecryptionKey, EskType, KeyDetails, Password};
use rand::thread_rng;
use zeroize::Zeroizing;

use crate::{CryptoError, Result};

/// The cipher of every message Letterlock encrypts.
const MESSAGE_CIPHER: SymmetricKeyAlgorithm = SymmetricKeyAlgorithm::AES256;

/// A user's OpenPGP key pair, its secret parts unlocked and held in memory only.
/// rPGP zeroises secret key material when it is dropped.
#[derive(Clone)]
pub struct UserKey {
    secret: SignedSecretKey,
}

impl std::fmt::Debug for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserKey({})", self.fingerprint())
    }
}

impl UserKey {
    /// A new key for `address`: Ed25519 primary, Cv25519 encryption subkey, v4.
    pub fn generate(address: &str) -> Result<UserKey> {
        let mut encryption_subkey = SubkeyParamsBuilder::default();
        encryption_subkey
            .key_type(KeyType::ECDH(ECCCurve::Curve25519Legacy))
            .can_sign(false)
            .can_encrypt(EncryptionCaps::All)
            .can_authenticate(false);
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .can_encrypt(EncryptionCaps::None)
            .primary_user_id(format!("<{address}>"))
            .preferred_symmetric_algorithms(
                [SymmetricKeyAlgorithm::AES256, SymmetricKeyAlgorithm::AES128]
                    .into_iter()
                    .collect(),
            )
            .subkeys(vec![encryption_subkey
                .build()
                .map_err(|error| CryptoError::OpenPgp(error.to_string()))?]);
        let secret = params
            .build()
            .map_err(|error| CryptoError::OpenPgp(error.to_string()))?
            .generate(thread_rng())?;
        Ok(UserKey { secret })
    }

    /// A key the user brings: armoured or binary transferable secret key.
    /// A key locked with a passphrase is unlocked with `passphrase` (the account password).
    pub fn import(bytes: &[u8], passphrase: &[u8]) -> Result<UserKey> {
        let (mut secret, _headers) = SignedSecretKey::from_reader_single(bytes)?;
        secret.verify_bindings()?;
        let password = Password::from(passphrase);
        secret
            .primary_key
            .remove_password(&password)
            .map_err(|_| locked_key_error())?;
        for subkey in &mut secret.secret_subkeys {
            subkey
                .key
                .remove_password(&password)
                .map_err(|_| locked_key_error())?;
        }
        let key = UserKey { secret };
        key.public_key().encryption_subkey_index()?;
        Ok(key)
    }

    /// The unprotected transferable secret key, to be sealed by the caller before it is stored.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(self.secret.to_bytes()?))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<UserKey> {
        let secret = SignedSecretKey::from_bytes(bytes)?;
        Ok(UserKey { secret })
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key: self.secret.to_public_key(),
        }
    }

    pub fn fingerprint(&self) -> String {
        hex_upper(self.secret.fingerprint().as_bytes())
    }

    /// The secret key, armoured and locked with `password` (iterated and salted S2K, CFB:
    /// the v4 protection every OpenPGP implementation reads), for `letterlock export`.
    pub fn export_locked_armored(&self, password: &[u8]) -> Result<String> {
        let mut locked = self.secret.clone();
        let password = Password::from(password);
        locked.primary_key.set_password(thread_rng(), &password)?;
        for subkey in &mut locked.secret_subkeys {
            subkey.key.set_password(thread_rng(), &password)?;
        }
        Ok(locked.to_armored_string(ArmorOptions::default())?)
    }

    /// Recover the session key of a message encrypted to this key: one public-key operation.
    pub fn session_key_of(&self, message: &[u8]) -> Result<SessionKey> {
        let parsed = Message::from_bytes(message)?;
        let Message::Encrypted { esk, .. } = &parsed else {
            return Err(CryptoError::Malformed {
                what: "stored message",
                detail: "not an encrypted OpenPGP message".into(),
            });
        };
        let password = Password::empty();
        for packet in esk {
            let Esk::PublicKeyEncryptedSessionKey(pkesk) = packet else {
                continue;
            };
            let values = pkesk.values()?;
            for subkey in &self.secret.secret_subkeys {
                if pkesk.match_identity(&subkey.key.public_key()) {
                    if let Ok(Ok(key)) = subkey.key.decrypt(&password, values, EskType::V3_4) {
                        return SessionKey::from_plain(key);
                    }
                }
            }
            if pkesk.match_identity(&self.secret.primary_key.public_key()) {
                if let Ok(Ok(key)) =
                    self.secret
                        .primary_key
                        .decrypt(&password, values, EskType::V3_4)
                {
                    return SessionKey::from_plain(key);
                }
            }
        }
        Err(CryptoError::OpenPgp(
            "the message is not encrypted to this key".into(),
        ))
    }

    /// Decrypt a message encrypted to this key (public-key operation included).
    pub fn decrypt(&self, message: &[u8], size_max_bytes: usize) -> Result<Vec<u8>> {
        let session_key = self.session_key_of(message)?;
        decrypt_with_session_key(message, &session_key, size_max_bytes)
    }
}

fn locked_key_error() -> CryptoError {
    CryptoError::OpenPgp(
        "the key is locked with a passphrase that is not the account password".into(),
    )
}

/// A user's public key (certificate).
#[derive(Clone, Debug)]
pub struct PublicKey {
    key: SignedPublicKey,
}

/// An encrypted message and the session key it was encrypted with.
pub struct EncryptedMessage {
    pub bytes: Vec<u8>,
    pub session_key: SessionKey,
}

impl PublicKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey> {
        let (key, _headers) = SignedPublicKey::from_reader_single(bytes)?;
        Ok(PublicKey { key })
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(self.key.to_bytes()?)
    }

    /// The key's user IDs, as text.
    pub fn user_ids(&self) -> Vec<String> {
        self.key
            .details
            .users
            .iter()
            .map(|user| String::from_utf8_lossy(user.id.id()).into_owned())
            .collect()
    }

    /// Whether a user ID names `address` (as `Name <address>` or the bare address), ignoring
    /// case: what a key found for an address must show (draft-koch-openpgp-webkey-service
    /// section 3.1).
    pub fn names_address(&self, address: &str) -> bool {
        let address = address.to_lowercase();
        self.user_ids().iter().any(|user_id| {
            let user_id = user_id.to_lowercase();
            user_id == address || user_id.ends_with(&format!("<{address}>"))
        })
    }

    pub fn to_armored(&self) -> Result<String> {
        Ok(self.key.to_armored_string(ArmorOptions::default())?)
    }

    pub fn fingerprint(&self) -> String {
        hex_upper(self.key.fingerprint().as_bytes())
    }

    fn encryption_subkey_index(&self) -> Result<usize> {
        self.key
            .public_subkeys
            .iter()
            .position(|subkey| {
                subkey.algorithm().can_encrypt()
                    && subkey.signatures.iter().any(|signature| {
                        let flags = signature.key_flags();
                        flags.encrypt_comms() || flags.encrypt_storage()
                    })
            })
            .ok_or_else(|| CryptoError::OpenPgp("the key has no encryption subkey".into()))
    }

    /// Encrypt `plaintext` to this key as a binary OpenPGP message (PKESK v3 + SEIPDv1, AES-256).
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<EncryptedMessage> {
        let subkey = &self.key.public_subkeys[self.encryption_subkey_index()?];
        let mut builder = MessageBuilder::from_bytes("", plaintext.to_vec())
            .seipd_v1(thread_rng(), MESSAGE_CIPHER);
        builder.encrypt_to_key(thread_rng(), subkey)?;
        let session_key = SessionKey {
            algorithm: MESSAGE_CIPHER,
            key: Zeroizing::new(builder.session_key().as_ref().to_vec()),
        };
        let bytes = builder.to_vec(thread_rng())?;
        Ok(EncryptedMessage { bytes, session_key })
    }
}

/// The symmetric key of one OpenPGP message. Zeroised on drop, never printed.
#[derive(Clone)]
pub struct SessionKey {
    algorithm: SymmetricKeyAlgorithm,
    key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    fn from_plain(key: PlainSessionKey) -> Result<SessionKey> {
        match &key {
            PlainSessionKey::V3_4 { sym_alg, key } => Ok(SessionKey {
                algorithm: *sym_alg,
                key: Zeroizing::new(key.as_ref().to_vec()),
            }),
            _ => Err(CryptoError::OpenPgp(
                "unsupported session key version".into(),
            )),
        }
    }

    /// `algorithm id (1 byte) || key`, to be sealed before it is stored.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(1 + self.key.len()));
        out.push(u8::from(self.algorithm));
        out.extend_from_slice(&self.key);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<SessionKey> {
        let Some((&algorithm, key)) = bytes.split_first() else {
            return Err(CryptoError::Malformed {
                what: "session key",
                detail: "empty".into(),
            });
        };
        let algorithm = SymmetricKeyAlgorithm::from(algorithm);
        if key.len() != algorithm.key_size() || key.is_empty() {
            return Err(CryptoError::Malformed {
                what: "session key",
                detail: format!("{} bytes for {algorithm:?}", key.len()),
            });
        }
        Ok(SessionKey {
            algorithm,
            key: Zeroizing::new(key.to_vec()),
        })
    }

    /// Key material for things sealed alongside this message (its index record):
    /// HKDF from the session key, so one public-key operation unlocks both.
    pub fn derive(&self, purpose: &[u8]) -> crate::symmetric::SymmetricKey {
        crate::symmetric::derive_key(&self.key, purpose)
    }
}

/// Decrypt a message with its session key (symmetric work only). Refuses plaintexts over
/// `size_max_bytes` rather than allocating without bound.
pub fn decrypt_with_session_key(
    message: &[u8],
    session_key: &SessionKey,
    size_max_bytes: usize,
) -> Result<Vec<u8>> {
    let plain = PlainSessionKey::V3_4 {
        sym_alg: session_key.algorithm,
        key: RawSessionKey::from(session_key.key.as_slice()),
    };
    let mut decrypted = Message::from_bytes(message)?.decrypt_with_session_key(plain)?;
    if decrypted.is_compressed() {
        decrypted = decrypted.decompress()?;
    }
    let mut out = Vec::new();
    let read_max = u64::try_from(size_max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    (&mut decrypted)
        .take(read_max)
        .read_to_end(&mut out)
        .map_err(|error| CryptoError::OpenPgp(error.to_string()))?;
    if out.len() > size_max_bytes {
        return Err(CryptoError::Malformed {
            what: "stored message",
            detail: format!("plaintext over {size_max_bytes} bytes"),
        });
    }
    // Reading to the end checked the modification detection code (SEIPDv1);
    // a tampered message fails above rather than returning altered bytes.
    Ok(out)
}

/// What checking a detached OpenPGP signature (RFC 3156 PGP/MIME) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// Made by `fingerprint` (a key given), over exactly this content.
    Valid { fingerprint: String },
    /// Claims to be made by `fingerprint` (a key given) but does not verify: the content or
    /// the signature was changed.
    Invalid { fingerprint: String },
    /// Made by a key not among those given: `issuer` is the key the signature names (its
    /// issuer fingerprint, else its 16-hex-digit key ID), if it names one.
    UnknownKey { issuer: Option<String> },
    /// Not a signature this code can read.
    Malformed,
}

/// Check a detached signature (armoured or binary) over `content` against `keys`.
pub fn verify_detached(signature: &[u8], content: &[u8], keys: &[PublicKey]) -> SignatureCheck {
    use pgp::composed::DetachedSignature;
    let Ok((signature, _)) = DetachedSignature::from_reader_single(signature) else {
        return SignatureCheck::Malformed;
    };
    match signer_of(&signature.signature, keys) {
        None => SignatureCheck::UnknownKey {
            issuer: issuer_of(&signature.signature),
        },
        Some((fingerprint, Signer::Primary(key))) => {
            verdict(signature.verify(key, content).is_ok(), fingerprint)
        }
        Some((fingerprint, Signer::Subkey(key))) => {
            verdict(signature.verify(key, content).is_ok(), fingerprint)
        }
    }
}

/// Check a cleartext-signed block (RFC 4880 section 7, "-----BEGIN PGP SIGNED MESSAGE-----"
/// to "-----END PGP SIGNATURE-----") against `keys`; also returns the signed text.
pub fn verify_cleartext(block: &str, keys: &[PublicKey]) -> (SignatureCheck, Option<String>) {
    use pgp::composed::CleartextSignedMessage;
    let Ok((message, _)) = CleartextSignedMessage::from_string(block) else {
        return (SignatureCheck::Malformed, None);
    };
    let text = Some(message.signed_text());
    let Some(signature) = message.signatures().first() else {
        return (SignatureCheck::Malformed, text);
    };
    let check = match signer_of(signature, keys) {
        None => SignatureCheck::UnknownKey {
            issuer: issuer_of(signature),
        },
        Some((fingerprint, Signer::Primary(key))) => {
            verdict(message.verify(key).is_ok(), fingerprint)
        }
        Some((fingerprint, Signer::Subkey(key))) => {
            verdict(message.verify(key).is_ok(), fingerprint)
        }
    };
    (check, text)
}

fn verdict(verified: bool, fingerprint: String) -> SignatureCheck {
    if verified {
        SignatureCheck::Valid { fingerprint }
    } else {
        SignatureCheck::Invalid { fingerprint }
    }
}

/// The key (or subkey) among `keys` a signature names as its issuer, with the primary key's
/// fingerprint.
enum Signer<'a> {
    Primary(&'a SignedPublicKey),
    Subkey(&'a pgp::composed::SignedPublicSubKey),
}

/// The key a signature names as its issuer: a fingerprint, else a key ID.
fn issuer_of(signature: &pgp::packet::Signature) -> Option<String> {
    signature
        .issuer_fingerprint()
        .first()
        .map(|fingerprint| hex_upper(fingerprint.as_bytes()))
        .or_else(|| {
            signature
                .issuer_key_id()
                .first()
                .map(|key_id| hex_upper(key_id.as_ref()))
        })
}

fn signer_of<'a>(
    signature: &pgp::packet::Signature,
    keys: &'a [PublicKey],
) -> Option<(String, Signer<'a>)> {
    let issuers_fingerprints: Vec<String> = signature
        .issuer_fingerprint()
        .iter()
        .map(|fingerprint| hex_upper(fingerprint.as_bytes()))
        .collect();
    let issuer_key_ids: Vec<String> = signature
        .issuer_key_id()
        .iter()
        .map(|key_id| hex_upper(key_id.as_ref()))
        .collect();
    let names = |fingerprint: &str, key_id: &str| {
        issuers_fingerprints
            .iter()
            .any(|issuer| issuer == fingerprint)
            || issuer_key_ids.iter().any(|issuer| issuer == key_id)
    };
    for key in keys {
        let primary_fingerprint = key.fingerprint();
        let primary = &key.key.primary_key;
        if names(
            &primary_fingerprint,
            &hex_upper(primary.legacy_key_id().as_ref()),
        ) {
            return Some((primary_fingerprint, Signer::Primary(&key.key)));
        }
        for subkey in &key.key.public_subkeys {
            let fingerprint = hex_upper(subkey.fingerprint().as_bytes());
            if names(&fingerprint, &hex_upper(subkey.legacy_key_id().as_ref())) {
                return Some((primary_fingerprint, Signer::Subkey(subkey)));
            }
        }
    }
    None
}

/// Encrypt `plaintext` to every key in `keys` (one PKESK each; SEIPDv1, AES-256, the format
/// Debian's GnuPG 2.2 reads) as an ASCII-armoured OpenPGP message: the body of the encrypted
/// part of a PGP/MIME message (RFC 3156) to correspondents.
pub fn encrypt_armored_to(keys: &[PublicKey], plaintext: &[u8]) -> Result<String> {
    if keys.is_empty() {
        return Err(CryptoError::OpenPgp("no key to encrypt to".into()));
    }
    let mut builder =
        MessageBuilder::from_bytes("", plaintext.to_vec()).seipd_v1(thread_rng(), MESSAGE_CIPHER);
    for key in keys {
        let subkey = &key.key.public_subkeys[key.encryption_subkey_index()?];
        builder.encrypt_to_key(thread_rng(), subkey)?;
    }
    Ok(builder.to_armored_string(thread_rng(), ArmorOptions::default())?)
}

/// The binary packets of an ASCII-armoured OpenPGP block.
pub fn dearmor(armored: &[u8]) -> Result<Vec<u8>> {
    let mut binary = Vec::new();
    pgp::armor::Dearmor::new(armored)
        .read_to_end(&mut binary)
        .map_err(|error| CryptoError::OpenPgp(format!("bad ASCII armour: {error}")))?;
    Ok(binary)
}

impl UserKey {
    /// A detached, armoured signature over `content` (binary signature type), made with the
    /// primary key.
    pub fn sign_detached(&self, content: &[u8]) -> Result<String> {
        let signature = pgp::composed::DetachedSignature::sign_binary_data(
            thread_rng(),
            &self.secret.primary_key,
            &Password::empty(),
            pgp::crypto::hash::HashAlgorithm::Sha256,
            content,
        )?;
        Ok(signature.to_armored_string(ArmorOptions::default())?)
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armoured_encryption_to_several_keys_is_readable_by_each() {
        let alice = UserKey::generate("alice@example.org").expect("generate");
        let bob = UserKey::generate("bob@example.org").expect("generate");
        let stranger = UserKey::generate("eve@example.org").expect("generate");
        let plaintext = b"Subject: hi\r\n\r\nfor both of you\r\n";
        let armored = encrypt_armored_to(&[alice.public_key(), bob.public_key()], plaintext)
            .expect("encrypt");
        assert!(armored.starts_with("-----BEGIN PGP MESSAGE-----"));
        let binary = dearmor(armored.as_bytes()).expect("armour");
        for key in [&alice, &bob] {
            assert_eq!(key.decrypt(&binary, 1 << 20).expect("decrypt"), plaintext);
        }
        assert!(stranger.decrypt(&binary, 1 << 20).is_err());
        assert!(encrypt_armored_to(&[], plaintext).is_err());
    }

    #[test]
    fn encrypt_then_decrypt_by_key_and_by_session_key() {
        let key = UserKey::generate("alice@example.org").expect("generate");
        let public = key.public_key();
        let message = b"Subject: hi\r\n\r\nhello\r\n";
        let encrypted = public.encrypt(message).expect("encrypt");
        assert!(!encrypted.bytes.windows(5).any(|window| window == b"hello"));
        assert_eq!(
            key.decrypt(&encrypted.bytes, 1024).expect("decrypt"),
            message
        );
        let recovered = key.session_key_of(&encrypted.bytes).expect("session key");
        assert_eq!(recovered.to_bytes(), encrypted.session_key.to_bytes());
        let stored = SessionKey::from_bytes(&recovered.to_bytes()).expect("parse");
        assert_eq!(
            decrypt_with_session_key(&encrypted.bytes, &stored, 1024).expect("decrypt"),
            message
        );
        assert!(decrypt_with_session_key(&encrypted.bytes, &stored, 5).is_err());
    }

    #[test]
    fn another_key_cannot_decrypt() {
        let alice = UserKey::generate("alice@example.org").expect("generate");
        let mallory = UserKey::generate("mallory@example.org").expect("generate");
        let encrypted = alice.public_key().encrypt(b"secret").expect("encrypt");
        assert!(mallory.decrypt(&encrypted.bytes, 1024).is_err());
    }

    #[test]
    fn keys_round_trip_and_export_locked() {
        let key = UserKey::generate("bob@example.org").expect("generate");
        let again = UserKey::from_bytes(&key.to_bytes().expect("serialize")).expect("parse");
        assert_eq!(again.fingerprint(), key.fingerprint());
        let public =
            PublicKey::from_bytes(&key.public_key().to_bytes().expect("serialize")).expect("parse");
        assert_eq!(public.fingerprint(), key.fingerprint());
        let armored = key.export_locked_armored(b"pw").expect("export");
        assert!(armored.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"));
        let imported = UserKey::import(armored.as_bytes(), b"pw").expect("import with password");
        assert_eq!(imported.fingerprint(), key.fingerprint());
        assert!(UserKey::import(armored.as_bytes(), b"wrong").is_err());
    }

    #[test]
    fn detached_signatures_verify_and_tampering_shows() {
        let signer = UserKey::generate("dave@example.org").expect("key");
        let stranger = UserKey::generate("eve@example.org").expect("key");
        let content = b"Content-Type: text/plain\r\n\r\nsigned words\r\n";
        let signature = signer.sign_detached(content).expect("sign");
        let keys = [stranger.public_key(), signer.public_key()];
        assert_eq!(
            verify_detached(signature.as_bytes(), content, &keys),
            SignatureCheck::Valid {
                fingerprint: signer.fingerprint()
            }
        );
        assert_eq!(
            verify_detached(
                signature.as_bytes(),
                b"Content-Type: text/plain\r\n\r\nsigned wordz\r\n",
                &keys
            ),
            SignatureCheck::Invalid {
                fingerprint: signer.fingerprint()
            }
        );
        assert_eq!(
            verify_detached(signature.as_bytes(), content, &[stranger.public_key()]),
            SignatureCheck::UnknownKey {
                issuer: Some(signer.fingerprint())
            }
        );
        assert_eq!(
            verify_detached(b"garbage", content, &keys),
            SignatureCheck::Malformed
        );
    }

    #[test]
    fn tampered_ciphertext_is_refused() {
        let key = UserKey::generate("carol@example.org").expect("generate");
        let mut encrypted = key.public_key().encrypt(&[b'x'; 2000]).expect("encrypt");
        let middle = encrypted.bytes.len() / 2;
        encrypted.bytes[middle] ^= 0x40;
        assert!(key.decrypt(&encrypted.bytes, 4096).is_err());
    }
}
