//! One IMAP session: the state machine of RFC 9051 section 3 (not authenticated,
//! authenticated, selected, logout) and what each command does to the mail store.
//!
//! Every mail-store call blocks (it decrypts and fsyncs), so it runs in
//! `tokio::task::spawn_blocking`. Changes made by other sessions and by delivery arrive as
//! mail-store notifications; they are turned into EXISTS, EXPUNGE and FETCH responses after
//! a command, during IDLE (RFC 2177) and on NOOP, never in the middle of a response, and
//! never EXPUNGE during FETCH, STORE or SEARCH (RFC 9051 section 7.5.1).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use letterlock_mailstore::records::flag_bits;
use letterlock_mailstore::{
    MailStore, MessageFlags, SpecialUse, StoreError, Subscription, Unlocked,
};
use letterlock_server::{Connection, SessionFuture, SessionHandler, ShutdownSignal, Transport};
use letterlock_types::{EmailAddress, MailboxName, Secret};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

use crate::encode::{self, string};
use crate::io::{Frame, Io, Line};
use crate::limits::{
    BAD_COMMANDS_IN_A_ROW_MAX, COMMANDS_PER_SECOND_MAX, COMMAND_BURST_MAX,
    CONNECTIONS_PER_ACCOUNT_MAX, FETCH_BODIES_PER_BATCH_MAX, LINE_LENGTH_MAX_BYTES,
    LOGIN_FAILURES_PER_SESSION_MAX, LOGIN_FAILURE_DELAY_MS,
};
use crate::login_limits::LoginLimiter;
use crate::search::{self, Candidate};
use crate::sequence::{compact, SequenceSet};
use crate::syntax::{
    self, Command, FetchItem, Flag, ListOptions, SearchKey, SearchReturn, StatusItem, StoreMode,
};
use crate::ImapSettings;

pub struct ImapHandler {
    shared: Arc<Shared>,
}

struct Shared {
    store: MailStore,
    settings: ImapSettings,
    limiter: LoginLimiter,
    /// Open authenticated sessions per account.
    sessions_per_account: Mutex<HashMap<EmailAddress, usize>>,
}

/// One authenticated session's place in the per-account count; given back on drop.
struct AccountSlot {
    shared: Arc<Shared>,
    address: EmailAddress,
}

impl AccountSlot {
    fn take(shared: &Arc<Shared>, address: &EmailAddress) -> Option<AccountSlot> {
        let mut sessions = shared.sessions_per_account.lock().ok()?;
        let count = sessions.entry(address.clone()).or_insert(0);
        if *count >= CONNECTIONS_PER_ACCOUNT_MAX {
            return None;
        }
        *count += 1;
        Some(AccountSlot {
            shared: Arc::clone(shared),
            address: address.clone(),
        })
    }
}

impl Drop for AccountSlot {
    fn drop(&mut self) {
        if let Ok(mut sessions) = self.shared.sessions_per_account.lock() {
            if let Some(count) = sessions.get_mut(&self.address) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    sessions.remove(&self.address);
                }
            }
        }
    }
}

impl ImapHandler {
    pub fn new(store: MailStore, settings: ImapSettings) -> ImapHandler {
        ImapHandler {
            shared: Arc::new(Shared {
                store,
                settings,
                limiter: LoginLimiter::default(),
                sessions_per_account: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl SessionHandler for ImapHandler {
    fn run(&self, connection: Connection) -> SessionFuture {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let Connection {
                peer,
                transport,
                tls_acceptor,
                hostname,
                shutdown,
                ..
            } = connection;
            let mut session = Session::new(shared, peer.ip(), hostname, shutdown);
            // IMAP is a conversation of small writes: without this, Nagle's algorithm holds a
            // response back until the peer's delayed ACK (40 ms per exchange on Linux).
            let nodelay = match &transport {
                Transport::Tls(stream) => stream.get_ref().0.set_nodelay(true),
                Transport::Plain(tcp) => tcp.set_nodelay(true),
            };
            if let Err(error) = nodelay {
                tracing::debug!(%peer, %error, "IMAP: TCP_NODELAY not set");
            }
            match transport {
                Transport::Tls(stream) => {
                    session.tls = true;
                    session.run(*stream, true).await;
                }
                Transport::Plain(tcp) => {
                    if let Outcome::StartTls(tcp) = session.run(tcp, true).await {
                        match tls_acceptor.accept(tcp).await {
                            Ok(stream) => {
                                session.tls = true;
                                session.run(stream, false).await;
                            }
                            Err(error) => {
                                tracing::debug!(%peer, %error, "IMAP STARTTLS handshake failed")
                            }
                        }
                    }
                }
            }
        })
    }
}

enum Outcome<S> {
    Ended,
    StartTls(S),
}

/// The result of one command: how it ends, and what the session does next.
enum Done {
    /// Send `tag <text>`.
    Tagged(String),
    /// Send `tag <text>`, then end the session.
    TaggedThenClose(String),
    StartTls,
}

fn ok(text: &str) -> Done {
    Done::Tagged(format!("OK {text}"))
}

fn no(text: &str) -> Done {
    Done::Tagged(format!("NO {text}"))
}

fn bad(text: &str) -> Done {
    Done::Tagged(format!("BAD {text}"))
}

/// Why a command failed, ready to be sent.
type CommandResult = Result<Done, Done>;

/// The selected mailbox as this session knows it: sequence number n is `messages[n - 1]`.
struct Selected {
    name: MailboxName,
    read_only: bool,
    uid_validity: u32,
    messages: Vec<MessageFlags>,
    /// The UIDs a `SEARCH RETURN (SAVE)` kept, for `$` (RFC 5182); empty until then.
    saved: Vec<u32>,
    /// UIDNEXT when the mailbox was selected: bounds the UIDs VANISHED can name.
    uid_next: u32,
}

impl Selected {
    fn uids(&self) -> Vec<u32> {
        self.messages.iter().map(|message| message.uid).collect()
    }

    fn position_of(&self, uid: u32) -> Option<usize> {
        self.messages
            .binary_search_by_key(&uid, |message| message.uid)
            .ok()
    }

    /// Positions (0-based) a sequence set names, by sequence number or by UID.
    fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<usize> {
        if set.is_saved() {
            // Messages of the saved result that were expunged since simply drop out.
            return self
                .saved
                .iter()
                .filter_map(|&uid| self.position_of(uid))
                .collect();
        }
        if uid {
            let uids = self.uids();
            set.select(&uids)
                .into_iter()
                .filter_map(|uid| self.position_of(uid))
                .collect()
        } else {
            let count = self.messages.len() as u32;
            (1..=count)
                .filter(|&number| set.contains(number, count))
                .map(|number| number as usize - 1)
                .collect()
        }
    }
}

/// Mailboxes changed since the session last looked, filled by the mail store's callback.
#[derive(Default)]
struct Changes {
    mailboxes: Mutex<HashSet<MailboxName>>,
    wake: Notify,
}

struct Session {
    shared: Arc<Shared>,
    peer: IpAddr,
    hostname: String,
    shutdown: ShutdownSignal,
    tls: bool,
    user: Option<Arc<Unlocked>>,
    selected: Option<Selected>,
    changes: Arc<Changes>,
    _subscription: Option<Subscription>,
    _account_slot: Option<AccountSlot>,
    /// ENABLE IMAP4rev2 or UTF8=ACCEPT: mailbox names and header text in UTF-8.
    utf8: bool,
    rev2: bool,
    condstore: bool,
    /// ENABLE QRESYNC (RFC 7162): expunges are reported as VANISHED.
    qresync: bool,
    login_failures: u32,
    bad_in_a_row: u32,
    rate_tokens: f64,
    rate_checked: Instant,
}

/// UIDs of `set` (ranges with `*` bounded by the mailbox's highest UID) that are not in the
/// mailbox any more, ascending; bounded so a `1:4294967295` cannot make the list huge.
fn vanished_since(selected: &Selected, set: &SequenceSet) -> Vec<u32> {
    let present: HashSet<u32> = selected
        .messages
        .iter()
        .map(|message| message.uid)
        .collect();
    // Every UID ever given out in this mailbox is below UIDNEXT.
    let largest = selected.uid_next.saturating_sub(1).max(
        selected
            .messages
            .last()
            .map(|message| message.uid)
            .unwrap_or(0),
    );
    let mut gone = Vec::new();
    for uid in 1..=largest {
        if gone.len() >= VANISHED_UIDS_MAX {
            break;
        }
        if !present.contains(&uid) && set.contains(uid, largest) {
            gone.push(uid);
        }
    }
    gone
}

/// `bytes`, or the `<origin.length>` range of them a partial fetch asked for, whose origin
/// the response names (RFC 9051 section 6.4.5).
fn partial_of(out: &mut Vec<u8>, bytes: Vec<u8>, partial: Option<(u64, u64)>) -> Vec<u8> {
    match partial {
        Some((origin, length)) => {
            out.extend_from_slice(format!("<{origin}>").as_bytes());
            let start = (origin as usize).min(bytes.len());
            let end = start.saturating_add(length as usize).min(bytes.len());
            bytes[start..end].to_vec()
        }
        None => bytes,
    }
}

/// Said before closing a session whose account was reset (see `Session::revoked`).
const REVOKED_BYE: &str = "* BYE the account's credentials were reset; log in again";
/// UIDs one VANISHED (EARLIER) response lists at most.
const VANISHED_UIDS_MAX: usize = 100_000;

/// RFC 8474 object ids: letters, digits, `-` and `_`; ours are the store's numeric ids,
/// prefixed so the two kinds can never be confused.
fn mailbox_object_id(id: u64) -> String {
    format!("M{id}")
}

fn email_object_id(id: u64) -> String {
    format!("E{id}")
}

/// RFC 9208 section 5.1: usage and limit of the STORAGE resource, in units of 1024 octets.
fn quota_line(used_bytes: u64, limit_bytes: u64) -> String {
    format!(
        "* QUOTA \"\" (STORAGE {} {})",
        used_bytes.div_ceil(1024),
        limit_bytes / 1024
    )
}

/// Shorthand for a store error as a tagged NO with the matching response code.
fn store_error(error: StoreError) -> Done {
    let text = match &error {
        StoreError::NoSuchMailbox(_) => format!("NO [NONEXISTENT] {error}"),
        StoreError::MailboxExists(_) => format!("NO [ALREADYEXISTS] {error}"),
        StoreError::OverQuota { .. } => format!("NO [OVERQUOTA] {error}"),
        StoreError::MessageTooLarge { .. } => format!("NO [TOOBIG] {error}"),
        StoreError::TooMany { .. } => format!("NO [LIMIT] {error}"),
        StoreError::MailboxProtected(..) | StoreError::Invalid(_) => {
            format!("NO [CANNOT] {error}")
        }
        StoreError::Corrupted(_) => {
            tracing::error!(%error, "IMAP: mail store damage");
            "NO [SERVERBUG] stored data is damaged; the operator has been told".to_string()
        }
        _ if error.is_temporary() => format!("NO [UNAVAILABLE] {error}; try again later"),
        _ => format!("NO {error}"),
    };
    Done::Tagged(text)
}

impl Session {
    fn new(
        shared: Arc<Shared>,
        peer: IpAddr,
        hostname: String,
        shutdown: ShutdownSignal,
    ) -> Session {
        Session {
            shared,
            peer,
            hostname,
            shutdown,
            tls: false,
            user: None,
            selected: None,
            changes: Arc::default(),
            _subscription: None,
            _account_slot: None,
            utf8: false,
            rev2: false,
            condstore: false,
            qresync: false,
            login_failures: 0,
            bad_in_a_row: 0,
            rate_tokens: f64::from(COMMAND_BURST_MAX),
            rate_checked: Instant::now(),
        }
    }

    fn capabilities(&self) -> String {
        let mut list = vec!["IMAP4rev1", "IMAP4rev2", "LITERAL+", "ID", "ENABLE"];
        if !self.tls {
            list.extend(["STARTTLS", "LOGINDISABLED"]);
            return list.join(" ");
        }
        if self.user.is_none() {
            list.extend(["AUTH=PLAIN", "SASL-IR"]);
        }
        list.extend([
            "IDLE",
            "NAMESPACE",
            "UIDPLUS",
            "MOVE",
            "UNSELECT",
            "CHILDREN",
            "SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "ESEARCH",
            "STATUS=SIZE",
            "CONDSTORE",
            "QRESYNC",
            "UTF8=ACCEPT",
            "QUOTA",
            "QUOTA=RES-STORAGE",
            "SEARCHRES",
            "BINARY",
            "SORT",
            "THREAD=REFERENCES",
            "OBJECTID",
        ]);
        let mut text = list.join(" ");
        text.push_str(&format!(
            " APPENDLIMIT={}",
            self.shared.settings.message_size_max_bytes
        ));
        text
    }

    async fn run<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &mut self,
        stream: S,
        greet: bool,
    ) -> Outcome<S> {
        let mut io = Io::new(stream);
        if greet {
            io.line(&format!(
                "* OK [CAPABILITY {}] {} Letterlock IMAP ready",
                self.capabilities(),
                self.hostname
            ));
            if io.flush().await.is_err() {
                return Outcome::Ended;
            }
        }
        loop {
            let timeout = self.shared.settings.idle_timeout;
            let mut shutdown = self.shutdown.clone();
            let frame = tokio::select! {
                frame = tokio::time::timeout(timeout, io.read_command(self.shared.settings.message_size_max_bytes)) => frame,
                _ = shutdown.requested() => {
                    io.line("* BYE [UNAVAILABLE] server shutting down");
                    let _ = io.flush().await;
                    return Outcome::Ended;
                }
            };
            let frame = match frame {
                Err(_) => {
                    io.line("* BYE autologout: idle for too long");
                    let _ = io.flush().await;
                    return Outcome::Ended;
                }
                Ok(Err(_)) | Ok(Ok(None)) => return Outcome::Ended,
                Ok(Ok(Some(frame))) => frame,
            };
            self.throttle().await;
            // An account reset by its administrator (or removed) ends the sessions that hold
            // its old key (RFC 9051 section 7.1.5: BYE, then the connection closes).
            if self.revoked() {
                io.line(REVOKED_BYE);
                let _ = io.flush().await;
                return Outcome::Ended;
            }
            let (tag, done) = match frame {
                Frame::Command(bytes) => match syntax::parse_command(&bytes) {
                    Ok((tag, command)) => {
                        let done = self.execute(&mut io, &tag, command).await;
                        (Some(tag), done)
                    }
                    Err(error) => (error.tag, bad(&error.message)),
                },
                Frame::Bad { tag, message } => (tag, bad(&message)),
                Frame::Refused { tag, response } => (Some(tag), Done::Tagged(response)),
                Frame::Fatal { tag, response } => (tag, Done::TaggedThenClose(response)),
            };
            let tag = tag.unwrap_or_else(|| "*".to_string());
            match done {
                Done::Tagged(text) => {
                    if text.starts_with("BAD") {
                        self.bad_in_a_row += 1;
                    } else {
                        self.bad_in_a_row = 0;
                    }
                    io.line(&format!("{tag} {text}"));
                    if self.bad_in_a_row >= BAD_COMMANDS_IN_A_ROW_MAX {
                        io.line("* BYE too many bad commands");
                        let _ = io.flush().await;
                        return Outcome::Ended;
                    }
                    if io.flush().await.is_err() {
                        return Outcome::Ended;
                    }
                }
                Done::TaggedThenClose(text) => {
                    io.line(&format!("{tag} {text}"));
                    let _ = io.flush().await;
                    return Outcome::Ended;
                }
                Done::StartTls => {
                    io.line(&format!("{tag} OK begin TLS negotiation now"));
                    if io.flush().await.is_err() {
                        return Outcome::Ended;
                    }
                    return Outcome::StartTls(io.into_inner());
                }
            }
        }
    }

    /// A token bucket: bursts pass, a sustained flood is slowed to the average rate.
    async fn throttle(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.rate_checked).as_secs_f64();
        self.rate_checked = now;
        self.rate_tokens = (self.rate_tokens + elapsed * f64::from(COMMANDS_PER_SECOND_MAX))
            .min(f64::from(COMMAND_BURST_MAX));
        if self.rate_tokens < 1.0 {
            let wait = (1.0 - self.rate_tokens) / f64::from(COMMANDS_PER_SECOND_MAX);
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            self.rate_tokens = 1.0;
            self.rate_checked = Instant::now();
        }
        self.rate_tokens -= 1.0;
    }

    async fn execute<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &mut self,
        io: &mut Io<S>,
        tag: &str,
        command: Command,
    ) -> Done {
        let allow_expunge = !matches!(
            command,
            Command::Fetch { uid: false, .. }
                | Command::Store { uid: false, .. }
                | Command::Search { uid: false, .. }
                | Command::Sort { uid: false, .. }
                | Command::Thread { uid: false, .. }
        );
        let is_idle = matches!(command, Command::Idle);
        let result = self.dispatch(io, tag, command).await;
        let done = match result {
            Ok(done) | Err(done) => done,
        };
        if !is_idle && matches!(done, Done::Tagged(_)) {
            self.report_changes(io, allow_expunge).await;
        }
        done
    }

    fn user(&self) -> Result<Arc<Unlocked>, Done> {
        match &self.user {
            Some(user) => Ok(Arc::clone(user)),
            None => Err(bad("log in first (LOGIN or AUTHENTICATE)")),
        }
    }

    fn selected(&self) -> Result<&Selected, Done> {
        self.selected
            .as_ref()
            .ok_or_else(|| bad("no mailbox selected (SELECT or EXAMINE first)"))
    }

    /// Run a blocking mail-store call off the async threads.
    /// The session's account key is no longer the account's (see `Unlocked::is_current`).
    /// One read of a small cached record, done inline rather than on a blocking thread, whose
    /// hand-off cost more than the read (measured: cached logins -12%).
    fn revoked(&self) -> bool {
        self.user
            .as_ref()
            .is_some_and(|user| !matches!(user.is_current(), Ok(true)))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Unlocked) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Done> {
        let user = self.user()?;
        match tokio::task::spawn_blocking(move || call(&user)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(store_error(error)),
            Err(_) => Err(no("[SERVERBUG] internal error")),
        }
    }

    fn mailbox_name(&self, text: &str) -> Result<MailboxName, Done> {
        let decoded = if self.utf8 {
            Some(text.to_string())
        } else {
            encode::mutf7_decode(text)
        };
        let decoded = decoded.ok_or_else(|| bad("mailbox name is not valid modified UTF-7"))?;
        // RFC 9051 section 6.3.4: a trailing separator names the mailbox itself.
        let trimmed = decoded.trim_end_matches(MailboxName::HIERARCHY_SEPARATOR);
        MailboxName::try_from(trimmed).map_err(|error| no(&format!("[CANNOT] {error}")))
    }

    fn write_mailbox_name(&self, out: &mut Vec<u8>, name: &str) {
        if self.utf8 {
            string(out, name.as_bytes());
        } else {
            string(out, encode::mutf7_encode(name).as_bytes());
        }
    }

    async fn dispatch<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &mut self,
        io: &mut Io<S>,
        tag: &str,
        command: Command,
    ) -> CommandResult {
        match command {
            Command::Capability => {
                io.line(&format!("* CAPABILITY {}", self.capabilities()));
                Ok(ok("CAPABILITY completed"))
            }
            Command::Noop | Command::Check => Ok(ok("completed")),
            Command::Logout => {
                io.line("* BYE logging out");
                Ok(Done::TaggedThenClose("OK LOGOUT completed".into()))
            }
            Command::StartTls => {
                if self.tls {
                    return Err(bad("TLS is already in place"));
                }
                Ok(Done::StartTls)
            }
            Command::Login { user, password } => self.login(&user, password).await,
            Command::Authenticate {
                mechanism,
                initial_response,
            } => self.authenticate(io, &mechanism, initial_response).await,
            Command::Enable(capabilities) => {
                self.user()?;
                let mut enabled = Vec::new();
                for capability in capabilities {
                    match capability.as_str() {
                        "IMAP4REV2" => {
                            self.rev2 = true;
                            self.utf8 = true;
                            enabled.push("IMAP4rev2");
                        }
                        "UTF8=ACCEPT" => {
                            self.utf8 = true;
                            enabled.push("UTF8=ACCEPT");
                        }
                        "CONDSTORE" => {
                            self.condstore = true;
                            enabled.push("CONDSTORE");
                        }
                        // RFC 7162 section 3.2.3: QRESYNC implies CONDSTORE.
                        "QRESYNC" => {
                            self.condstore = true;
                            self.qresync = true;
                            enabled.push("QRESYNC");
                        }
                        _ => {}
                    }
                }
                io.line(format!("* ENABLED {}", enabled.join(" ")).trim_end());
                Ok(ok("ENABLE completed"))
            }
            Command::Id => {
                io.line("* ID (\"name\" \"Letterlock\")");
                Ok(ok("ID completed"))
            }
            Command::GetQuotaRoot(mailbox) => {
                let name = self.mailbox_name(&mailbox)?;
                let (used, limit) = self
                    .blocking(move |user| {
                        user.mailbox_status(&name)?;
                        user.quota()
                    })
                    .await?;
                let mut line = b"* QUOTAROOT ".to_vec();
                crate::encode::string(&mut line, mailbox.as_bytes());
                line.extend_from_slice(b" \"\"\r\n");
                io.write(&line);
                if limit > 0 {
                    io.line(&quota_line(used, limit));
                }
                Ok(ok("GETQUOTAROOT completed"))
            }
            Command::GetQuota(root) => {
                if !root.is_empty() {
                    return Err(no("[NONEXISTENT] the only quota root is \"\""));
                }
                let (used, limit) = self.blocking(|user| user.quota()).await?;
                if limit > 0 {
                    io.line(&quota_line(used, limit));
                }
                Ok(ok("GETQUOTA completed"))
            }
            Command::SetQuota => {
                self.user()?;
                Err(no("[NOPERM] quotas are set by the administrator"))
            }
            Command::Namespace => {
                self.user()?;
                io.line("* NAMESPACE ((\"\" \"/\")) NIL NIL");
                Ok(ok("NAMESPACE completed"))
            }
            Command::List {
                reference,
                patterns,
                options,
            } => self.list(io, &reference, &patterns, &options, false).await,
            Command::Lsub { reference, pattern } => {
                let options = ListOptions {
                    subscribed_only: true,
                    ..ListOptions::default()
                };
                self.list(io, &reference, &[pattern], &options, true).await
            }
            Command::Status { mailbox, items } => {
                let name = self.mailbox_name(&mailbox)?;
                let line = self.status_line(&name, &items).await?;
                io.write(&line);
                Ok(ok("STATUS completed"))
            }
            Command::Select {
                mailbox,
                read_only,
                condstore,
                qresync,
            } => {
                if qresync.is_some() && !self.qresync {
                    // RFC 7162 section 3.2.5: QRESYNC must be ENABLEd first.
                    return Err(bad("ENABLE QRESYNC before using it"));
                }
                self.select(io, &mailbox, read_only, condstore).await?;
                if let Some(parameters) = qresync {
                    self.resynchronise(io, &parameters);
                }
                Ok(ok(if read_only {
                    "[READ-ONLY] EXAMINE completed"
                } else {
                    "[READ-WRITE] SELECT completed"
                }))
            }
            Command::Create(mailbox) => {
                let name = self.mailbox_name(&mailbox)?;
                let status = self
                    .blocking(move |user| {
                        user.create_mailbox(&name)?;
                        user.mailbox_status(&name)
                    })
                    .await?;
                Ok(ok(&format!(
                    "[MAILBOXID ({})] CREATE completed",
                    mailbox_object_id(status.mailbox_id)
                )))
            }
            Command::Delete(mailbox) => {
                let name = self.mailbox_name(&mailbox)?;
                let deleted = name.clone();
                self.blocking(move |user| user.delete_mailbox(&name))
                    .await?;
                if self
                    .selected
                    .as_ref()
                    .is_some_and(|selected| selected.name == deleted)
                {
                    self.selected = None;
                }
                Ok(ok("DELETE completed"))
            }
            Command::Rename(from, to) => {
                let from = self.mailbox_name(&from)?;
                let to = self.mailbox_name(&to)?;
                self.blocking(move |user| user.rename_mailbox(&from, &to))
                    .await?;
                Ok(ok("RENAME completed"))
            }
            Command::Subscribe(mailbox) => {
                let name = self.mailbox_name(&mailbox)?;
                self.blocking(move |user| user.set_subscribed(&name, true))
                    .await?;
                Ok(ok("SUBSCRIBE completed"))
            }
            Command::Unsubscribe(mailbox) => {
                let name = self.mailbox_name(&mailbox)?;
                self.blocking(move |user| user.set_subscribed(&name, false))
                    .await?;
                Ok(ok("UNSUBSCRIBE completed"))
            }
            Command::Append {
                mailbox,
                flags,
                internal_date_unix,
                message,
            } => {
                self.append(&mailbox, flags, internal_date_unix, message)
                    .await
            }
            Command::Close => {
                let selected = self.selected()?;
                let name = selected.name.clone();
                let read_only = selected.read_only;
                if !read_only {
                    // RFC 9051 section 6.4.1: CLOSE expunges silently.
                    self.blocking(move |user| user.expunge(&name)).await?;
                }
                self.selected = None;
                Ok(ok("CLOSE completed"))
            }
            Command::Unselect => {
                self.selected()?;
                self.selected = None;
                Ok(ok("UNSELECT completed"))
            }
            Command::Expunge => self.expunge(io, None).await,
            Command::UidExpunge(set) => self.expunge(io, Some(set)).await,
            Command::Search { uid, returns, key } => self.search(io, tag, uid, returns, key).await,
            Command::Sort { uid, criteria, key } => self.sort(io, uid, &criteria, key).await,
            Command::Thread { uid, key } => self.thread(io, uid, key).await,
            Command::Fetch {
                uid,
                set,
                items,
                changed_since,
                vanished,
            } => {
                if vanished {
                    if !self.qresync {
                        return Err(bad("ENABLE QRESYNC before using VANISHED"));
                    }
                    let selected = self.selected()?;
                    let gone = vanished_since(selected, &set);
                    if !gone.is_empty() {
                        io.line(&format!("* VANISHED (EARLIER) {}", compact(&gone)));
                    }
                }
                self.fetch(io, uid, &set, items, changed_since).await
            }
            Command::Store {
                uid,
                set,
                mode,
                silent,
                flags,
                unchanged_since,
            } => {
                self.store(io, uid, &set, mode, silent, flags, unchanged_since)
                    .await
            }
            Command::Copy { uid, set, mailbox } => self.copy(io, uid, &set, &mailbox, false).await,
            Command::Move { uid, set, mailbox } => self.copy(io, uid, &set, &mailbox, true).await,
            Command::Idle => self.idle(io, tag).await,
        }
    }

    // ---- authentication ----

    async fn login(&mut self, user: &str, password: Secret) -> CommandResult {
        if !self.tls {
            return Err(no(
                "[PRIVACYREQUIRED] LOGIN is disabled until TLS is in place: use STARTTLS, or port 993",
            ));
        }
        if self.user.is_some() {
            return Err(bad("already logged in"));
        }
        if !self.shared.limiter.allowed(user, self.peer) {
            self.login_failures += 1;
            return Err(self.after_login_failure(
                "NO [UNAVAILABLE] too many failed logins for this account or client; try again later",
            ));
        }
        let Ok(address) = EmailAddress::try_from(user) else {
            return Err(self.failed_login(user).await);
        };
        let store = self.shared.store.clone();
        let unlock_address = address.clone();
        let unlocked =
            tokio::task::spawn_blocking(move || store.unlock(&unlock_address, &password)).await;
        match unlocked {
            Ok(Ok(unlocked)) => {
                self.shared.limiter.record_success(user);
                let Some(slot) = AccountSlot::take(&self.shared, &address) else {
                    return Err(no(&format!(
                        "[LIMIT] already {CONNECTIONS_PER_ACCOUNT_MAX} sessions for this account; close some"
                    )));
                };
                self._account_slot = Some(slot);
                let changes = Arc::clone(&self.changes);
                self._subscription = Some(self.shared.store.subscribe(&address, move |change| {
                    if let Ok(mut mailboxes) = changes.mailboxes.lock() {
                        mailboxes.insert(change.mailbox.clone());
                    }
                    changes.wake.notify_one();
                }));
                self.user = Some(Arc::new(unlocked));
                Ok(Done::Tagged(format!(
                    "OK [CAPABILITY {}] logged in",
                    self.capabilities()
                )))
            }
            Ok(Err(StoreError::WrongCredentials | StoreError::NoSuchUser(_))) => {
                Err(self.failed_login(user).await)
            }
            Ok(Err(error)) => Err(store_error(error)),
            Err(_) => Err(no("[SERVERBUG] internal error")),
        }
    }

    async fn failed_login(&mut self, user: &str) -> Done {
        self.shared.limiter.record_failure(user, self.peer);
        self.login_failures += 1;
        tokio::time::sleep(Duration::from_millis(LOGIN_FAILURE_DELAY_MS)).await;
        self.after_login_failure("NO [AUTHENTICATIONFAILED] invalid credentials")
    }

    fn after_login_failure(&self, response: &str) -> Done {
        if self.login_failures >= LOGIN_FAILURES_PER_SESSION_MAX {
            Done::TaggedThenClose(format!("{response}; too many failed logins, closing"))
        } else {
            Done::Tagged(response.to_string())
        }
    }

    /// AUTHENTICATE PLAIN (RFC 4616), with the initial response inline (SASL-IR, RFC 4959)
    /// or after a continuation request.
    async fn authenticate<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &mut self,
        io: &mut Io<S>,
        mechanism: &str,
        initial_response: Option<String>,
    ) -> CommandResult {
        if !self.tls {
            return Err(no(
                "[PRIVACYREQUIRED] AUTHENTICATE is disabled until TLS is in place: use STARTTLS, or port 993",
            ));
        }
        if self.user.is_some() {
            return Err(bad("already logged in"));
        }
        if mechanism != "PLAIN" {
            return Err(no("unsupported SASL mechanism; use PLAIN"));
        }
        let response = match initial_response {
            Some(response) => response,
            None => {
                io.line("+ ");
                io.flush().await.map_err(|_| bad("connection lost"))?;
                match io.read_line(LINE_LENGTH_MAX_BYTES).await {
                    Ok(Some(Line::Complete(line))) => String::from_utf8_lossy(&line).into_owned(),
                    Ok(Some(Line::TooLong(_))) => return Err(bad("SASL response too long")),
                    _ => return Err(Done::TaggedThenClose("BAD connection lost".into())),
                }
            }
        };
        if response == "*" {
            return Err(bad("authentication cancelled"));
        }
        let decoded = if response == "=" {
            Vec::new()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(response.trim())
                .map_err(|_| bad("SASL response is not base64"))?
        };
        let decoded = zeroize::Zeroizing::new(decoded);
        let mut fields = decoded.split(|&byte| byte == 0);
        let (Some(authorization), Some(user), Some(password), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad("PLAIN response is authzid NUL authcid NUL password"));
        };
        let user = String::from_utf8_lossy(user).into_owned();
        if !authorization.is_empty() && authorization != user.as_bytes() {
            return Err(no("[AUTHORIZATIONFAILED] cannot act as another user"));
        }
        self.login(&user, Secret::new(password.to_vec())).await
    }

    // ---- mailboxes ----

    async fn list<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &mut self,
        io: &mut Io<S>,
        reference: &str,
        patterns: &[String],
        options: &ListOptions,
        lsub: bool,
    ) -> CommandResult {
        self.user()?;
        let verb = if lsub { "LSUB" } else { "LIST" };
        if patterns.len() == 1 && patterns[0].is_empty() && !options.extended {
            io.line(&format!("* {verb} (\\Noselect) \"/\" \"\""));
            return Ok(ok(&format!("{verb} completed")));
        }
        let mailboxes = self.blocking(|user| user.mailboxes()).await?;
        let names: Vec<String> = mailboxes.iter().map(|info| info.name.to_string()).collect();
        let decode = |text: &str| -> String {
            if self.utf8 {
                text.to_string()
            } else {
                encode::mutf7_decode(text).unwrap_or_else(|| text.to_string())
            }
        };
        let patterns: Vec<String> = patterns
            .iter()
            .map(|pattern| decode(&format!("{reference}{pattern}")))
            .collect();
        let mut statuses = Vec::new();
        for info in &mailboxes {
            let name = info.name.as_str();
            if !patterns.iter().any(|pattern| wildcard_match(pattern, name)) {
                continue;
            }
            let prefix = format!("{name}/");
            // RFC 5258 section 3.5: with RECURSIVEMATCH, a mailbox whose descendants are
            // subscribed is reported with CHILDINFO, subscribed or not.
            let subscribed_descendant = options.recursive_match
                && mailboxes
                    .iter()
                    .any(|other| other.subscribed && other.name.as_str().starts_with(&prefix));
            if options.subscribed_only && !info.subscribed && !subscribed_descendant {
                continue;
            }
            if options.special_use_only && info.special_use.is_none() {
                continue;
            }
            let has_children = names.iter().any(|other| other.starts_with(&prefix));
            let mut attributes = vec![if has_children {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            }];
            if lsub {
                attributes.clear();
            }
            if options.return_subscribed && info.subscribed && !lsub {
                attributes.push("\\Subscribed");
            }
            if let Some(special_use) = info.special_use {
                attributes.push(special_use_attribute(special_use));
            }
            let mut line = format!("* {verb} ({}) \"/\" ", attributes.join(" ")).into_bytes();
            self.write_mailbox_name(&mut line, name);
            if subscribed_descendant {
                line.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            line.extend_from_slice(b"\r\n");
            io.write(&line);
            if let Some(items) = &options.return_status {
                statuses.push((info.name.clone(), items.clone()));
            }
        }
        for (name, items) in statuses {
            // RFC 5819: a mailbox that cannot report status is simply left out.
            if let Ok(line) = self.status_line(&name, &items).await {
                io.write(&line);
            }
        }
        Ok(ok(&format!("{verb} completed")))
    }

    async fn status_line(&self, name: &MailboxName, items: &[StatusItem]) -> Result<Vec<u8>, Done> {
        let lookup = name.clone();
        let status = self
            .blocking(move |user| user.mailbox_status(&lookup))
            .await?;
        let mut parts = Vec::new();
        for item in items {
            parts.push(match item {
                StatusItem::Messages => format!("MESSAGES {}", status.messages),
                StatusItem::UidNext => format!("UIDNEXT {}", status.uid_next),
                StatusItem::UidValidity => format!("UIDVALIDITY {}", status.uid_validity),
                StatusItem::Unseen => format!("UNSEEN {}", status.unseen),
                StatusItem::Deleted => format!("DELETED {}", status.deleted),
                StatusItem::Size => format!("SIZE {}", status.size_bytes),
                StatusItem::Recent => "RECENT 0".to_string(),
                StatusItem::HighestModseq => format!("HIGHESTMODSEQ {}", status.highest_modseq),
                StatusItem::MailboxId => {
                    format!("MAILBOXID ({})", mailbox_object_id(status.mailbox_id))
                }
            });
        }
        let mut line = b"* STATUS ".to_vec();
        self.write_mailbox_name(&mut line, name.as_str());
        line.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
        Ok(line)
    }

    async fn select<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &mut self,
        io: &mut Io<S>,
        mailbox: &str,
        read_only: bool,
        condstore: bool,
    ) -> CommandResult {
        self.user()?;
        if self.selected.take().is_some() {
            // RFC 7162 section 3.2.11 / RFC 9051 section 6.3.2.
            io.line("* OK [CLOSED] previous mailbox closed");
        }
        let name = self.mailbox_name(mailbox)?;
        let lookup = name.clone();
        let (info, messages) = self.blocking(move |user| user.list_flags(&lookup)).await?;
        if condstore {
            self.condstore = true;
        }
        // Drop notifications about this mailbox from before the snapshot.
        if let Ok(mut changed) = self.changes.mailboxes.lock() {
            changed.remove(&name);
        }
        let mut keywords: Vec<&str> = messages
            .iter()
            .flat_map(|message| message.keywords.iter().map(String::as_str))
            .collect();
        keywords.sort_unstable();
        keywords.dedup();
        let keyword_text: String = keywords
            .iter()
            .map(|keyword| format!(" {keyword}"))
            .collect();
        io.line(&format!(
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{keyword_text})"
        ));
        if read_only {
            io.line("* OK [PERMANENTFLAGS ()] read-only");
        } else {
            io.line(&format!(
                "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{keyword_text} \\*)] flags allowed"
            ));
        }
        io.line(&format!("* {} EXISTS", messages.len()));
        if !self.rev2 {
            io.line("* 0 RECENT");
            if let Some(first_unseen) = messages
                .iter()
                .position(|message| message.flags & flag_bits::SEEN == 0)
            {
                io.line(&format!("* OK [UNSEEN {}] first unseen", first_unseen + 1));
            }
        }
        io.line(&format!(
            "* OK [UIDVALIDITY {}] UIDs valid",
            info.uid_validity
        ));
        io.line(&format!(
            "* OK [UIDNEXT {}] predicted next UID",
            info.uid_next
        ));
        io.line(&format!(
            "* OK [HIGHESTMODSEQ {}] highest modseq",
            info.highest_modseq
        ));
        io.line(&format!(
            "* OK [MAILBOXID ({})] mailbox id",
            mailbox_object_id(info.id)
        ));
        if self.rev2 {
            let mut line = b"* LIST () \"/\" ".to_vec();
            self.write_mailbox_name(&mut line, name.as_str());
            line.extend_from_slice(b"\r\n");
            io.write(&line);
        }
        self.selected = Some(Selected {
            name,
            read_only,
            uid_validity: info.uid_validity,
            messages,
            saved: Vec::new(),
            uid_next: info.uid_next,
        });
        Ok(if read_only {
            ok("[READ-ONLY] EXAMINE completed")
        } else {
            ok("[READ-WRITE] SELECT completed")
        })
    }

    async fn append(
        &mut self,
        mailbox: &str,
        flags: Vec<Flag>,
        internal_date_unix: Option<i64>,
        message: Vec<u8>,
    ) -> CommandResult {
        self.user()?;
        let name = self.mailbox_name(mailbox)?;
        let (bits, keywords) = flag_bits_of(&flags);
        let date = internal_date_unix.unwrap_or_else(now_unix);
        let target = name.clone();
        let result = self
            .blocking(move |user| {
                let uid = user.append(&target, &message, bits, date)?;
                if !keywords.is_empty() {
                    user.set_flags(&target, uid, bits, &keywords)?;
                }
                let validity = user
                    .mailboxes()?
                    .into_iter()
                    .find(|info| info.name == target)
                    .map(|info| info.uid_validity)
                    .unwrap_or(0);
                Ok((validity, uid))
            })
            .await;
        match result {
            Ok((validity, uid)) => Ok(ok(&format!(
                "[APPENDUID {validity} {uid}] APPEND completed"
            ))),
            Err(Done::Tagged(text)) if text.starts_with("NO [NONEXISTENT]") => {
                Err(no("[TRYCREATE] no such mailbox; CREATE it first"))
            }
            Err(done) => Err(done),
        }
    }

    // ---- selected state ----

    async fn expunge<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &mut self,
        io: &mut Io<S>,
        set: Option<SequenceSet>,
    ) -> CommandResult {
        let selected = self.selected()?;
        if selected.read_only {
            return Err(no("[READ-ONLY] mailbox is read-only"));
        }
        let name = selected.name.clone();
        let expunged = match set {
            None => self.blocking(move |user| user.expunge(&name)).await?,
            Some(set) => {
                let uids: Vec<u32> = selected
                    .resolve(&set, true)
                    .into_iter()
                    .map(|position| &selected.messages[position])
                    .filter(|message| message.flags & flag_bits::DELETED != 0)
                    .map(|message| message.uid)
                    .collect();
                self.blocking(move |user| user.expunge_uids(&name, &uids))
                    .await?
            }
        };
        self.remove_from_view(io, &expunged);
        Ok(ok("EXPUNGE completed"))
    }

    /// Take expunged UIDs out of the view, telling the client (highest sequence first, so
    /// each number is right when it is read).
    fn remove_from_view<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<S>,
        uids: &[u32],
    ) {
        let Some(selected) = self.selected.as_mut() else {
            return;
        };
        let mut positions: Vec<usize> = uids
            .iter()
            .filter_map(|&uid| selected.position_of(uid))
            .collect();
        positions.sort_unstable_by(|a, b| b.cmp(a));
        let mut vanished: Vec<u32> = Vec::with_capacity(positions.len());
        for position in positions {
            let message = selected.messages.remove(position);
            if self.qresync {
                vanished.push(message.uid);
            } else {
                io.line(&format!("* {} EXPUNGE", position + 1));
            }
        }
        if !vanished.is_empty() {
            // RFC 7162 section 3.2.10: with QRESYNC, expunges are reported by UID.
            vanished.sort_unstable();
            io.line(&format!("* VANISHED {}", compact(&vanished)));
        }
    }

    /// RFC 7162 section 3.2.5.1: after SELECT with QRESYNC, what changed since the client's
    /// MODSEQ: UIDs that are gone (VANISHED (EARLIER)) and flags that changed (FETCH).
    /// The store keeps no expunge history, so every UID the client may know that is not
    /// present is reported, which the RFC allows.
    fn resynchronise<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<S>,
        parameters: &syntax::QresyncParameters,
    ) {
        let Some(selected) = self.selected.as_ref() else {
            return;
        };
        if parameters.uid_validity != selected.uid_validity {
            // A different mailbox under the same name: the client must start over.
            return;
        }
        let all = SequenceSet::parse(b"1:*").ok();
        let Some(known) = parameters.known_uids.as_ref().or(all.as_ref()) else {
            return;
        };
        let gone = vanished_since(selected, known);
        if !gone.is_empty() {
            io.line(&format!("* VANISHED (EARLIER) {}", compact(&gone)));
        }
        for (position, message) in selected.messages.iter().enumerate() {
            if message.modseq > parameters.modseq {
                let mut line =
                    format!("* {} FETCH (UID {} FLAGS ", position + 1, message.uid).into_bytes();
                encode::flags(&mut line, message.flags, &message.keywords);
                line.extend_from_slice(format!(" MODSEQ ({}))\r\n", message.modseq).as_bytes());
                io.write(&line);
            }
        }
    }

    /// The positions (in the selected mailbox) of the messages matching `key`, and the
    /// index records (envelope, references) that were read for it (all of them when
    /// `want_envelopes`).
    async fn evaluate(
        &mut self,
        key: &SearchKey,
        want_envelopes: bool,
    ) -> Result<
        (
            Vec<usize>,
            std::collections::HashMap<u32, letterlock_mailstore::index::IndexRecord>,
        ),
        Done,
    > {
        let selected = self.selected()?;
        let name = selected.name.clone();
        let uids = selected.uids();
        let mut needs = search::needs(key);
        needs.envelope |= want_envelopes;
        let loaded_uids = uids.clone();
        let words = search::body_words(key);
        let (envelopes, word_hits, raws) = self
            .blocking(move |user| {
                let mut envelopes = std::collections::HashMap::new();
                let mut word_hits = search::WordHits::new();
                let mut raws = std::collections::HashMap::new();
                if needs.envelope {
                    for summary in user.summaries(&name, &loaded_uids)? {
                        if let Some(index) = summary.index {
                            envelopes.insert(summary.uid, index);
                        }
                    }
                }
                if needs.terms {
                    // The merged, sealed index (DESIGN.md point 6): only messages not merged
                    // yet are decrypted.
                    let index = user.search_index(&name)?;
                    for word in words {
                        let uids = index.uids_with(&word);
                        word_hits.insert(word, uids);
                    }
                }
                if needs.raw {
                    for &uid in &loaded_uids {
                        if let Ok(raw) = user.fetch(&name, uid) {
                            raws.insert(uid, raw);
                        }
                    }
                }
                Ok((envelopes, word_hits, raws))
            })
            .await?;
        let selected = self.selected()?;
        let largest_uid = uids.last().copied().unwrap_or(0);
        let largest_sequence = selected.messages.len() as u32;
        let mut positions = Vec::new();
        for (index, message) in selected.messages.iter().enumerate() {
            let candidate = Candidate {
                sequence: index as u32 + 1,
                largest_sequence,
                largest_uid,
                message,
                envelope: envelopes.get(&message.uid).map(|index| &index.envelope),
                word_hits: Some(&word_hits),
                raw: raws.get(&message.uid).map(Vec::as_slice),
                saved: &selected.saved,
            };
            if search::matches(key, &candidate) {
                positions.push(index);
            }
        }
        Ok((positions, envelopes))
    }

    /// THREAD and UID THREAD (RFC 5256), REFERENCES.
    async fn thread<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &mut self,
        io: &mut Io<S>,
        uid: bool,
        key: SearchKey,
    ) -> CommandResult {
        let (positions, envelopes) = self.evaluate(&key, true).await?;
        let selected = self.selected()?;
        let items: Vec<crate::thread::Threadable> = positions
            .iter()
            .map(|&position| {
                let message = &selected.messages[position];
                let index = envelopes.get(&message.uid);
                let envelope = index.map(|index| &index.envelope);
                crate::thread::Threadable {
                    number: if uid {
                        message.uid
                    } else {
                        position as u32 + 1
                    },
                    message_id: envelope.and_then(|envelope| envelope.message_id.clone()),
                    in_reply_to: envelope.and_then(|envelope| envelope.in_reply_to.clone()),
                    references: index
                        .map(|index| index.references.clone())
                        .unwrap_or_default(),
                    sent: envelope
                        .and_then(|envelope| envelope.date.as_deref())
                        .and_then(mail_parser::DateTime::parse_rfc822)
                        .map(|date| date.to_timestamp())
                        .unwrap_or(message.internal_date_unix),
                }
            })
            .collect();
        let threads = crate::thread::thread(&items);
        if threads.is_empty() {
            io.line("* THREAD");
        } else {
            io.line(&format!("* THREAD {threads}"));
        }
        Ok(ok("THREAD completed"))
    }

    /// SORT and UID SORT (RFC 5256).
    async fn sort<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &mut self,
        io: &mut Io<S>,
        uid: bool,
        criteria: &[crate::sort::SortCriterion],
        key: SearchKey,
    ) -> CommandResult {
        let (positions, envelopes) = self.evaluate(&key, true).await?;
        let selected = self.selected()?;
        let mut items: Vec<crate::sort::Sortable<'_>> = positions
            .iter()
            .map(|&position| {
                let message = &selected.messages[position];
                crate::sort::Sortable {
                    sequence: position as u32 + 1,
                    message,
                    envelope: envelopes.get(&message.uid).map(|index| &index.envelope),
                }
            })
            .collect();
        crate::sort::sort(&mut items, criteria);
        let mut line = String::from("* SORT");
        for item in &items {
            let number = if uid { item.message.uid } else { item.sequence };
            line.push_str(&format!(" {number}"));
        }
        io.line(&line);
        Ok(ok("SORT completed"))
    }

    async fn search<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &mut self,
        io: &mut Io<S>,
        tag: &str,
        uid: bool,
        returns: Option<Vec<SearchReturn>>,
        key: SearchKey,
    ) -> CommandResult {
        let saves = returns
            .as_ref()
            .is_some_and(|returns| returns.contains(&SearchReturn::Save));
        let evaluated = self.evaluate(&key, false).await;
        if saves {
            // RFC 5182 section 2.1: a failed SEARCH leaves an empty saved result.
            if let Some(selected) = self.selected.as_mut() {
                selected.saved.clear();
            }
        }
        let (positions, _) = evaluated?;
        let selected = self.selected()?;
        let mut found = Vec::new();
        let mut found_uids = Vec::new();
        let mut highest_modseq = 0;
        for position in positions {
            let message = &selected.messages[position];
            found.push(if uid {
                message.uid
            } else {
                position as u32 + 1
            });
            found_uids.push(message.uid);
            highest_modseq = highest_modseq.max(message.modseq);
        }
        if saves {
            if let Some(selected) = self.selected.as_mut() {
                selected.saved = found_uids;
            }
            // RFC 5182 section 2.1: SAVE alone answers with no ESEARCH.
            if returns.as_ref().is_some_and(|returns| returns.len() == 1) {
                return Ok(ok("SEARCH completed, result saved"));
            }
        }
        let uses_modseq = contains_modseq(&key);
        let returns = match returns {
            Some(returns) if returns.is_empty() => Some(vec![SearchReturn::All]),
            None if self.rev2 => Some(vec![SearchReturn::All]),
            other => other,
        };
        match returns {
            None => {
                let mut line = String::from("* SEARCH");
                for number in &found {
                    line.push_str(&format!(" {number}"));
                }
                if uses_modseq && !found.is_empty() {
                    line.push_str(&format!(" (MODSEQ {highest_modseq})"));
                }
                io.line(&line);
            }
            Some(returns) => {
                let mut line = format!("* ESEARCH (TAG \"{tag}\")");
                if uid {
                    line.push_str(" UID");
                }
                for item in returns {
                    match item {
                        SearchReturn::Min => {
                            if let Some(min) = found.first() {
                                line.push_str(&format!(" MIN {min}"));
                            }
                        }
                        SearchReturn::Max => {
                            if let Some(max) = found.last() {
                                line.push_str(&format!(" MAX {max}"));
                            }
                        }
                        SearchReturn::Count => line.push_str(&format!(" COUNT {}", found.len())),
                        SearchReturn::Save => {}
                        SearchReturn::All => {
                            if !found.is_empty() {
                                line.push_str(&format!(" ALL {}", compact(&found)));
                            }
                        }
                    }
                }
                if uses_modseq && !found.is_empty() {
                    line.push_str(&format!(" MODSEQ {highest_modseq}"));
                }
                io.line(&line);
            }
        }
        Ok(ok("SEARCH completed"))
    }

    async fn fetch<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &mut self,
        io: &mut Io<S>,
        uid: bool,
        set: &SequenceSet,
        mut items: Vec<FetchItem>,
        changed_since: Option<u64>,
    ) -> CommandResult {
        let selected = self.selected()?;
        let name = selected.name.clone();
        let read_only = selected.read_only;
        let mut positions = selected.resolve(set, uid);
        if let Some(changed_since) = changed_since {
            positions.retain(|&position| selected.messages[position].modseq > changed_since);
        }
        if uid && !items.contains(&FetchItem::Uid) {
            items.insert(0, FetchItem::Uid);
        }
        if self.condstore && !items.contains(&FetchItem::ModSeq) && changed_since.is_some() {
            items.push(FetchItem::ModSeq);
        }
        let needs_envelope = items.contains(&FetchItem::Envelope);
        let needs_body = items.iter().any(|item| {
            matches!(
                item,
                FetchItem::Body
                    | FetchItem::BodyStructure
                    | FetchItem::Section { .. }
                    | FetchItem::Binary { .. }
                    | FetchItem::BinarySize { .. }
                    | FetchItem::Rfc822
                    | FetchItem::Rfc822Header
                    | FetchItem::Rfc822Text
            )
        });
        let sets_seen = !read_only
            && items.iter().any(|item| {
                matches!(
                    item,
                    FetchItem::Section { peek: false, .. }
                        | FetchItem::Binary { peek: false, .. }
                        | FetchItem::Rfc822
                        | FetchItem::Rfc822Text
                )
            });
        if sets_seen {
            self.mark_seen(&positions).await?;
        }
        let selected = self.selected()?;
        let targets: Vec<(usize, MessageFlags)> = positions
            .iter()
            .map(|&position| (position, selected.messages[position].clone()))
            .collect();
        let mut envelopes = std::collections::HashMap::new();
        if needs_envelope {
            let lookup = name.clone();
            let uids: Vec<u32> = targets.iter().map(|(_, message)| message.uid).collect();
            for summary in self
                .blocking(move |user| user.summaries(&lookup, &uids))
                .await?
            {
                if let Some(index) = summary.index {
                    envelopes.insert(summary.uid, index.envelope);
                }
            }
        }
        for batch in targets.chunks(if needs_body {
            FETCH_BODIES_PER_BATCH_MAX
        } else {
            usize::MAX
        }) {
            let mut bodies = std::collections::HashMap::new();
            if needs_body {
                let lookup = name.clone();
                let uids: Vec<u32> = batch.iter().map(|(_, message)| message.uid).collect();
                bodies = self
                    .blocking(move |user| {
                        let mut bodies = std::collections::HashMap::new();
                        for uid in uids {
                            match user.fetch(&lookup, uid) {
                                Ok(bytes) => {
                                    bodies.insert(uid, bytes);
                                }
                                // Expunged by another session since: nothing to return.
                                Err(StoreError::NoSuchMessage { .. }) => {}
                                Err(error) => return Err(error),
                            }
                        }
                        Ok(bodies)
                    })
                    .await?;
            }
            for (position, message) in batch {
                let body = bodies.get(&message.uid);
                if needs_body && body.is_none() {
                    continue;
                }
                let mut out = format!("* {} FETCH (", position + 1).into_bytes();
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(b' ');
                    }
                    // RFC 3516 section 4.2: a part whose transfer encoding cannot be undone
                    // fails the whole command with UNKNOWN-CTE (responses already sent stand;
                    // this one is not sent).
                    self.fetch_item(
                        &mut out,
                        item,
                        message,
                        envelopes.get(&message.uid),
                        body.map(Vec::as_slice),
                    )
                    .map_err(|crate::mime::BinaryError::UnknownEncoding(encoding)| {
                        let part = match item {
                            FetchItem::Binary { part, .. } | FetchItem::BinarySize { part } => {
                                part.iter().map(u32::to_string).collect::<Vec<_>>().join(".")
                            }
                            _ => String::new(),
                        };
                        no(&format!(
                            "[UNKNOWN-CTE] message {} part {part} uses the transfer encoding {encoding:?}, which cannot be decoded",
                            position + 1
                        ))
                    })?;
                }
                out.extend_from_slice(b")\r\n");
                io.write(&out);
                io.flush_if_large()
                    .await
                    .map_err(|_| bad("connection lost"))?;
            }
        }
        Ok(ok("FETCH completed"))
    }

    fn fetch_item(
        &self,
        out: &mut Vec<u8>,
        item: &FetchItem,
        message: &MessageFlags,
        envelope: Option<&letterlock_mailstore::index::Envelope>,
        body: Option<&[u8]>,
    ) -> Result<(), crate::mime::BinaryError> {
        let body = body.unwrap_or_default();
        match item {
            FetchItem::Flags => {
                out.extend_from_slice(b"FLAGS ");
                encode::flags(out, message.flags, &message.keywords);
            }
            FetchItem::Uid => out.extend_from_slice(format!("UID {}", message.uid).as_bytes()),
            FetchItem::ModSeq => {
                out.extend_from_slice(format!("MODSEQ ({})", message.modseq).as_bytes())
            }
            FetchItem::EmailId => out.extend_from_slice(
                format!("EMAILID ({})", email_object_id(message.email_id)).as_bytes(),
            ),
            // RFC 8474 section 5.2: NIL when the server does not thread messages.
            FetchItem::ThreadId => out.extend_from_slice(b"THREADID NIL"),
            FetchItem::Binary { part, partial, .. } => {
                let label: Vec<String> = part.iter().map(u32::to_string).collect();
                out.extend_from_slice(format!("BINARY[{}]", label.join(".")).as_bytes());
                let bytes = crate::mime::binary_bytes(body, part)?;
                let bytes = partial_of(out, bytes, *partial);
                out.push(b' ');
                // RFC 3516 section 4.2: literal8 when the data holds a NUL.
                if bytes.contains(&0) {
                    out.push(b'~');
                }
                encode::literal(out, &bytes);
            }
            FetchItem::BinarySize { part } => {
                let label: Vec<String> = part.iter().map(u32::to_string).collect();
                let size = crate::mime::binary_bytes(body, part)?.len();
                out.extend_from_slice(
                    format!("BINARY.SIZE[{}] {size}", label.join(".")).as_bytes(),
                );
            }
            FetchItem::InternalDate => out.extend_from_slice(
                format!(
                    "INTERNALDATE \"{}\"",
                    syntax::format_date_time(message.internal_date_unix)
                )
                .as_bytes(),
            ),
            FetchItem::Rfc822Size => {
                out.extend_from_slice(format!("RFC822.SIZE {}", message.size_bytes).as_bytes())
            }
            FetchItem::Envelope => {
                out.extend_from_slice(b"ENVELOPE ");
                let empty = letterlock_mailstore::index::Envelope::default();
                encode::envelope(out, envelope.unwrap_or(&empty), self.utf8);
            }
            FetchItem::BodyStructure => {
                out.extend_from_slice(b"BODYSTRUCTURE ");
                crate::mime::body_structure(out, body, true, self.utf8);
            }
            FetchItem::Body => {
                out.extend_from_slice(b"BODY ");
                crate::mime::body_structure(out, body, false, self.utf8);
            }
            FetchItem::Rfc822 => {
                out.extend_from_slice(b"RFC822 ");
                encode::literal(out, body);
            }
            FetchItem::Rfc822Header | FetchItem::Rfc822Text => {
                let text = if *item == FetchItem::Rfc822Header {
                    syntax::SectionText::Header
                } else {
                    syntax::SectionText::Text
                };
                let section = syntax::Section {
                    part: Vec::new(),
                    text: Some(text),
                    fields: None,
                };
                let name = if *item == FetchItem::Rfc822Header {
                    "RFC822.HEADER "
                } else {
                    "RFC822.TEXT "
                };
                out.extend_from_slice(name.as_bytes());
                encode::literal(out, &crate::mime::section_bytes(body, &section));
            }
            FetchItem::Section {
                section, partial, ..
            } => {
                let bytes = crate::mime::section_bytes(body, section);
                out.extend_from_slice(b"BODY[");
                out.extend_from_slice(section_label(section).as_bytes());
                out.push(b']');
                let bytes = partial_of(out, bytes, *partial);
                out.push(b' ');
                encode::literal(out, &bytes);
            }
        }
        Ok(())
    }

    /// Set `\Seen` on messages read with BODY[] (RFC 9051 section 6.4.5), before the FETCH
    /// responses, which then carry the new flags.
    async fn mark_seen(&mut self, positions: &[usize]) -> Result<(), Done> {
        let selected = self.selected()?;
        let name = selected.name.clone();
        let changes: Vec<(u32, u8, Vec<String>)> = positions
            .iter()
            .map(|&position| &selected.messages[position])
            .filter(|message| message.flags & flag_bits::SEEN == 0)
            .map(|message| {
                (
                    message.uid,
                    message.flags | flag_bits::SEEN,
                    message.keywords.clone(),
                )
            })
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        let applied = changes.clone();
        let modseqs = self
            .blocking(move |user| user.set_flags_many(&name, &changes))
            .await?;
        self.apply_own_flags(&applied, &modseqs);
        Ok(())
    }

    fn apply_own_flags(&mut self, changes: &[(u32, u8, Vec<String>)], modseqs: &[(u32, u64)]) {
        let Some(selected) = self.selected.as_mut() else {
            return;
        };
        for (uid, flags, keywords) in changes {
            let Some(modseq) = modseqs
                .iter()
                .find(|(changed, _)| changed == uid)
                .map(|(_, m)| *m)
            else {
                continue;
            };
            if let Some(position) = selected.position_of(*uid) {
                let message = &mut selected.messages[position];
                message.flags = *flags;
                message.keywords = keywords.clone();
                message.modseq = modseq;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn store<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &mut self,
        io: &mut Io<S>,
        uid: bool,
        set: &SequenceSet,
        mode: StoreMode,
        silent: bool,
        flags: Vec<Flag>,
        unchanged_since: Option<u64>,
    ) -> CommandResult {
        let selected = self.selected()?;
        if selected.read_only {
            return Err(no("[READ-ONLY] mailbox is read-only"));
        }
        let name = selected.name.clone();
        let (bits, keywords) = flag_bits_of(&flags);
        let positions = selected.resolve(set, uid);
        let mut modified = Vec::new();
        let mut changes = Vec::new();
        for &position in &positions {
            let message = &selected.messages[position];
            if unchanged_since.is_some_and(|since| message.modseq > since) {
                modified.push(if uid {
                    message.uid
                } else {
                    position as u32 + 1
                });
                continue;
            }
            let (new_bits, new_keywords) = match mode {
                StoreMode::Replace => (bits, keywords.clone()),
                StoreMode::Add => {
                    let mut merged = message.keywords.clone();
                    for keyword in &keywords {
                        if !merged
                            .iter()
                            .any(|known| known.eq_ignore_ascii_case(keyword))
                        {
                            merged.push(keyword.clone());
                        }
                    }
                    (message.flags | bits, merged)
                }
                StoreMode::Remove => (
                    message.flags & !bits,
                    message
                        .keywords
                        .iter()
                        .filter(|known| {
                            !keywords
                                .iter()
                                .any(|keyword| keyword.eq_ignore_ascii_case(known))
                        })
                        .cloned()
                        .collect(),
                ),
            };
            if new_bits != message.flags || new_keywords != message.keywords {
                changes.push((message.uid, new_bits, new_keywords));
            }
        }
        if !changes.is_empty() {
            let applied = changes.clone();
            let modseqs = self
                .blocking(move |user| user.set_flags_many(&name, &changes))
                .await?;
            self.apply_own_flags(&applied, &modseqs);
        }
        let selected = self.selected()?;
        if !silent || (self.condstore && unchanged_since.is_some()) {
            for &position in &positions {
                let message = &selected.messages[position];
                let number = if uid {
                    message.uid
                } else {
                    position as u32 + 1
                };
                if modified.contains(&number) {
                    continue;
                }
                let mut out = format!("* {} FETCH (", position + 1).into_bytes();
                if !silent {
                    out.extend_from_slice(b"FLAGS ");
                    encode::flags(&mut out, message.flags, &message.keywords);
                }
                if uid {
                    out.extend_from_slice(format!(" UID {}", message.uid).as_bytes());
                }
                if self.condstore {
                    out.extend_from_slice(format!(" MODSEQ ({})", message.modseq).as_bytes());
                }
                out.extend_from_slice(b")\r\n");
                let cleaned = String::from_utf8_lossy(&out).replace("( ", "(");
                io.write(cleaned.as_bytes());
            }
        }
        if !modified.is_empty() {
            return Ok(ok(&format!(
                "[MODIFIED {}] conditional STORE failed for some",
                compact(&modified)
            )));
        }
        Ok(ok("STORE completed"))
    }

    async fn copy<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &mut self,
        io: &mut Io<S>,
        uid: bool,
        set: &SequenceSet,
        mailbox: &str,
        is_move: bool,
    ) -> CommandResult {
        let selected = self.selected()?;
        if is_move && selected.read_only {
            return Err(no("[READ-ONLY] mailbox is read-only"));
        }
        let target = self.mailbox_name(mailbox)?;
        let from = selected.name.clone();
        let (selected_name, target_name) = (from.clone(), target.clone());
        let uids: Vec<u32> = selected
            .resolve(set, uid)
            .into_iter()
            .map(|position| selected.messages[position].uid)
            .collect();
        if uids.is_empty() {
            return Ok(ok("nothing to do"));
        }
        let result = self
            .blocking(move |user| {
                if is_move {
                    user.move_messages(&from, &uids, &target)
                } else {
                    user.copy_messages(&from, &uids, &target)
                }
            })
            .await;
        let copied = match result {
            Ok(copied) => copied,
            Err(Done::Tagged(text)) if text.starts_with("NO [NONEXISTENT]") => {
                return Err(no("[TRYCREATE] no such mailbox; CREATE it first"))
            }
            Err(done) => return Err(done),
        };
        let sources: Vec<u32> = copied.uids.iter().map(|(source, _)| *source).collect();
        let targets: Vec<u32> = copied.uids.iter().map(|(_, target)| *target).collect();
        self.train_after_copy(&selected_name, &target_name, &targets);
        let code = if copied.uids.is_empty() {
            String::new()
        } else {
            format!(
                "[COPYUID {} {} {}] ",
                copied.uid_validity,
                compact(&sources),
                compact(&targets)
            )
        };
        if is_move {
            // RFC 6851 section 4.3: COPYUID in an untagged OK before the EXPUNGEs.
            io.line(&format!("* OK {code}moved"));
            self.remove_from_view(io, &sources);
            return Ok(ok("MOVE completed"));
        }
        Ok(ok(&format!("{code}COPY completed")))
    }

    /// Junk training after a COPY or MOVE, on a blocking thread of its own once the command
    /// is answered (see `training`).
    fn train_after_copy(&self, from: &MailboxName, to: &MailboxName, targets: &[u32]) {
        let Some(user) = self.user.clone() else {
            return;
        };
        let store = self.shared.store.clone();
        let (from, to, targets) = (from.clone(), to.clone(), targets.to_vec());
        tokio::task::spawn_blocking(move || {
            if let Err(error) = crate::training::after_copy(&store, &user, &from, &to, &targets) {
                tracing::warn!("imap: junk training failed: {error}");
            }
        });
    }

    /// IDLE (RFC 2177): report changes as they happen until the client sends DONE.
    async fn idle<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &mut self,
        io: &mut Io<S>,
        _tag: &str,
    ) -> CommandResult {
        self.user()?;
        io.line("+ idling");
        self.report_changes(io, true).await;
        io.flush().await.map_err(|_| bad("connection lost"))?;
        // RFC 2177: clients re-issue IDLE before 29 minutes; the same idle limit applies.
        let deadline = tokio::time::Instant::now() + self.shared.settings.idle_timeout;
        let changes = Arc::clone(&self.changes);
        loop {
            let mut shutdown = self.shutdown.clone();
            tokio::select! {
                line = io.read_line(LINE_LENGTH_MAX_BYTES) => {
                    return match line {
                        Ok(Some(Line::Complete(line))) if line.eq_ignore_ascii_case(b"DONE") => Ok(ok("IDLE terminated")),
                        Ok(Some(_)) => Err(bad("expected DONE")),
                        _ => Err(Done::TaggedThenClose("BAD connection lost".into())),
                    };
                }
                _ = changes.wake.notified() => {
                    // The account reset by its administrator meanwhile: end now, not at DONE.
                    if self.revoked() {
                        io.line(REVOKED_BYE);
                        return Err(Done::TaggedThenClose("NO IDLE ended".into()));
                    }
                    self.report_changes(io, true).await;
                    io.flush().await.map_err(|_| bad("connection lost"))?;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    io.line("* BYE IDLE for longer than the idle limit; re-issue IDLE sooner");
                    return Err(Done::TaggedThenClose("NO IDLE timed out".into()));
                }
                _ = shutdown.requested() => {
                    io.line("* BYE [UNAVAILABLE] server shutting down");
                    return Err(Done::TaggedThenClose("NO server shutting down".into()));
                }
            }
        }
    }

    /// Turn changes other sessions (or delivery) made to the selected mailbox into untagged
    /// responses: EXPUNGE (when allowed), FETCH (FLAGS) and EXISTS.
    async fn report_changes<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<S>,
        allow_expunge: bool,
    ) {
        let Some(selected) = self.selected.as_ref() else {
            return;
        };
        let dirty = match self.changes.mailboxes.lock() {
            Ok(mut changed) => changed.remove(&selected.name),
            Err(_) => false,
        };
        if !dirty {
            return;
        }
        let name = selected.name.clone();
        let fresh = match self.blocking(move |user| user.list_flags(&name)).await {
            Ok((info, fresh)) => {
                if info.uid_validity != selected.uid_validity {
                    io.line("* BYE mailbox was replaced; please reconnect");
                    self.selected = None;
                    return;
                }
                fresh
            }
            Err(_) => {
                // Deleted or unreadable now: nothing sensible to report in this session.
                return;
            }
        };
        let condstore = self.condstore;
        let Some(selected) = self.selected.as_mut() else {
            return;
        };
        let fresh_uids: HashSet<u32> = fresh.iter().map(|message| message.uid).collect();
        if allow_expunge {
            let gone: Vec<u32> = selected
                .messages
                .iter()
                .filter(|message| !fresh_uids.contains(&message.uid))
                .map(|message| message.uid)
                .collect();
            if !gone.is_empty() {
                self.remove_from_view(io, &gone);
            }
        } else if selected
            .messages
            .iter()
            .any(|message| !fresh_uids.contains(&message.uid))
        {
            // Remember that expunges are still to be reported.
            if let Ok(mut changed) = self.changes.mailboxes.lock() {
                changed.insert(selected.name.clone());
            }
        }
        let Some(selected) = self.selected.as_mut() else {
            return;
        };
        let last_uid = selected
            .messages
            .last()
            .map(|message| message.uid)
            .unwrap_or(0);
        let mut by_uid = std::collections::HashMap::new();
        for message in &fresh {
            by_uid.insert(message.uid, message);
        }
        for (position, message) in selected.messages.iter_mut().enumerate() {
            if let Some(current) = by_uid.get(&message.uid) {
                if current.modseq != message.modseq {
                    let flags_changed =
                        current.flags != message.flags || current.keywords != message.keywords;
                    *message = (*current).clone();
                    if flags_changed || condstore {
                        let mut out = format!("* {} FETCH (FLAGS ", position + 1).into_bytes();
                        encode::flags(&mut out, message.flags, &message.keywords);
                        out.extend_from_slice(format!(" UID {}", message.uid).as_bytes());
                        if condstore {
                            out.extend_from_slice(
                                format!(" MODSEQ ({})", message.modseq).as_bytes(),
                            );
                        }
                        out.extend_from_slice(b")\r\n");
                        io.write(&out);
                    }
                }
            }
        }
        let new: Vec<MessageFlags> = fresh
            .into_iter()
            .filter(|message| message.uid > last_uid)
            .collect();
        if !new.is_empty() {
            selected.messages.extend(new);
            io.line(&format!("* {} EXISTS", selected.messages.len()));
        }
    }
}

fn contains_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSeq(_) => true,
        SearchKey::And(keys) => keys.iter().any(contains_modseq),
        SearchKey::Or(left, right) => contains_modseq(left) || contains_modseq(right),
        SearchKey::Not(key) => contains_modseq(key),
        _ => false,
    }
}

fn flag_bits_of(flags: &[Flag]) -> (u8, Vec<String>) {
    let mut bits = 0;
    let mut keywords: Vec<String> = Vec::new();
    for flag in flags {
        match flag {
            Flag::System(bit) => bits |= bit,
            Flag::Recent => {}
            Flag::Keyword(keyword) => {
                if !keywords
                    .iter()
                    .any(|known| known.eq_ignore_ascii_case(keyword))
                {
                    keywords.push(keyword.clone());
                }
            }
        }
    }
    (bits, keywords)
}

fn special_use_attribute(special_use: SpecialUse) -> &'static str {
    special_use.attribute()
}

fn section_label(section: &syntax::Section) -> String {
    let mut label: Vec<String> = section.part.iter().map(u32::to_string).collect();
    match (&section.text, &section.fields) {
        (_, Some((fields, exclude))) => label.push(format!(
            "HEADER.FIELDS{} ({})",
            if *exclude { ".NOT" } else { "" },
            fields.join(" ")
        )),
        (Some(syntax::SectionText::Header), None) => label.push("HEADER".into()),
        (Some(syntax::SectionText::Text), None) => label.push("TEXT".into()),
        (Some(syntax::SectionText::Mime), None) => label.push("MIME".into()),
        (None, None) => {}
    }
    label.join(".")
}

/// LIST patterns (RFC 9051 section 6.3.9): `*` matches anything, `%` anything but the
/// hierarchy separator. INBOX matches case-insensitively.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let inbox_fold = |pattern: &[char]| -> Vec<char> {
        let text: String = pattern.iter().collect();
        if text.len() >= 5 && text[..5].eq_ignore_ascii_case("INBOX") {
            format!("INBOX{}", &text[5..]).chars().collect()
        } else {
            pattern.to_vec()
        }
    };
    let pattern = inbox_fold(&pattern);
    matches_from(&pattern, &name)
}

fn matches_from(pattern: &[char], name: &[char]) -> bool {
    // Iterative matching with memo: patterns are short, names at most 512 octets.
    let mut reachable = vec![false; name.len() + 1];
    reachable[0] = true;
    for &symbol in pattern {
        let mut next = vec![false; name.len() + 1];
        match symbol {
            '*' | '%' => {
                let mut open = false;
                for index in 0..=name.len() {
                    if reachable[index] {
                        open = true;
                    }
                    if open {
                        next[index] = true;
                    }
                    if symbol == '%'
                        && index < name.len()
                        && name[index] == MailboxName::HIERARCHY_SEPARATOR
                    {
                        open = false;
                    }
                }
            }
            literal => {
                for index in 0..name.len() {
                    if reachable[index] && name[index] == literal {
                        next[index + 1] = true;
                    }
                }
            }
        }
        reachable = next;
    }
    reachable[name.len()]
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_wildcards() {
        assert!(wildcard_match("*", "INBOX"));
        assert!(wildcard_match("inbox", "INBOX"));
        assert!(wildcard_match("%", "Sent"));
        assert!(!wildcard_match("%", "Work/2026"));
        assert!(wildcard_match("Work/%", "Work/2026"));
        assert!(wildcard_match("W*6", "Work/2026"));
        assert!(!wildcard_match("Work", "Work/2026"));
    }

    #[test]
    fn section_labels() {
        let section = syntax::Section {
            part: vec![1, 2],
            text: Some(syntax::SectionText::Header),
            fields: Some((vec!["FROM".into()], true)),
        };
        assert_eq!(section_label(&section), "1.2.HEADER.FIELDS.NOT (FROM)");
    }
}
