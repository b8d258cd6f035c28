//! SMTP for Letterlock: inbound mail from other servers (MX, RFC 5321) for local recipients
//! only, and authenticated submission from our own users (RFC 6409, RFC 8314), both delivered
//! into the encrypted mail store through one group committer.
//!
//! - `framing`: sans-IO framing of command lines, DATA and BDAT chunks, with bounds.
//! - `session`: the session over any `AsyncRead + AsyncWrite` stream, and [`SmtpServer`].
//! - `batcher`: group commit, many deliveries per durable commit, none acknowledged before it.
//! - `limiter`: failed-login limits per account and per client address.
//! - `trace`: the `Return-Path` and `Received` headers.
//! - `settings`: every limit, named, with its default.
//! - `auth`: sender authentication of inbound mail (SPF, DKIM, DMARC, ARC, iprev) and the
//!   `Authentication-Results` header.
//!
//! Submitted mail for remote recipients is DKIM-signed (Ed25519 and RSA) and put in the
//! outbound queue (`letterlock-queue`) when an [`Outbound`] is given; without one, remote
//! recipients get a temporary `451`. Inbound mail is authenticated when `Settings` carries a
//! [`auth::SenderAuthenticator`]: DMARC `p=reject` failures are refused, `p=quarantine` ones
//! filed in Junk.

use std::sync::Arc;

use letterlock_mailstore::MailStore;
pub use letterlock_queue::Outbound;
use letterlock_server::{Connection, SessionFuture, SessionHandler};

pub mod auth;
pub mod batcher;
pub mod encryption;
pub mod filter;
pub mod framing;
pub mod limiter;
pub mod reply;
pub mod session;
pub mod settings;
pub mod signatures;
pub mod signing;
pub mod trace;

pub use reply::Reply;
pub use session::{Mode, SessionContext, SmtpServer};
pub use settings::Settings;

/// The SMTP [`SessionHandler`] for the server's listeners (MX, submission over TLS, and
/// submission with STARTTLS).
pub struct SmtpHandler {
    server: Arc<SmtpServer>,
}

impl SmtpHandler {
    pub fn server(&self) -> &Arc<SmtpServer> {
        &self.server
    }
}

impl SessionHandler for SmtpHandler {
    fn run(&self, connection: Connection) -> SessionFuture {
        let server = Arc::clone(&self.server);
        Box::pin(server.serve_connection(connection))
    }
}

/// The handler to put in `Handlers { smtp: Some(..), .. }`. Starts the group-commit thread.
pub fn handler(store: MailStore, settings: Settings) -> std::io::Result<Arc<dyn SessionHandler>> {
    handler_with_outbound(store, settings, None)
}

/// As [`handler`], with submitted mail for remote recipients DKIM-signed and put in the
/// outbound queue.
pub fn handler_with_outbound(
    store: MailStore,
    settings: Settings,
    outbound: Option<Outbound>,
) -> std::io::Result<Arc<dyn SessionHandler>> {
    Ok(Arc::new(SmtpHandler {
        server: SmtpServer::with_outbound(store, settings, outbound)?,
    }))
}
