//! Sender authentication of inbound mail through a real SMTP session, with DNS from an
//! in-memory map (nothing reaches the network): SPF results, DKIM on messages signed by dkimpy
//! (RSA and Ed25519, a verifier nobody here wrote, used here as the signer), DMARC policies
//! enforced (none, quarantine, reject), forged `Authentication-Results` removed, and one
//! header per message carrying every result.

mod common;

use std::net::IpAddr;

use common::*;
use letterlock_smtp::auth::DnsRecords;
use letterlock_smtp::Mode;

/// Where the test client connects from.
const CLIENT_IP: &str = "192.0.2.7";

/// Signs stdin with dkimpy under a key it makes: prints the DKIM TXT record on the first line,
/// then the signed message.
const DKIMPY_SIGN: &str = r#"
import sys, base64, subprocess, dkim
algorithm, domain, selector = sys.argv[1:4]
message = sys.stdin.buffer.read()
headers = [b"from", b"to", b"subject"]
if algorithm == "ed25519":
    import nacl.signing
    key = nacl.signing.SigningKey.generate()
    record = "v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(key.verify_key)).decode()
    signature = dkim.sign(message, selector.encode(), domain.encode(),
                          base64.b64encode(bytes(key)), include_headers=headers,
                          signature_algorithm=b"ed25519-sha256", linesep=b"\r\n")
else:
    private = subprocess.run(["openssl", "genrsa", "2048"], capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"], input=private,
                         capture_output=True, check=True).stdout
    record = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    signature = dkim.sign(message, selector.encode(), domain.encode(), private,
                          include_headers=headers, linesep=b"\r\n")
sys.stdout.buffer.write(record.encode() + b"\n" + signature + message)
"#;

/// A mailing list's hop: adds its own Authentication-Results and seals the message with ARC
/// (RFC 8617) using dkimpy, under a key it makes. Prints the key's TXT record on the first line,
/// then the sealed message.
const DKIMPY_ARC_SEAL: &str = r#"
import sys, base64, subprocess, dkim
domain, selector = sys.argv[1:3]
message = sys.stdin.buffer.read()
private = subprocess.run(["openssl", "genrsa", "2048"], capture_output=True, check=True).stdout
der = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"], input=private,
                     capture_output=True, check=True).stdout
record = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
message = ("Authentication-Results: %s; spf=pass smtp.mailfrom=dora@signed.test\r\n"
           % domain).encode() + message
seal = dkim.arc_sign(message, selector.encode(), domain.encode(), private, domain.encode(),
                     include_headers=[b"from", b"to", b"subject"], linesep=b"\r\n")
if not seal:
    sys.exit("dkimpy made no ARC set")
sys.stdout.buffer.write(record.encode() + b"\n" + b"".join(seal) + message)
"#;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

fn message(from: &str, subject: &str) -> Vec<u8> {
    format!("From: {from}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nThe quarterly figures are attached.\r\n").into_bytes()
}

fn session(helo: &str, mail_from: &str, body: &[u8]) -> Vec<u8> {
    let mut input =
        format!("EHLO {helo}\r\nMAIL FROM:<{mail_from}>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n")
            .into_bytes();
    input.extend_from_slice(body);
    input.extend_from_slice(b".\r\nQUIT\r\n");
    input
}

/// Everything delivered to alice, INBOX then Junk, as text.
fn delivered(store: &TestStore) -> (Vec<String>, Vec<String>) {
    let text = |messages: Vec<Vec<u8>>| {
        messages
            .iter()
            .map(|message| String::from_utf8_lossy(message).into_owned())
            .collect()
    };
    (
        text(inbox(&store.store, ALICE)),
        text(mailbox(&store.store, ALICE, "Junk")),
    )
}

/// The `Authentication-Results` fields of a stored message, unfolded.
fn results_of(message: &str) -> Vec<String> {
    let head = message.split("\r\n\r\n").next().unwrap_or("");
    let mut fields: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = fields.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            fields.push(line.to_string());
        }
    }
    fields
        .into_iter()
        .filter(|field| {
            field
                .to_ascii_lowercase()
                .starts_with("authentication-results:")
        })
        .collect()
}

/// Send one message and return its one `Authentication-Results` field (asserting there is
/// exactly one and that it carries every method).
async fn deliver_one(
    store: &TestStore,
    records: DnsRecords,
    helo: &str,
    mail_from: &str,
    body: &[u8],
) -> String {
    let server = smtp_server(&store.store, test_settings_with_dns(records));
    let output = converse(&server, Mode::Inbound, &session(helo, mail_from, body)).await;
    assert!(output.contains("250 2.0.0 accepted"), "{output}");
    let (inbox, junk) = delivered(store);
    let all: Vec<&String> = inbox.iter().chain(junk.iter()).collect();
    let last = all.last().expect("a delivered message");
    let results: Vec<String> = results_of(last)
        .into_iter()
        .filter(|field| field.starts_with("Authentication-Results: mx.example.org;"))
        .collect();
    assert_eq!(
        results.len(),
        1,
        "one Authentication-Results of ours: {last}"
    );
    let header = results[0].clone();
    assert!(
        header.starts_with("Authentication-Results: mx.example.org;"),
        "{header}"
    );
    for method in ["spf=", "dkim=", "dmarc=", "arc=", "iprev="] {
        assert!(header.contains(method), "{method} missing: {header}");
    }
    header
}

#[tokio::test]
async fn spf_results_from_pass_to_permerror() {
    let mut includes = DnsRecords::default()
        .with_txt("pass.test", "v=spf1 ip4:192.0.2.0/24 -all")
        .with_txt("fail.test", "v=spf1 ip4:198.51.100.1 -all")
        .with_txt("softfail.test", "v=spf1 ip4:198.51.100.1 ~all")
        .with_txt("neutral.test", "v=spf1 ?all")
        .with_txt("broken.test", "v=spf1 ip4:not-an-address -all")
        .with_failing("timeout.test")
        .with_txt("helo.test", "v=spf1 a -all")
        .with_ip("helo.test", ip(CLIENT_IP));
    // RFC 7208 section 4.6.4: eleven includes, one past the limit of ten DNS-querying terms.
    includes = includes.with_txt(
        "loop.test",
        "v=spf1 include:l1.test include:l2.test include:l3.test include:l4.test include:l5.test include:l6.test include:l7.test include:l8.test include:l9.test include:l10.test include:l11.test -all",
    );
    for index in 1..=11 {
        includes = includes.with_txt(&format!("l{index}.test"), "v=spf1 ?ip4:203.0.113.1");
    }
    let cases = [
        ("sender@pass.test", "spf=pass"),
        ("sender@fail.test", "spf=fail"),
        ("sender@softfail.test", "spf=softfail"),
        ("sender@neutral.test", "spf=neutral"),
        ("sender@nothing.test", "spf=none"),
        ("sender@timeout.test", "spf=temperror"),
        ("sender@broken.test", "spf=permerror"),
        ("sender@loop.test", "spf=permerror"),
        // The null sender: SPF checks the HELO name.
        ("", "spf=pass"),
    ];
    for (mail_from, expected) in cases {
        let store = test_store();
        let header = deliver_one(
            &store,
            includes.clone(),
            "helo.test",
            mail_from,
            &message("Carol <carol@work.example>", "figures"),
        )
        .await;
        assert!(
            header.contains(expected),
            "MAIL FROM <{mail_from}>: expected {expected}: {header}"
        );
        if mail_from.is_empty() {
            assert!(header.contains("smtp.helo=helo.test"), "{header}");
        }
    }
}

/// A message signed by dkimpy for `domain` with `algorithm`, and the TXT record to publish.
async fn signed_by_dkimpy(algorithm: &str, domain: &str, body: &[u8]) -> (String, Vec<u8>) {
    let (ok, stdout, stderr) = run_program(
        "python3",
        vec![
            "-c".into(),
            DKIMPY_SIGN.into(),
            algorithm.into(),
            domain.into(),
            "sel".into(),
        ],
        Some(body.to_vec()),
    )
    .await;
    assert!(ok, "dkimpy signing failed: {stderr}");
    let (record, signed) = stdout.split_once('\n').expect("record line");
    (record.to_string(), signed.as_bytes().to_vec())
}

#[tokio::test]
async fn dkim_signatures_made_by_dkimpy_pass_and_tampering_fails() {
    for algorithm in ["rsa", "ed25519"] {
        let body = message("Dora <dora@signed.test>", "signed figures");
        let (record, signed) = signed_by_dkimpy(algorithm, "signed.test", &body).await;
        let records = DnsRecords::default().with_txt("sel._domainkey.signed.test", &record);

        let store = test_store();
        let header = deliver_one(
            &store,
            records.clone(),
            "client.example",
            "dora@signed.test",
            &signed,
        )
        .await;
        assert!(
            header.contains("dkim=pass header.i=@signed.test header.s=sel"),
            "{algorithm}: {header}"
        );
        // DKIM aligned with the From: domain, and no DMARC record: DMARC does not apply.
        assert!(header.contains("dmarc=none"), "{header}");

        let tampered_body = String::from_utf8_lossy(&signed)
            .replace("quarterly figures", "quarterly invoice")
            .into_bytes();
        let store = test_store();
        let header = deliver_one(
            &store,
            records.clone(),
            "client.example",
            "dora@signed.test",
            &tampered_body,
        )
        .await;
        assert!(header.contains("dkim=fail"), "{algorithm}, body: {header}");

        let tampered_subject = String::from_utf8_lossy(&signed)
            .replace("Subject: signed figures", "Subject: urgent payment")
            .into_bytes();
        let store = test_store();
        let header = deliver_one(
            &store,
            records,
            "client.example",
            "dora@signed.test",
            &tampered_subject,
        )
        .await;
        assert!(
            header.contains("dkim=fail"),
            "{algorithm}, signed header: {header}"
        );
    }
}

/// A message forwarded by a list that sealed it with ARC (dkimpy, RFC 8617): the chain
/// validates (arc=pass); a change after sealing breaks it (body: neutral, signed header: fail).
#[tokio::test]
async fn arc_chains_sealed_by_dkimpy_pass_and_tampering_fails() {
    let body = message("Dora <dora@signed.test>", "via the list");
    let (ok, stdout, stderr) = run_program(
        "python3",
        vec![
            "-c".into(),
            DKIMPY_ARC_SEAL.into(),
            "list.test".into(),
            "arc".into(),
        ],
        Some(body),
    )
    .await;
    assert!(ok, "dkimpy ARC sealing failed: {stderr}");
    let (record, sealed) = stdout.split_once('\n').expect("record line");
    let records = DnsRecords::default().with_txt("arc._domainkey.list.test", record);

    let store = test_store();
    let header = deliver_one(
        &store,
        records.clone(),
        "lists.example",
        "bounces@list.test",
        sealed.as_bytes(),
    )
    .await;
    assert!(header.contains("arc=pass"), "{header}");

    // The body changed after sealing: mail-auth calls a body-hash mismatch "neutral" (the
    // chain does not pass, and nothing downstream trusts less than pass).
    let tampered_body = sealed.replace("quarterly figures", "quarterly invoice");
    let store = test_store();
    let header = deliver_one(
        &store,
        records.clone(),
        "lists.example",
        "bounces@list.test",
        tampered_body.as_bytes(),
    )
    .await;
    assert!(
        header.contains("arc=neutral (body hash did not verify)"),
        "{header}"
    );

    // A signed header changed after sealing: the message signature fails.
    let tampered_subject = sealed.replace("Subject: via the list", "Subject: pay now");
    let store = test_store();
    let header = deliver_one(
        &store,
        records,
        "lists.example",
        "bounces@list.test",
        tampered_subject.as_bytes(),
    )
    .await;
    assert!(header.contains("arc=fail"), "{header}");
}

/// DNS for the DMARC cases: `aligned.test` passes SPF for our client; each policy domain has
/// a DMARC record and no SPF that would pass.
fn dmarc_records() -> DnsRecords {
    DnsRecords::default()
        .with_txt("aligned.test", "v=spf1 ip4:192.0.2.7 -all")
        .with_txt("_dmarc.aligned.test", "v=DMARC1; p=reject")
        .with_txt("bounce.test", "v=spf1 ip4:192.0.2.7 -all")
        .with_txt("_dmarc.none.test", "v=DMARC1; p=none")
        .with_txt("_dmarc.quarantine.test", "v=DMARC1; p=quarantine")
        .with_txt("_dmarc.reject.test", "v=DMARC1; p=reject")
        .with_txt("_dmarc.testing.test", "v=DMARC1; p=reject; t=y")
        .with_txt("_dmarc.strict.test", "v=DMARC1; p=reject; aspf=s")
        .with_txt("mail.strict.test", "v=spf1 ip4:192.0.2.7 -all")
}

#[tokio::test]
async fn dmarc_pass_and_fail_with_p_none_are_delivered_and_say_so() {
    let store = test_store();
    let header = deliver_one(
        &store,
        dmarc_records(),
        "client.example",
        "news@aligned.test",
        &message("News <news@aligned.test>", "aligned"),
    )
    .await;
    assert!(
        header.contains("dmarc=pass header.from=aligned.test"),
        "{header}"
    );

    let store = test_store();
    let header = deliver_one(
        &store,
        dmarc_records(),
        "client.example",
        "list@bounce.test",
        &message("Nina <nina@none.test>", "p=none"),
    )
    .await;
    assert!(
        header.contains("dmarc=fail") && header.contains("policy.dmarc=none"),
        "{header}"
    );
    let (inbox, junk) = delivered(&store);
    assert_eq!(
        (inbox.len(), junk.len()),
        (1, 0),
        "p=none: delivered to the INBOX"
    );
    assert!(
        inbox[0].contains("auth: dmarc=fail"),
        "the failure is among the spam reasons: {}",
        inbox[0]
    );
}

#[tokio::test]
async fn dmarc_quarantine_files_in_junk() {
    let store = test_store();
    let header = deliver_one(
        &store,
        dmarc_records(),
        "client.example",
        "list@bounce.test",
        &message("Quinn <quinn@quarantine.test>", "p=quarantine"),
    )
    .await;
    assert!(header.contains("policy.dmarc=quarantine"), "{header}");
    let (inbox, junk) = delivered(&store);
    assert_eq!((inbox.len(), junk.len()), (0, 1), "quarantined in Junk");
}

/// DMARCbis (RFC 9989) `t=y`, which replaces RFC 7489's `pct`: mail-auth applies the next less
/// strict policy, and the session must not lower it a second time.
#[tokio::test]
async fn dmarc_reject_in_testing_mode_quarantines_instead() {
    let store = test_store();
    let header = deliver_one(
        &store,
        dmarc_records(),
        "client.example",
        "list@bounce.test",
        &message("Tess <tess@testing.test>", "p=reject; t=y"),
    )
    .await;
    assert!(header.contains("dmarc=fail"), "{header}");
    let (inbox, junk) = delivered(&store);
    assert_eq!(
        (inbox.len(), junk.len()),
        (0, 1),
        "t=y turns reject into quarantine"
    );
}

#[tokio::test]
async fn dmarc_reject_refuses_at_end_of_data_and_stores_nothing() {
    let store = test_store();
    let server = smtp_server(&store.store, test_settings_with_dns(dmarc_records()));
    let body = message("Rex <rex@reject.test>", "p=reject");
    let output = converse(
        &server,
        Mode::Inbound,
        &session("client.example", "list@bounce.test", &body),
    )
    .await;
    assert!(
        output.contains("550 5.7.1 rejected by the DMARC policy of reject.test"),
        "{output}"
    );
    assert_eq!(delivered(&store), (Vec::new(), Vec::new()));

    // Strict SPF alignment (aspf=s): a subdomain's SPF pass does not align.
    let body = message("Sam <sam@strict.test>", "strict");
    let output = converse(
        &server,
        Mode::Inbound,
        &session("client.example", "bounces@mail.strict.test", &body),
    )
    .await;
    assert!(output.contains("550 5.7.1"), "{output}");
    assert_eq!(delivered(&store), (Vec::new(), Vec::new()));
}

#[tokio::test]
async fn our_dns_trouble_never_refuses_mail() {
    let records = DnsRecords::default()
        .with_failing("_dmarc.reject.test")
        .with_failing("bounce.test");
    let store = test_store();
    let header = deliver_one(
        &store,
        records,
        "client.example",
        "list@bounce.test",
        &message("Rex <rex@reject.test>", "dns down"),
    )
    .await;
    assert!(header.contains("spf=temperror"), "{header}");
    assert!(header.contains("dmarc=temperror"), "{header}");
}

#[tokio::test]
async fn forged_results_with_our_authserv_id_are_removed_and_others_kept() {
    let store = test_store();
    let mut body = b"Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=x@aligned.test;\r\n\tdkim=pass; dmarc=pass\r\nAuthentication-Results: relay.elsewhere.example; spf=pass\r\n".to_vec();
    body.extend_from_slice(&message("Rex <rex@none.test>", "forged"));
    let header = deliver_one(
        &store,
        dmarc_records(),
        "client.example",
        "list@bounce.test",
        &body,
    )
    .await;
    assert!(header.contains("dmarc=fail"), "our own verdict: {header}");
    let (inbox, _) = delivered(&store);
    let all_results: Vec<String> = inbox
        .iter()
        .flat_map(|message| {
            message
                .split("\r\n\r\n")
                .next()
                .unwrap_or("")
                .lines()
                .filter(|line| line.starts_with("Authentication-Results:"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        all_results.len(),
        2,
        "ours and the other server's: {all_results:?}"
    );
    assert!(all_results
        .iter()
        .any(|line| line.starts_with("Authentication-Results: relay.elsewhere.example")));
}

#[tokio::test]
async fn reverse_dns_is_forward_confirmed() {
    let records = DnsRecords::default()
        .with_ptr(ip(CLIENT_IP), "mail.client.example")
        .with_ip("mail.client.example", ip(CLIENT_IP));
    let store = test_store();
    let header = deliver_one(
        &store,
        records,
        "client.example",
        "a@nothing.test",
        &message("A <a@nothing.test>", "iprev"),
    )
    .await;
    assert!(header.contains("iprev=pass"), "{header}");

    // The PTR name does not lead back to the client.
    let records = DnsRecords::default()
        .with_ptr(ip(CLIENT_IP), "mail.client.example")
        .with_ip("mail.client.example", ip("198.51.100.9"));
    let store = test_store();
    let header = deliver_one(
        &store,
        records,
        "client.example",
        "a@nothing.test",
        &message("A <a@nothing.test>", "iprev"),
    )
    .await;
    assert!(header.contains("iprev=fail"), "{header}");

    let store = test_store();
    let header = deliver_one(
        &store,
        DnsRecords::default(),
        "client.example",
        "a@nothing.test",
        &message("A <a@nothing.test>", "iprev"),
    )
    .await;
    assert!(header.contains("iprev=permerror"), "no PTR: {header}");
}

/// DNS blocklists (RFC 5782), off unless configured: a client listed by a chosen zone files
/// its mail in Junk with the zone among the reasons; answers outside 127/8 and the
/// 127.255.255.x error codes are not listings; a client nobody lists is untouched.
#[tokio::test]
async fn a_client_on_a_configured_dnsbl_goes_to_junk_with_the_zone_named() {
    // The in-memory session's client is 192.0.2.7.
    let records = || {
        DnsRecords::default()
            .with_ip("7.2.0.192.listed.test", "127.0.0.2".parse().expect("ip"))
            .with_ip(
                "7.2.0.192.refusing.test",
                "127.255.255.254".parse().expect("ip"),
            )
            .with_ip("7.2.0.192.broken.test", "192.0.2.1".parse().expect("ip"))
    };
    let deliver = |zones: &[&str]| {
        let zones: Vec<String> = zones.iter().map(|zone| zone.to_string()).collect();
        async move {
            let store = test_store();
            let mut settings = test_settings_with_dns(records());
            settings.sender_authentication = Some(std::sync::Arc::new(
                letterlock_smtp::auth::SenderAuthenticator::from_records(records())
                    .expect("authenticator")
                    .with_dnsbl_zones(&zones),
            ));
            let server = smtp_server(&store.store, settings);
            let output = converse(
                &server,
                Mode::Inbound,
                &session(
                    "client.example",
                    "news@clean.test",
                    &message("News <news@clean.test>", "dnsbl"),
                ),
            )
            .await;
            assert!(output.contains("250 2.0.0 accepted"), "{output}");
            delivered(&store)
        }
    };

    let (inbox, junk) = deliver(&["listed.test", "refusing.test", "broken.test"]).await;
    assert!(inbox.is_empty(), "listed: Junk");
    assert!(junk[0].contains("dnsbl: listed.test"), "{}", junk[0]);
    assert!(!junk[0].contains("refusing.test") && !junk[0].contains("broken.test"));

    let (inbox, junk) = deliver(&["refusing.test", "broken.test", "unlisted.test"]).await;
    assert!(junk.is_empty() && inbox.len() == 1, "no real listing");
    let (inbox, _) = deliver(&[]).await;
    assert!(!inbox[0].contains("dnsbl:"), "off by default");
}

/// DMARC aggregate reports through the MX: a From: domain whose record has `rua` gets its
/// evaluations collected (rejected mail included) and, after a day, one report in the queue;
/// a report another server sends about our domain is kept for `letterlock dmarc report`.
#[tokio::test]
async fn dmarc_evaluations_are_collected_for_rua_and_reports_about_us_are_kept() {
    use letterlock_queue::{DmarcReports, MapResolver};
    let store = test_store();
    let outbound = outbound_on(&store);
    let queue = outbound.queue.clone();
    let records = DnsRecords::default()
        .with_txt("reporting.test", "v=spf1 ip4:192.0.2.7 -all")
        .with_txt(
            "_dmarc.reporting.test",
            "v=DMARC1; p=reject; rua=mailto:dmarc@reporting.test",
        );
    let mut settings = test_settings_with_dns(records);
    // Each evaluation written at once (a busy MX batches them).
    settings.dmarc_batch_records = 1;
    let server =
        letterlock_smtp::SmtpServer::with_outbound(store.store.clone(), settings, Some(outbound))
            .expect("server");
    let reports = DmarcReports::new(queue.clone());
    let resolver = MapResolver::default();
    let a_day_later = || letterlock_queue::store::now_unix() + 86_401;
    // A rejected spoof is evaluated, and reported, too.
    let spoofed = converse(
        &server,
        Mode::Inbound,
        &session(
            "client.example",
            "someone@elsewhere.test",
            &message("News <news@reporting.test>", "spoofed"),
        ),
    )
    .await;
    assert!(spoofed.contains("550 5.7.1"), "{spoofed}");
    let sent = reports
        .send_due(&resolver, None, "mx.example.org", a_day_later())
        .await
        .expect("send");
    assert_eq!(sent, 1, "the rejected message's evaluation");
    let aligned = converse(
        &server,
        Mode::Inbound,
        &session(
            "client.example",
            "news@reporting.test",
            &message("News <news@reporting.test>", "aligned"),
        ),
    )
    .await;
    assert!(aligned.contains("250 2.0.0 accepted"), "{aligned}");
    let sent = reports
        .send_due(&resolver, None, "mx.example.org", a_day_later())
        .await
        .expect("send");
    assert_eq!(sent, 1, "the delivered message's evaluation");
    let queued = queue.list().expect("list");
    assert_eq!(queued.len(), 2);
    assert!(queued.iter().all(|entry| {
        entry.envelope.recipients[0].address.to_string() == "dmarc@reporting.test"
            && entry.envelope.sender.is_none()
    }));

    let incoming = mail_auth::report::Report::new()
        .with_org_name("big-provider.test")
        .with_email("noreply@big-provider.test")
        .with_report_id("r-42")
        .with_date_range_begin(1)
        .with_date_range_end(2)
        .with_policy_published(mail_auth::report::PolicyPublished {
            domain: "example.org".into(),
            ..Default::default()
        })
        .with_record(
            mail_auth::report::Record::new()
                .with_source_ip("192.0.2.99".parse().expect("ip"))
                .with_count(12),
        )
        .to_rfc5322(
            "big-provider.test",
            ("Reports", "noreply@big-provider.test"),
            [ALICE].into_iter(),
        )
        .expect("report");
    let output = converse(
        &server,
        Mode::Inbound,
        &session("client.example", "", incoming.as_bytes()),
    )
    .await;
    assert!(output.contains("250 2.0.0 accepted"), "{output}");
    let kept = reports.received(None).expect("received");
    assert_eq!(kept.len(), 1, "the report about example.org");
    assert_eq!(kept[0].1.report_id(), "r-42");
}
