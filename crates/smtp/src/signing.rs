//! Signing submitted mail (`DESIGN.md`, "End-to-end encryption and keys": "sign outbound mail on
//! request"): PGP/MIME `multipart/signed` (RFC 3156 section 5) with a detached signature by the
//! account's current key, which only an unlocked session (submission after AUTH) holds.
//!
//! The signed part is the message's own MIME entity: its `Content-*` fields and its body; the
//! other header fields stay outside. The signature covers the part exactly as it travels, CRLF
//! line ends included (RFC 3156 section 5: canonical form), and nothing after it but the
//! delimiter's own CRLF. An encrypted copy is made from the signed message, so encrypted mail
//! is signed inside its encryption (sign, then encrypt).

use letterlock_crypto::openpgp::UserKey;
use letterlock_crypto::CryptoError;
use rand::RngCore;

/// `message` as a PGP/MIME signed message, signed by `key`.
pub fn sign_message(message: &[u8], key: &UserKey) -> Result<Vec<u8>, CryptoError> {
    let (outer, content_fields, body) = split_entity(message);
    let mut part = if content_fields.is_empty() {
        // RFC 2045 section 5.2: without a Content-Type the body is US-ASCII plain text.
        b"Content-Type: text/plain; charset=us-ascii\r\n".to_vec()
    } else {
        content_fields
    };
    part.extend_from_slice(b"\r\n");
    part.extend_from_slice(&canonical_line_ends(body));
    let signature = key.sign_detached(&part)?;
    let boundary = loop {
        let candidate = format!("letterlock_signed_{:016x}", rand::thread_rng().next_u64());
        if crate::signatures::find(&part, candidate.as_bytes(), 0).is_none() {
            break candidate;
        }
    };
    let mut out = outer;
    out.extend_from_slice(
        format!(
            "MIME-Version: 1.0\r\n\
Content-Type: multipart/signed; micalg=pgp-sha256;\r\n protocol=\"application/pgp-signature\"; boundary=\"{boundary}\"\r\n\
\r\n\
This is an OpenPGP/MIME signed message (RFC 3156).\r\n\
--{boundary}\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(&part);
    out.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\n\
Content-Type: application/pgp-signature; name=\"signature.asc\"\r\n\
Content-Description: OpenPGP digital signature\r\n\
Content-Disposition: attachment; filename=\"signature.asc\"\r\n\
\r\n"
        )
        .as_bytes(),
    );
    crate::encryption::close_with_armour(&mut out, &signature, &boundary);
    Ok(out)
}

/// The header fields other than `Content-*` and `MIME-Version`, the `Content-*` fields, and
/// the body. Continuation lines stay with their field; `MIME-Version` is dropped (the signed
/// message writes its own).
fn split_entity(message: &[u8]) -> (Vec<u8>, Vec<u8>, &[u8]) {
    #[derive(PartialEq)]
    enum Field {
        Outer,
        Content,
        Dropped,
    }
    let mut outer = Vec::new();
    let mut content = Vec::new();
    let mut field = Field::Outer;
    let mut position = 0;
    for line in message.split_inclusive(|&byte| byte == b'\n') {
        position += line.len();
        if line == b"\r\n" || line == b"\n" {
            return (outer, content, &message[position..]);
        }
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            let name = line
                .split(|&byte| byte == b':')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            field = if name == b"mime-version" {
                Field::Dropped
            } else if name.starts_with(b"content-") {
                Field::Content
            } else {
                Field::Outer
            };
        }
        match field {
            Field::Outer => outer.extend_from_slice(line),
            Field::Content => content.extend_from_slice(line),
            Field::Dropped => {}
        }
    }
    // No blank line: all header, no body.
    (outer, content, &message[message.len()..])
}

/// Bare LFs as CRLF: the signature is over the canonical form.
fn canonical_line_ends(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 40);
    let mut previous = 0u8;
    for &byte in body {
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        previous = byte;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use letterlock_crypto::openpgp::{verify_detached, SignatureCheck};

    #[test]
    fn the_mime_entity_is_signed_and_verifies_and_other_fields_stay_outside() {
        let key = UserKey::generate("alice@example.org").expect("key");
        let message = b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: signed\r\n\
MIME-Version: 1.0\r\nContent-Type: text/plain;\r\n charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\
\r\nHello Bob.\r\n";
        let signed = sign_message(message, &key).expect("sign");
        let text = String::from_utf8_lossy(&signed).into_owned();
        let head = text.split("\r\n\r\n").next().expect("head");
        assert!(
            head.contains("Subject: signed") && head.contains("multipart/signed"),
            "{head}"
        );
        assert_eq!(head.matches("MIME-Version").count(), 1, "{head}");
        let (content, signature) = crate::signatures::pgp_mime_parts(&signed).expect("parts");
        assert_eq!(
            content,
            b"Content-Type: text/plain;\r\n charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHello Bob.\r\n"
        );
        assert!(matches!(
            verify_detached(&signature, &content, &[key.public_key()]),
            SignatureCheck::Valid { .. }
        ));
        let mut tampered = content.clone();
        let last = tampered.len() - 3;
        tampered[last] ^= 1;
        assert!(!matches!(
            verify_detached(&signature, &tampered, &[key.public_key()]),
            SignatureCheck::Valid { .. }
        ));
    }

    #[test]
    fn a_message_without_content_fields_is_signed_as_plain_text() {
        let key = UserKey::generate("alice@example.org").expect("key");
        let signed = sign_message(b"Subject: x\r\n\r\nbare\nlines\n", &key).expect("sign");
        let (content, _) = crate::signatures::pgp_mime_parts(&signed).expect("parts");
        assert_eq!(
            content,
            b"Content-Type: text/plain; charset=us-ascii\r\n\r\nbare\r\nlines\r\n"
        );
    }
}
