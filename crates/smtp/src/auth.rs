//! Sender authentication of inbound (MX) mail, on the plaintext held in memory before it is
//! encrypted: SPF (RFC 7208) on the MAIL FROM domain, or the HELO name for the null sender;
//! DKIM (RFC 6376, Ed25519 per RFC 8463) on every signature; DMARC (RFC 7489, as revised by
//! RFC 9989, which `mail-auth` 0.13 follows) on the `From:` domain with relaxed or strict
//! alignment as the record says; ARC (RFC 8617) when a chain is present; iprev (RFC 8601
//! section 3, forward-confirmed reverse DNS) of the client address. The results go in one
//! `Authentication-Results` header field (RFC 8601), and any field from outside that claims our
//! authserv-id is removed (RFC 8601 section 5) so a sender cannot forge our verdict.
//!
//! Verification is `mail-auth`'s. DNS goes through `mail-auth`'s resolver with a per-message
//! cache in front of it ([`MessageAuthenticator`] looks in the cache before it asks the
//! network). That cache is the seam for tests: [`SenderAuthenticator::from_records`] fills it
//! from a [`DnsRecords`] map and answers every name the map lacks with "no such record", so a
//! test never reaches the network (mox's mock resolver, the same idea).
//!
//! Our own DNS trouble never refuses mail: a timeout gives `temperror`, and only a definite
//! DMARC `fail` under `p=reject` makes the session answer 550.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::DkimError;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::{Dmarc, Policy};
use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::report::{PolicyPublished, Record as ReportRecord, SPFDomainScope};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::spf::Spf;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput,
    DmarcResult, DnsError, DnssecStatus, Error as MailAuthError, MessageAuthenticator, Parameters,
    RecordSet, ResolverCache, SpfOutput, SpfResult, Txt, MX,
};

/// RFC 7208 section 4.6.4: at most 10 DNS-querying terms (include, a, mx, ptr, exists,
/// redirect) per SPF evaluation. `mail-auth` enforces it (`permerror` past it); named here so
/// the limit is visible where the checks are wired.
pub const SPF_DNS_TERMS_MAX: u32 = 10;
/// RFC 7208 section 4.6.4: at most 2 "void" lookups (no answer) per SPF evaluation. NOT
/// enforced: `mail-auth` does not count them, and a failed A/AAAA/MX answer never reaches the
/// cache where we could. [`DNS_LOOKUPS_PER_MESSAGE_MAX`] bounds the work instead.
pub const SPF_VOID_LOOKUPS_MAX: u32 = 2;
/// DNS questions for one message at most, over every check. SPF's 10 terms (each of which may
/// ask for A and AAAA, and up to 10 MX hosts for `mx`), a DMARC tree walk (at most 8 names),
/// the DKIM and ARC keys and iprev fit; a message past it gets `temperror` for what is left.
pub const DNS_LOOKUPS_PER_MESSAGE_MAX: u32 = 100;
/// DKIM signatures verified per message at most; the rest are ignored. A message with more is
/// an attempt to make us do public-key work and DNS lookups.
pub const DKIM_SIGNATURES_VERIFIED_MAX: usize = 10;
/// Each check (SPF, DKIM, DMARC, ARC, iprev) is abandoned as `temperror` after this, so a slow
/// resolver cannot hold a session past its idle timeout.
pub const CHECK_TIMEOUT_SECS: u64 = 15;
/// One DNS query of the production resolver times out after this...
pub const DNS_QUERY_TIMEOUT_SECS: u64 = 5;
/// ...and is tried this many times.
pub const DNS_QUERY_ATTEMPTS: usize = 2;
/// RFC 8601 section 3 (iprev): PTR names whose addresses are looked up at most.
pub const IPREV_NAMES_MAX: usize = 2;

/// How much each authentication failure adds to the spam score. The weights combine with the
/// classifier and the phishing score as independent evidence: `1 - Π(1 - w)`. They are small
/// on purpose: an unsure message (0.5) with DMARC and SPF both failing comes to 0.595, still
/// under the default Junk threshold (0.6); it takes one more failure, or a classifier leaning
/// towards spam, to file it in Junk. DMARC's own `p=quarantine` files in Junk regardless.
pub const SPAM_WEIGHT_DMARC_FAIL: f64 = 0.1;
pub const SPAM_WEIGHT_SPF_FAIL: f64 = 0.1;
pub const SPAM_WEIGHT_SPF_SOFTFAIL: f64 = 0.05;
/// Every DKIM signature failed (none passed).
pub const SPAM_WEIGHT_DKIM_FAIL: f64 = 0.05;
/// The client's address has no PTR or its names do not lead back to it.
pub const SPAM_WEIGHT_IPREV_FAIL: f64 = 0.03;
/// The client's address is on a DNS blocklist the operator chose (RFC 5782). Strong: with an
/// unsure classifier (0.5) one listing alone files the message in Junk (0.75).
pub const SPAM_WEIGHT_DNSBL_LISTED: f64 = 0.5;
/// Blocklists consulted per message at most.
pub const DNSBL_ZONES_MAX: usize = 8;

/// Why an authenticator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the system resolver configuration: {0}")]
    ResolverConfig(String),
}

/// DNS records in memory, for tests: every name not here has no records.
#[derive(Debug, Clone, Default)]
pub struct DnsRecords {
    txt: HashMap<String, Vec<String>>,
    ip: HashMap<String, Vec<IpAddr>>,
    mx: HashMap<String, Vec<(u16, String)>>,
    ptr: HashMap<IpAddr, Vec<String>>,
    failing: HashSet<String>,
}

/// A name as the resolver's caches key it: lowercase, fully qualified.
fn fqdn(name: &str) -> String {
    let mut name = name.to_ascii_lowercase();
    if !name.ends_with('.') {
        name.push('.');
    }
    name
}

impl DnsRecords {
    pub fn with_txt(mut self, name: &str, value: &str) -> DnsRecords {
        self.txt
            .entry(fqdn(name))
            .or_default()
            .push(value.to_string());
        self
    }

    pub fn with_ip(mut self, name: &str, address: IpAddr) -> DnsRecords {
        self.ip.entry(fqdn(name)).or_default().push(address);
        self
    }

    pub fn with_mx(mut self, name: &str, preference: u16, exchange: &str) -> DnsRecords {
        self.mx
            .entry(fqdn(name))
            .or_default()
            .push((preference, fqdn(exchange)));
        self
    }

    pub fn with_ptr(mut self, address: IpAddr, name: &str) -> DnsRecords {
        self.ptr.entry(address).or_default().push(fqdn(name));
        self
    }

    /// TXT lookups of `name` fail as a resolver timeout would (the `temperror` path).
    pub fn with_failing(mut self, name: &str) -> DnsRecords {
        self.failing.insert(fqdn(name));
        self
    }
}

/// The TXT record at `name` parsed as what that name holds: a DKIM key under `_domainkey`, a
/// DMARC policy under `_dmarc`, SPF elsewhere. Like the resolver, the first record that parses
/// wins.
fn parse_txt(name: &str, values: &[String]) -> Txt {
    let mut parsed = Txt::Error(MailAuthError::Dns(DnsError::InvalidRecordType));
    for value in values {
        let bytes = value.as_bytes();
        parsed = if name.contains("._domainkey.") {
            DomainKey::parse(bytes).into()
        } else if name.starts_with("_dmarc.") {
            Dmarc::parse(bytes).into()
        } else {
            Spf::parse(bytes).into()
        };
        if !matches!(parsed, Txt::Error(_)) {
            break;
        }
    }
    parsed
}

/// A record set cannot say "no such name"; empty is what a check sees as no match.
fn empty_if<T>(authoritative: bool) -> Option<RecordSet<T>> {
    authoritative.then(|| record_set(Vec::new()))
}

fn record_set<T>(values: Vec<T>) -> RecordSet<T> {
    RecordSet {
        rrset: Arc::from(values.into_boxed_slice()),
        dnssec_status: DnssecStatus::Indeterminate,
    }
}

/// One kind of record for one message: what was looked up (or, in tests, all there is), a
/// shared count of questions, and what to answer when a name is not known.
struct Layer<K, V> {
    entries: Mutex<HashMap<K, V>>,
    /// `Some` in tests: the map is all there is, and a missing name gets this.
    absent: Option<V>,
    /// What a lookup past [`DNS_LOOKUPS_PER_MESSAGE_MAX`] gets.
    over_limit: V,
    lookups: Arc<AtomicU32>,
}

impl<K: Hash + Eq, V: Clone> Layer<K, V> {
    fn new(absent: Option<V>, over_limit: V, lookups: &Arc<AtomicU32>) -> Layer<K, V> {
        Layer {
            entries: Mutex::new(HashMap::new()),
            absent,
            over_limit,
            lookups: Arc::clone(lookups),
        }
    }

    fn preload(&self, key: K, value: V) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(key, value);
        }
    }
}

/// Every `get` is one question a check asks (`mail-auth` looks in the cache before each
/// lookup), so the per-message limit is counted here.
impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for Layer<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.lookups.fetch_add(1, Ordering::Relaxed) >= DNS_LOOKUPS_PER_MESSAGE_MAX {
            return Some(self.over_limit.clone());
        }
        let known = self
            .entries
            .lock()
            .ok()
            .and_then(|entries| entries.get(name).cloned());
        known.or_else(|| self.absent.clone())
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries
            .lock()
            .ok()
            .and_then(|mut entries| entries.remove(name))
    }

    fn insert(&self, key: K, value: V, _valid_until: Instant) {
        self.preload(key, value);
    }
}

fn dns_error(text: &str) -> MailAuthError {
    MailAuthError::Dns(DnsError::Resolver(text.to_string()))
}

/// The caches of one message's checks.
struct MessageDns {
    txt: Layer<Box<str>, Txt>,
    mx: Layer<Box<str>, RecordSet<MX>>,
    ipv4: Layer<Box<str>, RecordSet<Ipv4Addr>>,
    ipv6: Layer<Box<str>, RecordSet<Ipv6Addr>>,
    ptr: Layer<IpAddr, RecordSet<Box<str>>>,
}

type Params<'x, P> = Parameters<
    'x,
    P,
    Layer<Box<str>, Txt>,
    Layer<Box<str>, RecordSet<MX>>,
    Layer<Box<str>, RecordSet<Ipv4Addr>>,
    Layer<Box<str>, RecordSet<Ipv6Addr>>,
    Layer<IpAddr, RecordSet<Box<str>>>,
>;

impl MessageDns {
    fn new(records: Option<&DnsRecords>) -> MessageDns {
        let lookups = Arc::new(AtomicU32::new(0));
        let authoritative = records.is_some();
        let not_found = || {
            Txt::Error(MailAuthError::Dns(DnsError::RecordNotFound(
                ResponseCode::NXDomain,
            )))
        };
        let over_limit = || Txt::Error(dns_error("DNS lookup limit for this message reached"));
        // A record set cannot say "no such name"; empty is what a check sees as no match.
        let dns = MessageDns {
            txt: Layer::new(authoritative.then(not_found), over_limit(), &lookups),
            mx: Layer::new(empty_if(authoritative), record_set(Vec::new()), &lookups),
            ipv4: Layer::new(empty_if(authoritative), record_set(Vec::new()), &lookups),
            ipv6: Layer::new(empty_if(authoritative), record_set(Vec::new()), &lookups),
            ptr: Layer::new(empty_if(authoritative), record_set(Vec::new()), &lookups),
        };
        if let Some(records) = records {
            for (name, values) in &records.txt {
                dns.txt
                    .preload(name.as_str().into(), parse_txt(name, values));
            }
            for name in &records.failing {
                dns.txt
                    .preload(name.as_str().into(), Txt::Error(dns_error("timed out")));
            }
            for (name, addresses) in &records.ip {
                let v4 = addresses
                    .iter()
                    .filter_map(|address| match address {
                        IpAddr::V4(v4) => Some(*v4),
                        IpAddr::V6(_) => None,
                    })
                    .collect();
                let v6 = addresses
                    .iter()
                    .filter_map(|address| match address {
                        IpAddr::V6(v6) => Some(*v6),
                        IpAddr::V4(_) => None,
                    })
                    .collect();
                dns.ipv4.preload(name.as_str().into(), record_set(v4));
                dns.ipv6.preload(name.as_str().into(), record_set(v6));
            }
            for (name, exchanges) in &records.mx {
                let mut sorted = exchanges.clone();
                sorted.sort();
                let set = sorted
                    .into_iter()
                    .map(|(preference, exchange)| MX {
                        preference,
                        exchanges: vec![exchange.into_boxed_str()].into_boxed_slice(),
                    })
                    .collect();
                dns.mx.preload(name.as_str().into(), record_set(set));
            }
            for (address, names) in &records.ptr {
                let names = names.iter().map(|name| name.as_str().into()).collect();
                dns.ptr.preload(*address, record_set(names));
            }
        }
        dns
    }

    fn params<P>(&self, params: P) -> Params<'_, P> {
        Parameters::new(params)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
            .with_ptr_cache(&self.ptr)
    }
}

/// What the session knows about one inbound message.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    pub message: &'a [u8],
    pub client_ip: IpAddr,
    /// The EHLO/HELO name as given.
    pub helo: &'a str,
    /// The reverse-path; empty for the null sender.
    pub mail_from: &'a str,
    /// Our host name: the authserv-id of the header we write.
    pub hostname: &'a str,
}

/// What DMARC asks us to do with a message that failed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcDisposition {
    /// Passed, no policy, `p=none`, or no definite failure.
    Deliver,
    /// `p=quarantine` (or `p=reject` in test mode, `t=y`): file in Junk.
    Quarantine,
    /// `p=reject`: refuse at the end of DATA.
    Reject,
}

/// The outcome of every check for one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// `Authentication-Results: ...` with CRLF, ready to prepend.
    pub header: String,
    pub spf: SpfResult,
    /// `pass`, `fail`, `none`, ... as in the header (the best DKIM result).
    pub dkim: &'static str,
    pub dmarc: &'static str,
    /// The From: domain DMARC looked at (empty when there is none).
    pub dmarc_domain: String,
    pub disposition: DmarcDisposition,
    /// The From: domain is authenticated (trust its display name, learn its Autocrypt key,
    /// count it as a known correspondent): DMARC passed, or the domain publishes no DMARC
    /// record and a passing DKIM signature or SPF check names it or a parent of it (the
    /// identifier alignment of RFC 7489 section 3.1 without the organisational-domain step).
    pub from_authenticated: bool,
    /// Added to the spam score (see [`SPAM_WEIGHT_DMARC_FAIL`]), with its reasons.
    pub spam_weight: f64,
    pub spam_reasons: Vec<(String, f64)>,
    /// The From: domain asked for aggregate reports (`rua=mailto:`): this evaluation goes in
    /// the next one.
    pub dmarc_report: Option<DmarcEvaluation>,
}

/// One DMARC evaluation to report to the From: domain (RFC 7489 section 7.2).
pub type DmarcEvaluation = letterlock_queue::dmarc_reports::Evaluation;

/// Runs the checks. One per server, shared by every session.
pub struct SenderAuthenticator {
    resolver: MessageAuthenticator,
    /// Tests: all the DNS there is.
    records: Option<Arc<DnsRecords>>,
    check_timeout: Duration,
    /// DNS blocklist zones to ask about the client's address (none by default).
    dnsbl_zones: Vec<String>,
}

impl fmt::Debug for SenderAuthenticator {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SenderAuthenticator")
            .field("records", &self.records.is_some())
            .field("check_timeout", &self.check_timeout)
            .finish()
    }
}

impl SenderAuthenticator {
    /// Production: the system's resolvers (`/etc/resolv.conf`), with our query timeout.
    pub fn from_system_conf() -> Result<SenderAuthenticator, AuthError> {
        let (config, mut options) = mail_auth::hickory_resolver::system_conf::read_system_conf()
            .map_err(|error| AuthError::ResolverConfig(error.to_string()))?;
        options.timeout = Duration::from_secs(DNS_QUERY_TIMEOUT_SECS);
        options.attempts = DNS_QUERY_ATTEMPTS;
        let resolver = MessageAuthenticator::new(config, options)
            .map_err(|error| AuthError::ResolverConfig(error.to_string()))?;
        Ok(SenderAuthenticator {
            resolver,
            records: None,
            check_timeout: Duration::from_secs(CHECK_TIMEOUT_SECS),
            dnsbl_zones: Vec::new(),
        })
    }

    /// Tests: DNS is `records` and nothing else; no name server is configured, and every
    /// question is answered from the map before one would be asked.
    pub fn from_records(records: DnsRecords) -> Result<SenderAuthenticator, AuthError> {
        let resolver = MessageAuthenticator::new(
            ResolverConfig::from_parts(None, Vec::new(), Vec::new()),
            ResolverOpts::default(),
        )
        .map_err(|error| AuthError::ResolverConfig(error.to_string()))?;
        Ok(SenderAuthenticator {
            resolver,
            records: Some(Arc::new(records)),
            check_timeout: Duration::from_secs(CHECK_TIMEOUT_SECS),
            dnsbl_zones: Vec::new(),
        })
    }

    /// Consult these DNS blocklists (RFC 5782) about each client (at most
    /// [`DNSBL_ZONES_MAX`]).
    pub fn with_dnsbl_zones(mut self, zones: &[String]) -> SenderAuthenticator {
        self.dnsbl_zones = zones
            .iter()
            .map(|zone| zone.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|zone| !zone.is_empty())
            .take(DNSBL_ZONES_MAX)
            .collect();
        self
    }

    /// RFC 5782 section 2.1: the zones listing `ip` (an A record in 127.0.0.0/8 at the
    /// reversed address under the zone). Answers outside 127/8, and 127.255.255.0/24 (the
    /// error codes big lists send to resolvers they refuse), do not count: a broken list must
    /// not block the world. Lookup failures count as not listed.
    async fn dnsbl(&self, dns: &MessageDns, ip: IpAddr) -> Vec<String> {
        let mut listed = Vec::new();
        for zone in &self.dnsbl_zones {
            let name = format!("{}.{zone}", reversed_address(ip));
            if let Ok(answers) = self.resolver.ipv4_lookup(&name, Some(&dns.ipv4)).await {
                let listing = answers.rrset.iter().any(|answer| {
                    let [first, second, third, _] = answer.octets();
                    first == 127 && !(second == 255 && third == 255)
                });
                if listing {
                    listed.push(zone.clone());
                }
            }
        }
        listed
    }

    /// Run every check on one message.
    pub async fn authenticate(&self, envelope: &Envelope<'_>) -> Verdict {
        let dns = MessageDns::new(self.records.as_deref());
        let timeout = self.check_timeout;
        let ip = envelope.client_ip;
        let helo = envelope.helo.trim_start_matches('[').trim_end_matches(']');
        let mail_from = envelope.mail_from;
        // RFC 7208 section 2.4: the null sender is checked as postmaster@HELO.
        let spf_domain = match mail_from.rsplit_once('@') {
            Some((_, domain)) if !mail_from.is_empty() => domain,
            _ => helo,
        };

        let spf_params = if mail_from.is_empty() {
            SpfParameters::verify_ehlo(ip, helo, envelope.hostname)
        } else {
            SpfParameters::verify_mail_from(ip, helo, envelope.hostname, mail_from)
        };
        let spf =
            match tokio::time::timeout(timeout, self.resolver.verify_spf(dns.params(spf_params)))
                .await
            {
                Ok(output) => output,
                Err(_) => SpfOutput::new(spf_domain.to_string()).with_result(SpfResult::TempError),
            };

        let parsed = AuthenticatedMessage::parse(envelope.message);
        let mut pieces = String::new();
        let hostname = envelope.hostname;
        // Each method is written by mail-auth's builder on its own and the pieces joined, so
        // the order is fixed and a method with nothing to report still says `none`. The
        // builder prints the authserv-id first; it is written once, below.
        let push = |pieces: &mut String, results: AuthenticationResults<'_>| {
            let text = results.to_string();
            pieces.push_str(text.strip_prefix(hostname).unwrap_or(&text))
        };
        push(
            &mut pieces,
            if mail_from.is_empty() {
                AuthenticationResults::new(hostname).with_spf_ehlo_result(&spf, ip, helo)
            } else {
                AuthenticationResults::new(hostname)
                    .with_spf_mailfrom_result(&spf, ip, mail_from, helo)
            },
        );

        let (dkim_word, dmarc_word, dmarc_domain, disposition, dmarc_report, aligned) = match parsed
        {
            Some(mut message) => {
                message.dkim_headers.truncate(DKIM_SIGNATURES_VERIFIED_MAX);
                let message = message;
                let dkim: Vec<DkimOutput<'_>> =
                    tokio::time::timeout(timeout, self.resolver.verify_dkim(dns.params(&message)))
                        .await
                        .unwrap_or_else(|_| {
                            vec![DkimOutput::temp_err(dns_error("DKIM checks timed out"))]
                        });
                let dkim = body_hash_mismatch_is_fail(dkim, &message);
                let header_from = message.from().to_string();
                if dkim.is_empty() {
                    pieces.push_str(";\r\n\tdkim=none");
                } else {
                    push(
                        &mut pieces,
                        AuthenticationResults::new(hostname).with_dkim_results(&dkim, &header_from),
                    );
                }
                let dkim_word = best_dkim(&dkim);

                let arc =
                    tokio::time::timeout(timeout, self.resolver.verify_arc(dns.params(&message)))
                        .await
                        .unwrap_or_else(|_| {
                            ArcOutput::default().with_result(DkimResult::TempError(dns_error(
                                "ARC checks timed out",
                            )))
                        });

                let dmarc = tokio::time::timeout(
                    timeout,
                    self.resolver.verify_dmarc(
                        dns.params(DmarcParameters::new(&message, &dkim, spf_domain, &spf)),
                    ),
                )
                .await
                .unwrap_or_else(|_| {
                    DmarcOutput::default()
                        .with_domain(&header_from_domain(&header_from))
                        .with_spf_result(DmarcResult::TempError(dns_error(
                            "DMARC checks timed out",
                        )))
                });
                push(
                    &mut pieces,
                    AuthenticationResults::new(hostname).with_dmarc_result(&dmarc),
                );
                push(
                    &mut pieces,
                    AuthenticationResults::new(hostname).with_arc_result(&arc, ip),
                );
                let dmarc_report = dmarc.dmarc_record().and_then(|record| {
                    // mail-auth keeps only mailto: URIs, without the scheme.
                    let rua: Vec<String> = record
                        .rua()
                        .iter()
                        .map(|uri| uri.uri().to_string())
                        .collect();
                    (!rua.is_empty()).then(|| DmarcEvaluation {
                        policy: PolicyPublished::from_record(dmarc.domain(), record),
                        rua,
                        record: ReportRecord::new()
                            .with_source_ip(ip)
                            .with_header_from(dmarc.domain())
                            .with_envelope_from(spf_domain)
                            .with_dkim_output(&dkim)
                            .with_spf_output(&spf, SPFDomainScope::MailFrom)
                            .with_dmarc_output(&dmarc),
                    })
                });
                let from_domain = header_from_domain(&header_from);
                let aligned = dkim.iter().any(|output| {
                    *output.result() == DkimResult::Pass
                        && output
                            .signature()
                            .is_some_and(|signature| aligned_with(&from_domain, &signature.d))
                }) || (spf.result() == SpfResult::Pass
                    && aligned_with(&from_domain, spf_domain));
                let dmarc_result = dmarc.result();
                let disposition = match (&dmarc_result, dmarc.policy()) {
                    (DmarcResult::Fail(_), Policy::Reject) => DmarcDisposition::Reject,
                    (DmarcResult::Fail(_), Policy::Quarantine) => DmarcDisposition::Quarantine,
                    _ => DmarcDisposition::Deliver,
                };
                (
                    dkim_word,
                    dmarc_word(&dmarc_result),
                    dmarc.domain().to_string(),
                    disposition,
                    dmarc_report,
                    aligned,
                )
            }
            None => {
                // Not a message mail-auth can read: nothing to verify beyond the envelope.
                pieces.push_str(";\r\n\tdkim=none;\r\n\tdmarc=none;\r\n\tarc=none");
                (
                    "none",
                    "none",
                    String::new(),
                    DmarcDisposition::Deliver,
                    None,
                    false,
                )
            }
        };

        let iprev = tokio::time::timeout(timeout, self.iprev(&dns, ip))
            .await
            .unwrap_or(Iprev::TempError);
        pieces.push_str(&format!(";\r\n\tiprev={} policy.iprev={ip}", iprev.word()));

        let listed = tokio::time::timeout(timeout, self.dnsbl(&dns, ip))
            .await
            .unwrap_or_default();

        let mut spam_reasons = Vec::new();
        for zone in &listed {
            spam_reasons.push((format!("dnsbl: {zone}"), SPAM_WEIGHT_DNSBL_LISTED));
        }
        if dmarc_word == "fail" {
            spam_reasons.push(("auth: dmarc=fail".to_string(), SPAM_WEIGHT_DMARC_FAIL));
        }
        match spf.result() {
            SpfResult::Fail => spam_reasons.push(("auth: spf=fail".into(), SPAM_WEIGHT_SPF_FAIL)),
            SpfResult::SoftFail => {
                spam_reasons.push(("auth: spf=softfail".into(), SPAM_WEIGHT_SPF_SOFTFAIL))
            }
            _ => {}
        }
        if dkim_word == "fail" {
            spam_reasons.push(("auth: dkim=fail".into(), SPAM_WEIGHT_DKIM_FAIL));
        }
        if matches!(iprev, Iprev::Fail | Iprev::PermError) {
            spam_reasons.push((
                format!("auth: iprev={}", iprev.word()),
                SPAM_WEIGHT_IPREV_FAIL,
            ));
        }
        let spam_weight = 1.0
            - spam_reasons
                .iter()
                .map(|(_, weight)| 1.0 - weight)
                .product::<f64>();

        Verdict {
            header: format!("Authentication-Results: {}{pieces}\r\n", envelope.hostname),
            spf: spf.result(),
            dkim: dkim_word,
            dmarc: dmarc_word,
            dmarc_domain,
            disposition,
            from_authenticated: dmarc_word == "pass" || (dmarc_word == "none" && aligned),
            spam_weight,
            spam_reasons,
            dmarc_report,
        }
    }

    /// RFC 8601 section 3: the client's PTR names, and whether one of them (at most
    /// [`IPREV_NAMES_MAX`]) has the client's address among its own.
    async fn iprev(&self, dns: &MessageDns, ip: IpAddr) -> Iprev {
        let names = match self.resolver.ptr_lookup(ip, Some(&dns.ptr)).await {
            Ok(names) if names.rrset.is_empty() => return Iprev::PermError,
            Ok(names) => names,
            Err(MailAuthError::Dns(DnsError::Resolver(_))) => return Iprev::TempError,
            Err(_) => return Iprev::PermError,
        };
        let mut temporary = false;
        for name in names.rrset.iter().take(IPREV_NAMES_MAX) {
            let found = match ip {
                IpAddr::V4(v4) => self
                    .resolver
                    .ipv4_lookup(name.as_ref(), Some(&dns.ipv4))
                    .await
                    .map(|set| set.rrset.contains(&v4)),
                IpAddr::V6(v6) => self
                    .resolver
                    .ipv6_lookup(name.as_ref(), Some(&dns.ipv6))
                    .await
                    .map(|set| set.rrset.contains(&v6)),
            };
            match found {
                Ok(true) => return Iprev::Pass,
                Ok(false) => {}
                Err(MailAuthError::Dns(DnsError::Resolver(_))) => temporary = true,
                Err(_) => {}
            }
        }
        if temporary {
            Iprev::TempError
        } else {
            Iprev::Fail
        }
    }
}

/// RFC 5782 section 2.1 (IPv4: `2.0.0.127`) and 2.4 (IPv6: 32 nibbles, least significant
/// first).
fn reversed_address(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => v6
            .octets()
            .iter()
            .rev()
            .flat_map(|byte| [byte & 0x0f, byte >> 4])
            .map(|nibble| format!("{nibble:x}"))
            .collect::<Vec<_>>()
            .join("."),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Iprev {
    Pass,
    Fail,
    TempError,
    PermError,
}

impl Iprev {
    fn word(self) -> &'static str {
        match self {
            Iprev::Pass => "pass",
            Iprev::Fail => "fail",
            Iprev::TempError => "temperror",
            Iprev::PermError => "permerror",
        }
    }
}

/// Whether `identifier` (a DKIM `d=` or the MAIL FROM domain) is `from_domain` or a parent of
/// it: whoever controls `identifier`'s DNS controls its subdomains too.
fn aligned_with(from_domain: &str, identifier: &str) -> bool {
    let identifier = identifier.trim_end_matches('.').to_ascii_lowercase();
    let from_domain = from_domain.trim_end_matches('.');
    !identifier.is_empty()
        && (from_domain == identifier
            || from_domain
                .strip_suffix(identifier.as_str())
                .is_some_and(|rest| rest.ends_with('.')))
}

fn header_from_domain(from: &str) -> String {
    from.rsplit_once('@')
        .map(|(_, domain)| domain.to_ascii_lowercase())
        .unwrap_or_default()
}

/// RFC 8601 section 2.7.1: a signature that does not verify is `fail`; mail-auth calls a body
/// hash mismatch `neutral`, which would hide a tampered body from whoever reads the header.
fn body_hash_mismatch_is_fail<'x>(
    outputs: Vec<DkimOutput<'x>>,
    message: &'x AuthenticatedMessage<'x>,
) -> Vec<DkimOutput<'x>> {
    outputs
        .into_iter()
        .map(|output| {
            let DkimResult::Neutral(error @ MailAuthError::Dkim(DkimError::FailedBodyHashMatch)) =
                output.result()
            else {
                return output;
            };
            let signed = output.signature().and_then(|signature| {
                message
                    .dkim_headers
                    .iter()
                    .find(|header| &header.header == signature)
            });
            match signed {
                Some(header) => DkimOutput::fail(error.clone()).with_signature(&header.header),
                None => output,
            }
        })
        .collect()
}

/// The most favourable DKIM result: one good signature is enough (RFC 6376 section 6.1).
fn best_dkim(outputs: &[DkimOutput<'_>]) -> &'static str {
    let rank = |result: &DkimResult| match result {
        DkimResult::Pass => (0, "pass"),
        DkimResult::TempError(_) => (1, "temperror"),
        DkimResult::Fail(_) => (2, "fail"),
        DkimResult::Neutral(_) => (3, "neutral"),
        DkimResult::PermError(_) => (3, "permerror"),
        DkimResult::None => (5, "none"),
    };
    outputs
        .iter()
        .map(|output| rank(output.result()))
        .min()
        .map_or("none", |(_, word)| word)
}

fn dmarc_word(result: &DmarcResult) -> &'static str {
    match result {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

/// `message` without the `Authentication-Results` fields whose authserv-id is `hostname`
/// (RFC 8601 section 5: they cannot be ours, since we have not seen the message before).
/// Fields naming other servers stay: they are the history of the message.
pub fn strip_forged_results(message: &[u8], hostname: &str) -> Vec<u8> {
    const NAME: &[u8] = b"Authentication-Results:";
    let mut out = Vec::with_capacity(message.len());
    let mut lines = message.split_inclusive(|&byte| byte == b'\n').peekable();
    let mut in_header = true;
    while let Some(line) = lines.next() {
        if !in_header {
            out.extend_from_slice(line);
            continue;
        }
        if line == b"\r\n" || line == b"\n" {
            in_header = false;
            out.extend_from_slice(line);
            continue;
        }
        let is_results = line.len() >= NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME);
        if !is_results {
            out.extend_from_slice(line);
            continue;
        }
        let mut field = line.to_vec();
        while let Some(next) = lines.peek() {
            if matches!(next.first(), Some(b' ' | b'\t')) {
                field.extend_from_slice(next);
                lines.next();
            } else {
                break;
            }
        }
        let value = String::from_utf8_lossy(&field[NAME.len()..]);
        if !authserv_id(&value).eq_ignore_ascii_case(hostname) {
            out.extend_from_slice(&field);
        }
    }
    out
}

/// The authserv-id of an `Authentication-Results` value (RFC 8601 section 2.2): the first
/// token, after any comments and white space, up to `;` or white space.
fn authserv_id(value: &str) -> &str {
    let mut rest = value.trim_start();
    // Comments may precede it: `(comment) host; ...`.
    while let Some(after) = rest.strip_prefix('(') {
        let mut depth = 1usize;
        let mut end = after.len();
        for (index, character) in after.char_indices() {
            match character {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = index + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = after[end.min(after.len())..].trim_start();
    }
    let end = rest
        .find(|character: char| character == ';' || character.is_whitespace())
        .unwrap_or(rest.len());
    rest[..end].trim_matches('"')
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_identifier_aligns_with_its_own_domain_and_subdomains_only() {
        assert!(aligned_with("example.org", "example.org"));
        assert!(aligned_with("mail.example.org", "Example.ORG."));
        assert!(!aligned_with("example.org", "mail.example.org"));
        assert!(!aligned_with("badexample.org", "example.org"));
        assert!(!aligned_with("example.org", "org.example"));
        assert!(!aligned_with("example.org", ""));
    }
    use super::*;

    #[test]
    fn addresses_are_reversed_as_rfc_5782_says() {
        assert_eq!(
            reversed_address("192.0.2.99".parse().expect("ip")),
            "99.2.0.192"
        );
        assert_eq!(
            reversed_address("2001:db8:1:2:3:4:567:89ab".parse().expect("ip")),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2"
        );
    }

    #[test]
    fn only_results_claiming_our_authserv_id_are_removed() {
        let message = b"Authentication-Results: MX.example.org;\r\n\tspf=pass smtp.mailfrom=x@y\r\nAuthentication-Results: (forged) mx.example.org; dkim=pass\r\nAuthentication-Results: other.example; spf=fail\r\nSubject: hi\r\n\r\nAuthentication-Results: mx.example.org; body stays\r\n";
        let stripped = strip_forged_results(message, "mx.example.org");
        assert_eq!(
            String::from_utf8_lossy(&stripped),
            "Authentication-Results: other.example; spf=fail\r\nSubject: hi\r\n\r\nAuthentication-Results: mx.example.org; body stays\r\n"
        );
    }

    #[test]
    fn authserv_id_skips_comments_and_stops_at_separators() {
        assert_eq!(authserv_id(" host.example; spf=pass"), "host.example");
        assert_eq!(
            authserv_id(" (c (nested)) host.example 1; none"),
            "host.example"
        );
        assert_eq!(authserv_id(""), "");
    }
}
