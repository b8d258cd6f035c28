//! IMAP benchmark: a real server in-process, a real TLS client over loopback, a mailbox
//! filled with `deliver_many`. Prints logins per second (fresh: one Argon2id run each;
//! cached: the unlock cache), the time to SELECT and to `FETCH 1:* (FLAGS ENVELOPE)` (cold,
//! when each message costs one public-key operation, then warm), and `SEARCH BODY`.
//!
//! `cargo run --release -p letterlock-imap --bin bench-imap -- --messages 100000`

use std::sync::Arc;
use std::time::{Duration, Instant};

use letterlock_crypto::kdf::KdfParams;
use letterlock_imap::ImapSettings;
use letterlock_mailstore::{MailStore, StoreOptions};
use letterlock_server::config::ListenAddress;
use letterlock_server::{tls, Config, Handlers, Server, Service};
use letterlock_storage::embedded::EmbeddedEngine;
use letterlock_types::{Domain, EmailAddress, Secret};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

const USER: &str = "bench@example.org";
const PASSWORD: &str = "benchmark password";
const MESSAGES_DEFAULT: usize = 100_000;
/// Messages per durable commit while filling the mailbox.
const DELIVERY_BATCH: usize = 100;
const FRESH_LOGINS: usize = 20;
const CACHED_LOGINS: usize = 200;

type Client = BufReader<tokio_rustls::client::TlsStream<TcpStream>>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut messages = MESSAGES_DEFAULT;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--messages" => {
                messages = args.next().ok_or("--messages needs a number")?.parse()?;
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(messages))
}

async fn run(messages: usize) -> Result<(), Box<dyn std::error::Error>> {
    // A fresh directory under the system temp dir; removed at the end.
    let data_dir =
        std::env::temp_dir().join(format!("letterlock-bench-imap-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir)?;
    let result = bench(messages, &data_dir).await;
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

async fn bench(messages: usize, data: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::default_for(data);
    for service in Service::ALL {
        config.listen.set_address(
            service,
            if service == Service::Imaps {
                ListenAddress::At("127.0.0.1:0".parse()?)
            } else {
                ListenAddress::Disabled
            },
        );
    }
    let engine = EmbeddedEngine::open(&data.join("store"))?;
    let store = MailStore::new(
        Arc::new(engine),
        StoreOptions {
            kdf: KdfParams::DEFAULT,
            message_size_max_bytes: config.limits.message_size_max_bytes,
        },
    );
    let user = EmailAddress::try_from(USER)?;
    store.add_domain(&Domain::try_from("example.org")?)?;
    store.add_user(&user, &Secret::from(PASSWORD), 0, None)?;

    let started = Instant::now();
    let fill_store = store.clone();
    let fill_user = user.clone();
    tokio::task::spawn_blocking(move || fill(&fill_store, &fill_user, messages)).await??;
    let fill_time = started.elapsed();
    println!(
        "filled INBOX with {messages} messages in {:.1} s ({:.0} msg/s, group commit of {DELIVERY_BATCH})",
        fill_time.as_secs_f64(),
        messages as f64 / fill_time.as_secs_f64()
    );

    let identity = tls::load_or_generate(&config, data)?;
    let handlers = Handlers {
        imap: Some(letterlock_imap::handler(
            store.clone(),
            ImapSettings::from_config(&config),
        )),
        ..Handlers::default()
    };
    let server = Server::bind(&config, Arc::clone(&identity.server_config), handlers).await?;
    let address = server
        .listeners()
        .iter()
        .find(|info| info.service == Service::Imaps)
        .map(|info| info.address)
        .ok_or("IMAPS not bound")?;
    tokio::spawn(server.run(std::future::pending::<()>()));
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(&identity.certificate_path)? {
        roots.add(certificate?)?;
    }
    let client_config = ClientConfig::builder_with_provider(tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(client_config));
    let connect = || async {
        let tcp = TcpStream::connect(address).await?;
        tcp.set_nodelay(true)?;
        let stream = connector
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let mut client = BufReader::new(stream);
        read_response(&mut client).await?;
        Ok::<Client, Box<dyn std::error::Error>>(client)
    };

    let login = format!("a LOGIN {USER} \"{PASSWORD}\"");
    let started = Instant::now();
    for _ in 0..FRESH_LOGINS {
        store.forget_unlocks(&user);
        let mut client = connect().await?;
        command(&mut client, &login).await?;
        command(&mut client, "z LOGOUT").await?;
    }
    let fresh = started.elapsed();
    let started = Instant::now();
    for _ in 0..CACHED_LOGINS {
        let mut client = connect().await?;
        command(&mut client, &login).await?;
        command(&mut client, "z LOGOUT").await?;
    }
    let cached = started.elapsed();
    println!(
        "logins (new TLS connection + LOGIN + LOGOUT): fresh {:.1}/s ({:.0} ms each), cached {:.1}/s ({:.1} ms each)",
        FRESH_LOGINS as f64 / fresh.as_secs_f64(),
        per(fresh, FRESH_LOGINS),
        CACHED_LOGINS as f64 / cached.as_secs_f64(),
        per(cached, CACHED_LOGINS)
    );

    let mut client = connect().await?;
    command(&mut client, &login).await?;
    for round in ["cold", "warm"] {
        let started = Instant::now();
        command(&mut client, "s SELECT INBOX").await?;
        let select = started.elapsed();
        let started = Instant::now();
        let (_, bytes) = command(&mut client, "f FETCH 1:* (FLAGS ENVELOPE)").await?;
        let fetch = started.elapsed();
        println!(
            "{round}: SELECT {:.0} ms; FETCH 1:* (FLAGS ENVELOPE) {:.0} ms ({:.1} MB of responses)",
            select.as_secs_f64() * 1000.0,
            fetch.as_secs_f64() * 1000.0,
            bytes as f64 / 1e6
        );
    }
    // The first search merges every message's sealed terms into the mailbox's index (and
    // stores it); later searches, in this session or the next, start from that index.
    for (round, label) in [
        ("b", "first, merging the index"),
        ("c", "again"),
        ("d", "with a second word"),
    ] {
        let query = if round == "d" {
            format!("{round} SEARCH RETURN (COUNT) BODY \"needle\" BODY \"lorem\"")
        } else {
            format!("{round} SEARCH RETURN (COUNT) BODY \"needle\"")
        };
        let started = Instant::now();
        let (line, _) = command(&mut client, &query).await?;
        println!(
            "SEARCH BODY ({label}): {:.0} ms ({})",
            started.elapsed().as_secs_f64() * 1000.0,
            line.trim()
        );
    }
    command(&mut client, "z LOGOUT").await?;
    Ok(())
}

fn per(total: Duration, count: usize) -> f64 {
    total.as_secs_f64() * 1000.0 / count as f64
}

fn fill(store: &MailStore, user: &EmailAddress, messages: usize) -> Result<(), String> {
    let recipients = [user.clone()];
    let filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(30);
    let mut delivered = 0;
    while delivered < messages {
        let count = DELIVERY_BATCH.min(messages - delivered);
        let bodies: Vec<Vec<u8>> = (delivered..delivered + count)
            .map(|index| {
                let word = if index % 100 == 0 { "needle" } else { "hay" };
                format!(
                    "From: Sender {index} <sender{index}@example.net>\r\nTo: {USER}\r\nSubject: message number {index}\r\nDate: Tue, 24 Nov 2026 08:00:00 +0000\r\nMessage-ID: <{index}@example.net>\r\n\r\n{word} {filler}\r\n"
                )
                .into_bytes()
            })
            .collect();
        let batch: Vec<(&[EmailAddress], &[u8])> = bodies
            .iter()
            .map(|body| (&recipients[..], body.as_slice()))
            .collect();
        for result in store.deliver_many(&batch) {
            result.map_err(|error| error.to_string())?;
        }
        delivered += count;
    }
    Ok(())
}

/// Send a command; read up to its tagged response. Returns the last untagged line seen and
/// the number of response bytes.
async fn command(
    client: &mut Client,
    text: &str,
) -> Result<(String, usize), Box<dyn std::error::Error>> {
    let tag = text.split(' ').next().unwrap_or_default().to_string();
    client
        .get_mut()
        .write_all(format!("{text}\r\n").as_bytes())
        .await?;
    client.get_mut().flush().await?;
    let mut bytes = 0;
    let mut last = String::new();
    loop {
        let response = read_response(client).await?;
        bytes += response.len();
        let line = String::from_utf8_lossy(&response).into_owned();
        if line.starts_with(&format!("{tag} ")) {
            if !line.starts_with(&format!("{tag} OK")) {
                return Err(format!("{text}: {line}").into());
            }
            return Ok((last, bytes));
        }
        last = line;
    }
}

async fn read_response(client: &mut Client) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut response = Vec::new();
    loop {
        let mut line = Vec::new();
        if client.read_until(b'\n', &mut line).await? == 0 {
            return Err("connection closed".into());
        }
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
                client.read_exact(&mut data).await?;
                response.extend_from_slice(&data);
            }
            None => return Ok(response),
        }
    }
}
