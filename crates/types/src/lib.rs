//! Values every Letterlock crate shares, built so that an invalid one cannot exist:
//! addresses and domains (RFC 5321, RFC 1035), mailbox names, UIDs, and [`Secret`],
//! which zeroises its bytes on drop and never prints them.
//!
//! This crate does no IO and depends on nothing of Letterlock's.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

pub mod limits;
pub mod time;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("invalid domain {0:?}: {1}")]
    Domain(String, &'static str),
    #[error("invalid address {0:?}: {1}")]
    Address(String, &'static str),
    #[error("invalid mailbox name {0:?}: {1}")]
    MailboxName(String, &'static str),
}

/// A domain name, lowercase ASCII (an IDN is given in its A-label form, `xn--...`).
/// RFC 1035 section 2.3.4: at most 253 octets in text, labels of 1 to 63 octets.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Domain(String);

impl Domain {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for Domain {
    type Error = InvalidValue;

    fn try_from(text: &str) -> Result<Domain, InvalidValue> {
        let invalid = |why| InvalidValue::Domain(text.to_string(), why);
        let lower = text.trim_end_matches('.').to_ascii_lowercase();
        if lower.is_empty() {
            return Err(invalid("empty"));
        }
        if lower.len() > limits::DOMAIN_LENGTH_MAX_OCTETS {
            return Err(invalid("longer than 253 octets"));
        }
        for label in lower.split('.') {
            if label.is_empty() {
                return Err(invalid("empty label"));
            }
            if label.len() > limits::DOMAIN_LABEL_LENGTH_MAX_OCTETS {
                return Err(invalid("label longer than 63 octets"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(invalid(
                    "only letters, digits and '-' are allowed (use the xn-- form for IDNs)",
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(invalid("a label cannot start or end with '-'"));
            }
        }
        Ok(Domain(lower))
    }
}

impl TryFrom<String> for Domain {
    type Error = InvalidValue;
    fn try_from(text: String) -> Result<Domain, InvalidValue> {
        Domain::try_from(text.as_str())
    }
}

impl From<Domain> for String {
    fn from(domain: Domain) -> String {
        domain.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Domain({})", self.0)
    }
}

/// A mailbox address `local@domain`. The local part is kept as given (RFC 5321 says it may be
/// case-sensitive) but compared and stored lowercased, as every mainstream server does, so
/// `Alice@Example.org` and `alice@example.org` are one account. Quoted local parts and
/// address literals are refused: no account can have one, and they are a classic relay trick.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress {
    local: String,
    domain: Domain,
}

impl EmailAddress {
    pub fn local_part(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &Domain {
        &self.domain
    }
}

impl TryFrom<&str> for EmailAddress {
    type Error = InvalidValue;

    fn try_from(text: &str) -> Result<EmailAddress, InvalidValue> {
        let invalid = |why| InvalidValue::Address(text.to_string(), why);
        if text.len() > limits::ADDRESS_LENGTH_MAX_OCTETS {
            return Err(invalid("longer than 254 octets"));
        }
        let Some((local, domain)) = text.rsplit_once('@') else {
            return Err(invalid("no '@'"));
        };
        if local.is_empty() {
            return Err(invalid("empty local part"));
        }
        if local.len() > limits::LOCAL_PART_LENGTH_MAX_OCTETS {
            return Err(invalid("local part longer than 64 octets"));
        }
        // RFC 5321 dot-atom: atext and single dots, no leading or trailing dot.
        // UTF-8 is allowed (RFC 6531, SMTPUTF8).
        let atext = |c: char| {
            c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
        };
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(invalid("misplaced '.' in the local part"));
        }
        if !local.chars().all(|c| c == '.' || atext(c)) {
            return Err(invalid(
                "the local part has characters outside RFC 5321 dot-atom",
            ));
        }
        if domain.starts_with('[') {
            return Err(invalid("address literals are not accepted"));
        }
        let domain = Domain::try_from(domain)
            .map_err(|_| InvalidValue::Address(text.to_string(), "invalid domain"))?;
        Ok(EmailAddress {
            local: local.to_lowercase(),
            domain,
        })
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = InvalidValue;
    fn try_from(text: String) -> Result<EmailAddress, InvalidValue> {
        EmailAddress::try_from(text.as_str())
    }
}

impl From<EmailAddress> for String {
    fn from(address: EmailAddress) -> String {
        address.to_string()
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({self})")
    }
}

/// A mailbox (folder) name as IMAP shows it, hierarchy separated by `/`.
/// `INBOX` is case-insensitive (RFC 9051 section 5.1) and always stored as `INBOX`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MailboxName(String);

impl MailboxName {
    pub const HIERARCHY_SEPARATOR: char = '/';

    pub fn inbox() -> MailboxName {
        MailboxName("INBOX".to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_inbox(&self) -> bool {
        self.0 == "INBOX"
    }
}

impl TryFrom<&str> for MailboxName {
    type Error = InvalidValue;

    fn try_from(text: &str) -> Result<MailboxName, InvalidValue> {
        let invalid = |why| InvalidValue::MailboxName(text.to_string(), why);
        if text.is_empty() {
            return Err(invalid("empty"));
        }
        if text.len() > limits::MAILBOX_NAME_LENGTH_MAX_OCTETS {
            return Err(invalid("too long"));
        }
        if text.chars().any(|c| c.is_control()) {
            return Err(invalid("control characters are not allowed"));
        }
        if text.contains('*') || text.contains('%') {
            return Err(invalid("'*' and '%' are LIST wildcards"));
        }
        let separator = MailboxName::HIERARCHY_SEPARATOR;
        if text.starts_with(separator) || text.ends_with(separator) || text.contains("//") {
            return Err(invalid("empty hierarchy level"));
        }
        if text.eq_ignore_ascii_case("INBOX") {
            return Ok(MailboxName::inbox());
        }
        Ok(MailboxName(text.to_string()))
    }
}

impl TryFrom<String> for MailboxName {
    type Error = InvalidValue;
    fn try_from(text: String) -> Result<MailboxName, InvalidValue> {
        MailboxName::try_from(text.as_str())
    }
}

impl From<MailboxName> for String {
    fn from(name: MailboxName) -> String {
        name.0
    }
}

impl fmt::Display for MailboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MailboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MailboxName({})", self.0)
    }
}

/// An IMAP UID: non-zero, strictly ascending within a mailbox (RFC 9051 section 2.3.1.1).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Uid(std::num::NonZeroU32);

impl Uid {
    pub const FIRST: Uid = Uid(std::num::NonZeroU32::MIN);

    pub fn new(value: u32) -> Option<Uid> {
        std::num::NonZeroU32::new(value).map(Uid)
    }

    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// The next UID, or `None` when the UID space of the mailbox is used up
    /// (the mailbox then needs a new UIDVALIDITY).
    pub fn next(self) -> Option<Uid> {
        self.0.checked_add(1).map(Uid)
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Secret bytes: passwords, keys, recovery codes. Zeroised on drop; `Debug` prints nothing of it.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Secret {
        Secret(text.as_bytes().to_vec())
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Secret {
        Secret(text.into_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(
            Domain::try_from("Example.ORG.").map(|d| d.to_string()),
            Ok("example.org".into())
        );
        for bad in ["", "a..b", "-a.b", "a_b.c", "exa mple.org", &"a".repeat(64)] {
            assert!(Domain::try_from(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Domain::try_from("xn--bcher-kva.example").is_ok());
    }

    #[test]
    fn addresses() {
        let address = EmailAddress::try_from("Alice.B+tag@Example.org").expect("valid");
        assert_eq!(address.to_string(), "alice.b+tag@example.org");
        assert_eq!(address.domain().as_str(), "example.org");
        for bad in [
            "alice",
            "@example.org",
            "alice@",
            ".alice@example.org",
            "al..ice@example.org",
            "\"quoted\"@example.org",
            "alice@[127.0.0.1]",
            "a b@example.org",
            "alice%relay@example.org@",
        ] {
            assert!(EmailAddress::try_from(bad).is_err(), "{bad:?} accepted");
        }
        assert!(EmailAddress::try_from(format!("{}@example.org", "a".repeat(65))).is_err());
    }

    #[test]
    fn mailbox_names() {
        assert!(MailboxName::try_from("inbox").expect("valid").is_inbox());
        assert_eq!(
            MailboxName::try_from("Work/2026").expect("valid").as_str(),
            "Work/2026"
        );
        for bad in ["", "/a", "a/", "a//b", "a*", "a\nb"] {
            assert!(MailboxName::try_from(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn uids_are_nonzero_and_bounded() {
        assert!(Uid::new(0).is_none());
        assert_eq!(Uid::FIRST.next().map(Uid::get), Some(2));
        assert!(Uid::new(u32::MAX).and_then(Uid::next).is_none());
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::from("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(..)");
    }
}
