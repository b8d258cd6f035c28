//! The SMTP session driven in memory with byte strings: pipelining, DATA and BDAT, bad input,
//! every named limit, relay refusals, and the submission rules that hold before TLS.

mod common;

use std::time::Duration;

use common::*;
use letterlock_smtp::{Mode, Settings};

const MESSAGE: &[u8] =
    b"From: Bob <bob@example.net>\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\nHello Alice.\r\n";

fn data_session(recipient: &str, body: &[u8]) -> Vec<u8> {
    let mut input = format!(
        "EHLO client.example\r\nMAIL FROM:<bob@example.net>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n"
    )
    .into_bytes();
    input.extend_from_slice(body);
    input.extend_from_slice(b".\r\nQUIT\r\n");
    input
}

#[tokio::test]
async fn pipelined_mx_session_delivers_exact_bytes_with_trace_headers() {
    let store = test_store();
    let server = smtp_server(&store.store, test_settings());
    let output = converse(&server, Mode::Inbound, &data_session(ALICE, MESSAGE)).await;
    assert_eq!(
        codes(&output),
        ["220", "250", "250", "250", "354", "250", "221"],
        "{output}"
    );
    assert!(output.contains("250-PIPELINING\r\n"), "{output}");
    assert!(output.contains("CHUNKING\r\n"), "{output}");
    assert!(output.contains(&format!("250-SIZE {MESSAGE_SIZE_MAX_BYTES}\r\n")));
    assert!(!output.contains("AUTH"), "no AUTH on MX: {output}");
    assert!(!output.contains("REQUIRETLS"), "REQUIRETLS only after TLS");
    let stored = inbox(&store.store, ALICE);
    assert_eq!(stored.len(), 1);
    assert_eq!(without_trace(&stored[0]), MESSAGE);
    let trace = trace_of(&stored[0]);
    assert!(
        trace.starts_with("Return-Path: <bob@example.net>\r\n"),
        "{trace}"
    );
    assert!(
        trace.contains("from client.example ([192.0.2.7])"),
        "{trace}"
    );
    assert!(trace.contains("with ESMTP id "), "{trace}");
    assert!(trace.contains("for <alice@example.org>;"), "{trace}");
}

#[tokio::test]
async fn dot_stuffed_lines_lose_their_dot_and_an_alias_delivers_to_its_target() {
    let store = test_store();
    let server = smtp_server(&store.store, test_settings());
    let output = converse(
        &server,
        Mode::Inbound,
        &data_session(ALICE_ALIAS, b"Subject: dots\r\n\r\n..one\r\n"),
    )
    .await;
    assert_eq!(
        codes(&output),
        ["220", "250", "250", "250", "354", "250", "221"],
        "{output}"
    );
    assert_eq!(
        without_trace(&inbox(&store.store, ALICE)[0]),
        b"Subject: dots\r\n\r\n.one\r\n"
    );
}

#[tokio::test]
async fn bdat_chunks_make_one_message_and_data_after_bdat_is_refused() {
    let store = test_store();
    let server = smtp_server(&store.store, test_settings());
    let first = b"Subject: chunks\r\n\r\n";
    let second = b"binary \x00\xff body\r\n.\r\n";
    let mut input =
        b"EHLO c\r\nMAIL FROM:<bob@example.net> BODY=8BITMIME\r\nRCPT TO:<alice@example.org>\r\n"
            .to_vec();
    input.extend_from_slice(format!("BDAT {}\r\n", first.len()).as_bytes());
    input.extend_from_slice(first);
    input.extend_from_slice(b"DATA\r\n");
    input.extend_from_slice(format!("BDAT {} LAST\r\n", second.len()).as_bytes());
    input.extend_from_slice(second);
    input.extend_from_slice(b"BDAT 0 LAST\r\nQUIT\r\n");
    let output = converse(&server, Mode::Inbound, &input).await;
    assert_eq!(
        codes(&output),
        ["220", "250", "250", "250", "250", "503", "250", "503", "221"],
        "{output}"
    );
    let stored = inbox(&store.store, ALICE);
    assert_eq!(stored.len(), 1);
    let mut expected = first.to_vec();
    expected.extend_from_slice(second);
    assert_eq!(
        without_trace(&stored[0]),
        expected,
        "BDAT is not dot-unstuffed"
    );
}

#[tokio::test]
async fn commands_out_of_order_get_503_and_unknown_ones_500() {
    let store = test_store();
    let server = smtp_server(&store.store, test_settings());
    let output = converse(
        &server,
        Mode::Inbound,
        b"MAIL FROM:<a@b.example>\r\nEHLO c\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<a@b.example>\r\nDATA\r\nXYZZY\r\nVRFY alice\r\nEXPN list\r\nNOOP\r\nRSET\r\nQUIT\r\n",
    )
    .await;
    assert_eq!(
        codes(&output),
        [
            "220", "503", "250", "503", "503", "250", "503", "554", "500", "252", "502", "250",
            "250", "221"
        ],
        "{output}"
    );
    assert!(inbox(&store.store, ALICE).is_empty());
}

#[tokio::test]
async fn bare_lf_binary_garbage_and_overlong_lines_are_refused_and_the_session_goes_on() {
    let store = test_store();
    let server = smtp_server(&store.store, test_settings());
    let mut input = b"EHLO c\nEHLO c\r\n\x00\x01\xff\xfe\x16\x03\x01garbage\r\n".to_vec();
    input.extend_from_slice(&[b'N'; 5000]);
    input.extend_from_slice(b"\r\n");
    input.extend_from_slice(format!("NOOP {}\r\n", "x".repeat(995)).as_bytes());
    let session = data_session(ALICE, MESSAGE);
    let mail = session.windows(4).position(|w| w == b"MAIL").expect("MAIL");
    input.extend_from_slice(&session[mail..]);
    let output = converse(&server, Mode::Inbound, &input).await;
    assert_eq!(
        codes(&output),
        ["220", "500", "250", "500", "500", "500", "250", "250", "354", "250", "221"],
        "{output}"
    );
    assert!(output.contains("500 5.5.2 bare LF"), "{output}");
    assert!(output.contains("500 5.5.2 line too long"), "{output}");
    assert_eq!(inbox(&store.store, ALICE).len(), 1);
}

#[tokio::test]
async fn a_command_line_of_exactly_the_limit_is_accepted() {
    let store = test_store();
    let server = smtp_server(&store.store, test_settings());
    // "NOOP " + 993 + CRLF = 1000 bytes.
    let input = format!("NOOP {}\r\nQUIT\r\n", "y".repeat(993));
    assert_eq!(
        codes(&converse(&server, Mode::Inbound, input.as_bytes()).await),
        ["220", "250", "221"]
    );
}

#[tokio::test]
async fn messages_over_the_size_limit_get_552_at_mail_and_after_data() {
    let store = test_store();
    let server = smtp_server(&store.store, test_settings());
    let too_big = format!(
        "EHLO c\r\nMAIL FROM:<b@x.example> SIZE={}\r\nQUIT\r\n",
        MESSAGE_SIZE_MAX_BYTES + 1
    );
    assert_eq!(
        codes(&converse(&server, Mode::Inbound, too_big.as_bytes()).await),
        ["220", "250", "552", "221"]
    );
    let mut body = b"Subject: big\r\n\r\n".to_vec();
    while body.len() <= MESSAGE_SIZE_MAX_BYTES {
        body.extend_from_slice(&[b'a'; 998]);
        body.extend_from_slice(b"\r\n");
    }
    let output = converse(&server, Mode::Inbound, &data_session(ALICE, &body)).await;
    assert_eq!(
        codes(&output),
        ["220", "250", "250", "250", "354", "552", "221"],
        "{output}"
    );
    assert!(output.contains("552 5.3.4"));
    // BDAT past the limit: 552 and nothing stored.
    let chunk = vec![b'b'; MESSAGE_SIZE_MAX_BYTES / 2 + 1];
    let mut input =
        b"EHLO c\r\nMAIL FROM:<b@x.example>\r\nRCPT TO:<alice@example.org>\r\n".to_vec();
    for _ in 0..2 {
        input.extend_from_slice(format!("BDAT {}\r\n", chunk.len()).as_bytes());
        input.extend_from_slice(&chunk);
    }
    input.extend_from_slice(b"QUIT\r\n");
    let output = converse(&server, Mode::Inbound, &input).await;
    assert_eq!(
        codes(&output),
        ["220", "250", "250", "250", "250", "552", "221"],
        "{output}"
    );
    assert!(inbox(&store.store, ALICE).is_empty());
}

#[tokio::test]
async fn a_message_line_past_the_data_line_limit_is_refused() {
    let store = test_store();
    let server = smtp_server(
        &store.store,
        Settings {
            data_line_length_max_bytes: 2000,
            ..test_settings()
        },
    );
    let mut body = b"Subject: long\r\n\r\n".to_vec();
    body.extend_from_slice(&[b'z'; 1500]);
    body.extend_from_slice(b"\r\n");
    let output = converse(&server, Mode::Inbound, &data_session(ALICE, &body)).await;
    assert_eq!(
        codes(&output)[5],
        "250",
        "lenient: 1500 > 1000 is fine: {output}"
    );
    body.extend_from_slice(&[b'z'; 2500]);
    body.extend_from_slice(b"\r\n");
    let output = converse(&server, Mode::Inbound, &data_session(ALICE, &body)).await;
    assert_eq!(codes(&output)[5], "554", "{output}");
    assert_eq!(inbox(&store.store, ALICE).len(), 1);
}

#[tokio::test]
async fn recipients_past_the_limit_get_452() {
    let store = test_store();
    let server = smtp_server(
        &store.store,
        Settings {
            recipients_per_message_max: 2,
            ..test_settings()
        },
    );
    let output = converse(
        &server,
        Mode::Inbound,
        b"EHLO c\r\nMAIL FROM:<b@x.example>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<sales@example.org>\r\nQUIT\r\n",
    )
    .await;
    assert_eq!(
        codes(&output),
        ["220", "250", "250", "250", "250", "452", "221"],
        "{output}"
    );
    assert!(output.contains("452 4.5.3"));
}

#[tokio::test]
async fn too_many_commands_without_mail_close_with_421() {
    let store = test_store();
    let server = smtp_server(
        &store.store,
        Settings {
            commands_before_mail_max: 5,
            ..test_settings()
        },
    );
    let output = converse(&server, Mode::Inbound, &b"NOOP\r\n".repeat(20)).await;
    assert_eq!(
        codes(&output),
        ["220", "250", "250", "250", "250", "250", "421"],
        "{output}"
    );
}

#[tokio::test]
async fn too_many_errors_close_with_421() {
    let store = test_store();
    let server = smtp_server(
        &store.store,
        Settings {
            errors_per_session_max: 3,
            ..test_settings()
        },
    );
    let output = converse(&server, Mode::Inbound, &b"BOGUS\r\n".repeat(10)).await;
    assert_eq!(
        codes(&output),
        ["220", "500", "500", "500", "421"],
        "{output}"
    );
    assert!(output.ends_with("421 4.7.0 too many errors, closing\r\n"));
}

#[tokio::test]
async fn an_idle_client_is_closed_with_421() {
    let store = test_store();
    let server = smtp_server(
        &store.store,
        Settings {
            idle_timeout: Duration::from_millis(200),
            ..test_settings()
        },
    );
    let started = std::time::Instant::now();
    let output = converse(&server, Mode::Inbound, b"EHLO c\r\n").await;
    assert_eq!(codes(&output), ["220", "250", "421"], "{output}");
    assert!(output.contains("421 4.4.2"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn relay_tricks_and_remote_domains_are_refused_on_mx_and_nothing_is_stored() {
    let store = test_store();
    // A catch-all makes every local part of example.org "exist": the tricks must still fail.
    store
        .store
        .add_alias("@example.org", &[address(ALICE)])
        .expect("catch-all");
    let server = smtp_server(&store.store, test_settings());
    for (recipient, code) in [
        ("<user%remote.example@example.org>", "554"),
        ("<remote.example!user@example.org>", "554"),
        ("<\"user@remote.example\"@example.org>", "553"),
        ("<\"alice\"@example.org>", "553"),
        ("<@example.org,@relay.example:user@remote.example>", "553"),
        ("<@relay.example:alice@example.org>", "553"),
        ("<user@remote.example>", "554"),
        ("<user@[127.0.0.1]>", "553"),
        ("<alice@[127.0.0.1]>", "553"),
        ("<user@example.org.remote.example>", "554"),
    ] {
        let input = format!(
            "EHLO c\r\nMAIL FROM:<spammer@remote.example>\r\nRCPT TO:{recipient}\r\nDATA\r\nSubject: relay\r\n\r\nx\r\n.\r\nQUIT\r\n"
        );
        let output = converse(&server, Mode::Inbound, input.as_bytes()).await;
        let got = codes(&output);
        assert_eq!(got[2], "250", "{recipient}: {output}");
        assert_eq!(got[3], code, "{recipient}: {output}");
        assert_eq!(
            got[4], "554",
            "DATA without recipients, {recipient}: {output}"
        );
        if code == "554" {
            assert!(output.contains("554 5.7.1 relay access denied"), "{output}");
        }
    }
    assert!(inbox(&store.store, ALICE).is_empty(), "nothing stored");
    assert!(inbox(&store.store, BOB).is_empty(), "nothing stored");
}

#[tokio::test]
async fn unknown_local_recipients_get_550_5_1_1() {
    let store = test_store();
    let server = smtp_server(&store.store, test_settings());
    let output = converse(
        &server,
        Mode::Inbound,
        b"EHLO c\r\nMAIL FROM:<b@x.example>\r\nRCPT TO:<nobody@example.org>\r\nQUIT\r\n",
    )
    .await;
    assert!(output.contains("550 5.1.1"), "{output}");
}

#[tokio::test]
async fn requiretls_is_refused_on_plaintext_and_dsn_parameters_are_accepted() {
    let store = test_store();
    let server = smtp_server(&store.store, test_settings());
    let output = converse(
        &server,
        Mode::Inbound,
        b"EHLO c\r\nMAIL FROM:<b@x.example> REQUIRETLS\r\nMAIL FROM:<b@x.example> RET=HDRS ENVID=abc\r\nRCPT TO:<alice@example.org> NOTIFY=NEVER ORCPT=rfc822;alice@example.org\r\nMAIL FROM:<x@y.example> BODY=BINARYMIME\r\nRSET\r\nMAIL FROM:<x@y.example> FOO=BAR\r\nQUIT\r\n",
    )
    .await;
    assert_eq!(
        codes(&output),
        ["220", "250", "530", "250", "250", "503", "250", "555", "221"],
        "{output}"
    );
    assert!(output.contains("530 5.7.10"));
}

#[tokio::test]
async fn submission_before_tls_refuses_auth_with_538_and_mail_with_530() {
    let store = test_store();
    let server = smtp_server(&store.store, test_settings());
    let output = converse(
        &server,
        Mode::Submission,
        b"EHLO c\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGNvcnJlY3QgaG9yc2UgYmF0dGVyeQ==\r\nAUTH LOGIN\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nQUIT\r\n",
    )
    .await;
    assert!(
        !output.contains("AUTH PLAIN"),
        "AUTH not advertised before TLS: {output}"
    );
    assert_eq!(
        codes(&output),
        ["220", "250", "538", "538", "530", "503", "221"],
        "{output}"
    );
    assert!(output
        .contains("538 5.7.11 Encryption required for requested authentication mechanism\r\n"));
    assert!(output.contains("530 5.7.0 Authentication required\r\n"));
    assert!(inbox(&store.store, BOB).is_empty());
}

#[tokio::test]
async fn starttls_without_an_acceptor_and_auth_on_mx_are_refused() {
    let store = test_store();
    let server = smtp_server(&store.store, test_settings());
    let output = converse(
        &server,
        Mode::Inbound,
        b"EHLO c\r\nSTARTTLS\r\nAUTH PLAIN AAAA\r\nQUIT\r\n",
    )
    .await;
    assert_eq!(
        codes(&output),
        ["220", "250", "502", "503", "221"],
        "{output}"
    );
}

#[tokio::test]
async fn postmaster_without_a_domain_is_the_server_hostname() {
    let store = test_store();
    let server = smtp_server(&store.store, test_settings());
    let output = converse(
        &server,
        Mode::Inbound,
        b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nQUIT\r\n",
    )
    .await;
    // mx.example.org is not a local domain of this store: refused as relay, never accepted.
    assert_eq!(
        codes(&output),
        ["220", "250", "250", "554", "221"],
        "{output}"
    );
}

#[tokio::test]
async fn concurrent_sessions_each_get_their_own_message_through_group_commit() {
    let store = test_store();
    let server = smtp_server(&store.store, test_settings());
    let mut sessions = Vec::new();
    for index in 0..20 {
        let server = server.clone();
        sessions.push(tokio::spawn(async move {
            let body = format!("Subject: {index}\r\n\r\nmessage {index}\r\n");
            let output = converse(
                &server,
                Mode::Inbound,
                &data_session(ALICE, body.as_bytes()),
            )
            .await;
            assert_eq!(codes(&output)[5], "250", "{output}");
            body
        }));
    }
    let mut sent = Vec::new();
    for session in sessions {
        sent.push(session.await.expect("session").into_bytes());
    }
    let mut stored: Vec<Vec<u8>> = inbox(&store.store, ALICE)
        .iter()
        .map(|m| without_trace(m))
        .collect();
    stored.sort();
    sent.sort();
    assert_eq!(stored, sent);
}

/// DSN (RFC 3461) is offered; its parameters are checked (lengths by smtp-proto, and here
/// control characters that xtext could smuggle into a report), and bad ones are refused
/// without ending the session.
#[tokio::test]
async fn dsn_is_offered_and_its_parameters_are_checked() {
    let store = test_store();
    let server = smtp_server(&store.store, test_settings());
    let long_envid = "e".repeat(101);
    let long_orcpt = format!("rfc822;{}@example.org", "o".repeat(500));
    let input = format!(
        "EHLO client.example\r\n\
MAIL FROM:<bob@example.net> ENVID={long_envid}\r\n\
MAIL FROM:<bob@example.net> ENVID=x+0D+0AX-Injected:+20yes\r\n\
MAIL FROM:<bob@example.net> RET=HDRS ENVID=QQ314159\r\n\
RCPT TO:<{ALICE}> NOTIFY=SOMETIMES\r\n\
RCPT TO:<{ALICE}> NOTIFY=SUCCESS ORCPT={long_orcpt}\r\n\
RCPT TO:<{ALICE}> NOTIFY=SUCCESS ORCPT=rfc822;a+0A@example.org\r\n\
RCPT TO:<{ALICE}> NOTIFY=NEVER ORCPT=rfc822;Alice+40Example.org\r\n\
RSET\r\nQUIT\r\n"
    );
    let output = converse(&server, Mode::Inbound, input.as_bytes()).await;
    assert!(
        output.contains("250 DSN\r\n") || output.contains("250-DSN\r\n"),
        "{output}"
    );
    assert_eq!(
        codes(&output),
        ["220", "250", "501", "501", "250", "501", "501", "501", "250", "250", "221"],
        "{output}"
    );
    assert!(
        output.contains("501 5.5.4 ENVID is longer than 100 characters or has control"),
        "{output}"
    );
    assert!(
        output.contains("501 5.5.4 ORCPT is longer than 500 characters or has control"),
        "{output}"
    );
}
