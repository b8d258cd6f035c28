//! How a protocol implementation plugs into the listeners: a [`SessionHandler`] per protocol
//! receives each admitted [`Connection`] (limits already applied, the implicit-TLS handshake
//! already done) and runs the session to its end.
//!
//! The listeners know nothing of SMTP, IMAP, POP3 or HTTP beyond this; the protocol crates know
//! nothing of sockets beyond a [`Connection`]. A protocol without a handler answers
//! "not available yet" (see `refusal`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{Protocol, Service};

/// The byte stream of a connection.
pub enum Transport {
    /// Plain TCP: a port where TLS starts with STARTTLS/STLS (or never, on MX).
    Plain(TcpStream),
    /// TLS from the first byte (RFC 8314), handshake done.
    Tls(Box<TlsStream<TcpStream>>),
}

/// One admitted connection, handed to its protocol's [`SessionHandler`].
pub struct Connection {
    pub service: Service,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub transport: Transport,
    /// For STARTTLS/STLS on a plain transport: the server's TLS configuration.
    pub tls_acceptor: TlsAcceptor,
    /// The name the server greets with.
    pub hostname: String,
    pub shutdown: ShutdownSignal,
}

/// Resolves once a shutdown has been asked for. Every session holds one, so that it can end
/// its waits (idle, IDLE, DATA) and say goodbye in its protocol's words.
#[derive(Clone)]
pub struct ShutdownSignal(pub(crate) watch::Receiver<bool>);

impl ShutdownSignal {
    pub async fn requested(&mut self) {
        // An error means the sender is gone, which only happens when the server is stopping.
        let _ = self.0.wait_for(|&requested| requested).await;
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// A signal that never fires, for sessions driven by tests.
    pub fn never() -> ShutdownSignal {
        let (sender, receiver) = watch::channel(false);
        // Leaking one sender keeps the channel open for the life of the process, which is what
        // "never" means; tests create a handful.
        std::mem::forget(sender);
        ShutdownSignal(receiver)
    }
}

pub type SessionFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A protocol implementation. `run` owns the connection and returns when the session ends.
pub trait SessionHandler: Send + Sync + 'static {
    fn run(&self, connection: Connection) -> SessionFuture;
}

/// The handler of each protocol; `None` answers "not available yet".
#[derive(Clone, Default)]
pub struct Handlers {
    pub smtp: Option<Arc<dyn SessionHandler>>,
    pub imap: Option<Arc<dyn SessionHandler>>,
    pub pop3: Option<Arc<dyn SessionHandler>>,
    pub http: Option<Arc<dyn SessionHandler>>,
}

impl Handlers {
    pub fn for_protocol(&self, protocol: Protocol) -> Option<&Arc<dyn SessionHandler>> {
        match protocol {
            Protocol::Smtp => self.smtp.as_ref(),
            Protocol::Imap => self.imap.as_ref(),
            Protocol::Pop3 => self.pop3.as_ref(),
            Protocol::Http => self.http.as_ref(),
        }
    }
}
