//! SEARCH evaluation (RFC 9051 section 6.4.4) over what the session can read: clear metadata
//! (flags, sizes, dates, UIDs), the decrypted envelope for address and subject keys, the
//! decrypted search terms for BODY and TEXT, and the decrypted message for other headers.
//! Only what a key needs is decrypted.

use letterlock_mailstore::index::Envelope;
use letterlock_mailstore::MessageFlags;

use crate::syntax::{Day, SearchKey};

/// One message as SEARCH sees it.
pub struct Candidate<'a> {
    pub sequence: u32,
    pub largest_sequence: u32,
    pub largest_uid: u32,
    pub message: &'a MessageFlags,
    pub envelope: Option<&'a Envelope>,
    /// For BODY and TEXT: the UIDs whose search terms contain each query word.
    pub word_hits: Option<&'a WordHits>,
    pub raw: Option<&'a [u8]>,
    /// The UIDs of the saved result (`$`, RFC 5182).
    pub saved: &'a [u32],
}

/// Query word (lowercased) → UIDs of the messages with a term containing it.
pub type WordHits = std::collections::HashMap<String, std::collections::HashSet<u32>>;

/// The words of a BODY or TEXT query, as matching treats them.
fn query_words(query: &str) -> impl Iterator<Item = String> + '_ {
    query
        .split(|character: char| !character.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
}

/// Every word the BODY and TEXT keys of `key` look for.
pub fn body_words(key: &SearchKey) -> Vec<String> {
    let mut words = Vec::new();
    collect_words(key, &mut words);
    words.sort();
    words.dedup();
    words
}

fn collect_words(key: &SearchKey, words: &mut Vec<String>) {
    match key {
        SearchKey::And(keys) => keys.iter().for_each(|key| collect_words(key, words)),
        SearchKey::Or(left, right) => {
            collect_words(left, words);
            collect_words(right, words);
        }
        SearchKey::Not(key) => collect_words(key, words),
        SearchKey::Body(text) | SearchKey::Text(text) => words.extend(query_words(text)),
        _ => {}
    }
}

/// What a search key needs decrypted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    pub envelope: bool,
    pub terms: bool,
    pub raw: bool,
}

pub fn needs(key: &SearchKey) -> Needs {
    let mut needs = Needs::default();
    collect_needs(key, &mut needs);
    needs
}

fn collect_needs(key: &SearchKey, needs: &mut Needs) {
    match key {
        SearchKey::And(keys) => keys.iter().for_each(|key| collect_needs(key, needs)),
        SearchKey::Or(left, right) => {
            collect_needs(left, needs);
            collect_needs(right, needs);
        }
        SearchKey::Not(key) => collect_needs(key, needs),
        SearchKey::Header(field, _) if is_envelope_field(field) => needs.envelope = true,
        SearchKey::Header(..) => needs.raw = true,
        SearchKey::SentBefore(_) | SearchKey::SentOn(_) | SearchKey::SentSince(_) => {
            needs.envelope = true
        }
        SearchKey::Body(_) | SearchKey::Text(_) => needs.terms = true,
        _ => {}
    }
}

fn is_envelope_field(field: &str) -> bool {
    matches!(field, "FROM" | "TO" | "CC" | "BCC" | "SUBJECT")
}

pub fn matches(key: &SearchKey, candidate: &Candidate<'_>) -> bool {
    let message = candidate.message;
    match key {
        SearchKey::All => true,
        SearchKey::And(keys) => keys.iter().all(|key| matches(key, candidate)),
        SearchKey::Or(left, right) => matches(left, candidate) || matches(right, candidate),
        SearchKey::Not(key) => !matches(key, candidate),
        SearchKey::Flag(bit, set) => (message.flags & bit != 0) == *set,
        SearchKey::Keyword(keyword, set) => {
            message
                .keywords
                .iter()
                .any(|known| known.eq_ignore_ascii_case(keyword))
                == *set
        }
        SearchKey::Recent(recent) => !recent,
        SearchKey::Header(field, value) => header_matches(field, value, candidate),
        SearchKey::Body(text) | SearchKey::Text(text) => terms_match(text, candidate),
        SearchKey::Larger(size) => message.size_bytes > *size,
        SearchKey::Smaller(size) => message.size_bytes < *size,
        SearchKey::Uid(set) | SearchKey::Sequence(set) if set.is_saved() => {
            candidate.saved.contains(&message.uid)
        }
        SearchKey::Uid(set) => set.contains(message.uid, candidate.largest_uid),
        SearchKey::Sequence(set) => set.contains(candidate.sequence, candidate.largest_sequence),
        SearchKey::Before(day) => internal_day(message) < *day,
        SearchKey::On(day) => internal_day(message) == *day,
        SearchKey::Since(day) => internal_day(message) >= *day,
        SearchKey::SentBefore(day) => sent_day(candidate).is_some_and(|sent| sent < *day),
        SearchKey::SentOn(day) => sent_day(candidate) == Some(*day),
        SearchKey::SentSince(day) => sent_day(candidate).is_some_and(|sent| sent >= *day),
        SearchKey::ModSeq(modseq) => message.modseq >= *modseq,
    }
}

fn internal_day(message: &MessageFlags) -> Day {
    message.internal_date_unix.div_euclid(86_400)
}

fn sent_day(candidate: &Candidate<'_>) -> Option<Day> {
    let date = candidate.envelope?.date.as_deref()?;
    let parsed = mail_parser::DateTime::parse_rfc822(date)?;
    // RFC 9051 section 6.4.4: the date of the Date header, disregarding time and timezone.
    let local = parsed.to_timestamp()
        + i64::from(parsed.tz_hour) * 3600 * if parsed.tz_before_gmt { -1 } else { 1 }
        + i64::from(parsed.tz_minute) * 60 * if parsed.tz_before_gmt { -1 } else { 1 };
    Some(local.div_euclid(86_400))
}

fn header_matches(field: &str, value: &str, candidate: &Candidate<'_>) -> bool {
    let needle = value.to_lowercase();
    if is_envelope_field(field) {
        let Some(envelope) = candidate.envelope else {
            return false;
        };
        if field == "SUBJECT" {
            return envelope
                .subject
                .as_deref()
                .is_some_and(|subject| subject.to_lowercase().contains(&needle));
        }
        let list = match field {
            "FROM" => &envelope.from,
            "TO" => &envelope.to,
            "CC" => &envelope.cc,
            _ => &envelope.bcc,
        };
        return list.iter().any(|address| {
            let text = format!(
                "{} <{}>",
                address.name.as_deref().unwrap_or_default(),
                address.address.as_deref().unwrap_or_default()
            );
            text.to_lowercase().contains(&needle)
        });
    }
    let Some(raw) = candidate.raw else {
        return false;
    };
    let header = crate::mime::section_bytes(
        raw,
        &crate::syntax::Section {
            part: Vec::new(),
            text: Some(crate::syntax::SectionText::Header),
            fields: Some((vec![field.to_string()], false)),
        },
    );
    // The fields found, less their names and the final blank line.
    let text = String::from_utf8_lossy(&header).to_lowercase();
    let prefix = format!("{}:", field.to_lowercase());
    text.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .any(|value| value.contains(&needle))
}

/// BODY and TEXT: every word of the query must occur within a stored term (IMAP matches
/// substrings; terms are whole lowercased words, so a word inside a term still matches).
fn terms_match(query: &str, candidate: &Candidate<'_>) -> bool {
    let Some(hits) = candidate.word_hits else {
        return false;
    };
    query_words(query).all(|word| {
        hits.get(&word)
            .is_some_and(|uids| uids.contains(&candidate.message.uid))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::SearchKey;
    use letterlock_mailstore::records::flag_bits;

    fn message(uid: u32, flags: u8) -> MessageFlags {
        MessageFlags {
            uid,
            email_id: u64::from(uid),
            flags,
            keywords: vec!["$Work".into()],
            modseq: 5,
            size_bytes: 100,
            internal_date_unix: 86_400 * 3 + 5,
        }
    }

    /// Word hits as the merged index gives them: each query word the tests use, matched
    /// against `terms` as substrings.
    fn hits(uid: u32, terms: &[String]) -> WordHits {
        ["zebra", "uarter", "lion"]
            .iter()
            .map(|word| {
                let found = terms.iter().any(|term| term.contains(word));
                (
                    word.to_string(),
                    if found {
                        [uid].into_iter().collect()
                    } else {
                        Default::default()
                    },
                )
            })
            .collect()
    }

    fn candidate<'a>(message: &'a MessageFlags, hits: &'a WordHits) -> Candidate<'a> {
        Candidate {
            sequence: 1,
            largest_sequence: 1,
            largest_uid: message.uid,
            message,
            envelope: None,
            word_hits: Some(hits),
            raw: None,
            saved: &[],
        }
    }

    #[test]
    fn flags_keywords_sizes_dates_and_terms() {
        let seen = message(7, flag_bits::SEEN);
        let terms = vec!["quarterly".to_string(), "zebra".to_string()];
        let hits = hits(seen.uid, &terms);
        let candidate = candidate(&seen, &hits);
        assert!(matches(&SearchKey::Flag(flag_bits::SEEN, true), &candidate));
        assert!(matches(
            &SearchKey::Flag(flag_bits::DELETED, false),
            &candidate
        ));
        assert!(matches(
            &SearchKey::Keyword("$work".into(), true),
            &candidate
        ));
        assert!(matches(&SearchKey::Larger(99), &candidate));
        assert!(!matches(&SearchKey::Smaller(100), &candidate));
        assert!(matches(&SearchKey::On(3), &candidate));
        assert!(matches(&SearchKey::Since(3), &candidate));
        assert!(!matches(&SearchKey::Before(3), &candidate));
        assert!(matches(&SearchKey::Body("Zebra".into()), &candidate));
        assert!(matches(&SearchKey::Body("uarter".into()), &candidate));
        assert!(!matches(&SearchKey::Body("lion".into()), &candidate));
        assert!(matches(
            &SearchKey::Or(
                Box::new(SearchKey::Body("lion".into())),
                Box::new(SearchKey::Not(Box::new(SearchKey::Recent(true))))
            ),
            &candidate
        ));
    }
}
