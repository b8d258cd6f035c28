//! Outbound mail end to end: a user submits to a remote recipient, the message is DKIM-signed
//! and queued sealed, and the queue runner delivers it over STARTTLS (certificate verified) to
//! a second Letterlock instance with its own store, found through the test resolver. The
//! signatures are checked by dkimpy, a verifier nobody here wrote, with the published TXT
//! records handed to it through its `dnsfunc` hook (no real DNS).

mod common;

use std::sync::Arc;

use common::*;
use letterlock_queue::client::{ClientSettings, Timeouts};
use letterlock_queue::store::now_unix;
use letterlock_queue::{
    DkimKeys, MapResolver, Queue, QueueSettings, Runner, RunnerSettings, SpoolKey,
};
use letterlock_types::Domain;

const CAROL: &str = "carol@remote.test";
const DAN: &str = "dan@remote.test";
const ERIN: &str = "erin@remote.test";
const CANARY: &str = "CANARY-outbound-9b2e41";

const SUBMIT: &str = r#"
import smtplib, ssl, sys
port, cafile, user, password, sender = sys.argv[1:6]
recipients = sys.argv[6:]
message = sys.stdin.buffer.read()
context = ssl.create_default_context(cafile=cafile)
client = smtplib.SMTP("localhost", int(port), local_hostname="client.example")
client.starttls(context=context)
client.login(user, password)
try:
    print("sent", client.sendmail(sender, recipients, message))
except smtplib.SMTPException as error:
    print("refused", error)
client.quit()
"#;

/// Verifies the signature at each index with dkimpy; the TXT records come as name/value pairs.
const DKIMPY_VERIFY: &str = r#"
import sys, dkim
count = int(sys.argv[1])
records = dict(zip(sys.argv[2::2], sys.argv[3::2]))
def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    return records.get(name.rstrip("."), "").encode()
message = sys.stdin.buffer.read()
for index in range(count):
    verifier = dkim.DKIM(message)
    ok = verifier.verify(idx=index, dnsfunc=dnsfunc)
    print(index, ok, verifier.signature_fields.get(b"a", b"").decode())
"#;

fn roots_of(certificate: &std::path::Path) -> rustls::RootCertStore {
    let pem = std::fs::read(certificate).expect("certificate");
    let mut roots = rustls::RootCertStore::empty();
    for certificate in
        <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(
            &pem,
        )
    {
        roots.add(certificate.expect("pem")).expect("root");
    }
    roots
}

/// Alice's server, with an outbound queue and DKIM keys, and remote.test's MX, both running.
struct TwoServers {
    queue: Queue,
    dkim: DkimKeys,
    sending: RunningServer,
    receiving: RunningServer,
}

async fn two_servers(sender: &TestStore, receiver: &TestStore) -> TwoServers {
    two_servers_with(sender, receiver, test_settings()).await
}

/// As [`two_servers`], the sending server with `settings`.
async fn two_servers_with(
    sender: &TestStore,
    receiver: &TestStore,
    settings: letterlock_smtp::Settings,
) -> TwoServers {
    let spool_key = SpoolKey::generate();
    let queue = Queue::new(
        Arc::clone(&sender.engine),
        &spool_key,
        QueueSettings::default(),
    );
    let dkim = DkimKeys::new(Arc::clone(&sender.engine), &spool_key);
    let outbound = letterlock_smtp::Outbound {
        queue: queue.clone(),
        dkim: dkim.clone(),
        wake: None,
    };
    let sending = RunningServer::start_with_outbound(sender, settings, Some(outbound)).await;
    let receiving = RunningServer::start(receiver, test_settings()).await;
    TwoServers {
        queue,
        dkim,
        sending,
        receiving,
    }
}

/// Alice submits `message` to `recipients` with smtplib over STARTTLS; it must be accepted.
async fn submit(sending: &RunningServer, message: &str, recipients: &[&str]) {
    let stdout = try_submit(sending, message, recipients).await;
    assert!(stdout.starts_with("sent {}"), "{stdout}");
}

/// As [`submit`], returning smtplib's outcome: `sent {...}` or `refused (code, text)`.
async fn try_submit(sending: &RunningServer, message: &str, recipients: &[&str]) -> String {
    let mut arguments: Vec<String> = vec![
        "-c".into(),
        SUBMIT.into(),
        sending.submission_starttls.port().to_string(),
        sending.certificate.display().to_string(),
        ALICE.into(),
        PASSWORD.into(),
        ALICE.into(),
    ];
    arguments.extend(recipients.iter().map(|recipient| recipient.to_string()));
    let (ok, stdout, stderr) =
        run_program("python3", arguments, Some(message.as_bytes().to_vec())).await;
    assert!(ok, "{stdout} {stderr}");
    stdout
}

/// One round of the queue runner, delivering everything queued to `receiving` (the MX of
/// remote.test) over TLS.
async fn deliver_queue(
    queue: &Queue,
    sender: &TestStore,
    receiving: &RunningServer,
    entries: usize,
) {
    let client = ClientSettings {
        hostname: "mx.example.org".into(),
        port: receiving.smtp.port(),
        timeouts: Timeouts::default(),
        roots: Arc::new(roots_of(&receiving.certificate)),
    };
    let resolver = MapResolver::default()
        .with_mx("remote.test", 10, "localhost")
        .with_ip("localhost", "127.0.0.1".parse().expect("ip"));
    let runner = Runner::new(
        queue.clone(),
        sender.store.clone(),
        Arc::new(resolver),
        RunnerSettings::new(client),
    );
    let round = runner.run_once_at(now_unix()).await.expect("round");
    assert_eq!(
        (round.claimed, round.finished),
        (entries, entries),
        "{round:?}"
    );
    assert!(queue.list().expect("list").is_empty());
}

/// Carol and Dan read their mail with GnuPG and Alice's server learnt their keys (Autocrypt);
/// Erin has no key. Alice writes to Carol, Bcc Dan and Erin: Carol's copy leaves encrypted to
/// her and Alice only (PGP/MIME, subject hidden), Dan gets his own encrypted copy (his key
/// is not in Carol's), Erin the message in the clear; each gpg decrypts its copy to what Alice
/// wrote, and Alice's Sent copy is what she wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_mail_to_a_known_key_leaves_encrypted_and_gnupg_reads_it() {
    let sender = test_store();
    let receiver = test_store_for("remote.test", &[CAROL, DAN, ERIN]);
    let root = tempfile::tempdir().expect("tempdir");
    let homes: Vec<std::path::PathBuf> = [CAROL, DAN]
        .iter()
        .map(|user| {
            let home = gpg_home_with_key(root.path(), user);
            sender
                .store
                .record_peer_key(&address(user), &gpg(&home, &["--export", user]).stdout)
                .expect("peer key");
            home
        })
        .collect();

    let TwoServers {
        queue,
        sending,
        receiving,
        ..
    } = two_servers(&sender, &receiver).await;
    let message = format!(
        "From: Alice <{ALICE}>\r\nTo: <{CAROL}>\r\nSubject: secret plans\r\nDate: Tue, 24 Nov 2026 08:00:00 +0000\r\nMessage-ID: <encrypted@example.org>\r\n\r\nHello Carol, {CANARY}.\r\n"
    );
    submit(&sending, &message, &[CAROL, DAN, ERIN]).await;
    deliver_queue(&queue, &sender, &receiving, 3).await;

    let mut key_ids = Vec::new();
    for (user, home) in [CAROL, DAN].iter().zip(&homes) {
        let delivered = inbox(&receiver.store, user);
        assert_eq!(delivered.len(), 1, "{user}");
        let text = String::from_utf8_lossy(&delivered[0]).into_owned();
        assert!(text.contains("Content-Type: multipart/encrypted"), "{text}");
        assert!(text.contains("Subject: ...\r\n"), "{text}");
        assert!(
            text.contains("Message-ID: <encrypted@example.org>"),
            "{text}"
        );
        for secret in [CANARY, "secret plans"] {
            assert!(!text.contains(secret), "{secret} left in the clear: {text}");
        }
        let armored = root.path().join(format!("{user}.asc"));
        let decrypted = gpg_decrypt_pgp_mime(home, &delivered[0], &armored);
        let decrypted = String::from_utf8(decrypted).expect("utf-8");
        assert!(decrypted.ends_with(&message), "{decrypted}");
        assert!(decrypted.starts_with("Autocrypt: addr="), "{decrypted}");
        let packets = gpg(home, &["--list-packets", armored.to_str().expect("utf-8")]).stdout;
        let recipients: Vec<String> = String::from_utf8_lossy(&packets)
            .lines()
            .filter(|line| line.starts_with(":pubkey enc packet:"))
            .map(str::to_string)
            .collect();
        assert_eq!(recipients.len(), 2, "{user} and Alice: {recipients:?}");
        key_ids.push(recipients);
    }
    let dan_key = key_ids[1]
        .iter()
        .find(|packet| !key_ids[0].contains(packet))
        .expect("Dan's own key id");
    assert!(
        !key_ids[0].contains(dan_key),
        "Bcc leaked into Carol's copy: {key_ids:?}"
    );

    let erin = inbox(&receiver.store, ERIN);
    assert_eq!(erin.len(), 1);
    let text = String::from_utf8_lossy(&erin[0]).into_owned();
    assert!(
        text.contains(CANARY) && text.contains("Subject: secret plans"),
        "{text}"
    );

    assert_eq!(
        mailbox(&sender.store, ALICE, "Sent"),
        vec![message.into_bytes()]
    );
    sending.stop().await;
    receiving.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_mail_is_queued_sealed_then_delivered_to_another_letterlock_with_dkim_that_dkimpy_verifies(
) {
    let sender = test_store();
    let receiver = test_store_for("remote.test", &[CAROL]);
    let TwoServers {
        queue,
        dkim,
        sending,
        receiving,
    } = two_servers(&sender, &receiver).await;

    let message = format!(
        "From: Alice <{ALICE}>\r\nTo: <{CAROL}>\r\nSubject: outbound test\r\nDate: Tue, 24 Nov 2026 08:00:00 +0000\r\nMessage-ID: <outbound@example.org>\r\n\r\nHello Carol, {CANARY}.\r\n.A line that starts with a dot.\r\n"
    );
    submit(&sending, &message, &[CAROL]).await;

    // Queued, and nothing of it readable on the sender's disk.
    let queued = queue.list().expect("list");
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].envelope.recipients[0].address, address(CAROL));
    for file in files_under(sender.dir.path()) {
        let bytes = std::fs::read(&file).expect("read");
        for needle in [CANARY, CAROL] {
            assert!(
                !bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes()),
                "{needle} in plaintext in {}",
                file.display()
            );
        }
    }

    deliver_queue(&queue, &sender, &receiving, 1).await;

    let delivered = inbox(&receiver.store, CAROL);
    assert_eq!(delivered.len(), 1);
    let text = String::from_utf8_lossy(&delivered[0]).into_owned();
    assert!(text.contains(CANARY), "{text}");
    assert!(
        text.contains("\r\n.A line that starts with a dot.\r\n"),
        "{text}"
    );
    assert!(
        trace_of(&delivered[0]).contains("with ESMTPS"),
        "went over TLS: {text}"
    );
    let signatures = text.matches("DKIM-Signature:").count();
    assert_eq!(signatures, 2, "{text}");

    let mut arguments = vec![
        "-c".to_string(),
        DKIMPY_VERIFY.to_string(),
        signatures.to_string(),
    ];
    for record in dkim
        .dns_records(&Domain::try_from("example.org").expect("domain"))
        .expect("records")
    {
        arguments.push(record.name);
        arguments.push(record.value);
    }
    let (ok, stdout, stderr) = run_program("python3", arguments, Some(delivered[0].clone())).await;
    assert!(
        ok,
        "dkimpy failed (run scripts/install-test-tools.sh): {stdout} {stderr}"
    );
    assert!(
        stdout.contains("0 True ed25519-sha256"),
        "{stdout} {stderr}"
    );
    assert!(stdout.contains("1 True rsa-sha256"), "{stdout} {stderr}");

    // The Sent copy is the message as the user sent it.
    assert_eq!(
        mailbox(&sender.store, ALICE, "Sent"),
        vec![message.into_bytes()]
    );
    sending.stop().await;
    receiving.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_outbound_remote_recipients_still_get_451() {
    let store = test_store();
    let server = smtp_server(&store.store, test_settings());
    let mut context = context(letterlock_smtp::Mode::Submission);
    context.implicit_tls = Some("TLSv1_3".into());
    let credentials = base64_plain(ALICE, PASSWORD);
    let output = converse_with(
        &server,
        context,
        format!("EHLO c\r\nAUTH PLAIN {credentials}\r\nMAIL FROM:<{ALICE}>\r\nRCPT TO:<{CAROL}>\r\nQUIT\r\n").as_bytes(),
    )
    .await;
    assert!(
        output.contains("451 4.3.0 outbound delivery is not available yet"),
        "{output}"
    );
}

fn base64_plain(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// smtplib with RFC 3461 options: RET and ENVID on MAIL, NOTIFY and ORCPT on each RCPT.
const SUBMIT_WITH_DSN: &str = r#"
import smtplib, ssl, sys
port, cafile, user, password = sys.argv[1:5]
recipients = sys.argv[5:]
message = sys.stdin.buffer.read()
context = ssl.create_default_context(cafile=cafile)
client = smtplib.SMTP("localhost", int(port), local_hostname="client.example")
client.starttls(context=context)
client.login(user, password)
client.ehlo("client.example")
assert client.has_extn("dsn"), client.esmtp_features
print("sent", client.sendmail(user, recipients, message,
    mail_options=["RET=HDRS", "ENVID=QQ314159+2Bx"],
    rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Bob+40Example.org"]))
client.quit()
"#;

/// Alice asks for success reports (smtplib's DSN options): her local recipient's copy is
/// answered at once with a "delivered" report carrying her ENVID and ORCPT; the remote
/// recipient's entry keeps the parameters, which go on to the next server (a Letterlock,
/// which does DSN), so no "relayed" report follows from us.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsn_requests_of_a_submission_are_honoured_locally_and_passed_on() {
    let sender = test_store();
    let receiver = test_store_for("remote.test", &[CAROL]);
    let TwoServers {
        queue,
        sending,
        receiving,
        ..
    } = two_servers(&sender, &receiver).await;
    let message = format!(
        "From: {ALICE}\r\nTo: {BOB}, {CAROL}\r\nSubject: please confirm\r\nMessage-ID: <dsn@example.org>\r\n\r\n{CANARY}\r\n"
    );
    let (ok, stdout, stderr) = run_program(
        "python3",
        vec![
            "-c".into(),
            SUBMIT_WITH_DSN.into(),
            sending.submission_starttls.port().to_string(),
            sending.certificate.display().to_string(),
            ALICE.into(),
            PASSWORD.into(),
            BOB.into(),
            CAROL.into(),
        ],
        Some(message.into_bytes()),
    )
    .await;
    assert!(ok && stdout.starts_with("sent {}"), "{stdout} {stderr}");

    let reports = inbox(&sender.store, ALICE);
    assert_eq!(reports.len(), 1, "one delivered report, for Bob");
    let text = String::from_utf8_lossy(&reports[0]);
    for expected in [
        "Action: delivered",
        "Final-Recipient: rfc822; bob@example.org",
        "Original-Recipient: rfc822; Bob@Example.org",
        "Original-Envelope-Id: QQ314159+x",
        "Subject: please confirm",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    assert!(
        !text.contains(CANARY),
        "a success report returns the header only"
    );

    let entries = queue.list().expect("list");
    assert_eq!(entries.len(), 1);
    let envelope = &entries[0].envelope;
    assert_eq!(envelope.dsn.envid.as_deref(), Some("QQ314159+x"));
    assert!(!envelope.dsn.ret_full);
    let carol = &envelope.recipients[0];
    assert!(
        carol.notify.given && carol.notify.success && carol.notify.failure && !carol.notify.delay
    );

    // Whom Alice wrote to are her known correspondents now (reputation).
    let known = sender
        .store
        .spam_model(letterlock_mailstore::ModelOwner::Correspondents(&address(
            ALICE,
        )))
        .expect("read")
        .and_then(|bytes| letterlock_filter::reputation::Correspondents::from_bytes(&bytes).ok())
        .expect("correspondents recorded");
    assert!(known.contains(BOB) && known.contains(CAROL));

    deliver_queue(&queue, &sender, &receiving, 1).await;
    assert_eq!(inbox(&receiver.store, CAROL).len(), 1);
    assert_eq!(
        inbox(&sender.store, ALICE).len(),
        1,
        "the next server took the report over"
    );
}

/// Carol's GnuPG home under `root`, her key learnt by `sender` (as Autocrypt would).
fn carol_known_to(sender: &TestStore, root: &std::path::Path) -> std::path::PathBuf {
    let home = gpg_home_with_key(root, CAROL);
    sender
        .store
        .record_peer_key(&address(CAROL), &gpg(&home, &["--export", CAROL]).stdout)
        .expect("peer key");
    home
}

/// The account's encryption policy decides what leaves: `never` sends to a known key in the
/// clear, `when-all-have-keys` encrypts only when nobody lacks a key, `always` refuses a
/// submission with a keyless recipient before anything is delivered or queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounts_encryption_policy_decides_what_leaves_encrypted() {
    use letterlock_mailstore::{EncryptionPolicy, UserSettings};
    let sender = test_store();
    let receiver = test_store_for("remote.test", &[CAROL, ERIN]);
    let root = tempfile::tempdir().expect("tempdir");
    carol_known_to(&sender, root.path());
    let TwoServers {
        queue,
        sending,
        receiving,
        ..
    } = two_servers(&sender, &receiver).await;
    let set = |encryption| {
        sender
            .store
            .set_user_settings(
                &address(ALICE),
                UserSettings {
                    encryption,
                    sign: false,
                },
            )
            .expect("settings")
    };
    let message = |subject: &str| {
        format!("From: {ALICE}\r\nTo: {CAROL}\r\nSubject: {subject}\r\n\r\n{CANARY}\r\n")
    };
    let encrypted = |user: &str| {
        let delivered = inbox(&receiver.store, user);
        let last = delivered.last().expect("delivered");
        String::from_utf8_lossy(last).contains("multipart/encrypted")
    };

    set(EncryptionPolicy::Never);
    submit(&sending, &message("never"), &[CAROL]).await;
    deliver_queue(&queue, &sender, &receiving, 1).await;
    assert!(!encrypted(CAROL), "never: clear even to a known key");

    set(EncryptionPolicy::WhenAllHaveKeys);
    submit(&sending, &message("not all"), &[CAROL, ERIN]).await;
    deliver_queue(&queue, &sender, &receiving, 1).await;
    assert!(
        !encrypted(CAROL) && !encrypted(ERIN),
        "Erin has no key: all clear"
    );
    submit(&sending, &message("all"), &[CAROL]).await;
    deliver_queue(&queue, &sender, &receiving, 1).await;
    assert!(encrypted(CAROL), "everyone has a key: encrypted");

    set(EncryptionPolicy::Always);
    let sent_before = mailbox(&sender.store, ALICE, "Sent").len();
    let outcome = try_submit(&sending, &message("always"), &[CAROL, ERIN, BOB]).await;
    assert!(
        outcome.starts_with("refused") && outcome.contains("550") && outcome.contains(ERIN),
        "{outcome}"
    );
    assert!(queue.list().expect("list").is_empty(), "nothing queued");
    assert!(
        inbox(&sender.store, BOB).is_empty(),
        "nothing delivered locally"
    );
    assert_eq!(mailbox(&sender.store, ALICE, "Sent").len(), sent_before);
    submit(&sending, &message("always, all keys"), &[CAROL]).await;
    deliver_queue(&queue, &sender, &receiving, 1).await;
    assert!(encrypted(CAROL));
}

/// With signing on, submissions leave as PGP/MIME signed messages that GnuPG verifies with
/// Alice's published key (8-bit text signed as quoted-printable); an encrypted copy is signed
/// inside its encryption.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_submissions_verify_with_gnupg_in_the_clear_and_inside_encryption() {
    use letterlock_mailstore::UserSettings;
    let sender = test_store();
    let receiver = test_store_for("remote.test", &[CAROL, ERIN]);
    let root = tempfile::tempdir().expect("tempdir");
    let carol_home = carol_known_to(&sender, root.path());
    // Carol and Erin's side knows Alice's public key (as WKD would give it).
    let alice_key = sender
        .store
        .public_key(&address(ALICE))
        .expect("Alice's key");
    let alice_key_file = root.path().join("alice.pgp");
    std::fs::write(&alice_key_file, &alice_key).expect("write");
    gpg(
        &carol_home,
        &["--import", alice_key_file.to_str().expect("utf-8")],
    );
    sender
        .store
        .set_user_settings(
            &address(ALICE),
            UserSettings {
                sign: true,
                ..UserSettings::default()
            },
        )
        .expect("settings");
    let TwoServers {
        queue,
        sending,
        receiving,
        ..
    } = two_servers(&sender, &receiver).await;
    let message = format!(
        "From: {ALICE}\r\nTo: {CAROL}\r\nCc: {ERIN}\r\nSubject: signed\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nSigned words, {CANARY}. Grüße!\r\n"
    );
    submit(&sending, &message, &[CAROL, ERIN]).await;
    deliver_queue(&queue, &sender, &receiving, 2).await;

    let verify = |signed: &[u8], name: &str| {
        let (content, signature) =
            letterlock_smtp::signatures::pgp_mime_parts(signed).expect("PGP/MIME signed");
        let content_file = root.path().join(format!("{name}.content"));
        let signature_file = root.path().join(format!("{name}.asc"));
        std::fs::write(&content_file, &content).expect("write");
        std::fs::write(&signature_file, &signature).expect("write");
        let output = gpg(
            &carol_home,
            &[
                "--status-fd",
                "1",
                "--verify",
                signature_file.to_str().expect("utf-8"),
                content_file.to_str().expect("utf-8"),
            ],
        );
        let status = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(status.contains("[GNUPG:] GOODSIG"), "{name}: {status}");
        String::from_utf8_lossy(&content).into_owned()
    };

    // Erin has no key: her copy is signed in the clear.
    let erin = inbox(&receiver.store, ERIN);
    let content = verify(&erin[0], "erin");
    assert!(
        content.contains(CANARY) && content.starts_with("Content-Type: text/plain"),
        "{content}"
    );
    // Signed 7-bit (RFC 3156 section 3): the 8-bit text travels quoted-printable.
    assert!(
        content.is_ascii()
            && content.contains("Content-Transfer-Encoding: quoted-printable")
            && content.contains("Gr=C3=BC=C3=9Fe!"),
        "{content}"
    );

    // Carol's copy is encrypted; inside is the signed message.
    let carol = inbox(&receiver.store, CAROL);
    let armored = root.path().join("carol.pgp.asc");
    let inner = gpg_decrypt_pgp_mime(&carol_home, &carol[0], &armored);
    assert!(String::from_utf8_lossy(&inner).contains("multipart/signed"));
    verify(&inner, "carol");

    // What Alice wrote is her Sent copy, unsigned.
    assert_eq!(
        mailbox(&sender.store, ALICE, "Sent"),
        vec![message.into_bytes()]
    );
}

/// Erin's key was never learnt, but her domain publishes it by WKD (advanced method, served
/// over HTTPS under a test CA): Alice's mail to her leaves encrypted to it and GnuPG, holding
/// Erin's secret key, decrypts it. Dan's domain has no key for him: his copy is clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_found_by_wkd_encrypts_the_submission() {
    let sender = test_store();
    let receiver = test_store_for("remote.test", &[DAN, ERIN]);
    let root = tempfile::tempdir().expect("tempdir");
    let erin_home = gpg_home_with_key(root.path(), ERIN);
    let erin_key = gpg(&erin_home, &["--export", ERIN]).stdout;
    let (wkd, discovery) = wkd_publishing("remote.test", "erin", erin_key).await;
    let mut settings = test_settings();
    settings.key_discovery = Some(discovery);
    let TwoServers {
        queue,
        sending,
        receiving,
        ..
    } = two_servers_with(&sender, &receiver, settings).await;
    let message =
        format!("From: {ALICE}\r\nTo: {ERIN}, {DAN}\r\nSubject: found by WKD\r\n\r\n{CANARY}\r\n");
    submit(&sending, &message, &[ERIN, DAN]).await;
    deliver_queue(&queue, &sender, &receiving, 2).await;

    let erin = inbox(&receiver.store, ERIN);
    let text = String::from_utf8_lossy(&erin[0]).into_owned();
    assert!(
        text.contains("multipart/encrypted") && !text.contains(CANARY),
        "{text}"
    );
    let armored = root.path().join("erin.asc");
    let decrypted = gpg_decrypt_pgp_mime(&erin_home, &erin[0], &armored);
    assert!(String::from_utf8_lossy(&decrypted).contains(CANARY));
    let dan = inbox(&receiver.store, DAN);
    assert!(
        String::from_utf8_lossy(&dan[0]).contains(CANARY),
        "no key for Dan: clear"
    );
    assert_eq!(wkd.requests.load(std::sync::atomic::Ordering::SeqCst), 2);

    // The answers are cached: a second message asks nobody.
    submit(&sending, &message, &[ERIN, DAN]).await;
    assert_eq!(wkd.requests.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// A key Alice trusts for Carol (her own contact key) wins over the key learnt for Carol from
/// an Autocrypt header: the copy is encrypted to the trusted key, which GnuPG's Carol decrypts,
/// and not to the learnt one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounts_trusted_key_wins_over_a_learnt_one() {
    let sender = test_store();
    let receiver = test_store_for("remote.test", &[CAROL]);
    let root = tempfile::tempdir().expect("tempdir");
    let learnt_home = carol_known_to(&sender, &root.path().join("learnt"));
    let trusted_home = gpg_home_with_key(&root.path().join("trusted"), CAROL);
    let alice = sender
        .store
        .unlock(&address(ALICE), &letterlock_types::Secret::from(PASSWORD))
        .expect("unlock");
    alice
        .trust_key(
            &address(CAROL),
            &gpg(&trusted_home, &["--export", CAROL]).stdout,
        )
        .expect("trust");
    let TwoServers {
        queue,
        sending,
        receiving,
        ..
    } = two_servers(&sender, &receiver).await;
    let message = format!("From: {ALICE}\r\nTo: {CAROL}\r\nSubject: trusted\r\n\r\n{CANARY}\r\n");
    submit(&sending, &message, &[CAROL]).await;
    deliver_queue(&queue, &sender, &receiving, 1).await;

    let delivered = inbox(&receiver.store, CAROL);
    let armored = root.path().join("copy.asc");
    let decrypted = gpg_decrypt_pgp_mime(&trusted_home, &delivered[0], &armored);
    assert!(String::from_utf8_lossy(&decrypted).contains(CANARY));
    let by_learnt = std::process::Command::new("gpg")
        .arg("--homedir")
        .arg(&learnt_home)
        .args(["--batch", "--decrypt", armored.to_str().expect("utf-8")])
        .output()
        .expect("gpg");
    assert!(!by_learnt.status.success(), "the learnt key cannot read it");
}
