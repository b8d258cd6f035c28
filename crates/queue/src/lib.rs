//! The outbound half of Letterlock's SMTP: a durable, encrypted queue of mail for remote
//! recipients, its delivery to their MX hosts, DKIM signing, and bounces.
//!
//! - `spool_key`: the server secret that seals the queue and the DKIM keys, kept apart from
//!   the data (a 0600 key file, or an environment variable).
//! - `store`: the queue on the storage interface (its own tables; it never names an engine):
//!   enqueue, the operator's list/show/retry/delete, and claims with a lease for the runners.
//! - `resolver`: MX routing (RFC 5321 section 5.1, null MX RFC 7505) behind a trait: hickory
//!   for real, a map for tests.
//! - `client`: the SMTP client (RFC 5321, STARTTLS RFC 3207, REQUIRETLS RFC 8689), with the
//!   TLS policy of each host: opportunistic, verified, or DANE.
//! - `mta_sts`: MTA-STS (RFC 8461): the TXT announcement, the policy fetched over HTTPS, and
//!   its durable, sealed cache.
//! - `dane`: DANE for SMTP (RFC 7672): TLSA matching and the certificate verifier.
//! - `https`: the small HTTPS GET client MTA-STS and WKD use (verified TLS, no redirects).
//! - `wkd`: recipients' OpenPGP keys found by Web Key Directory, cached.
//! - `runner`: claims due entries, delivers per domain, retries with backoff until expiry
//!   (RFC 5321 section 4.5.4.1), bounces.
//! - `dsn`: bounces as RFC 3464 delivery status notifications.
//! - `dkim`: per-domain Ed25519 (RFC 8463) and RSA (RFC 6376) keys, signing, DNS records.
//! - `dmarc_reports`: DMARC aggregate reports (RFC 7489 section 7.2): collected from inbound
//!   checks, sent daily through the queue, and the ones received about our domains kept.
//!
//! DSN requests (RFC 3461) are honoured: NOTIFY decides which reports go out (failure by
//! default; success as "relayed" when the next server does not do DSN, else passed on with
//! ORCPT; delay once after [`runner::DELAY_REPORT_AFTER_SECS`]), RET=FULL returns the whole
//! message with a failure report, ENVID is echoed.
//!
//! - `trusted_senders`: the keys users trust for correspondents, in a copy sealed under the
//!   spool key that inbound signature checks read at delivery.
//! - `tls_reports`: TLS-RPT (RFC 8460): per-domain TLS results counted during delivery and a
//!   daily report to the domain's rua (mailed, or posted over HTTPS).

use std::sync::Arc;

pub mod client;
pub mod dane;
pub mod dkim;
pub mod dmarc_reports;
pub mod dsn;
pub mod error;
pub mod https;
pub mod mta_sts;
pub mod resolver;
pub mod runner;
mod sealed;
pub mod spool_key;
pub mod store;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod tls_reports;
pub mod trusted_senders;
pub mod wkd;

pub use dkim::{DkimKeys, DomainSigner, TxtRecord};
pub use dmarc_reports::DmarcReports;
pub use error::{QueueError, Result};
pub use resolver::{HickoryResolver, MapResolver, Resolver};
pub use runner::{Runner, RunnerSettings};
pub use spool_key::SpoolKey;
pub use store::{
    DsnRequest, EntryStatus, Envelope, Notify, Queue, QueueId, QueueSettings, RecipientRequest,
    RecipientState,
};
pub use trusted_senders::TrustedSenderKeys;

/// What the SMTP submission path needs to send mail out: the queue, the DKIM keys of the local
/// domains, and the runner's wake-up (so a submitted message leaves at once, not at the next
/// poll).
#[derive(Clone)]
pub struct Outbound {
    pub queue: Queue,
    pub dkim: DkimKeys,
    pub wake: Option<Arc<tokio::sync::Notify>>,
}
