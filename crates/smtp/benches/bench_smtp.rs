//! SMTP throughput: messages per second accepted over real TCP (and TLS) sockets and durably
//! stored, for 4 KiB and 100 KiB messages with 1 and 20 concurrent sessions, and peak RSS.
//!
//! Each case gets a fresh store on a temp dir, a real server (`Server::bind`, port 0) and
//! clients that pipeline MAIL, RCPT and DATA (RFC 2920) and wait for the final `250`, which
//! the server sends only after the group commit that holds the message.
//!
//! `cargo bench -p letterlock-smtp --bench bench-smtp [-- --scale 0.2]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use letterlock_crypto::kdf::KdfParams;
use letterlock_mailstore::{MailStore, StoreOptions};
use letterlock_server::config::ListenAddress;
use letterlock_server::{tls, Config, Handlers, Server, Service};
use letterlock_smtp::Settings;
use letterlock_storage::embedded::EmbeddedEngine;
use letterlock_types::{Domain, EmailAddress, Secret};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const PASSWORD: &str = "bench password 1234";

struct Case {
    label: &'static str,
    message_bytes: usize,
    sessions: usize,
    messages: usize,
    tls_submission: bool,
}

fn message_of(size: usize, index: usize) -> Vec<u8> {
    let mut message = format!(
        "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: bench {index}\r\nMessage-ID: <{index}@bench>\r\n\r\n"
    )
    .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    while message.len() + line.len() <= size {
        message.extend_from_slice(line);
    }
    message
}

async fn read_reply<S: AsyncRead + Unpin>(reader: &mut BufReader<S>) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return all;
        }
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] == b' ' {
            return all;
        }
    }
}

async fn expect<S: AsyncRead + Unpin>(reader: &mut BufReader<S>, code: &str) {
    let reply = read_reply(reader).await;
    assert!(reply.starts_with(code), "expected {code}, got {reply:?}");
}

/// One client session: send `count` messages, each acknowledged before the next.
async fn client<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    count: usize,
    size: usize,
    first_index: usize,
    login: bool,
) {
    let mut reader = BufReader::new(stream);
    expect(&mut reader, "220").await;
    reader
        .get_mut()
        .write_all(b"EHLO bench.example\r\n")
        .await
        .expect("write");
    expect(&mut reader, "250").await;
    if login {
        let plain = base64_plain("alice@example.org", PASSWORD);
        reader
            .get_mut()
            .write_all(format!("AUTH PLAIN {plain}\r\n").as_bytes())
            .await
            .expect("write");
        expect(&mut reader, "235").await;
    }
    for index in first_index..first_index + count {
        let mut batch =
            b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n".to_vec();
        reader.get_mut().write_all(&batch).await.expect("write");
        expect(&mut reader, "250").await;
        expect(&mut reader, "250").await;
        expect(&mut reader, "354").await;
        batch.clear();
        batch.extend_from_slice(&message_of(size, index));
        batch.extend_from_slice(b".\r\n");
        reader.get_mut().write_all(&batch).await.expect("write");
        expect(&mut reader, "250").await;
    }
    reader
        .get_mut()
        .write_all(b"QUIT\r\n")
        .await
        .expect("write");
    expect(&mut reader, "221").await;
}

fn base64_plain(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

async fn run_case(case: &Case) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = EmbeddedEngine::open(dir.path()).expect("engine");
    let store = MailStore::new(
        Arc::new(engine),
        StoreOptions {
            kdf: KdfParams::INSECURE_FOR_TESTS,
            message_size_max_bytes: 1024 * 1024,
        },
    );
    store
        .add_domain(&Domain::try_from("example.org").expect("domain"))
        .expect("domain");
    for user in ["alice@example.org", "bob@example.org"] {
        store
            .add_user(
                &EmailAddress::try_from(user).expect("address"),
                &Secret::from(PASSWORD),
                0,
                None,
            )
            .expect("user");
    }
    let mut config = Config::default_for(dir.path());
    for service in Service::ALL {
        config.listen.set_address(service, ListenAddress::Disabled);
    }
    let service = if case.tls_submission {
        Service::SubmissionTls
    } else {
        Service::Smtp
    };
    config.listen.set_address(
        service,
        ListenAddress::At("127.0.0.1:0".parse().expect("address")),
    );
    config.limits.connections_per_ip_max = 1000;
    let identity = tls::load_or_generate(&config, dir.path()).expect("tls");
    let settings = Settings {
        message_size_max_bytes: 1024 * 1024,
        ..Settings::default()
    };
    let handler = letterlock_smtp::handler(store.clone(), settings).expect("handler");
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
    let address = server.local_address(service).expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let connector = connector(&identity.certificate_path);

    let per_session = case.messages / case.sessions;
    let started = Instant::now();
    let mut clients = Vec::new();
    for session in 0..case.sessions {
        let connector = connector.clone();
        let size = case.message_bytes;
        let tls_submission = case.tls_submission;
        clients.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(address).await.expect("connect");
            tcp.set_nodelay(true).ok();
            if tls_submission {
                let name = ServerName::try_from("localhost").expect("name");
                let tls = connector.connect(name, tcp).await.expect("handshake");
                client(tls, per_session, size, session * per_session, true).await;
            } else {
                client(tcp, per_session, size, session * per_session, false).await;
            }
        }));
    }
    for client in clients {
        client.await.expect("client");
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), running).await;
    (per_session * case.sessions) as f64 / elapsed.as_secs_f64()
}

fn connector(certificate: &std::path::Path) -> tokio_rustls::TlsConnector {
    let pem = std::fs::read(certificate).expect("certificate");
    let mut roots = rustls::RootCertStore::empty();
    for certificate in
        <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(
            &pem,
        )
    {
        roots.add(certificate.expect("PEM")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

fn main() {
    let mut scale = 1.0f64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--scale" {
            scale = args
                .next()
                .and_then(|value| value.parse().ok())
                .unwrap_or(1.0);
        }
    }
    let scaled = |count: usize| ((count as f64 * scale) as usize).max(20);
    let cases = [
        Case {
            label: "MX plain, 4 KiB, 1 session",
            message_bytes: 4096,
            sessions: 1,
            messages: scaled(1000),
            tls_submission: false,
        },
        Case {
            label: "MX plain, 4 KiB, 20 sessions",
            message_bytes: 4096,
            sessions: 20,
            messages: scaled(10_000),
            tls_submission: false,
        },
        Case {
            label: "MX plain, 100 KiB, 1 session",
            message_bytes: 100 * 1024,
            sessions: 1,
            messages: scaled(300),
            tls_submission: false,
        },
        Case {
            label: "MX plain, 100 KiB, 20 sessions",
            message_bytes: 100 * 1024,
            sessions: 20,
            messages: scaled(2000),
            tls_submission: false,
        },
        Case {
            label: "submission TLS, 4 KiB, 20 sessions",
            message_bytes: 4096,
            sessions: 20,
            messages: scaled(4000),
            tls_submission: true,
        },
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("{:<38} {:>10} {:>12}", "case", "messages", "msg/s");
    for case in &cases {
        let rate = runtime.block_on(run_case(case));
        println!(
            "{:<38} {:>10} {:>12.0}",
            case.label,
            case.messages / case.sessions * case.sessions,
            rate
        );
    }
    println!("peak RSS: {:.0} MiB", peak_rss_mib());
}
