//! The listening sockets of every enabled service and what happens to a connection before
//! its protocol session starts: the connection limits, the implicit-TLS handshake
//! (RFC 8314) and the graceful shutdown.
//!
//! Binding ([`Server::bind`]) is a step of its own, so that a caller learns the addresses
//! actually bound (port 0 in tests) before it runs the server ([`Server::run`]).
//! Until the protocol implementations land, every service answers with its protocol's
//! "not available yet" (see the `refusal` module) and closes.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, Service, TlsMode};
use crate::connection_limit::{ConnectionLimiter, LimitExceeded};
use crate::refusal::{self, Refusal};
use crate::session::{Connection, Handlers, ShutdownSignal, Transport};

/// A client that has not finished the TLS handshake by then is disconnected.
pub const HANDSHAKE_TIMEOUT_SECS: u64 = 10;
/// On shutdown, connections still open this long after the listeners closed are cut.
pub const SHUTDOWN_GRACE_SECS: u64 = 5;
/// Connections over a limit are told so by tasks of their own; past this many at once, more
/// are closed without a word, so that refusing cannot itself exhaust the server.
pub const REFUSALS_IN_FLIGHT_MAX: usize = 64;
/// After a failed accept (out of file descriptors, say), wait this long before the next
/// one rather than spin.
pub const ACCEPT_ERROR_BACKOFF_MS: u64 = 100;

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{service}: cannot listen on {address}: {}", describe_bind_error(.source))]
    Bind {
        service: Service,
        address: SocketAddr,
        source: io::Error,
    },
}

fn describe_bind_error(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::AddrInUse => {
            "address in use (is another mail server, or another Letterlock, running?)".to_string()
        }
        io::ErrorKind::PermissionDenied => "permission denied (ports below 1024 need root or \
                                            the CAP_NET_BIND_SERVICE capability)"
            .to_string(),
        io::ErrorKind::AddrNotAvailable => "no such address on this machine".to_string(),
        _ => error.to_string(),
    }
}

/// One bound listener, as the operator is told about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerInfo {
    pub service: Service,
    pub address: SocketAddr,
}

impl ListenerInfo {
    pub fn tls_mode(&self) -> TlsMode {
        self.service.tls_mode()
    }
}

/// `service  address  tls mode`, in columns.
impl fmt::Display for ListenerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<20} {:<24} {}",
            self.service.key(),
            self.address.to_string(),
            self.tls_mode()
        )
    }
}

/// Every enabled service, bound and ready to run.
pub struct Server {
    listeners: Vec<(ListenerInfo, TcpListener)>,
    shared: Arc<Shared>,
}

/// What every connection task needs.
struct Shared {
    hostname: String,
    tls_acceptor: TlsAcceptor,
    limiter: Arc<ConnectionLimiter>,
    refusals_in_flight: Arc<Semaphore>,
    handlers: Handlers,
}

/// Binds every enabled service of `config`, prints one line per listener to standard output
/// (`service  address  TLS mode`, the operator's first sight of a running server), then serves
/// until `shutdown` resolves. `tls` is an `Arc<ServerConfig>` or a [`crate::TlsIdentity`].
pub async fn serve(
    config: Config,
    tls: impl Into<Arc<ServerConfig>>,
    handlers: Handlers,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let server = Server::bind(&config, tls.into(), handlers).await?;
    for listener in server.listeners() {
        println!("letterlock: listening {listener}");
    }
    server.run(shutdown).await
}

impl Server {
    /// Binds the listener of every enabled service and logs one line for each. Fails on the
    /// first address that cannot be bound, naming its service.
    pub async fn bind(
        config: &Config,
        tls: Arc<ServerConfig>,
        handlers: Handlers,
    ) -> Result<Server, ServeError> {
        let mut listeners = Vec::new();
        for (service, address) in config.listen.enabled() {
            let listener = TcpListener::bind(address)
                .await
                .map_err(|source| ServeError::Bind {
                    service,
                    address,
                    source,
                })?;
            let address = listener.local_addr().map_err(|source| ServeError::Bind {
                service,
                address,
                source,
            })?;
            listeners.push((ListenerInfo { service, address }, listener));
        }
        for (info, _) in &listeners {
            tracing::debug!("listening: {info}");
        }
        let limits = &config.limits;
        let shared = Shared {
            hostname: config.hostname.to_string(),
            tls_acceptor: TlsAcceptor::from(tls),
            limiter: ConnectionLimiter::new(
                limits.connections_per_ip_max as usize,
                limits.connections_max as usize,
            ),
            refusals_in_flight: Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT_MAX)),
            handlers,
        };
        Ok(Server {
            listeners,
            shared: Arc::new(shared),
        })
    }

    /// The bound listeners, in the order of [`Service::ALL`].
    pub fn listeners(&self) -> Vec<ListenerInfo> {
        self.listeners.iter().map(|(info, _)| *info).collect()
    }

    /// The address a service is bound to, if it is enabled.
    pub fn local_address(&self, service: Service) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(info, _)| info.service == service)
            .map(|(info, _)| info.address)
    }

    /// Accepts connections until `shutdown` resolves; then stops accepting, gives open
    /// connections up to [`SHUTDOWN_GRACE_SECS`] to finish, closes the rest and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let (shutdown_sender, shutdown_receiver) = watch::channel(false);
        let mut accept_loops = JoinSet::new();
        for (info, listener) in self.listeners {
            accept_loops.spawn(accept_loop(
                info,
                listener,
                Arc::clone(&self.shared),
                ShutdownSignal(shutdown_receiver.clone()),
            ));
        }
        shutdown.await;
        tracing::info!(
            "shutting down: no new connections; {} open, given up to {SHUTDOWN_GRACE_SECS}s",
            self.shared.limiter.open_total()
        );
        // The receivers live as long as the accept loops, so this cannot fail.
        let _ = shutdown_sender.send(true);
        while let Some(finished) = accept_loops.join_next().await {
            if let Err(error) = finished {
                tracing::error!("a listener task failed: {error}");
            }
        }
        tracing::info!("shut down");
        Ok(())
    }
}

/// Accepts the connections of one listener until shutdown, then waits for them to finish.
async fn accept_loop(
    info: ListenerInfo,
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: ShutdownSignal,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.requested() => break,
            // Reaps finished connection tasks, so the set holds only open connections.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    admit(&mut connections, info.service, stream, peer, &shared, &shutdown);
                }
                Err(error) => {
                    tracing::warn!("{}: cannot accept a connection: {error}", info.service);
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                }
            },
        }
    }
    drop(listener);
    let finish_all = async { while connections.join_next().await.is_some() {} };
    if timeout(Duration::from_secs(SHUTDOWN_GRACE_SECS), finish_all)
        .await
        .is_err()
    {
        tracing::warn!(
            "{}: closing {} connections still open after {SHUTDOWN_GRACE_SECS}s",
            info.service,
            connections.len()
        );
        connections.shutdown().await;
    }
}

/// Starts the task of a new connection: its session, or its refusal when over a limit.
fn admit(
    connections: &mut JoinSet<()>,
    service: Service,
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    shutdown: &ShutdownSignal,
) {
    let shared_for_task = Arc::clone(shared);
    let shutdown = shutdown.clone();
    // Mail protocols are request/response with small writes: without TCP_NODELAY, Nagle's
    // algorithm and delayed ACKs add ~40 ms to exchanges (measured on IMAP logins).
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!("{service}: cannot set TCP_NODELAY for {peer}: {error}");
    }
    match shared.limiter.try_acquire(peer.ip()) {
        Ok(permit) => {
            tracing::debug!("{service}: connection from {peer}");
            connections.spawn(async move {
                match shared_for_task.handlers.for_protocol(service.protocol()) {
                    Some(handler) => {
                        let handler = Arc::clone(handler);
                        start_session(service, stream, peer, &shared_for_task, handler, shutdown)
                            .await;
                    }
                    None => {
                        respond(
                            service,
                            stream,
                            &shared_for_task,
                            Refusal::NotAvailableYet,
                            shutdown,
                        )
                        .await;
                    }
                }
                drop(permit);
            });
        }
        Err(exceeded) => {
            let refusal = match exceeded {
                LimitExceeded::PerClient => Refusal::TooManyFromClient,
                LimitExceeded::Total => Refusal::TooManyTotal,
            };
            tracing::info!("{service}: refusing {peer}: {exceeded:?} connection limit reached");
            match Arc::clone(&shared.refusals_in_flight).try_acquire_owned() {
                Ok(refusal_permit) => {
                    connections.spawn(async move {
                        respond(service, stream, &shared_for_task, refusal, shutdown).await;
                        drop(refusal_permit);
                    });
                }
                // Already refusing as many as we will: close without a word.
                Err(_) => drop(stream),
            }
        }
    }
}

/// The implicit-TLS handshake, bounded by [`HANDSHAKE_TIMEOUT_SECS`] and by shutdown.
async fn handshake(
    service: Service,
    stream: TcpStream,
    shared: &Shared,
    shutdown: &mut ShutdownSignal,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let handshake = timeout(
        Duration::from_secs(HANDSHAKE_TIMEOUT_SECS),
        shared.tls_acceptor.accept(stream),
    );
    tokio::select! {
        handshake = handshake => match handshake {
            Ok(Ok(tls_stream)) => Some(tls_stream),
            Ok(Err(error)) => {
                tracing::debug!("{service}: TLS handshake failed: {error}");
                None
            }
            Err(_) => {
                tracing::debug!("{service}: no TLS handshake within {HANDSHAKE_TIMEOUT_SECS}s");
                None
            }
        },
        () = shutdown.requested() => None,
    }
}

/// Hands an admitted connection to its protocol's session, after the TLS handshake on an
/// implicit-TLS service.
async fn start_session(
    service: Service,
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    handler: Arc<dyn crate::session::SessionHandler>,
    mut shutdown: ShutdownSignal,
) {
    let local = match stream.local_addr() {
        Ok(local) => local,
        Err(error) => {
            tracing::debug!("{service}: connection from {peer} lost at once: {error}");
            return;
        }
    };
    let transport = if service.tls_mode() == TlsMode::Implicit {
        match handshake(service, stream, shared, &mut shutdown).await {
            Some(tls_stream) => Transport::Tls(Box::new(tls_stream)),
            None => return,
        }
    } else {
        Transport::Plain(stream)
    };
    let connection = Connection {
        service,
        peer,
        local,
        transport,
        tls_acceptor: shared.tls_acceptor.clone(),
        hostname: shared.hostname.clone(),
        shutdown,
    };
    handler.run(connection).await;
}

/// Does the TLS handshake first on an implicit-TLS service, then answers.
async fn respond(
    service: Service,
    stream: TcpStream,
    shared: &Shared,
    refusal: Refusal,
    mut shutdown: ShutdownSignal,
) {
    let protocol = service.protocol();
    if service.tls_mode() != TlsMode::Implicit {
        refusal::refuse(stream, protocol, &shared.hostname, refusal, shutdown).await;
        return;
    }
    let Some(tls_stream) = handshake(service, stream, shared, &mut shutdown).await else {
        return;
    };
    refusal::refuse(tls_stream, protocol, &shared.hostname, refusal, shutdown).await;
}
