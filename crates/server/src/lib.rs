//! The long-running `letterlock serve` process, minus the protocols: its configuration file
//! ([`config`]), its TLS material ([`tls`]), and the listeners that accept connections for
//! every service, limit them and shut down gracefully ([`listeners`]).
//!
//! The binary calls, in this order:
//! [`Config::load_or_create`], [`tls::load_or_generate`] (whose [`TlsIdentity`] carries the
//! certificate's fingerprint to print), then [`serve`]; or [`Server::bind`] and
//! [`Server::run`] to learn the bound addresses in between (tests bind port 0).
//!
//! Until the protocol implementations land, each service answers with its protocol's own
//! "not available yet" reply and closes (see [`refusal`]).

pub mod config;
pub mod connection_limit;
pub mod listeners;
pub mod refusal;
pub mod session;
pub mod tls;

pub use config::{Config, ConfigError, InvalidConfig, Service, TlsMode};
pub use listeners::{serve, ListenerInfo, ServeError, Server};
pub use session::{Connection, Handlers, SessionFuture, SessionHandler, ShutdownSignal, Transport};
pub use tls::{TlsError, TlsIdentity};
