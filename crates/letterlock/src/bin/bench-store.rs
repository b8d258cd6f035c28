//! Benchmark of the encrypted mail store on the embedded engine. Prints figures; asserts nothing.
//!
//! `cargo run --release -p letterlock --bin bench-store [-- --messages N --single N --size BYTES]`
//!
//! - deliveries per second of 10 KB messages into one mailbox, each its own durable commit,
//!   and with group commit (batches of 100, one fsync per batch);
//! - a mailbox of `--messages` (default 100,000) messages: time to unlock and list it
//!   (flags + envelope) cold (first unlock: one public-key operation per message) and warm
//!   (session keys promoted: symmetric work only);
//! - peak resident memory of this process.

use std::sync::Arc;
use std::time::Instant;

use letterlock_crypto::kdf::KdfParams;
use letterlock_mailstore::{MailStore, StoreOptions};
use letterlock_storage::embedded::EmbeddedEngine;
use letterlock_types::{Domain, EmailAddress, MailboxName, Secret};

const BATCH_SIZE: usize = 100;

struct Options {
    messages: usize,
    single: usize,
    size_bytes: usize,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        messages: 100_000,
        single: 300,
        size_bytes: 10 * 1024,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number: usize = value
            .parse()
            .map_err(|_| format!("{flag}: not a number: {value}"))?;
        match flag.as_str() {
            "--messages" => options.messages = number,
            "--single" => options.single = number,
            "--size" => options.size_bytes = number,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(options)
}

fn message(n: usize, size_bytes: usize) -> Vec<u8> {
    let head = format!(
        "From: Sender {n} <sender{n}@example.net>\r\nTo: bench@example.org\r\nSubject: Benchmark message {n}\r\nDate: Tue, 24 Nov 2026 08:00:00 +0000\r\nMessage-ID: <{n}@bench.example.net>\r\n\r\n"
    );
    let mut out = head.into_bytes();
    let line =
        b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n";
    while out.len() < size_bytes {
        out.extend_from_slice(line);
    }
    out.truncate(size_bytes);
    out
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse_options()?;
    let dir = tempfile::tempdir()?;
    let store = MailStore::new(
        Arc::new(EmbeddedEngine::open(dir.path())?),
        StoreOptions {
            kdf: KdfParams::DEFAULT,
            ..StoreOptions::default()
        },
    );
    store.add_domain(&Domain::try_from("example.org")?)?;
    let address = EmailAddress::try_from("bench@example.org")?;
    let password = Secret::from("benchmark password");
    store.add_user(&address, &password, 0, None)?;
    let recipients = [address.clone()];
    println!("bench-store: embedded engine in {}", dir.path().display());

    let started = Instant::now();
    for n in 0..options.single {
        store.deliver(&recipients, &message(n, options.size_bytes))?;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "deliver, one durable commit each: {} x {} B in {:.2} s = {:.0} msg/s",
        options.single,
        options.size_bytes,
        seconds,
        options.single as f64 / seconds
    );

    let started = Instant::now();
    let mut delivered = options.single;
    while delivered < options.messages {
        let count = BATCH_SIZE.min(options.messages - delivered);
        let bodies: Vec<Vec<u8>> = (delivered..delivered + count)
            .map(|n| message(n, options.size_bytes))
            .collect();
        let batch: Vec<(&[EmailAddress], &[u8])> = bodies
            .iter()
            .map(|body| (&recipients[..], body.as_slice()))
            .collect();
        for result in store.deliver_many(&batch) {
            result?;
        }
        delivered += count;
    }
    let filled = options.messages.saturating_sub(options.single);
    let seconds = started.elapsed().as_secs_f64();
    if filled > 0 {
        println!(
            "deliver, group commit of {BATCH_SIZE}: {filled} x {} B in {:.2} s = {:.0} msg/s",
            options.size_bytes,
            seconds,
            filled as f64 / seconds
        );
    }

    let inbox = MailboxName::inbox();
    for label in [
        "cold (first unlock, public-key work)",
        "warm (promoted session keys)",
    ] {
        let started = Instant::now();
        let session = store.unlock(&address, &password)?;
        let unlocked_ms = started.elapsed().as_secs_f64() * 1000.0;
        let listing = session.list_messages(&inbox)?;
        let total_ms = started.elapsed().as_secs_f64() * 1000.0;
        let with_envelope = listing
            .iter()
            .filter(|summary| summary.index.is_some())
            .count();
        println!(
            "unlock + list {} messages (flags + envelope), {label}: {:.0} ms (unlock {:.0} ms)",
            with_envelope, total_ms, unlocked_ms
        );
    }
    match peak_rss_kib() {
        Some(kib) => println!("peak RSS: {:.1} MiB", kib as f64 / 1024.0),
        None => println!("peak RSS: unavailable (no /proc/self/status)"),
    }
    Ok(())
}
