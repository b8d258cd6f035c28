//! Inbound spam and phishing assessment: verdict headers that cannot be forged, Junk filing by
//! the trained classifier, phishing findings, and refusal of near-certain spam.

mod common;

use common::*;
use letterlock_filter::bayes::{Class, Model};
use letterlock_mailstore::ModelOwner;
use letterlock_smtp::Mode;

fn spam(n: usize) -> Vec<u8> {
    format!("From: Winner <prize{n}@lottery.example>\r\nTo: {ALICE}\r\nSubject: You have WON {n}\r\n\r\nClaim your free lottery prize money now at https://claim.example/{n}\r\n").into_bytes()
}

fn ham(n: usize) -> Vec<u8> {
    format!("From: Carol <carol@work.example>\r\nTo: {ALICE}\r\nSubject: Budget review {n}\r\n\r\nThe quarterly budget review meeting notes are attached for the project.\r\n").into_bytes()
}

fn session(body: &[u8]) -> Vec<u8> {
    let mut input = format!(
        "EHLO client.example\r\nMAIL FROM:<sender@outside.example>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n"
    )
    .into_bytes();
    input.extend_from_slice(body);
    input.extend_from_slice(b".\r\nQUIT\r\n");
    input
}

fn train_global(store: &letterlock_mailstore::MailStore) {
    store
        .update_spam_model(ModelOwner::Global, |_| {
            let mut model = Model::new([3u8; 32]);
            for n in 0..30 {
                model.train(&spam(n), Class::Spam);
                model.train(&ham(n), Class::Ham);
            }
            model.to_bytes()
        })
        .expect("train");
}

fn header<'a>(message: &'a str, name: &str) -> Vec<&'a str> {
    message
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .filter(|line| line.starts_with(&format!("{name}: ")))
        .collect()
}

#[tokio::test]
async fn trained_classifier_files_spam_in_junk_and_explains_itself() {
    let store = test_store();
    train_global(&store.store);
    let server = smtp_server(&store.store, test_settings());
    let output = converse(&server, Mode::Inbound, &session(&spam(99))).await;
    assert!(output.contains("250 2.0.0 accepted"), "{output}");
    let output = converse(&server, Mode::Inbound, &session(&ham(99))).await;
    assert!(output.contains("250 2.0.0 accepted"), "{output}");

    let junk = mailbox(&store.store, ALICE, "Junk");
    assert_eq!(junk.len(), 1, "the spam is in Junk");
    let junk = String::from_utf8_lossy(&junk[0]).into_owned();
    let verdict = header(&junk, "X-Letterlock-Spam");
    assert_eq!(verdict.len(), 1, "{junk}");
    assert!(verdict[0].contains("verdict=spam"), "{}", verdict[0]);
    assert!(
        verdict[0].contains("reasons=\""),
        "the reasons are listed: {}",
        verdict[0]
    );

    let inbox = inbox(&store.store, ALICE);
    assert_eq!(inbox.len(), 1, "the ham is in the INBOX");
    let inbox = String::from_utf8_lossy(&inbox[0]).into_owned();
    assert!(
        header(&inbox, "X-Letterlock-Spam")[0].contains("verdict=ham"),
        "{inbox}"
    );
}

#[tokio::test]
async fn verdict_headers_from_outside_are_replaced() {
    let store = test_store();
    train_global(&store.store);
    let server = smtp_server(&store.store, test_settings());
    let mut forged = b"X-Letterlock-Spam: score=0.000; verdict=ham; reasons=none\r\nX-Letterlock-Phishing: none\r\n".to_vec();
    forged.extend_from_slice(&spam(98));
    converse(&server, Mode::Inbound, &session(&forged)).await;
    let junk = mailbox(&store.store, ALICE, "Junk");
    assert_eq!(
        junk.len(),
        1,
        "the forged ham verdict did not keep it out of Junk"
    );
    let text = String::from_utf8_lossy(&junk[0]).into_owned();
    let verdicts = header(&text, "X-Letterlock-Spam");
    assert_eq!(verdicts.len(), 1, "{text}");
    assert!(verdicts[0].contains("verdict=spam"), "{text}");
    assert_eq!(
        header(&text, "X-Letterlock-Phishing"),
        ["X-Letterlock-Phishing: none"]
    );
}

#[tokio::test]
async fn phishing_is_flagged_for_clients() {
    let store = test_store();
    let server = smtp_server(&store.store, test_settings());
    let phish = format!(
        "From: Security <security@xn--pypal-4ve.com>\r\nTo: {ALICE}\r\nSubject: Verify your account\r\nContent-Type: text/html\r\n\r\n<a href=\"http://192.0.2.9/login\">https://www.paypal.com/signin</a>\r\n"
    );
    converse(&server, Mode::Inbound, &session(phish.as_bytes())).await;
    let all: Vec<Vec<u8>> = inbox(&store.store, ALICE)
        .into_iter()
        .chain(mailbox(&store.store, ALICE, "Junk"))
        .collect();
    assert_eq!(all.len(), 1);
    let text = String::from_utf8_lossy(&all[0]).into_owned();
    let findings = header(&text, "X-Letterlock-Phishing");
    assert_eq!(findings.len(), 1, "{text}");
    for expected in [
        "lookalike-domain",
        "link-text-mismatch",
        "link-to-ip-address",
    ] {
        assert!(
            findings[0].contains(expected),
            "{expected} missing: {}",
            findings[0]
        );
    }
}

#[tokio::test]
async fn near_certain_spam_is_refused_at_smtp_time() {
    let store = test_store();
    train_global(&store.store);
    let mut settings = test_settings();
    settings.reject_threshold = 0.95;
    let server = smtp_server(&store.store, settings);
    let output = converse(&server, Mode::Inbound, &session(&spam(97))).await;
    assert!(
        output.contains("550 5.7.1 message refused as spam"),
        "{output}"
    );
    assert!(mailbox(&store.store, ALICE, "Junk").is_empty());
    assert!(inbox(&store.store, ALICE).is_empty());
    // The session goes on: ham still gets through.
    let output = converse(&server, Mode::Inbound, &session(&ham(97))).await;
    assert!(output.contains("250 2.0.0 accepted"), "{output}");
}

/// Reputation from the user's own history: mail from someone Alice wrote to escapes Junk when
/// its From: domain passes DMARC, and says why; the same From: without DMARC (a spoof) does not.
#[tokio::test]
async fn a_known_correspondent_with_dmarc_escapes_junk_and_a_spoof_of_one_does_not() {
    let store = test_store();
    train_global(&store.store);
    let records = letterlock_smtp::auth::DnsRecords::default()
        .with_txt("lottery.test", "v=spf1 ip4:192.0.2.7 -all")
        .with_txt("_dmarc.lottery.test", "v=DMARC1; p=none");
    let server = smtp_server(&store.store, test_settings_with_dns(records));
    let message = format!(
        "From: Winner <prize1@lottery.test>\r\nTo: {ALICE}\r\nSubject: You have WON\r\n\r\nClaim your free lottery prize money now at https://claim.example/1\r\n"
    );
    let send = |mail_from: &str| {
        format!(
            "EHLO client.example\r\nMAIL FROM:<{mail_from}>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n{message}.\r\nQUIT\r\n"
        )
    };
    let output = converse(
        &server,
        Mode::Inbound,
        send("prize1@lottery.test").as_bytes(),
    )
    .await;
    assert!(output.contains("250 2.0.0 accepted"), "{output}");
    assert_eq!(
        mailbox(&store.store, ALICE, "Junk").len(),
        1,
        "unknown: Junk"
    );

    letterlock_smtp::filter::remember_correspondents(
        &store.store,
        &address(ALICE),
        &["Prize1@Lottery.test".to_string()],
    )
    .expect("remember");
    converse(
        &server,
        Mode::Inbound,
        send("prize1@lottery.test").as_bytes(),
    )
    .await;
    let inbox = inbox(&store.store, ALICE);
    assert_eq!(inbox.len(), 1, "known and DMARC-aligned: INBOX");
    let delivered = String::from_utf8_lossy(&inbox[0]).into_owned();
    let verdict = header(&delivered, "X-Letterlock-Spam");
    assert!(
        verdict[0].contains("verdict=ham") && verdict[0].contains("known-correspondent"),
        "{}",
        verdict[0]
    );

    // The envelope sender's domain has no SPF for this client: DMARC fails, the From: is a claim.
    converse(
        &server,
        Mode::Inbound,
        send("bounce@elsewhere.test").as_bytes(),
    )
    .await;
    assert_eq!(
        mailbox(&store.store, ALICE, "Junk").len(),
        2,
        "a spoof stays in Junk"
    );
}
