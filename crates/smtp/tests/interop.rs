//! A real server on 127.0.0.1 (port 0) with real TLS, driven by clients nobody here wrote:
//! Python's smtplib, swaks and curl; plus raw-socket checks of STARTTLS injection, TLS
//! garbage, shutdown, and the promise that no plaintext reaches the data directory.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use letterlock_server::tls;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const SMTPLIB_SEND: &str = r#"
import smtplib, ssl, sys
mode, port, cafile, user, password, sender, recipient = sys.argv[1:8]
message = sys.stdin.buffer.read()
context = ssl.create_default_context(cafile=cafile)
if mode == "mx":
    client = smtplib.SMTP("127.0.0.1", int(port), local_hostname="client.example")
elif mode == "starttls":
    client = smtplib.SMTP("localhost", int(port), local_hostname="client.example")
    client.starttls(context=context)
else:
    client = smtplib.SMTP_SSL("localhost", int(port), local_hostname="client.example", context=context)
try:
    if user:
        client.login(user, password)
    refused = client.sendmail(sender, [recipient], message)
    print("sent", refused)
except smtplib.SMTPException as error:
    print("error", getattr(error, "smtp_code", None), error)
client.quit()
"#;

async fn smtplib(
    mode: &str,
    port: u16,
    server: &RunningServer,
    login: Option<(&str, &str)>,
    sender: &str,
    recipient: &str,
    message: &[u8],
) -> String {
    let (user, password) = login.unwrap_or(("", ""));
    let (ok, stdout, stderr) = run_program(
        "python3",
        vec![
            "-c".into(),
            SMTPLIB_SEND.into(),
            mode.into(),
            port.to_string(),
            server.certificate.display().to_string(),
            user.into(),
            password.into(),
            sender.into(),
            recipient.into(),
        ],
        Some(message.to_vec()),
    )
    .await;
    assert!(ok, "python3 failed: {stdout} {stderr}");
    stdout
}

fn message_from(from: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: someone@example.org\r\nSubject: {subject}\r\nMessage-ID: <{subject}@test>\r\n\r\nBody of {subject}.\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_delivers_over_mx_plaintext() {
    let store = test_store();
    let server = RunningServer::start(&store, test_settings()).await;
    let message = message_from("Bob <bob@example.net>", "mx-plain");
    let out = smtplib(
        "mx",
        server.smtp.port(),
        &server,
        None,
        "bob@example.net",
        ALICE,
        &message,
    )
    .await;
    assert!(out.starts_with("sent {}"), "{out}");
    let stored = inbox(&store.store, ALICE);
    assert_eq!(without_trace(&stored[0]), message);
    assert!(
        trace_of(&stored[0]).contains("with ESMTP id"),
        "{}",
        trace_of(&stored[0])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_starttls_login_on_587_delivers_and_keeps_a_sent_copy() {
    let store = test_store();
    let server = RunningServer::start(&store, test_settings()).await;
    let message = message_from(ALICE, "submission-587");
    let out = smtplib(
        "starttls",
        server.submission_starttls.port(),
        &server,
        Some((ALICE, PASSWORD)),
        ALICE,
        BOB,
        &message,
    )
    .await;
    assert!(out.starts_with("sent {}"), "{out}");
    let delivered = inbox(&store.store, BOB);
    assert_eq!(without_trace(&delivered[0]), message);
    let trace = trace_of(&delivered[0]);
    assert!(trace.contains("with ESMTPSA id"), "{trace}");
    assert!(trace.contains("TLSv1_3"), "{trace}");
    assert_eq!(
        mailbox(&store.store, ALICE, "Sent"),
        vec![message],
        "Sent copy, as sent"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_smtp_ssl_login_on_465_may_use_an_alias() {
    let store = test_store();
    let server = RunningServer::start(&store, test_settings()).await;
    let message = message_from("Sales <sales@example.org>", "submission-465");
    let out = smtplib(
        "ssl",
        server.submission_tls.port(),
        &server,
        Some((ALICE, PASSWORD)),
        ALICE_ALIAS,
        BOB,
        &message,
    )
    .await;
    assert!(out.starts_with("sent {}"), "{out}");
    assert_eq!(without_trace(&inbox(&store.store, BOB)[0]), message);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_refuses_wrong_passwords_other_senders_and_remote_recipients() {
    let store = test_store();
    let server = RunningServer::start(&store, test_settings()).await;
    let port = server.submission_starttls.port();
    let message = message_from(ALICE, "refused");
    let out = smtplib(
        "starttls",
        port,
        &server,
        Some((ALICE, "wrong password")),
        ALICE,
        BOB,
        &message,
    )
    .await;
    assert!(out.starts_with("error 535"), "{out}");
    // MAIL FROM someone else's address.
    let out = smtplib(
        "starttls",
        port,
        &server,
        Some((ALICE, PASSWORD)),
        BOB,
        BOB,
        &message_from(BOB, "as-bob"),
    )
    .await;
    assert!(out.starts_with("error 553"), "{out}");
    // Own envelope, someone else's From: header.
    let out = smtplib(
        "starttls",
        port,
        &server,
        Some((ALICE, PASSWORD)),
        ALICE,
        BOB,
        &message_from(BOB, "from-bob"),
    )
    .await;
    assert!(out.starts_with("error 553"), "{out}");
    // Remote recipient: no outbound queue yet, a temporary refusal.
    let out = smtplib(
        "starttls",
        port,
        &server,
        Some((ALICE, PASSWORD)),
        ALICE,
        "carol@remote.example",
        &message,
    )
    .await;
    assert!(
        out.contains("451") && out.contains("outbound delivery is not available yet"),
        "{out}"
    );
    // No AUTH at all, after STARTTLS: 530.
    let out = smtplib("starttls", port, &server, None, ALICE, BOB, &message).await;
    assert!(out.starts_with("error 530"), "{out}");
    assert!(inbox(&store.store, BOB).is_empty());
    assert!(mailbox(&store.store, ALICE, "Sent").is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_relay_is_refused_on_mx_and_on_587() {
    let store = test_store();
    let server = RunningServer::start(&store, test_settings()).await;
    let message = message_from("spammer@remote.example", "relay");
    let out = smtplib(
        "mx",
        server.smtp.port(),
        &server,
        None,
        "spammer@remote.example",
        "victim@remote.example",
        &message,
    )
    .await;
    assert!(
        out.contains("554") && out.contains("relay access denied"),
        "{out}"
    );
    let out = smtplib(
        "starttls",
        server.submission_starttls.port(),
        &server,
        None,
        "spammer@remote.example",
        "victim@remote.example",
        &message,
    )
    .await;
    assert!(out.starts_with("error 530"), "{out}");
    server.stop().await;
}

async fn swaks(args: &[&str], message: &[u8]) -> (bool, String) {
    let mut data = message.to_vec();
    data.extend_from_slice(b".\r\n");
    let mut all: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    all.extend([
        "--data".into(),
        "-".into(),
        "--no-data-fixup".into(),
        "--helo".into(),
        "client.example".into(),
        "--timeout".into(),
        "10".into(),
    ]);
    let (ok, stdout, stderr) = run_program("swaks", all, Some(data)).await;
    (ok, format!("{stdout}{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_delivers_over_mx_and_submits_with_starttls_and_implicit_tls() {
    let store = test_store();
    let server = RunningServer::start(&store, test_settings()).await;
    let cert = server.certificate.display().to_string();

    let plain = message_from("Bob <bob@example.net>", "swaks-mx");
    let port = server.smtp.port().to_string();
    let (ok, log) = swaks(
        &[
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--from",
            "bob@example.net",
            "--to",
            ALICE,
        ],
        &plain,
    )
    .await;
    assert!(ok, "{log}");

    let submitted = message_from(ALICE, "swaks-587");
    let port = server.submission_starttls.port().to_string();
    let (ok, log) = swaks(
        &[
            "--server",
            "localhost",
            "--port",
            &port,
            "--tls",
            "--tls-verify",
            "--tls-ca-path",
            &cert,
            "--auth",
            "PLAIN",
            "--auth-user",
            ALICE,
            "--auth-password",
            PASSWORD,
            "--from",
            ALICE,
            "--to",
            BOB,
        ],
        &submitted,
    )
    .await;
    assert!(ok, "{log}");

    let implicit = message_from(ALICE, "swaks-465");
    let port = server.submission_tls.port().to_string();
    let (ok, log) = swaks(
        &[
            "--server",
            "localhost",
            "--port",
            &port,
            "--tls-on-connect",
            "--tls-verify",
            "--tls-ca-path",
            &cert,
            "--auth",
            "LOGIN",
            "--auth-user",
            ALICE,
            "--auth-password",
            PASSWORD,
            "--from",
            ALICE,
            "--to",
            BOB,
        ],
        &implicit,
    )
    .await;
    assert!(ok, "{log}");

    assert_eq!(without_trace(&inbox(&store.store, ALICE)[0]), plain);
    let bob: Vec<Vec<u8>> = inbox(&store.store, BOB)
        .iter()
        .map(|m| without_trace(m))
        .collect();
    assert_eq!(bob, vec![submitted.clone(), implicit.clone()]);
    assert_eq!(
        mailbox(&store.store, ALICE, "Sent"),
        vec![submitted, implicit]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_delivers_over_smtp_and_submits_over_smtps() {
    let store = test_store();
    let server = RunningServer::start(&store, test_settings()).await;
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let plain = message_from("Bob <bob@example.net>", "curl-mx");
    std::fs::write(file.path(), &plain).expect("write");
    let (ok, stdout, stderr) = run_program(
        "curl",
        vec![
            "--silent".into(),
            "--show-error".into(),
            "--max-time".into(),
            "10".into(),
            "--url".into(),
            format!("smtp://127.0.0.1:{}/client.example", server.smtp.port()),
            "--mail-from".into(),
            "bob@example.net".into(),
            "--mail-rcpt".into(),
            ALICE.into(),
            "--upload-file".into(),
            file.path().display().to_string(),
        ],
        None,
    )
    .await;
    assert!(ok, "{stdout}{stderr}");

    let submitted = message_from(ALICE, "curl-465");
    std::fs::write(file.path(), &submitted).expect("write");
    let port = server.submission_tls.port();
    let (ok, stdout, stderr) = run_program(
        "curl",
        vec![
            "--silent".into(),
            "--show-error".into(),
            "--max-time".into(),
            "10".into(),
            "--url".into(),
            format!("smtps://localhost:{port}/client.example"),
            "--resolve".into(),
            format!("localhost:{port}:127.0.0.1"),
            "--cacert".into(),
            server.certificate.display().to_string(),
            "--user".into(),
            format!("{ALICE}:{PASSWORD}"),
            "--mail-from".into(),
            ALICE.into(),
            "--mail-rcpt".into(),
            BOB.into(),
            "--upload-file".into(),
            file.path().display().to_string(),
        ],
        None,
    )
    .await;
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(without_trace(&inbox(&store.store, ALICE)[0]), plain);
    assert_eq!(without_trace(&inbox(&store.store, BOB)[0]), submitted);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_canaries_never_reach_the_data_directory() {
    let store = test_store();
    let server = RunningServer::start(&store, test_settings()).await;
    let canary_subject = "CANARY-SUBJECT-8f3a1c";
    let canary_body = "CANARY-BODY-2b7d9e-the-quick-brown-fox";
    let message =
        format!("From: {ALICE}\r\nTo: {BOB}\r\nSubject: {canary_subject}\r\n\r\n{canary_body}\r\n")
            .into_bytes();
    let out = smtplib(
        "starttls",
        server.submission_starttls.port(),
        &server,
        Some((ALICE, PASSWORD)),
        ALICE,
        BOB,
        &message,
    )
    .await;
    assert!(out.starts_with("sent {}"), "{out}");
    let mx = smtplib(
        "mx",
        server.smtp.port(),
        &server,
        None,
        "x@remote.example",
        ALICE,
        &message,
    )
    .await;
    assert!(mx.starts_with("sent {}"), "{mx}");
    assert_eq!(without_trace(&inbox(&store.store, BOB)[0]), message);
    let data_dir = server.data_dir.clone();
    server.stop().await;
    let files = files_under(&data_dir);
    assert!(!files.is_empty());
    for path in files {
        let bytes = std::fs::read(&path).expect("read");
        for canary in [canary_subject, canary_body, "CANARY"] {
            assert!(
                !bytes
                    .windows(canary.len())
                    .any(|window| window == canary.as_bytes()),
                "{canary} found in {}",
                path.display()
            );
        }
    }
}

async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
            .await
            .expect("reply in time")
            .expect("read");
        if read == 0 {
            return all;
        }
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] == b' ' {
            return all;
        }
    }
}

fn tls_connector(certificate: &std::path::Path) -> tokio_rustls::TlsConnector {
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
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_pipelined_behind_starttls_are_discarded() {
    let store = test_store();
    let server = RunningServer::start(&store, test_settings()).await;
    let stream = TcpStream::connect(server.smtp).await.expect("connect");
    let mut reader = BufReader::new(stream);
    assert!(read_reply(&mut reader).await.starts_with("220 "));
    reader
        .get_mut()
        .write_all(b"EHLO c\r\n")
        .await
        .expect("write");
    let ehlo = read_reply(&mut reader).await;
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    // The injection: a command in the same packet as STARTTLS, meant to be read after TLS.
    reader
        .get_mut()
        .write_all(b"STARTTLS\r\nMAIL FROM:<injected@remote.example>\r\n")
        .await
        .expect("write");
    assert!(read_reply(&mut reader).await.starts_with("220 2.0.0"));
    let stream = reader.into_inner();
    let name = ServerName::try_from("localhost").expect("name");
    let tls = tls_connector(&server.certificate)
        .connect(name, stream)
        .await
        .expect("handshake");
    let mut tls = BufReader::new(tls);
    tls.get_mut()
        .write_all(b"MAIL FROM:<a@remote.example>\r\nEHLO c\r\nQUIT\r\n")
        .await
        .expect("write");
    let mut rest = String::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_string(&mut rest))
        .await
        .expect("in time")
        .expect("read");
    // No reply to the injected MAIL; MAIL before the new EHLO is refused (state was reset).
    let first = rest.lines().next().unwrap_or("");
    assert!(first.starts_with("503 5.5.1"), "{rest}");
    assert!(rest.contains("REQUIRETLS"), "REQUIRETLS after TLS: {rest}");
    assert!(!rest.contains("STARTTLS"), "{rest}");
    server.stop().await;
}

/// An administrator's reset without the recovery code after a submission client authenticated
/// (its session holds the old account key): the next MAIL is refused with 530, so the client
/// must authenticate again, with the new password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_account_must_authenticate_again_before_sending() {
    use base64::Engine as _;
    let store = test_store();
    let server = RunningServer::start(&store, test_settings()).await;
    let stream = TcpStream::connect(server.submission_tls)
        .await
        .expect("connect");
    let tls = tls_connector(&server.certificate)
        .connect(ServerName::try_from("localhost").expect("name"), stream)
        .await
        .expect("handshake");
    let mut tls = BufReader::new(tls);
    let plain = |password: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("\0{ALICE}\0{password}"))
    };
    assert!(read_reply(&mut tls).await.starts_with("220 "));
    let mut exchange = async |line: String| {
        tls.get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("write");
        read_reply(&mut tls).await
    };
    assert!(exchange("EHLO c".into()).await.starts_with("250"));
    let auth = exchange(format!("AUTH PLAIN {}", plain(PASSWORD))).await;
    assert!(auth.starts_with("235"), "{auth}");
    store
        .store
        .set_password(
            &address(ALICE),
            &letterlock_types::Secret::from("a new password after a takeover"),
            letterlock_mailstore::PasswordAuthority::AdminWithoutRecovery,
        )
        .expect("reset");
    let mail = exchange(format!("MAIL FROM:<{ALICE}>")).await;
    assert!(mail.starts_with("530 5.7.0"), "{mail}");
    let again = exchange(format!(
        "AUTH PLAIN {}",
        plain("a new password after a takeover")
    ))
    .await;
    assert!(again.starts_with("235"), "{again}");
    let mail = exchange(format!("MAIL FROM:<{ALICE}>")).await;
    assert!(mail.starts_with("250"), "{mail}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_garbage_after_starttls_closes_that_session_only() {
    let store = test_store();
    let server = RunningServer::start(&store, test_settings()).await;
    for _ in 0..3 {
        let stream = TcpStream::connect(server.submission_starttls)
            .await
            .expect("connect");
        let mut reader = BufReader::new(stream);
        read_reply(&mut reader).await;
        reader
            .get_mut()
            .write_all(b"EHLO c\r\nSTARTTLS\r\n")
            .await
            .expect("write");
        read_reply(&mut reader).await;
        assert!(read_reply(&mut reader).await.starts_with("220"));
        let _ = reader
            .get_mut()
            .write_all(b"\x16\x03\x01\x00\x05garbage that is not TLS\r\n\r\n")
            .await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut rest))
            .await
            .expect("closed in time");
    }
    let message = message_from("Bob <bob@example.net>", "after-garbage");
    let out = smtplib(
        "mx",
        server.smtp.port(),
        &server,
        None,
        "bob@example.net",
        ALICE,
        &message,
    )
    .await;
    assert!(out.starts_with("sent {}"), "the server still serves: {out}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_auth_failures_end_with_421() {
    let store = test_store();
    let server = RunningServer::start(&store, test_settings()).await;
    let stream = TcpStream::connect(server.submission_tls)
        .await
        .expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = tls_connector(&server.certificate)
        .connect(name, stream)
        .await
        .expect("handshake");
    let mut tls = BufReader::new(tls);
    // PLAIN for alice with a wrong password, three times (the per-session limit).
    let wrong = "AGFsaWNlQGV4YW1wbGUub3JnAHdyb25n";
    let script = format!(
        "EHLO c\r\nAUTH PLAIN {wrong}\r\nAUTH PLAIN {wrong}\r\nAUTH PLAIN {wrong}\r\nNOOP\r\n"
    );
    tls.get_mut()
        .write_all(script.as_bytes())
        .await
        .expect("write");
    let mut all = String::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_string(&mut all))
        .await
        .expect("in time")
        .ok();
    assert_eq!(
        codes(&all),
        ["220", "250", "535", "535", "535", "421"],
        "{all}"
    );
    assert!(all.contains("535 5.7.8"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_shutdown_says_421_to_open_sessions() {
    let store = test_store();
    let server = RunningServer::start(&store, test_settings()).await;
    let stream = TcpStream::connect(server.smtp).await.expect("connect");
    let mut reader = BufReader::new(stream);
    read_reply(&mut reader).await;
    reader
        .get_mut()
        .write_all(b"EHLO c\r\n")
        .await
        .expect("write");
    read_reply(&mut reader).await;
    let stopping = tokio::spawn(server.stop());
    let goodbye = read_reply(&mut reader).await;
    assert!(goodbye.starts_with("421 4.3.2"), "{goodbye}");
    stopping.await.expect("stopped");
}

/// Autocrypt Level 1: submitted mail carries the sender's key; a client's own header stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_mail_carries_the_senders_key_in_an_autocrypt_header() {
    let store = test_store();
    let server = RunningServer::start(&store, test_settings()).await;
    let message = message_from(ALICE, "autocrypt");
    let out = smtplib(
        "starttls",
        server.submission_starttls.port(),
        &server,
        Some((ALICE, PASSWORD)),
        ALICE,
        BOB,
        &message,
    )
    .await;
    assert!(out.starts_with("sent {}"), "{out}");
    let delivered = String::from_utf8(inbox(&store.store, BOB)[0].clone()).expect("utf-8");
    let start = delivered
        .find("Autocrypt: addr=alice@example.org; keydata=")
        .expect("Autocrypt header");
    let mut keydata = String::new();
    for line in delivered[start..].lines().skip(1) {
        match line.strip_prefix(' ') {
            Some(chunk) => keydata.push_str(chunk.trim_end()),
            None => break,
        }
    }
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(&keydata)
        .expect("base64 key");
    assert_eq!(
        key,
        store.store.public_key(&address(ALICE)).expect("public key")
    );
    // GnuPG reads the key as published.
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("key.pgp");
    std::fs::write(&key_file, &key).expect("write");
    let listed = std::process::Command::new("gpg")
        .arg("--homedir")
        .arg(dir.path())
        .args([
            "--batch",
            "--with-colons",
            "--import-options",
            "show-only",
            "--import",
        ])
        .arg(&key_file)
        .output()
        .expect("gpg");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("<alice@example.org>"));
    assert_eq!(
        mailbox(&store.store, ALICE, "Sent"),
        vec![message],
        "the Sent copy is as sent"
    );

    // A client that writes its own Autocrypt header keeps it, alone.
    let mut own = b"Autocrypt: addr=alice@example.org; keydata=AAAA\r\n".to_vec();
    own.extend_from_slice(&message_from(ALICE, "own-autocrypt"));
    smtplib(
        "starttls",
        server.submission_starttls.port(),
        &server,
        Some((ALICE, PASSWORD)),
        ALICE,
        BOB,
        &own,
    )
    .await;
    let second = String::from_utf8(inbox(&store.store, BOB)[1].clone()).expect("utf-8");
    assert_eq!(second.matches("Autocrypt: ").count(), 1, "{second}");
    assert!(second.contains("keydata=AAAA"), "{second}");
    server.stop().await;
}
