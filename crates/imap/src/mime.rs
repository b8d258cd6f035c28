//! The MIME views of a decrypted message that FETCH serves (RFC 9051 sections 6.4.5 and
//! 7.5.2): BODYSTRUCTURE, and the bytes of `BODY[section]` (parts numbered as RFC 9051
//! section 6.4.5 says, HEADER, HEADER.FIELDS, TEXT, MIME). MIME parsing (RFC 2045-2049) is
//! mail-parser's; the bytes served are always slices of the original message, never a
//! re-encoding, so a client's signature checks still hold.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use crate::encode::{header_text, nstring, string};
use crate::limits::NESTING_DEPTH_MAX;
use crate::syntax::{Section, SectionText};

/// One MIME entity as slices of the message: its header block (with the blank line) and body.
#[derive(Debug, Clone, Copy)]
struct Entity<'a> {
    header: &'a [u8],
    body: &'a [u8],
}

/// Split a message or MIME entity at its first empty line.
fn split_entity(raw: &[u8]) -> Entity<'_> {
    let mut position = 0;
    while position < raw.len() {
        let line_end = raw[position..]
            .iter()
            .position(|&byte| byte == b'\n')
            .map(|offset| position + offset + 1)
            .unwrap_or(raw.len());
        let line = &raw[position..line_end];
        if line == b"\r\n" || line == b"\n" {
            return Entity {
                header: &raw[..line_end],
                body: &raw[line_end..],
            };
        }
        position = line_end;
    }
    Entity {
        header: raw,
        body: &[],
    }
}

fn content_type_of(message: &Message<'_>, part_id: usize) -> (String, String) {
    message
        .parts
        .get(part_id)
        .and_then(|part| part.content_type())
        .map(|content_type| {
            (
                content_type.ctype().to_ascii_lowercase(),
                content_type
                    .subtype()
                    .unwrap_or("octet-stream")
                    .to_ascii_lowercase(),
            )
        })
        .unwrap_or_else(|| ("text".into(), "plain".into()))
}

fn slice(raw: &[u8], start: u32, end: u32) -> &[u8] {
    raw.get(start as usize..end as usize).unwrap_or_default()
}

/// The entity a part path names, with whether it is a `message/rfc822` (whose HEADER and
/// TEXT are those of the message inside).
fn locate<'a>(raw: &'a [u8], path: &[u32]) -> Option<(Entity<'a>, bool, Entity<'a>)> {
    // (the entity with its MIME header, whether it is message/rfc822, the entity as a whole)
    let mut whole = raw;
    let mut entity = split_entity(raw);
    let mut is_message = false;
    for (depth, &number) in path.iter().enumerate() {
        if depth > NESTING_DEPTH_MAX {
            return None;
        }
        // Inside a message/rfc822 part, numbering continues with the message it holds.
        if is_message {
            whole = entity.body;
        }
        let parsed = MessageParser::default().parse(whole)?;
        let root = parsed.parts.first()?;
        match &root.body {
            PartType::Multipart(children) => {
                let child = *children.get(number.checked_sub(1)? as usize)?;
                let part = parsed.parts.get(child as usize)?;
                let part_header = slice(whole, part.offset_header, part.offset_body);
                let part_body = slice(whole, part.offset_body, part.offset_end);
                let (kind, subtype) = content_type_of(&parsed, child as usize);
                let part_whole = slice(whole, part.offset_header, part.offset_end);
                entity = Entity {
                    header: part_header,
                    body: part_body,
                };
                is_message = kind == "message" && subtype == "rfc822";
                whole = part_whole;
            }
            _ => {
                if number != 1 {
                    return None;
                }
                let (kind, subtype) = content_type_of(&parsed, 0);
                let split = split_entity(whole);
                entity = split;
                is_message = kind == "message" && subtype == "rfc822";
            }
        }
    }
    Some((entity, is_message, split_entity(whole)))
}

/// The bytes `BODY[section]` stands for; empty when the part does not exist (RFC 9051
/// section 6.4.5 asks for an empty string rather than an error).
pub fn section_bytes(raw: &[u8], section: &Section) -> Vec<u8> {
    let (entity, is_message) = if section.part.is_empty() {
        (split_entity(raw), true)
    } else {
        match locate(raw, &section.part) {
            Some((entity, is_message, _)) => (entity, is_message),
            None => return Vec::new(),
        }
    };
    let top_level = section.part.is_empty();
    match section.text {
        None if top_level => raw.to_vec(),
        None => entity.body.to_vec(),
        Some(SectionText::Mime) => entity.header.to_vec(),
        Some(SectionText::Header) | Some(SectionText::Text) => {
            let inner = if top_level {
                entity
            } else if is_message {
                split_entity(entity.body)
            } else {
                return Vec::new();
            };
            if section.text == Some(SectionText::Text) {
                return inner.body.to_vec();
            }
            match &section.fields {
                None => inner.header.to_vec(),
                Some((names, exclude)) => header_fields(inner.header, names, *exclude),
            }
        }
    }
}

/// Why `BINARY[...]` could not be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinaryError {
    /// RFC 3516 section 4.3: the part uses a transfer encoding the server cannot undo.
    UnknownEncoding(String),
}

/// The content of part `path` with its Content-Transfer-Encoding undone (RFC 3516 section
/// 4.2); the whole message, as it is, for an empty path. Empty when the part does not exist.
pub fn binary_bytes(raw: &[u8], path: &[u32]) -> Result<Vec<u8>, BinaryError> {
    if path.is_empty() {
        return Ok(raw.to_vec());
    }
    let Some((entity, _, _)) = locate(raw, path) else {
        return Ok(Vec::new());
    };
    let encoding = transfer_encoding(entity.header);
    match encoding.as_str() {
        "" | "7bit" | "8bit" | "binary" => Ok(entity.body.to_vec()),
        "base64" => {
            let compact: Vec<u8> = entity
                .body
                .iter()
                .copied()
                .filter(|byte| !byte.is_ascii_whitespace())
                .collect();
            use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
            use base64::Engine as _;
            // Mail in the wild pads base64 every which way.
            let lenient = GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                GeneralPurposeConfig::new()
                    .with_decode_padding_mode(DecodePaddingMode::Indifferent),
            );
            lenient
                .decode(&compact)
                .map_err(|_| BinaryError::UnknownEncoding("malformed base64".into()))
        }
        "quoted-printable" => Ok(decode_quoted_printable(entity.body)),
        other => Err(BinaryError::UnknownEncoding(other.to_string())),
    }
}

/// The Content-Transfer-Encoding of a MIME header block, lowercased ("" when absent).
fn transfer_encoding(header: &[u8]) -> String {
    let text = String::from_utf8_lossy(header);
    let mut value: Option<String> = None;
    for line in text.split('\n') {
        if let Some(current) = value.as_mut() {
            if line.starts_with(' ') || line.starts_with('\t') {
                current.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((name, rest)) = line.split_once(':') {
            if name
                .trim()
                .eq_ignore_ascii_case("content-transfer-encoding")
            {
                value = Some(rest.trim().to_string());
            }
        }
    }
    value.unwrap_or_default().trim().to_ascii_lowercase()
}

/// RFC 2045 section 6.7: `=XX` escapes and soft line breaks (`=` at the end of a line).
fn decode_quoted_printable(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut index = 0;
    while index < body.len() {
        let byte = body[index];
        if byte != b'=' {
            out.push(byte);
            index += 1;
            continue;
        }
        match body.get(index + 1..index + 3) {
            Some([b'\r', b'\n']) => index += 3,
            Some([b'\n', _]) => index += 2,
            Some(hex) => match u8::from_str_radix(&String::from_utf8_lossy(hex), 16) {
                Ok(value) => {
                    out.push(value);
                    index += 3;
                }
                Err(_) => {
                    out.push(byte);
                    index += 1;
                }
            },
            None => {
                // A trailing "=\n" or a lone "=" at the very end.
                if body.get(index + 1) == Some(&b'\n') {
                    index += 2;
                } else {
                    out.push(byte);
                    index += 1;
                }
            }
        }
    }
    out
}

/// The header fields named (or, with `exclude`, those not named), as they are, then the
/// blank line (RFC 9051 section 6.4.5: the subset still ends with one).
pub fn header_fields(header: &[u8], names: &[String], exclude: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|&byte| byte == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let continuation = matches!(line.first(), Some(b' ') | Some(b'\t'));
        if !continuation {
            let name = line
                .iter()
                .position(|&byte| byte == b':')
                .map(|colon| {
                    String::from_utf8_lossy(&line[..colon])
                        .trim()
                        .to_ascii_uppercase()
                })
                .unwrap_or_default();
            keep = names.contains(&name) != exclude;
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// BODYSTRUCTURE (`extensible`) or BODY of a message.
pub fn body_structure(out: &mut Vec<u8>, raw: &[u8], extensible: bool, utf8: bool) {
    match MessageParser::default().parse(raw) {
        Some(parsed) => part_structure(out, &parsed, raw, 0, extensible, utf8, 0),
        None => {
            // Not parseable as MIME: describe it as the plain text RFC 2045 defaults to.
            let body = split_entity(raw).body;
            out.extend_from_slice(
                format!(
                    "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" {} {})",
                    body.len(),
                    count_lines(body)
                )
                .as_bytes(),
            );
        }
    }
}

fn count_lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&byte| byte == b'\n').count()
}

fn parameters(
    out: &mut Vec<u8>,
    attributes: Option<&[mail_parser::Attribute<'_>]>,
    default: Option<(&str, &str)>,
) {
    let mut pairs: Vec<(String, String)> = attributes
        .unwrap_or_default()
        .iter()
        .map(|attribute| {
            (
                attribute.name.to_ascii_lowercase(),
                attribute.value.to_string(),
            )
        })
        .collect();
    if pairs.is_empty() {
        if let Some((name, value)) = default {
            pairs.push((name.into(), value.into()));
        }
    }
    if pairs.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (index, (name, value)) in pairs.iter().enumerate() {
        if index > 0 {
            out.push(b' ');
        }
        string(out, name.as_bytes());
        out.push(b' ');
        string(out, value.as_bytes());
    }
    out.push(b')');
}

fn part_structure(
    out: &mut Vec<u8>,
    message: &Message<'_>,
    raw: &[u8],
    part_id: usize,
    extensible: bool,
    utf8: bool,
    depth: usize,
) {
    let Some(part) = message.parts.get(part_id) else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let content_type = part.content_type();
    let (kind, subtype) = content_type_of(message, part_id);
    if let PartType::Multipart(children) = &part.body {
        out.push(b'(');
        if children.is_empty() || depth > NESTING_DEPTH_MAX {
            // RFC 9051 requires at least one part: describe an empty one.
            out.extend_from_slice(b"(\"text\" \"plain\" NIL NIL NIL \"7bit\" 0 0)");
        }
        for &child in children.iter().take(if depth > NESTING_DEPTH_MAX {
            0
        } else {
            usize::MAX
        }) {
            part_structure(
                out,
                message,
                raw,
                child as usize,
                extensible,
                utf8,
                depth + 1,
            );
        }
        out.push(b' ');
        string(out, subtype.as_bytes());
        if extensible {
            out.push(b' ');
            parameters(out, content_type.and_then(|ct| ct.attributes()), None);
            out.push(b' ');
            disposition(out, part);
            out.extend_from_slice(b" NIL NIL");
        }
        out.push(b')');
        return;
    }
    let body = slice(raw, part.offset_body, part.offset_end);
    out.push(b'(');
    string(out, kind.as_bytes());
    out.push(b' ');
    string(out, subtype.as_bytes());
    out.push(b' ');
    let default_charset = (kind == "text").then_some(("charset", "us-ascii"));
    parameters(
        out,
        content_type.and_then(|ct| ct.attributes()),
        default_charset,
    );
    out.push(b' ');
    nstring(out, part.content_id().map(str::as_bytes));
    out.push(b' ');
    header_text(out, part.content_description(), utf8);
    out.push(b' ');
    let encoding = part
        .content_transfer_encoding()
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| "7bit".into());
    string(out, encoding.as_bytes());
    out.extend_from_slice(format!(" {}", body.len()).as_bytes());
    if kind == "message" && subtype == "rfc822" && depth <= NESTING_DEPTH_MAX {
        let (index, _) = letterlock_mailstore::index::IndexRecord::extract(body);
        out.push(b' ');
        crate::encode::envelope(out, &index.envelope, utf8);
        out.push(b' ');
        match MessageParser::default().parse(body) {
            Some(inner) => part_structure(out, &inner, body, 0, extensible, utf8, depth + 1),
            None => out.extend_from_slice(b"(\"text\" \"plain\" NIL NIL NIL \"7bit\" 0 0)"),
        }
        out.extend_from_slice(format!(" {}", count_lines(body)).as_bytes());
    } else if kind == "text" {
        out.extend_from_slice(format!(" {}", count_lines(body)).as_bytes());
    }
    if extensible {
        out.extend_from_slice(b" NIL ");
        disposition(out, part);
        out.extend_from_slice(b" NIL NIL");
    }
    out.push(b')');
}

fn disposition(out: &mut Vec<u8>, part: &mail_parser::MessagePart<'_>) {
    match part.content_disposition() {
        Some(disposition) => {
            out.push(b'(');
            string(out, disposition.ctype().to_ascii_lowercase().as_bytes());
            out.push(b' ');
            parameters(out, disposition.attributes(), None);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
}

#[cfg(test)]
mod binary_tests {
    use super::*;

    #[test]
    fn binary_undoes_transfer_encodings() {
        let message = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 soft=\r\nbreak\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC/w==\r\n--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n--b--\r\n";
        assert_eq!(
            binary_bytes(message, &[1]).expect("qp"),
            "café softbreak".as_bytes()
        );
        assert_eq!(
            binary_bytes(message, &[2]).expect("base64"),
            [0u8, 1, 2, 255]
        );
        assert_eq!(
            binary_bytes(message, &[3]),
            Err(BinaryError::UnknownEncoding("x-uuencode".into()))
        );
        assert_eq!(binary_bytes(message, &[9]).expect("missing part"), b"");
        assert_eq!(binary_bytes(message, &[]).expect("whole"), message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTIPART: &[u8] = b"From: a@example.org\r\nSubject: hi\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=XX\r\n\r\n\
preamble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\nworld\r\n\
--XX\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=f.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--XX--\r\n";

    fn section(part: &[u32], text: Option<SectionText>) -> Section {
        Section {
            part: part.to_vec(),
            text,
            fields: None,
        }
    }

    #[test]
    fn sections_are_slices_of_the_original() {
        let header = section_bytes(MULTIPART, &section(&[], Some(SectionText::Header)));
        assert!(header.starts_with(b"From: a@example.org\r\n"));
        assert!(header.ends_with(b"\r\n\r\n"));
        let text = section_bytes(MULTIPART, &section(&[], Some(SectionText::Text)));
        assert!(text.starts_with(b"preamble"));
        assert_eq!(section_bytes(MULTIPART, &section(&[], None)), MULTIPART);
        assert_eq!(
            section_bytes(MULTIPART, &section(&[1], None)),
            b"hello\r\nworld".to_vec()
        );
        assert_eq!(
            section_bytes(MULTIPART, &section(&[2], None)),
            b"JVBERi0=".to_vec()
        );
        let mime = section_bytes(MULTIPART, &section(&[2], Some(SectionText::Mime)));
        assert!(
            mime.starts_with(b"Content-Type: application/pdf"),
            "{}",
            String::from_utf8_lossy(&mime)
        );
        assert!(section_bytes(MULTIPART, &section(&[3], None)).is_empty());
    }

    #[test]
    fn single_part_body_is_part_one() {
        let message = b"Subject: x\r\n\r\nbody text\r\n";
        assert_eq!(
            section_bytes(message, &section(&[1], None)),
            b"body text\r\n"
        );
    }

    #[test]
    fn header_fields_subset() {
        let header = b"From: a\r\nSubject: long\r\n folded\r\nTo: b\r\n\r\n";
        assert_eq!(
            header_fields(header, &["SUBJECT".into()], false),
            b"Subject: long\r\n folded\r\n\r\n"
        );
        assert_eq!(
            header_fields(header, &["SUBJECT".into()], true),
            b"From: a\r\nTo: b\r\n\r\n"
        );
    }

    #[test]
    fn bodystructure_of_multipart() {
        let mut out = Vec::new();
        body_structure(&mut out, MULTIPART, true, false);
        let text = String::from_utf8(out).expect("ascii");
        assert!(
            text.starts_with("((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 12 1 NIL NIL NIL NIL)(\"application\" \"pdf\" NIL NIL NIL \"base64\" 8 NIL (\"attachment\" (\"filename\" \"f.pdf\")) NIL NIL) \"mixed\""),
            "{text}"
        );
    }
}
