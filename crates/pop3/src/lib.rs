//! POP3 for Letterlock: RFC 1939 with CAPA (RFC 2449), STLS (RFC 2595), SASL PLAIN
//! (RFC 5034, RFC 4616) and extended response codes (RFC 2449, RFC 3206).
//!
//! Credentials are accepted only over TLS: on port 110 a client must STLS first, and USER,
//! PASS and AUTH say so until it does. A login unlocks the account's keys for the session;
//! the maildrop is INBOX, with UIDL values built from the same UIDs IMAP shows, so a user can
//! mix clients. DELE takes effect at QUIT only (the UPDATE state), as RFC 1939 requires.
//!
//! [`protocol`] is the sans-IO part; this module drives it over any async stream.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use letterlock_mailstore::{MailStore, StoreError, Unlocked};
use letterlock_server::{Connection, SessionFuture, SessionHandler, ShutdownSignal, Transport};
use letterlock_types::{EmailAddress, MailboxName, Secret};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

pub mod auth_limit;
pub mod protocol;

use auth_limit::{AuthFailures, Blocked};
use protocol::{err, err_code, multiline, ok, Command, CommandError, ResponseCode};

/// RFC 1939 section 3: the autologout timer is at least 10 minutes.
pub const IDLE_TIMEOUT_SECS_MIN: u64 = 600;
/// Commands that fail, in a row or not, before the server gives up on the client.
pub const ERRORS_BEFORE_DISCONNECT: u32 = 20;
/// A failed login answers only after this delay (RFC 1939 section 13 suggests one), which
/// bounds guessing per connection without holding a thread.
pub const FAILED_LOGIN_DELAY_MS: u64 = 500;
/// A SASL PLAIN continuation line: base64 of authzid, authcid (an address) and password.
pub const SASL_LINE_LENGTH_MAX_BYTES: usize = 2048;

/// What the binary sets from its configuration.
#[derive(Debug, Clone)]
pub struct Pop3Settings {
    pub idle_timeout_secs: u64,
    pub message_size_max_bytes: usize,
}

impl Default for Pop3Settings {
    fn default() -> Pop3Settings {
        Pop3Settings {
            idle_timeout_secs: IDLE_TIMEOUT_SECS_MIN,
            message_size_max_bytes: letterlock_types::limits::MESSAGE_SIZE_MAX_BYTES,
        }
    }
}

/// The POP3 service, shared by every connection.
pub struct Pop3 {
    store: MailStore,
    settings: Pop3Settings,
    failures: Mutex<AuthFailures>,
    /// Accounts with an open maildrop: RFC 1939 section 8 asks for an exclusive lock.
    in_use: Mutex<HashSet<EmailAddress>>,
}

/// The handler to register for the POP3 services (110 with STLS, 995 implicit TLS).
pub fn handler(store: MailStore, settings: Pop3Settings) -> Arc<dyn SessionHandler> {
    Arc::new(Pop3Handler(Arc::new(Pop3::new(store, settings))))
}

impl Pop3 {
    pub fn new(store: MailStore, mut settings: Pop3Settings) -> Pop3 {
        settings.idle_timeout_secs = settings.idle_timeout_secs.max(IDLE_TIMEOUT_SECS_MIN);
        Pop3 {
            store,
            settings,
            failures: Mutex::new(AuthFailures::default()),
            in_use: Mutex::new(HashSet::new()),
        }
    }
}

/// The [`SessionHandler`] the listeners call: each connection gets a task of its own.
pub struct Pop3Handler(Arc<Pop3>);

impl SessionHandler for Pop3Handler {
    fn run(&self, connection: Connection) -> SessionFuture {
        Box::pin(run_connection(Arc::clone(&self.0), connection))
    }
}

/// What a session ended with.
enum Ended<S> {
    /// The client asked for TLS: here is the bare stream back (anything it pipelined after
    /// STLS is dropped with the buffer, so it cannot be injected into the TLS session).
    StartTls(S),
    Closed,
}

struct Maildrop {
    account: EmailAddress,
    session: Arc<Unlocked>,
    uid_validity: u32,
    messages: Vec<Entry>,
}

struct Entry {
    uid: u32,
    size_bytes: u64,
    deleted: bool,
}

/// Releases the maildrop lock when the session ends, however it ends.
struct InUseGuard {
    service: Arc<Pop3>,
    account: EmailAddress,
}

impl Drop for InUseGuard {
    fn drop(&mut self) {
        if let Ok(mut in_use) = self.service.in_use.lock() {
            in_use.remove(&self.account);
        }
    }
}

pub(crate) struct Session<'a> {
    service: &'a Arc<Pop3>,
    peer: SocketAddr,
    hostname: &'a str,
    tls: bool,
    user: Option<String>,
    maildrop: Option<(Maildrop, InUseGuard)>,
    errors: u32,
}

/// Run one connection: on a plain transport, until STLS or the end; then over TLS.
pub async fn run_connection(service: Arc<Pop3>, connection: Connection) {
    let Connection {
        transport,
        peer,
        tls_acceptor,
        hostname,
        shutdown,
        ..
    } = connection;
    match transport {
        Transport::Tls(stream) => {
            let _ = session(&service, *stream, peer, &hostname, true, shutdown, true).await;
        }
        Transport::Plain(stream) => {
            let ended = session(
                &service,
                stream,
                peer,
                &hostname,
                false,
                shutdown.clone(),
                true,
            )
            .await;
            if let Ended::StartTls(stream) = ended {
                match tls_acceptor.accept(stream).await {
                    Ok(tls_stream) => {
                        // RFC 2595 section 4: after STLS the client starts over, with no greeting.
                        let _ =
                            session(&service, tls_stream, peer, &hostname, true, shutdown, false)
                                .await;
                    }
                    Err(error) => {
                        tracing::debug!("pop3: STLS handshake with {peer} failed: {error}")
                    }
                }
            }
        }
    }
}

/// Drive one POP3 session over `stream`.
async fn session<S: AsyncRead + AsyncWrite + Unpin + Send>(
    service: &Arc<Pop3>,
    stream: S,
    peer: SocketAddr,
    hostname: &str,
    tls: bool,
    mut shutdown: ShutdownSignal,
    greet: bool,
) -> Ended<S> {
    let mut reader = BufReader::new(stream);
    let mut state = Session {
        service,
        peer,
        hostname,
        tls,
        user: None,
        maildrop: None,
        errors: 0,
    };
    if greet
        && write(
            &mut reader,
            &ok(&format!("{hostname} Letterlock POP3 ready")),
        )
        .await
        .is_err()
    {
        return Ended::Closed;
    }
    let idle = Duration::from_secs(service.settings.idle_timeout_secs);
    loop {
        let line = tokio::select! {
            line = tokio::time::timeout(idle, read_line(&mut reader, protocol::COMMAND_LINE_LENGTH_MAX_BYTES)) => line,
            () = shutdown.requested() => {
                let _ = write(&mut reader, &err_code(ResponseCode::SysTemp, "server shutting down")).await;
                return close(reader).await;
            }
        };
        let line = match line {
            Err(_) => {
                let _ = write(&mut reader, &err("autologout: idle too long")).await;
                return close(reader).await;
            }
            Ok(Err(_)) | Ok(Ok(Line::Eof)) => return Ended::Closed,
            Ok(Ok(Line::TooLong)) => Err(CommandError::LineTooLong),
            Ok(Ok(Line::Complete(bytes))) => Command::parse(&bytes),
        };
        // An account reset by its administrator (or removed) ends the session holding its old
        // key; nothing marked for deletion is removed.
        if let Some((maildrop, _)) = &state.maildrop {
            // One read of a small cached record, done inline (see the IMAP session).
            if !matches!(maildrop.session.is_current(), Ok(true)) {
                let _ = write(
                    &mut reader,
                    &err_code(
                        ResponseCode::Auth,
                        "the account's credentials were reset; log in again",
                    ),
                )
                .await;
                return close(reader).await;
            }
        }
        let step = match line {
            Ok(command) => state.execute(command, &mut reader).await,
            Err(error) => Step::Reply(err(&error.to_string()), false),
        };
        match step {
            Step::Reply(reply, success) => {
                if !success {
                    state.errors += 1;
                }
                if write(&mut reader, &reply).await.is_err() {
                    return Ended::Closed;
                }
                if state.errors >= ERRORS_BEFORE_DISCONNECT {
                    let _ = write(&mut reader, &err("too many errors; closing")).await;
                    return close(reader).await;
                }
            }
            Step::StartTls => {
                if write(&mut reader, &ok("begin TLS negotiation"))
                    .await
                    .is_err()
                {
                    return Ended::Closed;
                }
                return Ended::StartTls(reader.into_inner());
            }
            Step::Quit(reply) => {
                let _ = write(&mut reader, &reply).await;
                return close(reader).await;
            }
            Step::Closed => return Ended::Closed,
        }
    }
}

enum Step {
    /// A reply, and whether the command succeeded (failures count toward the error limit).
    Reply(Vec<u8>, bool),
    StartTls,
    Quit(Vec<u8>),
    Closed,
}

fn reply_ok(text: &str) -> Step {
    Step::Reply(ok(text), true)
}

fn reply_err(text: &str) -> Step {
    Step::Reply(err(text), false)
}

impl Session<'_> {
    async fn execute<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &mut self,
        command: Command,
        reader: &mut BufReader<S>,
    ) -> Step {
        if self.maildrop.is_some() {
            return self.transaction(command).await;
        }
        match command {
            Command::Capa => Step::Reply(self.capabilities(), true),
            Command::Noop => reply_ok(""),
            Command::Quit => Step::Quit(ok(&format!(
                "{} Letterlock POP3 signing off",
                self.hostname
            ))),
            Command::Stls if self.tls => reply_err("already using TLS"),
            Command::Stls => Step::StartTls,
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } if !self.tls => Step::Reply(
                err_code(
                    ResponseCode::Auth,
                    "credentials are accepted only over TLS: use STLS first, or port 995",
                ),
                false,
            ),
            Command::User(name) => {
                self.user = Some(name);
                reply_ok("send PASS")
            }
            Command::Pass(password) => match self.user.take() {
                Some(user) => self.login(&user, Secret::from(password)).await,
                None => reply_err("USER first"),
            },
            Command::Auth {
                mechanism: None, ..
            } => Step::Reply(b"+OK\r\nPLAIN\r\n.\r\n".to_vec(), true),
            Command::Auth {
                mechanism: Some(mechanism),
                initial_response,
            } => {
                if mechanism != "PLAIN" {
                    return reply_err("unsupported mechanism (PLAIN is offered)");
                }
                let response = match initial_response {
                    Some(response) => response,
                    None => {
                        if write(reader, b"+ \r\n").await.is_err() {
                            return Step::Closed;
                        }
                        match read_line(reader, SASL_LINE_LENGTH_MAX_BYTES).await {
                            Ok(Line::Complete(bytes)) => {
                                String::from_utf8_lossy(&bytes).into_owned()
                            }
                            Ok(Line::TooLong) => return reply_err("SASL response too long"),
                            _ => return Step::Closed,
                        }
                    }
                };
                if response == "*" {
                    return reply_err("authentication cancelled");
                }
                match decode_plain(&response) {
                    Some((user, password)) => self.login(&user, password).await,
                    None => reply_err("malformed SASL PLAIN response"),
                }
            }
            Command::Stat
            | Command::List(_)
            | Command::Uidl(_)
            | Command::Retr(_)
            | Command::Top { .. }
            | Command::Dele(_)
            | Command::Rset => reply_err("log in first"),
        }
    }

    fn capabilities(&self) -> Vec<u8> {
        let mut lines = vec![
            "+OK capabilities follow",
            "TOP",
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "EXPIRE NEVER",
        ];
        if self.tls {
            if self.maildrop.is_none() {
                lines.push("USER");
                lines.push("SASL PLAIN");
            }
        } else {
            lines.push("STLS");
        }
        lines.push("IMPLEMENTATION Letterlock");
        let mut out = lines.join("\r\n");
        out.push_str("\r\n.\r\n");
        out.into_bytes()
    }

    async fn login(&mut self, user: &str, password: Secret) -> Step {
        let service = Arc::clone(self.service);
        let now = Instant::now();
        let checked = service
            .failures
            .lock()
            .map(|failures| failures.check(self.peer.ip(), user, now))
            .unwrap_or(Ok(()));
        if let Err(blocked) = checked {
            let text = match blocked {
                Blocked::ClientAddress => {
                    "too many failed logins from your address; try again later"
                }
                Blocked::Account => "too many failed logins for this account; try again later",
            };
            tracing::info!("pop3: login refused for {}: {blocked:?}", self.peer);
            return Step::Reply(err_code(ResponseCode::Auth, text), false);
        }
        let Ok(address) = EmailAddress::try_from(user) else {
            return self.failed_login(user).await;
        };
        let store = service.store.clone();
        let unlock_address = address.clone();
        let unlocked =
            tokio::task::spawn_blocking(move || store.unlock(&unlock_address, &password)).await;
        let session = match unlocked {
            Ok(Ok(session)) => Arc::new(session),
            Ok(Err(StoreError::WrongCredentials | StoreError::NoSuchUser(_))) => {
                return self.failed_login(user).await
            }
            Ok(Err(error)) => {
                tracing::warn!("pop3: unlock failed: {error}");
                return Step::Reply(
                    err_code(
                        ResponseCode::SysTemp,
                        "cannot open the mailbox now; try later",
                    ),
                    false,
                );
            }
            Err(_) => return Step::Reply(err_code(ResponseCode::SysTemp, "internal error"), false),
        };
        let locked = service
            .in_use
            .lock()
            .map(|mut in_use| in_use.insert(address.clone()))
            .unwrap_or(false);
        if !locked {
            return Step::Reply(
                err_code(
                    ResponseCode::InUse,
                    "the maildrop is open in another POP3 session",
                ),
                false,
            );
        }
        let guard = InUseGuard {
            service: Arc::clone(&service),
            account: address.clone(),
        };
        let listing_session = Arc::clone(&session);
        let listing = tokio::task::spawn_blocking(move || {
            let inbox = MailboxName::inbox();
            let uid_validity = listing_session
                .mailboxes()?
                .into_iter()
                .find(|mailbox| mailbox.name.is_inbox())
                .map(|mailbox| mailbox.uid_validity)
                .ok_or_else(|| StoreError::NoSuchMailbox(inbox.clone()))?;
            Ok::<_, StoreError>((uid_validity, listing_session.list_messages(&inbox)?))
        })
        .await;
        let (uid_validity, summaries) = match listing {
            Ok(Ok(listing)) => listing,
            Ok(Err(error)) => {
                tracing::warn!("pop3: listing the maildrop failed: {error}");
                return Step::Reply(
                    err_code(
                        ResponseCode::SysTemp,
                        "cannot open the mailbox now; try later",
                    ),
                    false,
                );
            }
            Err(_) => return Step::Reply(err_code(ResponseCode::SysTemp, "internal error"), false),
        };
        let messages: Vec<Entry> = summaries
            .into_iter()
            .map(|summary| Entry {
                uid: summary.uid,
                size_bytes: summary.size_bytes,
                deleted: false,
            })
            .collect();
        let total: u64 = messages.iter().map(|entry| entry.size_bytes).sum();
        let reply = format!(
            "{} has {} message(s) ({total} octets)",
            address,
            messages.len()
        );
        self.maildrop = Some((
            Maildrop {
                account: address,
                session,
                uid_validity,
                messages,
            },
            guard,
        ));
        reply_ok(&reply)
    }

    async fn failed_login(&mut self, user: &str) -> Step {
        if let Ok(mut failures) = self.service.failures.lock() {
            failures.record_failure(self.peer.ip(), user, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(FAILED_LOGIN_DELAY_MS)).await;
        Step::Reply(
            err_code(ResponseCode::Auth, "invalid user name or password"),
            false,
        )
    }

    async fn transaction(&mut self, command: Command) -> Step {
        let Some((maildrop, _)) = self.maildrop.as_mut() else {
            return reply_err("log in first");
        };
        match command {
            Command::Capa => Step::Reply(self.capabilities(), true),
            Command::Noop => reply_ok(""),
            Command::Stat => {
                let (count, octets) = maildrop
                    .messages
                    .iter()
                    .filter(|entry| !entry.deleted)
                    .fold((0u64, 0u64), |(count, octets), entry| {
                        (count + 1, octets + entry.size_bytes)
                    });
                reply_ok(&format!("{count} {octets}"))
            }
            Command::List(Some(number)) => match maildrop.live(number) {
                Some(entry) => reply_ok(&format!("{number} {}", entry.size_bytes)),
                None => reply_err("no such message"),
            },
            Command::List(None) => {
                Step::Reply(maildrop.listing(|entry| entry.size_bytes.to_string()), true)
            }
            Command::Uidl(Some(number)) => {
                let uid_validity = maildrop.uid_validity;
                match maildrop.live(number) {
                    Some(entry) => {
                        reply_ok(&format!("{number} {}", unique_id(entry.uid, uid_validity)))
                    }
                    None => reply_err("no such message"),
                }
            }
            Command::Uidl(None) => {
                let uid_validity = maildrop.uid_validity;
                Step::Reply(
                    maildrop.listing(|entry| unique_id(entry.uid, uid_validity)),
                    true,
                )
            }
            Command::Retr(number) => self.send_message(number, None).await,
            Command::Top { message, lines } => self.send_message(message, Some(lines)).await,
            Command::Dele(number) => match maildrop.messages.get_mut(number as usize - 1) {
                Some(entry) if !entry.deleted => {
                    entry.deleted = true;
                    reply_ok(&format!("message {number} deleted"))
                }
                Some(_) => reply_err("message already deleted"),
                None => reply_err("no such message"),
            },
            Command::Rset => {
                for entry in &mut maildrop.messages {
                    entry.deleted = false;
                }
                reply_ok(&format!(
                    "maildrop has {} message(s)",
                    maildrop.messages.len()
                ))
            }
            Command::Quit => self.update().await,
            Command::Stls => reply_err("STLS is only allowed before login"),
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } => {
                reply_err("already logged in")
            }
        }
    }

    async fn send_message(&mut self, number: u32, top_lines: Option<u32>) -> Step {
        let Some((maildrop, _)) = self.maildrop.as_ref() else {
            return reply_err("log in first");
        };
        let Some(entry) = maildrop.live(number) else {
            return reply_err("no such message");
        };
        let uid = entry.uid;
        let size = entry.size_bytes;
        let session = Arc::clone(&maildrop.session);
        let fetched =
            tokio::task::spawn_blocking(move || session.fetch(&MailboxName::inbox(), uid)).await;
        match fetched {
            Ok(Ok(bytes)) => {
                let mut reply = ok(&format!("{size} octets"));
                reply.extend_from_slice(&multiline(&bytes, top_lines));
                Step::Reply(reply, true)
            }
            Ok(Err(StoreError::KeyLost(_))) => Step::Reply(
                err_code(
                    ResponseCode::SysPerm,
                    "this message was encrypted to a key the account no longer holds",
                ),
                false,
            ),
            Ok(Err(error)) => {
                tracing::warn!("pop3: fetching UID {uid} failed: {error}");
                Step::Reply(
                    err_code(ResponseCode::SysTemp, "cannot read the message now"),
                    false,
                )
            }
            Err(_) => Step::Reply(err_code(ResponseCode::SysTemp, "internal error"), false),
        }
    }

    /// RFC 1939 section 6: QUIT in the TRANSACTION state removes the messages marked deleted.
    async fn update(&mut self) -> Step {
        let Some((maildrop, guard)) = self.maildrop.take() else {
            return Step::Quit(ok("bye"));
        };
        let deleted: Vec<u32> = maildrop
            .messages
            .iter()
            .filter(|entry| entry.deleted)
            .map(|entry| entry.uid)
            .collect();
        let session = Arc::clone(&maildrop.session);
        let result = if deleted.is_empty() {
            Ok(Ok(Vec::new()))
        } else {
            tokio::task::spawn_blocking(move || {
                session.expunge_uids(&MailboxName::inbox(), &deleted)
            })
            .await
        };
        drop(guard);
        match result {
            Ok(Ok(removed)) => Step::Quit(ok(&format!(
                "{} Letterlock POP3 signing off ({} message(s) deleted, {} left)",
                self.hostname,
                removed.len(),
                maildrop.messages.len() - removed.len()
            ))),
            Ok(Err(error)) => {
                tracing::warn!("pop3: UPDATE for {} failed: {error}", maildrop.account);
                Step::Quit(err_code(
                    ResponseCode::SysTemp,
                    "some deleted messages were not removed",
                ))
            }
            Err(_) => Step::Quit(err_code(ResponseCode::SysTemp, "internal error")),
        }
    }
}

impl Maildrop {
    /// Message `number` (1-based) unless it is marked deleted.
    fn live(&self, number: u32) -> Option<&Entry> {
        self.messages
            .get((number as usize).checked_sub(1)?)
            .filter(|entry| !entry.deleted)
    }

    fn listing(&self, value: impl Fn(&Entry) -> String) -> Vec<u8> {
        let count = self.messages.iter().filter(|entry| !entry.deleted).count();
        let mut out = format!("+OK {count} message(s)\r\n");
        for (index, entry) in self.messages.iter().enumerate() {
            if !entry.deleted {
                out.push_str(&format!("{} {}\r\n", index + 1, value(entry)));
            }
        }
        out.push_str(".\r\n");
        out.into_bytes()
    }
}

/// UIDL value (RFC 1939 section 7: 1 to 70 characters from 0x21 to 0x7E): the IMAP UID and
/// the INBOX's UIDVALIDITY, so it is stable, unique, and the same message IMAP shows.
fn unique_id(uid: u32, uid_validity: u32) -> String {
    format!("{uid}.{uid_validity}")
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`, base64. An authzid other than the authcid is
/// refused (no proxy logins).
fn decode_plain(response: &str) -> Option<(String, Secret)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(response.trim())
        .ok()?;
    let mut parts = decoded.split(|&byte| byte == 0);
    let authzid = parts.next()?;
    let authcid = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let password = Secret::new(parts.next()?.to_vec());
    if parts.next().is_some() || authcid.is_empty() {
        return None;
    }
    if !authzid.is_empty() && authzid != authcid.as_bytes() {
        return None;
    }
    Some((authcid, password))
}

enum Line {
    Complete(Vec<u8>),
    /// Longer than allowed: the rest of the line was read and thrown away.
    TooLong,
    Eof,
}

/// Read one line (CRLF or bare LF), never buffering more than `max_bytes` of it.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max_bytes: usize,
) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if line.is_empty() && !too_long {
                Line::Eof
            } else {
                Line::Complete(line)
            });
        }
        match available.iter().position(|&byte| byte == b'\n') {
            Some(end) => {
                if !too_long {
                    line.extend_from_slice(&available[..end]);
                }
                reader.consume(end + 1);
                break;
            }
            None => {
                let length = available.len();
                if !too_long {
                    line.extend_from_slice(available);
                }
                reader.consume(length);
            }
        }
        if line.len() > max_bytes {
            too_long = true;
            line.clear();
        }
    }
    if too_long || line.len() + 1 > max_bytes {
        return Ok(Line::TooLong);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Line::Complete(line))
}

/// End the connection politely: on TLS, with a close_notify, so the client can tell an
/// orderly close from a cut connection.
async fn close<S: AsyncRead + AsyncWrite + Unpin>(mut reader: BufReader<S>) -> Ended<S> {
    let _ = reader.get_mut().shutdown().await;
    Ended::Closed
}

async fn write<S: AsyncRead + AsyncWrite + Unpin>(
    reader: &mut BufReader<S>,
    bytes: &[u8],
) -> std::io::Result<()> {
    let stream = reader.get_mut();
    stream.write_all(bytes).await?;
    stream.flush().await
}
