//! DANE for SMTP (RFC 7672): when the TLSA records of `_25._tcp.<mx host>` come from a
//! DNSSEC-validated answer, TLS is mandatory for that host and its certificate must match one:
//!
//! - DANE-EE (usage 3): the server's own certificate or key matches; names and dates are not
//!   checked (section 3.1.1).
//! - DANE-TA (usage 2): a certificate of the chain the server sent matches, and the server's
//!   certificate verifies up to it and names the host (section 3.1.2).
//! - PKIX-TA and PKIX-EE (usages 0 and 1) are unusable in SMTP (section 3.1.3): a set with
//!   only those (or unknown selectors and matching types) still makes TLS mandatory, without
//!   authentication (section 2.2).

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::RootCertStore;
use sha2::{Digest, Sha256, Sha512};

use crate::resolver::TlsaRecord;

pub const USAGE_DANE_TA: u8 = 2;
pub const USAGE_DANE_EE: u8 = 3;

/// The records of a set that SMTP can use (section 3.1).
pub fn usable(records: &[TlsaRecord]) -> Vec<TlsaRecord> {
    records
        .iter()
        .filter(|record| {
            matches!(record.usage, USAGE_DANE_TA | USAGE_DANE_EE)
                && record.selector <= 1
                && record.matching <= 2
        })
        .cloned()
        .collect()
}

/// Whether `certificate` matches `record`'s selector and matching type.
pub fn matches(record: &TlsaRecord, certificate: &CertificateDer<'_>) -> bool {
    let selected = match record.selector {
        0 => certificate.as_ref().to_vec(),
        1 => match subject_public_key_info(certificate) {
            Some(spki) => spki,
            None => return false,
        },
        _ => return false,
    };
    match record.matching {
        0 => selected == record.data,
        1 => Sha256::digest(&selected).as_slice() == record.data.as_slice(),
        2 => Sha512::digest(&selected).as_slice() == record.data.as_slice(),
        _ => false,
    }
}

/// The DER SubjectPublicKeyInfo of a certificate. webpki hands out its contents without the
/// outer SEQUENCE header, which is put back here.
pub fn subject_public_key_info(certificate: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let anchor = webpki::anchor_from_trusted_cert(certificate).ok()?;
    let contents = anchor.subject_public_key_info.as_ref();
    let mut der = vec![0x30];
    let length = contents.len();
    if length < 0x80 {
        der.push(length as u8);
    } else {
        let bytes: Vec<u8> = length
            .to_be_bytes()
            .into_iter()
            .skip_while(|byte| *byte == 0)
            .collect();
        der.push(0x80 | bytes.len() as u8);
        der.extend_from_slice(&bytes);
    }
    der.extend_from_slice(contents);
    Some(der)
}

/// Whether the server's certificate (and the chain it sent) satisfies `records`, the usable
/// ones of a host's set (see [`usable`]); with none, any certificate does (TLS mandatory,
/// unauthenticated). Names and dates count only for DANE-TA.
pub fn verify(
    records: &[TlsaRecord],
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    now: UnixTime,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<(), rustls::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let verified = records.iter().any(|record| match record.usage {
        USAGE_DANE_EE => matches(record, end_entity),
        USAGE_DANE_TA => trust_anchor_verifies(
            record,
            end_entity,
            intermediates,
            server_name,
            now,
            provider,
        ),
        _ => false,
    });
    if verified {
        Ok(())
    } else {
        Err(rustls::Error::General(
            "DANE: the certificate matches none of the host's TLSA records".into(),
        ))
    }
}

/// DANE-TA: a certificate of the chain matches `record`, and the server's certificate verifies
/// up to it and names the host.
fn trust_anchor_verifies(
    record: &TlsaRecord,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    now: UnixTime,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> bool {
    intermediates
        .iter()
        .filter(|certificate| matches(record, certificate))
        .any(|anchor| {
            let mut roots = RootCertStore::empty();
            if roots.add(anchor.clone().into_owned()).is_err() {
                return false;
            }
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
                .build()
                .is_ok_and(|verifier| {
                    verifier
                        .verify_server_cert(end_entity, intermediates, server_name, &[], now)
                        .is_ok()
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_selector_matches_the_key_rcgen_made() {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["mx.example.net".into()]).expect("params");
        let certificate = params.self_signed(&key).expect("cert");
        let der = certificate.der().clone();
        let spki = subject_public_key_info(&der).expect("spki");
        assert_eq!(spki, rcgen::PublicKeyData::subject_public_key_info(&key));
        let record = |selector, matching, data: Vec<u8>| TlsaRecord {
            usage: USAGE_DANE_EE,
            selector,
            matching,
            data,
        };
        assert!(matches(&record(1, 1, Sha256::digest(&spki).to_vec()), &der));
        assert!(matches(&record(1, 2, Sha512::digest(&spki).to_vec()), &der));
        assert!(matches(&record(0, 0, der.as_ref().to_vec()), &der));
        assert!(matches(
            &record(0, 1, Sha256::digest(der.as_ref()).to_vec()),
            &der
        ));
        assert!(!matches(&record(1, 1, vec![0; 32]), &der));
        assert!(!matches(
            &record(2, 1, Sha256::digest(&spki).to_vec()),
            &der
        ));
        let pkix = TlsaRecord {
            usage: 1,
            ..record(1, 1, vec![])
        };
        assert!(usable(&[pkix]).is_empty());
    }
}
