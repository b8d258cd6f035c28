//! PGP/MIME signatures on inbound mail, checked against a key learnt from an earlier Autocrypt
//! header, with messages signed by GnuPG (Debian's): verified, tampering shown, unknown keys
//! named, keys published by the sender's domain by WKD used, and a forged result header from
//! outside removed. And the other way: outbound
//! PGP/MIME encryption that GnuPG decrypts.

mod common;

use std::path::Path;

use common::*;
use letterlock_smtp::auth::DnsRecords;
use letterlock_smtp::Mode;

const DAVE: &str = "dave@outside.example";

fn new_home(root: &Path, name: &str, uid: &str) -> std::path::PathBuf {
    let home = gpg_home(root, name);
    gpg(&home, &["--quick-gen-key", uid, "ed25519", "sign", "never"]);
    home
}

fn fingerprint(home: &Path) -> String {
    let listing =
        String::from_utf8(gpg(home, &["--with-colons", "--list-keys"]).stdout).expect("utf-8");
    listing
        .lines()
        .find(|line| line.starts_with("fpr:"))
        .and_then(|line| line.split(':').nth(9))
        .expect("fingerprint")
        .to_string()
}

/// A PGP/MIME message whose first part is `part`, signed by the key in `home`.
fn signed_message(root: &Path, home: &Path, part: &[u8]) -> Vec<u8> {
    let part_file = root.join("part.txt");
    std::fs::write(&part_file, part).expect("part");
    let signature_file = root.join("part.asc");
    let _ = std::fs::remove_file(&signature_file);
    gpg(
        home,
        &[
            "--detach-sign",
            "--armor",
            "--digest-algo",
            "SHA256",
            "-o",
            signature_file.to_str().expect("utf-8"),
            part_file.to_str().expect("utf-8"),
        ],
    );
    let signature = std::fs::read_to_string(&signature_file)
        .expect("signature")
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    let mut message = format!(
        "From: Dave <{DAVE}>\r\nTo: {ALICE}\r\nSubject: signed\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/signed; micalg=pgp-sha256; protocol=\"application/pgp-signature\"; boundary=\"sep\"\r\n\r\n\
This is an OpenPGP/MIME signed message.\r\n--sep\r\n"
    )
    .into_bytes();
    message.extend_from_slice(part);
    message.extend_from_slice(b"\r\n--sep\r\nContent-Type: application/pgp-signature\r\n\r\n");
    message.extend_from_slice(signature.as_bytes());
    message.extend_from_slice(b"--sep--\r\n");
    message
}

/// A plain message from Dave whose Autocrypt header carries his key (folded as clients do).
fn autocrypt_introduction(dave: &Path) -> String {
    use base64::Engine as _;
    let key = gpg(dave, &["--export", DAVE]).stdout;
    let keydata = base64::engine::general_purpose::STANDARD.encode(&key);
    let folded: Vec<&str> = keydata
        .as_bytes()
        .chunks(76)
        .map(|chunk| std::str::from_utf8(chunk).expect("ascii"))
        .collect();
    format!(
        "From: Dave <{DAVE}>\r\nTo: {ALICE}\r\nSubject: hi\r\nAutocrypt: addr={DAVE}; keydata=\r\n {}\r\n\r\nHello.\r\n",
        folded.join("\r\n ")
    )
}

fn session(body: &[u8]) -> Vec<u8> {
    session_to(body, &[ALICE])
}

fn session_to(body: &[u8], recipients: &[&str]) -> Vec<u8> {
    let mut input = format!("EHLO outside.example\r\nMAIL FROM:<{DAVE}>\r\n").into_bytes();
    for recipient in recipients {
        input.extend_from_slice(format!("RCPT TO:<{recipient}>\r\n").as_bytes());
    }
    input.extend_from_slice(b"DATA\r\n");
    input.extend_from_slice(body);
    input.extend_from_slice(b".\r\nQUIT\r\n");
    input
}

/// The signature verdict of Alice's delivered message with `subject` (empty when none).
fn verdict_of(store: &TestStore, subject: &str) -> String {
    inbox(&store.store, ALICE)
        .into_iter()
        .chain(mailbox(&store.store, ALICE, "Junk"))
        .find(|message| {
            String::from_utf8_lossy(message).contains(&format!("Subject: {subject}\r\n"))
        })
        .and_then(|message| signature_header(&message))
        .unwrap_or_default()
}

fn signature_header(message: &[u8]) -> Option<String> {
    String::from_utf8_lossy(message)
        .lines()
        .take_while(|line| !line.is_empty())
        .find_map(|line| {
            line.strip_prefix("X-Letterlock-Signature: ")
                .map(str::to_string)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpg_signed_mail_is_verified_against_the_autocrypt_key() {
    let store = test_store();
    // outside.example authorises the test client (192.0.2.7) and publishes DMARC: mail from
    // there is DMARC-aligned, mail from any other address is not.
    let records = DnsRecords::default()
        .with_txt("outside.example", "v=spf1 ip4:192.0.2.7 -all")
        .with_txt("_dmarc.outside.example", "v=DMARC1; p=none");
    let server = smtp_server(&store.store, test_settings_with_dns(records));
    let root = tempfile::tempdir().expect("tempdir");
    let dave = new_home(root.path(), "dave", &format!("Dave <{DAVE}>"));
    let dave_fingerprint = fingerprint(&dave);

    // Signed before Dave's key is known: the key is unknown.
    let part = b"Content-Type: text/plain; charset=utf-8\r\n\r\nHello Alice, this is signed.";
    let signed = signed_message(root.path(), &dave, part);
    converse(&server, Mode::Inbound, &session(&signed)).await;

    // Dave's first plain message introduces his key (Autocrypt).
    let introduction = autocrypt_introduction(&dave);
    converse(&server, Mode::Inbound, &session(introduction.as_bytes())).await;
    converse(&server, Mode::Inbound, &session(&signed)).await;

    // The same message with one byte of the signed text changed.
    let mut tampered = signed.clone();
    let at = tampered
        .windows(10)
        .position(|window| window == b"is signed.")
        .expect("signed text");
    tampered[at + 3] = b'S';
    converse(&server, Mode::Inbound, &session(&tampered)).await;

    // A forged result on an unsigned message.
    let forged = format!("X-Letterlock-Signature: valid; signer={DAVE}; key=FORGED\r\nFrom: Dave <{DAVE}>\r\nSubject: forged\r\n\r\ntrust me\r\n");
    converse(&server, Mode::Inbound, &session(forged.as_bytes())).await;

    // Someone else's key, never introduced.
    let mallory = new_home(root.path(), "mallory", &format!("Dave <{DAVE}>"));
    let by_mallory = signed_message(root.path(), &mallory, part);
    converse(&server, Mode::Inbound, &session(&by_mallory)).await;

    // Mallory introduces her key as Dave's from an address outside.example does not authorise
    // (DMARC fails): it is not learnt, and her signature stays unknown.
    let mallory_key = gpg(&mallory, &["--export", DAVE]).stdout;
    let spoofed = format!(
        "From: Dave <{DAVE}>\r\nTo: {ALICE}\r\nSubject: spoofed\r\nAutocrypt: addr={DAVE}; keydata={}\r\n\r\nNew key.\r\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &mallory_key)
    );
    let elsewhere = || {
        let mut context = context(Mode::Inbound);
        context.peer = "198.51.100.9:40000".parse().expect("peer");
        context
    };
    converse_with(&server, elsewhere(), &session(spoofed.as_bytes())).await;
    converse_with(&server, elsewhere(), &session(&by_mallory)).await;

    let inbox: Vec<Vec<u8>> = inbox(&store.store, ALICE)
        .into_iter()
        .chain(mailbox(&store.store, ALICE, "Junk"))
        .collect();
    let headers: Vec<Option<String>> = inbox
        .iter()
        .map(|message| signature_header(message))
        .collect();
    let find = |subject: &str, nth: usize| -> Option<String> {
        inbox
            .iter()
            .filter(|message| {
                String::from_utf8_lossy(message).contains(&format!("Subject: {subject}\r\n"))
            })
            .nth(nth)
            .and_then(|message| signature_header(message))
    };
    assert_eq!(inbox.len(), 8, "{headers:?}");
    assert_eq!(
        find("signed", 0),
        Some(format!(
            "unknown-key (no key known for the sender); issuer={dave_fingerprint}"
        )),
        "the unknown key is named: {headers:?}"
    );
    assert_eq!(
        find("hi", 0),
        None,
        "unsigned mail gets no signature header"
    );
    assert_eq!(
        find("signed", 1),
        Some(format!(
            "valid; signer={DAVE}; key={dave_fingerprint}; source=autocrypt"
        )),
        "{headers:?}"
    );
    assert!(
        find("signed", 2).is_some_and(|value| value.starts_with("invalid")),
        "{headers:?}"
    );
    assert_eq!(
        find("forged", 0),
        None,
        "the forged header was removed: {headers:?}"
    );
    assert!(
        find("signed", 3).is_some_and(|value| value.starts_with("unknown-key")),
        "{headers:?}"
    );
    assert!(
        find("signed", 4).is_some_and(|value| value.starts_with("unknown-key")),
        "a spoofed Autocrypt header planted a key: {headers:?}"
    );
}

/// Outbound PGP/MIME made for a GnuPG user: Debian's gpg decrypts the encrypted part to the
/// exact original message, headers included.
#[test]
fn gnupg_decrypts_a_pgp_mime_message_made_for_its_key() {
    let root = tempfile::tempdir().expect("tempdir");
    let dave = gpg_home_with_key(root.path(), DAVE);
    let key =
        letterlock_crypto::openpgp::PublicKey::from_bytes(&gpg(&dave, &["--export", DAVE]).stdout)
            .expect("gpg's key");
    let message = format!(
        "From: {ALICE}\r\nTo: Dave <{DAVE}>\r\nSubject: for your eyes\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nThe code is 1234.\r\n"
    );
    let encrypted =
        letterlock_smtp::encryption::encrypt_message(message.as_bytes(), &[key]).expect("encrypt");
    // A space never occurs in base64 armour, so this probe cannot match it by chance.
    assert!(!String::from_utf8_lossy(&encrypted).contains("code is 1234"));
    let armored = root.path().join("part.asc");
    let decrypted = gpg_decrypt_pgp_mime(&dave, &encrypted, &armored);
    assert_eq!(String::from_utf8_lossy(&decrypted), message);
}

/// Inline (cleartext) signatures made by `gpg --clearsign` are verified too: valid, invalid
/// after a one-byte change, and "partial" when unsigned text surrounds the signed block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpg_clearsigned_mail_is_verified_inline() {
    let store = test_store();
    let server = smtp_server(&store.store, test_settings());
    let root = tempfile::tempdir().expect("tempdir");
    let dave = new_home(root.path(), "dave", &format!("Dave <{DAVE}>"));
    let dave_fingerprint = fingerprint(&dave);
    store
        .store
        .record_peer_key(&address(DAVE), &gpg(&dave, &["--export", DAVE]).stdout)
        .expect("Dave's key");
    let text_file = root.path().join("text.txt");
    std::fs::write(&text_file, "Hello Alice,\nthe meeting is at noon.\n").expect("text");
    let signed_file = root.path().join("text.txt.asc");
    gpg(
        &dave,
        &[
            "--clearsign",
            "--digest-algo",
            "SHA256",
            "-o",
            signed_file.to_str().expect("utf-8"),
            text_file.to_str().expect("utf-8"),
        ],
    );
    let block = std::fs::read_to_string(&signed_file)
        .expect("signed")
        .replace('\n', "\r\n");
    let message = |subject: &str, body: &str| {
        format!(
            "From: Dave <{DAVE}>\r\nTo: {ALICE}\r\nSubject: {subject}\r\nContent-Type: text/plain\r\n\r\n{body}"
        )
    };
    for (subject, body) in [
        ("clear", block.clone()),
        ("changed", block.replace("at noon", "at nine")),
        ("padded", format!("Forwarded, unsigned:\r\n{block}")),
    ] {
        let output = converse(
            &server,
            Mode::Inbound,
            &session(message(subject, &body).as_bytes()),
        )
        .await;
        assert!(output.contains("250 2.0.0 accepted"), "{output}");
    }
    let verdict = |subject: &str| verdict_of(&store, subject);
    assert_eq!(
        verdict("clear"),
        format!("valid; signer={DAVE}; key={dave_fingerprint}; source=autocrypt")
    );
    assert!(
        verdict("changed").starts_with("invalid"),
        "{}",
        verdict("changed")
    );
    assert!(
        verdict("padded").starts_with("valid;") && verdict("padded").contains("partial"),
        "{}",
        verdict("padded")
    );
}

fn openssl(directory: &Path, args: &[&str]) {
    let output = std::process::Command::new("openssl")
        .current_dir(directory)
        .args(args)
        .output()
        .expect("openssl is installed (scripts/install-test-tools.sh)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// S/MIME: a message signed by `openssl smime` with a certificate for Dave (issued by a test
/// CA carried in the signature) is reported valid with its chain; one byte changed makes it
/// invalid; a certificate for someone else than the From: address is not Dave's signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_smime_signatures_are_verified_with_their_chain() {
    let store = test_store();
    let server = smtp_server(&store.store, test_settings());
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Letterlock Test S-MIME CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    let issue = |name: &str, address: &str| {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!("subjectAltName=email:{address}\nkeyUsage=digitalSignature\n"),
        )
        .expect("extensions");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-sha256",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    };
    issue("dave", DAVE);
    issue("mallory", "mallory@elsewhere.example");
    std::fs::write(dir.join("body.txt"), "Hello Alice,\nS/MIME signed words.\n").expect("body");
    let sign = |name: &str, subject: &str| -> Vec<u8> {
        let out = format!("{name}-{subject}.eml");
        openssl(
            dir,
            &[
                "smime",
                "-sign",
                "-text",
                "-md",
                "sha256",
                "-in",
                "body.txt",
                "-signer",
                &format!("{name}.pem"),
                "-inkey",
                &format!("{name}.key"),
                "-certfile",
                "ca.pem",
                "-from",
                DAVE,
                "-to",
                ALICE,
                "-subject",
                subject,
                "-out",
                &out,
            ],
        );
        let text = std::fs::read_to_string(dir.join(out)).expect("signed message");
        text.replace("\r\n", "\n")
            .replace('\n', "\r\n")
            .into_bytes()
    };
    let valid = sign("dave", "smime-valid");
    let mut changed = sign("dave", "smime-changed");
    let at = changed
        .windows(12)
        .position(|window| window == b"signed words")
        .expect("signed text");
    changed[at] = b'S';
    let foreign = sign("mallory", "smime-foreign");
    for message in [&valid, &changed, &foreign] {
        let output = converse(&server, Mode::Inbound, &session(message)).await;
        assert!(output.contains("250 2.0.0 accepted"), "{output}");
    }
    let verdict = |subject: &str| verdict_of(&store, subject);
    let valid = verdict("smime-valid");
    assert!(
        valid.starts_with(&format!("valid; signer={DAVE}; smime"))
            && valid.contains("chain=root")
            && valid.contains("Letterlock Test S-MIME CA"),
        "{valid}"
    );
    assert!(
        verdict("smime-changed").starts_with("invalid (the message was changed"),
        "{}",
        verdict("smime-changed")
    );
    assert!(
        verdict("smime-foreign")
            .starts_with("invalid (the certificate names mallory@elsewhere.example"),
        "{}",
        verdict("smime-foreign")
    );
}

/// Dave's key was never learnt, but outside.example publishes it by WKD (served over HTTPS
/// under a test CA): his signed mail is reported valid with the key's source, the lookup is
/// made once (cached) and only for signed mail, and Mallory's signature under Dave's name stays
/// unknown although WKD answers for Dave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_published_by_wkd_verifies_inbound_signatures() {
    use std::sync::atomic::Ordering;
    let store = test_store();
    let root = tempfile::tempdir().expect("tempdir");
    let dave = new_home(root.path(), "dave", &format!("Dave <{DAVE}>"));
    let dave_fingerprint = fingerprint(&dave);
    let dave_key = gpg(&dave, &["--export", DAVE]).stdout;
    let (wkd, discovery) = wkd_publishing("outside.example", "dave", dave_key).await;
    let mut settings = test_settings();
    settings.key_discovery = Some(discovery);
    let server = smtp_server(&store.store, settings);

    let plain = format!("From: Dave <{DAVE}>\r\nTo: {ALICE}\r\nSubject: plain\r\n\r\nHi.\r\n");
    converse(&server, Mode::Inbound, &session(plain.as_bytes())).await;
    assert_eq!(
        wkd.requests.load(Ordering::SeqCst),
        0,
        "unsigned mail asks nobody"
    );

    let part = b"Content-Type: text/plain; charset=utf-8\r\n\r\nSigned, key on WKD.";
    let signed = signed_message(root.path(), &dave, part);
    converse(&server, Mode::Inbound, &session(&signed)).await;
    converse(&server, Mode::Inbound, &session(&signed)).await;
    let expected = format!("valid; signer={DAVE}; key={dave_fingerprint}; source=wkd");
    let verdicts: Vec<Option<String>> = inbox(&store.store, ALICE)
        .iter()
        .map(|message| signature_header(message))
        .collect();
    assert_eq!(
        verdicts,
        [None, Some(expected.clone()), Some(expected)],
        "both copies verified"
    );
    assert_eq!(wkd.requests.load(Ordering::SeqCst), 1, "the key was cached");

    let mallory = new_home(root.path(), "mallory", &format!("Dave <{DAVE}>"));
    let by_mallory = signed_message(root.path(), &mallory, part);
    converse(&server, Mode::Inbound, &session(&by_mallory)).await;
    let last = inbox(&store.store, ALICE)
        .last()
        .and_then(|message| signature_header(message));
    assert_eq!(
        last,
        Some(format!(
            "unknown-key (no key known for the sender); issuer={}",
            fingerprint(&mallory)
        ))
    );
}

/// Alice trusts a key for Dave that nobody publishes (her own contact key, in the copy kept for
/// delivery): her copy of his signed mail is valid by it, through her alias too and only once
/// although both name her; Bob, who trusts nothing, gets the same message reported unknown; a
/// changed byte is invalid for Alice; Mallory's signature under Dave's name stays unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipients_trusted_key_verifies_their_own_copy() {
    let store = test_store();
    let outbound = outbound_on(&store);
    let trusted = letterlock_queue::TrustedSenderKeys::new(outbound.queue.clone());
    let server = letterlock_smtp::SmtpServer::with_outbound(
        store.store.clone(),
        test_settings(),
        Some(outbound),
    )
    .expect("server");
    let root = tempfile::tempdir().expect("tempdir");
    let dave = new_home(root.path(), "dave", &format!("Dave <{DAVE}>"));
    let dave_fingerprint = fingerprint(&dave);
    trusted
        .remember(
            &address(ALICE),
            &address(DAVE),
            &gpg(&dave, &["--export", DAVE]).stdout,
        )
        .expect("trust");

    let part = b"Content-Type: text/plain; charset=utf-8\r\n\r\nSigned, key trusted by Alice.";
    let signed = signed_message(root.path(), &dave, part);
    let mut tampered = signed.clone();
    let at = tampered
        .windows(7)
        .position(|window| window == b"trusted")
        .expect("signed text");
    tampered[at] = b'T';
    let mallory = new_home(root.path(), "mallory", &format!("Dave <{DAVE}>"));
    let by_mallory = signed_message(root.path(), &mallory, part);
    for message in [&signed, &tampered, &by_mallory] {
        let output = converse(
            &server,
            Mode::Inbound,
            &session_to(message, &[ALICE, ALICE_ALIAS, BOB]),
        )
        .await;
        assert!(output.contains("250 2.0.0 accepted"), "{output}");
    }
    let verdicts = |user: &str| -> Vec<Option<String>> {
        inbox(&store.store, user)
            .iter()
            .map(|message| signature_header(message))
            .collect()
    };
    let unknown = format!("unknown-key (no key known for the sender); issuer={dave_fingerprint}");
    let mallorys = format!(
        "unknown-key (no key known for the sender); issuer={}",
        fingerprint(&mallory)
    );
    assert_eq!(
        verdicts(ALICE),
        [
            Some(format!(
                "valid; signer={DAVE}; key={dave_fingerprint}; source=trusted-contact"
            )),
            Some(format!(
                "invalid (the message was changed after signing); key={dave_fingerprint}"
            )),
            Some(mallorys.clone()),
        ]
    );
    assert_eq!(
        verdicts(BOB),
        [Some(unknown.clone()), Some(unknown), Some(mallorys)]
    );
    // Both copies carry the same message under the same trace headers.
    let alice_copy = String::from_utf8_lossy(&inbox(&store.store, ALICE)[0]).into_owned();
    let bob_copy = String::from_utf8_lossy(&inbox(&store.store, BOB)[0]).into_owned();
    assert!(
        alice_copy.contains("Signed, key trusted by Alice.")
            && bob_copy.contains("Signed, key trusted by Alice.")
    );
    assert_eq!(
        alice_copy
            .lines()
            .filter(|line| line.starts_with("Received:"))
            .count(),
        bob_copy
            .lines()
            .filter(|line| line.starts_with("Received:"))
            .count()
    );
}

/// outside.example publishes SPF but no DMARC record: an Autocrypt key arriving with an
/// aligned SPF pass (MAIL FROM in the From: domain) is learnt; the same introduction sent with
/// MAIL FROM another domain that SPF authorises is not (nothing ties the From: domain to it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_dmarc_an_aligned_spf_pass_lets_autocrypt_keys_be_learnt() {
    let root = tempfile::tempdir().expect("tempdir");
    let dave = new_home(root.path(), "dave", &format!("Dave <{DAVE}>"));
    let dave_fingerprint = fingerprint(&dave);
    let part = b"Content-Type: text/plain; charset=utf-8\r\n\r\nSigned, no DMARC here.";
    let signed = signed_message(root.path(), &dave, part);
    let records = DnsRecords::default()
        .with_txt("outside.example", "v=spf1 ip4:192.0.2.7 -all")
        .with_txt("relay.example", "v=spf1 ip4:192.0.2.7 -all");
    let introduction = autocrypt_introduction(&dave);
    for (mail_from, learnt) in [("someone@relay.example", false), (DAVE, true)] {
        let store = test_store();
        let server = smtp_server(&store.store, test_settings_with_dns(records.clone()));
        for body in [introduction.as_bytes(), &signed] {
            let mut input = format!(
                "EHLO outside.example\r\nMAIL FROM:<{mail_from}>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n"
            )
            .into_bytes();
            input.extend_from_slice(body);
            input.extend_from_slice(b".\r\nQUIT\r\n");
            let output = converse(&server, Mode::Inbound, &input).await;
            assert!(output.contains("250 2.0.0 accepted"), "{output}");
        }
        let verdict = inbox(&store.store, ALICE)
            .last()
            .and_then(|message| signature_header(message))
            .unwrap_or_default();
        if learnt {
            assert_eq!(
                verdict,
                format!("valid; signer={DAVE}; key={dave_fingerprint}; source=autocrypt")
            );
        } else {
            assert!(
                verdict.starts_with("unknown-key"),
                "MAIL FROM {mail_from}: {verdict}"
            );
        }
    }
}
