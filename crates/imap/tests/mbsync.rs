//! mbsync (isync, Debian's) syncs a mailbox both ways over IMAPS: messages on the server land
//! in a local Maildir, and a message added to the Maildir is uploaded and reads back from the
//! encrypted store. mbsync keeps Maildir files with the local (LF) line endings and converts to
//! CRLF on the wire, and adds an `X-TUID` header to track transfers, so "byte for byte" is
//! checked modulo those two documented changes.

mod common;

use std::path::Path;
use std::process::Command;

use common::{address, start, PASSWORD, USER};
use letterlock_types::{MailboxName, Secret};

fn message(subject: &str) -> Vec<u8> {
    format!("From: Bob <bob@example.net>\r\nTo: {USER}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.net>\r\n\r\nbody of {subject}\r\n").into_bytes()
}

/// The message with LF line endings, as mbsync keeps it in a Maildir.
fn lf(message: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(message)
        .replace("\r\n", "\n")
        .into_bytes()
}

/// Without the `X-TUID` header mbsync adds to track messages it transfers (isync's
/// documented behaviour), so the rest can be compared byte for byte.
fn without_tuid(message: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(message);
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        if !line.starts_with("X-TUID: ") {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = ["cur", "new"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(dir.join(sub)).ok())
        .flat_map(|entries| entries.flatten().map(|entry| entry.path()))
        .collect();
    out.sort();
    out
}

fn mbsync(config: &Path, home: &Path) -> std::process::Output {
    Command::new("mbsync")
        .arg("-c")
        .arg(config)
        .arg("-a")
        .env("HOME", home)
        .output()
        .expect("mbsync is installed (scripts/install-test-tools.sh)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbsync_syncs_both_ways() {
    let server = start().await;
    for subject in ["first", "second"] {
        server
            .store
            .deliver(&[address(USER)], &message(subject))
            .expect("deliver");
    }
    let home = server.data.path().join("home");
    let maildir = home.join("Mail").join("INBOX");
    std::fs::create_dir_all(&maildir).expect("maildir");
    let config = home.join("mbsyncrc");
    std::fs::write(
        &config,
        format!(
            "IMAPAccount letterlock\nHost localhost\nPort {port}\nUser {USER}\nPass \"{PASSWORD}\"\nSSLType IMAPS\nCertificateFile {certificate}\n\n\
IMAPStore remote\nAccount letterlock\n\n\
MaildirStore local\nPath {home}/Mail/\nInbox {inbox}\n\n\
Channel inbox\nFar :remote:INBOX\nNear :local:INBOX\nCreate Both\nSync All\nSyncState *\n",
            port = server.imaps.port(),
            certificate = server.certificate_path.display(),
            home = home.display(),
            inbox = maildir.display(),
        ),
    )
    .expect("config");

    let (config_run, home_run) = (config.clone(), home.clone());
    let output = tokio::task::spawn_blocking(move || mbsync(&config_run, &home_run))
        .await
        .expect("join");
    assert!(
        output.status.success(),
        "mbsync pull failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let pulled: Vec<Vec<u8>> = files(&maildir)
        .iter()
        .map(|path| without_tuid(&std::fs::read(path).expect("read")))
        .collect();
    assert_eq!(pulled.len(), 2, "pulled {pulled:?}");
    for subject in ["first", "second"] {
        assert!(
            pulled.contains(&lf(&message(subject))),
            "{subject} not pulled byte for byte: {:?}",
            pulled
                .iter()
                .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
                .collect::<Vec<_>>()
        );
    }

    // A message written into the local Maildir is uploaded.
    let uploaded = message("written-locally");
    std::fs::write(
        maildir.join("new").join("1700000000.local.host"),
        lf(&uploaded),
    )
    .expect("write");
    let (config_run, home_run) = (config.clone(), home.clone());
    let output = tokio::task::spawn_blocking(move || mbsync(&config_run, &home_run))
        .await
        .expect("join");
    assert!(
        output.status.success(),
        "mbsync push failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let session = server
        .store
        .unlock(&address(USER), &Secret::from(PASSWORD))
        .expect("unlock");
    let inbox = MailboxName::inbox();
    let stored: Vec<Vec<u8>> = session
        .list_messages(&inbox)
        .expect("list")
        .iter()
        .map(|summary| without_tuid(&session.fetch(&inbox, summary.uid).expect("fetch")))
        .collect();
    assert_eq!(stored.len(), 3);
    assert!(
        stored.contains(&uploaded),
        "the uploaded message is not byte for byte: {:?}",
        stored
            .iter()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            .collect::<Vec<_>>()
    );
}
