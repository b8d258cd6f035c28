//! Signing submitted mail (`DESIGN.md`, "End-to-end encryption and keys": "sign outbound mail on
//! request"): PGP/MIME `multipart/signed` (RFC 3156 section 5) with a detached signature by the
//! account's current key, which only an unlocked session (submission after AUTH) holds.
//!
//! The signed part is the message's own MIME entity: its `Content-*` fields and its body; the
//! other header fields stay outside. The signature covers the part exactly as it travels, CRLF
//! line ends included (RFC 3156 section 5: canonical form), and nothing after it but the
//! delimiter's own CRLF. An encrypted copy is made from the signed message, so encrypted mail
//! is signed inside its encryption (sign, then encrypt).
//!
//! What is signed is made 7-bit first (RFC 3156 section 3, RFC 1847 section 2.1): a relay
//! without 8BITMIME may re-encode 8-bit content, which would break the signature. So each leaf
//! part whose body is 8-bit (or has a line over 998 octets) and not already quoted-printable or
//! base64 is re-encoded before signing: text as quoted-printable, anything else as base64
//! (mail-builder's encoders; mail-parser finds the parts). A `message/rfc822` part is left as
//! it is, since its own encoding may only be 7bit, 8bit or binary.

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
    let part = match seven_bit(&part) {
        Some(encoded) => encoded,
        None => part,
    };
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

/// RFC 5322 section 2.1.1: no line may be longer than this, CRLF excluded.
const LINE_OCTETS_MAX: usize = 998;

/// Whether `body` cannot travel as 7-bit text as it is.
fn needs_encoding(body: &[u8]) -> bool {
    body.iter().any(|&byte| byte >= 0x80 || byte == 0)
        || body
            .split(|&byte| byte == b'\n')
            .any(|line| line.len() > LINE_OCTETS_MAX + 1)
}

/// `entity` (a MIME entity with CRLF line ends) with every 8-bit leaf part re-encoded, or
/// `None` when it is 7-bit already (or cannot be parsed, and is signed as it is).
fn seven_bit(entity: &[u8]) -> Option<Vec<u8>> {
    use mail_parser::{Encoding, MessageParser, PartType};
    if !needs_encoding(entity) {
        return None;
    }
    let message = MessageParser::new().parse(entity)?;
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    for part in &message.parts {
        let text = match &part.body {
            PartType::Text(_) | PartType::Html(_) => true,
            PartType::Binary(_) | PartType::InlineBinary(_) => false,
            PartType::Message(_) | PartType::Multipart(_) => continue,
        };
        if part.encoding != Encoding::None {
            continue;
        }
        let (start, body_start, end) = (
            part.offset_header as usize,
            part.offset_body as usize,
            part.offset_end as usize,
        );
        let (Some(header), Some(body)) =
            (entity.get(start..body_start), entity.get(body_start..end))
        else {
            continue;
        };
        if !needs_encoding(body) {
            continue;
        }
        let (encoding, mut encoded) = if text {
            (
                "quoted-printable",
                mail_builder::encoders::quoted_printable::QuotedPrintableEncoder::new()
                    .preserve_line_breaks()
                    .encode(body)
                    .ok()?,
            )
        } else {
            (
                "base64",
                mail_builder::encoders::base64::Base64Encoder::new()
                    .wrap_lines()
                    .encode(body)
                    .ok()?,
            )
        };
        // The part ends where the line break before the next boundary begins (mail-parser's
        // offsets; RFC 2046 section 5.1.1): base64's own last line break is not wanted there.
        if !text && encoded.ends_with(b"\r\n") {
            encoded.truncate(encoded.len() - 2);
        }
        let mut replacement = with_transfer_encoding(header, encoding);
        replacement.extend_from_slice(&encoded);
        edits.push((start, end, replacement));
    }
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(|(start, _, _)| *start);
    let mut out = Vec::with_capacity(entity.len() + entity.len() / 2);
    let mut at = 0;
    for (start, end, replacement) in edits {
        out.extend_from_slice(entity.get(at..start)?);
        out.extend_from_slice(&replacement);
        at = end;
    }
    out.extend_from_slice(entity.get(at..)?);
    Some(out)
}

/// A part's header section (ending with its blank line) with its `Content-Transfer-Encoding`
/// field replaced by one naming `encoding`.
fn with_transfer_encoding(header: &[u8], encoding: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + 48);
    let mut dropping = false;
    for line in header.split_inclusive(|&byte| byte == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            dropping = line
                .to_ascii_lowercase()
                .starts_with(b"content-transfer-encoding:");
        }
        if !dropping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(format!("Content-Transfer-Encoding: {encoding}\r\n\r\n").as_bytes());
    out
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
    fn eight_bit_parts_are_signed_seven_bit_and_decode_to_the_same_content() {
        let key = UserKey::generate("alice@example.org").expect("key");
        let long = "x".repeat(1200);
        let message = format!(
            "From: alice@example.org\r\nSubject: Grüße\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
Grüße aus Köln = 100 %\r\n{long}\r\n\r\n--b\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\r\nalready plain\r\n--b\r\n\
Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\u{1}\u{ff}bin\r\n--b--\r\n"
        );
        let signed = sign_message(message.as_bytes(), &key).expect("sign");
        let (content, signature) = crate::signatures::pgp_mime_parts(&signed).expect("parts");
        assert!(
            !needs_encoding(&content),
            "{}",
            String::from_utf8_lossy(&content)
        );
        assert!(matches!(
            verify_detached(&signature, &content, &[key.public_key()]),
            SignatureCheck::Valid { .. }
        ));
        let text = String::from_utf8_lossy(&content).into_owned();
        assert!(
            text.contains("Content-Transfer-Encoding: quoted-printable"),
            "{text}"
        );
        assert!(!text.contains("Content-Transfer-Encoding: 8bit"), "{text}");
        assert!(
            text.contains("Content-Transfer-Encoding: base64\r\n\r\nAcO/Ymlu\r\n--b--\r\n"),
            "{text}"
        );
        assert!(
            text.contains("xxx\r\n\r\n--b\r\n"),
            "the text's own last line break stays: {text}"
        );
        assert!(
            text.contains("\r\n\r\nalready plain\r\n--b\r\n"),
            "untouched: {text}"
        );
        // Decoded, every part is what was written.
        let parsed = mail_parser::MessageParser::new()
            .parse(&content[..])
            .expect("parse");
        let first = parsed.body_text(0).expect("text");
        assert_eq!(
            first.trim_end(),
            format!("Grüße aus Köln = 100 %\r\n{long}").trim_end()
        );
        assert_eq!(
            parsed.body_text(1).expect("text").trim_end(),
            "already plain"
        );
        assert_eq!(
            parsed.attachment(0).expect("binary").contents(),
            "\u{1}\u{ff}bin".as_bytes()
        );
    }

    #[test]
    fn a_single_eight_bit_part_becomes_quoted_printable() {
        let key = UserKey::generate("alice@example.org").expect("key");
        let message = "Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\r\nÄpfel\r\n";
        let signed = sign_message(message.as_bytes(), &key).expect("sign");
        let (content, _) = crate::signatures::pgp_mime_parts(&signed).expect("parts");
        assert_eq!(
            String::from_utf8_lossy(&content),
            "Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\n=C3=84pfel\r\n"
        );
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
