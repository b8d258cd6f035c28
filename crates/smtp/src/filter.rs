//! Spam and phishing assessment of inbound mail (`DESIGN.md`, "Sender authentication, spam and
//! phishing"), on the plaintext held in memory before it is encrypted.
//!
//! Each message gets an `X-Letterlock-Spam` header (score, verdict, the strongest features) and
//! an `X-Letterlock-Phishing` header (findings), after any headers of those names that arrived
//! from outside are removed so a sender cannot forge a clean verdict. The combined score files
//! the message in Junk or, when near-certain, refuses it at SMTP time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use letterlock_filter::bayes::{self, Model};
use letterlock_filter::{phishing, reputation};
use letterlock_mailstore::{Filing, MailStore, ModelOwner};
use letterlock_types::EmailAddress;

/// How long the global model and the list of local domains and users are reused before they
/// are read again: training shows up within this.
pub const MODEL_CACHE_SECS: u64 = 30;
/// Header fields this filter writes; incoming copies are removed.
pub const VERDICT_HEADERS: [&str; 3] = [
    "X-Letterlock-Spam",
    "X-Letterlock-Phishing",
    crate::signatures::SIGNATURE_HEADER,
];

/// What sender authentication (`crate::auth`) tells the filter about one message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthSignals {
    /// The From: domain is authenticated (`auth::Verdict::from_authenticated`): its display
    /// name is not a spoof.
    pub from_authenticated: bool,
    /// Added to the spam score as independent evidence (`1 - (1 - s)(1 - w)`), 0 to 1.
    pub spam_weight: f64,
    /// What made up `spam_weight`, listed among the spam verdict's reasons.
    pub reasons: Vec<(String, f64)>,
}

/// What the filter decided for one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// Header fields to prepend (CRLF-terminated).
    pub headers: Vec<u8>,
    pub score: f64,
    pub filing: Filing,
    pub reject: bool,
}

struct Cached {
    loaded: Instant,
    global: Arc<Model>,
    local_domains: Vec<String>,
    local_addresses: Vec<String>,
}

/// Per-account models kept in memory at once (each read again after [`MODEL_CACHE_SECS`]).
pub const USER_MODELS_CACHED_MAX: usize = 256;

pub struct SpamFilter {
    store: MailStore,
    junk_threshold: f64,
    reject_threshold: f64,
    cache: Mutex<Option<Arc<Cached>>>,
    user_models: Mutex<HashMap<EmailAddress, CachedUserModel>>,
}

/// When an account's model was read, and the model (`None`: the account has not trained one).
type CachedUserModel = (Instant, Option<Arc<Model>>);

impl SpamFilter {
    pub fn new(store: MailStore, junk_threshold: f64, reject_threshold: f64) -> SpamFilter {
        SpamFilter {
            store,
            junk_threshold,
            reject_threshold,
            cache: Mutex::new(None),
            user_models: Mutex::new(HashMap::new()),
        }
    }

    /// An account's own model, from memory when read recently.
    fn user_model(&self, account: &EmailAddress) -> Option<Arc<Model>> {
        let fresh = Duration::from_secs(MODEL_CACHE_SECS);
        if let Ok(models) = self.user_models.lock() {
            if let Some((loaded, model)) = models.get(account) {
                if loaded.elapsed() < fresh {
                    return model.clone();
                }
            }
        }
        let model = self
            .store
            .spam_model(ModelOwner::User(account))
            .ok()
            .flatten()
            .and_then(|bytes| Model::from_bytes(&bytes).ok())
            .map(Arc::new);
        if let Ok(mut models) = self.user_models.lock() {
            if models.len() >= USER_MODELS_CACHED_MAX {
                models.retain(|_, (loaded, _)| loaded.elapsed() < fresh);
                if models.len() >= USER_MODELS_CACHED_MAX {
                    models.clear();
                }
            }
            models.insert(account.clone(), (Instant::now(), model.clone()));
        }
        model
    }

    fn cached(&self) -> Arc<Cached> {
        if let Ok(cache) = self.cache.lock() {
            if let Some(cached) = cache.as_ref() {
                if cached.loaded.elapsed() < Duration::from_secs(MODEL_CACHE_SECS) {
                    return Arc::clone(cached);
                }
            }
        }
        let global = self
            .store
            .spam_model(ModelOwner::Global)
            .ok()
            .flatten()
            .and_then(|bytes| Model::from_bytes(&bytes).ok())
            .unwrap_or_else(|| Model::new([0u8; 32]));
        let local_domains = self
            .store
            .list_domains()
            .map(|domains| domains.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        let local_addresses = self
            .store
            .list_users(None)
            .map(|users| users.iter().map(|user| user.address.to_string()).collect())
            .unwrap_or_default();
        let cached = Arc::new(Cached {
            loaded: Instant::now(),
            global: Arc::new(global),
            local_domains,
            local_addresses,
        });
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Some(Arc::clone(&cached));
        }
        cached
    }

    /// Assess `message` for `recipients` (local addresses). Blocking: call it off the async
    /// threads. A failure to read a model never refuses mail: it scores as unsure.
    pub fn assess(
        &self,
        message: &[u8],
        recipients: &[EmailAddress],
        auth: &AuthSignals,
    ) -> Assessment {
        let cached = self.cached();
        // One recipient account: its own model counts too (see `bayes`).
        let account = match recipients {
            [only] => self
                .store
                .resolve_recipient(only)
                .ok()
                .and_then(|accounts| match accounts.as_slice() {
                    [account] => Some(account.clone()),
                    _ => None,
                }),
            _ => None,
        };
        let user_model = account
            .as_ref()
            .and_then(|account| self.user_model(account));
        let spam = bayes::score(message, &cached.global, user_model.as_deref());
        let known_correspondent = auth.from_authenticated
            && account
                .as_ref()
                .is_some_and(|account| self.is_known_correspondent(account, message));
        let findings = phishing::check(
            message,
            &phishing::Context {
                local_domains: cached.local_domains.clone(),
                protected_identities: cached.local_addresses.clone(),
                from_authenticated: auth.from_authenticated,
            },
        );
        let phishing_score = phishing::score(&findings);
        let auth_weight = auth.spam_weight.clamp(0.0, 1.0);
        let mut score =
            1.0 - (1.0 - spam.spam_probability) * (1.0 - phishing_score) * (1.0 - auth_weight);
        let mut reasons: Vec<bayes::Reason> = auth
            .reasons
            .iter()
            .map(|(feature, weight)| bayes::Reason {
                feature: feature.clone(),
                probability: *weight,
            })
            .collect();
        if known_correspondent {
            score *= reputation::KNOWN_CORRESPONDENT_FACTOR;
            reasons.insert(
                0,
                bayes::Reason {
                    feature: reputation::KNOWN_CORRESPONDENT_REASON.into(),
                    probability: 0.0,
                },
            );
        }
        reasons.extend(spam.reasons);
        let combined = bayes::Score {
            spam_probability: score,
            reasons,
        };
        let headers = format!(
            "X-Letterlock-Spam: {}\r\nX-Letterlock-Phishing: {}\r\n",
            letterlock_filter::spam_header_value(&combined, self.junk_threshold),
            phishing::header_value(&findings)
        )
        .into_bytes();
        Assessment {
            headers,
            score,
            filing: if score >= self.junk_threshold {
                Filing::Junk
            } else {
                Filing::Inbox
            },
            reject: score >= self.reject_threshold,
        }
    }
}

impl SpamFilter {
    /// Whether the From: address of `message` is a known correspondent of `account` (its own
    /// history; see `letterlock_filter::reputation`).
    fn is_known_correspondent(&self, account: &EmailAddress, message: &[u8]) -> bool {
        let Some(from) = reputation::from_address(message) else {
            return false;
        };
        self.store
            .spam_model(ModelOwner::Correspondents(account))
            .ok()
            .flatten()
            .and_then(|bytes| reputation::Correspondents::from_bytes(&bytes).ok())
            .is_some_and(|known| known.contains(&from))
    }
}

/// Remember `addresses` as known correspondents of `account` (it wrote to them, or took their
/// mail out of Junk). Blocking: one durable commit.
pub fn remember_correspondents(
    store: &MailStore,
    account: &EmailAddress,
    addresses: &[String],
) -> Result<(), letterlock_mailstore::StoreError> {
    // Most submissions go to people already known: a read answers them without a commit.
    let known = store
        .spam_model(ModelOwner::Correspondents(account))?
        .and_then(|bytes| reputation::Correspondents::from_bytes(&bytes).ok());
    if known.is_some_and(|known| addresses.iter().all(|address| known.contains(address))) {
        return Ok(());
    }
    store.update_spam_model(ModelOwner::Correspondents(account), |current| {
        reputation::remember(current.as_deref(), addresses, rand::random())
    })
}

/// `message` without header fields named in `names` (case-insensitive), continuation lines
/// included. The body is untouched.
pub fn strip_header_fields(message: &[u8], names: &[&str]) -> Vec<u8> {
    let (mut out, body) = retain_header_fields(message, |line| !field_is_one_of(line, names));
    out.extend_from_slice(body);
    out
}

/// The header fields of `message` named in `names` (continuation lines included, no blank
/// line after them), and the body.
pub fn header_fields_named<'a>(message: &'a [u8], names: &[&str]) -> (Vec<u8>, &'a [u8]) {
    retain_header_fields(message, |line| field_is_one_of(line, names))
}

/// Whether the field starting on `line` has one of `names` (case-insensitive).
fn field_is_one_of(line: &[u8], names: &[&str]) -> bool {
    names.iter().any(|name| {
        line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && line[name.len()] == b':'
    })
}

/// The header fields `keep` accepts (judged on each field's first line) and everything from
/// the blank line ending the header section on.
fn retain_header_fields(message: &[u8], keep: impl Fn(&[u8]) -> bool) -> (Vec<u8>, &[u8]) {
    let header_end = find_header_end(message);
    let (head, body) = message.split_at(header_end);
    let mut out = Vec::with_capacity(message.len());
    let mut keeping = true;
    for line in head.split_inclusive(|&byte| byte == b'\n') {
        let is_continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !is_continuation {
            keeping = keep(line);
        }
        if keeping {
            out.extend_from_slice(line);
        }
    }
    (out, body)
}

/// Where the header section ends: just after the first empty line, or the whole message.
fn find_header_end(message: &[u8]) -> usize {
    let mut position = 0;
    for line in message.split_inclusive(|&byte| byte == b'\n') {
        position += line.len();
        if line == b"\r\n" || line == b"\n" {
            return position - line.len();
        }
    }
    message.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_verdicts_are_removed_and_nothing_else() {
        let message = b"From: a@b.example\r\nX-Letterlock-Spam: score=0.000; verdict=ham\r\n  folded\r\nx-letterlock-phishing: none\r\nSubject: hi\r\n\r\nX-Letterlock-Spam: in the body stays\r\n";
        let stripped = strip_header_fields(message, &VERDICT_HEADERS);
        assert_eq!(
            stripped,
            b"From: a@b.example\r\nSubject: hi\r\n\r\nX-Letterlock-Spam: in the body stays\r\n"
        );
        assert_eq!(
            strip_header_fields(b"no headers", &VERDICT_HEADERS),
            b"no headers"
        );
    }
}
