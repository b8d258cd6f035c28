//! `tls::load_or_generate`: the generated self-signed pair and configured PEM files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use letterlock_server::tls::{self, CertificateSource};
use letterlock_server::{Config, TlsError};
use rustls::pki_types::CertificateDer;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn the_certificate_is_generated_once_and_reused() {
    let data = tempfile::tempdir().expect("tempdir");
    let config = Config::default_for(data.path());

    let first = tls::load_or_generate(&config, data.path()).expect("generate");
    assert_eq!(first.source, CertificateSource::GeneratedNow);
    assert_eq!(
        first.certificate_path,
        data.path().join("tls").join("cert.pem")
    );
    let key_path = data.path().join("tls").join("key.pem");
    assert_eq!(mode(&key_path), 0o600);
    assert_eq!(mode(&data.path().join("tls")), 0o700);
    assert_eq!(first.certificate_sha256_fingerprint.len(), 32 * 3 - 1);

    let second = tls::load_or_generate(&config, data.path()).expect("reuse");
    assert_eq!(second.source, CertificateSource::GeneratedEarlier);
    assert_eq!(
        second.certificate_sha256_fingerprint,
        first.certificate_sha256_fingerprint
    );
}

#[test]
fn a_generated_key_readable_by_others_is_restricted() {
    let data = tempfile::tempdir().expect("tempdir");
    let config = Config::default_for(data.path());
    tls::load_or_generate(&config, data.path()).expect("generate");
    let key_path = tls::generated_private_key_path(data.path());
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o644)).expect("chmod");
    tls::load_or_generate(&config, data.path()).expect("reuse");
    assert_eq!(mode(&key_path), 0o600);
}

#[test]
fn a_new_hostname_gets_a_new_certificate() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default_for(data.path());
    let local = tls::load_or_generate(&config, data.path()).expect("generate");

    config.hostname = "mail.example.org".try_into().expect("domain");
    let renamed = tls::load_or_generate(&config, data.path()).expect("regenerate");
    assert_eq!(renamed.source, CertificateSource::GeneratedNow);
    assert_ne!(
        renamed.certificate_sha256_fingerprint,
        local.certificate_sha256_fingerprint
    );
    let again = tls::load_or_generate(&config, data.path()).expect("reuse");
    assert_eq!(again.source, CertificateSource::GeneratedEarlier);
}

#[test]
fn a_certificate_without_its_key_is_replaced() {
    let data = tempfile::tempdir().expect("tempdir");
    let config = Config::default_for(data.path());
    tls::load_or_generate(&config, data.path()).expect("generate");
    fs::remove_file(tls::generated_private_key_path(data.path())).expect("remove key");
    let identity = tls::load_or_generate(&config, data.path()).expect("regenerate");
    assert_eq!(identity.source, CertificateSource::GeneratedNow);
}

fn write_pair(directory: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let generated =
        rcgen::generate_simple_self_signed(vec!["mail.example.org".to_string()]).expect("rcgen");
    let certificate_path = directory.join(format!("{name}-cert.pem"));
    let key_path = directory.join(format!("{name}-key.pem"));
    fs::write(&certificate_path, generated.cert.pem()).expect("write cert");
    fs::write(&key_path, generated.signing_key.serialize_pem()).expect("write key");
    let fingerprint = tls::sha256_fingerprint(&CertificateDer::from(generated.cert.der().to_vec()));
    (certificate_path, key_path, fingerprint)
}

#[test]
fn configured_files_are_loaded() {
    let data = tempfile::tempdir().expect("tempdir");
    let (certificate, key, fingerprint) = write_pair(data.path(), "acme");
    let mut config = Config::default_for(data.path());
    config.tls.certificate = Some(certificate.clone());
    config.tls.private_key = Some(key);

    let identity = tls::load_or_generate(&config, data.path()).expect("load");
    assert_eq!(identity.source, CertificateSource::Configured);
    assert_eq!(identity.certificate_path, certificate);
    assert_eq!(identity.certificate_sha256_fingerprint, fingerprint);
    assert!(!data.path().join("tls").exists(), "nothing generated");
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let data = tempfile::tempdir().expect("tempdir");
    let (certificate, _, _) = write_pair(data.path(), "one");
    let (_, other_key, _) = write_pair(data.path(), "two");
    let mut config = Config::default_for(data.path());
    config.tls.certificate = Some(certificate);
    config.tls.private_key = Some(other_key);

    let error = tls::load_or_generate(&config, data.path()).expect_err("mismatch");
    assert!(matches!(error, TlsError::Rejected { .. }), "{error}");
}

#[test]
fn a_missing_or_empty_file_is_named() {
    let data = tempfile::tempdir().expect("tempdir");
    let (certificate, _, _) = write_pair(data.path(), "one");
    let mut config = Config::default_for(data.path());
    config.tls.certificate = Some(certificate.clone());
    config.tls.private_key = Some(data.path().join("missing.pem"));
    let error = tls::load_or_generate(&config, data.path()).expect_err("missing");
    assert!(error.to_string().contains("missing.pem"), "{error}");

    let empty = data.path().join("empty.pem");
    fs::write(&empty, "").expect("write");
    config.tls.private_key = Some(empty);
    let error = tls::load_or_generate(&config, data.path()).expect_err("empty");
    assert!(matches!(error, TlsError::NoPrivateKey { .. }), "{error}");

    // A PEM block whose contents are not base64 is named as broken, not as missing.
    let broken = data.path().join("broken.pem");
    fs::write(
        &broken,
        "-----BEGIN PRIVATE KEY-----\n!!not base64!!\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    config.tls.private_key = Some(broken);
    let error = tls::load_or_generate(&config, data.path()).expect_err("broken");
    assert!(matches!(error, TlsError::Pem { .. }), "{error}");
    assert!(error.to_string().contains("broken.pem"), "{error}");
}
