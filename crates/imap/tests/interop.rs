//! Interop with IMAP clients nobody here wrote: Python's `imaplib` (over IMAPS and over
//! STARTTLS on 143) and `curl` (imaps://), each run as a subprocess against a real server.
//! Missing tools are installed by scripts/install-test-tools.sh.

mod common;

use std::process::Command;

use common::{address, message, PASSWORD, USER};

const IMAPLIB_SCRIPT: &str = r#"
import imaplib, os, ssl, sys
context = ssl.create_default_context(cafile=os.environ["CA"])
user, password = os.environ["IMAP_USER"], os.environ["IMAP_PASSWORD"]
port = int(os.environ["PORT"])
if os.environ["MODE"] == "imaps":
    client = imaplib.IMAP4_SSL("localhost", port, ssl_context=context)
else:
    client = imaplib.IMAP4("localhost", port)
    try:
        client.login(user, password)
        print("LOGIN ACCEPTED BEFORE TLS")
        sys.exit(1)
    except imaplib.IMAP4.error as error:
        assert "PRIVACYREQUIRED" in str(error), error
    client.starttls(ssl_context=context)
typ, _ = client.login(user, password)
assert typ == "OK", typ
typ, listing = client.list()
assert typ == "OK" and any(b'"INBOX"' in line for line in listing), listing
typ, data = client.select("INBOX")
assert typ == "OK" and data == [b"1"], data
typ, data = client.fetch("1", "(BODY.PEEK[])")
expected = open(os.environ["EXPECTED"], "rb").read()
assert data[0][1] == expected, (data[0][1], expected)
typ, data = client.store("1", "+FLAGS", "\\Flagged")
assert typ == "OK", data
typ, data = client.search(None, "FLAGGED")
assert data == [b"1"], data
typ, data = client.search(None, "BODY", "sesame")
assert data == [b"1"], data
typ, data = client.append("INBOX", "(\\Seen)", None, b"Subject: from python\r\n\r\nhello\r\n")
assert typ == "OK", data
typ, data = client.search(None, "SUBJECT", "python")
assert data == [b"2"], data
typ, data = client.store("2", "+FLAGS", "\\Deleted")
typ, data = client.expunge()
assert typ == "OK" and data == [b"2"], data
typ, data = client.logout()
assert typ == "BYE", typ
print("imaplib: all steps passed")
"#;

fn run_imaplib(server: &common::TestServer, mode: &str, port: u16, expected: &std::path::Path) {
    let output = Command::new("python3")
        .arg("-c")
        .arg(IMAPLIB_SCRIPT)
        .env("CA", &server.certificate_path)
        .env("IMAP_USER", USER)
        .env("IMAP_PASSWORD", PASSWORD)
        .env("PORT", port.to_string())
        .env("MODE", mode)
        .env("EXPECTED", expected)
        .output()
        .expect("python3 runs (scripts/install-test-tools.sh installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("all steps passed"),
        "imaplib over {mode} failed:\n{stdout}\n{stderr}"
    );
}

async fn server_with_one_message() -> (common::TestServer, std::path::PathBuf) {
    let server = common::start().await;
    let original = message("interop", "open sesame, exact bytes \u{e9}t\u{e9}");
    server
        .store
        .deliver(&[address(USER)], &original)
        .expect("deliver");
    let expected = server.data.path().join("expected.eml");
    std::fs::write(&expected, &original).expect("write expected");
    (server, expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_imaplib_over_imaps() {
    let (server, expected) = server_with_one_message().await;
    let port = server.imaps.port();
    let server = std::sync::Arc::new(server);
    let shared = std::sync::Arc::clone(&server);
    tokio::task::spawn_blocking(move || run_imaplib(&shared, "imaps", port, &expected))
        .await
        .expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_imaplib_over_starttls_on_143() {
    let (server, expected) = server_with_one_message().await;
    let port = server.imap.port();
    let server = std::sync::Arc::new(server);
    let shared = std::sync::Arc::clone(&server);
    tokio::task::spawn_blocking(move || run_imaplib(&shared, "starttls", port, &expected))
        .await
        .expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_fetches_the_exact_bytes_over_imaps() {
    let (server, expected) = server_with_one_message().await;
    let url = format!("imaps://localhost:{}/INBOX;UID=1", server.imaps.port());
    let certificate = server.certificate_path.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "20", "--cacert"])
            .arg(&certificate)
            .args(["--user", &format!("{USER}:{PASSWORD}"), &url])
            .output()
            .expect("curl runs (scripts/install-test-tools.sh installs it)")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, std::fs::read(expected).expect("expected"));
}
