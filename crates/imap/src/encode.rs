//! Writing IMAP response data (RFC 9051 section 9): strings as quoted strings or literals,
//! NIL, flag lists, ENVELOPE, and mailbox names in modified UTF-7 (RFC 3501 section 5.1.3)
//! for IMAP4rev1 clients that have not enabled UTF-8.

use base64::Engine as _;
use letterlock_mailstore::index::{Envelope, EnvelopeAddress};
use letterlock_mailstore::records::flag_bits;

/// Strings longer than this go out as literals even when they could be quoted.
const QUOTED_LENGTH_MAX_BYTES: usize = 1024;

/// A string: quoted when that is possible, a literal otherwise (binary, CR/LF, long text).
pub fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    let quotable = bytes.len() <= QUOTED_LENGTH_MAX_BYTES
        && bytes
            .iter()
            .all(|&byte| byte != 0 && byte != b'\r' && byte != b'\n')
        && std::str::from_utf8(bytes).is_ok();
    if quotable {
        out.push(b'"');
        for &byte in bytes {
            if byte == b'"' || byte == b'\\' {
                out.push(b'\\');
            }
            out.push(byte);
        }
        out.push(b'"');
    } else {
        literal(out, bytes);
    }
}

pub fn literal(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
    out.extend_from_slice(bytes);
}

pub fn nstring(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => string(out, bytes),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Header text for a client: as it is when ASCII (or when the client accepts UTF-8), else as
/// an RFC 2047 encoded word, which every IMAP4rev1 client decodes.
pub fn header_text(out: &mut Vec<u8>, text: Option<&str>, utf8: bool) {
    match text {
        None => out.extend_from_slice(b"NIL"),
        Some(text) if utf8 || text.is_ascii() => string(out, text.as_bytes()),
        Some(text) => {
            let encoded = format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
            );
            string(out, encoded.as_bytes());
        }
    }
}

/// The flag list of a message: `(\Seen $Forwarded)`.
pub fn flags(out: &mut Vec<u8>, bits: u8, keywords: &[String]) {
    out.push(b'(');
    let mut names: Vec<&str> = Vec::new();
    for (bit, name) in SYSTEM_FLAGS {
        if bits & bit != 0 {
            names.push(name);
        }
    }
    names.extend(keywords.iter().map(String::as_str));
    out.extend_from_slice(names.join(" ").as_bytes());
    out.push(b')');
}

pub const SYSTEM_FLAGS: [(u8, &str); 5] = [
    (flag_bits::SEEN, "\\Seen"),
    (flag_bits::ANSWERED, "\\Answered"),
    (flag_bits::FLAGGED, "\\Flagged"),
    (flag_bits::DELETED, "\\Deleted"),
    (flag_bits::DRAFT, "\\Draft"),
];

/// RFC 9051 section 7.5.2 ENVELOPE. Sender and Reply-To default to From, as the RFC asks.
pub fn envelope(out: &mut Vec<u8>, envelope: &Envelope, utf8: bool) {
    out.push(b'(');
    nstring(out, envelope.date.as_deref().map(str::as_bytes));
    out.push(b' ');
    header_text(out, envelope.subject.as_deref(), utf8);
    let from = &envelope.from;
    let sender = if envelope.sender.is_empty() {
        from
    } else {
        &envelope.sender
    };
    let reply_to = if envelope.reply_to.is_empty() {
        from
    } else {
        &envelope.reply_to
    };
    for list in [
        from,
        sender,
        reply_to,
        &envelope.to,
        &envelope.cc,
        &envelope.bcc,
    ] {
        out.push(b' ');
        addresses(out, list, utf8);
    }
    out.push(b' ');
    nstring(out, envelope.in_reply_to.as_deref().map(str::as_bytes));
    out.push(b' ');
    nstring(out, envelope.message_id.as_deref().map(str::as_bytes));
    out.push(b')');
}

fn addresses(out: &mut Vec<u8>, list: &[EnvelopeAddress], utf8: bool) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for address in list {
        out.push(b'(');
        header_text(out, address.name.as_deref(), utf8);
        out.extend_from_slice(b" NIL ");
        let (mailbox, host) = match address.address.as_deref() {
            Some(address) => match address.rsplit_once('@') {
                Some((local, domain)) => (Some(local), Some(domain)),
                None => (Some(address), None),
            },
            None => (None, None),
        };
        nstring(out, mailbox.map(str::as_bytes));
        out.push(b' ');
        nstring(out, host.map(str::as_bytes));
        out.push(b')');
    }
    out.push(b')');
}

/// Modified UTF-7 (RFC 3501 section 5.1.3) of a mailbox name.
pub fn mutf7_encode(name: &str) -> String {
    let mut out = String::new();
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|unit| unit.to_be_bytes()).collect();
        let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
        out.push('&');
        out.push_str(&encoded.replace('/', ","));
        out.push('-');
        pending.clear();
    };
    for character in name.chars() {
        if (' '..='~').contains(&character) {
            flush(&mut pending, &mut out);
            if character == '&' {
                out.push_str("&-");
            } else {
                out.push(character);
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(character.encode_utf16(&mut units));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// The mailbox name a modified-UTF-7 name stands for; `None` if it is not valid mUTF-7.
pub fn mutf7_decode(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('-')?;
        let encoded = &after[..end];
        if encoded.is_empty() {
            out.push('&');
        } else {
            let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(encoded.replace(',', "/"))
                .ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect();
            out.push_str(&String::from_utf16(&units).ok()?);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_quote_or_literal() {
        let mut out = Vec::new();
        string(&mut out, b"a \"b\" \\");
        assert_eq!(out, b"\"a \\\"b\\\" \\\\\"");
        let mut out = Vec::new();
        string(&mut out, b"line\r\nbreak");
        assert_eq!(out, b"{11}\r\nline\r\nbreak");
    }

    #[test]
    fn modified_utf7_round_trips() {
        assert_eq!(mutf7_encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(mutf7_encode("A&B"), "A&-B");
        assert_eq!(mutf7_encode("日本語"), "&ZeVnLIqe-");
        for name in ["Entwürfe", "A&B", "日本語", "plain", "😀 smile"] {
            assert_eq!(mutf7_decode(&mutf7_encode(name)).as_deref(), Some(name));
        }
        assert_eq!(mutf7_decode("&bad"), None);
    }

    #[test]
    fn envelope_defaults_sender_to_from() {
        let envelope_value = Envelope {
            subject: Some("Grüße".into()),
            from: vec![EnvelopeAddress {
                name: Some("Bob".into()),
                address: Some("bob@example.net".into()),
            }],
            ..Envelope::default()
        };
        let mut out = Vec::new();
        envelope(&mut out, &envelope_value, false);
        let text = String::from_utf8(out).expect("ascii");
        assert_eq!(
            text,
            "(NIL \"=?UTF-8?B?R3LDvMOfZQ==?=\" ((\"Bob\" NIL \"bob\" \"example.net\")) ((\"Bob\" NIL \"bob\" \"example.net\")) ((\"Bob\" NIL \"bob\" \"example.net\")) NIL NIL NIL NIL NIL)"
        );
    }
}
