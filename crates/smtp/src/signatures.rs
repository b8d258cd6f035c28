//! OpenPGP on inbound mail (`DESIGN.md`, "End-to-end encryption and keys"): the sender's key
//! is learnt from an `Autocrypt:` header (Level 1; the session learns it only from mail whose
//! From: domain is authenticated, see `auth::Verdict::from_authenticated`), and a PGP/MIME
//! signature (RFC 3156, `multipart/signed; protocol="application/pgp-signature"`) or an inline
//! one is checked against the keys known for the From: address: a local account's own key, or
//! one learnt earlier; else the key the From: domain publishes by WKD (looked up by the
//! session only when no known key signed, see [`Checked::unknown_key`]); and, for each
//! recipient's own copy, a key that recipient trusts for the sender. The result, naming the
//! key's source, goes into `X-Letterlock-Signature`, which a sender cannot forge: copies from
//! outside are removed.

use letterlock_crypto::openpgp::{verify_cleartext, verify_detached, PublicKey, SignatureCheck};
use letterlock_crypto::smime::SmimeCheck;
use letterlock_mailstore::MailStore;
use letterlock_types::EmailAddress;

pub const SIGNATURE_HEADER: &str = "X-Letterlock-Signature";
/// A key in an Autocrypt header larger than this is ignored (a v4 Ed25519 key is under 1 KiB;
/// RSA-4096 with a few subkeys stays well under).
pub const AUTOCRYPT_KEY_SIZE_MAX_BYTES: usize = 64 * 1024;

/// The header section, unfolded: (name, value) pairs.
fn header_fields(message: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(message);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    fields
}

/// The `Autocrypt:` key of `from`, if the header names that address (Autocrypt Level 1,
/// section 2.3: a header for another address is ignored).
pub fn autocrypt_key(message: &[u8], from: &EmailAddress) -> Option<Vec<u8>> {
    let fields = header_fields(message);
    let headers: Vec<&String> = fields
        .iter()
        .filter(|(name, _)| name == "autocrypt")
        .map(|(_, value)| value)
        .collect();
    // More than one Autocrypt header: the spec says to ignore them all.
    let [value] = headers.as_slice() else {
        return None;
    };
    let mut address = None;
    let mut keydata = None;
    for attribute in value.split(';') {
        let (name, attribute_value) = attribute.trim().split_once('=')?;
        match name.trim() {
            "addr" => address = Some(attribute_value.trim().to_string()),
            "keydata" => keydata = Some(attribute_value.split_whitespace().collect::<String>()),
            // Unknown critical attributes (no leading underscore) invalidate the header.
            other if !other.starts_with('_') && other != "prefer-encrypt" => return None,
            _ => {}
        }
    }
    if !address?.eq_ignore_ascii_case(&from.to_string()) {
        return None;
    }
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(keydata?)
        .ok()?;
    (key.len() <= AUTOCRYPT_KEY_SIZE_MAX_BYTES && PublicKey::from_bytes(&key).is_ok())
        .then_some(key)
}

/// The `protocol` of a PGP/MIME signed message (RFC 3156 section 5).
const PGP_SIGNATURE_PROTOCOL: &str = "application/pgp-signature";

/// The `protocol` of an S/MIME signed message (RFC 8551 section 3.5.3), and its older name.
fn is_smime_protocol(protocol: &str) -> bool {
    protocol == "application/pkcs7-signature" || protocol == "application/x-pkcs7-signature"
}

/// The signed part and the signature of a PGP/MIME signed message, if it is one.
pub fn pgp_mime_parts(message: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (protocol, signed, signature) = multipart_signed(message)?;
    (protocol == PGP_SIGNATURE_PROTOCOL).then_some((signed, signature))
}

/// A base64 part body (line breaks and all) decoded.
fn base64_body(body: Vec<u8>) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let text: Vec<u8> = body
        .into_iter()
        .filter(|byte| !byte.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// A `multipart/signed` message (RFC 1847): its protocol (lowercase), the first part exactly
/// as it travelled (CRLF line ends), and the body of the signature part.
fn multipart_signed(message: &[u8]) -> Option<(String, Vec<u8>, Vec<u8>)> {
    let fields = header_fields(message);
    let content_type = fields
        .iter()
        .find(|(name, _)| name == "content-type")
        .map(|(_, value)| value.clone())?;
    if !content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/signed")
    {
        return None;
    }
    let protocol = parameter(&content_type, "protocol")?.to_ascii_lowercase();
    let boundary = parameter(&content_type, "boundary")?;
    let body_start = header_end(message)?;
    let body = &message[body_start..];
    let delimiter = format!("--{boundary}");
    let first = find(body, delimiter.as_bytes(), 0)?;
    let content_start = line_end(body, first)?;
    // The CRLF before a delimiter belongs to the delimiter (RFC 2046 section 5.1.1).
    let second = find(body, format!("\r\n{delimiter}").as_bytes(), content_start)?;
    let signed = canonical_crlf(&body[content_start..second]);
    let signature_start = line_end(body, second + 2)?;
    let closing = find(body, format!("\r\n{delimiter}").as_bytes(), signature_start)?;
    let signature_part = &body[signature_start..closing];
    let signature_body = header_end(signature_part).map(|end| &signature_part[end..])?;
    Some((protocol, signed, signature_body.to_vec()))
}

/// A cleartext-signed block (RFC 4880 section 7) in the body of a message that is not
/// multipart, and whether the body has text outside it (which the signature does not cover).
pub fn inline_signed_block(message: &[u8]) -> Option<(String, bool)> {
    const BEGIN: &[u8] = b"-----BEGIN PGP SIGNED MESSAGE-----";
    const END: &[u8] = b"-----END PGP SIGNATURE-----";
    let fields = header_fields(message);
    let multipart = fields.iter().any(|(name, value)| {
        name == "content-type"
            && value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/")
    });
    if multipart {
        return None;
    }
    let body = &message[header_end(message)?..];
    let start = find(body, BEGIN, 0)?;
    // The armour must start a line.
    if start > 0 && body[start - 1] != b'\n' {
        return None;
    }
    let stop = find(body, END, start)? + END.len();
    let block = String::from_utf8(body[start..stop].to_vec()).ok()?;
    let outside = body[..start]
        .iter()
        .chain(&body[stop..])
        .any(|byte| !byte.is_ascii_whitespace());
    Some((block, outside))
}

/// What [`check`] found on a signed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The `X-Letterlock-Signature` value.
    pub header: String,
    /// An OpenPGP signature by a key none of those given made: a key found elsewhere (WKD)
    /// may still verify it.
    pub unknown_key: bool,
}

/// Where a key a signature is checked against came from, as the result names it.
const OWN_ACCOUNT: &str = "local-account";
const AUTOCRYPT: &str = "autocrypt";
pub const WKD: &str = "wkd";
/// A key the recipient trusts for the sender (their own contact key).
pub const TRUSTED_CONTACT: &str = "trusted-contact";

/// The signature result of a message, or `None` when it is not signed. `extra` is one more key
/// for the From: address and its source ([`WKD`], [`TRUSTED_CONTACT`]), tried first.
pub fn check(
    message: &[u8],
    from: Option<&EmailAddress>,
    store: &MailStore,
    extra: Option<(&[u8], &'static str)>,
) -> Option<Checked> {
    // One parse of a multipart/signed message decides between S/MIME and PGP/MIME.
    let (signed, inline) = match multipart_signed(message) {
        Some((protocol, signed, signature)) if is_smime_protocol(&protocol) => {
            let signature = base64_body(signature)?;
            return Some(Checked {
                header: smime_result(&signature, &signed, from),
                unknown_key: false,
            });
        }
        Some((protocol, signed, signature)) if protocol == PGP_SIGNATURE_PROTOCOL => {
            (Some((signed, signature)), None)
        }
        _ => (None, Some(inline_signed_block(message)?)),
    };
    let mut keys = Vec::new();
    let mut sources = Vec::new();
    if let Some(from) = from {
        // The extra key (a trusted one names its source before any other), a local account's
        // own key, then the key learnt for the address.
        let (extra, extra_source) = extra.map_or((None, ""), |(key, source)| (Some(key), source));
        for (key, source) in [
            (extra.map(<[u8]>::to_vec), extra_source),
            (store.public_key(from).ok(), OWN_ACCOUNT),
            (store.peer_key(from).ok().flatten(), AUTOCRYPT),
        ] {
            if let Some(key) = key.and_then(|key| PublicKey::from_bytes(&key).ok()) {
                sources.push((key.fingerprint(), source));
                keys.push(key);
            }
        }
    }
    let source_of = |fingerprint: &str| {
        sources
            .iter()
            .find(|(known, _)| known == fingerprint)
            .map_or("", |(_, source)| source)
    };
    let signer = from.map(ToString::to_string).unwrap_or_default();
    let (result, partial) = match (signed, inline) {
        (Some((signed, signature)), _) => (verify_detached(&signature, &signed, &keys), false),
        (None, Some((block, outside))) => (verify_cleartext(&block, &keys).0, outside),
        (None, None) => return None,
    };
    // Inline signatures cover only their block: text around it is not vouched for.
    let partial = if partial {
        "; partial (text outside the signed block is not covered)"
    } else {
        ""
    };
    let unknown_key = matches!(result, SignatureCheck::UnknownKey { .. });
    let header = match result {
        SignatureCheck::Valid { fingerprint } => {
            let source = source_of(&fingerprint);
            format!("valid; signer={signer}; key={fingerprint}; source={source}{partial}")
        }
        SignatureCheck::Invalid { fingerprint } => {
            format!("invalid (the message was changed after signing); key={fingerprint}")
        }
        SignatureCheck::UnknownKey { issuer } => match issuer {
            Some(issuer) => format!("unknown-key (no key known for the sender); issuer={issuer}"),
            None => "unknown-key (no key known for the sender)".to_string(),
        },
        SignatureCheck::Malformed => "invalid (unreadable signature)".to_string(),
    };
    Some(Checked {
        header,
        unknown_key,
    })
}

/// The header value for an S/MIME signature: valid only when the certificate names the From:
/// address; the chain is described, not trusted.
fn smime_result(signature: &[u8], signed: &[u8], from: Option<&EmailAddress>) -> String {
    match letterlock_crypto::smime::verify_detached(signature, signed) {
        SmimeCheck::Valid {
            signers,
            subject,
            chain_top,
            chain_complete,
        } => {
            let sender = from.map(|from| from.to_string().to_lowercase());
            match sender {
                Some(sender) if signers.contains(&sender) => {
                    let chain = if chain_complete { "root" } else { "incomplete" };
                    one_line(&format!(
                        "valid; signer={sender}; smime; certificate=\"{subject}\"; chain={chain} \"{chain_top}\" (not checked against trusted roots)"
                    ))
                }
                _ => one_line(&format!(
                    "invalid (the certificate names {}, not the sender); smime",
                    signers.join(", ")
                )),
            }
        }
        SmimeCheck::Invalid(reason) => one_line(&format!("invalid ({reason}); smime")),
        SmimeCheck::Malformed(reason) => {
            one_line(&format!("invalid (unreadable signature: {reason}); smime"))
        }
    }
}

/// Header-safe: no control characters, at most 500 characters.
fn one_line(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(500).collect()
}

fn parameter(value: &str, name: &str) -> Option<String> {
    for part in value.split(';').skip(1) {
        let (key, raw) = part.trim().split_once('=')?;
        if key.trim().eq_ignore_ascii_case(name) {
            return Some(raw.trim().trim_matches('"').to_string());
        }
    }
    None
}

/// Just after the blank line ending a header section.
fn header_end(bytes: &[u8]) -> Option<usize> {
    find(bytes, b"\r\n\r\n", 0)
        .map(|at| at + 4)
        .or_else(|| find(bytes, b"\n\n", 0).map(|at| at + 2))
}

fn line_end(bytes: &[u8], from: usize) -> Option<usize> {
    find(bytes, b"\n", from).map(|at| at + 1)
}

/// Where `needle` first occurs in `haystack` at or after `from`.
pub(crate) fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| at + from)
}

/// RFC 3156 section 5: signed data is checked in canonical form, CRLF line endings.
fn canonical_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for (index, &byte) in bytes.iter().enumerate() {
        if byte == b'\n' && (index == 0 || bytes[index - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(byte);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgp_mime_parts_are_split_at_the_right_bytes() {
        let message = b"From: a@b.example\r\nContent-Type: multipart/signed; micalg=pgp-sha256;\r\n protocol=\"application/pgp-signature\"; boundary=\"xyz\"\r\n\r\nThis is OpenPGP/MIME.\r\n--xyz\r\nContent-Type: text/plain\r\n\r\nhello\r\n--xyz\r\nContent-Type: application/pgp-signature\r\n\r\n-----BEGIN PGP SIGNATURE-----\r\nabc\r\n-----END PGP SIGNATURE-----\r\n--xyz--\r\n";
        let (signed, signature) = pgp_mime_parts(message).expect("signed");
        assert_eq!(signed, b"Content-Type: text/plain\r\n\r\nhello");
        assert!(signature.starts_with(b"-----BEGIN PGP SIGNATURE-----"));
        assert!(pgp_mime_parts(b"Subject: plain\r\n\r\nbody\r\n").is_none());
    }
}
