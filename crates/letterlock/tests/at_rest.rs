//! Encryption at rest and durability, through the real binary:
//! no plaintext under the data directory or the temp directory, GnuPG reads an export without
//! Letterlock, and acknowledged deliveries survive a SIGKILL.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{contains, walk, Env, PASSWORD};
use letterlock_types::{EmailAddress, MailboxName, Secret};

#[test]
fn no_canary_reaches_the_data_or_temp_directory() {
    let env = Env::new();
    env.with_alice();
    env.ok(
        &["user", "add", "bob@example.org"],
        &format!("{PASSWORD}\n"),
    );
    let canaries = [
        "CanarySubject-5d1e0b7a",
        "canary.sender.83f2@example.net",
        "CanaryBody-c4a9e611",
        "CanaryAttachment-0b5f",
    ];
    let message = format!(
        "From: Canary Sender <{sender}>\r\nTo: alice@example.org\r\nSubject: {subject}\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n\
--zz\r\nContent-Type: text/plain\r\n\r\n{body}\r\n\
--zz\r\nContent-Type: text/plain; name=a.txt\r\nContent-Disposition: attachment\r\n\r\n{attachment}\r\n--zz--\r\n",
        sender = canaries[1],
        subject = canaries[0],
        body = canaries[2],
        attachment = canaries[3],
    );
    for _ in 0..3 {
        env.ok(
            &["deliver", "alice@example.org", "bob@example.org"],
            &message,
        );
    }
    // Reading (which promotes session keys) and exporting must not leave plaintext either.
    let session = env
        .store()
        .unlock(
            &EmailAddress::try_from("alice@example.org").expect("address"),
            &Secret::from(PASSWORD),
        )
        .expect("unlock");
    assert_eq!(
        session
            .list_messages(&MailboxName::inbox())
            .expect("list")
            .len(),
        3
    );
    drop(session);
    let export = env.root.path().join("export");
    env.ok(
        &[
            "export",
            "alice@example.org",
            "--out",
            export.to_str().expect("utf-8"),
        ],
        &format!("{PASSWORD}\n"),
    );

    let mut scanned = 0;
    for dir in [&env.data, &env.tmp, &export] {
        for file in walk(dir) {
            let bytes = std::fs::read(&file).expect("read");
            scanned += bytes.len();
            for canary in canaries {
                assert!(
                    !contains(&bytes, canary.as_bytes()),
                    "{canary} in {}",
                    file.display()
                );
                assert!(
                    !contains(&bytes, canary.to_lowercase().as_bytes()),
                    "{canary} (lowercased, as a search term) in {}",
                    file.display()
                );
            }
        }
    }
    assert!(
        scanned > 10_000,
        "scanned only {scanned} bytes: did the store write anything?"
    );
}

fn gpg(home: &std::path::Path, passphrase: &str, args: &[&str]) -> std::process::Output {
    Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args([
            "--batch",
            "--no-tty",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            passphrase,
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("gpg is installed (.ci/run installs gnupg)")
}

#[test]
fn gpg_decrypts_an_exported_message_to_the_exact_original_bytes() {
    let env = Env::new();
    env.with_alice();
    // Binary-safe content: CRLF, a bare LF, 8-bit bytes, trailing whitespace.
    let mut original = b"From: Bob <bob@example.net>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\nline one  \r\nbare lf\nlatin1: \xe9\xe8\r\n".to_vec();
    original.extend_from_slice(&[0u8, 1, 2, 255]);
    let output = env.run_bytes(&["deliver", "alice@example.org"], &original);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let export = env.root.path().join("export");
    env.ok(
        &[
            "export",
            "alice@example.org",
            "--out",
            export.to_str().expect("utf-8"),
        ],
        &format!("{PASSWORD}\n"),
    );
    let files = walk(&export.join("cur"));
    assert_eq!(files.len(), 1, "{files:?}");

    let home = env.root.path().join("gnupg");
    std::fs::create_dir_all(&home).expect("gnupg home");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    let key = export.join("secret-key.asc");
    let imported = gpg(&home, PASSWORD, &["--import", key.to_str().expect("utf-8")]);
    assert!(
        imported.status.success(),
        "gpg --import: {}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let decrypted = gpg(
        &home,
        PASSWORD,
        &["--decrypt", files[0].to_str().expect("utf-8")],
    );
    assert!(
        decrypted.status.success(),
        "gpg --decrypt: {}",
        String::from_utf8_lossy(&decrypted.stderr)
    );
    assert_eq!(decrypted.stdout, original);

    // The exported key is locked: a wrong passphrase cannot import its secret parts usefully.
    let other_home = env.root.path().join("gnupg2");
    std::fs::create_dir_all(&other_home).expect("gnupg home");
    let wrong = gpg(
        &other_home,
        "wrong",
        &["--import", key.to_str().expect("utf-8")],
    );
    let wrong_decrypt = gpg(
        &other_home,
        "wrong",
        &["--decrypt", files[0].to_str().expect("utf-8")],
    );
    assert!(
        !wrong.status.success() || !wrong_decrypt.status.success(),
        "the exported key opened with a wrong passphrase"
    );
    assert_ne!(wrong_decrypt.stdout, original);
}

/// Deliveries run as separate processes; some are SIGKILLed mid-flight. Every delivery that
/// exited 0 (was acknowledged) must be readable afterwards, and the store must open cleanly.
#[test]
fn sigkill_during_deliveries_loses_nothing_acknowledged() {
    let env = Env::new();
    env.with_alice();
    let mut acknowledged = Vec::new();
    let mut killed = 0;
    for n in 0..40u64 {
        let subject = format!("crash-test-{n}");
        let mut child = env
            .command(&["deliver", "alice@example.org"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            let body = format!("Subject: {subject}\r\n\r\n{}\r\n", "payload ".repeat(500));
            let _ = stdin.write_all(body.as_bytes());
        }
        if n % 3 == 2 {
            // Kill at varying points: during start-up, encryption, or the commit.
            std::thread::sleep(Duration::from_millis((n * 7) % 40));
            let _ = child.kill();
            killed += 1;
            let _ = child.wait();
        } else {
            let status = child.wait().expect("wait");
            if status.success() {
                acknowledged.push(subject);
            }
        }
    }
    assert!(killed > 10);
    assert!(
        acknowledged.len() >= 20,
        "only {} deliveries succeeded",
        acknowledged.len()
    );

    let store = env.store();
    let session = store
        .unlock(
            &EmailAddress::try_from("alice@example.org").expect("address"),
            &Secret::from(PASSWORD),
        )
        .expect("store opens and unlocks after the kills");
    let subjects: Vec<String> = session
        .list_messages(&MailboxName::inbox())
        .expect("list")
        .into_iter()
        .filter_map(|summary| summary.index.and_then(|index| index.envelope.subject))
        .collect();
    for subject in &acknowledged {
        assert!(subjects.contains(subject), "acknowledged {subject} lost");
    }
    drop(session);
    drop(store);
    // And it still takes new mail.
    env.ok(
        &["deliver", "alice@example.org"],
        "Subject: after\r\n\r\nafter\r\n",
    );
}
