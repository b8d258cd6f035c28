//! DMARC aggregate reports (RFC 7489 section 7.2, RFC 9990's format): what inbound mail's DMARC
//! checks found is collected per sending domain that asks for reports (`rua=mailto:`), and
//! once a day each domain gets one report (gzipped XML in a message built by `mail-auth`),
//! sent through the outbound queue. Reports other servers send about our domains are parsed
//! (by `mail-auth`) and kept for `letterlock dmarc report`.
//!
//! Tables (every value sealed under the queue key, JSON inside: who writes to us, from where,
//! is as private as the mail):
//! - `dmarc_domains`: keyed hash of the domain → the domain, its `rua` addresses, its
//!   published policy, when collecting began, how many records are held and how many dropped.
//! - `dmarc_collected`: keyed hash of the domain, then a random id → one evaluation.
//! - `dmarc_received`: arrival time, then a random id → a parsed report about one of ours.

use letterlock_storage::{KeyRange, Table};
use letterlock_types::{Domain, EmailAddress};
use mail_auth::report::{PolicyPublished, Record, Report};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::dkim::DkimKeys;
use crate::error::{QueueError, Result};
use crate::resolver::{DnsError, Resolver};
use crate::store::Queue;

pub const DMARC_DOMAINS: Table = Table::new("dmarc_domains");
pub const DMARC_COLLECTED: Table = Table::new("dmarc_collected");
pub const DMARC_RECEIVED: Table = Table::new("dmarc_received");

/// RFC 7489 section 6.3 `ri`: one report a day is the default (and what we send).
pub const REPORT_INTERVAL_SECS: i64 = 86_400;
/// Evaluations kept for one domain per report; past this they are counted, not kept.
pub const RECORDS_PER_DOMAIN_MAX: u32 = 10_000;
/// Domains collected for at once; past this, new domains are not reported on.
pub const DOMAINS_MAX: usize = 10_000;
/// `rua` addresses one report goes to at most.
pub const RUA_ADDRESSES_MAX: usize = 4;
/// Received reports listed at most.
pub const RECEIVED_LISTED_MAX: usize = 1_000;
/// A received report message is parsed only up to this size (the XML inside, unzipped).
pub const RECEIVED_REPORT_SIZE_MAX_BYTES: usize = 10 * 1024 * 1024;

const INDEX_PURPOSE: &[u8] = b"letterlock dmarc index v1";
const DOMAIN_CONTEXT: &[u8] = b"letterlock dmarc domain";
const RECORD_CONTEXT: &[u8] = b"letterlock dmarc record";
const RECEIVED_CONTEXT: &[u8] = b"letterlock dmarc received";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DomainEntry {
    domain: String,
    rua: Vec<String>,
    policy: PolicyPublished,
    first_unix: i64,
    records: u32,
    dropped: u32,
}

/// One DMARC evaluation of inbound mail, for the From: domain's aggregate report.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub policy: PolicyPublished,
    /// The `rua` mailto addresses.
    pub rua: Vec<String>,
    pub record: Record,
}

/// Evaluations gathered in memory and written in batches, so a busy MX does not spend a
/// durable commit on each message's statistics. A batch is written once it holds
/// `flush_records` evaluations or its oldest is `flush_after` old (checked as evaluations
/// arrive); what is buffered when the process stops is lost, which an aggregate report can bear.
pub struct Collector {
    reports: DmarcReports,
    flush_records: usize,
    flush_after: std::time::Duration,
    buffer: std::sync::Mutex<(Vec<Evaluation>, Option<std::time::Instant>)>,
}

/// Evaluations per batch write, and the longest an evaluation waits in memory.
pub const COLLECTOR_FLUSH_RECORDS: usize = 64;
pub const COLLECTOR_FLUSH_AFTER_SECS: u64 = 60;

impl Collector {
    pub fn new(reports: DmarcReports, flush_records: usize) -> Collector {
        Collector {
            reports,
            flush_records: flush_records.max(1),
            flush_after: std::time::Duration::from_secs(COLLECTOR_FLUSH_AFTER_SECS),
            buffer: std::sync::Mutex::new((Vec::new(), None)),
        }
    }

    /// Add an evaluation; the batch to write now, if one is due.
    pub fn add(&self, evaluation: Evaluation) -> Option<Vec<Evaluation>> {
        let mut buffer = self
            .buffer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (pending, since) = &mut *buffer;
        pending.push(evaluation);
        let started = *since.get_or_insert_with(std::time::Instant::now);
        let due = pending.len() >= self.flush_records || started.elapsed() >= self.flush_after;
        if due {
            *since = None;
            Some(std::mem::take(pending))
        } else {
            None
        }
    }

    /// Write a batch [`Collector::add`] returned (one durable commit). Blocking.
    pub fn write(&self, batch: &[Evaluation], now: i64) -> Result<()> {
        self.reports.record_many(batch, now)
    }
}

/// The collector, the sender and the archive of DMARC aggregate reports. Cheap to clone.
#[derive(Clone)]
pub struct DmarcReports {
    queue: Queue,
}

impl DmarcReports {
    /// On the queue's engine, sealed under its key; reports leave through it.
    pub fn new(queue: Queue) -> DmarcReports {
        DmarcReports { queue }
    }

    fn index(&self, domain: &str) -> [u8; 16] {
        crate::sealed::keyed_index(&self.queue, INDEX_PURPOSE, domain)
    }

    fn seal<T: Serialize>(&self, context: &[u8], key: &[u8], value: &T) -> Result<Vec<u8>> {
        crate::sealed::seal_json(&self.queue, context, key, value)
    }

    fn open<T: for<'de> Deserialize<'de>>(
        &self,
        context: &[u8],
        key: &[u8],
        sealed: &[u8],
    ) -> Result<T> {
        crate::sealed::open_json(&self.queue, context, key, sealed)
    }

    /// Keep one evaluation (one durable commit); see [`DmarcReports::record_many`].
    pub fn record(
        &self,
        policy: &PolicyPublished,
        rua: &[String],
        record: &Record,
        now: i64,
    ) -> Result<()> {
        self.record_many(
            &[Evaluation {
                policy: policy.clone(),
                rua: rua.to_vec(),
                record: record.clone(),
            }],
            now,
        )
    }

    /// Keep evaluations of inbound mail, each for the domain whose record asked for reports to
    /// its `rua` (mailto addresses), in one durable commit.
    pub fn record_many(&self, evaluations: &[Evaluation], now: i64) -> Result<()> {
        let mut tx = self.queue.engine().begin_write()?;
        for evaluation in evaluations {
            let policy = &evaluation.policy;
            let index = self.index(&policy.domain);
            let mut entry = match tx.get(DMARC_DOMAINS, &index)? {
                Some(sealed) => self.open::<DomainEntry>(DOMAIN_CONTEXT, &index, &sealed)?,
                None => {
                    if tx.scan(DMARC_DOMAINS, KeyRange::all(), DOMAINS_MAX)?.len() >= DOMAINS_MAX {
                        continue;
                    }
                    DomainEntry {
                        domain: policy.domain.to_ascii_lowercase(),
                        rua: Vec::new(),
                        policy: policy.clone(),
                        first_unix: now,
                        records: 0,
                        dropped: 0,
                    }
                }
            };
            // The latest record's policy and addresses are the ones reported to.
            entry.policy = policy.clone();
            entry.rua = evaluation
                .rua
                .iter()
                .take(RUA_ADDRESSES_MAX)
                .cloned()
                .collect();
            if entry.records >= RECORDS_PER_DOMAIN_MAX {
                entry.dropped = entry.dropped.saturating_add(1);
            } else {
                let mut key = index.to_vec();
                key.extend_from_slice(&rand::thread_rng().next_u64().to_be_bytes());
                let record = evaluation.record.clone().with_count(1);
                tx.put(
                    DMARC_COLLECTED,
                    &key,
                    &self.seal(RECORD_CONTEXT, &key, &record)?,
                )?;
                entry.records += 1;
            }
            tx.put(
                DMARC_DOMAINS,
                &index,
                &self.seal(DOMAIN_CONTEXT, &index, &entry)?,
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Send every report whose day is over: build it, sign it when `dkim` has keys for
    /// `hostname`'s domain, queue it (null sender: reports never bounce), and forget what it
    /// reported. Returns how many reports were queued.
    pub async fn send_due(
        &self,
        resolver: &dyn Resolver,
        dkim: Option<&DkimKeys>,
        hostname: &str,
        now: i64,
    ) -> Result<usize> {
        let due: Vec<([u8; 16], DomainEntry)> = {
            let tx = self.queue.engine().begin_read()?;
            let mut due = Vec::new();
            for (key, sealed) in tx.scan(DMARC_DOMAINS, KeyRange::all(), DOMAINS_MAX)? {
                let entry: DomainEntry = self.open(DOMAIN_CONTEXT, &key, &sealed)?;
                if now.saturating_sub(entry.first_unix) >= REPORT_INTERVAL_SECS {
                    let mut index = [0u8; 16];
                    index.copy_from_slice(&key[..16.min(key.len())]);
                    due.push((index, entry));
                }
            }
            due
        };
        let mut sent = 0;
        for (index, entry) in due {
            let recipients = self.verified_destinations(resolver, &entry).await;
            let records = self.collected(&index)?;
            if !recipients.is_empty() && !records.is_empty() {
                let message = self.build(&entry, records, hostname, now)?;
                queue_report(&self.queue, dkim, hostname, &recipients, message)?;
                sent += 1;
            }
            self.forget(&index)?;
        }
        Ok(sent)
    }

    /// RFC 7489 section 7.1: an address outside the policy domain gets reports only if its
    /// domain says so (`<policy domain>._report._dmarc.<rua domain>` TXT `v=DMARC1`). Without
    /// a public suffix list, "outside" is "neither the domain, a parent nor a subdomain": a
    /// sibling under the same organisation is asked too, which errs toward not sending.
    async fn verified_destinations(
        &self,
        resolver: &dyn Resolver,
        entry: &DomainEntry,
    ) -> Vec<EmailAddress> {
        let mut verified = Vec::new();
        for address in &entry.rua {
            let Ok(parsed) = EmailAddress::try_from(address.as_str()) else {
                continue;
            };
            let rua_domain = parsed.domain().as_str().to_ascii_lowercase();
            let policy_domain = &entry.domain;
            let related = rua_domain == *policy_domain
                || rua_domain.ends_with(&format!(".{policy_domain}"))
                || policy_domain.ends_with(&format!(".{rua_domain}"));
            let allowed = related
                || match resolver
                    .txt(&format!("{policy_domain}._report._dmarc.{rua_domain}"))
                    .await
                {
                    Ok(records) => records
                        .iter()
                        .any(|record| record.trim_start().starts_with("v=DMARC1")),
                    Err(DnsError::NoRecords | DnsError::Temporary(_)) => false,
                };
            if allowed && !verified.contains(&parsed) {
                verified.push(parsed);
            }
        }
        verified
    }

    fn collected(&self, index: &[u8; 16]) -> Result<Vec<Record>> {
        let tx = self.queue.engine().begin_read()?;
        let rows = tx.scan(
            DMARC_COLLECTED,
            KeyRange::prefix(index),
            RECORDS_PER_DOMAIN_MAX as usize,
        )?;
        // Equal evaluations (same source, results and identifiers) become one row with a count.
        let mut merged: Vec<Record> = Vec::new();
        for (key, sealed) in rows {
            let record: Record = self.open(RECORD_CONTEXT, &key, &sealed)?;
            match merged
                .iter_mut()
                .find(|known| Record::clone(known).with_count(1) == record)
            {
                Some(known) => {
                    let count = known.count().saturating_add(1);
                    *known = known.clone().with_count(count);
                }
                None => merged.push(record),
            }
        }
        Ok(merged)
    }

    fn build(
        &self,
        entry: &DomainEntry,
        records: Vec<Record>,
        hostname: &str,
        now: i64,
    ) -> Result<Vec<u8>> {
        let email = format!("noreply-dmarc@{hostname}");
        let mut report = Report::new()
            .with_version(1.0)
            .with_org_name(hostname)
            .with_email(email.as_str())
            .with_report_id(format!(
                "{}.{}.{:08x}",
                entry.domain,
                entry.first_unix,
                rand::thread_rng().next_u32()
            ))
            .with_date_range_begin(entry.first_unix.max(0) as u64)
            .with_date_range_end(now.max(0) as u64)
            .with_policy_published(entry.policy.clone())
            .with_generator("Letterlock");
        if entry.dropped > 0 {
            report = report.with_error(format!(
                "{} evaluations past the limit of {RECORDS_PER_DOMAIN_MAX} were not kept",
                entry.dropped
            ));
        }
        for record in records {
            report.add_record(record);
        }
        let to: Vec<&str> = entry.rua.iter().map(String::as_str).collect();
        report
            .to_rfc5322(
                hostname,
                ("DMARC aggregate report", email.as_str()),
                to.into_iter(),
            )
            .map(String::into_bytes)
            .map_err(|error| QueueError::Corrupted(format!("DMARC report: {error}")))
    }

    fn forget(&self, index: &[u8; 16]) -> Result<()> {
        let mut tx = self.queue.engine().begin_write()?;
        loop {
            let rows = tx.scan(DMARC_COLLECTED, KeyRange::prefix(index), 1_000)?;
            if rows.is_empty() {
                break;
            }
            for (key, _) in rows {
                tx.delete(DMARC_COLLECTED, &key)?;
            }
        }
        tx.delete(DMARC_DOMAINS, index)?;
        tx.commit()?;
        Ok(())
    }

    /// Keep a report another server sent about one of our domains.
    pub fn record_received(&self, report: &Report, now: i64) -> Result<()> {
        let mut key = (now.max(0) as u64).to_be_bytes().to_vec();
        key.extend_from_slice(&rand::thread_rng().next_u64().to_be_bytes());
        let mut tx = self.queue.engine().begin_write()?;
        tx.put(
            DMARC_RECEIVED,
            &key,
            &self.seal(RECEIVED_CONTEXT, &key, report)?,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Received reports, newest first (at most [`RECEIVED_LISTED_MAX`]), about `domain` or all
    /// of ours; each with its arrival time.
    pub fn received(&self, domain: Option<&str>) -> Result<Vec<(i64, Report)>> {
        let tx = self.queue.engine().begin_read()?;
        let rows = tx.scan_rev(DMARC_RECEIVED, KeyRange::all(), RECEIVED_LISTED_MAX)?;
        let mut reports = Vec::new();
        for (key, sealed) in rows {
            let report: Report = self.open(RECEIVED_CONTEXT, &key, &sealed)?;
            if domain.is_some_and(|wanted| !report.domain().eq_ignore_ascii_case(wanted)) {
                continue;
            }
            let arrived = key
                .get(..8)
                .and_then(|bytes| bytes.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            reports.push((arrived.min(i64::MAX as u64) as i64, report));
        }
        Ok(reports)
    }
}

/// Queue a report from this server: DKIM-signed for `hostname`'s domain when `dkim` has keys
/// for it, with the null sender (a report never bounces).
pub(crate) fn queue_report(
    queue: &Queue,
    dkim: Option<&DkimKeys>,
    hostname: &str,
    recipients: &[EmailAddress],
    message: Vec<u8>,
) -> Result<()> {
    let signer = dkim.and_then(|keys| {
        Domain::try_from(hostname)
            .ok()
            .and_then(|domain| keys.signer(&domain).ok())
    });
    let message = match signer {
        Some(signer) => signer.sign(&message).unwrap_or(message),
        None => message,
    };
    queue.enqueue(None, recipients, false, &message)?;
    Ok(())
}

/// The report in `message` if it is a DMARC aggregate report about a domain `is_local` accepts
/// (RFC 7489 section 7.2.1.1: its subject starts `Report Domain:`, so other mail is not
/// parsed twice).
pub fn received_report(message: &[u8], is_local: impl Fn(&str) -> bool) -> Option<Report> {
    let head_end = message
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or(message.len());
    let head = String::from_utf8_lossy(&message[..head_end]).to_ascii_lowercase();
    if !head.contains("\nsubject: report domain:") && !head.starts_with("subject: report domain:") {
        return None;
    }
    let report = Report::parse_rfc5322(message, RECEIVED_REPORT_SIZE_MAX_BYTES).ok()?;
    is_local(&report.domain().to_ascii_lowercase()).then_some(report)
}
