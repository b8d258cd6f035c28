//! Outbound end-to-end encryption (`DESIGN.md`, "End-to-end encryption and keys"): PGP/MIME
//! (RFC 3156 section 4) with protected headers (RFC 9788, header protection for S/MIME and
//! PGP/MIME). The whole original message, every header field and the body, is the encrypted
//! payload; outside stay only the fields needed to route, thread and answer it, and the
//! subject reads `...`, so a relay or a recipient's provider learns neither subject nor text.

use letterlock_crypto::openpgp::{encrypt_armored_to, PublicKey};
use letterlock_crypto::CryptoError;

use crate::filter::header_fields_named;
use crate::signatures::find;

/// The subject a message shows outside its encryption (RFC 9788 section 4.1: "...").
pub const OUTER_SUBJECT: &str = "...";

/// Fields copied to the outside: trace, addressing, threading and the sender's key. The
/// subject and every other field exist only inside.
const OUTER_FIELDS: [&str; 12] = [
    "Received",
    "Return-Path",
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Autocrypt",
];

/// The MIME boundary. Its `_` and `.` never occur in ASCII armour (base64 and the armour's
/// own dashed lines), so it cannot collide with the encrypted part.
const BOUNDARY: &str = "letterlock_pgp_mime.encrypted";

/// `message` encrypted to every key in `keys` as a PGP/MIME message.
pub fn encrypt_message(message: &[u8], keys: &[PublicKey]) -> Result<Vec<u8>, CryptoError> {
    let armored = encrypt_armored_to(keys, message)?;
    let (outer, _) = header_fields_named(message, &OUTER_FIELDS);
    let mut out = outer;
    out.extend_from_slice(
        format!(
            "Subject: {OUTER_SUBJECT}\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n boundary=\"{BOUNDARY}\"\r\n\
\r\n\
This is an OpenPGP/MIME encrypted message (RFC 3156).\r\n\
--{BOUNDARY}\r\n\
Content-Type: application/pgp-encrypted\r\n\
Content-Description: PGP/MIME version identification\r\n\
\r\n\
Version: 1\r\n\
\r\n\
--{BOUNDARY}\r\n\
Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
Content-Description: OpenPGP encrypted message\r\n\
Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\
\r\n"
        )
        .as_bytes(),
    );
    close_with_armour(&mut out, &armored, BOUNDARY);
    Ok(out)
}

/// The last part of a PGP/MIME message: `armoured` with CRLF line ends, then the closing
/// delimiter of `boundary`.
pub(crate) fn close_with_armour(out: &mut Vec<u8>, armoured: &str, boundary: &str) {
    for line in armoured.lines() {
        out.extend_from_slice(line.trim_end_matches('\r').as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
}

/// The armoured OpenPGP message inside a PGP/MIME message made by [`encrypt_message`].
pub fn armored_part(message: &[u8]) -> Option<&[u8]> {
    let end = b"-----END PGP MESSAGE-----";
    let start = find(message, b"-----BEGIN PGP MESSAGE-----", 0)?;
    let stop = find(message, end, start)? + end.len();
    Some(&message[start..stop])
}

#[cfg(test)]
mod tests {
    use super::*;
    use letterlock_crypto::openpgp::{dearmor, UserKey};

    #[test]
    fn only_routing_fields_stay_outside_and_each_recipient_reads_the_whole_message() {
        let alice = UserKey::generate("alice@example.org").expect("key");
        let bob = UserKey::generate("bob@example.net").expect("key");
        let message = b"Received: by mx.example.org\r\nFrom: Alice <alice@example.org>\r\nTo: bob@example.net\r\n\
Subject: the merger\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\
X-Mailer: test\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe figures are 42.\r\n";
        let encrypted =
            encrypt_message(message, &[bob.public_key(), alice.public_key()]).expect("encrypt");
        let text = String::from_utf8(encrypted.clone()).expect("ascii");
        let head = text.split("\r\n\r\n").next().expect("head");
        for kept in [
            "Received: by mx.example.org",
            "From: Alice <alice@example.org>",
            "To: bob@example.net",
            "Message-ID: <1@example.org>",
            "Subject: ...",
        ] {
            assert!(head.contains(kept), "{kept} missing: {head}");
        }
        // Spaces and colons never occur in the armour's base64, so these probes cannot match it by chance.
        for hidden in ["the merger", "are 42.", "X-Mailer:"] {
            assert!(!text.contains(hidden), "{hidden} leaked: {text}");
        }
        assert!(text.ends_with("--letterlock_pgp_mime.encrypted--\r\n"));

        let binary = dearmor(armored_part(&encrypted).expect("armour")).expect("dearmour");
        for key in [&alice, &bob] {
            assert_eq!(key.decrypt(&binary, 1 << 20).expect("decrypt"), message);
        }
    }
}
