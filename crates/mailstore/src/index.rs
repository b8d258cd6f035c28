//! The per-message index record: what a client asks for without the whole message
//! (envelope, a summary of the MIME structure) and the terms body search needs.
//!
//! Extracted once, at delivery or APPEND, from the plaintext held in memory; then sealed
//! (see [`crate::records::MessageRecord::sealed_index`] and `sealed_terms`) and never stored
//! in the clear.
//! Parsing is mail-parser's (RFC 5322, RFC 2045-2049, RFC 2047 encoded words).

use std::collections::BTreeSet;

use mail_parser::{Address, MessageParser, MimeHeaders, PartType};
use serde::{Deserialize, Serialize};

/// Search terms kept per message: enough for a long mail, bounded so a crafted one cannot
/// make an index record of unbounded size.
pub const SEARCH_TERMS_PER_MESSAGE_MAX: usize = 20_000;
/// Terms longer than this are cut (base64 runs and hashes are not words anyone searches for whole).
pub const SEARCH_TERM_LENGTH_MAX_CHARS: usize = 48;
/// Terms shorter than this are skipped; IMAP SEARCH matches substrings, which the IMAP layer
/// handles by falling back to decrypting candidates.
pub const SEARCH_TERM_LENGTH_MIN_CHARS: usize = 2;
/// MIME parts summarised per message.
pub const PARTS_PER_MESSAGE_MAX: usize = 1_000;
/// Message IDs kept from a References field: the nearest ancestors, which threading uses.
pub const REFERENCES_PER_MESSAGE_MAX: usize = 100;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeAddress {
    pub name: Option<String>,
    pub address: Option<String>,
}

/// RFC 9051 section 7.5.2 ENVELOPE fields, as the message has them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub date: Option<String>,
    /// Decoded (RFC 2047) subject.
    pub subject: Option<String>,
    pub from: Vec<EnvelopeAddress>,
    pub sender: Vec<EnvelopeAddress>,
    pub reply_to: Vec<EnvelopeAddress>,
    pub to: Vec<EnvelopeAddress>,
    pub cc: Vec<EnvelopeAddress>,
    pub bcc: Vec<EnvelopeAddress>,
    pub in_reply_to: Option<String>,
    pub message_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartSummary {
    /// `type/subtype`, lowercase.
    pub content_type: String,
    pub size_bytes: u64,
    pub file_name: Option<String>,
}

/// What a listing needs: sealed on its own so that listing a mailbox does not decrypt and
/// decode every message's search terms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexRecord {
    pub envelope: Envelope,
    pub parts: Vec<PartSummary>,
    /// The References field's message IDs (RFC 5322 section 3.6.4), oldest first, at most
    /// [`REFERENCES_PER_MESSAGE_MAX`] (the last ones).
    pub references: Vec<String>,
}

/// An index record as written before `references` (postcard has no optional fields).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct IndexRecordV1 {
    envelope: Envelope,
    parts: Vec<PartSummary>,
}

impl IndexRecord {
    /// Decodes a stored record, of this format or the one before `references`.
    pub fn decode(bytes: &[u8]) -> crate::error::Result<IndexRecord> {
        crate::records::decode_or_older::<IndexRecord, IndexRecordV1>("index record", bytes)
    }
}

impl From<IndexRecordV1> for IndexRecord {
    fn from(old: IndexRecordV1) -> IndexRecord {
        IndexRecord {
            envelope: old.envelope,
            parts: old.parts,
            references: Vec::new(),
        }
    }
}

/// The `<...>` message IDs in a References (or In-Reply-To) field, in order.
fn message_ids(raw: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rest = raw;
    while let Some(start) = rest.find('<') {
        let Some(length) = rest[start..].find('>') else {
            break;
        };
        ids.push(rest[start..=start + length].to_string());
        rest = &rest[start + length + 1..];
    }
    ids
}

/// What search needs: lowercased words of the headers and text parts, sorted, unique.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchTerms {
    pub terms: Vec<String>,
}

impl IndexRecord {
    /// Build the index record and search terms of a message. Never fails: a message
    /// mail-parser cannot read gets an empty envelope and is still stored (nothing accepted
    /// is lost).
    pub fn extract(message: &[u8]) -> (IndexRecord, SearchTerms) {
        let Some(parsed) = MessageParser::default().parse(message) else {
            return (IndexRecord::default(), SearchTerms::default());
        };
        let envelope = Envelope {
            date: parsed.header_raw("Date").map(|raw| raw.trim().to_string()),
            subject: parsed.subject().map(str::to_string),
            from: addresses(parsed.from()),
            sender: addresses(parsed.sender()),
            reply_to: addresses(parsed.reply_to()),
            to: addresses(parsed.to()),
            cc: addresses(parsed.cc()),
            bcc: addresses(parsed.bcc()),
            in_reply_to: parsed
                .header_raw("In-Reply-To")
                .map(|raw| raw.trim().to_string()),
            message_id: parsed.message_id().map(|id| format!("<{id}>")),
        };

        let mut parts = Vec::new();
        for part in parsed.parts.iter().take(PARTS_PER_MESSAGE_MAX) {
            if matches!(part.body, PartType::Multipart(_)) {
                continue;
            }
            let content_type = part
                .content_type()
                .map(|ct| {
                    format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("octet-stream"))
                        .to_ascii_lowercase()
                })
                .unwrap_or_else(|| "text/plain".to_string());
            parts.push(PartSummary {
                content_type,
                size_bytes: u64::from(part.offset_end.saturating_sub(part.offset_body)),
                file_name: part.attachment_name().map(str::to_string),
            });
        }

        let mut terms = BTreeSet::new();
        let mut add_text = |text: &str| {
            for word in text.split(|c: char| !c.is_alphanumeric()) {
                if terms.len() >= SEARCH_TERMS_PER_MESSAGE_MAX {
                    return;
                }
                let count = word.chars().count();
                if count < SEARCH_TERM_LENGTH_MIN_CHARS {
                    continue;
                }
                let word: String = word
                    .chars()
                    .take(SEARCH_TERM_LENGTH_MAX_CHARS)
                    .collect::<String>()
                    .to_lowercase();
                terms.insert(word);
            }
        };
        if let Some(subject) = &envelope.subject {
            add_text(subject);
        }
        for list in [&envelope.from, &envelope.to, &envelope.cc] {
            for address in list {
                if let Some(name) = &address.name {
                    add_text(name);
                }
                if let Some(address) = &address.address {
                    add_text(address);
                }
            }
        }
        for index in 0..parsed.text_body_count() {
            if let Some(text) = parsed.body_text(index) {
                add_text(&text);
            }
        }

        let mut references = parsed
            .header_raw("References")
            .map(message_ids)
            .unwrap_or_default();
        references.drain(..references.len().saturating_sub(REFERENCES_PER_MESSAGE_MAX));

        (
            IndexRecord {
                envelope,
                parts,
                references,
            },
            SearchTerms {
                terms: terms.into_iter().collect(),
            },
        )
    }
}

fn addresses(address: Option<&Address<'_>>) -> Vec<EnvelopeAddress> {
    let Some(address) = address else {
        return Vec::new();
    };
    address
        .iter()
        .map(|addr| EnvelopeAddress {
            name: addr.name.as_ref().map(|name| name.to_string()),
            address: addr.address.as_ref().map(|address| address.to_string()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_envelope_parts_and_terms() {
        let message = b"From: =?utf-8?q?Ren=C3=A9e?= <renee@example.org>\r\n\
To: bob@example.org, Carol <carol@example.net>\r\n\
Subject: Quarterly figures\r\n\
Date: Tue, 24 Nov 2026 08:00:00 +0000\r\n\
Message-ID: <abc@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nThe zebra figures are attached.\r\n\
--b\r\nContent-Type: application/pdf; name=f.pdf\r\nContent-Disposition: attachment; filename=f.pdf\r\n\r\nJVBERi0=\r\n--b--\r\n";
        let (index, terms) = IndexRecord::extract(message);
        assert_eq!(index.envelope.subject.as_deref(), Some("Quarterly figures"));
        assert_eq!(index.envelope.from[0].name.as_deref(), Some("Renée"));
        assert_eq!(index.envelope.to.len(), 2);
        assert_eq!(
            index.envelope.message_id.as_deref(),
            Some("<abc@example.org>")
        );
        assert!(terms.terms.contains(&"zebra".to_string()));
        assert!(terms.terms.contains(&"quarterly".to_string()));
        assert!(index
            .parts
            .iter()
            .any(|part| part.content_type == "application/pdf"
                && part.file_name.as_deref() == Some("f.pdf")));
    }

    #[test]
    fn references_are_kept_in_order_and_older_records_still_read() {
        let (record, _) = IndexRecord::extract(
            b"Message-ID: <c@x>\r\nIn-Reply-To: <b@x>\r\nReferences: <a@x>\r\n <b@x> junk <b2@x>\r\n\r\nhi\r\n",
        );
        assert_eq!(record.references, ["<a@x>", "<b@x>", "<b2@x>"]);
        let many: String = (0..150).map(|n| format!("<{n}@x> ")).collect();
        let (record, _) =
            IndexRecord::extract(format!("References: {many}\r\n\r\nhi\r\n").as_bytes());
        assert_eq!(record.references.len(), REFERENCES_PER_MESSAGE_MAX);
        assert_eq!(
            record.references.last().map(String::as_str),
            Some("<149@x>")
        );

        let old = IndexRecordV1 {
            envelope: record.envelope.clone(),
            parts: record.parts.clone(),
        };
        let bytes = crate::records::encode(&old).expect("encode");
        let read = IndexRecord::decode(&bytes).expect("an older record reads");
        assert!(read.references.is_empty());
        assert_eq!(read.envelope, record.envelope);
        let current = crate::records::encode(&record).expect("encode");
        assert_eq!(IndexRecord::decode(&current).expect("decode"), record);
    }

    #[test]
    fn garbage_still_yields_a_record() {
        let (index, terms) = IndexRecord::extract(&[0xff, 0x00, 0x13]);
        assert!(terms.terms.is_empty());
        assert!(index.envelope.subject.is_none());
    }
}
