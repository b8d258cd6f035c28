//! The delivery runner: claims due entries, delivers each to its destination domains (one SMTP
//! transaction per domain, RFC 5321 section 5.1 routing), records each recipient's outcome,
//! retries temporary failures with exponential backoff until the entry expires (RFC 5321
//! section 4.5.4.1), and bounces permanent failures and expiries (RFC 3464) to the sender:
//! into the sender's INBOX when the sender is local, through the queue otherwise.
//!
//! Several runners may work on one queue (threads, or nodes sharing a database): an entry is
//! claimed with a lease in a write transaction, so only one runner holds it at a time. A runner
//! that dies mid-delivery leaves the lease to run out, after which the entry is tried again:
//! delivery is at-least-once, as in every MTA.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use letterlock_mailstore::MailStore;
use letterlock_types::{Domain, EmailAddress};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::{Notify, Semaphore};

use crate::client::{deliver_to_host, ClientSettings, RcptOutcome, TlsPolicy, Transaction};
use crate::dkim::DkimKeys;
use crate::dmarc_reports::DmarcReports;
use crate::dsn::{self, build_bounce, build_report, Action, BounceReason, Report, Reported};
use crate::error::{QueueError, Result};
use crate::https::HttpsSettings;
use crate::mta_sts::{self, FetchSettings, Mode};
use crate::resolver::{route, DnsError, Resolver, Route};
use crate::store::{self, now_unix, Claimed, Envelope, Finish, Queue, RecipientState};
use crate::tls_reports::{self, PolicyUsed, SessionResult, TlsResults};

/// First retry after a temporary failure; each later one waits twice as long...
pub const RETRY_INITIAL_SECS: u64 = 60;
/// ...up to this.
pub const RETRY_MAX_SECS: u64 = 3600;
/// How long a claim holds an entry: longer than the slowest attempt (connect, commands and the
/// 10-minute wait after DATA, for each MX host tried), so a live runner never loses its claim.
pub const LEASE_SECS: u64 = 30 * 60;
/// Entries claimed, and delivered concurrently, per round.
pub const CLAIM_BATCH_MAX: usize = 16;
/// RFC 3461 NOTIFY=DELAY: a recipient still waiting this long after arrival gets one delay
/// report (Postfix's `delay_warning_time` is off by default; 4 hours is its suggestion).
pub const DELAY_REPORT_AFTER_SECS: i64 = 4 * 3600;
/// SMTP transactions open at once to one destination domain: enough to keep a queue moving,
/// few enough not to look like an attack on a small server (Postfix's
/// `default_destination_concurrency_limit` is 20; mox delivers one at a time).
pub const DESTINATION_CONCURRENCY_MAX: usize = 4;
/// Destinations whose concurrency is tracked before idle ones are forgotten.
pub const DESTINATIONS_TRACKED_MAX: usize = 10_000;
/// How often the runner looks for DMARC aggregate reports whose day is over.
pub const DMARC_REPORT_CHECK_SECS: i64 = 300;
/// The runner looks at the queue at least this often, even without being woken.
pub const POLL_INTERVAL_SECS: u64 = 30;

#[derive(Clone)]
pub struct RunnerSettings {
    pub client: ClientSettings,
    pub retry_initial_secs: u64,
    pub retry_max_secs: u64,
    pub lease_secs: u64,
    pub claim_batch_max: usize,
    pub poll_interval: Duration,
    /// The HTTPS port of MTA-STS policy servers and TLS-RPT report collectors (443; tests use
    /// another).
    pub mta_sts_port: u16,
    pub mta_sts_timeout: Duration,
    pub destination_concurrency_max: usize,
    /// Keys to DKIM-sign the DMARC aggregate reports the runner sends (for the host name's
    /// domain); without them reports leave unsigned.
    pub dkim: Option<DkimKeys>,
}

impl RunnerSettings {
    pub fn new(client: ClientSettings) -> RunnerSettings {
        RunnerSettings {
            client,
            retry_initial_secs: RETRY_INITIAL_SECS,
            retry_max_secs: RETRY_MAX_SECS,
            lease_secs: LEASE_SECS,
            claim_batch_max: CLAIM_BATCH_MAX,
            poll_interval: Duration::from_secs(POLL_INTERVAL_SECS),
            mta_sts_port: 443,
            mta_sts_timeout: crate::mta_sts::FETCH_TIMEOUT,
            destination_concurrency_max: DESTINATION_CONCURRENCY_MAX,
            dkim: None,
        }
    }
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundReport {
    pub claimed: usize,
    /// Entries that left the queue (everything delivered or bounced).
    pub finished: usize,
    /// Entries put back for a later attempt.
    pub retried: usize,
}

/// The runner. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Queue,
    store: MailStore,
    resolver: Arc<dyn Resolver>,
    settings: RunnerSettings,
    wake: Arc<Notify>,
    /// One semaphore per destination domain, bounding the transactions open to it.
    destinations: std::sync::Mutex<HashMap<Domain, Arc<Semaphore>>>,
    dmarc: DmarcReports,
    /// TLS-RPT results counted since the last report check.
    tls: TlsResults,
    /// When DMARC and TLS reports were last looked for (unix seconds).
    dmarc_checked: AtomicI64,
}

impl Runner {
    pub fn new(
        queue: Queue,
        store: MailStore,
        resolver: Arc<dyn Resolver>,
        settings: RunnerSettings,
    ) -> Runner {
        Runner {
            inner: Arc::new(Inner {
                queue: queue.clone(),
                store,
                resolver,
                settings,
                wake: Arc::new(Notify::new()),
                destinations: std::sync::Mutex::new(HashMap::new()),
                dmarc: DmarcReports::new(queue.clone()),
                tls: TlsResults::default(),
                dmarc_checked: AtomicI64::new(i64::MIN),
            }),
        }
    }

    /// Notify this after an enqueue to have the runner look at once instead of at its next poll.
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.inner.wake)
    }

    pub fn queue(&self) -> &Queue {
        &self.inner.queue
    }

    /// Deliver until `shutdown` completes. A round in progress at shutdown is abandoned: its
    /// leases run out and the entries are tried again after a restart.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let round = tokio::select! {
                round = self.run_once_at(now_unix()) => round,
                _ = &mut shutdown => return,
            };
            if let Err(error) = round {
                tracing::warn!(%error, "outbound queue round failed");
            }
            let sleep = self.time_to_next_due().await;
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.inner.wake.notified() => {}
                _ = &mut shutdown => return,
            }
        }
    }

    async fn time_to_next_due(&self) -> Duration {
        let queue = self.inner.queue.clone();
        let poll = self.inner.settings.poll_interval;
        match tokio::task::spawn_blocking(move || queue.next_due_unix()).await {
            Ok(Ok(Some(due))) => {
                let wait = due.saturating_sub(now_unix()).max(0) as u64;
                Duration::from_secs(wait)
                    .min(poll)
                    .max(Duration::from_millis(100))
            }
            _ => poll,
        }
    }

    /// Queue the DMARC aggregate reports and TLS-RPT reports whose day is over (writing the
    /// TLS results counted so far first), at most every [`DMARC_REPORT_CHECK_SECS`]. Returns
    /// how many reports were queued.
    pub async fn send_reports(&self, now: i64) -> Result<usize> {
        let last = self.inner.dmarc_checked.load(Ordering::Relaxed);
        if now.saturating_sub(last) < DMARC_REPORT_CHECK_SECS {
            return Ok(0);
        }
        self.inner.dmarc_checked.store(now, Ordering::Relaxed);
        let settings = &self.inner.settings;
        let runner = self.clone();
        tokio::task::spawn_blocking(move || runner.inner.tls.write(&runner.inner.queue))
            .await
            .map_err(|error| QueueError::Corrupted(error.to_string()))??;
        let resolver = self.inner.resolver.as_ref();
        let hostname = &settings.client.hostname;
        let dmarc = self
            .inner
            .dmarc
            .send_due(resolver, settings.dkim.as_ref(), hostname, now)
            .await?;
        let https = HttpsSettings {
            port: settings.mta_sts_port,
            roots: Arc::clone(&settings.client.roots),
            public_addresses_only: false,
        };
        let tls = tls_reports::send_due(
            &self.inner.queue,
            resolver,
            &https,
            settings.dkim.as_ref(),
            hostname,
            now,
        )
        .await?;
        Ok(dmarc + tls)
    }

    /// One round as if the clock read `now`: claim what is due, deliver it, record the outcome;
    /// then queue the DMARC reports that are due (delivered from the next round on).
    /// Tests pass a later `now` to reach retries without waiting.
    pub async fn run_once_at(&self, now: i64) -> Result<RoundReport> {
        let report = self.deliver_due(now).await;
        match self.send_reports(now).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "DMARC and TLS reports queued"),
            Err(error) => tracing::warn!(%error, "DMARC and TLS reports not sent"),
        }
        report
    }

    async fn deliver_due(&self, now: i64) -> Result<RoundReport> {
        let queue = self.inner.queue.clone();
        let lease_secs = self.inner.settings.lease_secs;
        let batch_max = self.inner.settings.claim_batch_max.max(1);
        let claimed = tokio::task::spawn_blocking(move || queue.claim(now, lease_secs, batch_max))
            .await
            .map_err(|error| QueueError::Corrupted(error.to_string()))??;
        let mut report = RoundReport {
            claimed: claimed.len(),
            ..RoundReport::default()
        };
        let mut tasks = tokio::task::JoinSet::new();
        for entry in claimed {
            let runner = self.clone();
            tasks.spawn(async move { runner.process(entry, now).await });
        }
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(Finish::Done)) => report.finished += 1,
                Ok(Ok(Finish::RetryAt(_))) => report.retried += 1,
                Ok(Err(error)) => tracing::warn!(%error, "queue entry not finished"),
                Err(error) => tracing::error!(%error, "queue delivery task failed"),
            }
        }
        Ok(report)
    }

    async fn process(&self, claimed: Claimed, now: i64) -> Result<Finish> {
        let mut envelope = claimed.envelope.clone();
        let before = envelope.clone();
        let mut relayed = Vec::new();
        for (domain, recipients) in envelope.pending_by_domain() {
            let (outcomes, dsn_passed_on) = self
                .deliver_domain(&domain, &recipients, &envelope, &claimed.message, now)
                .await;
            for (recipient, outcome) in outcomes {
                match outcome {
                    RcptOutcome::Delivered(reply) => {
                        tracing::info!(entry = %claimed.id, %recipient, %reply, "delivered");
                        envelope.set_state(&recipient, RecipientState::Delivered, &reply);
                        // RFC 3461 section 6.2.4: NOTIFY=SUCCESS to a server without DSN
                        // ends here with a "relayed" report; with DSN the server reports.
                        let wanted = envelope.recipients.iter().find(|candidate| {
                            candidate.address == recipient && candidate.notify.success
                        });
                        if let (Some(wanted), false) = (wanted, dsn_passed_on) {
                            relayed.push(dsn::reported(wanted));
                        }
                    }
                    RcptOutcome::Permanent(reply) => {
                        tracing::info!(entry = %claimed.id, %recipient, %reply, "refused");
                        envelope.set_state(&recipient, RecipientState::Failed, &reply);
                    }
                    RcptOutcome::Temporary(reply) => {
                        tracing::info!(entry = %claimed.id, %recipient, %reply, "deferred");
                        envelope.note(&recipient, &reply);
                        envelope.last_error = Some(reply);
                    }
                }
            }
        }
        let expired = envelope.has_pending() && now >= claimed.expires_unix;
        if expired {
            let pending: Vec<EmailAddress> = envelope
                .recipients
                .iter()
                .filter(|recipient| recipient.state == RecipientState::Pending)
                .map(|recipient| recipient.address.clone())
                .collect();
            for recipient in pending {
                let last = envelope
                    .recipients
                    .iter()
                    .find(|candidate| candidate.address == recipient)
                    .and_then(|candidate| candidate.last_reply.clone())
                    .unwrap_or_else(|| "no attempt succeeded".into());
                let reply = format!("gave up after the queue lifetime; last error: {last}");
                envelope.set_state(&recipient, RecipientState::Failed, &reply);
            }
        }
        // Bounce the recipients that failed in this round only: earlier ones were bounced then.
        let newly_failed = Envelope {
            recipients: envelope
                .recipients
                .iter()
                .filter(|recipient| {
                    recipient.state == RecipientState::Failed
                        && before.recipients.iter().any(|old| {
                            old.address == recipient.address && old.state == RecipientState::Pending
                        })
                })
                .cloned()
                .collect(),
            ..envelope.clone()
        };
        let reason = if expired {
            BounceReason::Expired
        } else {
            BounceReason::Refused
        };
        let hostname = &self.inner.settings.client.hostname;
        if let Some(bounce) = build_bounce(
            hostname,
            &newly_failed,
            &claimed.message,
            claimed.created_unix,
            reason,
        ) {
            if let Some(sender) = &envelope.sender {
                self.send_bounce(sender.clone(), bounce).await?;
            }
        }
        let delayed: Vec<Reported> = envelope
            .recipients
            .iter_mut()
            .filter(|recipient| {
                recipient.state == RecipientState::Pending
                    && recipient.notify.given
                    && recipient.notify.delay
                    && !recipient.delay_reported
                    && now.saturating_sub(claimed.created_unix) >= DELAY_REPORT_AFTER_SECS
            })
            .map(|recipient| {
                recipient.delay_reported = true;
                dsn::reported(recipient)
            })
            .collect();
        for (action, recipients) in [
            (Action::Relayed, relayed),
            (
                Action::Delayed {
                    retry_until_unix: claimed.expires_unix,
                },
                delayed,
            ),
        ] {
            let Some(sender) = &envelope.sender else {
                break;
            };
            let report = Report {
                reporting_host: hostname,
                sender,
                action,
                recipients,
                envelope_id: envelope.dsn.envid.as_deref(),
                return_full: false,
                arrival_unix: claimed.created_unix,
            };
            if let Some(message) = build_report(&report, &claimed.message) {
                self.send_bounce(sender.clone(), message).await?;
            }
        }
        let finish = if envelope.has_pending() {
            Finish::RetryAt(now.saturating_add(self.backoff_secs(claimed.attempts) as i64))
        } else {
            Finish::Done
        };
        let queue = self.inner.queue.clone();
        tokio::task::spawn_blocking(move || queue.finish(&claimed, &envelope, finish))
            .await
            .map_err(|error| QueueError::Corrupted(error.to_string()))??;
        Ok(finish)
    }

    /// The destination's semaphore (made on first use; idle ones are forgotten when too many
    /// are tracked).
    fn destination(&self, domain: &Domain) -> Arc<Semaphore> {
        let limit = self.inner.settings.destination_concurrency_max.max(1);
        let mut destinations = self
            .inner
            .destinations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if destinations.len() >= DESTINATIONS_TRACKED_MAX && !destinations.contains_key(domain) {
            destinations.retain(|_, semaphore| semaphore.available_permits() < limit);
        }
        Arc::clone(
            destinations
                .entry(domain.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(limit))),
        )
    }

    /// 1 minute, 2, 4... up to the cap (each attempt counted once the previous one failed).
    fn backoff_secs(&self, attempts_before: u32) -> u64 {
        let settings = &self.inner.settings;
        settings
            .retry_initial_secs
            .saturating_mul(1u64 << attempts_before.min(32))
            .min(settings.retry_max_secs)
    }

    /// A bounce to a local sender goes straight into their INBOX (durably, before the entry
    /// is finished); to a remote sender it is queued with the null sender, so it never bounces.
    async fn send_bounce(&self, sender: EmailAddress, bounce: Vec<u8>) -> Result<()> {
        let store = self.inner.store.clone();
        let queue = self.inner.queue.clone();
        tokio::task::spawn_blocking(move || {
            let local = store
                .has_domain(sender.domain())
                .map_err(|error| QueueError::Bounce(error.to_string()))?;
            if local {
                match store.deliver(std::slice::from_ref(&sender), &bounce) {
                    Ok(_) => return Ok(()),
                    Err(error) if error.is_temporary() => {
                        return Err(QueueError::Bounce(error.to_string()))
                    }
                    // The sender has gone (account removed): nobody to tell.
                    Err(error) => {
                        tracing::warn!(%error, %sender, "bounce dropped");
                        return Ok(());
                    }
                }
            }
            queue.enqueue(None, &[sender], false, &bounce).map(|_| ())
        })
        .await
        .map_err(|error| QueueError::Bounce(error.to_string()))?
    }

    /// Deliver to one domain: each MX host in turn (each of its addresses), until one gives
    /// every recipient an answer. The domain's MTA-STS policy, when it enforces, leaves only
    /// the MX hosts it names and makes verified TLS mandatory; a host with validated TLSA
    /// records is held to DANE instead (RFC 8461 section 2: DANE takes precedence).
    async fn deliver_domain(
        &self,
        domain: &Domain,
        recipients: &[EmailAddress],
        envelope: &Envelope,
        message: &[u8],
        now: i64,
    ) -> (Vec<(EmailAddress, RcptOutcome)>, bool) {
        let all = |outcome: RcptOutcome| {
            let outcomes = recipients
                .iter()
                .map(|recipient| (recipient.clone(), outcome.clone()))
                .collect::<Vec<_>>();
            (outcomes, false)
        };
        let destination = self.destination(domain);
        // The semaphore is never closed, so acquiring fails only if it were.
        let Ok(_permit) = destination.acquire().await else {
            return all(RcptOutcome::Temporary("451 4.3.0 shutting down".into()));
        };
        let resolver = self.inner.resolver.as_ref();
        let hosts = match route(resolver, domain.as_str()).await {
            Ok(Route::Hosts(hosts)) => hosts,
            Ok(Route::NullMx) => {
                return all(RcptOutcome::Permanent(format!(
                    "556 5.1.10 {domain} accepts no mail (null MX, RFC 7505)"
                )))
            }
            Ok(Route::NoHost) => {
                return all(RcptOutcome::Permanent(format!(
                    "550 5.1.2 {domain} has no mail server (no MX, A or AAAA record)"
                )))
            }
            Err(error) => return all(RcptOutcome::Temporary(format!("451 4.4.3 {error}"))),
        };
        let settings = &self.inner.settings;
        let fetch = FetchSettings {
            port: settings.mta_sts_port,
            roots: Arc::clone(&settings.client.roots),
            timeout: settings.mta_sts_timeout,
        };
        let policy = mta_sts::policy_for(&self.inner.queue, resolver, &fetch, domain, now).await;
        let enforced = policy
            .as_ref()
            .is_some_and(|policy| policy.mode == Mode::Enforce);
        let hosts: Vec<String> = match &policy {
            Some(policy) => {
                let (allowed, refused): (Vec<String>, Vec<String>) =
                    hosts.into_iter().partition(|host| policy.matches(host));
                for host in &refused {
                    tracing::info!(%domain, %host, mode = ?policy.mode, "MX host not in the MTA-STS policy");
                }
                if enforced {
                    allowed
                } else {
                    allowed.into_iter().chain(refused).collect()
                }
            }
            None => hosts,
        };
        if hosts.is_empty() {
            return all(RcptOutcome::Temporary(format!(
                "451 4.7.5 MTA-STS: none of the MX hosts of {domain} is named by its policy"
            )));
        }
        let recipient_dsn: Vec<(store::Notify, Option<String>)> = recipients
            .iter()
            .map(|address| {
                envelope
                    .recipients
                    .iter()
                    .find(|recipient| &recipient.address == address)
                    .map(|recipient| (recipient.notify, recipient.orcpt.clone()))
                    .unwrap_or_default()
            })
            .collect();
        let transaction = Transaction {
            sender: envelope.sender.as_ref(),
            recipients,
            message,
            requiretls: envelope.requiretls,
            dsn: &envelope.dsn,
            recipient_dsn: &recipient_dsn,
        };
        let mut last_failure: Option<(bool, String)> = None;
        let mut any_temporary = false;
        for host in hosts {
            let addresses = match resolver.ip(&host).await {
                Ok(addresses) if !addresses.is_empty() => addresses,
                Ok(_) => {
                    last_failure = Some((true, format!("{host} has no address")));
                    any_temporary = true;
                    continue;
                }
                Err(error) => {
                    last_failure = Some((false, format!("{host}: {error}")));
                    any_temporary = true;
                    continue;
                }
            };
            let tls = match resolver.tlsa(&format!("_25._tcp.{host}")).await {
                Ok(answer) if answer.secure && !answer.records.is_empty() => {
                    TlsPolicy::Dane(answer.records)
                }
                Ok(_) | Err(DnsError::NoRecords) if enforced => {
                    TlsPolicy::Verified { why: "MTA-STS" }
                }
                Ok(_) | Err(DnsError::NoRecords) if envelope.requiretls => {
                    TlsPolicy::Verified { why: "REQUIRETLS" }
                }
                Ok(_) | Err(DnsError::NoRecords) => TlsPolicy::Opportunistic,
                Err(error) => {
                    // RFC 7672 section 2.2: a failed TLSA lookup leaves the host's DANE status
                    // unknown: not a host to send to.
                    last_failure = Some((false, format!("{host}: TLSA lookup: {error}")));
                    any_temporary = true;
                    continue;
                }
            };
            let used = policy_used(&tls, policy.as_ref());
            for ip in addresses {
                match deliver_to_host(&settings.client, &host, ip, &transaction, &tls).await {
                    Ok(delivery) => {
                        if delivery.over_tls {
                            self.inner
                                .tls
                                .record(domain, &used, &SessionResult::Success, now);
                        }
                        return (delivery.outcomes, delivery.dsn_passed_on);
                    }
                    Err(failure) => {
                        if let Some(result_type) = failure.tls {
                            let result = SessionResult::Failure {
                                result_type,
                                mx: host.clone(),
                                ip,
                                detail: failure.text.clone(),
                            };
                            self.inner.tls.record(domain, &used, &result, now);
                        }
                        tracing::info!(%host, %ip, failure = %failure.text, "host failed");
                        any_temporary |= !failure.permanent;
                        last_failure = Some((failure.permanent, failure.text));
                    }
                }
            }
        }
        let text = last_failure
            .map(|(_, text)| text)
            .unwrap_or_else(|| "no host to try".into());
        if any_temporary {
            all(RcptOutcome::Temporary(text))
        } else {
            all(RcptOutcome::Permanent(text))
        }
    }
}

/// The policy a host's TLS followed, as TLS-RPT reports it (section 4.4).
fn policy_used(tls: &TlsPolicy, policy: Option<&mta_sts::Policy>) -> PolicyUsed {
    use mail_auth::report::tlsrpt::PolicyType;
    match (tls, policy) {
        (TlsPolicy::Dane(records), _) => PolicyUsed {
            policy_type: PolicyType::Tlsa,
            policy_string: records
                .iter()
                .map(|record| {
                    let data: String = record
                        .data
                        .iter()
                        .map(|byte| format!("{byte:02x}"))
                        .collect();
                    format!(
                        "{} {} {} {data}",
                        record.usage, record.selector, record.matching
                    )
                })
                .collect(),
            mx_host: Vec::new(),
        },
        (TlsPolicy::Verified { why: "MTA-STS" }, Some(policy)) => PolicyUsed {
            policy_type: PolicyType::Sts,
            policy_string: policy.lines(),
            mx_host: policy.mx.clone(),
        },
        _ => PolicyUsed {
            policy_type: PolicyType::NoPolicyFound,
            policy_string: Vec::new(),
            mx_host: Vec::new(),
        },
    }
}
