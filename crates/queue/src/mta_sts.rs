//! MTA-STS (RFC 8461): a domain announces, by a TXT record at `_mta-sts.<domain>`, a policy
//! served over HTTPS at `https://mta-sts.<domain>/.well-known/mta-sts.txt`. In `enforce`
//! mode, mail goes only to MX hosts the policy names, over TLS with a certificate that
//! verifies against the trusted roots and names the host; in `testing` mode failures are only
//! logged; `none` withdraws an earlier policy.
//!
//! Policies are cached durably (section 5.1), so an attacker who strips the TXT record or
//! blocks the policy server later cannot downgrade a domain the server has seen: a cached
//! policy holds until its `max_age` runs out, and is refreshed when the TXT record's `id`
//! changes. A policy in use is also fetched again once it is halfway to its `max_age` (at most
//! [`REFRESH_AFTER_SECS_MAX`] old), keeping the cached one if that fails: a domain with mail
//! flowing never reaches the expiry at which one blocked fetch would leave it without a policy
//! (the proactive refresh RFC 8461's authors recommend for senders). The cache is a table of the queue's engine, sealed under the queue key, with the
//! domain as a keyed hash: who the server writes to stays private.
//!
//! The policy is fetched with the crate's small HTTPS client ([`crate::https`]): one GET, no
//! redirects (section 3.3 forbids following them), a 64 KiB body at most.

use std::sync::Arc;
use std::time::Duration;

use letterlock_storage::Table;
use letterlock_types::Domain;
use rustls::RootCertStore;
use serde::{Deserialize, Serialize};

use crate::https::{self, Fetched, HttpsSettings};
use crate::resolver::{DnsError, Resolver};
use crate::sealed::{keyed_index, open_json, seal_json};
use crate::store::Queue;

pub const MTA_STS_POLICIES: Table = Table::new("mta_sts_policies");

/// Section 3.3: "senders MAY impose a limit... of 64 KB" on the policy body.
pub const POLICY_SIZE_MAX_BYTES: usize = 64 * 1024;
/// A policy in use is fetched again after at most this long (or half its `max_age`).
pub const REFRESH_AFTER_SECS_MAX: u64 = 24 * 60 * 60;

/// Section 3.2: `max_age` is at most 31557600 seconds (about a year).
pub const POLICY_MAX_AGE_MAX_SECS: u64 = 31_557_600;
/// `mx` patterns kept from one policy.
pub const POLICY_MX_PATTERNS_MAX: usize = 64;
/// Section 3.3: "a timeout of... one minute" for the whole fetch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Section 3.1: the `id` is 1 to 32 letters and digits.
pub const POLICY_ID_LENGTH_MAX: usize = 32;

const POLICY_CONTEXT: &[u8] = b"letterlock mta-sts policy";
const INDEX_PURPOSE: &[u8] = b"letterlock mta-sts index v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

/// A domain's policy as fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The TXT record's `id` when this was fetched.
    pub id: String,
    pub mode: Mode,
    /// Host names and `*.example.com` patterns, lowercase.
    pub mx: Vec<String>,
    pub max_age_secs: u64,
    pub fetched_unix: i64,
}

impl Policy {
    /// Section 3.2: `key: value` lines (CRLF or LF); `version`, `mode` and `max_age` once,
    /// `mx` at least once unless the mode is `none`; unknown keys ignored.
    pub fn parse(id: &str, text: &str, now: i64) -> Result<Policy, String> {
        let mut version = None;
        let mut mode = None;
        let mut max_age = None;
        let mut mx = Vec::new();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(format!("policy line without a colon: {line:?}"));
            };
            let value = value.trim();
            match key.trim() {
                "version" => version = Some(value.to_string()),
                "mode" => {
                    mode = Some(match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => return Err(format!("unknown mode {other:?}")),
                    })
                }
                "max_age" => {
                    let seconds: u64 = value
                        .parse()
                        .map_err(|_| format!("max_age is not a number: {value:?}"))?;
                    max_age = Some(seconds.min(POLICY_MAX_AGE_MAX_SECS));
                }
                "mx" if mx.len() < POLICY_MX_PATTERNS_MAX => {
                    mx.push(value.trim_end_matches('.').to_ascii_lowercase());
                }
                _ => {}
            }
        }
        if version.as_deref() != Some("STSv1") {
            return Err("the policy's version is not STSv1".into());
        }
        let mode = mode.ok_or("the policy has no mode")?;
        let max_age_secs = max_age.ok_or("the policy has no max_age")?;
        if mx.is_empty() && mode != Mode::None {
            return Err("the policy names no mx".into());
        }
        Ok(Policy {
            id: id.to_string(),
            mode,
            mx,
            max_age_secs,
            fetched_unix: now,
        })
    }

    /// Section 4.1: a pattern is a host name, or `*.` and a domain, standing for exactly one
    /// more label on the left.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(parent) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
                None => *pattern == host,
            })
    }

    /// The policy as its lines (for TLS-RPT's `policy-string`).
    pub fn lines(&self) -> Vec<String> {
        let mode = match self.mode {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        };
        let mut lines = vec!["version: STSv1".to_string(), format!("mode: {mode}")];
        lines.extend(self.mx.iter().map(|mx| format!("mx: {mx}")));
        lines.push(format!("max_age: {}", self.max_age_secs));
        lines
    }

    pub fn expired(&self, now: i64) -> bool {
        now >= self
            .fetched_unix
            .saturating_add(self.max_age_secs.min(i64::MAX as u64) as i64)
    }

    /// Old enough to be fetched again before use (see the module documentation).
    pub fn refresh_due(&self, now: i64) -> bool {
        let after = (self.max_age_secs / 2).min(REFRESH_AFTER_SECS_MAX);
        now >= self.fetched_unix.saturating_add(after as i64)
    }
}

/// Section 3.1: of the TXT records, those starting `v=STSv1` count; exactly one must, with an
/// `id` of 1-32 letters and digits. `None`: the domain has no (usable) announcement.
pub fn announced_id(records: &[String]) -> Option<String> {
    let mut announcements = records
        .iter()
        .filter(|record| record.starts_with("v=STSv1;") || record.as_str() == "v=STSv1");
    let record = announcements.next()?;
    if announcements.next().is_some() {
        return None;
    }
    record.split(';').find_map(|field| {
        let (key, value) = field.trim().split_once('=')?;
        (key.trim() == "id"
            && (1..=POLICY_ID_LENGTH_MAX).contains(&value.trim().len())
            && value
                .trim()
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric()))
        .then(|| value.trim().to_string())
    })
}

/// Where and how policies are fetched.
#[derive(Clone)]
pub struct FetchSettings {
    /// The HTTPS port of `mta-sts.<domain>`: 443, another in tests.
    pub port: u16,
    pub roots: Arc<RootCertStore>,
    pub timeout: Duration,
}

/// The policy in force for a domain, after the section 5.1 procedure. Fetches, caches and
/// reads the cache; `None` when the domain has no policy (or only a `none` one).
pub async fn policy_for(
    queue: &Queue,
    resolver: &dyn Resolver,
    fetch: &FetchSettings,
    domain: &Domain,
    now: i64,
) -> Option<Policy> {
    let cached = {
        let (queue, domain) = (queue.clone(), domain.clone());
        tokio::task::spawn_blocking(move || load(&queue, &domain))
            .await
            .ok()
            .flatten()
            .filter(|policy| !policy.expired(now))
    };
    let announced = match resolver.txt(&format!("_mta-sts.{domain}")).await {
        Ok(records) => announced_id(&records),
        Err(DnsError::NoRecords) => None,
        Err(error) => {
            tracing::info!(%domain, %error, "MTA-STS TXT lookup failed; the cached policy holds");
            None
        }
    };
    let policy = match (announced, cached) {
        (Some(id), Some(cached)) if cached.id == id && !cached.refresh_due(now) => Some(cached),
        (Some(id), cached) => match fetch_policy(resolver, fetch, domain, &id, now).await {
            Ok(fresh) => {
                let (queue, owned, stored) = (queue.clone(), domain.clone(), fresh.clone());
                let saved = tokio::task::spawn_blocking(move || save(&queue, &owned, &stored))
                    .await
                    .map_err(|error| error.to_string())
                    .and_then(|saved| saved.map_err(|error| error.to_string()));
                if let Err(error) = saved {
                    tracing::warn!(%domain, %error, "MTA-STS policy not cached");
                }
                Some(fresh)
            }
            Err(error) => {
                // Section 5.1: a failed refresh keeps the cached policy; without one there is none.
                tracing::info!(%domain, %error, "MTA-STS policy fetch failed");
                cached
            }
        },
        (None, cached) => cached,
    };
    policy.filter(|policy| policy.mode != Mode::None)
}

/// The cached policy of `domain`; a record that does not open is treated as absent.
pub fn load(queue: &Queue, domain: &Domain) -> Option<Policy> {
    let index = keyed_index(queue, INDEX_PURPOSE, domain.as_str());
    let tx = queue.engine().begin_read().ok()?;
    let sealed = tx.get(MTA_STS_POLICIES, &index).ok()??;
    open_json(queue, POLICY_CONTEXT, &index, &sealed).ok()
}

pub fn save(queue: &Queue, domain: &Domain, policy: &Policy) -> crate::error::Result<()> {
    let index = keyed_index(queue, INDEX_PURPOSE, domain.as_str());
    let sealed = seal_json(queue, POLICY_CONTEXT, &index, policy)?;
    let mut tx = queue.engine().begin_write()?;
    tx.put(MTA_STS_POLICIES, &index, &sealed)?;
    tx.commit()?;
    Ok(())
}

/// Section 3.3: GET the policy over HTTPS from `mta-sts.<domain>`, the certificate verified
/// for that name; only a `200` with `text/plain` counts.
pub async fn fetch_policy(
    resolver: &dyn Resolver,
    fetch: &FetchSettings,
    domain: &Domain,
    id: &str,
    now: i64,
) -> Result<Policy, String> {
    let host = format!("mta-sts.{domain}");
    let https = HttpsSettings {
        port: fetch.port,
        roots: Arc::clone(&fetch.roots),
        public_addresses_only: false,
    };
    let fetched = tokio::time::timeout(
        fetch.timeout,
        https::get(
            resolver,
            &https,
            &host,
            "/.well-known/mta-sts.txt",
            POLICY_SIZE_MAX_BYTES,
        ),
    )
    .await
    .map_err(|_| format!("fetching the policy from {host} timed out"))??;
    let text = policy_text(fetched).map_err(|error| format!("{host}: {error}"))?;
    Policy::parse(id, &text, now)
}

/// Section 3.3: the policy is `text/plain`, in UTF-8.
fn policy_text(fetched: Fetched) -> Result<String, String> {
    if fetched.content_type.as_deref() != Some("text/plain") {
        return Err(format!(
            "the policy's type is {:?}, not text/plain",
            fetched.content_type
        ));
    }
    String::from_utf8(fetched.body).map_err(|_| "the policy is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str =
        "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.backup.example.com\r\nmax_age: 604800\r\n";

    #[test]
    fn a_policy_parses_and_its_patterns_match_one_label() {
        let policy = Policy::parse("20261124", POLICY, 1000).expect("policy");
        assert_eq!(policy.mode, Mode::Enforce);
        assert_eq!(policy.max_age_secs, 604_800);
        assert!(policy.matches("MX1.example.com."));
        assert!(policy.matches("a.backup.example.com"));
        assert!(!policy.matches("a.b.backup.example.com"));
        assert!(!policy.matches("backup.example.com"));
        assert!(!policy.matches("mx2.example.com"));
        assert!(!policy.expired(1000 + 604_799));
        assert!(policy.expired(1000 + 604_800));
    }

    #[test]
    fn bad_policies_are_refused_with_a_reason() {
        for (text, reason) in [
            ("mode: enforce\nmx: a.test\nmax_age: 1\n", "version"),
            (
                "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n",
                "mode",
            ),
            ("version: STSv1\nmode: enforce\nmax_age: 1\n", "mx"),
            ("version: STSv1\nmode: enforce\nmx: a.test\n", "max_age"),
            (
                "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: soon\n",
                "max_age",
            ),
            ("version: STSv1\ngarbage\n", "colon"),
        ] {
            let error = Policy::parse("1", text, 0).expect_err(text);
            assert!(error.contains(reason), "{text}: {error}");
        }
        let none = Policy::parse("1", "version: STSv1\nmode: none\nmax_age: 99999999999\n", 0)
            .expect("none");
        assert_eq!(none.max_age_secs, POLICY_MAX_AGE_MAX_SECS);
    }

    #[test]
    fn exactly_one_sts_txt_record_with_a_valid_id_counts() {
        let txt = |records: &[&str]| {
            announced_id(&records.iter().map(|r| r.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(
            txt(&["v=spf1 -all", "v=STSv1; id=20261124T1;"]),
            Some("20261124T1".into())
        );
        assert_eq!(txt(&["v=STSv1; id=a;", "v=STSv1; id=b;"]), None);
        assert_eq!(txt(&["v=STSv1; id=not-alnum;"]), None);
        assert_eq!(txt(&["v=STSv1;"]), None);
        assert_eq!(txt(&[]), None);
    }

    #[test]
    fn only_text_plain_in_utf8_is_a_policy() {
        let fetched = |content_type: &str, body: &[u8]| Fetched {
            content_type: Some(content_type.into()),
            body: body.to_vec(),
        };
        assert_eq!(policy_text(fetched("text/plain", b"ok")), Ok("ok".into()));
        assert!(policy_text(fetched("text/html", b"<html>"))
            .expect_err("html")
            .contains("text/plain"));
        assert!(policy_text(fetched("text/plain", &[0xff, 0xfe])).is_err());
    }
}
