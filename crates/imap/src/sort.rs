//! SORT (RFC 5256 section 3): ordering search results by arrival, date, size, addresses or
//! the base subject, with the sequence number breaking ties.

use std::cmp::Ordering;

use letterlock_mailstore::index::{Envelope, EnvelopeAddress};
use letterlock_mailstore::MessageFlags;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortCriterion {
    pub key: SortKey,
    pub reverse: bool,
}

/// One message as SORT sees it.
pub struct Sortable<'a> {
    pub sequence: u32,
    pub message: &'a MessageFlags,
    pub envelope: Option<&'a Envelope>,
}

/// RFC 5256 section 2.2: the addr-mailbox (local part) of the first address, case-folded.
fn first_mailbox(addresses: Option<&[EnvelopeAddress]>) -> String {
    addresses
        .and_then(|list| list.first())
        .and_then(|address| address.address.as_deref())
        .map(|address| address.split('@').next().unwrap_or("").to_ascii_lowercase())
        .unwrap_or_default()
}

/// RFC 5256 section 2.2: the Date header as a time, else the internal date.
fn sent_date(item: &Sortable<'_>) -> i64 {
    item.envelope
        .and_then(|envelope| envelope.date.as_deref())
        .and_then(mail_parser::DateTime::parse_rfc822)
        .map(|date| date.to_timestamp())
        .unwrap_or(item.message.internal_date_unix)
}

/// RFC 5256 section 2.1: the base subject, with reply and forward markers, `[blob]`s and a
/// trailing `(fwd)` removed, whitespace collapsed, case-folded.
pub fn base_subject(subject: &str) -> String {
    let mut text: String = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    loop {
        let before = text.clone();
        // Trailing "(fwd)" and whitespace (subj-trailer).
        while let Some(stripped) = text
            .strip_suffix("(fwd)")
            .or_else(|| text.strip_suffix("(FWD)"))
            .or_else(|| text.strip_suffix("(Fwd)"))
        {
            text = stripped.trim_end().to_string();
        }
        // Leading subj-refwd and subj-blob, repeatedly.
        loop {
            let inner_before = text.clone();
            text = text.trim_start().to_string();
            if let Some(rest) = strip_blob(&text) {
                if !rest.trim().is_empty() {
                    text = rest.to_string();
                }
            }
            if let Some(rest) = strip_refwd(&text) {
                text = rest.to_string();
            }
            if text == inner_before {
                break;
            }
        }
        // "[fwd: ... ]" wrapper (subj-fwd).
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("[fwd:") && text.ends_with(']') {
            text = text[5..text.len() - 1].trim().to_string();
        }
        if text == before {
            break;
        }
    }
    text.to_lowercase()
}

/// `[...]` at the start, if it is a blob (no brackets inside).
fn strip_blob(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('[')?;
    let end = rest.find(']')?;
    if rest[..end].contains('[') {
        return None;
    }
    Some(rest[end + 1..].trim_start())
}

/// `re:`, `fw:` or `fwd:`, optionally with a blob before the colon.
fn strip_refwd(text: &str) -> Option<&str> {
    let lower = text.to_ascii_lowercase();
    let prefix_length = ["re", "fwd", "fw"]
        .iter()
        .find(|prefix| lower.starts_with(*prefix))
        .map(|prefix| prefix.len())?;
    let mut rest = text[prefix_length..].trim_start();
    if let Some(after_blob) = strip_blob(rest) {
        rest = after_blob;
    }
    rest.strip_prefix(':').map(str::trim_start)
}

fn compare(key: SortKey, a: &Sortable<'_>, b: &Sortable<'_>) -> Ordering {
    let envelope_field = |item: &Sortable<'_>, field: fn(&Envelope) -> &[EnvelopeAddress]| {
        first_mailbox(item.envelope.map(field))
    };
    match key {
        SortKey::Arrival => a
            .message
            .internal_date_unix
            .cmp(&b.message.internal_date_unix),
        SortKey::Size => a.message.size_bytes.cmp(&b.message.size_bytes),
        SortKey::Date => sent_date(a).cmp(&sent_date(b)),
        SortKey::From => envelope_field(a, |e| &e.from).cmp(&envelope_field(b, |e| &e.from)),
        SortKey::To => envelope_field(a, |e| &e.to).cmp(&envelope_field(b, |e| &e.to)),
        SortKey::Cc => envelope_field(a, |e| &e.cc).cmp(&envelope_field(b, |e| &e.cc)),
        SortKey::Subject => {
            let subject = |item: &Sortable<'_>| {
                base_subject(
                    item.envelope
                        .and_then(|envelope| envelope.subject.as_deref())
                        .unwrap_or(""),
                )
            };
            subject(a).cmp(&subject(b))
        }
    }
}

/// Sort in place by `criteria`; equal messages keep sequence-number order.
pub fn sort(items: &mut [Sortable<'_>], criteria: &[SortCriterion]) {
    items.sort_by(|a, b| {
        for criterion in criteria {
            let order = compare(criterion.key, a, b);
            let order = if criterion.reverse {
                order.reverse()
            } else {
                order
            };
            if order != Ordering::Equal {
                return order;
            }
        }
        a.sequence.cmp(&b.sequence)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects_follow_rfc_5256() {
        assert_eq!(base_subject("Re: Hello"), "hello");
        assert_eq!(base_subject("RE: [list] Re: Hello (fwd)"), "hello");
        assert_eq!(base_subject("Fwd: [Fwd: Hello]"), "hello");
        assert_eq!(base_subject("re[2]: Hello   world"), "hello world");
        assert_eq!(base_subject("[only a blob]"), "[only a blob]");
        assert_eq!(base_subject("Hello"), "hello");
        assert_eq!(base_subject(""), "");
    }
}
