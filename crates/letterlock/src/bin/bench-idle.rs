//! Memory per idle authenticated IMAP connection. Prints figures; asserts nothing.
//!
//! `cargo build --release -p letterlock && cargo run --release -p letterlock --bin bench-idle [-- CONNECTIONS]`
//!
//! Starts the real `letterlock serve` (the binary built beside this one) on a temporary data
//! directory, opens CONNECTIONS (default 10,000) IMAPS connections from this process, logs each
//! in (the unlock cache makes all but the first cheap) and leaves them idle, then reads the
//! server's resident memory from /proc before and after: the difference per connection is the
//! figure. Client and server are separate processes, so the client's own TLS state is not
//! counted.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PASSWORD: &str = "benchmark password";
/// Handshakes in flight at once: enough to keep both cores busy.
const CONCURRENT_SETUPS_MAX: usize = 64;

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let connections: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(10_000);
    let binary = std::env::current_exe()?.with_file_name("letterlock");
    let root = tempfile::tempdir()?;
    let data = root.path().join("data");
    std::fs::create_dir_all(&data)?;
    std::fs::write(
        data.join("letterlock.toml"),
        format!(
            "data_dir = \"{}\"\nhostname = \"localhost\"\n[listen]\nsmtp = \"\"\nsubmission_tls = \"\"\nsubmission_starttls = \"\"\nimap = \"\"\nimaps = \"127.0.0.1:0\"\npop3 = \"\"\npop3s = \"\"\nhttps = \"\"\n[limits]\nconnections_per_ip_max = {n}\nconnections_max = {n}\n[dns]\nresolver = \"off\"\n",
            data.display(),
            n = connections + 100
        ),
    )?;
    let run = |args: &[&str], input: &str| -> Result<(), Box<dyn std::error::Error>> {
        let mut child = Command::new(&binary)
            .arg("--data")
            .arg(&data)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        child
            .stdin
            .take()
            .ok_or("stdin")?
            .write_all(input.as_bytes())?;
        if !child.wait()?.success() {
            return Err(format!("letterlock {args:?} failed").into());
        }
        Ok(())
    };
    run(&["domain", "add", "example.org"], "")?;
    run(
        &["user", "add", "bench@example.org"],
        &format!("{PASSWORD}\n"),
    )?;

    let mut server = Command::new(&binary)
        .arg("--data")
        .arg(&data)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = server.id();
    let mut lines = BufReader::new(server.stdout.take().ok_or("stdout")?).lines();
    let mut port = None;
    for line in lines.by_ref() {
        let line = line?;
        if line.contains("listening imaps") {
            port = line
                .split_whitespace()
                .find(|word| word.starts_with("127.0.0.1:"))
                .and_then(|address| address.rsplit(':').next())
                .and_then(|port| port.parse::<u16>().ok());
            break;
        }
    }
    let port = port.ok_or("the server did not report its IMAPS port")?;
    std::thread::spawn(move || for _ in lines {});

    let certificate = std::fs::read(data.join("tls/cert.pem"))?;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for der in rustls::pki_types::CertificateDer::pem_slice_iter(&certificate) {
        roots.add(der?)?;
    }
    let config =
        rustls::ClientConfig::builder_with_provider(letterlock_server::tls::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        std::thread::sleep(Duration::from_millis(500));
        let before = rss_kib(pid).ok_or("cannot read the server's memory")?;
        let started = Instant::now();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_SETUPS_MAX));
        let mut tasks = Vec::with_capacity(connections);
        for _ in 0..connections {
            let connector = connector.clone();
            let permit = Arc::clone(&semaphore).acquire_owned().await?;
            tasks.push(tokio::spawn(async move {
                let tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
                let tls = connector
                    .connect(ServerName::try_from("localhost").ok()?, tcp)
                    .await
                    .ok()?;
                let mut stream = tokio::io::BufReader::new(tls);
                let mut line = String::new();
                stream.read_line(&mut line).await.ok()?;
                stream
                    .get_mut()
                    .write_all(format!("a LOGIN bench@example.org \"{PASSWORD}\"\r\n").as_bytes())
                    .await
                    .ok()?;
                loop {
                    line.clear();
                    if stream.read_line(&mut line).await.ok()? == 0 {
                        return None;
                    }
                    if line.starts_with("a ") {
                        break;
                    }
                }
                drop(permit);
                line.starts_with("a OK").then_some(stream)
            }));
        }
        let mut open = Vec::with_capacity(connections);
        for task in tasks {
            if let Ok(Some(stream)) = task.await {
                open.push(stream);
            }
        }
        let setup_secs = started.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs(2));
        let after = rss_kib(pid).ok_or("cannot read the server's memory")?;
        println!(
            "{} of {connections} IMAPS connections logged in and idle in {setup_secs:.1} s ({:.0} logins/s)",
            open.len(),
            open.len() as f64 / setup_secs
        );
        println!(
            "server RSS: {:.1} MiB before, {:.1} MiB after: {:.1} KiB per idle authenticated connection",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            (after.saturating_sub(before)) as f64 / open.len().max(1) as f64
        );
        drop(open);
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = server.wait();
    Ok(())
}
