//! POP3 over real sockets and real TLS: a raw client for the protocol rules, and Python's
//! `poplib` and `curl` (clients nobody here wrote) for interop. Every retrieval is compared
//! byte for byte with what was delivered.

use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::Arc;
use std::time::Duration;

use letterlock_mailstore::{MailStore, StoreOptions};
use letterlock_pop3::{handler, Pop3Settings};
use letterlock_server::config::ListenAddress;
use letterlock_server::{tls, Config, Handlers, Server, Service};
use letterlock_storage::embedded::EmbeddedEngine;
use letterlock_types::{Domain, EmailAddress, MailboxName, Secret};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const PASSWORD: &str = "correct horse battery";
const CLIENT_TIMEOUT_SECS: u64 = 20;

struct Running {
    store: MailStore,
    pop3: std::net::SocketAddr,
    pop3s: std::net::SocketAddr,
    certificate: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start() -> Running {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = EmbeddedEngine::open(&dir.path().join("store")).expect("engine");
        let store = MailStore::new(
            Arc::new(engine),
            StoreOptions {
                kdf: letterlock_crypto::kdf::KdfParams::INSECURE_FOR_TESTS,
                ..StoreOptions::default()
            },
        );
        store
            .add_domain(&Domain::try_from("example.org").expect("domain"))
            .expect("domain");
        store
            .add_user(&alice(), &Secret::from(PASSWORD), 0, None)
            .expect("user");
        let mut config = Config::default_for(dir.path());
        for service in Service::ALL {
            config.listen.set_address(service, ListenAddress::Disabled);
        }
        for service in [Service::Pop3, Service::Pop3s] {
            config.listen.set_address(
                service,
                ListenAddress::At("127.0.0.1:0".parse().expect("address")),
            );
        }
        let identity = tls::load_or_generate(&config, dir.path()).expect("tls");
        let handlers = Handlers {
            pop3: Some(handler(store.clone(), Pop3Settings::default())),
            ..Handlers::default()
        };
        let server = Server::bind(&config, Arc::clone(&identity.server_config), handlers)
            .await
            .expect("bind");
        let pop3 = server.local_address(Service::Pop3).expect("pop3");
        let pop3s = server.local_address(Service::Pop3s).expect("pop3s");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Running {
            store,
            pop3,
            pop3s,
            certificate: identity.certificate_path.clone(),
            stop: Some(stop),
            _dir: dir,
        }
    }

    fn deliver(&self, message: &[u8]) {
        self.store.deliver(&[alice()], message).expect("deliver");
    }

    fn inbox_count(&self) -> usize {
        self.store
            .unlock(&alice(), &Secret::from(PASSWORD))
            .expect("unlock")
            .list_messages(&MailboxName::inbox())
            .expect("list")
            .len()
    }

    fn connector(&self) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&self.certificate).expect("certificate");
        for certificate in pem_certificates(&pem) {
            roots.add(certificate).expect("add root");
        }
        let config = rustls::ClientConfig::builder_with_provider(tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }

    async fn tls_client(&self) -> Client<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.pop3s).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        let stream = self
            .connector()
            .connect(name, tcp)
            .await
            .expect("handshake");
        let mut client = Client::new(stream);
        assert!(client.line().await.starts_with("+OK"));
        client
    }

    async fn logged_in(&self) -> Client<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut client = self.tls_client().await;
        assert!(client
            .command("USER alice@example.org")
            .await
            .starts_with("+OK"));
        let reply = client.command(&format!("PASS {PASSWORD}")).await;
        assert!(reply.starts_with("+OK"), "{reply}");
        client
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn pem_certificates(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|certificate| certificate.expect("pem"))
        .collect()
}

fn alice() -> EmailAddress {
    EmailAddress::try_from("alice@example.org").expect("address")
}

struct Client<S> {
    stream: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    fn new(stream: S) -> Client<S> {
        Client {
            stream: BufReader::new(stream),
        }
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(CLIENT_TIMEOUT_SECS),
            self.stream.read_line(&mut line),
        )
        .await
        .expect("reply in time")
        .expect("read");
        line
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).await.expect("write");
    }

    async fn command(&mut self, command: &str) -> String {
        self.send(format!("{command}\r\n").as_bytes()).await;
        self.line().await
    }

    /// The body of a multi-line reply, un-stuffed, lines joined with CRLF.
    async fn body(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let line = self.line().await;
            if line == ".\r\n" {
                return out;
            }
            let line = line.strip_prefix('.').unwrap_or(&line);
            out.extend_from_slice(line.as_bytes());
        }
    }
}

fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: Bob <bob@example.net>\r\nTo: alice@example.org\r\nSubject: {subject}\r\n\r\nfirst line\r\n.starts with a dot\r\nlast line\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn retrieve_list_uidl_top_over_tls() {
    let running = Running::start().await;
    running.deliver(&message("one"));
    running.deliver(&message("two"));
    let mut client = running.logged_in().await;
    let stat = client.command("STAT").await;
    assert_eq!(stat, format!("+OK 2 {}\r\n", 2 * message("one").len()));
    assert!(client.command("LIST").await.starts_with("+OK 2"));
    assert_eq!(
        client.body().await,
        format!("1 {0}\r\n2 {0}\r\n", message("one").len()).into_bytes()
    );
    assert!(client.command("UIDL").await.starts_with("+OK"));
    let uidl = String::from_utf8(client.body().await).expect("utf-8");
    let first_uid: Vec<&str> = uidl
        .lines()
        .map(|line| line.split(' ').nth(1).unwrap_or(""))
        .collect();
    assert!(first_uid[0].starts_with("1."), "{uidl}");
    assert!(first_uid[1].starts_with("2."), "{uidl}");
    assert!(client.command("RETR 2").await.starts_with("+OK"));
    assert_eq!(client.body().await, message("two"));
    assert!(client.command("TOP 1 1").await.starts_with("+OK"));
    assert_eq!(
        client.body().await,
        b"From: Bob <bob@example.net>\r\nTo: alice@example.org\r\nSubject: one\r\n\r\nfirst line\r\n"
    );
    assert!(client.command("RETR 3").await.starts_with("-ERR"));
    assert!(client.command("QUIT").await.starts_with("+OK"));
}

/// An administrator's reset without the recovery code ends a POP3 session holding the old
/// key: the next command gets -ERR [AUTH], the connection closes, and what the session had
/// marked for deletion stays.
#[tokio::test]
async fn a_reset_account_ends_its_open_session_and_deletes_nothing() {
    let running = Running::start().await;
    running.deliver(&message("one"));
    let mut client = running.logged_in().await;
    assert!(client.command("DELE 1").await.starts_with("+OK"));
    running
        .store
        .set_password(
            &alice(),
            &Secret::from("a new password after a takeover"),
            letterlock_mailstore::PasswordAuthority::AdminWithoutRecovery,
        )
        .expect("reset");
    let reply = client.command("QUIT").await;
    assert!(reply.starts_with("-ERR [AUTH]"), "{reply}");
    assert_eq!(client.line().await, "", "closed");
    let listed = running
        .store
        .unlock(&alice(), &Secret::from("a new password after a takeover"))
        .expect("unlock")
        .list_messages(&MailboxName::inbox())
        .expect("list");
    assert_eq!(listed.len(), 1, "nothing deleted");
}

#[tokio::test]
async fn dele_takes_effect_only_at_quit() {
    let running = Running::start().await;
    running.deliver(&message("one"));
    running.deliver(&message("two"));
    {
        let mut client = running.logged_in().await;
        assert!(client.command("DELE 1").await.starts_with("+OK"));
        assert!(client.command("DELE 1").await.starts_with("-ERR"));
        assert!(client.command("RETR 1").await.starts_with("-ERR"));
        assert!(client.command("STAT").await.starts_with("+OK 1 "));
        assert!(client.command("RSET").await.starts_with("+OK"));
        assert!(client.command("DELE 2").await.starts_with("+OK"));
        // Dropped without QUIT: nothing is deleted (RFC 1939 section 6).
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(running.inbox_count(), 2);
    let mut client = running.logged_in().await;
    assert!(client.command("DELE 2").await.starts_with("+OK"));
    let quit = client.command("QUIT").await;
    assert!(quit.contains("1 message(s) deleted"), "{quit}");
    assert_eq!(running.inbox_count(), 1);
}

#[tokio::test]
async fn credentials_need_tls_and_stls_upgrades_the_plain_port() {
    let running = Running::start().await;
    running.deliver(&message("one"));
    let tcp = TcpStream::connect(running.pop3).await.expect("connect");
    let mut client = Client::new(tcp);
    assert!(client.line().await.starts_with("+OK"));
    assert!(client.command("CAPA").await.starts_with("+OK"));
    let capabilities = String::from_utf8(client.body().await).expect("utf-8");
    assert!(capabilities.contains("STLS"), "{capabilities}");
    assert!(
        !capabilities.contains("USER"),
        "USER offered in the clear: {capabilities}"
    );
    assert!(
        !capabilities.contains("SASL"),
        "SASL offered in the clear: {capabilities}"
    );
    let refused = client.command("USER alice@example.org").await;
    assert!(
        refused.starts_with("-ERR [AUTH]") && refused.contains("TLS"),
        "{refused}"
    );
    assert!(client.command("PASS x").await.starts_with("-ERR [AUTH]"));
    assert!(client
        .command("AUTH PLAIN AGFsaWNlAHg=")
        .await
        .starts_with("-ERR [AUTH]"));
    // A command pipelined after STLS must not survive into the TLS session.
    client.send(b"STLS\r\nUSER injected@example.org\r\n").await;
    assert!(client.line().await.starts_with("+OK"));
    let tcp = client.stream.into_inner();
    let name = ServerName::try_from("localhost").expect("name");
    let tls_stream = running
        .connector()
        .connect(name, tcp)
        .await
        .expect("handshake");
    let mut client = Client::new(tls_stream);
    // No greeting after STLS; the injected USER was dropped, so PASS has no user.
    assert!(client
        .command("PASS whatever")
        .await
        .starts_with("-ERR USER first"));
    assert!(client.command("CAPA").await.starts_with("+OK"));
    let capabilities = String::from_utf8(client.body().await).expect("utf-8");
    assert!(
        capabilities.contains("SASL PLAIN") && !capabilities.contains("STLS"),
        "{capabilities}"
    );
    use base64::Engine as _;
    let plain = base64::engine::general_purpose::STANDARD
        .encode(format!("\0alice@example.org\0{PASSWORD}"));
    assert!(client
        .command(&format!("AUTH PLAIN {plain}"))
        .await
        .starts_with("+OK"));
    assert!(client.command("RETR 1").await.starts_with("+OK"));
    assert_eq!(client.body().await, message("one"));
}

#[tokio::test]
async fn bad_input_gets_errors_and_the_session_keeps_working() {
    let running = Running::start().await;
    running.deliver(&message("one"));
    let mut client = running.tls_client().await;
    assert!(client
        .command("FROBNICATE")
        .await
        .starts_with("-ERR unknown command"));
    assert!(client
        .command("RETR 1")
        .await
        .starts_with("-ERR log in first"));
    client.send(&[0xff, 0xfe, 0x00, b'\r', b'\n']).await;
    assert!(client.line().await.starts_with("-ERR"));
    client
        .send(format!("{}\r\n", "A".repeat(5000)).as_bytes())
        .await;
    assert!(client.line().await.contains("too long"));
    assert!(client
        .command("AUTH CRAM-MD5")
        .await
        .starts_with("-ERR unsupported mechanism"));
    assert!(client
        .command("AUTH PLAIN !!!notbase64")
        .await
        .starts_with("-ERR malformed"));
    assert!(client
        .command("USER alice@example.org")
        .await
        .starts_with("+OK"));
    assert!(client
        .command(&format!("PASS {PASSWORD}"))
        .await
        .starts_with("+OK"));
    assert!(client.command("RETR 0").await.starts_with("-ERR"));
    assert!(client.command("TOP 1").await.starts_with("-ERR"));
    assert!(client.command("STLS").await.starts_with("-ERR"));
    assert!(client.command("RETR 1").await.starts_with("+OK"));
    assert_eq!(client.body().await, message("one"));
}

#[tokio::test]
async fn too_many_errors_disconnect() {
    let running = Running::start().await;
    let mut client = running.tls_client().await;
    for _ in 0..letterlock_pop3::ERRORS_BEFORE_DISCONNECT - 1 {
        assert!(client.command("NOPE").await.starts_with("-ERR"));
    }
    assert!(client.command("NOPE").await.starts_with("-ERR"));
    assert!(client.line().await.contains("too many errors"));
    assert_eq!(client.line().await, "", "connection still open");
}

#[tokio::test]
async fn wrong_passwords_are_refused_and_rate_limited() {
    let running = Running::start().await;
    let mut blocked = false;
    for attempt in 0..(letterlock_pop3::auth_limit::FAILURES_PER_IP_MAX + 2) {
        let mut client = running.tls_client().await;
        assert!(client
            .command("USER alice@example.org")
            .await
            .starts_with("+OK"));
        let reply = client.command("PASS wrong password").await;
        assert!(reply.starts_with("-ERR [AUTH]"), "{reply}");
        if reply.contains("too many failed logins") {
            assert!(attempt >= letterlock_pop3::auth_limit::FAILURES_PER_IP_MAX);
            blocked = true;
            // Even the right password is refused while blocked.
            assert!(client
                .command("USER alice@example.org")
                .await
                .starts_with("+OK"));
            assert!(client
                .command(&format!("PASS {PASSWORD}"))
                .await
                .contains("too many failed logins"));
            break;
        }
    }
    assert!(blocked, "never rate-limited");
}

#[tokio::test]
async fn a_maildrop_is_open_in_one_session_at_a_time() {
    let running = Running::start().await;
    let mut first = running.logged_in().await;
    let mut second = running.tls_client().await;
    assert!(second
        .command("USER alice@example.org")
        .await
        .starts_with("+OK"));
    assert!(second
        .command(&format!("PASS {PASSWORD}"))
        .await
        .starts_with("-ERR [IN-USE]"));
    assert!(first.command("QUIT").await.starts_with("+OK"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(second
        .command("USER alice@example.org")
        .await
        .starts_with("+OK"));
    assert!(second
        .command(&format!("PASS {PASSWORD}"))
        .await
        .starts_with("+OK"));
}

fn run_python(script: &str, args: &[&str]) -> std::process::Output {
    Process::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3")
}

const POPLIB_SCRIPT: &str = r#"
import poplib, ssl, sys
mode, port, cafile, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
context = ssl.create_default_context(cafile=cafile)
if mode == "ssl":
    client = poplib.POP3_SSL("localhost", port, context=context, timeout=20)
else:
    client = poplib.POP3("localhost", port, timeout=20)
    client.stls(context=context)
client.user("alice@example.org")
client.pass_("correct horse battery")
count, size = client.stat()
assert count == 2, count
uidl = client.uidl()[1]
assert len(uidl) == 2, uidl
response, lines, octets = client.retr(2)
open(out, "wb").write(b"\r\n".join(lines) + b"\r\n")
client.dele(1)
client.quit()
print("ok", count, size)
"#;

async fn poplib_round_trip(mode: &str) {
    let running = Running::start().await;
    running.deliver(&message("one"));
    running.deliver(&message("two"));
    let out = running._dir.path().join(format!("retr-{mode}.eml"));
    let port = if mode == "ssl" {
        running.pop3s.port()
    } else {
        running.pop3.port()
    };
    let args = [
        mode.to_string(),
        port.to_string(),
        running.certificate.display().to_string(),
        out.display().to_string(),
    ];
    let output = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_python(POPLIB_SCRIPT, &args)
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "poplib failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(std::fs::read(&out).expect("retrieved"), message("two"));
    assert_eq!(
        running.inbox_count(),
        1,
        "DELE + QUIT through poplib removed one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_poplib_over_implicit_tls() {
    poplib_round_trip("ssl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_poplib_with_stls() {
    poplib_round_trip("stls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_retrieves_over_pop3s() {
    let running = Running::start().await;
    running.deliver(&message("curl"));
    let url = format!("pop3s://localhost:{}/1", running.pop3s.port());
    let certificate = running.certificate.clone();
    let output = tokio::task::spawn_blocking(move || curl(&url, &certificate))
        .await
        .expect("join");
    assert!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, message("curl"));
}

fn curl(url: &str, certificate: &Path) -> std::process::Output {
    Process::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20", "--cacert"])
        .arg(certificate)
        .args(["--user", &format!("alice@example.org:{PASSWORD}"), url])
        .output()
        .expect("curl is installed (scripts/install-test-tools.sh)")
}

/// fetchmail (Debian's) drains the maildrop over POP3S, verifying the certificate, and hands
/// each message to an MDA; the maildrop is empty afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetchmail_drains_the_maildrop() {
    let running = Running::start().await;
    running.deliver(&message("fetch-one"));
    running.deliver(&message("fetch-two"));
    let dir = running._dir.path().to_path_buf();
    let out_dir = dir.join("fetched");
    std::fs::create_dir_all(&out_dir).expect("out dir");
    // The MDA: one file per message, numbered in arrival order.
    let mda = dir.join("mda.sh");
    let script = format!(
        "#!/bin/sh\nn=$(ls '{out}' | wc -l)\ncat > '{out}/'$n\n",
        out = out_dir.display()
    );
    std::fs::write(&mda, script).expect("mda");
    let rc = dir.join("fetchmailrc");
    let lines = [
        "set no syslog".to_string(),
        "set invisible".to_string(),
        format!(
            "poll localhost with protocol POP3 port {}",
            running.pop3s.port()
        ),
        format!("  user \"alice@example.org\" there with password \"{PASSWORD}\" is root here"),
        format!(
            "  ssl sslcertck sslcertfile \"{}\"",
            running.certificate.display()
        ),
        "  no keep".to_string(),
        format!("  mda \"/bin/sh {}\"", mda.display()),
    ];
    std::fs::write(&rc, lines.join("\n") + "\n").expect("rc");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let home = dir.clone();
    let output = tokio::task::spawn_blocking(move || {
        Process::new("fetchmail")
            .arg("-f")
            .arg(&rc)
            .args(["--nodetach", "--nosyslog"])
            .env("HOME", &home)
            .env("FETCHMAILHOME", &home)
            .output()
            .expect("fetchmail is installed (scripts/install-test-tools.sh)")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "fetchmail failed ({:?}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // fetchmail hands the MDA each message with LF line endings; the bytes are otherwise exact.
    for (number, subject) in ["fetch-one", "fetch-two"].iter().enumerate() {
        let fetched = std::fs::read(out_dir.join(number.to_string())).expect("fetched message");
        let expected = String::from_utf8(message(subject))
            .expect("utf-8")
            .replace("\r\n", "\n");
        assert_eq!(
            String::from_utf8_lossy(&fetched).replace("\r\n", "\n"),
            expected
        );
    }
    assert_eq!(
        running.inbox_count(),
        0,
        "fetchmail did not drain the maildrop"
    );
}
