//! What the queue's integration tests share: a store with alice@example.org, a queue on it,
//! a runner pointed at 127.0.0.1 through the map resolver, and a scripted SMTP receiver that
//! can offer STARTTLS with a given certificate.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use letterlock_crypto::kdf::KdfParams;
use letterlock_mailstore::{MailStore, StoreOptions};
use letterlock_queue::client::{ClientSettings, Timeouts};
use letterlock_queue::{MapResolver, Queue, QueueSettings, Runner, RunnerSettings, SpoolKey};
use letterlock_storage::embedded::EmbeddedEngine;
use letterlock_storage::Engine;
use letterlock_types::{Domain, EmailAddress, MailboxName, Secret};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub const ALICE: &str = "alice@example.org";
pub const PASSWORD: &str = "correct horse battery";
pub const CANARY: &str = "CANARY-7f3a9c-outbound-secret";

pub fn address(text: &str) -> EmailAddress {
    EmailAddress::try_from(text).expect("address")
}

pub fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: {ALICE}\r\nTo: carol@remote.test\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.org>\r\n\r\nThe body says {CANARY}.\r\n.leading dot line\r\n"
    )
    .into_bytes()
}

/// Alice's message `subject` for carol@remote.test, queued.
pub fn enqueue_for_carol(setup: &Setup, subject: &str) -> letterlock_queue::QueueId {
    setup
        .queue
        .enqueue(
            Some(address(ALICE)),
            &[address("carol@remote.test")],
            false,
            &message(subject),
        )
        .expect("enqueue")
}

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub engine: Arc<dyn Engine>,
    pub store: MailStore,
    pub queue: Queue,
    pub key: SpoolKey,
}

pub fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SpoolKey::generate();
    open(dir, key)
}

pub fn open(dir: tempfile::TempDir, key: SpoolKey) -> Setup {
    let engine: Arc<dyn Engine> = Arc::new(EmbeddedEngine::open(dir.path()).expect("engine"));
    let store = MailStore::new(
        Arc::clone(&engine),
        StoreOptions {
            kdf: KdfParams::INSECURE_FOR_TESTS,
            message_size_max_bytes: 4 * 1024 * 1024,
        },
    );
    let domain = Domain::try_from("example.org").expect("domain");
    if !store.has_domain(&domain).expect("has domain") {
        store.add_domain(&domain).expect("domain");
        store
            .add_user(&address(ALICE), &Secret::from(PASSWORD), 0, None)
            .expect("user");
    }
    let queue = Queue::new(Arc::clone(&engine), &key, QueueSettings::default());
    Setup {
        dir,
        engine,
        store,
        queue,
        key,
    }
}

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

pub fn inbox(store: &MailStore, user: &str) -> Vec<Vec<u8>> {
    let unlocked = store
        .unlock(&address(user), &Secret::from(PASSWORD))
        .expect("unlock");
    let inbox = MailboxName::inbox();
    unlocked
        .list_messages(&inbox)
        .expect("list")
        .iter()
        .map(|summary| unlocked.fetch(&inbox, summary.uid).expect("fetch"))
        .collect()
}

/// A scripted SMTP receiver: `reply_to_rcpt(connection number, address)` decides each RCPT;
/// messages that reach the end of DATA are kept, with whether they came over TLS. With an
/// acceptor it offers STARTTLS and upgrades with it.
pub struct FakeReceiver {
    pub address: SocketAddr,
    pub messages: Arc<Mutex<Vec<Vec<u8>>>>,
    pub over_tls: Arc<Mutex<Vec<bool>>>,
    pub connections: Arc<Mutex<u32>>,
    /// Every command line received, in order.
    pub commands: Arc<Mutex<Vec<String>>>,
    /// The most sessions that were open at once.
    pub sessions_max: Arc<AtomicUsize>,
}

type ReplyToRcpt = Arc<dyn Fn(u32, &str) -> String + Send + Sync>;

#[derive(Clone)]
struct Shared {
    messages: Arc<Mutex<Vec<Vec<u8>>>>,
    over_tls: Arc<Mutex<Vec<bool>>>,
    commands: Arc<Mutex<Vec<String>>>,
    extensions: Vec<String>,
    /// How long the reply to the end of DATA waits (a slow receiver).
    data_delay: Duration,
    reply_to_rcpt: ReplyToRcpt,
}

impl FakeReceiver {
    pub async fn start(
        tls: Option<TlsAcceptor>,
        reply_to_rcpt: impl Fn(u32, &str) -> String + Send + Sync + 'static,
    ) -> FakeReceiver {
        FakeReceiver::start_advertising(tls, &[], reply_to_rcpt).await
    }

    /// [`FakeReceiver::start`], with `extensions` added to its EHLO reply.
    pub async fn start_advertising(
        tls: Option<TlsAcceptor>,
        extensions: &[&str],
        reply_to_rcpt: impl Fn(u32, &str) -> String + Send + Sync + 'static,
    ) -> FakeReceiver {
        FakeReceiver::launch(tls, extensions, Duration::ZERO, reply_to_rcpt).await
    }

    /// A receiver that takes `data_delay` to answer each message.
    pub async fn start_slow(data_delay: Duration) -> FakeReceiver {
        FakeReceiver::launch(None, &[], data_delay, |_, _| "250 2.1.5 ok".into()).await
    }

    async fn launch(
        tls: Option<TlsAcceptor>,
        extensions: &[&str],
        data_delay: Duration,
        reply_to_rcpt: impl Fn(u32, &str) -> String + Send + Sync + 'static,
    ) -> FakeReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let shared = Shared {
            messages: Arc::new(Mutex::new(Vec::new())),
            over_tls: Arc::new(Mutex::new(Vec::new())),
            commands: Arc::new(Mutex::new(Vec::new())),
            extensions: extensions.iter().map(|name| name.to_string()).collect(),
            data_delay,
            reply_to_rcpt: Arc::new(reply_to_rcpt),
        };
        let connections = Arc::new(Mutex::new(0u32));
        let open = Arc::new(AtomicUsize::new(0));
        let sessions_max = Arc::new(AtomicUsize::new(0));
        let (receiver_shared, counted) = (shared.clone(), Arc::clone(&connections));
        let (open_now, most) = (Arc::clone(&open), Arc::clone(&sessions_max));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let number = {
                    let mut count = counted.lock().expect("lock");
                    *count += 1;
                    *count
                };
                let (shared, tls) = (receiver_shared.clone(), tls.clone());
                let (open_now, most) = (Arc::clone(&open_now), Arc::clone(&most));
                tokio::spawn(async move {
                    let now_open = open_now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now_open, Ordering::SeqCst);
                    let upgrade = serve(stream, true, tls.is_some(), number, &shared).await;
                    if let (Some(plain), Some(acceptor)) = (upgrade, tls) {
                        // A failed handshake (the client refused the certificate) ends it.
                        if let Ok(secure) = acceptor.accept(plain).await {
                            serve(secure, false, false, number, &shared).await;
                        }
                    }
                    open_now.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        FakeReceiver {
            address,
            messages: shared.messages,
            over_tls: shared.over_tls,
            connections,
            commands: shared.commands,
            sessions_max,
        }
    }

    /// A receiver that offers STARTTLS with `certificate` and accepts every recipient.
    pub async fn accepting_tls(
        certificate: (
            rustls::pki_types::CertificateDer<'static>,
            rustls::pki_types::PrivateKeyDer<'static>,
        ),
    ) -> FakeReceiver {
        let (certificate, key) = certificate;
        let tls = letterlock_queue::testing::acceptor(vec![certificate], key);
        FakeReceiver::start(Some(tls), |_, _| "250 2.1.5 ok".into()).await
    }

    pub fn delivered(&self) -> Vec<Vec<u8>> {
        self.messages.lock().expect("lock").clone()
    }
}

/// One session (or its part before STARTTLS); returns the stream when the client asked for
/// STARTTLS and was told to go ahead.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    greet: bool,
    offer_starttls: bool,
    number: u32,
    shared: &Shared,
) -> Option<S> {
    let mut lines = BufReader::new(stream);
    if greet {
        let _ = lines.get_mut().write_all(b"220 fake ESMTP\r\n").await;
    }
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
            return None;
        }
        let command = line.trim_end().to_string();
        shared.commands.lock().expect("lock").push(command.clone());
        let upper = command.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            let mut lines = vec!["fake".to_string(), "PIPELINING".into()];
            lines.extend(shared.extensions.iter().cloned());
            lines.push(
                if offer_starttls {
                    "STARTTLS"
                } else {
                    "8BITMIME"
                }
                .into(),
            );
            let last = lines.len() - 1;
            lines
                .iter()
                .enumerate()
                .map(|(index, line)| format!("250{}{line}", if index == last { ' ' } else { '-' }))
                .collect::<Vec<_>>()
                .join("\r\n")
        } else if upper == "STARTTLS" && offer_starttls {
            let _ = lines.get_mut().write_all(b"220 2.0.0 go ahead\r\n").await;
            return Some(lines.into_inner());
        } else if upper.starts_with("MAIL") {
            "250 2.1.0 ok".into()
        } else if upper.starts_with("RCPT") {
            let rcpt = command
                .split('<')
                .nth(1)
                .and_then(|rest| rest.split('>').next())
                .unwrap_or("")
                .to_string();
            (shared.reply_to_rcpt)(number, &rcpt)
        } else if upper == "DATA" {
            let _ = lines.get_mut().write_all(b"354 go ahead\r\n").await;
            let mut data = Vec::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return None;
                }
                if line == ".\r\n" {
                    break;
                }
                data.extend_from_slice(line.as_bytes());
            }
            tokio::time::sleep(shared.data_delay).await;
            shared.messages.lock().expect("lock").push(data);
            shared.over_tls.lock().expect("lock").push(!greet);
            "250 2.0.0 queued".into()
        } else if upper == "QUIT" {
            let _ = lines.get_mut().write_all(b"221 bye\r\n").await;
            return None;
        } else {
            "502 5.5.1 not here".into()
        };
        let _ = lines
            .get_mut()
            .write_all(format!("{reply}\r\n").as_bytes())
            .await;
    }
}

pub fn client_settings(port: u16, roots: rustls::RootCertStore) -> ClientSettings {
    ClientSettings {
        hostname: "mx.example.org".into(),
        port,
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            command: Duration::from_secs(10),
            data_end: Duration::from_secs(10),
        },
        roots: Arc::new(roots),
    }
}

pub fn runner(setup: &Setup, port: u16, resolver: MapResolver) -> Runner {
    runner_with(
        setup,
        RunnerSettings::new(client_settings(port, rustls::RootCertStore::empty())),
        resolver,
    )
}

pub fn runner_with(setup: &Setup, settings: RunnerSettings, resolver: MapResolver) -> Runner {
    Runner::new(
        setup.queue.clone(),
        setup.store.clone(),
        Arc::new(resolver),
        settings,
    )
}

pub fn resolver_to_localhost() -> MapResolver {
    MapResolver::default()
        .with_mx("remote.test", 10, "mx.remote.test")
        .with_ip("mx.remote.test", "127.0.0.1".parse().expect("ip"))
}
