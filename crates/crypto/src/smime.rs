//! S/MIME signatures (RFC 8551 section 3.5, CMS SignedData per RFC 5652): a detached signature
//! over the first part of a `multipart/signed` message, checked against the signer's
//! certificate carried in the signature, and that certificate's chain through the other
//! certificates carried with it. `cms` parses; the checks are here (no maintained Rust crate
//! verifies CMS signatures).
//!
//! What "valid" means: the content's digest is the signed `messageDigest`, the signed
//! attributes verify under the signer certificate's key, and the certificate names an address.
//! The chain is followed as far as the message's own certificates go; it is not checked against
//! trusted roots (there are none for S/MIME here), so the result names the chain's top instead
//! of calling it trusted. Algorithms: RSA PKCS#1 v1.5 and ECDSA P-256, with SHA-256/384/512.

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_cert::Certificate;

const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_EMAIL_ADDRESS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.1");
const ID_SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// Certificates followed up a chain at most.
pub const CHAIN_LENGTH_MAX: usize = 8;

/// What checking an S/MIME signature found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmimeCheck {
    /// The signature verifies under the certificate of `signer` (its addresses, lowercase).
    /// `chain_top` is the subject of the last certificate the chain reached, and whether it is
    /// self-signed (a root) rather than a certificate whose issuer was not included.
    Valid {
        signers: Vec<String>,
        subject: String,
        chain_top: String,
        chain_complete: bool,
    },
    /// Readable, but the content or the signature does not match.
    Invalid(String),
    /// Not a signature this code can read.
    Malformed(String),
}

#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn of_digest_oid(oid: &ObjectIdentifier) -> Option<Hash> {
        match *oid {
            ID_SHA256 => Some(Hash::Sha256),
            ID_SHA384 => Some(Hash::Sha384),
            ID_SHA512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(bytes).to_vec(),
            Hash::Sha384 => Sha384::digest(bytes).to_vec(),
            Hash::Sha512 => Sha512::digest(bytes).to_vec(),
        }
    }
}

/// Check a detached CMS signature (DER) over `content` (the signed part exactly as it
/// travelled, CRLF line ends).
pub fn verify_detached(signature: &[u8], content: &[u8]) -> SmimeCheck {
    match check(signature, content) {
        Ok(check) => check,
        Err(reason) => SmimeCheck::Malformed(reason),
    }
}

fn check(signature: &[u8], content: &[u8]) -> Result<SmimeCheck, String> {
    let info = ContentInfo::from_der(signature).map_err(|error| format!("not CMS: {error}"))?;
    if info.content_type != ID_SIGNED_DATA {
        return Err("not SignedData".into());
    }
    let signed = info
        .content
        .decode_as::<SignedData>()
        .map_err(|error| format!("SignedData: {error}"))?;
    let certificates: Vec<Certificate> = signed
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|choice| match choice {
            CertificateChoices::Certificate(certificate) => Some(certificate.clone()),
            CertificateChoices::Other(_) => None,
        })
        .collect();
    let signer_info = signed.signer_infos.0.iter().next().ok_or("no signer")?;
    let signer = certificates
        .iter()
        .find(|certificate| match &signer_info.sid {
            SignerIdentifier::IssuerAndSerialNumber(id) => {
                certificate.tbs_certificate.issuer == id.issuer
                    && certificate.tbs_certificate.serial_number == id.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(_) => false,
        })
        .ok_or("the signer's certificate is not in the signature")?;
    let hash = Hash::of_digest_oid(&signer_info.digest_alg.oid)
        .ok_or_else(|| format!("digest {} not supported", signer_info.digest_alg.oid))?;
    let content_digest = hash.digest(content);
    let signed_bytes = match &signer_info.signed_attrs {
        Some(attributes) => {
            let digest = attributes
                .iter()
                .find(|attribute| attribute.oid == ID_MESSAGE_DIGEST)
                .and_then(|attribute| attribute.values.iter().next())
                .and_then(|value| value.decode_as::<der::asn1::OctetString>().ok())
                .ok_or("no messageDigest attribute")?;
            if digest.as_bytes() != content_digest.as_slice() {
                return Ok(SmimeCheck::Invalid(
                    "the message was changed after signing".into(),
                ));
            }
            // RFC 5652 section 5.4: the signature covers the attributes' DER as a SET OF.
            attributes
                .to_der()
                .map_err(|error| format!("attributes: {error}"))?
        }
        None => content.to_vec(),
    };
    let verified = verify_signature(
        signer,
        &signer_info.signature_algorithm.oid,
        hash,
        &signed_bytes,
        signer_info.signature.as_bytes(),
    )?;
    if !verified {
        return Ok(SmimeCheck::Invalid(
            "the signature does not verify under the signer's certificate".into(),
        ));
    }
    let signers = addresses_of(signer);
    if signers.is_empty() {
        return Ok(SmimeCheck::Invalid(
            "the signer's certificate names no address".into(),
        ));
    }
    let (chain_top, chain_complete) = follow_chain(signer, &certificates);
    Ok(SmimeCheck::Valid {
        signers,
        subject: signer.tbs_certificate.subject.to_string(),
        chain_top,
        chain_complete,
    })
}

/// Whether `signature` over `data` verifies under `certificate`'s key.
fn verify_signature(
    certificate: &Certificate,
    algorithm: &ObjectIdentifier,
    hash: Hash,
    data: &[u8],
    signature: &[u8],
) -> Result<bool, String> {
    let spki = certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|error| format!("public key: {error}"))?;
    match *algorithm {
        RSA_ENCRYPTION | SHA256_WITH_RSA | SHA384_WITH_RSA | SHA512_WITH_RSA => {
            use rsa::pkcs8::DecodePublicKey;
            let key = rsa::RsaPublicKey::from_public_key_der(&spki)
                .map_err(|error| format!("RSA key: {error}"))?;
            let hash = match *algorithm {
                SHA384_WITH_RSA => Hash::Sha384,
                SHA512_WITH_RSA => Hash::Sha512,
                SHA256_WITH_RSA => Hash::Sha256,
                _ => hash,
            };
            let scheme = match hash {
                Hash::Sha256 => rsa::Pkcs1v15Sign::new::<Sha256>(),
                Hash::Sha384 => rsa::Pkcs1v15Sign::new::<Sha384>(),
                Hash::Sha512 => rsa::Pkcs1v15Sign::new::<Sha512>(),
            };
            Ok(key.verify(scheme, &hash.digest(data), signature).is_ok())
        }
        ECDSA_WITH_SHA256 => {
            use p256::ecdsa::signature::Verifier;
            use p256::pkcs8::DecodePublicKey;
            let key = p256::ecdsa::VerifyingKey::from_public_key_der(&spki)
                .map_err(|error| format!("P-256 key: {error}"))?;
            let signature = p256::ecdsa::Signature::from_der(signature)
                .map_err(|error| format!("ECDSA signature: {error}"))?;
            Ok(key.verify(data, &signature).is_ok())
        }
        other => Err(format!("signature algorithm {other} not supported")),
    }
}

/// The addresses a certificate names: rfc822Name entries of its subjectAltName, and the
/// emailAddress attribute of its subject, lowercase.
fn addresses_of(certificate: &Certificate) -> Vec<String> {
    let mut addresses = Vec::new();
    for extension in certificate.tbs_certificate.extensions.iter().flatten() {
        if extension.extn_id != ID_SUBJECT_ALT_NAME {
            continue;
        }
        if let Ok(names) =
            x509_cert::ext::pkix::SubjectAltName::from_der(extension.extn_value.as_bytes())
        {
            for name in names.0 {
                if let x509_cert::ext::pkix::name::GeneralName::Rfc822Name(address) = name {
                    addresses.push(address.to_string().to_lowercase());
                }
            }
        }
    }
    for rdn in certificate.tbs_certificate.subject.0.iter() {
        for attribute in rdn.0.iter() {
            if attribute.oid == ID_EMAIL_ADDRESS {
                if let Ok(address) = attribute.value.decode_as::<der::asn1::Ia5StringRef<'_>>() {
                    addresses.push(address.to_string().to_lowercase());
                }
            }
        }
    }
    addresses.dedup();
    addresses
}

/// Up the chain through `certificates`, each link's signature checked: the subject where it
/// stops, and whether it stopped at a self-signed certificate.
fn follow_chain(signer: &Certificate, certificates: &[Certificate]) -> (String, bool) {
    let mut current = signer;
    for _ in 0..CHAIN_LENGTH_MAX {
        let subject = current.tbs_certificate.subject.to_string();
        let issued_by = |issuer: &Certificate| {
            issuer.tbs_certificate.subject == current.tbs_certificate.issuer
                && certificate_signed_by(current, issuer)
        };
        if current.tbs_certificate.issuer == current.tbs_certificate.subject {
            return (subject, issued_by(current));
        }
        match certificates.iter().find(|candidate| issued_by(candidate)) {
            Some(issuer) => current = issuer,
            None => return (subject, false),
        }
    }
    (current.tbs_certificate.subject.to_string(), false)
}

fn certificate_signed_by(certificate: &Certificate, issuer: &Certificate) -> bool {
    let Ok(tbs) = certificate.tbs_certificate.to_der() else {
        return false;
    };
    let Some(signature) = certificate.signature.as_bytes() else {
        return false;
    };
    verify_signature(
        issuer,
        &certificate.signature_algorithm.oid,
        Hash::Sha256,
        &tbs,
        signature,
    )
    .unwrap_or(false)
}
