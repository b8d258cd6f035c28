//! The IMAP server of Letterlock: IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) over implicit
//! TLS (port 993, RFC 8314) and STARTTLS (port 143, RFC 9051 section 6.2.1: no credentials
//! before TLS, LOGINDISABLED), on top of the mail store.
//!
//! - `syntax`: commands, sans-IO (bytes in, a typed command out); `sequence`: sequence sets;
//! - `io`: framing of lines and literals with limits checked before anything is read;
//! - `session`: the state machine (RFC 9051 section 3) and the semantics of each command;
//! - `encode`, `mime`, `search`: response data, MIME views of a message, SEARCH evaluation;
//! - `login_limits`: failed logins per account and per client.
//!
//! Extensions: LITERAL+, SASL-IR, AUTH=PLAIN, ENABLE, ID, IDLE, NAMESPACE, UIDPLUS, MOVE,
//! UNSELECT, CHILDREN, SPECIAL-USE, LIST-EXTENDED, LIST-STATUS, ESEARCH, STATUS=SIZE,
//! APPENDLIMIT, CONDSTORE.

use std::sync::Arc;
use std::time::Duration;

use letterlock_mailstore::MailStore;
use letterlock_server::{Config, SessionHandler};

mod encode;
mod io;
pub mod limits;
mod login_limits;
mod mime;
mod search;
mod sequence;
mod session;
pub mod sort;
pub mod syntax;
pub mod thread;
pub mod training;

/// What the IMAP server takes from the configuration.
#[derive(Debug, Clone)]
pub struct ImapSettings {
    /// APPENDLIMIT (RFC 7889): the configured message size limit.
    pub message_size_max_bytes: usize,
    /// Inactivity after which a session is logged out (RFC 9051 section 5.4 asks for at least
    /// 30 minutes once authenticated).
    pub idle_timeout: Duration,
}

impl ImapSettings {
    pub fn from_config(config: &Config) -> ImapSettings {
        ImapSettings {
            message_size_max_bytes: config.limits.message_size_max_bytes,
            idle_timeout: Duration::from_secs(config.limits.idle_timeout_secs),
        }
    }
}

/// The IMAP handler for [`letterlock_server::Handlers::imap`]: serves both 993 (implicit TLS)
/// and 143 (STARTTLS).
pub fn handler(store: MailStore, settings: ImapSettings) -> Arc<dyn SessionHandler> {
    Arc::new(session::ImapHandler::new(store, settings))
}
