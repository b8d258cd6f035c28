//! The SMTP client side of outbound delivery (RFC 5321): one transaction with one remote host
//! for several recipients of one domain, STARTTLS whenever offered (RFC 3207), REQUIRETLS
//! honoured (RFC 8689), and a result per recipient.
//!
//! TLS follows a [`TlsPolicy`] the runner chose for the host: DANE (RFC 7672) when the host has
//! validated TLSA records, verification against the trusted roots when the domain's MTA-STS
//! policy enforces it (RFC 8461) or the message asks for REQUIRETLS (RFC 8689), and otherwise
//! opportunistic TLS (RFC 7435): a certificate that does not verify is used anyway (it still
//! defeats passive listening), because the alternative in SMTP is plaintext, not no delivery.
//! When a policy makes TLS mandatory and the host cannot give it, nothing is sent.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use letterlock_types::EmailAddress;

use mail_auth::report::tlsrpt::ResultType;

use crate::dane;
use crate::resolver::TlsaRecord;
use crate::store::{DsnRequest, Notify};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// RFC 5321 section 4.5.3.1.5: a reply line is at most 512 octets; servers exceed it, so a
/// line is cut here rather than refused.
pub const REPLY_LINE_LENGTH_MAX_BYTES: usize = 4096;
/// Lines of one multiline reply (an EHLO lists a few dozen at most).
pub const REPLY_LINES_MAX: usize = 100;

/// Timeouts of one delivery attempt (RFC 5321 section 4.5.3.2 gives the minimums servers
/// expect from clients: 5 minutes for most replies, 10 after the final dot).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub command: Duration,
    pub data_end: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(30),
            command: Duration::from_secs(5 * 60),
            data_end: Duration::from_secs(10 * 60),
        }
    }
}

/// What one recipient's delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptOutcome {
    Delivered(String),
    Temporary(String),
    Permanent(String),
}

/// The whole transaction with one host failed before any recipient had its own answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFailure {
    pub permanent: bool,
    pub text: String,
    /// A TLS failure a policy made fatal, as TLS-RPT (RFC 8460) names it.
    pub tls: Option<ResultType>,
}

impl HostFailure {
    fn temporary(text: impl Into<String>) -> HostFailure {
        HostFailure {
            permanent: false,
            text: text.into(),
            tls: None,
        }
    }

    fn permanent(text: impl Into<String>) -> HostFailure {
        HostFailure {
            permanent: true,
            text: text.into(),
            tls: None,
        }
    }

    fn tls(mut self, kind: ResultType) -> HostFailure {
        self.tls = Some(kind);
        self
    }
}

/// The TLS-RPT result type of a failed handshake.
fn tls_result_type(error: &std::io::Error) -> ResultType {
    use rustls::CertificateError;
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(certificate)) => match certificate {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                ResultType::CertificateHostMismatch
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                ResultType::CertificateExpired
            }
            CertificateError::UnknownIssuer => ResultType::CertificateNotTrusted,
            _ => ResultType::ValidationFailure,
        },
        Some(rustls::Error::General(reason)) if reason.starts_with("DANE") => {
            ResultType::TlsaInvalid
        }
        _ => ResultType::ValidationFailure,
    }
}

/// One SMTP reply: its code and its text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// `550 5.1.1 no such user` (multiline replies joined with spaces).
    pub fn summary(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" "))
    }
}

/// One transaction to do: the envelope of one domain's recipients and the message.
pub struct Transaction<'a> {
    pub sender: Option<&'a EmailAddress>,
    pub recipients: &'a [EmailAddress],
    pub message: &'a [u8],
    pub requiretls: bool,
    /// RFC 3461 parameters, passed on when the server offers DSN: the message's, and each
    /// recipient's NOTIFY and ORCPT (in the order of `recipients`; missing ones have none).
    pub dsn: &'a DsnRequest,
    pub recipient_dsn: &'a [(Notify, Option<String>)],
}

/// What one host did with a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDelivery {
    pub outcomes: Vec<(EmailAddress, RcptOutcome)>,
    /// The server offered DSN and was given the parameters: success reports are its to send.
    pub dsn_passed_on: bool,
    /// The transaction ran over TLS (a successful TLS session, for TLS-RPT).
    pub over_tls: bool,
}

/// RFC 3461 section 4: xtext, for ENVID and ORCPT values: `+`, `=`, controls, space and
/// non-ASCII bytes as `+XX`.
pub fn xtext(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if (b'!'..=b'~').contains(&byte) && byte != b'+' && byte != b'=' {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("+{byte:02X}"));
        }
    }
    encoded
}

/// How the TLS of one host must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsPolicy {
    /// STARTTLS when offered, whatever the certificate.
    Opportunistic,
    /// TLS required; the certificate must verify against the trusted roots and name the host.
    /// `why` names the policy in errors ("MTA-STS", "REQUIRETLS").
    Verified { why: &'static str },
    /// TLS required; the certificate must match one of the usable TLSA records (none usable:
    /// any certificate).
    Dane(Vec<TlsaRecord>),
}

impl TlsPolicy {
    fn mandatory(&self) -> Option<&'static str> {
        match self {
            TlsPolicy::Opportunistic => None,
            TlsPolicy::Verified { why } => Some(why),
            TlsPolicy::Dane(_) => Some("DANE"),
        }
    }
}

/// How to talk to remote hosts.
#[derive(Clone)]
pub struct ClientSettings {
    /// The name in EHLO: the server's own host name.
    pub hostname: String,
    pub port: u16,
    pub timeouts: Timeouts,
    /// Roots a certificate must chain to to count as verified.
    pub roots: Arc<RootCertStore>,
}

/// The operating system's trusted roots (`/etc/ssl/certs` on Debian), for [`ClientSettings`].
/// Certificates that fail to parse are skipped; an empty store means every STARTTLS is
/// opportunistic and REQUIRETLS mail cannot leave.
pub fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "system root certificates");
    }
    let (added, skipped) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, skipped, "system root certificates loaded");
    roots
}

/// Deliver `transaction` to `host` at `ip`, with TLS as `tls` says.
pub async fn deliver_to_host(
    settings: &ClientSettings,
    host: &str,
    ip: IpAddr,
    transaction: &Transaction<'_>,
    tls: &TlsPolicy,
) -> Result<HostDelivery, HostFailure> {
    let address = SocketAddr::new(ip, settings.port);
    let tcp =
        match tokio::time::timeout(settings.timeouts.connect, TcpStream::connect(address)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(error)) => {
                return Err(HostFailure::temporary(format!(
                    "cannot connect to {host} [{address}]: {error}"
                )))
            }
            Err(_) => {
                return Err(HostFailure::temporary(format!(
                    "connecting to {host} [{address}] timed out"
                )))
            }
        };
    let mut plain = Conn::new(tcp, settings.timeouts);
    let greeting = plain.read_reply().await?;
    if greeting.code != 220 {
        return Err(HostFailure::temporary(format!(
            "{host} greeted with {}",
            greeting.summary()
        )));
    }
    let extensions = plain.ehlo(&settings.hostname).await?;
    if !has_extension(&extensions, "STARTTLS") {
        if transaction.requiretls {
            let _ = plain.command("QUIT").await;
            return Err(HostFailure::permanent(format!(
                "554 5.7.30 REQUIRETLS: {host} does not offer STARTTLS"
            )));
        }
        if let Some(why) = tls.mandatory() {
            let _ = plain.command("QUIT").await;
            return Err(HostFailure::temporary(format!(
                "451 4.7.5 {why}: {host} does not offer STARTTLS"
            ))
            .tls(ResultType::StartTlsNotSupported));
        }
        return run_transaction(&mut plain, &extensions, transaction, host, false).await;
    }
    let reply = plain.command("STARTTLS").await?;
    if reply.code != 220 {
        if transaction.requiretls {
            return Err(HostFailure::permanent(format!(
                "554 5.7.30 REQUIRETLS: STARTTLS refused by {host}: {}",
                reply.summary()
            )));
        }
        if let Some(why) = tls.mandatory() {
            let _ = plain.command("QUIT").await;
            return Err(HostFailure::temporary(format!(
                "451 4.7.5 {why}: STARTTLS refused by {host}: {}",
                reply.summary()
            ))
            .tls(ResultType::StartTlsNotSupported));
        }
        // RFC 3207 section 4: a refused STARTTLS leaves a usable plain session.
        return run_transaction(&mut plain, &extensions, transaction, host, false).await;
    }
    if !plain.buffer.is_empty() {
        // Bytes that came before the handshake would be read as if protected (CVE-2011-0411).
        return Err(HostFailure::temporary(format!(
            "{host} sent data after its STARTTLS reply"
        )));
    }
    let server_name = ServerName::try_from(host.to_string())
        .map_err(|_| HostFailure::temporary(format!("{host} is not a valid TLS name")))?;
    let connector = TlsConnector::from(Arc::new(tls_config(&settings.roots, tls)?));
    let tls = match tokio::time::timeout(
        settings.timeouts.command,
        connector.connect(server_name, plain.stream),
    )
    .await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            let why = tls
                .mandatory()
                .map(|why| format!(" ({why})"))
                .unwrap_or_default();
            let failure =
                HostFailure::temporary(format!("451 4.7.5 TLS with {host} failed{why}: {error}"));
            return Err(match tls.mandatory() {
                Some(_) => failure.tls(tls_result_type(&error)),
                None => failure,
            });
        }
        Err(_) => return Err(HostFailure::temporary(format!("TLS with {host} timed out"))),
    };
    let mut secure = Conn::new(tls, settings.timeouts);
    let extensions = secure.ehlo(&settings.hostname).await?;
    if transaction.requiretls && !has_extension(&extensions, "REQUIRETLS") {
        let _ = secure.command("QUIT").await;
        return Err(HostFailure::permanent(format!(
            "554 5.7.30 REQUIRETLS: {host} does not support REQUIRETLS"
        )));
    }
    run_transaction(&mut secure, &extensions, transaction, host, true).await
}

async fn run_transaction<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    extensions: &[String],
    transaction: &Transaction<'_>,
    host: &str,
    over_tls: bool,
) -> Result<HostDelivery, HostFailure> {
    let dsn_passed_on = has_extension(extensions, "DSN");
    let needs_utf8 = transaction
        .sender
        .is_some_and(|sender| !sender.to_string().is_ascii())
        || transaction
            .recipients
            .iter()
            .any(|recipient| !recipient.to_string().is_ascii());
    let mut mail = format!(
        "MAIL FROM:<{}>",
        transaction
            .sender
            .map(|sender| sender.to_string())
            .unwrap_or_default()
    );
    if has_extension(extensions, "SIZE") {
        mail.push_str(&format!(" SIZE={}", transaction.message.len()));
    }
    if !transaction.message.is_ascii() && has_extension(extensions, "8BITMIME") {
        mail.push_str(" BODY=8BITMIME");
    }
    if needs_utf8 {
        if !has_extension(extensions, "SMTPUTF8") {
            let _ = conn.command("QUIT").await;
            return Err(HostFailure::permanent(format!(
                "553 5.6.7 {host} does not support SMTPUTF8, which the addresses need"
            )));
        }
        mail.push_str(" SMTPUTF8");
    }
    if transaction.requiretls {
        mail.push_str(" REQUIRETLS");
    }
    if dsn_passed_on {
        if transaction.dsn.ret_full {
            mail.push_str(" RET=FULL");
        }
        if let Some(envid) = &transaction.dsn.envid {
            mail.push_str(&format!(" ENVID={}", xtext(envid)));
        }
    }
    let reply = conn.command(&mail).await?;
    if !reply.is_positive() {
        let _ = conn.command("QUIT").await;
        return Err(HostFailure {
            permanent: reply.is_permanent(),
            text: format!("{host} refused MAIL: {}", reply.summary()),
            tls: None,
        });
    }
    let mut outcomes = Vec::with_capacity(transaction.recipients.len());
    let mut accepted = Vec::new();
    for (index, recipient) in transaction.recipients.iter().enumerate() {
        let mut rcpt = format!("RCPT TO:<{recipient}>");
        if let (true, Some((notify, orcpt))) = (dsn_passed_on, transaction.recipient_dsn.get(index))
        {
            if let Some(notify) = notify.parameter() {
                rcpt.push_str(&format!(" NOTIFY={notify}"));
            }
            if let Some(orcpt) = orcpt {
                rcpt.push_str(&format!(" ORCPT=rfc822;{}", xtext(orcpt)));
            }
        }
        let reply = conn.command(&rcpt).await?;
        if reply.is_positive() {
            accepted.push(recipient.clone());
        } else if reply.is_permanent() {
            outcomes.push((recipient.clone(), RcptOutcome::Permanent(reply.summary())));
        } else {
            outcomes.push((recipient.clone(), RcptOutcome::Temporary(reply.summary())));
        }
    }
    let done = |outcomes| HostDelivery {
        outcomes,
        dsn_passed_on,
        over_tls,
    };
    if accepted.is_empty() {
        let _ = conn.command("QUIT").await;
        return Ok(done(outcomes));
    }
    let reply = conn.command("DATA").await?;
    if reply.code != 354 {
        let _ = conn.command("QUIT").await;
        let outcome = |text: String| {
            if reply.is_permanent() {
                RcptOutcome::Permanent(text)
            } else {
                RcptOutcome::Temporary(text)
            }
        };
        for recipient in accepted {
            outcomes.push((recipient, outcome(reply.summary())));
        }
        return Ok(done(outcomes));
    }
    let reply = conn.send_data(transaction.message).await?;
    for recipient in accepted {
        let outcome = if reply.is_positive() {
            RcptOutcome::Delivered(reply.summary())
        } else if reply.is_permanent() {
            RcptOutcome::Permanent(reply.summary())
        } else {
            RcptOutcome::Temporary(reply.summary())
        };
        outcomes.push((recipient, outcome));
    }
    let _ = conn.command("QUIT").await;
    Ok(done(outcomes))
}

fn has_extension(extensions: &[String], name: &str) -> bool {
    extensions.iter().any(|line| {
        line.split_whitespace()
            .next()
            .is_some_and(|keyword| keyword.eq_ignore_ascii_case(name))
    })
}

/// A stream, its read buffer and its timeouts.
struct Conn<S> {
    stream: S,
    buffer: Vec<u8>,
    timeouts: Timeouts,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(stream: S, timeouts: Timeouts) -> Conn<S> {
        Conn {
            stream,
            buffer: Vec::new(),
            timeouts,
        }
    }

    async fn ehlo(&mut self, hostname: &str) -> Result<Vec<String>, HostFailure> {
        let reply = self.command(&format!("EHLO {hostname}")).await?;
        if reply.code != 250 {
            return Err(HostFailure::temporary(format!(
                "EHLO refused: {}",
                reply.summary()
            )));
        }
        Ok(reply.lines.into_iter().skip(1).collect())
    }

    async fn command(&mut self, line: &str) -> Result<Reply, HostFailure> {
        self.write(format!("{line}\r\n").as_bytes(), self.timeouts.command)
            .await?;
        self.read_reply().await
    }

    /// The message, dot-stuffed (RFC 5321 section 4.5.2), then the final dot.
    async fn send_data(&mut self, message: &[u8]) -> Result<Reply, HostFailure> {
        let mut data = Vec::with_capacity(message.len() + message.len() / 50 + 5);
        let mut at_line_start = true;
        for &byte in message {
            if at_line_start && byte == b'.' {
                data.push(b'.');
            }
            data.push(byte);
            at_line_start = byte == b'\n';
        }
        if !data.ends_with(b"\r\n") {
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b".\r\n");
        self.write(&data, self.timeouts.data_end).await?;
        let saved = self.timeouts.command;
        self.timeouts.command = self.timeouts.data_end;
        let reply = self.read_reply().await;
        self.timeouts.command = saved;
        reply
    }

    async fn write(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), HostFailure> {
        let written = tokio::time::timeout(timeout, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(HostFailure::temporary(format!("write failed: {error}"))),
            Err(_) => Err(HostFailure::temporary("write timed out")),
        }
    }

    async fn read_line(&mut self) -> Result<String, HostFailure> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let mut text = String::from_utf8_lossy(&line).into_owned();
                text.truncate(text.trim_end_matches(['\r', '\n']).len());
                return Ok(text);
            }
            if self.buffer.len() > REPLY_LINE_LENGTH_MAX_BYTES {
                return Err(HostFailure::temporary("reply line too long"));
            }
            let mut chunk = [0u8; 4096];
            let read =
                tokio::time::timeout(self.timeouts.command, self.stream.read(&mut chunk)).await;
            match read {
                Ok(Ok(0)) => return Err(HostFailure::temporary("connection closed")),
                Ok(Ok(count)) => self.buffer.extend_from_slice(&chunk[..count]),
                Ok(Err(error)) => {
                    return Err(HostFailure::temporary(format!("read failed: {error}")))
                }
                Err(_) => return Err(HostFailure::temporary("no reply in time")),
            }
        }
    }

    async fn read_reply(&mut self) -> Result<Reply, HostFailure> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line().await?;
            let code = line
                .get(..3)
                .and_then(|digits| digits.parse::<u16>().ok())
                .filter(|code| (200..600).contains(code))
                .ok_or_else(|| HostFailure::temporary(format!("malformed reply: {line:?}")))?;
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if last {
                return Ok(Reply { code, lines });
            }
            if lines.len() >= REPLY_LINES_MAX {
                return Err(HostFailure::temporary("reply has too many lines"));
            }
        }
    }
}

fn tls_config(roots: &Arc<RootCertStore>, tls: &TlsPolicy) -> Result<ClientConfig, HostFailure> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| HostFailure::temporary(format!("TLS setup: {error}")))?;
    let webpki = if roots.is_empty() {
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::clone(roots), Arc::clone(&provider))
                .build()
                .map_err(|error| HostFailure::temporary(format!("TLS setup: {error}")))?,
        )
    };
    let custom = |check| {
        Arc::new(PolicyVerifier {
            check,
            provider: Arc::clone(&provider),
        })
    };
    let config = match (tls, webpki) {
        (TlsPolicy::Dane(records), _) => builder
            .dangerous()
            .with_custom_certificate_verifier(custom(CertificateCheck::Dane(dane::usable(records))))
            .with_no_client_auth(),
        (TlsPolicy::Verified { .. }, Some(verifier)) => {
            builder.with_webpki_verifier(verifier).with_no_client_auth()
        }
        (TlsPolicy::Verified { why }, None) => {
            return Err(HostFailure::temporary(format!(
                "{why}: certificate verification required but no trusted roots are configured"
            )))
        }
        (TlsPolicy::Opportunistic, inner) => builder
            .dangerous()
            .with_custom_certificate_verifier(custom(CertificateCheck::Opportunistic(inner)))
            .with_no_client_auth(),
    };
    Ok(config)
}

#[cfg(test)]
mod tests {
    #[test]
    fn xtext_escapes_plus_equals_spaces_and_non_ascii() {
        assert_eq!(super::xtext("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(super::xtext("Jörg"), "J+C3+B6rg");
        assert_eq!(super::xtext("QQ314159"), "QQ314159");
    }
}

/// What a policy that webpki alone does not express checks of the server's certificate.
#[derive(Debug)]
enum CertificateCheck {
    /// Opportunistic TLS (RFC 7435): verify if we can, say so in the log, use the session
    /// anyway.
    Opportunistic(Option<Arc<WebPkiServerVerifier>>),
    /// DANE (RFC 7672): the usable TLSA records of the host.
    Dane(Vec<TlsaRecord>),
}

/// The certificate verifier of opportunistic and DANE TLS. The handshake signature is always
/// checked, so the peer holds the key of the certificate it showed.
#[derive(Debug)]
struct PolicyVerifier {
    check: CertificateCheck,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PolicyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.check {
            CertificateCheck::Opportunistic(Some(inner)) => {
                if let Err(error) = inner.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                ) {
                    tracing::info!(%error, server = ?server_name, "unverified TLS certificate, used opportunistically");
                }
            }
            CertificateCheck::Opportunistic(None) => {}
            CertificateCheck::Dane(records) => dane::verify(
                records,
                end_entity,
                intermediates,
                server_name,
                now,
                &self.provider,
            )?,
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
