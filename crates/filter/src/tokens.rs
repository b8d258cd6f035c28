//! Turning a message into the features the classifier counts.
//!
//! Features are words of the subject and the text parts (HTML reduced to its text), the sender's
//! domain, the hosts of links, a few header shapes, and pairs of adjacent words (a light form of
//! orthogonal sparse bigrams, which catch phrases single words miss). Each feature is counted
//! once per message, as in SpamBayes: presence, not frequency.

use std::collections::BTreeSet;

use mail_parser::{Address, MessageParser};

/// Words shorter or longer than this are not features: short ones carry no signal, long ones
/// are base64 runs and hashes.
pub const WORD_LENGTH_MIN_CHARS: usize = 3;
pub const WORD_LENGTH_MAX_CHARS: usize = 24;
/// Features taken from one message: bounds the work and memory a crafted message can cause.
pub const FEATURES_PER_MESSAGE_MAX: usize = 4_000;
/// Text examined per message.
pub const TEXT_EXAMINED_MAX_BYTES: usize = 256 * 1024;

/// The features of a message, as readable strings (they are hashed before they are stored).
pub fn features(message: &[u8]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Some(parsed) = MessageParser::default().parse(message) else {
        out.insert("shape:unparseable".to_string());
        return out;
    };
    let add = |feature: String, out: &mut BTreeSet<String>| {
        if out.len() < FEATURES_PER_MESSAGE_MAX {
            out.insert(feature);
        }
    };
    if let Some(subject) = parsed.subject() {
        for word in words(subject) {
            add(format!("subject:{word}"), &mut out);
        }
        if subject.chars().filter(|c| c.is_alphabetic()).count() > 5
            && subject
                .chars()
                .filter(|c| c.is_alphabetic())
                .all(char::is_uppercase)
        {
            add("shape:subject-all-caps".to_string(), &mut out);
        }
    }
    for (label, address) in [("from", parsed.from()), ("reply-to", parsed.reply_to())] {
        if let Some(domain) = first_domain(address) {
            add(format!("{label}-domain:{domain}"), &mut out);
        }
    }
    if let Some(mailer) = parsed.header_raw("X-Mailer") {
        for word in words(mailer).take(3) {
            add(format!("x-mailer:{word}"), &mut out);
        }
    }
    if parsed.html_body_count() > 0 && parsed.text_body_count() == 0 {
        add("shape:html-only".to_string(), &mut out);
    }
    let mut text = String::new();
    for index in 0..parsed.text_body_count() {
        if let Some(body) = parsed.body_text(index) {
            text.push_str(&body);
            text.push('\n');
        }
        if text.len() > TEXT_EXAMINED_MAX_BYTES {
            break;
        }
    }
    let text = &text[..floor_boundary(&text, TEXT_EXAMINED_MAX_BYTES)];
    for host in link_hosts(text) {
        add(format!("url:{host}"), &mut out);
    }
    let mut previous: Option<String> = None;
    for word in words(text) {
        add(word.clone(), &mut out);
        if let Some(before) = previous.take() {
            add(format!("{before} {word}"), &mut out);
        }
        previous = Some(word);
    }
    if out.is_empty() {
        out.insert("shape:empty".to_string());
    }
    out
}

/// The largest char boundary of `text` at or below `max_bytes`.
fn floor_boundary(text: &str, max_bytes: usize) -> usize {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Lowercased words within the length bounds; digits-only words are collapsed to their length,
/// so prices and phone numbers generalise.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '$' || c == '\''))
        .map(|word| word.trim_matches('\''))
        .filter(|word| {
            let count = word.chars().count();
            (WORD_LENGTH_MIN_CHARS..=WORD_LENGTH_MAX_CHARS).contains(&count)
        })
        .map(|word| {
            if word.chars().all(|c| c.is_ascii_digit()) {
                format!("digits:{}", word.len())
            } else {
                word.to_lowercase()
            }
        })
}

fn first_domain(address: Option<&Address<'_>>) -> Option<String> {
    let address = address?.first()?.address.as_ref()?.to_string();
    let (_, domain) = address.rsplit_once('@')?;
    Some(domain.to_ascii_lowercase())
}

/// Hosts of `http://` and `https://` links in text.
pub fn link_hosts(text: &str) -> Vec<String> {
    let mut hosts = Vec::new();
    let lower = text.to_ascii_lowercase();
    for scheme in ["http://", "https://"] {
        let mut rest = lower.as_str();
        while let Some(start) = rest.find(scheme) {
            let after = &rest[start + scheme.len()..];
            let end = after
                .find(|c: char| {
                    matches!(
                        c,
                        '/' | '"' | '\'' | '<' | '>' | ' ' | '\n' | '\r' | '\t' | ')' | '?' | '#'
                    )
                })
                .unwrap_or(after.len());
            let host = after[..end].rsplit('@').next().unwrap_or("");
            let host = host.split(':').next().unwrap_or("").trim_end_matches('.');
            if !host.is_empty() && hosts.len() < 100 {
                hosts.push(host.to_string());
            }
            rest = &after[end..];
        }
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_cover_subject_sender_links_words_and_pairs() {
        let message = b"From: Deals <offers@cheap-pills.example>\r\nSubject: CHEAP PILLS NOW\r\n\r\nBuy cheap pills at https://pills.example/buy today for 1999 dollars\r\n";
        let features = features(message);
        for expected in [
            "subject:cheap",
            "from-domain:cheap-pills.example",
            "url:pills.example",
            "cheap pills",
            "digits:4",
            "shape:subject-all-caps",
        ] {
            assert!(
                features.contains(expected),
                "{expected} missing from {features:?}"
            );
        }
    }

    #[test]
    fn bounded_and_never_failing() {
        let big = format!("Subject: x\r\n\r\n{}", "word".repeat(100_000));
        assert!(features(big.as_bytes()).len() <= FEATURES_PER_MESSAGE_MAX);
        let many = (0..50_000).map(|n| format!("w{n}x ")).collect::<String>();
        let message = format!("Subject: x\r\n\r\n{many}");
        assert!(features(message.as_bytes()).len() <= FEATURES_PER_MESSAGE_MAX);
        assert!(!features(&[0xff, 0xfe]).is_empty());
    }

    #[test]
    fn link_hosts_strip_userinfo_and_ports() {
        assert_eq!(
            link_hosts("see http://user@evil.example:8080/x and https://good.example."),
            vec!["evil.example".to_string(), "good.example".to_string()]
        );
    }
}
