//! `letterlock serve`: first run in local mode, what it prints, its listeners, SIGTERM.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Env;
use letterlock_types::{EmailAddress, Secret};

const STARTUP_TIMEOUT_SECS: u64 = 60;

/// Start `serve`, collect its output lines until a listener line for `imap` appears.
fn start(env: &Env) -> (Child, mpsc::Receiver<String>, Vec<String>) {
    let mut child = env
        .command(&["serve"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let (sender, receiver) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("stderr")) as Box<dyn Read + Send>,
    ] {
        let sender = sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(STARTUP_TIMEOUT_SECS);
    while Instant::now() < deadline {
        if let Ok(line) = receiver.recv_timeout(Duration::from_millis(100)) {
            // https is the last listener printed.
            let ready = line.contains("listening https") && line.contains("127.0.0.1:");
            lines.push(line);
            if ready {
                return (child, receiver, lines);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("serve did not report all its listeners: {lines:?}");
}

fn address_of(lines: &[String], service: &str) -> String {
    lines
        .iter()
        .find(|line| line.split_whitespace().any(|word| word == service))
        .and_then(|line| {
            line.split_whitespace()
                .find(|word| word.starts_with("127.0.0.1:"))
        })
        .unwrap_or_else(|| panic!("no {service} listener in {lines:?}"))
        .to_string()
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    // SAFETY: kill(2) with a valid pid of our own child; no memory is involved.
    let result = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(result, 0, "kill");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn value_after(lines: &[String], label: &str) -> String {
    lines
        .iter()
        .find_map(|line| {
            line.trim()
                .strip_prefix(label)
                .map(|rest| rest.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no {label:?} in {lines:?}"))
}

#[test]
fn first_run_creates_an_account_serves_and_stops_on_sigterm() {
    let env = Env::new();
    let (mut child, receiver, mut lines) = start(&env);
    let password = value_after(&lines, "password:");
    let recovery_code = value_after(&lines, "recovery code:");
    assert!(
        lines.iter().any(|line| line.contains("you@localhost")),
        "{lines:?}"
    );

    // A listener answers with its protocol's own words.
    let imap = address_of(&lines, "imap");
    let mut stream = std::net::TcpStream::connect(&imap).expect("connect imap");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut greeting = String::new();
    BufReader::new(&mut stream)
        .read_line(&mut greeting)
        .expect("greeting");
    assert!(greeting.starts_with("* OK"), "{greeting:?}");
    // POP3 is served: the printed account logs in over STLS with a client nobody here wrote.
    let pop3_port = address_of(&lines, "pop3")
        .rsplit(':')
        .next()
        .expect("port")
        .to_string();
    let certificate = env.data.join("tls/cert.pem");
    let script = r#"
import poplib, ssl, sys
client = poplib.POP3("localhost", int(sys.argv[1]), timeout=20)
client.stls(context=ssl.create_default_context(cafile=sys.argv[2]))
client.user("you@localhost")
client.pass_(sys.argv[3])
print(client.stat())
client.quit()
"#;
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            &pop3_port,
            certificate.to_str().expect("utf-8"),
            &password,
        ])
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "poplib: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "(0, 0)");

    // IMAP is served: imaplib logs in after STARTTLS on the 143-style port.
    let imap_port = imap.rsplit(':').next().expect("port").to_string();
    let script = r#"
import imaplib, ssl, sys
client = imaplib.IMAP4("localhost", int(sys.argv[1]), timeout=20)
client.starttls(ssl_context=ssl.create_default_context(cafile=sys.argv[2]))
client.login("you@localhost", sys.argv[3])
status, data = client.select("INBOX")
print(status, data[0].decode())
client.logout()
"#;
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            &imap_port,
            certificate.to_str().expect("utf-8"),
            &password,
        ])
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "imaplib: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "OK 0");

    // Local delivery while serve holds the store goes through the server.
    let delivered = env.ok(
        &["deliver", "you@localhost"],
        "Subject: handed off\r\n\r\nbody\r\n",
    );
    assert_eq!(delivered, "delivered to you@localhost (INBOX, UID 1)\n");
    let (code, error) = env.fails(&["deliver", "nobody@localhost"], "Subject: x\r\n\r\ny\r\n");
    assert_eq!(code, 67, "EX_NOUSER through the hand-off: {error}");

    // SMTP is served: Python's smtplib delivers to the MX port.
    let smtp_port = address_of(&lines, "smtp")
        .rsplit(':')
        .next()
        .expect("port")
        .to_string();
    let script = r#"
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20) as client:
    client.sendmail("sender@example.net", ["you@localhost"], b"Subject: over smtp\r\n\r\nhello\r\n")
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", script, &smtp_port])
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "smtplib: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // HTTPS is served: the WKD policy of the local domain, with a verified certificate.
    let https = address_of(&lines, "https");
    let fetched = std::process::Command::new("curl")
        .args(["--silent", "--fail", "--max-time", "20", "--cacert"])
        .arg(&certificate)
        .arg(format!(
            "https://localhost:{}/.well-known/openpgpkey/localhost/policy",
            https.rsplit(':').next().expect("port")
        ))
        .output()
        .expect("curl");
    assert!(fetched.status.success(), "WKD policy over HTTPS");

    // Administration while serve holds the store runs inside the server, prompts relayed.
    let added = env.ok(&["user", "add", "second@localhost"], "second password\n");
    assert!(added.contains("added user second@localhost"), "{added}");
    assert!(added.contains("Recovery code"), "{added}");
    assert!(env.ok(&["user", "list"], "").contains("second@localhost\t"));
    let (_, error) = env.fails(&["user", "add", "second@localhost"], "second password\n");
    assert!(error.contains("already exists"), "{error}");
    let (_, error) = env.fails(&["user", "add", "third@localhost"], "");
    assert!(
        error.contains("expected a line on standard input"),
        "{error}"
    );
    let export_dir = env.root.path().join("while-serving");
    let exported = env.ok(
        &[
            "export",
            "you@localhost",
            "--out",
            export_dir.to_str().expect("utf-8"),
        ],
        &format!("{password}\n"),
    );
    assert!(exported.contains("exported 2 message(s)"), "{exported}");
    assert!(export_dir.join("secret-key.asc").exists());

    let status = terminate(&mut child);
    assert!(status.success(), "serve exited with {status:?}");
    lines.extend(receiver.try_iter());
    assert!(
        !env.data.join("deliver.sock").exists(),
        "hand-off socket left behind"
    );
    assert!(
        lines.iter().any(|line| line.contains("stopped")),
        "{lines:?}"
    );

    // The account is real: its password and recovery code unlock it, and the certificate stays.
    let store = env.store();
    let you = EmailAddress::try_from("you@localhost").expect("address");
    store
        .unlock(&you, &Secret::from(password.as_str()))
        .expect("printed password unlocks");
    store
        .unlock_with_recovery_code(&you, &Secret::from(recovery_code.as_str()))
        .expect("printed recovery code unlocks");
    drop(store);
    let certificate = std::fs::read(env.data.join("tls/cert.pem")).expect("certificate written");

    // A second run creates no second account and reuses the certificate.
    let (mut child, receiver, mut lines) = start(&env);
    let status = terminate(&mut child);
    lines.extend(receiver.try_iter());
    assert!(status.success());
    assert!(
        !lines.iter().any(|line| line.contains("password:")),
        "{lines:?}"
    );
    assert_eq!(
        std::fs::read(env.data.join("tls/cert.pem")).expect("certificate"),
        certificate
    );
}

#[test]
fn a_second_serve_on_the_same_data_fails_clearly_and_admin_goes_through_the_first() {
    let env = Env::new();
    let (mut child, _receiver, _lines) = start(&env);
    let (_, error) = env.fails(&["serve"], "");
    assert!(error.contains("already running"), "{error}");
    assert_eq!(env.ok(&["domain", "list"], ""), "localhost\n");
    terminate(&mut child);
}
