//! Helpers shared by the SMTP tests: a store on a temp dir with two users and an alias, a
//! session driven in memory, a real server on 127.0.0.1 (port 0) with real TLS, and reading
//! delivered mail back through the store.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use letterlock_crypto::kdf::KdfParams;
use letterlock_mailstore::{MailStore, StoreOptions};
use letterlock_server::config::ListenAddress;
use letterlock_server::{tls, Config, Handlers, Server, Service, ShutdownSignal};
use letterlock_smtp::auth::{DnsRecords, SenderAuthenticator};
use letterlock_smtp::{Mode, SessionContext, Settings, SmtpServer};
use letterlock_storage::embedded::EmbeddedEngine;
use letterlock_storage::Engine;
use letterlock_types::{Domain, EmailAddress, MailboxName, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

pub const ALICE: &str = "alice@example.org";
pub const BOB: &str = "bob@example.org";
pub const ALICE_ALIAS: &str = "sales@example.org";
pub const PASSWORD: &str = "correct horse battery";
pub const MESSAGE_SIZE_MAX_BYTES: usize = 256 * 1024;
/// A hang fails the test instead of the run.
pub const TEST_TIMEOUT_SECS: u64 = 30;

pub fn address(text: &str) -> EmailAddress {
    EmailAddress::try_from(text).expect("address")
}

pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub store: MailStore,
    /// The engine under `store`, for the outbound queue's own tables.
    pub engine: Arc<dyn Engine>,
}

/// A store with example.org, alice and bob, and sales@ as an alias of alice.
pub fn test_store() -> TestStore {
    let store = test_store_for("example.org", &[ALICE, BOB]);
    store
        .store
        .add_alias(ALICE_ALIAS, &[address(ALICE)])
        .expect("alias");
    store
}

/// A store with one domain and these users (password [`PASSWORD`]).
pub fn test_store_for(domain: &str, users: &[&str]) -> TestStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine: Arc<dyn Engine> = Arc::new(EmbeddedEngine::open(dir.path()).expect("open engine"));
    let store = MailStore::new(
        Arc::clone(&engine),
        StoreOptions {
            kdf: KdfParams::INSECURE_FOR_TESTS,
            message_size_max_bytes: 4 * 1024 * 1024,
        },
    );
    store
        .add_domain(&Domain::try_from(domain).expect("domain"))
        .expect("domain");
    for user in users {
        store
            .add_user(&address(user), &Secret::from(PASSWORD), 0, None)
            .expect("user");
    }
    TestStore { dir, store, engine }
}

/// Settings for tests, with sender authentication over an empty DNS map (every check runs,
/// none reaches the network).
pub fn test_settings() -> Settings {
    test_settings_with_dns(DnsRecords::default())
}

/// As [`test_settings`], with `records` as all the DNS there is.
pub fn test_settings_with_dns(records: DnsRecords) -> Settings {
    Settings {
        message_size_max_bytes: MESSAGE_SIZE_MAX_BYTES,
        auth_failure_delay: Duration::from_millis(10),
        sender_authentication: Some(Arc::new(
            SenderAuthenticator::from_records(records).expect("authenticator"),
        )),
        ..Settings::default()
    }
}

/// Every message in `user`'s mailbox, as stored, in UID order.
pub fn mailbox(store: &MailStore, user: &str, name: &str) -> Vec<Vec<u8>> {
    let unlocked = store
        .unlock(&address(user), &Secret::from(PASSWORD))
        .expect("unlock");
    let name = MailboxName::try_from(name).expect("mailbox name");
    unlocked
        .list_messages(&name)
        .expect("list")
        .iter()
        .map(|summary| unlocked.fetch(&name, summary.uid).expect("fetch"))
        .collect()
}

pub fn inbox(store: &MailStore, user: &str) -> Vec<Vec<u8>> {
    mailbox(store, user, "INBOX")
}

/// The message after the `Return-Path` and `Received` headers the server put in front,
/// asserting that they are there, and after the authentication results and the spam and
/// phishing verdicts inbound mail gets.
pub fn without_trace(message: &[u8]) -> Vec<u8> {
    let text = message;
    assert!(
        text.starts_with(b"Return-Path: <"),
        "no Return-Path: {}",
        String::from_utf8_lossy(message)
    );
    let mut lines = text.split_inclusive(|&byte| byte == b'\n').peekable();
    let mut skipped = 0;
    let first = lines.next().expect("Return-Path line");
    skipped += first.len();
    let received = lines.next().expect("Received line");
    assert!(received.starts_with(b"Received: from "), "no Received");
    skipped += received.len();
    while let Some(line) = lines.peek() {
        if line.starts_with(b"\t")
            || line.starts_with(b"Authentication-Results: ")
            || line.starts_with(b"X-Letterlock-Spam: ")
            || line.starts_with(b"X-Letterlock-Phishing: ")
            // Submission adds the sender's key (Autocrypt), folded on lines starting with a space.
            || line.starts_with(b"Autocrypt: addr=")
            || (line.starts_with(b" ") && skipped > 0)
        {
            skipped += line.len();
            lines.next();
        } else {
            break;
        }
    }
    message[skipped..].to_vec()
}

/// The trace headers alone.
pub fn trace_of(message: &[u8]) -> String {
    let rest = without_trace(message);
    String::from_utf8_lossy(&message[..message.len() - rest.len()]).into_owned()
}

pub fn smtp_server(store: &MailStore, settings: Settings) -> Arc<SmtpServer> {
    SmtpServer::new(store.clone(), settings).expect("smtp server")
}

pub fn context(mode: Mode) -> SessionContext {
    SessionContext {
        mode,
        peer: "192.0.2.7:40000".parse().expect("peer"),
        hostname: "mx.example.org".into(),
        tls_acceptor: None,
        implicit_tls: None,
        shutdown: ShutdownSignal::never(),
    }
}

/// Drive one session in memory: send `input` (all at once, as a pipelining client may), read
/// until the server closes, and return everything it said.
pub async fn converse_with(
    server: &Arc<SmtpServer>,
    context: SessionContext,
    input: &[u8],
) -> String {
    let (mut client, server_side) = tokio::io::duplex(64 * 1024);
    let server = Arc::clone(server);
    let session = tokio::spawn(async move { server.serve(server_side, context).await });
    let (mut reader, mut writer) = tokio::io::split(&mut client);
    let input = input.to_vec();
    let write = async move {
        let _ = writer.write_all(&input).await;
        // Keep the write side open: the session must end by QUIT, an error limit or 421.
        writer
    };
    let read = async {
        let mut output = Vec::new();
        let _ = reader.read_to_end(&mut output).await;
        output
    };
    let (output, _writer) = tokio::time::timeout(Duration::from_secs(TEST_TIMEOUT_SECS), async {
        let (writer, output) = tokio::join!(write, read);
        (output, writer)
    })
    .await
    .expect("session timed out");
    tokio::time::timeout(Duration::from_secs(TEST_TIMEOUT_SECS), session)
        .await
        .expect("session end")
        .expect("session task");
    String::from_utf8_lossy(&output).into_owned()
}

pub async fn converse(server: &Arc<SmtpServer>, mode: Mode, input: &[u8]) -> String {
    converse_with(server, context(mode), input).await
}

/// The reply codes in order (the first line of each reply).
pub fn codes(output: &str) -> Vec<String> {
    output
        .lines()
        .filter(|line| line.len() >= 4 && line.as_bytes()[3] == b' ')
        .map(|line| line[..3].to_string())
        .collect()
}

/// A real server on 127.0.0.1 with the three SMTP listeners, real TLS (generated certificate
/// for `localhost`), and the SMTP handler.
pub struct RunningServer {
    pub smtp: SocketAddr,
    pub submission_tls: SocketAddr,
    pub submission_starttls: SocketAddr,
    pub certificate: PathBuf,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    pub async fn start(store: &TestStore, settings: Settings) -> RunningServer {
        RunningServer::start_with_outbound(store, settings, None).await
    }

    /// As `start`, with submitted mail for remote recipients signed and queued in `outbound`.
    pub async fn start_with_outbound(
        store: &TestStore,
        settings: Settings,
        outbound: Option<letterlock_smtp::Outbound>,
    ) -> RunningServer {
        let data = store.dir.path();
        let mut config = Config::default_for(data);
        for service in Service::ALL {
            config.listen.set_address(service, ListenAddress::Disabled);
        }
        for service in [
            Service::Smtp,
            Service::SubmissionTls,
            Service::SubmissionStarttls,
        ] {
            config.listen.set_address(
                service,
                ListenAddress::At("127.0.0.1:0".parse().expect("address")),
            );
        }
        config.validate().expect("config");
        let identity = tls::load_or_generate(&config, data).expect("tls");
        let handler =
            letterlock_smtp::handler_with_outbound(store.store.clone(), settings, outbound)
                .expect("handler");
        let server = Server::bind(
            &config,
            Arc::clone(&identity.server_config),
            Handlers {
                smtp: Some(handler),
                ..Handlers::default()
            },
        )
        .await
        .expect("bind");
        let find = |service| server.local_address(service).expect("bound");
        let (smtp, submission_tls, submission_starttls) = (
            find(Service::Smtp),
            find(Service::SubmissionTls),
            find(Service::SubmissionStarttls),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = server
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        });
        RunningServer {
            smtp,
            submission_tls,
            submission_starttls,
            certificate: identity.certificate_path.clone(),
            data_dir: data.to_path_buf(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(TEST_TIMEOUT_SECS), task).await;
        }
    }
}

/// Run a program to its end (off the runtime's threads), returning (status ok, stdout, stderr).
pub async fn run_program(
    program: &str,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
) -> (bool, String, String) {
    let program = program.to_string();
    let output = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(&program)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("{program} is missing ({error}); run scripts/install-test-tools.sh")
            });
        if let Some(mut input) = child.stdin.take() {
            if let Some(bytes) = stdin {
                input.write_all(&bytes).expect("stdin");
            }
        }
        child.wait_with_output().expect("wait")
    });
    let output = tokio::time::timeout(Duration::from_secs(TEST_TIMEOUT_SECS), output)
        .await
        .expect("program timed out")
        .expect("join");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The encrypted part of the PGP/MIME `message`, written to `armoured` and decrypted by gpg
/// with the key ring in `home`.
pub fn gpg_decrypt_pgp_mime(home: &Path, message: &[u8], armoured: &Path) -> Vec<u8> {
    std::fs::write(
        armoured,
        letterlock_smtp::encryption::armored_part(message).expect("an armoured OpenPGP part"),
    )
    .expect("write");
    gpg(home, &["--decrypt", armoured.to_str().expect("utf-8")]).stdout
}

/// Runs Debian's gpg on the key ring in `home`, non-interactively; panics on failure.
pub fn gpg(home: &Path, args: &[&str]) -> std::process::Output {
    let output = std::process::Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args([
            "--batch",
            "--no-tty",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args(args)
        .output()
        .expect("gpg is installed (scripts/install-test-tools.sh)");
    assert!(
        output.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// An empty GnuPG home under `root` (mode 0700, as gpg wants).
pub fn gpg_home(root: &Path, name: &str) -> PathBuf {
    let home = root.join(name);
    std::fs::create_dir_all(&home).expect("home");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    home
}

/// A GnuPG home under `root` holding a new key for `user`: Ed25519 primary with a Cv25519
/// encryption subkey (gpg's "future-default").
pub fn gpg_home_with_key(root: &Path, user: &str) -> PathBuf {
    let home = gpg_home(root, user);
    gpg(
        &home,
        &[
            "--quick-gen-key",
            user,
            "future-default",
            "default",
            "never",
        ],
    );
    home
}

/// A WKD server (the advanced method, HTTPS under a test CA) for `domain` that publishes `key`
/// for `local_part` and answers 404 for anyone else, and the key discovery that finds it.
pub async fn wkd_publishing(
    domain: &str,
    local_part: &str,
    key: Vec<u8>,
) -> (
    letterlock_queue::testing::HttpsServer,
    Arc<letterlock_queue::wkd::KeyDiscovery>,
) {
    use letterlock_queue::testing::{acceptor, HttpsServer, TestCa};
    let ca = TestCa::new();
    let host = format!("openpgpkey.{domain}");
    let (certificate, private_key) = ca.leaf(&host);
    let published = format!(
        "/.well-known/openpgpkey/{domain}/hu/{}?l={local_part}",
        letterlock_crypto::wkd::local_part_hash(local_part)
    );
    let server = HttpsServer::start(acceptor(vec![certificate], private_key), move |path| {
        if path == published {
            (200, "application/octet-stream", key.clone())
        } else {
            (404, "text/plain", Vec::new())
        }
    })
    .await;
    let resolver =
        letterlock_queue::MapResolver::default().with_ip(&host, "127.0.0.1".parse().expect("ip"));
    let discovery = letterlock_queue::wkd::KeyDiscovery::new(
        Arc::new(resolver),
        letterlock_queue::https::HttpsSettings {
            port: server.port,
            roots: Arc::new(ca.roots()),
            public_addresses_only: false,
        },
    );
    (server, Arc::new(discovery))
}

/// An outbound side on `store`'s engine: the queue and DKIM keys under a new spool key.
pub fn outbound_on(store: &TestStore) -> letterlock_queue::Outbound {
    let spool_key = letterlock_queue::SpoolKey::generate();
    letterlock_queue::Outbound {
        queue: letterlock_queue::Queue::new(
            Arc::clone(&store.engine),
            &spool_key,
            letterlock_queue::QueueSettings::default(),
        ),
        dkim: letterlock_queue::DkimKeys::new(Arc::clone(&store.engine), &spool_key),
        wake: None,
    }
}
