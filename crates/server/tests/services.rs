//! Every service over its real transport: a real server on 127.0.0.1 (port 0), real clients,
//! and real TLS with a client that verifies the generated certificate for `localhost`.

use std::fs;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use letterlock_server::config::ListenAddress;
use letterlock_server::{
    tls, Config, Connection, Handlers, ServeError, Server, Service, SessionFuture, SessionHandler,
    Transport,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Generous for a loopback exchange; a hang fails the test rather than the run.
const CLIENT_TIMEOUT_SECS: u64 = 10;

struct Running {
    server_addresses: Vec<(Service, SocketAddr)>,
    connector: TlsConnector,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
    _data: tempfile::TempDir,
}

impl Running {
    async fn start(adjust: impl FnOnce(&mut Config)) -> Running {
        Running::start_with(adjust, Handlers::default()).await
    }

    async fn start_with(adjust: impl FnOnce(&mut Config), handlers: Handlers) -> Running {
        let data = tempfile::tempdir().expect("tempdir");
        let mut config = Config::default_for(data.path());
        for service in Service::ALL {
            config.listen.set_address(
                service,
                ListenAddress::At("127.0.0.1:0".parse().expect("address")),
            );
        }
        adjust(&mut config);
        config.validate().expect("valid test config");
        let identity = tls::load_or_generate(&config, data.path()).expect("tls");
        let server = Server::bind(&config, Arc::clone(&identity.server_config), handlers)
            .await
            .expect("bind");
        let server_addresses = server
            .listeners()
            .iter()
            .map(|info| (info.service, info.address))
            .collect();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Running {
            server_addresses,
            connector: connector_trusting(&identity.certificate_path),
            stop: Some(stop),
            task,
            _data: data,
        }
    }

    fn address(&self, service: Service) -> SocketAddr {
        self.server_addresses
            .iter()
            .find(|(known, _)| *known == service)
            .map(|(_, address)| *address)
            .expect("service is bound")
    }

    async fn plain(&self, service: Service) -> TcpStream {
        TcpStream::connect(self.address(service))
            .await
            .expect("connect")
    }

    async fn tls(&self, service: Service) -> TlsStream<TcpStream> {
        let tcp = self.plain(service).await;
        let name = ServerName::try_from("localhost").expect("name");
        within(self.connector.connect(name, tcp))
            .await
            .expect("TLS handshake")
    }

    /// Asks the server to stop and returns how long `run` took to return.
    async fn stop(mut self) -> Duration {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        within(self.task)
            .await
            .expect("server task")
            .expect("run returns Ok");
        started.elapsed()
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

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(CLIENT_TIMEOUT_SECS), future)
        .await
        .expect("timed out")
}

/// The first line the server sends, and then that the server closes.
async fn greeting_then_close<S: AsyncRead + Unpin>(stream: S) -> String {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    within(reader.read_line(&mut line))
        .await
        .expect("read greeting");
    let mut rest = Vec::new();
    within(reader.read_to_end(&mut rest))
        .await
        .expect("read to close");
    assert!(
        rest.is_empty(),
        "unexpected bytes after the greeting: {rest:?}"
    );
    line
}

/// Sends an HTTP request and returns the whole response.
async fn http_exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, request: &str) -> String {
    within(stream.write_all(request.as_bytes()))
        .await
        .expect("send request");
    let mut response = Vec::new();
    within(stream.read_to_end(&mut response))
        .await
        .expect("read response");
    String::from_utf8(response).expect("utf-8")
}

const SMTP_UNAVAILABLE: &str = "421 4.3.2 localhost Letterlock: SMTP is not available yet\r\n";
const IMAP_UNAVAILABLE: &str = "* BYE [UNAVAILABLE] Letterlock: IMAP is not available yet\r\n";
const POP3_UNAVAILABLE: &str = "-ERR [SYS/TEMP] Letterlock: POP3 is not available yet\r\n";

#[tokio::test]
async fn plaintext_services_greet_with_not_available_yet() {
    let running = Running::start(|_| {}).await;
    for (service, expected) in [
        (Service::Smtp, SMTP_UNAVAILABLE),
        (Service::SubmissionStarttls, SMTP_UNAVAILABLE),
        (Service::Imap, IMAP_UNAVAILABLE),
        (Service::Pop3, POP3_UNAVAILABLE),
    ] {
        let greeting = greeting_then_close(running.plain(service).await).await;
        assert_eq!(greeting, expected, "{service}");
    }
    running.stop().await;
}

#[tokio::test]
async fn implicit_tls_services_greet_after_a_verified_handshake() {
    let running = Running::start(|_| {}).await;
    for (service, expected) in [
        (Service::SubmissionTls, SMTP_UNAVAILABLE),
        (Service::Imaps, IMAP_UNAVAILABLE),
        (Service::Pop3s, POP3_UNAVAILABLE),
    ] {
        let stream = running.tls(service).await;
        let (_, session) = stream.get_ref();
        assert!(session.protocol_version().is_some(), "{service}");
        let greeting = greeting_then_close(stream).await;
        assert_eq!(greeting, expected, "{service}");
    }
    running.stop().await;
}

#[tokio::test]
async fn https_answers_503_after_reading_the_request_head() {
    let running = Running::start(|_| {}).await;
    let response = http_exchange(
        running.tls(Service::Https).await,
        "GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n",
    )
    .await;
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nConnection: close"), "{head}");
    assert!(
        head.contains(&format!("\r\nContent-Length: {}", body.len())),
        "{head}"
    );
    assert!(body.contains("not available yet"), "{body}");

    let response = http_exchange(
        running.tls(Service::Https).await,
        "HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 503 "), "{response}");
    assert!(
        response.ends_with("\r\n\r\n"),
        "no body after HEAD: {response}"
    );
    running.stop().await;
}

#[tokio::test]
async fn tls_1_2_is_accepted_and_the_certificate_is_really_checked() {
    let running = Running::start(|_| {}).await;

    let pem = fs::read(running._data.path().join("tls").join("cert.pem")).expect("read");
    let mut roots = RootCertStore::empty();
    for certificate in
        <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(
            &pem,
        )
    {
        roots.add(certificate.expect("PEM")).expect("anchor");
    }
    let tls12_only = ClientConfig::builder_with_provider(tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(tls12_only));
    let tcp = running.plain(Service::Imaps).await;
    let name = ServerName::try_from("127.0.0.1").expect("IP name");
    let stream = within(connector.connect(name, tcp))
        .await
        .expect("TLS 1.2 handshake");
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(greeting_then_close(stream).await, IMAP_UNAVAILABLE);

    // A name the certificate does not cover must fail verification.
    let tcp = running.plain(Service::Imaps).await;
    let wrong = ServerName::try_from("mail.example.net").expect("name");
    let result = within(running.connector.connect(wrong, tcp)).await;
    assert!(
        result.is_err(),
        "a certificate for localhost verified for another name"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_client_over_its_connection_limit_gets_the_busy_reply() {
    let running = Running::start(|config| config.limits.connections_per_ip_max = 2).await;
    // Two HTTPS connections that never send a request hold their places.
    let held = [
        running.tls(Service::Https).await,
        running.tls(Service::Https).await,
    ];

    let busy = greeting_then_close(running.plain(Service::Smtp).await).await;
    assert_eq!(
        busy,
        "421 4.7.0 localhost Letterlock: too many connections from your address, try again later\r\n"
    );
    let busy = greeting_then_close(running.plain(Service::Imap).await).await;
    assert!(busy.starts_with("* BYE [UNAVAILABLE] "), "{busy}");
    let busy = greeting_then_close(running.tls(Service::Pop3s).await).await;
    assert!(busy.starts_with("-ERR [SYS/TEMP] "), "{busy}");
    let response = http_exchange(
        running.tls(Service::Https).await,
        "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 503 "), "{response}");
    assert!(response.contains("\r\nRetry-After: "), "{response}");

    // Once the held connections close, their places are free again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(CLIENT_TIMEOUT_SECS);
    loop {
        let greeting = greeting_then_close(running.plain(Service::Smtp).await).await;
        if greeting == SMTP_UNAVAILABLE {
            break;
        }
        assert!(Instant::now() < deadline, "places never freed: {greeting}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await;
}

#[tokio::test]
async fn the_total_connection_limit_applies_across_services() {
    let running = Running::start(|config| config.limits.connections_max = 1).await;
    let _held = running.tls(Service::Https).await;
    let busy = greeting_then_close(running.plain(Service::Pop3).await).await;
    assert_eq!(
        busy,
        "-ERR [SYS/TEMP] Letterlock: too many connections, try again later\r\n"
    );
    running.stop().await;
}

#[tokio::test]
async fn shutdown_returns_promptly_with_connections_open() {
    let running = Running::start(|_| {}).await;
    // One connection waiting for an HTTP request, one in the middle of a TLS handshake
    // (connected, nothing sent), one that has its greeting and does not close.
    let _waiting_request = running.tls(Service::Https).await;
    let _mid_handshake = running.plain(Service::Imaps).await;
    let mut lingering = running.plain(Service::Smtp).await;
    let mut greeting = [0u8; 3];
    within(lingering.read_exact(&mut greeting))
        .await
        .expect("greeting");
    let smtp = running.address(Service::Smtp);

    let took = running.stop().await;
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    assert!(
        TcpStream::connect(smtp).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn a_disabled_service_is_not_bound() {
    let running = Running::start(|config| {
        config.listen.pop3 = ListenAddress::Disabled;
        config.listen.pop3s = ListenAddress::Disabled;
    })
    .await;
    let services: Vec<Service> = running.server_addresses.iter().map(|(s, _)| *s).collect();
    assert_eq!(services.len(), Service::ALL.len() - 2);
    assert!(!services.contains(&Service::Pop3));
    assert!(!services.contains(&Service::Pop3s));
    running.stop().await;
}

#[tokio::test]
async fn a_busy_address_is_an_error_naming_the_service_and_address() {
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").expect("occupy");
    let address = occupied.local_addr().expect("address");
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default_for(data.path());
    for service in Service::ALL {
        config.listen.set_address(
            service,
            ListenAddress::At("127.0.0.1:0".parse().expect("address")),
        );
    }
    config.listen.imaps = ListenAddress::At(address);
    let identity = tls::load_or_generate(&config, data.path()).expect("tls");

    let error = match Server::bind(&config, identity.server_config, Handlers::default()).await {
        Ok(_) => panic!("bound an address in use"),
        Err(error) => error,
    };
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "imaps: cannot listen on {address}: address in use"
        )),
        "{message}"
    );
}

#[tokio::test]
async fn serve_takes_the_tls_identity_and_returns_ok_on_shutdown() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default_for(data.path());
    for service in Service::ALL {
        config.listen.set_address(service, ListenAddress::Disabled);
    }
    config.listen.imaps = ListenAddress::At("127.0.0.1:0".parse().expect("address"));
    let identity = tls::load_or_generate(&config, data.path()).expect("tls");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(letterlock_server::serve(
        config,
        identity,
        Handlers::default(),
        async {
            let _ = stopped.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = stop.send(());
    within(task).await.expect("task").expect("serve returns Ok");
}

/// A handler that says which transport and service it was given, then ends the session.
struct Reporter;

impl SessionHandler for Reporter {
    fn run(&self, connection: Connection) -> SessionFuture {
        Box::pin(async move {
            let line = |transport: &str| {
                format!(
                    "220 {} {} {}\r\n",
                    connection.service, transport, connection.hostname
                )
            };
            match connection.transport {
                Transport::Plain(mut stream) => {
                    let _ = stream.write_all(line("plain").as_bytes()).await;
                    let _ = stream.shutdown().await;
                }
                Transport::Tls(mut stream) => {
                    let _ = stream.write_all(line("tls").as_bytes()).await;
                    let _ = stream.shutdown().await;
                }
            }
        })
    }
}

#[tokio::test]
async fn a_registered_handler_gets_the_connection_after_the_implicit_handshake() {
    let handlers = Handlers {
        smtp: Some(Arc::new(Reporter)),
        ..Handlers::default()
    };
    let running = Running::start_with(|_| {}, handlers).await;
    let greeting = within(greeting_then_close(running.plain(Service::Smtp).await)).await;
    assert!(
        greeting.starts_with("220 smtp plain localhost"),
        "{greeting:?}"
    );
    let greeting = within(greeting_then_close(
        running.tls(Service::SubmissionTls).await,
    ))
    .await;
    assert!(
        greeting.starts_with("220 submission_tls tls localhost"),
        "{greeting:?}"
    );
    // Protocols without a handler still refuse politely.
    let greeting = within(greeting_then_close(running.plain(Service::Imap).await)).await;
    assert!(greeting.starts_with("* BYE"), "{greeting:?}");
    running.stop().await;
}
