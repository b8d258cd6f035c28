//! QUOTA (RFC 9208) with the STORAGE resource: the account's quota and usage, read-only.

mod common;

use common::{address, Client, PASSWORD, USER};

fn lines(reply: &common::Reply) -> Vec<String> {
    reply
        .untagged
        .iter()
        .map(|line| String::from_utf8_lossy(line).trim_end().to_string())
        .collect()
}

#[tokio::test]
async fn quota_roots_report_storage_in_kibibytes() {
    let server = common::start().await;
    let mut client = Client::tls(&server).await;
    client
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await
        .assert_ok();
    let capabilities = client.command("CAPABILITY").await;
    let text = lines(&capabilities).join(" ");
    assert!(
        text.contains(" QUOTA ") && text.contains("QUOTA=RES-STORAGE"),
        "{text}"
    );

    // No quota set: a quota root with no resources.
    let reply = client.command("GETQUOTAROOT INBOX").await;
    reply.assert_ok();
    assert_eq!(lines(&reply), ["* QUOTAROOT \"INBOX\" \"\""]);

    server
        .store
        .set_quota(&address(USER), 10 * 1024 * 1024)
        .expect("quota");
    server
        .store
        .deliver(&[address(USER)], &vec![b'x'; 3000])
        .expect("deliver");
    let reply = client.command("GETQUOTAROOT INBOX").await;
    reply.assert_ok();
    assert_eq!(
        lines(&reply),
        [
            "* QUOTAROOT \"INBOX\" \"\"",
            "* QUOTA \"\" (STORAGE 3 10240)"
        ]
    );
    let reply = client.command("GETQUOTA \"\"").await;
    reply.assert_ok();
    assert_eq!(lines(&reply), ["* QUOTA \"\" (STORAGE 3 10240)"]);

    let reply = client.command("GETQUOTA \"elsewhere\"").await;
    assert!(
        reply.tagged.contains("NO [NONEXISTENT]"),
        "{}",
        reply.tagged
    );
    let reply = client.command("SETQUOTA \"\" (STORAGE 1)").await;
    assert!(reply.tagged.contains("NO [NOPERM]"), "{}", reply.tagged);
    let reply = client.command("GETQUOTAROOT Nowhere").await;
    assert!(reply.tagged.contains("NO"), "{}", reply.tagged);
    // The session goes on.
    client.command("NOOP").await.assert_ok();
}
