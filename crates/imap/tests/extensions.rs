//! Extensions over a real session: SORT and THREAD (RFC 5256), SEARCHRES (RFC 5182),
//! BINARY (RFC 3516), QRESYNC (RFC 7162).

mod common;

use common::{address, Client, PASSWORD, USER};

fn message(from: &str, subject: &str, date: &str, body_bytes: usize) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {USER}\r\nSubject: {subject}\r\nDate: {date}\r\n\r\n{}\r\n",
        "x".repeat(body_bytes)
    )
    .into_bytes()
}

fn sorted(reply: &common::Reply) -> String {
    reply
        .untagged
        .iter()
        .map(|line| String::from_utf8_lossy(line).trim_end().to_string())
        .find(|line| line.starts_with("* SORT"))
        .unwrap_or_default()
}

#[tokio::test]
async fn sort_by_subject_date_size_and_from() {
    let server = common::start().await;
    for (from, subject, date, size) in [
        (
            "carol@example.net",
            "Re: banana",
            "Tue, 24 Nov 2026 10:00:00 +0000",
            300,
        ),
        (
            "alice@example.net",
            "apple",
            "Mon, 23 Nov 2026 10:00:00 +0000",
            100,
        ),
        (
            "bob@example.net",
            "[list] Fwd: cherry",
            "Wed, 25 Nov 2026 10:00:00 +0000",
            200,
        ),
    ] {
        server
            .store
            .deliver(&[address(USER)], &message(from, subject, date, size))
            .expect("deliver");
    }
    let mut client = Client::tls(&server).await;
    client
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await
        .assert_ok();
    let capabilities = client.command("CAPABILITY").await;
    assert!(String::from_utf8_lossy(&capabilities.untagged[0]).contains(" SORT"));
    client.command("SELECT INBOX").await.assert_ok();

    let reply = client.command("SORT (SUBJECT) UTF-8 ALL").await;
    reply.assert_ok();
    assert_eq!(
        sorted(&reply),
        "* SORT 2 1 3",
        "apple, banana, cherry by base subject"
    );
    assert_eq!(
        sorted(&client.command("SORT (DATE) UTF-8 ALL").await),
        "* SORT 2 1 3"
    );
    assert_eq!(
        sorted(&client.command("SORT (REVERSE SIZE) UTF-8 ALL").await),
        "* SORT 1 3 2"
    );
    assert_eq!(
        sorted(&client.command("SORT (FROM) UTF-8 ALL").await),
        "* SORT 2 3 1"
    );
    assert_eq!(
        sorted(&client.command("SORT (ARRIVAL) US-ASCII ALL").await),
        "* SORT 1 2 3"
    );
    assert_eq!(
        sorted(
            &client
                .command("SORT (SUBJECT) UTF-8 NOT SUBJECT apple")
                .await
        ),
        "* SORT 1 3"
    );
    assert_eq!(
        sorted(&client.command("UID SORT (REVERSE DATE) UTF-8 ALL").await),
        "* SORT 3 1 2"
    );

    let reply = client.command("SORT (COLOUR) UTF-8 ALL").await;
    assert!(reply.tagged.contains("BAD"), "{}", reply.tagged);
    let reply = client.command("SORT (DATE) KOI8-R ALL").await;
    assert!(reply.tagged.contains("BADCHARSET"), "{}", reply.tagged);
    client.command("NOOP").await.assert_ok();
}

#[tokio::test]
async fn thread_references_links_replies_under_their_parents() {
    let server = common::start().await;
    let messages = [
        ("<a@x>", None, "Mon, 23 Nov 2026 10:00:00 +0000"),
        ("<b@x>", Some("<a@x>"), "Mon, 23 Nov 2026 11:00:00 +0000"),
        ("<c@x>", None, "Mon, 23 Nov 2026 09:00:00 +0000"),
        ("<d@x>", Some("<a@x>"), "Mon, 23 Nov 2026 12:00:00 +0000"),
        ("<e@x>", Some("<b@x>"), "Mon, 23 Nov 2026 13:00:00 +0000"),
    ];
    for (id, parent, date) in messages {
        let in_reply_to = parent
            .map(|parent| format!("In-Reply-To: {parent}\r\n"))
            .unwrap_or_default();
        let message = format!("From: x@example.net\r\nMessage-ID: {id}\r\n{in_reply_to}Date: {date}\r\nSubject: s\r\n\r\nbody\r\n");
        server
            .store
            .deliver(&[address(USER)], message.as_bytes())
            .expect("deliver");
    }
    // A reply to a message not in the mailbox, whose References reach back to a.
    server
        .store
        .deliver(
            &[address(USER)],
            b"From: x@example.net\r\nMessage-ID: <f@x>\r\nIn-Reply-To: <gone@x>\r\nReferences: <a@x>\r\n <gone@x>\r\nDate: Mon, 23 Nov 2026 14:00:00 +0000\r\nSubject: s\r\n\r\nbody\r\n",
        )
        .expect("deliver");
    let mut client = Client::tls(&server).await;
    client
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await
        .assert_ok();
    assert!(
        String::from_utf8_lossy(&client.command("CAPABILITY").await.untagged[0])
            .contains("THREAD=REFERENCES")
    );
    client.command("SELECT INBOX").await.assert_ok();
    let reply = client.command("THREAD REFERENCES UTF-8 ALL").await;
    reply.assert_ok();
    let line = reply
        .untagged
        .iter()
        .map(|line| String::from_utf8_lossy(line).trim_end().to_string())
        .find(|line| line.starts_with("* THREAD"))
        .unwrap_or_default();
    // 3 is the oldest root; 1 has three replies (2, then 4, then 6 by its References), and 2
    // has a reply (5).
    assert_eq!(line, "* THREAD (3)(1 (2 5)(4)(6))");
    let reply = client.command("THREAD ORDEREDSUBJECT UTF-8 ALL").await;
    assert!(reply.tagged.contains("BAD"), "{}", reply.tagged);
}

#[tokio::test]
async fn searchres_saves_a_result_for_later_commands() {
    let server = common::start().await;
    for n in 1..=5 {
        server
            .store
            .deliver(
                &[address(USER)],
                format!("Subject: m{n}\r\n\r\nbody\r\n").as_bytes(),
            )
            .expect("deliver");
    }
    let mut client = Client::tls(&server).await;
    client
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await
        .assert_ok();
    assert!(
        String::from_utf8_lossy(&client.command("CAPABILITY").await.untagged[0])
            .contains("SEARCHRES")
    );
    client.command("SELECT INBOX").await.assert_ok();
    client
        .command("STORE 2,4 +FLAGS (\\Flagged)")
        .await
        .assert_ok();
    let saved = client.command("SEARCH RETURN (SAVE) FLAGGED").await;
    saved.assert_ok();
    assert!(
        !saved
            .untagged
            .iter()
            .any(|line| line.starts_with(b"* ESEARCH")),
        "SAVE alone gives no ESEARCH"
    );
    let fetched = client.command("FETCH $ (UID)").await;
    fetched.assert_ok();
    let text: String = fetched
        .untagged
        .iter()
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect();
    assert!(
        text.contains("* 2 FETCH (UID 2)") && text.contains("* 4 FETCH (UID 4)"),
        "{text}"
    );
    assert!(!text.contains("* 1 FETCH"), "{text}");
    // $ in a search, combined with other keys.
    let reply = client.command("SEARCH $ SUBJECT m4").await;
    let text: String = reply
        .untagged
        .iter()
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect();
    assert!(text.contains(" 4") && !text.contains(" 2"), "{text}");
    // An expunged message drops out of $.
    client
        .command("STORE 2 +FLAGS (\\Deleted)")
        .await
        .assert_ok();
    client.command("EXPUNGE").await.assert_ok();
    let fetched = client.command("UID FETCH $ (FLAGS)").await;
    let text: String = fetched
        .untagged
        .iter()
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect();
    assert!(text.contains("UID 4") && !text.contains("UID 2"), "{text}");
    // SAVE with another option answers ESEARCH too.
    let both = client.command("UID SEARCH RETURN (SAVE COUNT) ALL").await;
    assert!(both
        .untagged
        .iter()
        .any(|line| line.starts_with(b"* ESEARCH")));
}

#[tokio::test]
async fn binary_fetches_decoded_parts_and_appends_literal8() {
    let server = common::start().await;
    let message = b"From: x@example.net\r\nSubject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC/w==\r\n--b--\r\n";
    server
        .store
        .deliver(&[address(USER)], message)
        .expect("deliver");
    let mut client = Client::tls(&server).await;
    client
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await
        .assert_ok();
    assert!(
        String::from_utf8_lossy(&client.command("CAPABILITY").await.untagged[0])
            .contains(" BINARY")
    );
    client.command("SELECT INBOX").await.assert_ok();
    let reply = client
        .command("FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[2])")
        .await;
    reply.assert_ok();
    let text: Vec<u8> = reply.untagged.concat();
    let text_lossy = String::from_utf8_lossy(&text);
    assert!(text_lossy.contains("BINARY[1] {5}\r\ncafé"), "{text_lossy}");
    assert!(text_lossy.contains("BINARY.SIZE[2] 4"), "{text_lossy}");
    let reply = client.command("FETCH 1 (BINARY.PEEK[2])").await;
    let text: Vec<u8> = reply.untagged.concat();
    let needle = b"BINARY[2] ~{4}\r\n\x00\x01\x02\xff";
    assert!(
        text.windows(needle.len()).any(|window| window == needle),
        "{:?}",
        String::from_utf8_lossy(&text)
    );
    // Not PEEK: \Seen is set.
    let reply = client.command("FETCH 1 (BINARY[1] FLAGS)").await;
    assert!(String::from_utf8_lossy(&reply.untagged.concat()).contains("\\Seen"));

    // APPEND with a literal8 (non-synchronizing) holding a NUL stores the bytes as sent.
    let appended = b"Subject: raw\r\n\r\nnul \x00 inside\r\n";
    let tag = client.next_tag();
    let mut raw = format!("{tag} APPEND INBOX ~{{{}+}}\r\n", appended.len()).into_bytes();
    raw.extend_from_slice(appended);
    raw.extend_from_slice(b"\r\n");
    client.send_raw(&raw).await;
    let reply = client.until_tagged(&tag).await;
    assert!(reply.ok(), "{}", reply.tagged);
    let session = server
        .store
        .unlock(&address(USER), &letterlock_types::Secret::from(PASSWORD))
        .expect("unlock");
    let stored = session
        .fetch(&letterlock_types::MailboxName::inbox(), 2)
        .expect("appended");
    assert_eq!(stored, appended);

    // A transfer encoding the server cannot undo fails the command with UNKNOWN-CTE
    // (RFC 3516 section 4.2); the raw part is still there by BODY, and the session goes on.
    server
        .store
        .deliver(
            &[address(USER)],
            b"Subject: old\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n--b--\r\n",
        )
        .expect("deliver");
    client.command("NOOP").await.assert_ok();
    for command in ["FETCH 3 (BINARY.PEEK[1])", "UID FETCH 3 (BINARY.SIZE[1])"] {
        let refused = client.command(command).await;
        assert!(
            refused.tagged.contains("NO [UNKNOWN-CTE]"),
            "{command}: {}",
            refused.tagged
        );
    }
    let raw = client.command("FETCH 3 (BODY.PEEK[1])").await;
    raw.assert_ok();
    assert!(joined(&raw).contains("begin 644 x"), "{}", joined(&raw));
}

fn joined(reply: &common::Reply) -> String {
    reply
        .untagged
        .iter()
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect()
}

fn number_after(text: &str, label: &str) -> u64 {
    let start = text
        .find(label)
        .map(|at| at + label.len())
        .unwrap_or(text.len());
    text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

#[tokio::test]
async fn qresync_reports_vanished_uids_and_changed_flags() {
    let server = common::start().await;
    for n in 1..=4 {
        server
            .store
            .deliver(
                &[address(USER)],
                format!("Subject: q{n}\r\n\r\nbody\r\n").as_bytes(),
            )
            .expect("deliver");
    }
    // Without ENABLE, QRESYNC parameters are refused.
    let mut plain = Client::tls(&server).await;
    plain
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await
        .assert_ok();
    let refused = plain.command("SELECT INBOX (QRESYNC (1 1))").await;
    assert!(refused.tagged.contains("BAD"), "{}", refused.tagged);

    let mut client = Client::tls(&server).await;
    client
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await
        .assert_ok();
    assert!(joined(&client.command("CAPABILITY").await).contains("QRESYNC"));
    let enabled = client.command("ENABLE QRESYNC").await;
    assert!(
        joined(&enabled).contains("ENABLED QRESYNC"),
        "{}",
        joined(&enabled)
    );
    let first = joined(&client.command("SELECT INBOX").await);
    let uid_validity = number_after(&first, "[UIDVALIDITY ");
    let modseq = number_after(&first, "[HIGHESTMODSEQ ");
    client.command("UNSELECT").await.assert_ok();

    // Meanwhile another client flags UID 2 and expunges UID 3.
    plain.command("SELECT INBOX").await.assert_ok();
    plain
        .command("UID STORE 2 +FLAGS (\\Flagged)")
        .await
        .assert_ok();
    plain
        .command("UID STORE 3 +FLAGS (\\Deleted)")
        .await
        .assert_ok();
    plain.command("UID EXPUNGE 3").await.assert_ok();

    let resync = client
        .command(&format!(
            "SELECT INBOX (QRESYNC ({uid_validity} {modseq} 1:4))"
        ))
        .await;
    resync.assert_ok();
    let text = joined(&resync);
    assert!(
        resync
            .untagged
            .iter()
            .any(|line| String::from_utf8_lossy(line).trim_end() == "* VANISHED (EARLIER) 3"),
        "{text}"
    );
    assert!(
        text.contains("FETCH (UID 2 FLAGS (\\Flagged) MODSEQ ("),
        "{text}"
    );
    assert!(
        !text.contains("UID 1 FLAGS"),
        "unchanged messages are not sent: {text}"
    );

    // Expunges by others now arrive as VANISHED, not EXPUNGE.
    plain
        .command("UID STORE 4 +FLAGS (\\Deleted)")
        .await
        .assert_ok();
    plain.command("UID EXPUNGE 4").await.assert_ok();
    let noop = joined(&client.command("NOOP").await);
    assert!(noop.contains("* VANISHED 4"), "{noop}");
    assert!(!noop.contains("(EARLIER) 4"), "{noop}");
    assert!(!noop.contains("EXPUNGE"), "{noop}");

    let fetched = joined(
        &client
            .command("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
            .await,
    );
    assert!(fetched.contains("* VANISHED (EARLIER) 3:4"), "{fetched}");
    let bad = client
        .command("FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)")
        .await;
    assert!(bad.tagged.contains("BAD"), "{}", bad.tagged);
}

#[tokio::test]
async fn utf8_accept_is_offered_and_enabled() {
    let server = common::start().await;
    let mut client = Client::tls(&server).await;
    client
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await
        .assert_ok();
    assert!(joined(&client.command("CAPABILITY").await).contains("UTF8=ACCEPT"));
    let enabled = client.command("ENABLE UTF8=ACCEPT").await;
    assert!(
        joined(&enabled).contains("ENABLED UTF8=ACCEPT"),
        "{}",
        joined(&enabled)
    );
    // A mailbox name in UTF-8, quoted, is accepted and listed as UTF-8.
    client.command("CREATE \"Résumés\"").await.assert_ok();
    let listed = joined(&client.command("LIST \"\" \"R*\"").await);
    assert!(listed.contains("Résumés"), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_account_are_bounded() {
    // More connections from this one address than the listeners' default per-address limit.
    let server = common::start_with(|config| {
        config.limits.connections_per_ip_max = 200;
        config.limits.connections_max = 200;
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..letterlock_imap::limits::CONNECTIONS_PER_ACCOUNT_MAX {
        let mut client = Client::tls(&server).await;
        client
            .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
            .await
            .assert_ok();
        open.push(client);
    }
    let mut one_more = Client::tls(&server).await;
    let refused = one_more
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await;
    assert!(refused.tagged.contains("NO [LIMIT]"), "{}", refused.tagged);
    let mut first = open.remove(0);
    first.command("LOGOUT").await;
    drop(first);
    // The slot is given back when the session ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let reply = one_more
            .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
            .await;
        if reply.ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", reply.tagged);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_under_attack_refuses_even_the_right_password_for_a_while() {
    let server = common::start().await;
    let mut failures = 0;
    while failures < letterlock_imap::limits::LOGIN_FAILURES_PER_ACCOUNT_MAX {
        let mut client = Client::tls(&server).await;
        for _ in 0..letterlock_imap::limits::LOGIN_FAILURES_PER_SESSION_MAX {
            if failures >= letterlock_imap::limits::LOGIN_FAILURES_PER_ACCOUNT_MAX {
                break;
            }
            let reply = client.command(&format!("LOGIN {USER} wrong")).await;
            assert!(reply.tagged.contains("NO"), "{}", reply.tagged);
            failures += 1;
        }
    }
    let mut client = Client::tls(&server).await;
    let refused = client
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await;
    assert!(
        refused.tagged.contains("NO [UNAVAILABLE]"),
        "{}",
        refused.tagged
    );
}

#[tokio::test]
async fn idle_sessions_and_idle_commands_end_after_the_idle_limit() {
    let server = common::start_with(|config| config.limits.idle_timeout_secs = 1).await;
    let mut quiet = Client::tls(&server).await;
    quiet
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await
        .assert_ok();
    let bye = quiet.read_response().await;
    assert!(
        String::from_utf8_lossy(&bye).starts_with("* BYE autologout"),
        "{}",
        String::from_utf8_lossy(&bye)
    );

    let mut idler = Client::tls(&server).await;
    idler
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await
        .assert_ok();
    idler.command("SELECT INBOX").await.assert_ok();
    idler.send_raw(b"i IDLE\r\n").await;
    assert!(idler.read_response().await.starts_with(b"+ "));
    let bye = idler.read_response().await;
    assert!(
        String::from_utf8_lossy(&bye).starts_with("* BYE IDLE"),
        "{}",
        String::from_utf8_lossy(&bye)
    );
}

#[tokio::test]
async fn list_extended_recursivematch_reports_childinfo() {
    let server = common::start().await;
    let mut client = Client::tls(&server).await;
    client
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await
        .assert_ok();
    client.command("CREATE Work").await.assert_ok();
    client.command("CREATE Work/Reports").await.assert_ok();
    client.command("UNSUBSCRIBE Work").await.assert_ok();
    let plain = joined(&client.command("LIST (SUBSCRIBED) \"\" \"%\"").await);
    assert!(!plain.contains("\"Work\""), "{plain}");
    let recursive = client
        .command("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\"")
        .await;
    recursive.assert_ok();
    let work = recursive
        .untagged
        .iter()
        .map(|line| String::from_utf8_lossy(line).trim_end().to_string())
        .find(|line| line.contains("\"Work\""))
        .unwrap_or_default();
    assert!(
        work.ends_with("\"Work\" (\"CHILDINFO\" (\"SUBSCRIBED\"))"),
        "{work}"
    );
    assert!(!work.contains("\\Subscribed"), "{work}");
    let bad = client.command("LIST (RECURSIVEMATCH) \"\" \"*\"").await;
    assert!(bad.tagged.contains("BAD"), "{}", bad.tagged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_flood_is_slowed_to_the_rate_limit_not_dropped() {
    use letterlock_imap::limits::{COMMANDS_PER_SECOND_MAX, COMMAND_BURST_MAX};
    let server = common::start().await;
    let mut client = Client::tls(&server).await;
    client
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await
        .assert_ok();
    let extra = COMMANDS_PER_SECOND_MAX as usize * 3 / 2;
    let total = COMMAND_BURST_MAX as usize + extra;
    let mut flood = Vec::new();
    for n in 0..total {
        flood.extend_from_slice(format!("f{n} NOOP\r\n").as_bytes());
    }
    let started = std::time::Instant::now();
    client.send_raw(&flood).await;
    let last = client.until_tagged(&format!("f{}", total - 1)).await;
    assert!(last.ok(), "{}", last.tagged);
    // The burst passes at once; the rest at COMMANDS_PER_SECOND_MAX (a lower bound only: a
    // slower machine takes longer, never shorter).
    let floor =
        std::time::Duration::from_secs_f64(extra as f64 / f64::from(COMMANDS_PER_SECOND_MAX) * 0.8);
    assert!(
        started.elapsed() >= floor,
        "{:?} < {floor:?}: not rate-limited",
        started.elapsed()
    );
    client.command("NOOP").await.assert_ok();
}
