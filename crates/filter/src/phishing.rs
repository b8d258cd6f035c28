//! Phishing checks that explain themselves: lookalike and confusable domains (Unicode UTS #39
//! skeletons, IDN homographs, edit distance 1), display names that borrow a local user's or a
//! contact's identity, and links whose text names one host while the link goes to another, to
//! a bare IP address, or through a URL shortener.

use mail_parser::{MessageParser, MimeHeaders};
use unicode_security::confusable_detection::skeleton;

use crate::punycode;
use crate::tokens::link_hosts;

/// Brands phishers imitate most; local domains are protected the same way.
pub const PROTECTED_BRANDS: &[&str] = &[
    "paypal.com",
    "apple.com",
    "icloud.com",
    "microsoft.com",
    "outlook.com",
    "office.com",
    "live.com",
    "google.com",
    "gmail.com",
    "amazon.com",
    "facebook.com",
    "instagram.com",
    "netflix.com",
    "linkedin.com",
    "dropbox.com",
    "docusign.com",
    "dhl.com",
    "fedex.com",
    "ups.com",
    "chase.com",
    "wellsfargo.com",
    "bankofamerica.com",
    "citi.com",
    "hsbc.com",
    "ebay.com",
    "coinbase.com",
    "binance.com",
    "adobe.com",
    "twitter.com",
    "x.com",
];

/// URL shorteners hide where a link goes.
pub const URL_SHORTENERS: &[&str] = &[
    "bit.ly",
    "tinyurl.com",
    "t.co",
    "goo.gl",
    "ow.ly",
    "is.gd",
    "buff.ly",
    "rebrand.ly",
    "cutt.ly",
    "shorturl.at",
    "tiny.cc",
    "rb.gy",
    "s.id",
    "t.ly",
];

/// Domains shorter than this are not checked for edit distance 1: too many honest neighbours.
const EDIT_DISTANCE_DOMAIN_LENGTH_MIN: usize = 6;
/// Links examined per message.
pub const LINKS_EXAMINED_MAX: usize = 200;
/// HTML examined per message.
pub const HTML_EXAMINED_MAX_BYTES: usize = 512 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    LookalikeDomain,
    DisplayNameSpoof,
    LinkTextMismatch,
    LinkToIpAddress,
    LinkShortener,
}

impl FindingKind {
    fn label(self) -> &'static str {
        match self {
            FindingKind::LookalikeDomain => "lookalike-domain",
            FindingKind::DisplayNameSpoof => "display-name-spoof",
            FindingKind::LinkTextMismatch => "link-text-mismatch",
            FindingKind::LinkToIpAddress => "link-to-ip-address",
            FindingKind::LinkShortener => "link-shortener",
        }
    }

    /// How much a finding counts toward the spam score.
    pub fn weight(self) -> f64 {
        match self {
            FindingKind::LookalikeDomain => 0.6,
            FindingKind::DisplayNameSpoof => 0.5,
            FindingKind::LinkTextMismatch => 0.5,
            FindingKind::LinkToIpAddress => 0.3,
            FindingKind::LinkShortener => 0.15,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    pub detail: String,
}

/// What the checks compare against.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// This server's domains.
    pub local_domains: Vec<String>,
    /// Names and addresses that must not be borrowed: local users, the recipient's contacts.
    pub protected_identities: Vec<String>,
    /// Whether the From: domain is authenticated (DMARC passed, or without a DMARC record an
    /// aligned DKIM signature or SPF check passed): then a display name is trusted.
    pub from_authenticated: bool,
}

/// Run every check on a message held in memory.
pub fn check(message: &[u8], context: &Context) -> Vec<Finding> {
    let mut findings = Vec::new();
    let Some(parsed) = MessageParser::default().parse(message) else {
        return findings;
    };
    let protected: Vec<String> = context
        .local_domains
        .iter()
        .map(|domain| domain.to_ascii_lowercase())
        .chain(PROTECTED_BRANDS.iter().map(|brand| brand.to_string()))
        .collect();

    let from = parsed.from().and_then(|address| address.first());
    let from_address = from
        .and_then(|addr| addr.address.as_ref())
        .map(|address| address.to_ascii_lowercase());
    let from_domain = from_address
        .as_deref()
        .and_then(|address| address.rsplit_once('@'))
        .map(|(_, domain)| domain.to_string());
    if let Some(domain) = &from_domain {
        if let Some(finding) = lookalike(domain, &protected, "sender domain") {
            findings.push(finding);
        }
    }
    if let (Some(name), Some(address)) = (from.and_then(|addr| addr.name.as_ref()), &from_address) {
        if let Some(finding) = display_name_spoof(name, address, from_domain.as_deref(), context) {
            findings.push(finding);
        }
    }

    let mut examined = 0;
    for index in 0..parsed.html_body_count() {
        let Some(html) = parsed.body_html(index) else {
            continue;
        };
        let html = truncate(&html, HTML_EXAMINED_MAX_BYTES);
        for (href, text) in anchors(html) {
            if examined >= LINKS_EXAMINED_MAX {
                break;
            }
            examined += 1;
            findings.extend(link_findings(&href, Some(&text), &protected));
        }
    }
    for index in 0..parsed.text_body_count() {
        // HTML parts are also offered as text by mail-parser; links there were seen above.
        if parsed
            .text_part(index as u32)
            .is_some_and(|part| part.is_content_type("text", "html"))
        {
            continue;
        }
        let Some(text) = parsed.body_text(index) else {
            continue;
        };
        for host in link_hosts(truncate(&text, HTML_EXAMINED_MAX_BYTES)) {
            if examined >= LINKS_EXAMINED_MAX {
                break;
            }
            examined += 1;
            findings.extend(link_findings(&format!("https://{host}/"), None, &protected));
        }
    }
    findings.dedup();
    findings
}

/// The phishing score a set of findings adds (0 to 1).
pub fn score(findings: &[Finding]) -> f64 {
    1.0 - findings
        .iter()
        .map(|finding| 1.0 - finding.kind.weight())
        .product::<f64>()
}

/// `X-Letterlock-Phishing` header value: `none`, or the findings with their details.
pub fn header_value(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "none".to_string();
    }
    let listed: Vec<String> = findings
        .iter()
        .map(|finding| format!("{} ({})", finding.kind.label(), sanitize(&finding.detail)))
        .collect();
    format!("score={:.2}; {}", score(findings), listed.join("; "))
}

/// Header-safe text: no line breaks, no control characters, bounded.
fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect::<String>()
        .replace(';', ",")
}

fn truncate(text: &str, max_bytes: usize) -> &str {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn lookalike(domain: &str, protected: &[String], what: &str) -> Option<Finding> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if protected
        .iter()
        .any(|name| domain == *name || domain.ends_with(&format!(".{name}")))
    {
        return None;
    }
    let unicode = punycode::to_unicode(&domain);
    let shown: String = skeleton(&unicode).collect::<String>().to_lowercase();
    for name in protected {
        let name_skeleton: String = skeleton(name).collect::<String>().to_lowercase();
        if shown == name_skeleton {
            return Some(Finding {
                kind: FindingKind::LookalikeDomain,
                detail: format!("{what} {unicode} is made to look like {name}"),
            });
        }
        if domain.len() >= EDIT_DISTANCE_DOMAIN_LENGTH_MIN
            && name.len() >= EDIT_DISTANCE_DOMAIN_LENGTH_MIN
            && within_one_edit(&domain, name)
        {
            return Some(Finding {
                kind: FindingKind::LookalikeDomain,
                detail: format!("{what} {domain} is one letter away from {name}"),
            });
        }
        // paypal.com.account-verify.example: the brand as a subdomain of someone else's domain.
        if domain.starts_with(&format!("{name}.")) {
            return Some(Finding {
                kind: FindingKind::LookalikeDomain,
                detail: format!("{what} {domain} puts {name} in front of another domain"),
            });
        }
    }
    None
}

/// Damerau-Levenshtein distance of at most 1 (one insertion, deletion, substitution or
/// transposition of neighbours), and not equal.
fn within_one_edit(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a == b || a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let (rest_a, rest_b) = (&a[prefix..], &b[prefix..]);
    match rest_a.len().cmp(&rest_b.len()) {
        std::cmp::Ordering::Equal => {
            rest_a[1..] == rest_b[1..]
                || (rest_a.len() >= 2
                    && rest_a[0] == rest_b[1]
                    && rest_a[1] == rest_b[0]
                    && rest_a[2..] == rest_b[2..])
        }
        std::cmp::Ordering::Greater => rest_a[1..] == *rest_b,
        std::cmp::Ordering::Less => *rest_a == rest_b[1..],
    }
}

fn display_name_spoof(
    name: &str,
    address: &str,
    from_domain: Option<&str>,
    context: &Context,
) -> Option<Finding> {
    let name = name.trim().to_lowercase();
    // "ceo@example.org" <someone@elsewhere.example>: the display name is an address, not the sender's.
    if let Some(shown) = name
        .split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '(' | ')'))
        .find(|word| word.contains('@') && word.contains('.'))
    {
        if shown != address {
            return Some(Finding {
                kind: FindingKind::DisplayNameSpoof,
                detail: format!("the display name shows {shown} but the sender is {address}"),
            });
        }
    }
    if context.from_authenticated {
        return None;
    }
    let from_local = from_domain.is_some_and(|domain| {
        context
            .local_domains
            .iter()
            .any(|local| local.eq_ignore_ascii_case(domain))
    });
    if from_local {
        return None;
    }
    context
        .protected_identities
        .iter()
        .find(|identity| {
            let identity = identity.to_lowercase();
            !identity.is_empty()
                && (name == identity || name.contains(&identity) && identity.contains(' '))
        })
        .map(|identity| Finding {
            kind: FindingKind::DisplayNameSpoof,
            detail: format!("an outside sender ({address}) uses the name of {identity}"),
        })
}

/// `<a href="...">text</a>` pairs, from a tolerant scan (malformed HTML is the norm in spam).
fn anchors(html: &str) -> Vec<(String, String)> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut position = 0;
    while let Some(start) = lower[position..].find("<a") {
        let tag_start = position + start;
        let Some(tag_end) = lower[tag_start..].find('>').map(|end| tag_start + end) else {
            break;
        };
        let tag = &html[tag_start..tag_end];
        let close = lower[tag_end..]
            .find("</a")
            .map(|end| tag_end + end)
            .unwrap_or(lower.len());
        if let Some(href) = attribute(tag, "href") {
            let text = strip_tags(&html[tag_end + 1..close.max(tag_end + 1)]);
            out.push((href, text));
        }
        position = close.max(tag_end + 1);
        if out.len() >= LINKS_EXAMINED_MAX {
            break;
        }
    }
    out
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let at = lower.find(&format!("{name}="))? + name.len() + 1;
    let rest = &tag[at..];
    let value = match rest.chars().next()? {
        quote @ ('"' | '\'') => rest[1..].split(quote).next()?,
        _ => rest.split(|c: char| c.is_whitespace() || c == '>').next()?,
    };
    Some(value.trim().to_string())
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&nbsp;", " ").trim().to_string()
}

/// The host of an absolute http(s) URL.
fn url_host(url: &str) -> Option<String> {
    link_hosts(url).into_iter().next()
}

/// A host shown in link text: a URL, or a bare domain such as `www.paypal.com`.
fn shown_host(text: &str) -> Option<String> {
    if let Some(host) = url_host(text) {
        return Some(host);
    }
    let candidate = text.trim().trim_end_matches('/').to_ascii_lowercase();
    let looks_like_domain = candidate.contains('.')
        && !candidate.contains(' ')
        && candidate.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && candidate
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_alphabetic()));
    looks_like_domain.then_some(candidate.split('/').next().unwrap_or("").to_string())
}

fn is_ip_address(host: &str) -> bool {
    host.parse::<std::net::Ipv4Addr>().is_ok() || host.starts_with('[')
}

fn same_site(a: &str, b: &str) -> bool {
    let a = a.trim_start_matches("www.");
    let b = b.trim_start_matches("www.");
    a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}"))
}

fn link_findings(href: &str, text: Option<&str>, protected: &[String]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let Some(target) = url_host(href) else {
        return findings;
    };
    if is_ip_address(&target) {
        findings.push(Finding {
            kind: FindingKind::LinkToIpAddress,
            detail: format!("a link goes to the bare address {target}"),
        });
    }
    if URL_SHORTENERS.iter().any(|shortener| target == *shortener) {
        findings.push(Finding {
            kind: FindingKind::LinkShortener,
            detail: format!("a link goes through the shortener {target}"),
        });
    }
    if let Some(finding) = lookalike(&target, protected, "link to") {
        findings.push(finding);
    }
    if let Some(shown) = text.and_then(shown_host) {
        if !same_site(&shown, &target) {
            findings.push(Finding {
                kind: FindingKind::LinkTextMismatch,
                detail: format!("a link shows {shown} but goes to {target}"),
            });
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Context {
        Context {
            local_domains: vec!["example.org".to_string()],
            protected_identities: vec![
                "Alice Liddell".to_string(),
                "alice@example.org".to_string(),
            ],
            from_authenticated: false,
        }
    }

    fn kinds(message: &str) -> Vec<FindingKind> {
        check(message.as_bytes(), &context())
            .into_iter()
            .map(|finding| finding.kind)
            .collect()
    }

    #[test]
    fn lookalike_sender_domains_are_flagged() {
        for from in [
            "security@xn--pypal-4ve.com", // Cyrillic a
            "security@paypa1.com",        // confusable digit
            "billing@examp1e.org",        // local domain, confusable digit
            "billing@exmaple.org",        // transposition
            "billing@example.org.verify-account.example",
            "service@paypal.com.secure-login.example",
        ] {
            let message = format!("From: Service <{from}>\r\nSubject: x\r\n\r\nhello\r\n");
            assert!(
                kinds(&message).contains(&FindingKind::LookalikeDomain),
                "{from} not flagged"
            );
        }
    }

    #[test]
    fn display_name_spoofs_are_flagged() {
        let message =
            "From: \"alice@example.org\" <attacker@evil.example>\r\nSubject: x\r\n\r\nhi\r\n";
        assert!(kinds(message).contains(&FindingKind::DisplayNameSpoof));
        let message = "From: Alice Liddell <alice.liddell@freemail.example>\r\nSubject: urgent\r\n\r\nwire money\r\n";
        assert!(kinds(message).contains(&FindingKind::DisplayNameSpoof));
        let mut aligned = context();
        aligned.from_authenticated = true;
        assert!(
            check(message.as_bytes(), &aligned).is_empty(),
            "aligned DMARC is trusted"
        );
    }

    #[test]
    fn deceptive_links_are_flagged() {
        let message =
            "From: Bank <news@bank.example>\r\nContent-Type: text/html\r\nSubject: x\r\n\r\n\
<p><a href=\"https://evil.example/login\">https://www.mybank.example</a>\
<a href='http://192.0.2.7/x'>click</a> <a href=https://bit.ly/abc>here</a></p>\r\n";
        let found = kinds(message);
        for expected in [
            FindingKind::LinkTextMismatch,
            FindingKind::LinkToIpAddress,
            FindingKind::LinkShortener,
        ] {
            assert!(
                found.contains(&expected),
                "{expected:?} missing from {found:?}"
            );
        }
        let findings = check(message.as_bytes(), &context());
        let header = header_value(&findings);
        assert!(
            header.contains(
                "link-text-mismatch (a link shows www.mybank.example but goes to evil.example)"
            ),
            "{header}"
        );
        assert!(score(&findings) > 0.5);
    }

    #[test]
    fn ordinary_mail_is_not_flagged() {
        let newsletter = "From: Rust Weekly <newsletter@this-week-in-rust.example>\r\nContent-Type: text/html\r\nSubject: This week\r\n\r\n\
<a href=\"https://this-week-in-rust.example/2026/11\">this-week-in-rust.example</a> \
<a href=\"https://www.github.com/rust-lang/rust\">github.com/rust-lang</a> <a href=\"https://blog.example.net/post\">Read more</a>\r\n";
        assert_eq!(kinds(newsletter), vec![]);
        let personal = "From: Bob <bob@example.net>\r\nSubject: lunch\r\n\r\nLunch tomorrow? See https://maps.example.com/place and paypal.com for the money.\r\n";
        assert_eq!(kinds(personal), vec![]);
        let from_paypal =
            "From: PayPal <service@paypal.com>\r\nSubject: receipt\r\n\r\nYour receipt.\r\n";
        assert_eq!(kinds(from_paypal), vec![]);
        assert_eq!(header_value(&[]), "none");
    }

    #[test]
    fn edit_distance_one() {
        assert!(within_one_edit("example.org", "exmaple.org"));
        assert!(within_one_edit("example.org", "examples.org"));
        assert!(within_one_edit("example.org", "exampl.org"));
        assert!(within_one_edit("example.org", "exanple.org"));
        assert!(!within_one_edit("example.org", "example.org"));
        assert!(!within_one_edit("example.org", "elpmaxe.org"));
    }
}
