//! OBJECTID (RFC 8474): MAILBOXID stays with a mailbox across renames, EMAILID identifies a
//! message, THREADID is NIL.

mod common;

use common::{address, Client, PASSWORD, USER};

fn text(reply: &common::Reply) -> String {
    reply
        .untagged
        .iter()
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect::<String>()
}

fn between<'a>(text: &'a str, start: &str, end: char) -> &'a str {
    let from = text
        .find(start)
        .map(|at| at + start.len())
        .unwrap_or(text.len());
    let rest = &text[from..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

#[tokio::test]
async fn object_ids() {
    let server = common::start().await;
    server
        .store
        .deliver(&[address(USER)], b"Subject: one\r\n\r\nbody\r\n")
        .expect("deliver");
    let mut client = Client::tls(&server).await;
    client
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await
        .assert_ok();
    let capability = client.command("CAPABILITY").await;
    assert!(text(&capability).contains("OBJECTID"));

    let created = client.command("CREATE Projects").await;
    created.assert_ok();
    let id = between(&created.tagged, "[MAILBOXID (", ')').to_string();
    assert!(id.starts_with('M') && id.len() > 1, "{}", created.tagged);
    let status = client.command("STATUS Projects (MAILBOXID)").await;
    assert!(
        text(&status).contains(&format!("MAILBOXID ({id})")),
        "{}",
        text(&status)
    );
    client
        .command("RENAME Projects Archive/Projects")
        .await
        .assert_ok();
    let selected = client.command("SELECT Archive/Projects").await;
    selected.assert_ok();
    assert!(
        text(&selected).contains(&format!("[MAILBOXID ({id})]")),
        "{}",
        text(&selected)
    );

    let inbox = client.command("SELECT INBOX").await;
    let inbox_id = between(&text(&inbox), "[MAILBOXID (", ')').to_string();
    assert_ne!(inbox_id, id);
    let fetched = client.command("FETCH 1 (EMAILID THREADID)").await;
    fetched.assert_ok();
    let fetched = text(&fetched);
    assert!(fetched.contains("THREADID NIL"), "{fetched}");
    let email_id = between(&fetched, "EMAILID (", ')');
    assert!(email_id.starts_with('E') && email_id.len() > 1, "{fetched}");
}
