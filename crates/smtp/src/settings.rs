//! The named, configurable limits of an SMTP session, with their defaults and the reasons for
//! them. The server's configuration fills in the ones it knows (`Settings::from_limits`); the
//! rest keep the defaults here.

use std::sync::Arc;
use std::time::Duration;

use letterlock_server::config::Limits;

use crate::auth::SenderAuthenticator;
use letterlock_queue::wkd::KeyDiscovery;

/// RFC 5321 section 4.5.3.1.4: a command line is at most 512 octets including CRLF, but SMTP
/// extensions (SIZE, DSN, SMTPUTF8 addresses) lengthen MAIL and RCPT; 1000 matches the text
/// line limit of section 4.5.3.1.6 and what Postfix and Exim accept.
pub const COMMAND_LINE_LENGTH_MAX_BYTES: usize = 1000;
/// RFC 4954 section 4: an AUTH command with an initial response may be up to 12288 octets.
pub const AUTH_LINE_LENGTH_MAX_BYTES: usize = 12288;
/// RFC 3461 section 4.4: an ENVID is at most 100 characters.
pub const DSN_ENVID_LENGTH_MAX: usize = 100;
/// RFC 3461 section 4.2: an ORCPT is at most 500 characters.
pub const DSN_ORCPT_LENGTH_MAX: usize = 500;
/// RFC 5321 section 4.5.3.1.6 says 1000 octets per text line; real mail breaks it (long HTML
/// lines, badly wrapped base64), so DATA accepts lines up to this bound and refuses the message
/// past it. The message size limit bounds memory anyway; this bounds one framing step.
pub const DATA_LINE_LENGTH_MAX_BYTES: usize = 64 * 1024;
/// RFC 5321 section 4.5.3.1.8 asks servers to accept at least 100 recipients.
pub const RECIPIENTS_PER_MESSAGE_MAX: usize = letterlock_types::limits::RECIPIENTS_PER_MESSAGE_MAX;
/// Commands (EHLO, NOOP, RSET, VRFY, AUTH...) a client may send without starting a mail
/// transaction; past it, the session is a probe or a directory harvest and is closed.
pub const COMMANDS_BEFORE_MAIL_MAX: u32 = 50;
/// Error replies (5xx) in one session before it is closed with 421.
pub const ERRORS_PER_SESSION_MAX: u32 = 10;
/// RFC 5321 section 4.5.3.2.7: a server should wait at least 5 minutes for the next command.
pub const IDLE_TIMEOUT_SECS_DEFAULT: u64 = 5 * 60;
/// A TLS handshake (STARTTLS) that takes longer than this is abandoned.
pub const TLS_HANDSHAKE_TIMEOUT_SECS: u64 = 30;
/// Failed AUTH attempts in one session before it is closed with 421.
pub const AUTH_FAILURES_PER_SESSION_MAX: u32 = 3;
/// Failed AUTH attempts for one account, over all sessions, within the window, before every
/// further attempt for it is refused without looking at the password.
pub const AUTH_FAILURES_PER_ACCOUNT_MAX: u32 = 10;
/// Failed AUTH attempts from one client address within the window (a password sprayer
/// tries many accounts from one address).
pub const AUTH_FAILURES_PER_IP_MAX: u32 = 20;
/// How long failed attempts are remembered.
pub const AUTH_FAILURE_WINDOW_SECS: u64 = 15 * 60;
/// A failed attempt is answered only after this delay, so guessing is slow even within the
/// limits above.
pub const AUTH_FAILURE_DELAY_MS: u64 = 1000;
/// Deliveries of one durable commit at most (group commit).
pub const GROUP_COMMIT_MESSAGES_MAX: usize = 128;
/// Bytes of one group commit at most: the batch is held in memory until its commit.
pub const GROUP_COMMIT_BYTES_MAX: usize = 64 * 1024 * 1024;
/// How long the committer waits for more deliveries once it has seen concurrent sessions.
pub const GROUP_COMMIT_WINDOW_MICROS: u64 = 1500;
/// Deliveries waiting for the committer at most; a session past it waits its turn.
pub const DELIVERY_QUEUE_MAX: usize = 1024;

/// The limits of SMTP sessions. `Default` gives the constants above and the workspace's
/// message size limit.
#[derive(Debug, Clone)]
pub struct Settings {
    pub message_size_max_bytes: usize,
    pub command_line_length_max_bytes: usize,
    pub data_line_length_max_bytes: usize,
    pub recipients_per_message_max: usize,
    pub commands_before_mail_max: u32,
    pub errors_per_session_max: u32,
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub auth_failures_per_session_max: u32,
    pub auth_failures_per_account_max: u32,
    pub auth_failures_per_ip_max: u32,
    pub auth_failure_window: Duration,
    pub auth_failure_delay: Duration,
    pub group_commit_messages_max: usize,
    pub group_commit_bytes_max: usize,
    pub group_commit_window: Duration,
    pub delivery_queue_max: usize,
    /// Combined spam and phishing score at or above which inbound mail is filed in Junk.
    pub junk_threshold: f64,
    /// Score at or above which inbound mail is refused at SMTP time (550 5.7.1).
    pub reject_threshold: f64,
    /// SPF, DKIM, DMARC, ARC and iprev for inbound mail. `None` (the default, so nothing in a
    /// test reaches DNS by accident): not checked, and no `Authentication-Results` is written,
    /// though forged ones claiming our host name are still removed.
    pub sender_authentication: Option<Arc<SenderAuthenticator>>,
    /// Looks up recipients' keys by WKD for outbound encryption when no Autocrypt header
    /// taught one. `None` (the default): only learnt keys are used.
    pub key_discovery: Option<Arc<KeyDiscovery>>,
    /// DMARC evaluations (for aggregate reports) written per durable commit.
    pub dmarc_batch_records: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            message_size_max_bytes: letterlock_types::limits::MESSAGE_SIZE_MAX_BYTES,
            command_line_length_max_bytes: COMMAND_LINE_LENGTH_MAX_BYTES,
            data_line_length_max_bytes: DATA_LINE_LENGTH_MAX_BYTES,
            recipients_per_message_max: RECIPIENTS_PER_MESSAGE_MAX,
            commands_before_mail_max: COMMANDS_BEFORE_MAIL_MAX,
            errors_per_session_max: ERRORS_PER_SESSION_MAX,
            idle_timeout: Duration::from_secs(IDLE_TIMEOUT_SECS_DEFAULT),
            tls_handshake_timeout: Duration::from_secs(TLS_HANDSHAKE_TIMEOUT_SECS),
            key_discovery: None,
            dmarc_batch_records: letterlock_queue::dmarc_reports::COLLECTOR_FLUSH_RECORDS,
            auth_failures_per_session_max: AUTH_FAILURES_PER_SESSION_MAX,
            auth_failures_per_account_max: AUTH_FAILURES_PER_ACCOUNT_MAX,
            auth_failures_per_ip_max: AUTH_FAILURES_PER_IP_MAX,
            auth_failure_window: Duration::from_secs(AUTH_FAILURE_WINDOW_SECS),
            auth_failure_delay: Duration::from_millis(AUTH_FAILURE_DELAY_MS),
            group_commit_messages_max: GROUP_COMMIT_MESSAGES_MAX,
            group_commit_bytes_max: GROUP_COMMIT_BYTES_MAX,
            group_commit_window: Duration::from_micros(GROUP_COMMIT_WINDOW_MICROS),
            delivery_queue_max: DELIVERY_QUEUE_MAX,
            junk_threshold: letterlock_filter::JUNK_THRESHOLD_DEFAULT,
            reject_threshold: letterlock_filter::REJECT_THRESHOLD_DEFAULT,
            sender_authentication: None,
        }
    }
}

impl Settings {
    /// The defaults, with what the server's `[limits]` section sets.
    pub fn from_limits(limits: &Limits) -> Settings {
        Settings {
            message_size_max_bytes: limits.message_size_max_bytes,
            idle_timeout: Duration::from_secs(limits.idle_timeout_secs),
            ..Settings::default()
        }
    }
}
