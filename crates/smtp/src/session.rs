//! One SMTP session, inbound (MX, RFC 5321) or submission (RFC 6409), over any byte stream.
//!
//! Extensions: PIPELINING (RFC 2920), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), SIZE
//! (RFC 1870), ENHANCEDSTATUSCODES (RFC 2034, RFC 3463), CHUNKING (RFC 3030), STARTTLS
//! (RFC 3207), REQUIRETLS (RFC 8689, offered only over TLS), AUTH PLAIN and LOGIN (RFC 4954,
//! RFC 4616; submission only, only over TLS), DSN (RFC 3461: RET, ENVID, NOTIFY and ORCPT
//! go with the message into the outbound queue; NOTIFY=SUCCESS of a local recipient is
//! answered with a "delivered" report once the copy is committed).
//!
//! The session reads commands, answers them, and flushes its answers whenever it would wait for
//! the client (RFC 2920 section 3.2), so a pipelining client gets its replies in one write.
//! Commands are parsed by `smtp-proto`; framing (CRLF lines, DATA, BDAT chunks) is `framing`.
//! Nothing a client sends is written to disk before it is encrypted: the message is held in
//! memory and handed to the group committer, and `250` follows the durable commit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use letterlock_crypto::openpgp::PublicKey;
use letterlock_mailstore::records::flag_bits;
use letterlock_mailstore::{
    EncryptionPolicy, Filing, MailStore, SpecialUse, StoreError, Unlocked, UserSettings,
};

use crate::auth::{strip_forged_results, DmarcDisposition, Envelope};
use crate::filter::{strip_header_fields, AuthSignals, SpamFilter, VERDICT_HEADERS};
use letterlock_server::{Connection, Service, ShutdownSignal, Transport};
use letterlock_types::{EmailAddress, Secret};
use smtp_proto::{Error as ParseError, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::batcher::{DeliveryBatcher, DeliveryError};
use crate::framing::{take_chunk, BodyError, CommandLine, DataReader, InputBuffer};
use crate::limiter::AuthLimiter;
use crate::reply::Reply;
use crate::settings::{
    Settings, AUTH_LINE_LENGTH_MAX_BYTES, DSN_ENVID_LENGTH_MAX, DSN_ORCPT_LENGTH_MAX,
};
use crate::trace::{new_transaction_id, now_unix, trace_headers, TraceInfo};
use letterlock_queue::dmarc_reports::{received_report, Collector};
use letterlock_queue::dsn::{build_report, Action, Report, Reported};
use letterlock_queue::{DmarcReports, DsnRequest, Notify, Outbound, QueueError, RecipientRequest};

/// Recipients of one submission whose keys are looked up by WKD at most (the rest go as if
/// keyless): a message to hundreds must not start hundreds of HTTPS fetches.
const KEY_LOOKUPS_PER_SUBMISSION_MAX: usize = 20;
/// Bytes read from the socket at once.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Replies buffered past this are written even while pipelined commands remain, so a client
/// that pipelines without reading cannot grow the server's memory.
const OUTPUT_BUFFER_MAX_BYTES: usize = 16 * 1024;

/// Which side of the mail system a session is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Mail from other servers for local recipients only (port 25).
    Inbound,
    /// Mail from our own users, after AUTH over TLS (ports 465 and 587).
    Submission,
}

/// Everything about a connection a session needs besides its stream.
pub struct SessionContext {
    pub mode: Mode,
    pub peer: SocketAddr,
    /// The name the server greets with and writes in `Received`.
    pub hostname: String,
    /// For STARTTLS; `None` on a stream that is already TLS.
    pub tls_acceptor: Option<TlsAcceptor>,
    /// Set when the stream is TLS from the start: its protocol and cipher suite.
    pub implicit_tls: Option<String>,
    pub shutdown: ShutdownSignal,
}

/// The shared part of every session: the store, the limits, the group committer and the
/// failed-login counts.
pub struct SmtpServer {
    store: MailStore,
    settings: Settings,
    batcher: DeliveryBatcher,
    /// Scores inbound (MX) mail before it is encrypted.
    filter: Arc<SpamFilter>,
    limiter: AuthLimiter,
    /// The outbound queue and DKIM keys; without them, remote recipients get a `451`.
    outbound: Option<Outbound>,
    /// DMARC evaluations for aggregate reports, written in batches (needs `outbound`).
    dmarc: Option<Arc<Collector>>,
}

/// The session ends: the client left, went quiet, or the server is stopping. Any goodbye has
/// been written already.
#[derive(Debug)]
struct SessionEnd;

enum Flow {
    Continue,
    Close,
    StartTls,
}

struct Authenticated {
    address: EmailAddress,
    unlocked: Arc<Unlocked>,
}

#[derive(Default)]
struct Transaction {
    /// The reverse-path as given; empty for the null sender.
    sender: String,
    /// Local recipients, delivered through the group committer.
    recipients: Vec<EmailAddress>,
    /// Remote recipients (submission only), put in the outbound queue.
    remote_recipients: Vec<EmailAddress>,
    smtputf8: bool,
    /// RFC 8689: the submitter asked that the message travel only over verified TLS.
    requiretls: bool,
    /// RFC 3461: RET and ENVID of MAIL.
    dsn: DsnRequest,
    /// RFC 3461: NOTIFY and ORCPT of the RCPTs that gave them.
    recipient_dsn: Vec<(EmailAddress, Notify, Option<String>)>,
    /// BDAT chunks so far, or `None` before the first chunk.
    chunks: Option<Vec<u8>>,
    chunks_too_large: bool,
}

impl Transaction {
    fn recipient_count(&self) -> usize {
        self.recipients.len() + self.remote_recipients.len()
    }

    /// Take `recipient` (local, or remote to be relayed) unless the transaction has it already,
    /// with the DSN parameters its RCPT gave, if any.
    fn add_recipient(
        &mut self,
        recipient: EmailAddress,
        remote: bool,
        notify: Notify,
        orcpt: Option<String>,
    ) {
        let list = if remote {
            &mut self.remote_recipients
        } else {
            &mut self.recipients
        };
        if list.contains(&recipient) {
            return;
        }
        list.push(recipient.clone());
        if notify.given || orcpt.is_some() {
            self.recipient_dsn.push((recipient, notify, orcpt));
        }
    }

    /// A recipient with the DSN parameters its RCPT gave.
    fn request(&self, address: EmailAddress) -> RecipientRequest {
        match self
            .recipient_dsn
            .iter()
            .find(|(candidate, _, _)| *candidate == address)
        {
            Some((_, notify, orcpt)) => RecipientRequest {
                address,
                notify: *notify,
                orcpt: orcpt.clone(),
            },
            None => RecipientRequest::from(address),
        }
    }
}

/// RFC 3461 sections 4.2 and 4.4: ENVID and ORCPT have length limits, and a decoded value
/// with control characters would break the report it is echoed in.
fn dsn_value_refused(name: &str, value: Option<&String>, length_max: usize) -> Option<Reply> {
    let value = value?;
    (value.chars().count() > length_max || value.chars().any(char::is_control)).then(|| {
        Reply::new(
            501,
            "5.5.4",
            format!("{name} is longer than {length_max} characters or has control characters"),
        )
    })
}

/// RFC 3461 NOTIFY from smtp-proto's flags.
fn notify_of(flags: u64) -> Notify {
    if flags & smtp_proto::RCPT_NOTIFY_NEVER != 0 {
        return Notify::NEVER;
    }
    let success = flags & smtp_proto::RCPT_NOTIFY_SUCCESS != 0;
    let failure = flags & smtp_proto::RCPT_NOTIFY_FAILURE != 0;
    let delay = flags & smtp_proto::RCPT_NOTIFY_DELAY != 0;
    Notify {
        given: success || failure || delay,
        success,
        failure,
        delay,
    }
}

struct State {
    mode: Mode,
    peer: SocketAddr,
    hostname: String,
    tls: Option<String>,
    can_starttls: bool,
    helo: Option<String>,
    esmtp: bool,
    auth: Option<Authenticated>,
    transaction: Option<Transaction>,
    errors: u32,
    commands_without_mail: u32,
    auth_failures: u32,
}

impl State {
    fn new(context: &SessionContext) -> State {
        State {
            mode: context.mode,
            peer: context.peer,
            hostname: context.hostname.clone(),
            tls: context.implicit_tls.clone(),
            can_starttls: context.implicit_tls.is_none() && context.tls_acceptor.is_some(),
            helo: None,
            esmtp: false,
            auth: None,
            transaction: None,
            errors: 0,
            commands_without_mail: 0,
            auth_failures: 0,
        }
    }

    /// RFC 3207 section 4.2: after TLS the client must start over with EHLO, and nothing it
    /// said before counts.
    fn reset_after_tls(&mut self, description: String) {
        self.tls = Some(description);
        self.can_starttls = false;
        self.helo = None;
        self.esmtp = false;
        self.auth = None;
        self.transaction = None;
    }
}

/// A stream with its input buffer and its pending replies.
struct Conn<S> {
    stream: S,
    input: InputBuffer,
    output: Vec<u8>,
    chunk: Vec<u8>,
    idle_timeout: Duration,
    shutdown: ShutdownSignal,
}

enum ReadOutcome {
    Data(usize),
    Closed,
    IdleTimeout,
    Shutdown,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Conn<S> {
    fn new(stream: S, idle_timeout: Duration, shutdown: ShutdownSignal) -> Conn<S> {
        Conn {
            stream,
            input: InputBuffer::new(),
            output: Vec::new(),
            chunk: vec![0; READ_CHUNK_BYTES],
            idle_timeout,
            shutdown,
        }
    }

    async fn reply(&mut self, reply: Reply) -> Result<(), SessionEnd> {
        reply.encode_into(&mut self.output);
        if self.output.len() > OUTPUT_BUFFER_MAX_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SessionEnd> {
        if self.output.is_empty() {
            return Ok(());
        }
        let output = std::mem::take(&mut self.output);
        let written = tokio::time::timeout(self.idle_timeout, async {
            self.stream.write_all(&output).await?;
            self.stream.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            _ => Err(SessionEnd),
        }
    }

    /// Say a last reply and end the session.
    async fn goodbye(&mut self, reply: Reply) -> SessionEnd {
        reply.encode_into(&mut self.output);
        let _ = self.flush().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
        SessionEnd
    }

    /// Write what is pending, then wait for more input (or the idle timeout, or shutdown).
    async fn fill(&mut self) -> Result<(), SessionEnd> {
        self.flush().await?;
        let outcome = {
            let read = tokio::time::timeout(self.idle_timeout, self.stream.read(&mut self.chunk));
            tokio::select! {
                result = read => match result {
                    Err(_) => ReadOutcome::IdleTimeout,
                    Ok(Ok(0)) | Ok(Err(_)) => ReadOutcome::Closed,
                    Ok(Ok(count)) => ReadOutcome::Data(count),
                },
                _ = self.shutdown.requested() => ReadOutcome::Shutdown,
            }
        };
        match outcome {
            ReadOutcome::Data(count) => {
                self.input.extend(&self.chunk[..count]);
                Ok(())
            }
            ReadOutcome::Closed => Err(SessionEnd),
            ReadOutcome::IdleTimeout => Err(self
                .goodbye(Reply::new(421, "4.4.2", "idle for too long, closing"))
                .await),
            ReadOutcome::Shutdown => Err(self.goodbye(shutdown_reply()).await),
        }
    }

    async fn next_line(&mut self, length_max_bytes: usize) -> Result<CommandLine, SessionEnd> {
        loop {
            if let Some(line) = self.input.take_command_line(length_max_bytes) {
                return Ok(line);
            }
            self.fill().await?;
        }
    }
}

fn shutdown_reply() -> Reply {
    Reply::new(421, "4.3.2", "server shutting down, try again later")
}

fn describe_tls(connection: &rustls::ServerConnection) -> String {
    let version = connection
        .protocol_version()
        .map(|version| format!("{version:?}"))
        .unwrap_or_else(|| "TLS".into());
    let suite = connection
        .negotiated_cipher_suite()
        .map(|suite| format!(" {:?}", suite.suite()))
        .unwrap_or_default();
    format!("{version}{suite}")
}

impl SmtpServer {
    /// The shared state of all sessions; starts the group committer thread.
    pub fn new(store: MailStore, settings: Settings) -> std::io::Result<Arc<SmtpServer>> {
        SmtpServer::with_outbound(store, settings, None)
    }

    /// As [`SmtpServer::new`], with submitted mail for remote recipients DKIM-signed and
    /// queued in `outbound`.
    pub fn with_outbound(
        store: MailStore,
        settings: Settings,
        outbound: Option<Outbound>,
    ) -> std::io::Result<Arc<SmtpServer>> {
        let batcher = DeliveryBatcher::start(store.clone(), &settings)?;
        let limiter = AuthLimiter::new(
            settings.auth_failures_per_account_max,
            settings.auth_failures_per_ip_max,
            settings.auth_failure_window,
        );
        let filter = Arc::new(SpamFilter::new(
            store.clone(),
            settings.junk_threshold,
            settings.reject_threshold,
        ));
        let dmarc = outbound.as_ref().map(|outbound| {
            Arc::new(Collector::new(
                DmarcReports::new(outbound.queue.clone()),
                settings.dmarc_batch_records,
            ))
        });
        Ok(Arc::new(SmtpServer {
            store,
            settings,
            batcher,
            limiter,
            outbound,
            filter,
            dmarc,
        }))
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Run one session on a connection the listeners admitted.
    pub async fn serve_connection(self: Arc<Self>, connection: Connection) {
        let mode = match connection.service {
            Service::Smtp => Mode::Inbound,
            Service::SubmissionTls | Service::SubmissionStarttls => Mode::Submission,
            other => {
                tracing::error!(service = %other, "SMTP handler given a non-SMTP service");
                return;
            }
        };
        let mut context = SessionContext {
            mode,
            peer: connection.peer,
            hostname: connection.hostname,
            tls_acceptor: Some(connection.tls_acceptor),
            implicit_tls: None,
            shutdown: connection.shutdown,
        };
        match connection.transport {
            Transport::Plain(stream) => self.serve(stream, context).await,
            Transport::Tls(stream) => {
                context.implicit_tls = Some(describe_tls(stream.get_ref().1));
                context.tls_acceptor = None;
                self.serve(*stream, context).await
            }
        }
    }

    /// Run one session on any stream (tests drive it in memory).
    pub async fn serve<S>(&self, stream: S, context: SessionContext)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut state = State::new(&context);
        let mut conn = Conn::new(stream, self.settings.idle_timeout, context.shutdown.clone());
        if context.shutdown.is_requested() {
            let _ = conn.goodbye(shutdown_reply()).await;
            return;
        }
        let greeting = Reply::new(220, "", format!("{} ESMTP Letterlock", state.hostname));
        if conn.reply(greeting).await.is_err() {
            return;
        }
        match self.drive(&mut conn, &mut state).await {
            Ok(Flow::StartTls) => {}
            Ok(_) => {
                let _ = conn.flush().await;
                let _ = tokio::time::timeout(Duration::from_secs(1), conn.stream.shutdown()).await;
                return;
            }
            Err(SessionEnd) => return,
        }
        let Some(acceptor) = context.tls_acceptor else {
            return;
        };
        let handshake = tokio::time::timeout(
            self.settings.tls_handshake_timeout,
            acceptor.accept(conn.stream),
        )
        .await;
        let tls = match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                tracing::info!(peer = %state.peer, %error, "STARTTLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::info!(peer = %state.peer, "STARTTLS handshake timed out");
                return;
            }
        };
        state.reset_after_tls(describe_tls(tls.get_ref().1));
        let mut conn = Conn::new(tls, self.settings.idle_timeout, context.shutdown.clone());
        if let Ok(Flow::Close | Flow::Continue) = self.drive(&mut conn, &mut state).await {
            let _ = conn.flush().await;
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.stream.shutdown()).await;
        }
    }

    async fn drive<S>(&self, conn: &mut Conn<S>, state: &mut State) -> Result<Flow, SessionEnd>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let frame_max = self
            .settings
            .command_line_length_max_bytes
            .max(AUTH_LINE_LENGTH_MAX_BYTES);
        loop {
            if conn.shutdown.is_requested() {
                return Err(conn.goodbye(shutdown_reply()).await);
            }
            let flow = match conn.next_line(frame_max).await? {
                CommandLine::TooLong => {
                    self.respond(conn, state, Reply::new(500, "5.5.2", "line too long"))
                        .await?
                }
                CommandLine::BareLineFeed => {
                    self.respond(
                        conn,
                        state,
                        Reply::new(500, "5.5.2", "bare LF: lines end with CRLF"),
                    )
                    .await?
                }
                CommandLine::Line(line) => self.command(conn, state, line).await?,
            };
            match flow {
                Flow::Continue => {}
                other => return Ok(other),
            }
        }
    }

    /// Send a reply, counting client errors toward the session's limit.
    async fn respond<S>(
        &self,
        conn: &mut Conn<S>,
        state: &mut State,
        reply: Reply,
    ) -> Result<Flow, SessionEnd>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let failed = reply.is_permanent_failure();
        conn.reply(reply).await?;
        if failed {
            state.errors += 1;
            if state.errors >= self.settings.errors_per_session_max {
                return Err(conn
                    .goodbye(Reply::new(421, "4.7.0", "too many errors, closing"))
                    .await);
            }
        }
        Ok(Flow::Continue)
    }

    async fn command<S>(
        &self,
        conn: &mut Conn<S>,
        state: &mut State,
        line: Vec<u8>,
    ) -> Result<Flow, SessionEnd>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let is_auth = line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"AUTH ");
        if !is_auth && line.len() + 2 > self.settings.command_line_length_max_bytes {
            return self
                .respond(conn, state, Reply::new(500, "5.5.2", "line too long"))
                .await;
        }
        let mut framed = line;
        framed.extend_from_slice(b"\r\n");
        let parsed = Request::parse(&mut framed.iter()).map(Request::into_owned);
        let in_transaction = matches!(
            parsed,
            Ok(Request::Mail { .. } | Request::Rcpt { .. } | Request::Data | Request::Bdat { .. })
        );
        if !in_transaction && !matches!(parsed, Ok(Request::Quit)) {
            state.commands_without_mail += 1;
            if state.commands_without_mail > self.settings.commands_before_mail_max {
                return Err(conn
                    .goodbye(Reply::new(
                        421,
                        "4.7.0",
                        "too many commands without a mail transaction, closing",
                    ))
                    .await);
            }
        }
        let request = match parsed {
            Ok(request) => request,
            Err(error) => {
                return self.respond(conn, state, parse_error_reply(error)).await;
            }
        };
        match request {
            Request::Ehlo { host } => {
                let reply = self.ehlo(state, host);
                self.respond(conn, state, reply).await
            }
            Request::Helo { host } => {
                state.helo = Some(host);
                state.esmtp = false;
                state.transaction = None;
                let reply = Reply::new(250, "", state.hostname.clone());
                self.respond(conn, state, reply).await
            }
            Request::Mail { from } => {
                let reply = self.mail(state, from, &framed).await;
                self.respond(conn, state, reply).await
            }
            Request::Rcpt { to } => {
                let reply = self.rcpt(state, to, &framed).await;
                self.respond(conn, state, reply).await
            }
            Request::Data => self.data(conn, state).await,
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(conn, state, chunk_size, is_last).await,
            Request::Rset => {
                state.transaction = None;
                self.respond(conn, state, Reply::new(250, "2.0.0", "OK"))
                    .await
            }
            Request::Noop { .. } => {
                self.respond(conn, state, Reply::new(250, "2.0.0", "OK"))
                    .await
            }
            Request::Quit => {
                conn.reply(Reply::new(221, "2.0.0", "bye")).await?;
                Ok(Flow::Close)
            }
            // RFC 5321 section 3.5.3: 252 when the server will not verify (no address
            // harvesting), and EXPN is not offered (section 7.3).
            Request::Vrfy { .. } => {
                let reply = Reply::new(
                    252,
                    "2.5.0",
                    "cannot VRFY; send the message and delivery will be attempted",
                );
                self.respond(conn, state, reply).await
            }
            Request::Expn { .. } => {
                let reply = Reply::new(502, "5.5.1", "EXPN is disabled");
                self.respond(conn, state, reply).await
            }
            Request::Help { .. } => {
                let reply = Reply::new(214, "2.0.0", "see RFC 5321");
                self.respond(conn, state, reply).await
            }
            Request::StartTls => {
                if state.tls.is_some() {
                    let reply = Reply::new(503, "5.5.1", "TLS is already in use");
                    return self.respond(conn, state, reply).await;
                }
                if !state.can_starttls {
                    let reply = Reply::new(502, "5.5.1", "STARTTLS is not available");
                    return self.respond(conn, state, reply).await;
                }
                // Whatever the client pipelined behind STARTTLS came in the clear: drop it
                // (the STARTTLS command injection attack, CVE-2011-0411 and kin).
                conn.input.clear();
                conn.reply(Reply::new(220, "2.0.0", "ready to start TLS"))
                    .await?;
                conn.flush().await?;
                Ok(Flow::StartTls)
            }
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(conn, state, mechanism, initial_response).await,
            Request::Lhlo { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => {
                let reply = Reply::new(502, "5.5.1", "command not implemented");
                self.respond(conn, state, reply).await
            }
        }
    }

    fn ehlo(&self, state: &mut State, host: String) -> Reply {
        state.helo = Some(host.clone());
        state.esmtp = true;
        state.transaction = None;
        let mut lines = vec![
            format!("{} greets {}", state.hostname, host),
            "PIPELINING".into(),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            format!("SIZE {}", self.settings.message_size_max_bytes),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
            "DSN".into(),
        ];
        if state.can_starttls {
            lines.push("STARTTLS".into());
        }
        if state.tls.is_some() {
            lines.push("REQUIRETLS".into());
            if state.mode == Mode::Submission && state.auth.is_none() {
                lines.push("AUTH PLAIN LOGIN".into());
            }
        }
        Reply::multiline(250, lines)
    }

    async fn mail(
        &self,
        state: &mut State,
        from: smtp_proto::MailFrom<String>,
        raw: &[u8],
    ) -> Reply {
        if state.helo.is_none() {
            return Reply::new(503, "5.5.1", "send EHLO first");
        }
        if state.transaction.is_some() {
            return Reply::new(503, "5.5.1", "a mail transaction is already open");
        }
        if state.mode == Mode::Submission && state.auth.is_none() {
            return Reply::new(530, "5.7.0", "Authentication required");
        }
        // An account reset by its administrator since AUTH: this session's key is not the
        // account's any more, so it must authenticate again (RFC 4954 section 6).
        if let Some(authenticated) = &state.auth {
            // One read of a small cached record, done inline (see the IMAP session).
            if !matches!(authenticated.unlocked.is_current(), Ok(true)) {
                state.auth = None;
                return Reply::new(
                    530,
                    "5.7.0",
                    "Authentication required: the account's credentials were reset",
                );
            }
        }
        if from.flags & smtp_proto::MAIL_REQUIRETLS != 0 && state.tls.is_none() {
            return Reply::new(530, "5.7.10", "REQUIRETLS needs a TLS session");
        }
        if from.flags & smtp_proto::MAIL_BODY_BINARYMIME != 0 {
            return Reply::new(555, "5.5.4", "BODY=BINARYMIME is not supported");
        }
        if from.size > self.settings.message_size_max_bytes {
            return Reply::new(552, "5.3.4", "message size exceeds the limit");
        }
        if has_quoted_or_routed_path(raw) && state.mode == Mode::Submission {
            return Reply::new(
                553,
                "5.1.3",
                "quoted local parts and source routes are not accepted",
            );
        }
        if let Some(reply) = dsn_value_refused("ENVID", from.env_id.as_ref(), DSN_ENVID_LENGTH_MAX)
        {
            return reply;
        }
        let smtputf8 = from.flags & smtp_proto::MAIL_SMTPUTF8 != 0;
        if !from.address.is_ascii() && !smtputf8 {
            return Reply::new(553, "5.6.7", "non-ASCII address needs SMTPUTF8");
        }
        if let Some(authenticated) = &state.auth {
            let Ok(sender) = EmailAddress::try_from(from.address.as_str()) else {
                return Reply::new(553, "5.7.1", "sender address not allowed for this account");
            };
            match self.may_send_as(&authenticated.address, vec![sender]).await {
                Ok(true) => {}
                Ok(false) => {
                    return Reply::new(553, "5.7.1", "sender address not allowed for this account")
                }
                Err(_) => return Reply::new(451, "4.3.0", "temporary failure, try again later"),
            }
        }
        state.commands_without_mail = 0;
        state.transaction = Some(Transaction {
            sender: from.address,
            smtputf8,
            requiretls: from.flags & smtp_proto::MAIL_REQUIRETLS != 0,
            dsn: DsnRequest {
                ret_full: from.flags & smtp_proto::MAIL_RET_FULL != 0,
                envid: from.env_id,
            },
            ..Transaction::default()
        });
        Reply::new(250, "2.1.0", "sender OK")
    }

    async fn rcpt(&self, state: &mut State, to: smtp_proto::RcptTo<String>, raw: &[u8]) -> Reply {
        let Some(transaction) = &state.transaction else {
            return Reply::new(503, "5.5.1", "send MAIL first");
        };
        let address = to.address;
        let notify = notify_of(to.flags);
        if let Some(reply) = dsn_value_refused("ORCPT", to.orcpt.as_ref(), DSN_ORCPT_LENGTH_MAX) {
            return reply;
        }
        let orcpt = to.orcpt;
        if transaction.chunks.is_some() {
            return Reply::new(503, "5.5.1", "RCPT after BDAT");
        }
        if transaction.recipient_count() >= self.settings.recipients_per_message_max {
            return Reply::new(452, "4.5.3", "too many recipients");
        }
        if has_quoted_or_routed_path(raw) {
            return Reply::new(
                553,
                "5.1.3",
                "quoted local parts and source routes are not accepted",
            );
        }
        if !address.is_ascii() && !transaction.smtputf8 {
            return Reply::new(553, "5.6.7", "non-ASCII address needs SMTPUTF8");
        }
        // RFC 5321 section 4.5.1: "postmaster" without a domain (smtp-proto gives "").
        let address = if address.is_empty() {
            format!("postmaster@{}", state.hostname)
        } else {
            address
        };
        let local_part = address
            .rsplit_once('@')
            .map(|(local, _)| local)
            .unwrap_or("");
        if local_part.contains(['%', '!']) {
            // The "percent hack" and bang paths route through the receiving server.
            return Reply::new(554, "5.7.1", "relay access denied");
        }
        let Ok(recipient) = EmailAddress::try_from(address.as_str()) else {
            return Reply::new(553, "5.1.3", "recipient address not accepted");
        };
        let store = self.store.clone();
        let lookup_address = recipient.clone();
        let lookup = tokio::task::spawn_blocking(
            move || -> Result<Option<Vec<EmailAddress>>, StoreError> {
                if !store.has_domain(lookup_address.domain())? {
                    return Ok(None);
                }
                store.resolve_recipient(&lookup_address).map(Some)
            },
        )
        .await;
        let reply = match lookup {
            Ok(Ok(None)) => match (state.mode, &self.outbound) {
                (Mode::Inbound, _) => Reply::new(554, "5.7.1", "relay access denied"),
                (Mode::Submission, None) => {
                    Reply::new(451, "4.3.0", "outbound delivery is not available yet")
                }
                (Mode::Submission, Some(_)) => {
                    if let Some(transaction) = &mut state.transaction {
                        transaction.add_recipient(recipient, true, notify, orcpt);
                    }
                    Reply::new(250, "2.1.5", "recipient OK, will be relayed")
                }
            },
            Ok(Ok(Some(_))) => {
                if let Some(transaction) = &mut state.transaction {
                    transaction.add_recipient(recipient, false, notify, orcpt);
                }
                return Reply::new(250, "2.1.5", "recipient OK");
            }
            Ok(Err(StoreError::UnknownRecipient(_) | StoreError::NoSuchUser(_))) => {
                Reply::new(550, "5.1.1", "no such user here")
            }
            Ok(Err(error)) if !error.is_temporary() => {
                tracing::warn!(%error, "recipient lookup failed");
                Reply::new(451, "4.3.0", "temporary failure, try again later")
            }
            Ok(Err(_)) | Err(_) => Reply::new(451, "4.3.0", "temporary failure, try again later"),
        };
        reply
    }

    async fn data<S>(&self, conn: &mut Conn<S>, state: &mut State) -> Result<Flow, SessionEnd>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let refusal = match &state.transaction {
            None => Some(Reply::new(503, "5.5.1", "send MAIL first")),
            Some(transaction) if transaction.chunks.is_some() => {
                Some(Reply::new(503, "5.5.1", "DATA after BDAT"))
            }
            Some(transaction) if transaction.recipient_count() == 0 => {
                Some(Reply::new(554, "5.5.1", "no valid recipients"))
            }
            Some(_) => None,
        };
        if let Some(reply) = refusal {
            return self.respond(conn, state, reply).await;
        }
        conn.reply(Reply::new(354, "", "end data with <CR><LF>.<CR><LF>"))
            .await?;
        let mut reader = DataReader::new(
            self.settings.message_size_max_bytes,
            self.settings.data_line_length_max_bytes,
        );
        while !reader.feed(&mut conn.input) {
            conn.fill().await?;
        }
        let reply = match reader.finish() {
            Ok(body) => self.accept(state, body).await,
            Err(error) => {
                state.transaction = None;
                body_error_reply(error, &self.settings)
            }
        };
        self.respond(conn, state, reply).await
    }

    async fn bdat<S>(
        &self,
        conn: &mut Conn<S>,
        state: &mut State,
        chunk_size: usize,
        is_last: bool,
    ) -> Result<Flow, SessionEnd>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let size_max = self.settings.message_size_max_bytes;
        if chunk_size > size_max {
            // Reading a chunk this large only to drop it is the client's game, not ours.
            conn.reply(Reply::new(
                552,
                "5.3.4",
                "chunk exceeds the message size limit",
            ))
            .await?;
            return Err(conn.goodbye(Reply::new(421, "4.7.0", "closing")).await);
        }
        let mut scratch = Vec::new();
        let mut scratch_too_large = false;
        let usable = matches!(&state.transaction, Some(t) if t.recipient_count() > 0);
        let (body, too_large) = match (&mut state.transaction, usable) {
            (Some(transaction), true) => {
                let body = transaction.chunks.get_or_insert_with(Vec::new);
                (body, &mut transaction.chunks_too_large)
            }
            _ => (&mut scratch, &mut scratch_too_large),
        };
        let mut remaining = chunk_size;
        while remaining > 0 {
            if conn.input.is_empty() {
                conn.fill().await?;
            }
            remaining -= take_chunk(&mut conn.input, remaining, body, too_large, size_max);
        }
        let reply = match &state.transaction {
            None => Reply::new(503, "5.5.1", "send MAIL first"),
            Some(transaction) if transaction.recipient_count() == 0 => {
                Reply::new(554, "5.5.1", "no valid recipients")
            }
            Some(transaction) if transaction.chunks_too_large => {
                state.transaction = None;
                Reply::new(552, "5.3.4", "message size exceeds the limit")
            }
            Some(_) if !is_last => {
                Reply::new(250, "2.0.0", format!("{chunk_size} octets received"))
            }
            Some(_) => {
                let body = state
                    .transaction
                    .as_mut()
                    .and_then(|transaction| transaction.chunks.take())
                    .unwrap_or_default();
                self.accept(state, body).await
            }
        };
        self.respond(conn, state, reply).await
    }

    /// The end of a message: check it, add the trace headers, deliver it through the group
    /// committer and, on submission, keep a copy in the user's Sent mailbox.
    async fn accept(&self, state: &mut State, body: Vec<u8>) -> Reply {
        let Some(mut transaction) = state.transaction.take() else {
            return Reply::new(503, "5.5.1", "send MAIL first");
        };
        if let Some(authenticated) = &state.auth {
            let senders = header_from_addresses(&body);
            let allowed = if senders.is_empty() {
                Ok(false)
            } else {
                self.may_send_as(&authenticated.address, senders).await
            };
            match allowed {
                Ok(true) => {}
                Ok(false) => {
                    return Reply::new(
                        553,
                        "5.7.1",
                        "From: header missing or not an address of this account",
                    )
                }
                Err(_) => return Reply::new(451, "4.3.0", "temporary failure, try again later"),
            }
        }
        // Inbound mail is authenticated, then assessed for spam and phishing, while it is
        // plaintext in memory.
        let mut local_variants: Vec<(Vec<EmailAddress>, Vec<u8>)> = Vec::new();
        let (body, filing) = if state.mode == Mode::Inbound {
            // Checked on the message as it came (a removed header could be a signed one).
            let verdict = match &self.settings.sender_authentication {
                Some(authenticator) => Some(
                    authenticator
                        .authenticate(&Envelope {
                            message: &body,
                            client_ip: state.peer.ip(),
                            helo: state.helo.as_deref().unwrap_or(""),
                            mail_from: &transaction.sender,
                            hostname: &state.hostname,
                        })
                        .await,
                ),
                None => None,
            };
            self.keep_dmarc_evaluation(verdict.as_ref()).await;
            if let Some(verdict) = &verdict {
                if verdict.disposition == DmarcDisposition::Reject {
                    return Reply::new(
                        550,
                        "5.7.1",
                        format!(
                            "rejected by the DMARC policy of {}: the From: domain is not authenticated",
                            verdict.dmarc_domain
                        ),
                    );
                }
            }
            let body = strip_forged_results(&body, &state.hostname);
            let body = strip_header_fields(&body, &VERDICT_HEADERS);
            let signals = verdict
                .as_ref()
                .map(|verdict| AuthSignals {
                    from_authenticated: verdict.from_authenticated,
                    spam_weight: verdict.spam_weight,
                    reasons: verdict.spam_reasons.clone(),
                })
                .unwrap_or_default();
            let filter = Arc::clone(&self.filter);
            let recipients = transaction.recipients.clone();
            let store = self.store.clone();
            let reports = self
                .outbound
                .as_ref()
                .map(|outbound| DmarcReports::new(outbound.queue.clone()));
            let assessed = tokio::task::spawn_blocking(move || {
                let assessment = filter.assess(&body, &recipients, &signals);
                // The signature is checked against keys known before this message; only then
                // is the message's own Autocrypt key learnt (it cannot vouch for itself), and
                // only when the From: domain is authenticated: a key later reported as "valid"
                // must not be one a spoofed From: could plant.
                let from = header_from_addresses(&body).into_iter().next();
                let signature = crate::signatures::check(&body, from.as_ref(), &store, None);
                // A DMARC aggregate report about one of our domains is kept for the operator
                // (and delivered like any mail).
                if let Some(reports) = &reports {
                    let is_local = |domain: &str| {
                        letterlock_types::Domain::try_from(domain)
                            .ok()
                            .and_then(|domain| store.has_domain(&domain).ok())
                            .unwrap_or(false)
                    };
                    if let Some(report) = received_report(&body, is_local) {
                        if let Err(error) = reports.record_received(&report, now_unix()) {
                            tracing::warn!(%error, "cannot keep a received DMARC report");
                        }
                    }
                }
                if let Some(from) = from.as_ref().filter(|_| signals.from_authenticated) {
                    if let Some(key) = crate::signatures::autocrypt_key(&body, from) {
                        if let Err(error) = store.record_peer_key(from, &key) {
                            tracing::warn!(%error, "cannot remember an Autocrypt key");
                        }
                    }
                }
                (assessment, signature, body, from)
            })
            .await;
            let Ok((assessment, signature, body, from)) = assessed else {
                return Reply::new(451, "4.3.0", "temporary failure, try again later");
            };
            if assessment.reject {
                return Reply::new(
                    550,
                    "5.7.1",
                    format!("message refused as spam (score {:.3})", assessment.score),
                );
            }
            let (signature, body) = self.signature_by_wkd(signature, from.as_ref(), body).await;
            let signature_variants = self
                .trusted_signature_variants(
                    &transaction.recipients,
                    signature.as_ref(),
                    from.as_ref(),
                    &body,
                )
                .await;
            let mut headers = verdict
                .as_ref()
                .map(|verdict| verdict.header.clone().into_bytes())
                .unwrap_or_default();
            headers.extend_from_slice(&assessment.headers);
            let assessed = |signature: Option<&str>| {
                let mut assessed = headers.clone();
                if let Some(signature) = signature {
                    assessed.extend_from_slice(
                        format!("{}: {signature}\r\n", crate::signatures::SIGNATURE_HEADER)
                            .as_bytes(),
                    );
                }
                assessed.extend_from_slice(&body);
                assessed
            };
            // Recipients whose own trusted key for the sender gave another result get their
            // own copy (see `trusted_signature_variants`).
            local_variants = signature_variants
                .into_iter()
                .map(|(recipients, signature)| (recipients, assessed(Some(&signature))))
                .collect();
            let assessed_body = assessed(signature.as_ref().map(|checked| checked.header.as_str()));
            let quarantined = verdict
                .as_ref()
                .is_some_and(|verdict| verdict.disposition == DmarcDisposition::Quarantine);
            let filing = if quarantined {
                Filing::Junk
            } else {
                assessment.filing
            };
            (assessed_body, filing)
        } else {
            (body, Filing::Inbox)
        };
        // Submission: what the user sent is kept as sent (the Sent copy); what goes out carries
        // the sender's key in an Autocrypt header (Autocrypt Level 1), signed by DKIM with it.
        let (body, submitted, protection) = match &state.auth {
            Some(authenticated) => {
                let submitted = body.clone();
                let protection = self.user_settings(&authenticated.address).await;
                let body = self.with_autocrypt(&authenticated.address, body).await;
                let body = if protection.sign {
                    match self.signed(&authenticated.unlocked, body).await {
                        Ok(signed) => signed,
                        Err(reply) => return reply,
                    }
                } else {
                    body
                };
                (body, submitted, protection)
            }
            None => (body, Vec::new(), UserSettings::default()),
        };
        let transaction_id = new_transaction_id();
        let remote = std::mem::take(&mut transaction.remote_recipients);
        // Only submissions teach the account whom it writes to (see below).
        let written_to: Vec<String> = if state.auth.is_some() {
            transaction
                .recipients
                .iter()
                .chain(remote.iter())
                .map(ToString::to_string)
                .collect()
        } else {
            Vec::new()
        };
        let requiretls = transaction.requiretls;
        let sender = EmailAddress::try_from(transaction.sender.as_str()).ok();
        // The outbound copies are settled before anything is delivered, so a submission the
        // account's encryption policy refuses leaves nothing behind.
        let copies = if remote.is_empty() {
            Vec::new()
        } else {
            match &state.auth {
                Some(authenticated) => {
                    match self
                        .outbound_copies(
                            &authenticated.unlocked,
                            remote,
                            body.clone(),
                            protection.encryption,
                        )
                        .await
                    {
                        Ok(copies) => copies,
                        Err(reply) => return reply,
                    }
                }
                None => vec![(remote, body.clone())],
            }
        };
        if !transaction.recipients.is_empty() {
            let single = match (transaction.recipients.as_slice(), copies.is_empty()) {
                ([only], true) => Some(only),
                _ => None,
            };
            let delivered = transaction.recipients.clone();
            // One copy for all, or one per signature result when recipients' own trusted keys
            // decide it differently; a failure after an earlier copy was stored answers with
            // the error, so a retry may duplicate that copy, never lose one.
            let copies_here: Vec<(Vec<EmailAddress>, &[u8])> = if local_variants.is_empty() {
                vec![(transaction.recipients.clone(), &body)]
            } else {
                local_variants
                    .iter()
                    .map(|(accounts, variant)| (accounts.clone(), variant.as_slice()))
                    .collect()
            };
            for (recipients, copy) in copies_here {
                let message = match self
                    .outgoing_message(state, &transaction_id, &transaction.sender, single, copy)
                    .await
                {
                    Ok(message) => message,
                    Err(reply) => return reply,
                };
                if let Err(error) = self.batcher.deliver(recipients, message, filing).await {
                    return delivery_error_reply(&error);
                }
            }
            self.report_local_success(state, &transaction, delivered, &body)
                .await;
        }
        if !copies.is_empty() {
            // Every copy signed and framed first, then all queued in one commit.
            let mut framed = Vec::with_capacity(copies.len());
            for (recipients, body) in copies {
                let single = match recipients.as_slice() {
                    [only] => Some(only.clone()),
                    _ => None,
                };
                let message = match self
                    .outgoing_message(
                        state,
                        &transaction_id,
                        &transaction.sender,
                        single.as_ref(),
                        &body,
                    )
                    .await
                {
                    Ok(message) => message,
                    Err(reply) => return reply,
                };
                let requests: Vec<RecipientRequest> = recipients
                    .into_iter()
                    .map(|address| transaction.request(address))
                    .collect();
                framed.push((requests, message));
            }
            if let Err(reply) = self
                .enqueue(sender.clone(), requiretls, transaction.dsn.clone(), framed)
                .await
            {
                return reply;
            }
        }
        if let Some(authenticated) = &state.auth {
            self.store_sent_copy(Arc::clone(&authenticated.unlocked), submitted)
                .await;
            // Reputation from the user's own history: whom they write to is wanted mail later.
            let (store, account) = (self.store.clone(), authenticated.address.clone());
            let remembered = tokio::task::spawn_blocking(move || {
                crate::filter::remember_correspondents(&store, &account, &written_to)
            })
            .await;
            if !matches!(remembered, Ok(Ok(()))) {
                tracing::warn!("known correspondents not updated");
            }
        }
        Reply::new(250, "2.0.0", format!("accepted as {transaction_id}"))
    }

    /// An OpenPGP signature no known key made is checked once more with the key the From:
    /// domain publishes by WKD (cached by [`KeyDiscovery`]; bounded by its timeout), when key
    /// discovery is on. The domain vouches for that key over HTTPS, as it does for outbound
    /// encryption; a forged From: gains nothing, since the forger cannot sign with that key.
    ///
    /// [`KeyDiscovery`]: letterlock_queue::wkd::KeyDiscovery
    async fn signature_by_wkd(
        &self,
        signature: Option<crate::signatures::Checked>,
        from: Option<&EmailAddress>,
        body: Vec<u8>,
    ) -> (Option<crate::signatures::Checked>, Vec<u8>) {
        let (Some(checked), Some(from), Some(discovery)) =
            (&signature, from, &self.settings.key_discovery)
        else {
            return (signature, body);
        };
        if !checked.unknown_key {
            return (signature, body);
        }
        let Some(key) = discovery.key_for(from).await else {
            return (signature, body);
        };
        // The message stays here: a failed check must not lose it (rare path, one copy).
        let (store, message, from) = (self.store.clone(), body.clone(), from.clone());
        let rechecked = tokio::task::spawn_blocking(move || {
            crate::signatures::check(
                &message,
                Some(&from),
                &store,
                Some((&key, crate::signatures::WKD)),
            )
        })
        .await;
        match rechecked {
            Ok(Some(rechecked)) => (Some(rechecked), body),
            _ => (signature, body),
        }
    }

    /// When a key some recipient account trusts for the sender (`letterlock user contact-key
    /// add`, kept for delivery in [`TrustedSenderKeys`]) decides the signature differently from
    /// `common`: every recipient account, grouped by its result (the others with `common`).
    /// Empty when nobody's does, the usual case (the message is unsigned, or no recipient
    /// trusts a key for its From: address), and delivery goes to the recipients as given. A
    /// trusted key is tried before every other, so its result names `source=trusted-contact`.
    ///
    /// [`TrustedSenderKeys`]: letterlock_queue::TrustedSenderKeys
    async fn trusted_signature_variants(
        &self,
        recipients: &[EmailAddress],
        common: Option<&crate::signatures::Checked>,
        from: Option<&EmailAddress>,
        body: &[u8],
    ) -> Vec<(Vec<EmailAddress>, String)> {
        let (Some(common), Some(from), Some(outbound)) = (common, from, &self.outbound) else {
            return Vec::new();
        };
        let trusted = letterlock_queue::TrustedSenderKeys::new(outbound.queue.clone());
        let (store, recipients, from, common) = (
            self.store.clone(),
            recipients.to_vec(),
            from.clone(),
            common.header.clone(),
        );
        // Read only here, and only for signed mail: one copy of the message for the task.
        let message = body.to_vec();
        let grouped = tokio::task::spawn_blocking(move || {
            let mut groups: Vec<(Vec<EmailAddress>, String)> = Vec::new();
            // Accounts that get the common result (and recipients that no longer resolve,
            // so their delivery fails as it would have).
            let mut rest = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for recipient in &recipients {
                let Ok(accounts) = store.resolve_recipient(recipient) else {
                    rest.push(recipient.clone());
                    continue;
                };
                for account in accounts {
                    if !seen.insert(account.to_string()) {
                        continue;
                    }
                    let Ok(Some(key)) = trusted.key(&account, &from) else {
                        rest.push(account);
                        continue;
                    };
                    let Some(checked) = crate::signatures::check(
                        &message,
                        Some(&from),
                        &store,
                        Some((&key, crate::signatures::TRUSTED_CONTACT)),
                    ) else {
                        rest.push(account);
                        continue;
                    };
                    if checked.unknown_key || checked.header == common {
                        rest.push(account);
                        continue;
                    }
                    match groups
                        .iter_mut()
                        .find(|(_, header)| *header == checked.header)
                    {
                        Some((accounts, _)) => accounts.push(account),
                        None => groups.push((vec![account], checked.header)),
                    }
                }
            }
            if !groups.is_empty() && !rest.is_empty() {
                groups.push((rest, common));
            }
            groups
        })
        .await;
        grouped.unwrap_or_default()
    }

    /// Keep an inbound message's DMARC evaluation for the From: domain's aggregate report,
    /// when it asked for one and there is a queue to send it through. Rejected mail counts too.
    async fn keep_dmarc_evaluation(&self, verdict: Option<&crate::auth::Verdict>) {
        let (Some(evaluation), Some(collector)) = (
            verdict.and_then(|verdict| verdict.dmarc_report.clone()),
            &self.dmarc,
        ) else {
            return;
        };
        let Some(batch) = collector.add(evaluation) else {
            return;
        };
        let collector = Arc::clone(collector);
        let kept = tokio::task::spawn_blocking(move || collector.write(&batch, now_unix())).await;
        if !matches!(kept, Ok(Ok(()))) {
            tracing::warn!("DMARC evaluations not kept for the aggregate reports");
        }
    }

    /// RFC 3461 NOTIFY=SUCCESS for local recipients: once their copy is committed, a
    /// "delivered" report goes to the sender: into the sender's INBOX when local, through the
    /// queue (with the null sender) otherwise. A report that cannot be sent is logged: the
    /// message itself is delivered and acknowledged regardless.
    async fn report_local_success(
        &self,
        state: &State,
        transaction: &Transaction,
        delivered: Vec<EmailAddress>,
        original: &[u8],
    ) {
        let Ok(sender) = EmailAddress::try_from(transaction.sender.as_str()) else {
            return;
        };
        let recipients: Vec<Reported> = delivered
            .into_iter()
            .map(|address| transaction.request(address))
            .filter(|request| request.notify.success)
            .map(|request| Reported {
                address: request.address.to_string(),
                original_recipient: request.orcpt,
                reply: "250 2.0.0 delivered to the mailbox".into(),
            })
            .collect();
        let report = Report {
            reporting_host: &state.hostname,
            sender: &sender,
            action: Action::Delivered,
            recipients,
            envelope_id: transaction.dsn.envid.as_deref(),
            return_full: false,
            arrival_unix: now_unix(),
        };
        let Some(message) = build_report(&report, original) else {
            return;
        };
        let store = self.store.clone();
        let local = {
            let sender = sender.clone();
            tokio::task::spawn_blocking(move || store.has_domain(sender.domain()))
                .await
                .map(|found| found.unwrap_or(false))
                .unwrap_or(false)
        };
        let sent = if local {
            self.batcher
                .deliver(vec![sender.clone()], message, Filing::Inbox)
                .await
                .map(|_| ())
                .map_err(|error| error.to_string())
        } else {
            self.enqueue(
                None,
                false,
                DsnRequest::default(),
                vec![(vec![RecipientRequest::from(sender.clone())], message)],
            )
            .await
            .map_err(|reply| format!("{reply:?}"))
        };
        if let Err(error) = sent {
            tracing::warn!(%sender, %error, "delivery report not sent");
        }
    }

    /// `body` as it is stored or sent: our trace headers, then DKIM signatures (submission),
    /// then the message. Refused (552) when that outgrows the message size limit.
    async fn outgoing_message(
        &self,
        state: &State,
        transaction_id: &str,
        reverse_path: &str,
        single_recipient: Option<&EmailAddress>,
        body: &[u8],
    ) -> Result<Vec<u8>, Reply> {
        let protocol = match (state.esmtp, state.tls.is_some(), state.auth.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, _) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, true, true) => "ESMTPSA",
        };
        let signatures = self.dkim_signatures(state, body).await?;
        let single_recipient = single_recipient.map(|address| address.to_string());
        let mut message = trace_headers(
            &TraceInfo {
                helo: state.helo.as_deref().unwrap_or(""),
                peer_ip: state.peer.ip(),
                hostname: &state.hostname,
                protocol,
                tls: state.tls.as_deref(),
                single_recipient: single_recipient.as_deref(),
                reverse_path,
            },
            transaction_id,
            now_unix(),
        );
        message.extend_from_slice(&signatures);
        message.extend_from_slice(body);
        if message.len() > self.settings.message_size_max_bytes {
            return Err(Reply::new(552, "5.3.4", "message size exceeds the limit"));
        }
        Ok(message)
    }

    /// Put a submitted message's copies in the outbound queue (one durable commit for all,
    /// sealed under the spool key) and wake the runner.
    async fn enqueue(
        &self,
        sender: Option<EmailAddress>,
        requiretls: bool,
        dsn: DsnRequest,
        copies: Vec<(Vec<RecipientRequest>, Vec<u8>)>,
    ) -> Result<(), Reply> {
        let Some(outbound) = &self.outbound else {
            return Err(Reply::new(
                451,
                "4.3.0",
                "outbound delivery is not available",
            ));
        };
        let queue = outbound.queue.clone();
        let queued = tokio::task::spawn_blocking(move || {
            let submissions: Vec<letterlock_queue::store::Submission<'_>> = copies
                .iter()
                .map(
                    |(recipients, message)| letterlock_queue::store::Submission {
                        sender: sender.clone(),
                        recipients,
                        requiretls,
                        dsn: dsn.clone(),
                        message,
                    },
                )
                .collect();
            queue.enqueue_many(&submissions)
        })
        .await;
        match queued {
            Ok(Ok(ids)) => {
                for id in ids {
                    tracing::info!(entry = %id, "queued for remote delivery");
                }
                if let Some(wake) = &outbound.wake {
                    wake.notify_one();
                }
                Ok(())
            }
            Ok(Err(QueueError::MessageTooLarge { .. })) => {
                Err(Reply::new(552, "5.3.4", "message size exceeds the limit"))
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not queue a message");
                Err(Reply::new(
                    451,
                    "4.3.0",
                    "temporary failure, try again later",
                ))
            }
            Err(error) => {
                tracing::warn!(%error, "could not queue a message");
                Err(Reply::new(
                    451,
                    "4.3.0",
                    "temporary failure, try again later",
                ))
            }
        }
    }

    /// The `DKIM-Signature` fields (Ed25519 and RSA, RFC 8463 and RFC 6376) for a submitted
    /// message, by the domain of its `From:` header (the domain DMARC aligns with), when that
    /// domain is ours. Nothing for inbound mail, or without outbound configured.
    async fn dkim_signatures(&self, state: &State, body: &[u8]) -> Result<Vec<u8>, Reply> {
        let (Some(outbound), Some(_)) = (&self.outbound, &state.auth) else {
            return Ok(Vec::new());
        };
        let Some(from) = header_from_addresses(body).into_iter().next() else {
            return Ok(Vec::new());
        };
        let dkim = outbound.dkim.clone();
        let store = self.store.clone();
        let body = body.to_vec();
        let signed = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
            if !store
                .has_domain(from.domain())
                .map_err(|error| error.to_string())?
            {
                return Ok(Vec::new());
            }
            let signer = dkim
                .signer(from.domain())
                .map_err(|error| error.to_string())?;
            signer.sign(&body).map_err(|error| error.to_string())
        })
        .await;
        match signed {
            Ok(Ok(signatures)) => Ok(signatures),
            Ok(Err(error)) => {
                tracing::warn!(%error, "DKIM signing failed");
                Err(Reply::new(
                    451,
                    "4.3.0",
                    "temporary failure, try again later",
                ))
            }
            Err(error) => {
                tracing::warn!(%error, "DKIM signing failed");
                Err(Reply::new(
                    451,
                    "4.3.0",
                    "temporary failure, try again later",
                ))
            }
        }
    }

    /// A copy of what the user sent, as they sent it, in their Sent mailbox. The message is
    /// already delivered; a failure here is logged, not reported as a failed submission (the
    /// client would send it again to every recipient).
    /// Autocrypt Level 1 (autocrypt.org, section 2.1): an `Autocrypt:` header with the
    /// sender's address and public key, unless the client wrote one. Only for a From: address
    /// that is the account's (or one of its aliases); the key is the account's current key.
    async fn with_autocrypt(&self, account: &EmailAddress, message: Vec<u8>) -> Vec<u8> {
        let Some(from) = header_from_addresses(&message).into_iter().next() else {
            return message;
        };
        if has_header(&message, "Autocrypt") {
            return message;
        }
        let store = self.store.clone();
        let account = account.clone();
        let key = tokio::task::spawn_blocking(move || store.public_key(&account)).await;
        let Ok(Ok(key)) = key else {
            return message;
        };
        let mut out = autocrypt_header(&from, &key);
        out.extend_from_slice(&message);
        out
    }

    /// The copies of a submission for `remote` recipients: recipients whose keys were learnt
    /// (Autocrypt) get it encrypted (PGP/MIME, [`crate::encryption`]) to them and the sender,
    /// in one copy for those named in To:/Cc: and one per hidden (Bcc) recipient, whose key
    /// would otherwise show in everyone's copy; the rest get one copy as it is (over TLS). A
    /// message the client already encrypted is sent as it is.
    async fn outbound_copies(
        &self,
        unlocked: &Arc<Unlocked>,
        remote: Vec<EmailAddress>,
        message: Vec<u8>,
        policy: EncryptionPolicy,
    ) -> Result<Vec<(Vec<EmailAddress>, Vec<u8>)>, Reply> {
        if policy == EncryptionPolicy::Never || is_encrypted(&message) {
            return Ok(vec![(remote, message)]);
        }
        let store = self.store.clone();
        let unlocked = Arc::clone(unlocked);
        let everyone = remote.clone();
        let looked_up = tokio::task::spawn_blocking(move || {
            let own = store
                .public_key(unlocked.address())
                .ok()
                .and_then(|bytes| PublicKey::from_bytes(&bytes).ok());
            // The account's own trusted key first, then the one learnt from Autocrypt (WKD,
            // for the rest, is asked below).
            let keys: Vec<(EmailAddress, Option<PublicKey>)> = remote
                .into_iter()
                .map(|recipient| {
                    let key = unlocked
                        .trusted_key(&recipient)
                        .ok()
                        .flatten()
                        .or_else(|| store.peer_key(&recipient).ok().flatten())
                        .and_then(|bytes| PublicKey::from_bytes(&bytes).ok());
                    (recipient, key)
                })
                .collect();
            (own, keys)
        })
        .await;
        // Without the sender's own key (it cannot happen for an account) or the lookup, the
        // message goes as it is: never dropped.
        let Ok((Some(own), mut keys)) = looked_up else {
            if policy == EncryptionPolicy::Always {
                return Err(Reply::new(
                    451,
                    "4.3.0",
                    "temporary failure, try again later",
                ));
            }
            return Ok(vec![(everyone, message)]);
        };
        self.discover_keys(&mut keys).await;
        let keyless: Vec<String> = keys
            .iter()
            .filter(|(_, key)| key.is_none())
            .map(|(recipient, _)| recipient.to_string())
            .collect();
        match policy {
            EncryptionPolicy::Always if !keyless.is_empty() => {
                return Err(Reply::new(
                    550,
                    "5.7.1",
                    format!(
                    "this account sends only encrypted mail, and no OpenPGP key is known for {}",
                    keyless.join(", ")
                ),
                ))
            }
            EncryptionPolicy::WhenAllHaveKeys if !keyless.is_empty() => {
                return Ok(vec![(everyone, message)])
            }
            _ => {}
        }
        let named = header_addresses(&message, &["To", "Cc"]);
        let mut clear = Vec::new();
        let mut together: Vec<(EmailAddress, PublicKey)> = Vec::new();
        let mut alone: Vec<(EmailAddress, PublicKey)> = Vec::new();
        for (recipient, key) in keys {
            match key {
                None => clear.push(recipient),
                Some(key) if named.contains(&recipient) => together.push((recipient, key)),
                Some(key) => alone.push((recipient, key)),
            }
        }
        let mut groups: Vec<Vec<(EmailAddress, PublicKey)>> =
            alone.into_iter().map(|one| vec![one]).collect();
        if !together.is_empty() {
            groups.insert(0, together);
        }
        let mut copies = Vec::new();
        for group in groups {
            let (recipients, mut keys): (Vec<EmailAddress>, Vec<PublicKey>) =
                group.into_iter().unzip();
            keys.push(own.clone());
            match crate::encryption::encrypt_message(&message, &keys) {
                Ok(encrypted) => copies.push((recipients, encrypted)),
                Err(error) => {
                    tracing::warn!(%error, "could not encrypt a submission; sent as it was");
                    clear.extend(recipients);
                }
            }
        }
        if !clear.is_empty() {
            if policy == EncryptionPolicy::Always {
                return Err(Reply::new(
                    451,
                    "4.7.0",
                    "the message could not be encrypted; nothing was sent",
                ));
            }
            copies.push((clear, message));
        }
        Ok(copies)
    }

    /// Recipients with no learnt key get one from WKD when the server looks there (all
    /// lookups at once; each bounded by its own timeout, and cached).
    async fn discover_keys(&self, keys: &mut [(EmailAddress, Option<PublicKey>)]) {
        let Some(discovery) = &self.settings.key_discovery else {
            return;
        };
        let mut lookups = tokio::task::JoinSet::new();
        let keyless = keys
            .iter()
            .enumerate()
            .filter(|(_, (_, key))| key.is_none())
            .take(KEY_LOOKUPS_PER_SUBMISSION_MAX);
        for (index, (recipient, _)) in keyless {
            let (discovery, recipient) = (Arc::clone(discovery), recipient.clone());
            lookups.spawn(async move { (index, discovery.key_for(&recipient).await) });
        }
        while let Some(done) = lookups.join_next().await {
            if let Ok((index, Some(bytes))) = done {
                if let (Some(slot), Ok(key)) = (keys.get_mut(index), PublicKey::from_bytes(&bytes))
                {
                    slot.1 = Some(key);
                }
            }
        }
    }

    /// The account's end-to-end settings; the defaults when they cannot be read (never a
    /// reason to refuse mail).
    async fn user_settings(&self, account: &EmailAddress) -> UserSettings {
        let (store, account) = (self.store.clone(), account.clone());
        tokio::task::spawn_blocking(move || store.user_settings(&account))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    }

    /// `body` signed with the account's current key (PGP/MIME). A signature the account asked
    /// for and cannot get refuses the submission rather than send it unsigned.
    async fn signed(&self, unlocked: &Arc<Unlocked>, body: Vec<u8>) -> Result<Vec<u8>, Reply> {
        let unlocked = Arc::clone(unlocked);
        let signed = tokio::task::spawn_blocking(move || {
            let key = unlocked.current_key().map_err(|error| error.to_string())?;
            crate::signing::sign_message(&body, key).map_err(|error| error.to_string())
        })
        .await;
        match signed {
            Ok(Ok(signed)) => Ok(signed),
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not sign a submission");
                Err(Reply::new(
                    451,
                    "4.7.0",
                    "the message could not be signed; nothing was sent",
                ))
            }
            Err(_) => Err(Reply::new(
                451,
                "4.3.0",
                "temporary failure, try again later",
            )),
        }
    }

    async fn store_sent_copy(&self, unlocked: Arc<Unlocked>, body: Vec<u8>) {
        let stored = tokio::task::spawn_blocking(move || -> Result<u32, StoreError> {
            let sent = unlocked
                .mailboxes()?
                .into_iter()
                .find(|mailbox| mailbox.special_use == Some(SpecialUse::Sent))
                .map(|mailbox| mailbox.name)
                .ok_or_else(|| StoreError::Corrupted("no Sent mailbox".into()))?;
            unlocked.append(&sent, &body, flag_bits::SEEN, now_unix())
        })
        .await;
        match stored {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "could not store the Sent copy"),
            Err(error) => tracing::warn!(%error, "could not store the Sent copy"),
        }
    }

    /// Whether `user` may use each of `addresses` as sender: its own address, or one that
    /// resolves to it (an alias, or a catch-all of its domain).
    async fn may_send_as(
        &self,
        user: &EmailAddress,
        addresses: Vec<EmailAddress>,
    ) -> Result<bool, StoreError> {
        if addresses.iter().all(|address| address == user) {
            return Ok(true);
        }
        let store = self.store.clone();
        let user = user.clone();
        tokio::task::spawn_blocking(move || {
            for address in addresses {
                if address == user {
                    continue;
                }
                match store.resolve_recipient(&address) {
                    Ok(targets) if targets.contains(&user) => {}
                    Ok(_) | Err(StoreError::UnknownRecipient(_)) => return Ok(false),
                    Err(error) => return Err(error),
                }
            }
            Ok(true)
        })
        .await
        .map_err(|error| StoreError::Corrupted(error.to_string()))?
    }

    async fn auth<S>(
        &self,
        conn: &mut Conn<S>,
        state: &mut State,
        mechanism: u64,
        initial_response: String,
    ) -> Result<Flow, SessionEnd>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let refusal = if state.mode == Mode::Inbound {
            Some(Reply::new(
                503,
                "5.5.1",
                "AUTH is not offered on this port; use submission",
            ))
        } else if state.tls.is_none() {
            Some(Reply::new(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            ))
        } else if state.helo.is_none() {
            Some(Reply::new(503, "5.5.1", "send EHLO first"))
        } else if state.auth.is_some() {
            Some(Reply::new(503, "5.5.1", "already authenticated"))
        } else if state.transaction.is_some() {
            Some(Reply::new(
                503,
                "5.5.1",
                "AUTH is not allowed during a mail transaction",
            ))
        } else if mechanism != smtp_proto::AUTH_PLAIN && mechanism != smtp_proto::AUTH_LOGIN {
            Some(Reply::new(
                504,
                "5.5.4",
                "mechanism not supported; use PLAIN or LOGIN",
            ))
        } else {
            None
        };
        if let Some(reply) = refusal {
            return self.respond(conn, state, reply).await;
        }
        let credentials = if mechanism == smtp_proto::AUTH_PLAIN {
            let response = match initial_response.as_str() {
                "" => match self.sasl_step(conn, "").await? {
                    Ok(response) => response,
                    Err(reply) => return self.respond(conn, state, reply).await,
                },
                "=" => Vec::new(),
                encoded => match decode_base64(encoded) {
                    Ok(response) => response,
                    Err(reply) => return self.respond(conn, state, reply).await,
                },
            };
            match parse_plain(&response) {
                Some(credentials) => credentials,
                None => {
                    let reply = Reply::new(501, "5.5.2", "malformed PLAIN response");
                    return self.respond(conn, state, reply).await;
                }
            }
        } else {
            let username = match initial_response.as_str() {
                "" => match self.sasl_step(conn, "VXNlcm5hbWU6").await? {
                    Ok(response) => response,
                    Err(reply) => return self.respond(conn, state, reply).await,
                },
                encoded => match decode_base64(encoded) {
                    Ok(response) => response,
                    Err(reply) => return self.respond(conn, state, reply).await,
                },
            };
            let password = match self.sasl_step(conn, "UGFzc3dvcmQ6").await? {
                Ok(response) => response,
                Err(reply) => return self.respond(conn, state, reply).await,
            };
            match String::from_utf8(username) {
                Ok(username) => (username, Secret::new(password)),
                Err(_) => {
                    let reply = Reply::new(501, "5.5.2", "user name is not UTF-8");
                    return self.respond(conn, state, reply).await;
                }
            }
        };
        self.verify(conn, state, credentials.0, credentials.1).await
    }

    /// One SASL challenge and its response (RFC 4954 section 4): `*` cancels.
    async fn sasl_step<S>(
        &self,
        conn: &mut Conn<S>,
        challenge: &str,
    ) -> Result<Result<Vec<u8>, Reply>, SessionEnd>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        conn.reply(Reply::new(334, "", challenge)).await?;
        let line = match conn.next_line(AUTH_LINE_LENGTH_MAX_BYTES).await? {
            CommandLine::Line(line) => line,
            CommandLine::TooLong | CommandLine::BareLineFeed => {
                return Ok(Err(Reply::new(500, "5.5.2", "malformed response line")))
            }
        };
        if line == b"*" {
            return Ok(Err(Reply::new(501, "5.0.0", "authentication cancelled")));
        }
        let text = String::from_utf8_lossy(&line);
        Ok(decode_base64(text.trim()))
    }

    async fn verify<S>(
        &self,
        conn: &mut Conn<S>,
        state: &mut State,
        username: String,
        password: Secret,
    ) -> Result<Flow, SessionEnd>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let ip = state.peer.ip();
        let locked_out = || {
            Reply::new(
                421,
                "4.7.0",
                "too many failed authentication attempts, try again later",
            )
        };
        if !self.limiter.allows(&username, ip) {
            tokio::time::sleep(self.settings.auth_failure_delay).await;
            return Err(conn.goodbye(locked_out()).await);
        }
        let outcome = match EmailAddress::try_from(username.as_str()) {
            Err(_) => Err(StoreError::WrongCredentials),
            Ok(address) => {
                let store = self.store.clone();
                tokio::task::spawn_blocking(move || store.unlock(&address, &password))
                    .await
                    .unwrap_or_else(|error| Err(StoreError::Corrupted(error.to_string())))
            }
        };
        match outcome {
            Ok(unlocked) => {
                self.limiter.record_success(&username);
                state.auth = Some(Authenticated {
                    address: unlocked.address().clone(),
                    unlocked: Arc::new(unlocked),
                });
                conn.reply(Reply::new(235, "2.7.0", "Authentication successful"))
                    .await?;
                Ok(Flow::Continue)
            }
            Err(error) if error.is_temporary() => {
                tracing::warn!(%error, "authentication could not be checked");
                let reply = Reply::new(454, "4.7.0", "temporary authentication failure");
                self.respond(conn, state, reply).await
            }
            Err(error) => {
                if !matches!(
                    error,
                    StoreError::WrongCredentials | StoreError::NoSuchUser(_)
                ) {
                    tracing::warn!(%error, "authentication failed");
                }
                self.limiter.record_failure(&username, ip);
                state.auth_failures += 1;
                tokio::time::sleep(self.settings.auth_failure_delay).await;
                let invalid = Reply::new(535, "5.7.8", "authentication credentials invalid");
                if state.auth_failures >= self.settings.auth_failures_per_session_max
                    || !self.limiter.allows(&username, ip)
                {
                    conn.reply(invalid).await?;
                    return Err(conn.goodbye(locked_out()).await);
                }
                self.respond(conn, state, invalid).await
            }
        }
    }
}

fn parse_error_reply(error: ParseError) -> Reply {
    match error {
        ParseError::UnknownCommand => Reply::new(500, "5.5.1", "command not recognized"),
        ParseError::InvalidSenderAddress | ParseError::InvalidRecipientAddress => {
            Reply::new(553, "5.1.3", "address not accepted")
        }
        ParseError::SyntaxError { syntax } => Reply::new(501, "5.5.2", format!("syntax: {syntax}")),
        ParseError::InvalidParameter { param } => {
            Reply::new(501, "5.5.4", format!("invalid parameter {param}"))
        }
        ParseError::UnsupportedParameter { .. } => {
            Reply::new(555, "5.5.4", "unsupported parameter")
        }
        _ => Reply::new(501, "5.5.2", "syntax error"),
    }
}

fn body_error_reply(error: BodyError, settings: &Settings) -> Reply {
    match error {
        BodyError::TooLarge => Reply::new(552, "5.3.4", "message size exceeds the limit"),
        BodyError::LineTooLong => Reply::new(
            554,
            "5.6.0",
            format!(
                "a line of the message is longer than {} bytes",
                settings.data_line_length_max_bytes
            ),
        ),
    }
}

/// `Autocrypt: addr=...; keydata=...` with the key's base64 folded into 76-column lines.
fn autocrypt_header(address: &EmailAddress, key: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(key);
    let mut header = format!("Autocrypt: addr={address}; keydata=").into_bytes();
    for chunk in encoded.as_bytes().chunks(AUTOCRYPT_LINE_CHARS) {
        header.extend_from_slice(b"\r\n ");
        header.extend_from_slice(chunk);
    }
    header.extend_from_slice(b"\r\n");
    header
}

/// Base64 characters per folded line of the Autocrypt key (RFC 5322 asks for lines of at most
/// 78 characters).
const AUTOCRYPT_LINE_CHARS: usize = 76;

/// Whether the header section has a field called `name`.
/// Whether `message` is already an OpenPGP message (PGP/MIME or inline armour).
/// Whether the client already encrypted the message: a top-level `multipart/encrypted`, or a
/// body that is an inline OpenPGP message. A body that merely quotes one (a forwarded armour
/// block, a mention of the type) is not encrypted and gets encrypted like any other.
fn is_encrypted(message: &[u8]) -> bool {
    let (content_type, body) = crate::filter::header_fields_named(message, &["Content-Type"]);
    let content_type = String::from_utf8_lossy(&content_type).to_ascii_lowercase();
    let declared = content_type
        .split_once(':')
        .is_some_and(|(_, value)| value.trim_start().starts_with("multipart/encrypted"));
    let body_start = body
        .iter()
        .position(|byte| !byte.is_ascii_whitespace())
        .unwrap_or(body.len());
    declared || body[body_start..].starts_with(b"-----BEGIN PGP MESSAGE-----")
}

fn has_header(message: &[u8], name: &str) -> bool {
    for line in message.split(|&byte| byte == b'\n') {
        if line == b"\r" || line.is_empty() {
            return false;
        }
        if line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && line[name.len()] == b':'
        {
            return true;
        }
    }
    false
}

fn delivery_error_reply(error: &DeliveryError) -> Reply {
    match error {
        DeliveryError::Store(StoreError::OverQuota { .. }) => {
            Reply::new(452, "4.2.2", "mailbox full, try again later")
        }
        DeliveryError::Store(StoreError::UnknownRecipient(_) | StoreError::NoSuchUser(_)) => {
            Reply::new(550, "5.1.1", "no such user here")
        }
        DeliveryError::Store(StoreError::MessageTooLarge { .. }) => {
            Reply::new(552, "5.3.4", "message size exceeds the limit")
        }
        error if error.is_temporary() => {
            tracing::warn!(%error, "delivery failed, temporarily");
            Reply::new(451, "4.3.0", "temporary failure, try again later")
        }
        error => {
            tracing::error!(%error, "delivery failed");
            Reply::new(451, "4.3.0", "local error in processing, try again later")
        }
    }
}

/// Whether the path of a MAIL or RCPT line is quoted or has a source route (`<@a,@b:u@c>`).
/// `smtp-proto` strips both, which would turn `<"a@remote"@local>` or `<@x:user@local>` into
/// something else; they are refused before that matters.
fn has_quoted_or_routed_path(raw: &[u8]) -> bool {
    let Some(open) = raw.iter().position(|&byte| byte == b'<') else {
        return false;
    };
    let path = &raw[open + 1..];
    let close = path
        .iter()
        .position(|&byte| byte == b'>')
        .unwrap_or(path.len());
    let path = &path[..close];
    path.first() == Some(&b'@') || path.contains(&b'"')
}

fn decode_base64(text: &str) -> Result<Vec<u8>, Reply> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| Reply::new(501, "5.5.2", "invalid base64"))
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`. An authorization identity other than the
/// authentication identity is not supported.
fn parse_plain(response: &[u8]) -> Option<(String, Secret)> {
    let mut parts = response.splitn(3, |&byte| byte == 0);
    let authzid = parts.next()?;
    let authcid = std::str::from_utf8(parts.next()?).ok()?;
    let password = parts.next()?;
    if !authzid.is_empty() && authzid != authcid.as_bytes() {
        return None;
    }
    Some((authcid.to_string(), Secret::new(password.to_vec())))
}

/// The addresses of the `From:` header (none if it is missing or unreadable).
/// Every address in the `names` header fields of `message` (unreadable ones skipped).
fn header_addresses(message: &[u8], names: &[&str]) -> Vec<EmailAddress> {
    let Some(parsed) = mail_parser::MessageParser::new().parse_headers(message) else {
        return Vec::new();
    };
    names
        .iter()
        .filter_map(|name| parsed.header(*name))
        .filter_map(|value| value.as_address())
        .flat_map(|list| list.iter())
        .filter_map(|address| address.address())
        .filter_map(|address| EmailAddress::try_from(address).ok())
        .collect()
}

fn header_from_addresses(message: &[u8]) -> Vec<EmailAddress> {
    let Some(parsed) = mail_parser::MessageParser::new().parse_headers(message) else {
        return Vec::new();
    };
    let Some(from) = parsed.from() else {
        return Vec::new();
    };
    let mut addresses = Vec::new();
    for address in from.iter() {
        match address.address().map(EmailAddress::try_from) {
            Some(Ok(address)) => addresses.push(address),
            // One unreadable address makes the whole header unacceptable.
            _ => return Vec::new(),
        }
    }
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_and_source_routed_paths_are_recognised() {
        assert!(has_quoted_or_routed_path(b"RCPT TO:<@a,@b:user@c>"));
        assert!(has_quoted_or_routed_path(
            b"RCPT TO:<\"user@remote\"@local>"
        ));
        assert!(!has_quoted_or_routed_path(
            b"RCPT TO:<user@local> NOTIFY=NEVER"
        ));
    }

    #[test]
    fn only_a_declared_or_wholly_armoured_message_counts_as_encrypted() {
        assert!(is_encrypted(
            b"Subject: x\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"\r\n\r\n..."
        ));
        assert!(is_encrypted(
            b"Subject: x\r\n\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhQEM...\r\n"
        ));
        assert!(!is_encrypted(
            b"Subject: see below\r\n\r\nHe sent this:\r\n-----BEGIN PGP MESSAGE-----\r\n"
        ));
        assert!(!is_encrypted(
            b"Subject: x\r\nContent-Type: text/plain\r\n\r\nUse multipart/encrypted next time.\r\n"
        ));
    }

    #[test]
    fn plain_responses_split_into_identity_and_password() {
        let (user, password) = parse_plain(b"\0alice@example.org\0pw").expect("plain");
        assert_eq!(user, "alice@example.org");
        assert_eq!(password.expose(), b"pw");
        assert!(parse_plain(b"bob@example.org\0alice@example.org\0pw").is_none());
        assert!(parse_plain(b"no separators").is_none());
    }
}
