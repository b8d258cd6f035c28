//! Every command group over real sockets and real TLS, against a real in-process server.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{address, message, within, Client, MESSAGE_SIZE_MAX_BYTES, PASSWORD, USER};

#[tokio::test]
async fn imaps_greets_with_capabilities_and_logs_in_and_out() {
    let server = common::start().await;
    let mut client = Client::tls(&server).await;
    assert!(
        client
            .greeting
            .starts_with("* OK [CAPABILITY IMAP4rev1 IMAP4rev2"),
        "{}",
        client.greeting
    );
    assert!(client.greeting.contains("AUTH=PLAIN"));
    assert!(!client.greeting.contains("LOGINDISABLED"));
    let reply = client.command("CAPABILITY").await;
    reply.assert_ok();
    assert!(reply.untagged_text().contains("APPENDLIMIT=1048576"));
    client.command("NOOP").await.assert_ok();
    let reply = client
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await;
    reply.assert_ok();
    assert!(reply.tagged.contains("[CAPABILITY"), "{}", reply.tagged);
    client.command("ID (\"name\" \"test\")").await.assert_ok();
    let reply = client.command("NAMESPACE").await;
    assert!(reply
        .untagged_text()
        .contains("* NAMESPACE ((\"\" \"/\")) NIL NIL"));
    let reply = client.command("ENABLE CONDSTORE").await;
    assert!(reply.untagged_text().contains("* ENABLED CONDSTORE"));
    let reply = client.command("LOGOUT").await;
    assert!(reply.untagged_text().contains("* BYE"));
    reply.assert_ok();
}

/// An administrator's reset without the recovery code (the account was taken over, say) ends
/// the sessions still holding the old key: the next command gets BYE and the connection
/// closes; a login with the new password works.
#[tokio::test]
async fn a_reset_account_ends_its_open_sessions() {
    let server = common::start().await;
    let reset = |password: &str| {
        server
            .store
            .set_password(
                &address(USER),
                &letterlock_types::Secret::from(password),
                letterlock_mailstore::PasswordAuthority::AdminWithoutRecovery,
            )
            .expect("reset")
    };
    let mut client = Client::logged_in(&server).await;
    client.command("SELECT INBOX").await.assert_ok();
    reset("a new password after a takeover");
    let tag = client.next_tag();
    client.send_raw(format!("{tag} NOOP\r\n").as_bytes()).await;
    let bye = String::from_utf8_lossy(&client.read_response().await).into_owned();
    assert!(bye.starts_with("* BYE") && bye.contains("reset"), "{bye}");
    let mut rest = Vec::new();
    let read = common::within(tokio::io::AsyncReadExt::read_to_end(
        client.reader.get_mut(),
        &mut rest,
    ))
    .await;
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "nothing after BYE: {}",
        String::from_utf8_lossy(&rest)
    );
    let mut again = Client::tls(&server).await;
    again
        .command(&format!("LOGIN {USER} \"a new password after a takeover\""))
        .await
        .assert_ok();

    // A session in IDLE ends at once when the account is reset again, not at DONE.
    again.command("SELECT INBOX").await.assert_ok();
    let tag = again.next_tag();
    again.send_raw(format!("{tag} IDLE\r\n").as_bytes()).await;
    let idling = String::from_utf8_lossy(&again.read_response().await).into_owned();
    assert!(idling.starts_with("+ "), "{idling}");
    reset("and another one");
    let reply = again.until_tagged(&tag).await;
    assert!(
        reply.untagged_text().contains("* BYE") && reply.tagged.contains("NO"),
        "{} / {}",
        reply.untagged_text(),
        reply.tagged
    );
}

#[tokio::test]
async fn port_143_refuses_credentials_until_starttls_and_discards_pipelined_plaintext() {
    let server = common::start().await;
    let mut client = Client::plain(&server).await;
    assert!(client.greeting.contains("STARTTLS"), "{}", client.greeting);
    assert!(client.greeting.contains("LOGINDISABLED"));
    assert!(!client.greeting.contains("AUTH="));
    let reply = client
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await;
    assert!(
        reply.tagged.contains("NO [PRIVACYREQUIRED]"),
        "{}",
        reply.tagged
    );
    let reply = client.command("AUTHENTICATE PLAIN AGFsaWNlAHg=").await;
    assert!(
        reply.tagged.contains("NO [PRIVACYREQUIRED]"),
        "{}",
        reply.tagged
    );

    // A command pipelined after STARTTLS, in plaintext, must be thrown away (RFC 9051 6.2.1).
    client
        .send_raw(b"s1 STARTTLS\r\ns2 LOGIN injected password\r\n")
        .await;
    let reply = client.until_tagged("s1").await;
    reply.assert_ok();
    let stream = client.reader.into_inner();
    let tls = within(server.connector.connect(
        rustls::pki_types::ServerName::try_from("localhost").expect("name"),
        stream,
    ))
    .await
    .expect("TLS");
    let mut client = Client::over_without_greeting(Box::new(tls));
    let reply = client.command("CAPABILITY").await;
    reply.assert_ok();
    let text = reply.untagged_text();
    assert!(
        !text.contains("s2"),
        "pipelined plaintext was executed: {text}"
    );
    assert!(
        text.contains("AUTH=PLAIN")
            && !text.contains("LOGINDISABLED")
            && !text.contains("STARTTLS"),
        "{text}"
    );
    client
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await
        .assert_ok();
    client.command("SELECT INBOX").await.assert_ok();
}

#[tokio::test]
async fn failed_logins_are_refused_then_the_session_is_closed() {
    let server = common::start().await;
    let mut client = Client::tls(&server).await;
    for attempt in 1..=3 {
        let reply = client
            .command(&format!("LOGIN {USER} wrong{attempt}"))
            .await;
        assert!(
            reply.tagged.contains("NO [AUTHENTICATIONFAILED]"),
            "{}",
            reply.tagged
        );
    }
    // After the third failure the server hangs up.
    let mut rest = Vec::new();
    let read = within(tokio::io::AsyncReadExt::read_to_end(
        &mut client.reader,
        &mut rest,
    ))
    .await;
    assert!(read.is_ok() || rest.is_empty());
    // A fresh session still logs in: 3 failures are under the per-account limit.
    let mut client = Client::tls(&server).await;
    client
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await
        .assert_ok();
}

#[tokio::test]
async fn authenticate_plain_inline_and_after_continuation() {
    let server = common::start().await;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("\0{USER}\0{PASSWORD}"));
    let mut client = Client::tls(&server).await;
    client
        .command(&format!("AUTHENTICATE PLAIN {credentials}"))
        .await
        .assert_ok();

    let mut client = Client::tls(&server).await;
    let tag = client.next_tag();
    client
        .send_raw(format!("{tag} AUTHENTICATE PLAIN\r\n").as_bytes())
        .await;
    let continuation = client.read_response().await;
    assert!(
        continuation.starts_with(b"+"),
        "{}",
        String::from_utf8_lossy(&continuation)
    );
    client
        .send_raw(format!("{credentials}\r\n").as_bytes())
        .await;
    client.until_tagged(&tag).await.assert_ok();
    client.command("SELECT INBOX").await.assert_ok();
}

#[tokio::test]
async fn mailbox_commands_list_create_rename_status_subscribe_delete() {
    let server = common::start().await;
    let mut client = Client::logged_in(&server).await;
    let reply = client.command("LIST \"\" \"*\"").await;
    reply.assert_ok();
    let text = reply.untagged_text();
    assert!(
        text.contains("* LIST (\\HasNoChildren) \"/\" \"INBOX\""),
        "{text}"
    );
    assert!(text.contains("\\Sent) \"/\" \"Sent\""), "{text}");
    assert!(text.contains("\\Junk"), "{text}");
    let reply = client.command("LIST \"\" \"\"").await;
    assert!(reply.untagged_text().contains("(\\Noselect) \"/\" \"\""));

    client.command("CREATE Projects").await.assert_ok();
    client.command("CREATE Projects/2026").await.assert_ok();
    client.command("CREATE \"Entw&APw-rfe\"").await.assert_ok();
    let reply = client.command("CREATE Projects").await;
    assert!(
        reply.tagged.contains("NO [ALREADYEXISTS]"),
        "{}",
        reply.tagged
    );
    let text = client.command("LIST \"\" \"%\"").await.untagged_text();
    assert!(
        text.contains("(\\HasChildren) \"/\" \"Projects\""),
        "{text}"
    );
    assert!(!text.contains("Projects/2026"), "{text}");
    assert!(text.contains("\"Entw&APw-rfe\""), "{text}");

    client.command("RENAME Projects Work").await.assert_ok();
    let text = client.command("LIST \"\" \"Work*\"").await.untagged_text();
    assert!(
        text.contains("\"Work/2026\""),
        "children renamed too: {text}"
    );

    common::within(async {}).await;
    server
        .store
        .deliver(&[address(USER)], &message("one", "first"))
        .expect("deliver");
    let reply = client
        .command("STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE HIGHESTMODSEQ)")
        .await;
    reply.assert_ok();
    let text = reply.untagged_text();
    assert!(
        text.starts_with("* STATUS \"INBOX\" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY "),
        "{text}"
    );
    assert!(text.contains("UNSEEN 1 SIZE "), "{text}");

    let text = client
        .command("LIST (SPECIAL-USE) \"\" \"*\" RETURN (STATUS (MESSAGES))")
        .await
        .untagged_text();
    assert!(text.contains("\\Trash) \"/\" \"Trash\""), "{text}");
    assert!(!text.contains("\"INBOX\""), "{text}");
    assert!(text.contains("* STATUS \"Trash\" (MESSAGES 0)"), "{text}");

    client.command("UNSUBSCRIBE Work").await.assert_ok();
    let text = client.command("LSUB \"\" \"*\"").await.untagged_text();
    assert!(!text.contains("\"Work\""), "{text}");
    assert!(text.contains("\"INBOX\""), "{text}");

    client.command("DELETE Work/2026").await.assert_ok();
    let reply = client.command("DELETE INBOX").await;
    assert!(reply.tagged.contains("NO"), "{}", reply.tagged);
    let reply = client.command("SELECT Nowhere").await;
    assert!(
        reply.tagged.contains("NO [NONEXISTENT]"),
        "{}",
        reply.tagged
    );
}

#[tokio::test]
async fn select_fetch_store_search_on_delivered_mail() {
    let server = common::start().await;
    let multipart = b"From: Carol <carol@example.net>\r\nTo: alice@example.org\r\nSubject: report\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nzebra crossing\r\n--B\r\nContent-Type: application/octet-stream\r\n\r\nAAAA\r\n--B--\r\n".to_vec();
    let messages = [
        message("hello", "the quick brown fox"),
        message("second", "lazy dog"),
        multipart.clone(),
    ];
    for bytes in &messages {
        server
            .store
            .deliver(&[address(USER)], bytes)
            .expect("deliver");
    }
    let mut client = Client::logged_in(&server).await;
    let reply = client.command("SELECT INBOX").await;
    reply.assert_ok();
    let text = reply.untagged_text();
    assert!(text.contains("* 3 EXISTS"), "{text}");
    assert!(text.contains("[UIDVALIDITY "), "{text}");
    assert!(text.contains("[UIDNEXT 4]"), "{text}");
    assert!(reply.tagged.contains("[READ-WRITE]"));

    let reply = client
        .command("FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)")
        .await;
    reply.assert_ok();
    let text = reply.untagged_text();
    assert!(
        text.contains("* 1 FETCH (UID 1 FLAGS () RFC822.SIZE "),
        "{text}"
    );
    assert!(text.contains("ENVELOPE (\"Tue, 24 Nov 2026 08:00:00 +0000\" \"hello\" ((\"Bob Example\" NIL \"bob\" \"example.net\"))"), "{text}");

    let reply = client.command("UID FETCH 1 (BODY.PEEK[])").await;
    reply.assert_ok();
    let expected = [
        format!("* 1 FETCH (UID 1 BODY[] {{{}}}\r\n", messages[0].len()).into_bytes(),
        messages[0].clone(),
        b")".to_vec(),
    ]
    .concat();
    assert_eq!(reply.untagged[0], expected, "exact bytes");

    let text = client
        .command("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT]<4.5>)")
        .await
        .untagged_text();
    assert!(
        text.contains("BODY[HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: hello\r\n\r\n"),
        "{text}"
    );
    assert!(text.contains("BODY[TEXT]<4> {5}\r\nquick"), "{text}");

    let text = client
        .command("FETCH 3 (BODYSTRUCTURE BODY.PEEK[1] BODY.PEEK[2.MIME])")
        .await
        .untagged_text();
    assert!(
        text.contains(
            "BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 14 0"
        ),
        "{text}"
    );
    assert!(text.contains("BODY[1] {14}\r\nzebra crossing"), "{text}");
    assert!(
        text.contains("BODY[2.MIME] {42}\r\nContent-Type: application/octet-stream\r\n\r\n"),
        "{text}"
    );

    // PEEK left \Seen alone; BODY[] sets it.
    let text = client.command("FETCH 2 (FLAGS)").await.untagged_text();
    assert!(text.contains("FLAGS ()"), "{text}");
    let text = client.command("FETCH 2 BODY[]").await.untagged_text();
    assert!(
        text.contains("FLAGS (\\Seen)")
            || client
                .command("FETCH 2 FLAGS")
                .await
                .untagged_text()
                .contains("\\Seen"),
        "{text}"
    );
    let text = client
        .command("FETCH 2 (RFC822.HEADER)")
        .await
        .untagged_text();
    assert!(text.contains("RFC822.HEADER {"), "{text}");

    let text = client
        .command("STORE 1 +FLAGS (\\Flagged $Work)")
        .await
        .untagged_text();
    assert!(
        text.contains("* 1 FETCH (FLAGS (\\Flagged $Work))"),
        "{text}"
    );
    let reply = client.command("STORE 1 -FLAGS.SILENT (\\Flagged)").await;
    assert!(reply.untagged.is_empty(), "{}", reply.untagged_text());
    let text = client
        .command("UID STORE 1:2 FLAGS (\\Answered)")
        .await
        .untagged_text();
    assert!(
        text.contains("* 1 FETCH (FLAGS (\\Answered) UID 1)"),
        "{text}"
    );

    let text = client.command("SEARCH ANSWERED").await.untagged_text();
    assert_eq!(text, "* SEARCH 1 2");
    let text = client.command("SEARCH UNANSWERED").await.untagged_text();
    assert_eq!(text, "* SEARCH 3");
    let text = client.command("SEARCH BODY zebra").await.untagged_text();
    assert_eq!(text, "* SEARCH 3");
    let text = client
        .command("SEARCH TEXT \"brown fox\"")
        .await
        .untagged_text();
    assert_eq!(text, "* SEARCH 1");
    let text = client
        .command("UID SEARCH FROM carol")
        .await
        .untagged_text();
    assert_eq!(text, "* SEARCH 3");
    let text = client
        .command("SEARCH OR SUBJECT second NOT UID 1:2")
        .await
        .untagged_text();
    assert_eq!(text, "* SEARCH 2 3");
    client
        .command("STORE 3 +FLAGS.SILENT ($Work)")
        .await
        .assert_ok();
    let text = client.command("SEARCH KEYWORD $Work").await.untagged_text();
    assert_eq!(text, "* SEARCH 3");
    let text = client
        .command("SEARCH HEADER Message-ID second")
        .await
        .untagged_text();
    assert_eq!(text, "* SEARCH 2");
    let text = client
        .command("SEARCH SENTON 24-Nov-2026 LARGER 10")
        .await
        .untagged_text();
    assert_eq!(text, "* SEARCH 1 2");
    let text = client
        .command("UID SEARCH RETURN (MIN MAX COUNT ALL) ALL")
        .await
        .untagged_text();
    assert!(text.starts_with("* ESEARCH (TAG \"t"), "{text}");
    assert!(text.ends_with("UID MIN 1 MAX 3 COUNT 3 ALL 1:3"), "{text}");

    let reply = client.command("EXAMINE INBOX").await;
    assert!(reply.untagged_text().contains("* OK [CLOSED]"));
    assert!(reply.tagged.contains("[READ-ONLY]"));
    let reply = client.command("STORE 1 +FLAGS (\\Deleted)").await;
    assert!(reply.tagged.contains("NO [READ-ONLY]"), "{}", reply.tagged);
    client.command("UNSELECT").await.assert_ok();
}

#[tokio::test]
async fn append_copy_move_expunge_with_uidplus() {
    let server = common::start().await;
    let mut client = Client::logged_in(&server).await;
    let original = message("appended", "kept exactly");
    let reply = client.append("INBOX", "\\Seen $Label", &original).await;
    reply.assert_ok();
    assert!(reply.tagged.contains("[APPENDUID "), "{}", reply.tagged);
    assert!(reply.tagged.contains(" 1] APPEND"), "{}", reply.tagged);
    let reply = client.append("Nowhere", "", &original).await;
    assert!(reply.tagged.contains("NO [TRYCREATE]"), "{}", reply.tagged);

    // LITERAL+: no continuation needed.
    let tag = client.next_tag();
    let second = message("plus", "non-synchronizing");
    client
        .send_raw(format!("{tag} APPEND INBOX {{{}+}}\r\n", second.len()).as_bytes())
        .await;
    client.send_raw(&second).await;
    client.send_raw(b"\r\n").await;
    client.until_tagged(&tag).await.assert_ok();

    let reply = client.command("SELECT INBOX").await;
    assert!(reply.untagged_text().contains("* 2 EXISTS"));
    let text = client
        .command("FETCH 1 (FLAGS BODY.PEEK[])")
        .await
        .untagged_text();
    assert!(text.contains("FLAGS (\\Seen $Label)"), "{text}");
    assert!(
        text.contains(std::str::from_utf8(&original).expect("utf8")),
        "{text}"
    );

    let reply = client.command("COPY 1:2 Archive").await;
    reply.assert_ok();
    assert!(reply.tagged.contains("[COPYUID "), "{}", reply.tagged);
    assert!(reply.tagged.contains(" 1:2 1:2]"), "{}", reply.tagged);
    let reply = client.command("UID MOVE 2 Trash").await;
    reply.assert_ok();
    let text = reply.untagged_text();
    assert!(text.contains("* OK [COPYUID "), "{text}");
    assert!(text.contains("* 2 EXPUNGE"), "{text}");
    let reply = client.command("STATUS Trash (MESSAGES)").await;
    assert!(reply.untagged_text().contains("(MESSAGES 1)"));
    // The copy in Archive is readable on its own.
    client.command("SELECT Archive").await.assert_ok();
    let text = client.command("FETCH 1 BODY.PEEK[]").await.untagged_text();
    assert!(text.contains("kept exactly"), "{text}");
    client
        .command("STORE 1:2 +FLAGS.SILENT (\\Deleted)")
        .await
        .assert_ok();
    let reply = client.command("UID EXPUNGE 2").await;
    assert_eq!(reply.untagged_text(), "* 2 EXPUNGE");
    let reply = client.command("EXPUNGE").await;
    assert_eq!(reply.untagged_text(), "* 1 EXPUNGE");
    client.command("CLOSE").await.assert_ok();
    let reply = client.command("FETCH 1 FLAGS").await;
    assert!(
        reply.tagged.contains("BAD"),
        "no mailbox selected: {}",
        reply.tagged
    );
}

#[tokio::test]
async fn two_sessions_see_each_others_changes_and_idle_wakes_on_delivery() {
    let server = common::start().await;
    for index in 0..3 {
        server
            .store
            .deliver(&[address(USER)], &message(&format!("m{index}"), "text"))
            .expect("deliver");
    }
    let mut first = Client::logged_in(&server).await;
    let mut second = Client::logged_in(&server).await;
    first.command("SELECT INBOX").await.assert_ok();
    second.command("SELECT INBOX").await.assert_ok();

    second
        .command("STORE 2 +FLAGS (\\Flagged)")
        .await
        .assert_ok();
    let text = first.command("NOOP").await.untagged_text();
    assert!(
        text.contains("* 2 FETCH (FLAGS (\\Flagged) UID 2)"),
        "{text}"
    );

    second
        .command("STORE 1 +FLAGS.SILENT (\\Deleted)")
        .await
        .assert_ok();
    second.command("EXPUNGE").await.assert_ok();
    // FETCH must not report the expunge (RFC 9051 7.5.1); NOOP then does.
    let text = first.command("FETCH 1:* (UID)").await.untagged_text();
    assert!(!text.contains("EXPUNGE"), "{text}");
    let text = first.command("NOOP").await.untagged_text();
    assert!(text.contains("* 1 EXPUNGE"), "{text}");

    let tag = first.next_tag();
    first.send_raw(format!("{tag} IDLE\r\n").as_bytes()).await;
    let continuation = first.read_response().await;
    assert!(
        continuation.starts_with(b"+"),
        "{}",
        String::from_utf8_lossy(&continuation)
    );
    let store = server.store.clone();
    let delivered_at = Instant::now();
    tokio::task::spawn_blocking(move || {
        store
            .deliver(&[address(USER)], &message("while-idle", "wake up"))
            .expect("deliver")
    })
    .await
    .expect("join");
    let update = tokio::time::timeout(Duration::from_secs(1), first.read_response())
        .await
        .expect("IDLE reported the delivery within 1 s");
    assert_eq!(String::from_utf8_lossy(&update), "* 3 EXISTS");
    let latency = delivered_at.elapsed();
    first.send_raw(b"DONE\r\n").await;
    first.until_tagged(&tag).await.assert_ok();
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    // The session keeps working after IDLE.
    let text = first.command("FETCH 3 (ENVELOPE)").await.untagged_text();
    assert!(text.contains("while-idle"), "{text}");
}

#[tokio::test]
async fn bad_input_gets_bad_or_no_and_the_session_keeps_working() {
    let server = common::start().await;
    let mut client = Client::tls(&server).await;
    client.send_raw(b"\x01\x02garbage\r\n").await;
    let response = String::from_utf8_lossy(&client.read_response().await).into_owned();
    assert!(response.starts_with("* BAD"), "{response}");
    let reply = client.command("FROBNICATE").await;
    assert!(
        reply.tagged.contains("BAD unknown command FROBNICATE"),
        "{}",
        reply.tagged
    );
    let reply = client.command("SELECT INBOX").await;
    assert!(
        reply.tagged.contains("BAD log in first"),
        "{}",
        reply.tagged
    );
    let reply = client.command("FETCH 1:* FLAGS").await;
    assert!(reply.tagged.contains("BAD"), "{}", reply.tagged);
    let reply = client.command("LOGIN {100000}").await;
    assert!(reply.tagged.contains("BAD [TOOBIG]"), "{}", reply.tagged);
    let long = "A".repeat(70 * 1024);
    let reply = client.command(&format!("NOOP {long}")).await;
    assert!(reply.tagged.contains("BAD line longer"), "{}", reply.tagged);
    client
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await
        .assert_ok();

    client.command("SELECT INBOX").await.assert_ok();
    let reply = client.command("FETCH 1:* (BODY[").await;
    assert!(reply.tagged.contains("BAD"), "{}", reply.tagged);
    let reply = client.command("FETCH x FLAGS").await;
    assert!(reply.tagged.contains("BAD"), "{}", reply.tagged);
    let reply = client.command("SEARCH CHARSET KOI8-R ALL").await;
    assert!(reply.tagged.contains("BADCHARSET"), "{}", reply.tagged);

    // A message over APPENDLIMIT with a synchronizing literal: refused before it is sent.
    let tag = client.next_tag();
    client
        .send_raw(format!("{tag} APPEND INBOX {{{}}}\r\n", MESSAGE_SIZE_MAX_BYTES + 1).as_bytes())
        .await;
    let reply = client.until_tagged(&tag).await;
    assert!(reply.tagged.contains("NO [TOOBIG]"), "{}", reply.tagged);
    client.command("NOOP").await.assert_ok();

    // Over the limit with LITERAL+: the data is already coming, so BAD and close.
    let tag = client.next_tag();
    client
        .send_raw(format!("{tag} APPEND INBOX {{{}+}}\r\n", MESSAGE_SIZE_MAX_BYTES + 1).as_bytes())
        .await;
    let reply = client.until_tagged(&tag).await;
    assert!(reply.tagged.contains("BAD [TOOBIG]"), "{}", reply.tagged);
}

#[tokio::test]
async fn condstore_modseq_changedsince_unchangedsince() {
    let server = common::start().await;
    for index in 0..3 {
        server
            .store
            .deliver(&[address(USER)], &message(&format!("c{index}"), "text"))
            .expect("deliver");
    }
    let mut client = Client::logged_in(&server).await;
    let reply = client.command("SELECT INBOX (CONDSTORE)").await;
    reply.assert_ok();
    let text = reply.untagged_text();
    let highest: u64 = text
        .split("[HIGHESTMODSEQ ")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .and_then(|number| number.parse().ok())
        .expect("HIGHESTMODSEQ in SELECT");
    let text = client.command("FETCH 1 (MODSEQ)").await.untagged_text();
    assert!(text.starts_with("* 1 FETCH (MODSEQ ("), "{text}");

    let text = client
        .command("STORE 2 +FLAGS (\\Seen)")
        .await
        .untagged_text();
    assert!(text.contains("MODSEQ ("), "{text}");
    let text = client
        .command(&format!("UID FETCH 1:* (FLAGS) (CHANGEDSINCE {highest})"))
        .await
        .untagged_text();
    assert!(
        text.starts_with("* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ ("),
        "{text}"
    );
    assert!(
        !text.contains("* 1 FETCH") && !text.contains("* 3 FETCH"),
        "{text}"
    );

    let reply = client
        .command(&format!(
            "STORE 1:2 (UNCHANGEDSINCE {highest}) +FLAGS (\\Flagged)"
        ))
        .await;
    reply.assert_ok();
    assert!(reply.tagged.contains("[MODIFIED 2]"), "{}", reply.tagged);
    assert!(reply
        .untagged_text()
        .contains("* 1 FETCH (FLAGS (\\Flagged)"));
}
