//! DKIM signing of outbound mail (RFC 6376) with two signatures per message: Ed25519-SHA256
//! (RFC 8463) and RSA-SHA256 with a 2048-bit key, because many verifiers still know only RSA.
//! Signing is done by `mail-auth`.
//!
//! Keys: one pair of each kind per domain, generated the first time the domain signs or its DNS
//! records are asked for. They are stored through the storage interface in the `dkim_keys`
//! table, the private halves sealed under a key derived from the spool key (rather than in
//! files under the data directory): they then live wherever the store lives (one database for
//! several nodes), are backed up with it, and are unreadable to whoever has the store without
//! the spool key, like the queue.

use std::sync::Arc;

use base64::Engine as _;
use letterlock_crypto::symmetric::SymmetricKey;
use letterlock_storage::{Engine, Table};
use letterlock_types::Domain;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{DkimSigner, Done};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer};
use serde::{Deserialize, Serialize};

use crate::error::{QueueError, Result};
use crate::spool_key::{SpoolKey, DKIM_KEY_PURPOSE};

pub const DKIM_KEYS: Table = Table::new("dkim_keys");
const PRIVATE_KEY_CONTEXT: &[u8] = b"letterlock dkim private key";

/// RSA modulus size: 2048 bits, the size RFC 8301 section 3.2 asks signers to use at least,
/// and the largest whose TXT record most DNS hosting panels still accept.
pub const RSA_KEY_BITS: usize = 2048;
/// TXT character-strings are at most 255 octets (RFC 1035 section 3.3.14); longer values are
/// split across several strings of one record.
pub const TXT_STRING_LENGTH_MAX_OCTETS: usize = 255;

/// The headers signed. `From` is listed twice so a second `From` added in transit breaks the
/// signature (RFC 6376 section 8.15, "over-signing").
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyPairRecord {
    selector: String,
    /// PKCS#8 (Ed25519) or PKCS#1 (RSA) DER, sealed under the DKIM key.
    sealed_private_key: Vec<u8>,
    /// What goes in `p=`: the raw 32-byte key (Ed25519, RFC 8463 section 4.2) or the
    /// SubjectPublicKeyInfo DER (RSA, as every signer publishes it).
    public_key: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DomainKeysRecord {
    created_unix: i64,
    ed25519: KeyPairRecord,
    rsa: KeyPairRecord,
}

/// One TXT record to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtRecord {
    /// `<selector>._domainkey.<domain>` (no trailing dot).
    pub name: String,
    /// The whole value, e.g. `v=DKIM1; k=ed25519; p=...`.
    pub value: String,
}

impl TxtRecord {
    /// A zone-file line, the value split into quoted strings of at most 255 octets.
    pub fn zone_line(&self) -> String {
        let strings: Vec<String> = self
            .value
            .as_bytes()
            .chunks(TXT_STRING_LENGTH_MAX_OCTETS)
            .map(|chunk| format!("\"{}\"", String::from_utf8_lossy(chunk)))
            .collect();
        format!("{}. IN TXT {}", self.name, strings.join(" "))
    }
}

/// The DKIM keys of every local domain. Cheap to clone.
#[derive(Clone)]
pub struct DkimKeys {
    engine: Arc<dyn Engine>,
    key: Arc<SymmetricKey>,
}

/// A domain's two signing keys, ready to sign.
pub struct DomainSigner {
    domain: String,
    ed25519: DkimSigner<Ed25519Key, Done>,
    rsa: DkimSigner<RsaKey<Sha256>, Done>,
}

impl DkimKeys {
    pub fn new(engine: Arc<dyn Engine>, spool_key: &SpoolKey) -> DkimKeys {
        DkimKeys {
            engine,
            key: Arc::new(spool_key.derive(DKIM_KEY_PURPOSE)),
        }
    }

    /// The signer of `domain`, its keys generated and stored on first use. Blocking (RSA key
    /// generation takes a fraction of a second once per domain); call it off the async threads.
    pub fn signer(&self, domain: &Domain) -> Result<DomainSigner> {
        let record = self.record(domain)?;
        let ed25519_private = self.open_private(domain, "ed25519", &record.ed25519)?;
        let rsa_private = self.open_private(domain, "rsa", &record.rsa)?;
        let ed25519 = Ed25519Key::from_pkcs8_der(&ed25519_private)
            .map_err(|error| QueueError::Dkim(error.to_string()))?;
        let rsa = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(
            rsa_private.as_slice(),
        )))
        .map_err(|error| QueueError::Dkim(error.to_string()))?;
        Ok(DomainSigner {
            domain: domain.as_str().to_string(),
            ed25519: DkimSigner::from_key(ed25519)
                .domain(domain.as_str())
                .selector(record.ed25519.selector)
                .headers(SIGNED_HEADERS.iter().copied()),
            rsa: DkimSigner::from_key(rsa)
                .domain(domain.as_str())
                .selector(record.rsa.selector)
                .headers(SIGNED_HEADERS.iter().copied()),
        })
    }

    /// The TXT records to publish for `domain` (Ed25519 first), for
    /// `letterlock domain dns DOMAIN`. Generates the keys if the domain has none yet.
    pub fn dns_records(&self, domain: &Domain) -> Result<Vec<TxtRecord>> {
        let record = self.record(domain)?;
        let base64 = base64::engine::general_purpose::STANDARD;
        Ok(vec![
            TxtRecord {
                name: format!("{}._domainkey.{}", record.ed25519.selector, domain.as_str()),
                value: format!(
                    "v=DKIM1; k=ed25519; p={}",
                    base64.encode(&record.ed25519.public_key)
                ),
            },
            TxtRecord {
                name: format!("{}._domainkey.{}", record.rsa.selector, domain.as_str()),
                value: format!(
                    "v=DKIM1; k=rsa; p={}",
                    base64.encode(&record.rsa.public_key)
                ),
            },
        ])
    }

    fn record(&self, domain: &Domain) -> Result<DomainKeysRecord> {
        let key = domain.as_str().as_bytes();
        {
            let tx = self.engine.begin_read()?;
            if let Some(bytes) = tx.get(DKIM_KEYS, key)? {
                return Ok(postcard::from_bytes(&bytes)?);
            }
        }
        // Generated outside the write transaction (RSA takes a while); a concurrent creator
        // is detected inside it and its keys win, so a domain never has two published pairs.
        let created = self.generate(domain)?;
        let mut tx = self.engine.begin_write()?;
        if let Some(bytes) = tx.get(DKIM_KEYS, key)? {
            return Ok(postcard::from_bytes(&bytes)?);
        }
        tx.put(DKIM_KEYS, key, &postcard::to_stdvec(&created)?)?;
        tx.commit()?;
        Ok(created)
    }

    fn generate(&self, domain: &Domain) -> Result<DomainKeysRecord> {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::EncodePublicKey;
        let now = crate::store::now_unix();
        // Selectors carry the creation date, so a rotated key gets a new name beside the old.
        let stamp = crate::dsn::ymd(now);
        let ed25519_private =
            Ed25519Key::generate_pkcs8().map_err(|error| QueueError::Dkim(error.to_string()))?;
        let ed25519_public = Ed25519Key::from_pkcs8_der(&ed25519_private)
            .map_err(|error| QueueError::Dkim(error.to_string()))?
            .public_key();
        let rsa_private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, RSA_KEY_BITS)
            .map_err(|error| QueueError::Dkim(error.to_string()))?;
        let rsa_private_der = rsa_private
            .to_pkcs1_der()
            .map_err(|error| QueueError::Dkim(error.to_string()))?;
        let rsa_public_der = rsa_private
            .to_public_key()
            .to_public_key_der()
            .map_err(|error| QueueError::Dkim(error.to_string()))?;
        let ed25519_selector = format!("ll{stamp}e");
        let rsa_selector = format!("ll{stamp}r");
        Ok(DomainKeysRecord {
            created_unix: now,
            ed25519: KeyPairRecord {
                sealed_private_key: self
                    .key
                    .seal(&private_context(domain, "ed25519"), &ed25519_private),
                selector: ed25519_selector,
                public_key: ed25519_public,
            },
            rsa: KeyPairRecord {
                sealed_private_key: self
                    .key
                    .seal(&private_context(domain, "rsa"), rsa_private_der.as_bytes()),
                selector: rsa_selector,
                public_key: rsa_public_der.as_bytes().to_vec(),
            },
        })
    }

    fn open_private(
        &self,
        domain: &Domain,
        kind: &str,
        record: &KeyPairRecord,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        Ok(zeroize::Zeroizing::new(self.key.open(
            &private_context(domain, kind),
            &record.sealed_private_key,
        )?))
    }
}

fn private_context(domain: &Domain, kind: &str) -> Vec<u8> {
    let mut context = PRIVATE_KEY_CONTEXT.to_vec();
    context.extend_from_slice(format!(" {kind} {}", domain.as_str()).as_bytes());
    context
}

impl DomainSigner {
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The two `DKIM-Signature` header fields for `message` (Ed25519 first), to be put in
    /// front of it.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let ed25519 = self
            .ed25519
            .sign(message)
            .map_err(|error| QueueError::Dkim(error.to_string()))?;
        let rsa = self
            .rsa
            .sign(message)
            .map_err(|error| QueueError::Dkim(error.to_string()))?;
        let mut headers = ed25519.to_header().into_bytes();
        headers.extend_from_slice(rsa.to_header().as_bytes());
        Ok(headers)
    }
}
