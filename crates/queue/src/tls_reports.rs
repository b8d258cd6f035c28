//! SMTP TLS reporting (TLS-RPT, RFC 8460): how delivery's TLS went with each destination
//! domain — sessions that succeeded and failures a policy made fatal, per policy (MTA-STS,
//! DANE, or none) — collected while delivering, and once a day a report to the addresses the
//! domain publishes at `_smtp._tls.<domain>` (`v=TLSRPTv1; rua=mailto:...`). `mail-auth`
//! builds the report (gzipped JSON in a message, section 5.3), which leaves through the queue;
//! to `https:` addresses it is posted gzipped (section 5.4).
//!
//! Results are counted in memory by the runner and added to the table `tls_results` at each
//! report check (at most [`crate::runner::DMARC_REPORT_CHECK_SECS`] apart), one commit for all
//! domains; each row is sealed under the queue key with the domain as a keyed hash.

use std::collections::HashMap;
use std::net::IpAddr;

use letterlock_storage::{KeyRange, Table};
use letterlock_types::{Domain, EmailAddress};
use mail_auth::report::tlsrpt::{
    DateRange, FailureDetails, Policy, PolicyDetails, PolicyType, ResultType, Summary, TlsReport,
};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::dkim::DkimKeys;
use crate::error::Result;
use crate::https::HttpsSettings;
use crate::resolver::Resolver;
use crate::sealed::{keyed_index, open_json, seal_json};
use crate::store::Queue;

pub const TLS_RESULTS: Table = Table::new("tls_results");

/// Section 4: one report a day.
pub const REPORT_INTERVAL_SECS: i64 = 86_400;
/// Domains whose results are kept at once; past this, new domains are not counted.
pub const DOMAINS_MAX: usize = 10_000;
/// Distinct failure rows kept per policy (a failure seen again is counted on its row).
pub const FAILURE_ROWS_MAX: usize = 100;
/// Report addresses one report goes to at most.
pub const RUA_ADDRESSES_MAX: usize = 4;

const INDEX_PURPOSE: &[u8] = b"letterlock tls-rpt index v1";
const CONTEXT: &[u8] = b"letterlock tls-rpt results";

/// Which policy governed a session, and its text as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyUsed {
    pub policy_type: PolicyType,
    /// The policy's lines (MTA-STS) or TLSA records (DANE); empty without a policy.
    pub policy_string: Vec<String>,
    /// MTA-STS `mx` patterns.
    pub mx_host: Vec<String>,
}

/// A session's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionResult {
    Success,
    Failure {
        result_type: ResultType,
        mx: String,
        ip: IpAddr,
        detail: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct DomainResults {
    domain: String,
    first_unix: i64,
    policies: Vec<Policy>,
}

impl DomainResults {
    /// The entry of this policy (its type and text), made when new.
    fn entry(&mut self, details: &PolicyDetails) -> &mut Policy {
        let found = self.policies.iter().position(|known| {
            known.policy.policy_type == details.policy_type
                && known.policy.policy_string == details.policy_string
        });
        let index = match found {
            Some(index) => index,
            None => {
                self.policies.push(Policy {
                    policy: details.clone(),
                    summary: Summary {
                        total_success: 0,
                        total_failure: 0,
                    },
                    failure_details: Vec::new(),
                });
                self.policies.len() - 1
            }
        };
        &mut self.policies[index]
    }

    fn add(&mut self, policy: &PolicyUsed, result: &SessionResult) {
        let mut details = PolicyDetails::new(policy.policy_type, self.domain.clone());
        details.policy_string = policy.policy_string.clone();
        details.mx_host = policy.mx_host.clone();
        let entry = self.entry(&details);
        match result {
            SessionResult::Success => {
                entry.summary.total_success = entry.summary.total_success.saturating_add(1)
            }
            SessionResult::Failure {
                result_type,
                mx,
                ip,
                detail,
            } => {
                entry.summary.total_failure = entry.summary.total_failure.saturating_add(1);
                add_failure(
                    entry,
                    FailureDetails {
                        result_type: *result_type,
                        sending_mta_ip: None,
                        receiving_mx_hostname: Some(mx.clone()),
                        receiving_mx_helo: None,
                        receiving_ip: Some(*ip),
                        failed_session_count: 1,
                        additional_information: Some(detail.chars().take(200).collect()),
                        failure_reason_code: None,
                    },
                );
            }
        }
    }

    fn merge(&mut self, other: DomainResults) {
        for policy in other.policies {
            let entry = self.entry(&policy.policy);
            entry.summary.total_success = entry
                .summary
                .total_success
                .saturating_add(policy.summary.total_success);
            entry.summary.total_failure = entry
                .summary
                .total_failure
                .saturating_add(policy.summary.total_failure);
            for row in policy.failure_details {
                add_failure(entry, row);
            }
        }
    }
}

/// Count `row` on the policy's row of the same type, MX host and address, or add it while
/// there is room.
fn add_failure(entry: &mut Policy, row: FailureDetails) {
    let rows = entry.failure_details.len();
    let same = entry.failure_details.iter_mut().find(|known| {
        known.result_type == row.result_type
            && known.receiving_mx_hostname == row.receiving_mx_hostname
            && known.receiving_ip == row.receiving_ip
    });
    match same {
        Some(known) => {
            known.failed_session_count = known
                .failed_session_count
                .saturating_add(row.failed_session_count)
        }
        None if rows < FAILURE_ROWS_MAX => entry.failure_details.push(row),
        None => {}
    }
}

/// Results counted in memory by a runner, written at each report check.
#[derive(Default)]
pub struct TlsResults {
    pending: std::sync::Mutex<HashMap<String, DomainResults>>,
}

impl TlsResults {
    pub fn record(&self, domain: &Domain, policy: &PolicyUsed, result: &SessionResult, now: i64) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if pending.len() >= DOMAINS_MAX && !pending.contains_key(domain.as_str()) {
            return;
        }
        pending
            .entry(domain.as_str().to_string())
            .or_insert_with(|| DomainResults {
                domain: domain.as_str().to_string(),
                first_unix: now,
                policies: Vec::new(),
            })
            .add(policy, result);
    }

    /// Add what was counted to the table (one commit) and forget it here.
    pub fn write(&self, queue: &Queue) -> Result<()> {
        let taken: Vec<DomainResults> = {
            let mut pending = self
                .pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            pending.drain().map(|(_, results)| results).collect()
        };
        if taken.is_empty() {
            return Ok(());
        }
        let mut tx = queue.engine().begin_write()?;
        for results in taken {
            let index = keyed_index(queue, INDEX_PURPOSE, &results.domain);
            let merged = match tx.get(TLS_RESULTS, &index)? {
                Some(sealed) => {
                    let mut stored: DomainResults = open_json(queue, CONTEXT, &index, &sealed)?;
                    stored.merge(results);
                    stored
                }
                None => results,
            };
            tx.put(
                TLS_RESULTS,
                &index,
                &seal_json(queue, CONTEXT, &index, &merged)?,
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// Send the reports whose day is over, to domains that publish a TLSRPT record with mailto:
/// addresses; forget what was reported (or what nobody asked for). Returns the reports queued.
pub async fn send_due(
    queue: &Queue,
    resolver: &dyn Resolver,
    https: &HttpsSettings,
    dkim: Option<&DkimKeys>,
    hostname: &str,
    now: i64,
) -> Result<usize> {
    let due: Vec<(Vec<u8>, DomainResults)> = {
        let tx = queue.engine().begin_read()?;
        let mut due = Vec::new();
        for (key, sealed) in tx.scan(TLS_RESULTS, KeyRange::all(), DOMAINS_MAX)? {
            let results: DomainResults = open_json(queue, CONTEXT, &key, &sealed)?;
            if now.saturating_sub(results.first_unix) >= REPORT_INTERVAL_SECS {
                due.push((key, results));
            }
        }
        due
    };
    let mut sent = 0;
    for (key, results) in due {
        let destinations = report_destinations(resolver, &results.domain).await;
        if !results.policies.is_empty() {
            let report = report_of(&results, hostname, now);
            if !destinations.mailto.is_empty() {
                let message = build(&report, &results.domain, &destinations.mailto, hostname)?;
                crate::dmarc_reports::queue_report(
                    queue,
                    dkim,
                    hostname,
                    &destinations.mailto,
                    message,
                )?;
                sent += 1;
            }
            for (host, path) in &destinations.https {
                match post_report(resolver, https, host, path, &report).await {
                    Ok(()) => sent += 1,
                    Err(error) => tracing::info!(%host, %error, "TLS report not posted"),
                }
            }
        }
        let mut tx = queue.engine().begin_write()?;
        tx.delete(TLS_RESULTS, &key)?;
        tx.commit()?;
    }
    Ok(sent)
}

/// Where a domain wants its reports.
#[derive(Debug, Default, PartialEq, Eq)]
struct Destinations {
    mailto: Vec<EmailAddress>,
    /// (host, path and query) of each `https:` URI.
    https: Vec<(String, String)>,
}

/// Section 3: the `rua` of the one `v=TLSRPTv1` record at `_smtp._tls.<domain>`.
async fn report_destinations(resolver: &dyn Resolver, domain: &str) -> Destinations {
    let Ok(records) = resolver.txt(&format!("_smtp._tls.{domain}")).await else {
        return Destinations::default();
    };
    let mut matching = records
        .iter()
        .filter(|record| record.trim_start().starts_with("v=TLSRPTv1"));
    let (Some(record), None) = (matching.next(), matching.next()) else {
        return Destinations::default();
    };
    let mut destinations = Destinations::default();
    let uris = record
        .split(';')
        .filter_map(|field| field.trim().strip_prefix("rua="))
        .flat_map(|uris| uris.split(','))
        .map(str::trim)
        .take(RUA_ADDRESSES_MAX);
    for uri in uris {
        if let Some(address) = uri.strip_prefix("mailto:") {
            if let Ok(address) = EmailAddress::try_from(address) {
                destinations.mailto.push(address);
            }
        } else if let Some(rest) = uri.strip_prefix("https://") {
            let (host, path) = match rest.find('/') {
                Some(slash) => (&rest[..slash], &rest[slash..]),
                None => (rest, "/"),
            };
            // An explicit port is not followed: reports go to the HTTPS port.
            let host = host.split(':').next().unwrap_or(host);
            if !host.is_empty() {
                destinations
                    .https
                    .push((host.to_ascii_lowercase(), path.to_string()));
            }
        }
    }
    destinations
}

/// Section 5.4: the JSON report, gzipped, as `application/tlsrpt+gzip`.
async fn post_report(
    resolver: &dyn Resolver,
    https: &HttpsSettings,
    host: &str,
    path: &str,
    report: &TlsReport,
) -> std::result::Result<(), String> {
    use std::io::Write as _;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(report.to_json().as_bytes())
        .map_err(|error| error.to_string())?;
    let body = gzip.finish().map_err(|error| error.to_string())?;
    tokio::time::timeout(
        POST_TIMEOUT,
        crate::https::post(
            resolver,
            https,
            host,
            path,
            "application/tlsrpt+gzip",
            &body,
        ),
    )
    .await
    .map_err(|_| "timed out".to_string())?
}

/// One report post at most this long.
pub const POST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn report_of(results: &DomainResults, hostname: &str, now: i64) -> TlsReport {
    TlsReport {
        organization_name: Some(hostname.to_string()),
        date_range: DateRange {
            start_datetime: mail_parser::DateTime::from_timestamp(results.first_unix),
            end_datetime: mail_parser::DateTime::from_timestamp(now),
        },
        contact_info: Some(format!("noreply-tlsrpt@{hostname}")),
        report_id: format!(
            "{}.{}.{:08x}",
            results.domain,
            results.first_unix,
            rand::thread_rng().next_u32()
        ),
        policies: results.policies.clone(),
    }
}

fn build(
    report: &TlsReport,
    domain: &str,
    recipients: &[EmailAddress],
    hostname: &str,
) -> Result<Vec<u8>> {
    let from = format!("noreply-tlsrpt@{hostname}");
    let to: Vec<String> = recipients.iter().map(ToString::to_string).collect();
    report
        .to_rfc5322(
            domain,
            hostname,
            ("TLS report", from.as_str()),
            to.iter().map(String::as_str),
        )
        .map(String::into_bytes)
        .map_err(|error| crate::error::QueueError::Corrupted(format!("TLS report: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_written_at_two_checks_merge_into_one_row_per_failure() {
        let policy = PolicyUsed {
            policy_type: PolicyType::Sts,
            policy_string: vec!["version: STSv1".into(), "mode: enforce".into()],
            mx_host: vec!["mx.remote.test".into()],
        };
        let failure = SessionResult::Failure {
            result_type: ResultType::CertificateNotTrusted,
            mx: "mx.remote.test".into(),
            ip: "192.0.2.1".parse().expect("ip"),
            detail: "unknown issuer".into(),
        };
        let checked = || {
            let mut results = DomainResults {
                domain: "remote.test".into(),
                first_unix: 0,
                policies: Vec::new(),
            };
            results.add(&policy, &failure);
            results.add(&policy, &SessionResult::Success);
            results
        };
        let mut stored = checked();
        stored.merge(checked());
        assert_eq!(stored.policies.len(), 1);
        let entry = &stored.policies[0];
        assert_eq!(
            (entry.summary.total_success, entry.summary.total_failure),
            (2, 2)
        );
        assert_eq!(entry.failure_details.len(), 1, "one row, counted twice");
        assert_eq!(entry.failure_details[0].failed_session_count, 2);
    }
}
