//! A real server on 127.0.0.1 (port 0) with real TLS, a mail store in a temporary directory,
//! and a small IMAP client that sends tagged commands and reads responses with literals.
#![allow(dead_code)]

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use letterlock_crypto::kdf::KdfParams;
use letterlock_imap::ImapSettings;
use letterlock_mailstore::{MailStore, StoreOptions};
use letterlock_server::config::ListenAddress;
use letterlock_server::{tls, Config, Handlers, Server, Service};
use letterlock_storage::embedded::EmbeddedEngine;
use letterlock_types::{Domain, EmailAddress, Secret};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;

pub const USER: &str = "alice@example.org";
pub const PASSWORD: &str = "correct horse battery";
/// APPENDLIMIT in the tests: small, so a too-large literal is cheap to try.
pub const MESSAGE_SIZE_MAX_BYTES: usize = 1024 * 1024;
/// Generous for loopback; a hang fails the test rather than the run.
pub const CLIENT_TIMEOUT_SECS: u64 = 20;

pub struct TestServer {
    pub store: MailStore,
    pub imaps: SocketAddr,
    pub imap: SocketAddr,
    pub certificate_path: PathBuf,
    pub connector: TlsConnector,
    stop: Option<oneshot::Sender<()>>,
    pub data: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn address(text: &str) -> EmailAddress {
    EmailAddress::try_from(text).expect("address")
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default_for(data.path());
    for service in Service::ALL {
        config.listen.set_address(
            service,
            ListenAddress::At("127.0.0.1:0".parse().expect("address")),
        );
    }
    config.limits.message_size_max_bytes = MESSAGE_SIZE_MAX_BYTES;
    adjust(&mut config);
    config.validate().expect("valid config");
    let engine = EmbeddedEngine::open(&data.path().join("store")).expect("engine");
    let store = MailStore::new(
        Arc::new(engine),
        StoreOptions {
            kdf: KdfParams::INSECURE_FOR_TESTS,
            message_size_max_bytes: MESSAGE_SIZE_MAX_BYTES,
        },
    );
    store
        .add_domain(&Domain::try_from("example.org").expect("domain"))
        .expect("domain");
    store
        .add_user(&address(USER), &Secret::from(PASSWORD), 0, None)
        .expect("user");
    let identity = tls::load_or_generate(&config, data.path()).expect("tls");
    let handlers = Handlers {
        imap: Some(letterlock_imap::handler(
            store.clone(),
            ImapSettings::from_config(&config),
        )),
        ..Handlers::default()
    };
    let server = Server::bind(&config, Arc::clone(&identity.server_config), handlers)
        .await
        .expect("bind");
    let find = |wanted: Service| {
        server
            .listeners()
            .iter()
            .find(|info| info.service == wanted)
            .map(|info| info.address)
            .expect("bound")
    };
    let imaps = find(Service::Imaps);
    let imap = find(Service::Imap);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    TestServer {
        store,
        imaps,
        imap,
        connector: connector_trusting(&identity.certificate_path),
        certificate_path: identity.certificate_path.clone(),
        stop: Some(stop),
        data,
    }
}

fn connector_trusting(certificate_path: &std::path::Path) -> TlsConnector {
    let pem = fs::read(certificate_path).expect("read certificate");
    let mut roots = RootCertStore::empty();
    for certificate in
        <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(
            &pem,
        )
    {
        roots.add(certificate.expect("PEM")).expect("trust anchor");
    }
    let config = ClientConfig::builder_with_provider(tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

pub async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(CLIENT_TIMEOUT_SECS), future)
        .await
        .expect("timed out")
}

pub fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Bob Example <bob@example.net>\r\nTo: Alice <alice@example.org>\r\nSubject: {subject}\r\nDate: Tue, 24 Nov 2026 08:00:00 +0000\r\nMessage-ID: <{subject}@example.net>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

pub type Stream = Box<dyn Io>;
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A minimal IMAP client: one response is a line plus any literals it announces.
pub struct Client {
    pub reader: BufReader<Stream>,
    tag: u32,
    pub greeting: String,
}

/// What a tagged command got back.
#[derive(Debug)]
pub struct Reply {
    pub untagged: Vec<Vec<u8>>,
    pub tagged: String,
}

impl Reply {
    pub fn ok(&self) -> bool {
        self.tagged.split(' ').nth(1) == Some("OK")
    }

    pub fn untagged_text(&self) -> String {
        self.untagged
            .iter()
            .map(|line| String::from_utf8_lossy(line).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn assert_ok(&self) -> &Reply {
        assert!(
            self.ok(),
            "expected OK: {}\n{}",
            self.tagged,
            self.untagged_text()
        );
        self
    }
}

impl Client {
    pub async fn tls(server: &TestServer) -> Client {
        let tcp = TcpStream::connect(server.imaps).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        let stream = within(server.connector.connect(name, tcp))
            .await
            .expect("TLS");
        Client::over(Box::new(stream)).await
    }

    pub async fn plain(server: &TestServer) -> Client {
        let tcp = TcpStream::connect(server.imap).await.expect("connect");
        Client::over(Box::new(tcp)).await
    }

    pub async fn over(stream: Stream) -> Client {
        let mut client = Client {
            reader: BufReader::new(stream),
            tag: 0,
            greeting: String::new(),
        };
        client.greeting = String::from_utf8_lossy(&client.read_response().await).into_owned();
        client
    }

    pub async fn logged_in(server: &TestServer) -> Client {
        let mut client = Client::tls(server).await;
        client
            .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
            .await
            .assert_ok();
        client
    }

    /// STARTTLS on a plain connection, then the TLS handshake.
    pub async fn start_tls(mut self, server: &TestServer) -> Client {
        self.command("STARTTLS").await.assert_ok();
        let stream = self.reader.into_inner();
        let name = ServerName::try_from("localhost").expect("name");
        let tls = within(server.connector.connect(name, stream))
            .await
            .expect("TLS");
        Client {
            reader: BufReader::new(Box::new(tls)),
            tag: self.tag,
            greeting: self.greeting,
        }
    }

    /// One response: a line, and the literals it carries, inline.
    pub async fn read_response(&mut self) -> Vec<u8> {
        let mut response = Vec::new();
        loop {
            let mut line = Vec::new();
            let read = within(self.reader.read_until(b'\n', &mut line))
                .await
                .expect("read");
            assert!(
                read > 0,
                "connection closed; so far: {}",
                String::from_utf8_lossy(&response)
            );
            response.extend_from_slice(&line);
            let trimmed = line.strip_suffix(b"\r\n").unwrap_or(&line);
            let literal = trimmed
                .strip_suffix(b"}")
                .and_then(|rest| {
                    rest.iter()
                        .rposition(|&b| b == b'{')
                        .map(|open| &rest[open + 1..])
                })
                .and_then(|digits| std::str::from_utf8(digits).ok()?.parse::<usize>().ok());
            match literal {
                Some(size) => {
                    let mut data = vec![0; size];
                    within(self.reader.read_exact(&mut data))
                        .await
                        .expect("literal");
                    response.extend_from_slice(&data);
                }
                None => {
                    while response.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        response.pop();
                    }
                    return response;
                }
            }
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let stream = self.reader.get_mut();
        within(stream.write_all(bytes)).await.expect("write");
        within(stream.flush()).await.expect("flush");
    }

    pub fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("t{}", self.tag)
    }

    /// Send `tag text` and read until the tagged response.
    pub async fn command(&mut self, text: &str) -> Reply {
        let tag = self.next_tag();
        self.send_raw(format!("{tag} {text}\r\n").as_bytes()).await;
        self.until_tagged(&tag).await
    }

    pub async fn until_tagged(&mut self, tag: &str) -> Reply {
        let mut untagged = Vec::new();
        loop {
            let response = self.read_response().await;
            if response.starts_with(format!("{tag} ").as_bytes()) {
                return Reply {
                    untagged,
                    tagged: String::from_utf8_lossy(&response).into_owned(),
                };
            }
            untagged.push(response);
        }
    }

    /// APPEND with a synchronizing literal.
    pub async fn append(&mut self, mailbox: &str, flags: &str, message: &[u8]) -> Reply {
        let tag = self.next_tag();
        self.send_raw(
            format!("{tag} APPEND {mailbox} ({flags}) {{{}}}\r\n", message.len()).as_bytes(),
        )
        .await;
        let continuation = self.read_response().await;
        if !continuation.starts_with(b"+") {
            return Reply {
                untagged: Vec::new(),
                tagged: String::from_utf8_lossy(&continuation).into_owned(),
            };
        }
        self.send_raw(message).await;
        self.send_raw(b"\r\n").await;
        self.until_tagged(&tag).await
    }
}

impl Client {
    /// A client on a stream whose greeting was already read (after STARTTLS).
    pub fn over_without_greeting(stream: Stream) -> Client {
        Client {
            reader: BufReader::new(stream),
            tag: 100,
            greeting: String::new(),
        }
    }
}
