//! Every admin command of the `letterlock` binary: its happy path and its main errors,
//! through the real binary, with exit status and the one-line reason checked.

mod common;

use common::{recovery_code, Env, PASSWORD};
use letterlock_types::{EmailAddress, MailboxName, Secret};

fn alice() -> EmailAddress {
    EmailAddress::try_from("alice@example.org").expect("address")
}

#[test]
fn domain_add_list_remove() {
    let env = Env::new();
    assert!(env
        .ok(&["domain", "add", "Example.ORG"], "")
        .contains("added domain example.org"));
    env.ok(&["domain", "add", "example.net"], "");
    assert_eq!(
        env.ok(&["domain", "list"], ""),
        "example.net\nexample.org\n"
    );
    let (_, error) = env.fails(&["domain", "add", "example.org"], "");
    assert!(error.contains("already exists"), "{error}");
    let (_, error) = env.fails(&["domain", "add", "exa_mple.org"], "");
    assert!(error.contains("invalid domain"), "{error}");
    let (_, error) = env.fails(&["domain", "remove", "nowhere.example"], "");
    assert!(error.contains("does not exist"), "{error}");
    env.ok(
        &["user", "add", "bob@example.net"],
        &format!("{PASSWORD}\n"),
    );
    let (_, error) = env.fails(&["domain", "remove", "example.net"], "");
    assert!(error.contains("still has 1 user"), "{error}");
    env.ok(&["domain", "remove", "example.org"], "");
    assert_eq!(env.ok(&["domain", "list"], ""), "example.net\n");
}

#[test]
fn user_add_and_list() {
    let env = Env::new();
    env.ok(&["domain", "add", "example.org"], "");
    let out = env.ok(
        &["user", "add", "Alice@example.org", "--quota", "10M"],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.contains("added user alice@example.org"), "{out}");
    let code = recovery_code(&out);
    assert_eq!(code.len(), 29, "recovery code {code:?}");
    assert!(out.contains("OpenPGP key: "), "{out}");
    let list = env.ok(&["user", "list"], "");
    assert!(list.starts_with("alice@example.org\t"), "{list}");
    assert!(list.contains("quota 10485760"), "{list}");
    assert_eq!(env.ok(&["user", "list", "example.net"], ""), "");

    let (_, error) = env.fails(
        &["user", "add", "alice@example.org"],
        &format!("{PASSWORD}\n"),
    );
    assert!(error.contains("already exists"), "{error}");
    let (_, error) = env.fails(
        &["user", "add", "bob@nowhere.example"],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        error.contains("domain nowhere.example does not exist"),
        "{error}"
    );
    let (_, error) = env.fails(&["user", "add", "not-an-address"], &format!("{PASSWORD}\n"));
    assert!(error.contains("invalid address"), "{error}");
    let (_, error) = env.fails(&["user", "add", "bob@example.org"], "short\n");
    assert!(error.contains("shorter than 8"), "{error}");
    let (_, error) = env.fails(&["user", "add", "bob@example.org"], "");
    assert!(
        error.contains("expected a line on standard input"),
        "{error}"
    );
    let (_, error) = env.fails(
        &["user", "add", "bob@example.org", "--quota", "lots"],
        &format!("{PASSWORD}\n"),
    );
    assert!(error.contains("invalid size"), "{error}");
    let (_, error) = env.fails(
        &[
            "user",
            "add",
            "bob@example.org",
            "--import-key",
            "/nonexistent.asc",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(error.contains("cannot read key file"), "{error}");
}

#[test]
fn user_add_imports_a_key_the_user_brings() {
    let env = Env::new();
    env.ok(&["domain", "add", "example.org"], "");
    let key = letterlock_crypto::openpgp::UserKey::generate("carol@example.org").expect("key");
    let key_file = env.root.path().join("carol.asc");
    std::fs::write(
        &key_file,
        key.export_locked_armored(PASSWORD.as_bytes())
            .expect("armor"),
    )
    .expect("write");
    let out = env.ok(
        &[
            "user",
            "add",
            "carol@example.org",
            "--import-key",
            key_file.to_str().expect("utf-8"),
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.contains(&key.fingerprint()), "{out}");
    let (_, error) = env.fails(
        &[
            "user",
            "add",
            "dave@example.org",
            "--import-key",
            key_file.to_str().expect("utf-8"),
        ],
        "another password\n",
    );
    assert!(error.contains("locked with a passphrase"), "{error}");
}

#[test]
fn user_passwd_with_current_password_and_recovery_code_keeps_mail() {
    let env = Env::new();
    let code = env.with_alice();
    env.ok(
        &["deliver", "alice@example.org"],
        "Subject: kept\r\n\r\nkept\r\n",
    );
    let out = env.ok(
        &["user", "passwd", "alice@example.org", "--current"],
        &format!("{PASSWORD}\nsecond password\n"),
    );
    assert!(out.contains("all mail stays readable"), "{out}");
    let (_, error) = env.fails(
        &["user", "passwd", "alice@example.org", "--current"],
        "wrong password\nthird password\n",
    );
    assert!(error.contains("wrong password"), "{error}");
    let (_, error) = env.fails(
        &["user", "passwd", "alice@example.org", "--recovery-code"],
        "third password\nAAAAA-BBBBB\n",
    );
    assert!(error.contains("wrong recovery code"), "{error}");
    env.ok(
        &["user", "passwd", "alice@example.org", "--recovery-code"],
        &format!("third password\n{code}\n"),
    );
    {
        let session = env
            .store()
            .unlock(&alice(), &Secret::from("third password"))
            .expect("unlock");
        assert_eq!(
            session.fetch(&MailboxName::inbox(), 1).expect("fetch"),
            b"Subject: kept\r\n\r\nkept\r\n"
        );
    }
    let (_, error) = env.fails(&["user", "passwd", "nobody@example.org"], "x\n");
    assert!(
        error.contains("user nobody@example.org does not exist"),
        "{error}"
    );
}

#[test]
fn admin_reset_without_recovery_code_says_old_mail_is_lost() {
    let env = Env::new();
    env.with_alice();
    env.ok(
        &["deliver", "alice@example.org"],
        "Subject: old\r\n\r\nold\r\n",
    );
    let carol = letterlock_crypto::openpgp::UserKey::generate("carol@remote.test")
        .expect("key")
        .public_key();
    let carol_file = env.root.path().join("carol.asc");
    std::fs::write(&carol_file, carol.to_armored().expect("armour")).expect("write");
    env.ok(
        &[
            "user",
            "contact-key",
            "add",
            "alice@example.org",
            "carol@remote.test",
            "--file",
            carol_file.to_str().expect("utf-8"),
        ],
        &format!("{PASSWORD}\n"),
    );
    let out = env.ok(
        &["user", "passwd", "alice@example.org"],
        "new password here\n",
    );
    assert!(out.contains("WITHOUT the recovery code"), "{out}");
    assert!(out.contains("trusted contact keys were removed"), "{out}");
    assert_eq!(
        env.trusted_sender_key("alice@example.org", "carol@remote.test"),
        None,
        "the copy for delivery went with the sealed contact"
    );
    assert_eq!(
        env.ok(
            &["user", "contact-key", "list", "alice@example.org"],
            "new password here\n"
        ),
        ""
    );
    assert!(out.contains("1 message(s) stored before now"), "{out}");
    assert!(out.contains("can no longer be read"), "{out}");
    let new_code = recovery_code(&out);
    let store = env.store();
    let session = store
        .unlock(&alice(), &Secret::from("new password here"))
        .expect("unlock");
    assert!(
        session.fetch(&MailboxName::inbox(), 1).is_err(),
        "old mail readable after a reset"
    );
    store
        .unlock_with_recovery_code(&alice(), &Secret::from(new_code))
        .expect("new recovery code works");
}

#[test]
fn user_remove_needs_confirmation() {
    let env = Env::new();
    env.with_alice();
    let (_, error) = env.fails(&["user", "remove", "alice@example.org"], "");
    assert!(error.contains("--yes"), "{error}");
    env.ok(&["user", "remove", "alice@example.org", "--yes"], "");
    assert_eq!(env.ok(&["user", "list"], ""), "");
    let (_, error) = env.fails(&["user", "remove", "alice@example.org", "--yes"], "");
    assert!(error.contains("does not exist"), "{error}");
}

#[test]
fn app_password_add_list_remove() {
    let env = Env::new();
    env.with_alice();
    let out = env.ok(
        &["user", "app-password", "add", "alice@example.org", "phone"],
        &format!("{PASSWORD}\n"),
    );
    let app_password = out.lines().nth(1).expect("password line").to_string();
    assert_eq!(app_password.len(), 23, "{out}");
    assert!(env
        .ok(&["user", "app-password", "list", "alice@example.org"], "")
        .starts_with("phone\t"));
    env.store()
        .unlock(&alice(), &Secret::from(app_password.as_str()))
        .expect("app password unlocks");
    let (_, error) = env.fails(
        &["user", "app-password", "add", "alice@example.org", "laptop"],
        "wrong password\n",
    );
    assert!(error.contains("wrong password"), "{error}");
    let (_, error) = env.fails(
        &["user", "app-password", "add", "alice@example.org", "phone"],
        &format!("{PASSWORD}\n"),
    );
    assert!(error.contains("already exists"), "{error}");
    env.ok(
        &[
            "user",
            "app-password",
            "remove",
            "alice@example.org",
            "phone",
        ],
        "",
    );
    assert_eq!(
        env.ok(&["user", "app-password", "list", "alice@example.org"], ""),
        ""
    );
    let (_, error) = env.fails(
        &[
            "user",
            "app-password",
            "remove",
            "alice@example.org",
            "phone",
        ],
        "",
    );
    assert!(error.contains("no app password named"), "{error}");
}

#[test]
fn alias_add_list_remove() {
    let env = Env::new();
    env.with_alice();
    env.ok(
        &[
            "alias",
            "add",
            "postmaster@example.org",
            "alice@example.org",
        ],
        "",
    );
    env.ok(&["alias", "add", "@example.org", "alice@example.org"], "");
    let list = env.ok(&["alias", "list"], "");
    assert!(
        list.contains("postmaster@example.org\talice@example.org"),
        "{list}"
    );
    assert!(list.contains("@example.org\talice@example.org"), "{list}");
    let out = env.ok(
        &["deliver", "anything@example.org"],
        "Subject: x\r\n\r\ny\r\n",
    );
    assert!(
        out.contains("delivered to alice@example.org for anything@example.org"),
        "{out}"
    );
    let (_, error) = env.fails(&["alias", "add", "x@example.org", "ghost@example.org"], "");
    assert!(
        error.contains("user ghost@example.org does not exist"),
        "{error}"
    );
    let (_, error) = env.fails(
        &["alias", "add", "x@other.example", "alice@example.org"],
        "",
    );
    assert!(error.contains("does not exist"), "{error}");
    let (_, error) = env.fails(&["alias", "add", "bad alias", "alice@example.org"], "");
    assert!(error.contains("invalid address"), "{error}");
    env.ok(&["alias", "remove", "@example.org"], "");
    let (_, error) = env.fails(&["alias", "remove", "@example.org"], "");
    assert!(error.contains("does not exist"), "{error}");
}

#[test]
fn deliver_reports_and_exit_codes_follow_sysexits() {
    let env = Env::new();
    env.with_alice();
    let out = env.ok(
        &["deliver", "alice@example.org"],
        "Subject: hi\r\n\r\nhello\r\n",
    );
    assert_eq!(out, "delivered to alice@example.org (INBOX, UID 1)\n");
    let (code, error) = env.fails(
        &["deliver", "nobody@example.org"],
        "Subject: hi\r\n\r\nhello\r\n",
    );
    assert_eq!(code, 67, "EX_NOUSER: {error}");
    assert!(
        error.contains("no such recipient: nobody@example.org"),
        "{error}"
    );
    let (code, _) = env.fails(&["deliver", "not an address"], "x");
    assert_eq!(code, 1);
    let big = vec![b'x'; 64 * 1024 * 1024 + 10];
    let output = env.run_bytes(&["deliver", "alice@example.org"], &big);
    assert_eq!(
        output.status.code(),
        Some(65),
        "EX_DATAERR for an oversized message"
    );
    // Nothing of the refused deliveries was stored.
    let session = env
        .store()
        .unlock(&alice(), &Secret::from(PASSWORD))
        .expect("unlock");
    assert_eq!(
        session
            .list_messages(&MailboxName::inbox())
            .expect("list")
            .len(),
        1
    );
}

#[test]
fn export_needs_the_password_and_an_empty_directory() {
    let env = Env::new();
    env.with_alice();
    env.ok(
        &["deliver", "alice@example.org"],
        "Subject: hi\r\n\r\nhello\r\n",
    );
    let out_dir = env.root.path().join("export");
    let out_text = out_dir.to_str().expect("utf-8");
    let (_, error) = env.fails(
        &["export", "alice@example.org", "--out", out_text],
        "wrong password\n",
    );
    assert!(error.contains("wrong password"), "{error}");
    let out = env.ok(
        &["export", "alice@example.org", "--out", out_text],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.contains("exported 1 message(s) in 6 mailbox(es)"),
        "{out}"
    );
    assert!(out_dir.join("secret-key.asc").exists());
    assert!(out_dir.join(".Sent/cur").is_dir());
    let (_, error) = env.fails(
        &["export", "alice@example.org", "--out", out_text],
        &format!("{PASSWORD}\n"),
    );
    assert!(error.contains("not empty"), "{error}");
}

#[test]
fn a_typo_in_the_configuration_is_a_clear_error() {
    let env = Env::new();
    let path = env.data.join("letterlock.toml");
    let text = std::fs::read_to_string(&path).expect("config");
    std::fs::write(&path, text.replace("argon2_iterations", "argon2_iteration")).expect("write");
    let (_, error) = env.fails(&["domain", "list"], "");
    assert!(error.contains("argon2_iteration"), "{error}");
}

#[test]
fn domain_dns_prints_both_dkim_records_and_keeps_them() {
    let env = Env::new();
    env.ok(&["domain", "add", "example.org"], "");
    let first = env.ok(&["domain", "dns", "example.org"], "");
    let records: Vec<&str> = first
        .lines()
        .filter(|line| line.contains("._domainkey.example.org."))
        .collect();
    assert_eq!(records.len(), 2, "{first}");
    assert!(
        records.iter().any(|line| line.contains("k=ed25519")),
        "{first}"
    );
    assert!(records.iter().any(|line| line.contains("k=rsa")), "{first}");
    assert!(
        first.contains(
            "_dmarc.example.org. IN TXT \"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org\""
        ),
        "{first}"
    );
    // The keys are generated once: the second call prints the same records.
    assert_eq!(env.ok(&["domain", "dns", "example.org"], ""), first);
    let (_, error) = env.fails(&["domain", "dns", "nowhere.example"], "");
    assert!(error.contains("does not exist"), "{error}");
    // The spool key that seals the DKIM keys and the queue lives beside the data, not in it.
    let spool_key = env.root.path().join("data.spool-key");
    assert!(spool_key.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&spool_key)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn queue_commands_on_an_empty_queue() {
    let env = Env::new();
    assert_eq!(env.ok(&["queue", "list"], ""), "");
    let (_, error) = env.fails(&["queue", "show", "999"], "");
    assert!(error.contains("999"), "{error}");
    let (_, error) = env.fails(&["queue", "retry", "abc"], "");
    assert!(error.contains("invalid queue id"), "{error}");
    let (_, error) = env.fails(&["queue", "delete", "7"], "");
    assert!(error.contains('7'), "{error}");
}

#[test]
fn user_settings_show_and_change_the_end_to_end_protection() {
    let env = Env::new();
    env.with_alice();
    assert_eq!(
        env.ok(&["user", "settings", "alice@example.org"], ""),
        "encrypt: per-recipient\nsign: off\n"
    );
    assert_eq!(
        env.ok(
            &[
                "user",
                "settings",
                "alice@example.org",
                "--encrypt",
                "always",
                "--sign",
                "on"
            ],
            ""
        ),
        "encrypt: always\nsign: on\n"
    );
    assert_eq!(
        env.ok(&["user", "settings", "alice@example.org"], ""),
        "encrypt: always\nsign: on\n",
        "kept"
    );
    let (_, error) = env.fails(&["user", "settings", "nobody@example.org"], "");
    assert!(error.contains("nobody@example.org"), "{error}");
}

#[test]
fn contact_keys_are_added_listed_and_removed_with_the_account_password() {
    let env = Env::new();
    env.with_alice();
    let key = letterlock_crypto::openpgp::UserKey::generate("carol@remote.test")
        .expect("key")
        .public_key();
    let file = env.root.path().join("carol.asc");
    std::fs::write(&file, key.to_armored().expect("armour")).expect("write");
    let file = file.to_str().expect("utf-8");
    let add = |contact: &'static str| {
        [
            "user",
            "contact-key",
            "add",
            "alice@example.org",
            contact,
            "--file",
            file,
        ]
    };
    let added = env.ok(&add("carol@remote.test"), &format!("{PASSWORD}\n"));
    assert!(added.contains(&key.fingerprint()), "{added}");
    // The copy inbound signature checks read while Alice is away, under the spool key.
    let kept = env
        .trusted_sender_key("alice@example.org", "carol@remote.test")
        .expect("kept for delivery");
    assert_eq!(
        letterlock_crypto::openpgp::PublicKey::from_bytes(&kept)
            .expect("key")
            .fingerprint(),
        key.fingerprint()
    );
    assert_eq!(
        env.ok(
            &["user", "contact-key", "list", "alice@example.org"],
            &format!("{PASSWORD}\n")
        ),
        format!("carol@remote.test\t{}\n", key.fingerprint())
    );
    let (_, error) = env.fails(&add("dan@remote.test"), &format!("{PASSWORD}\n"));
    assert!(error.contains("do not name dan@remote.test"), "{error}");
    let (_, error) = env.fails(
        &["user", "contact-key", "list", "alice@example.org"],
        "wrong password\n",
    );
    assert!(error.contains("wrong password"), "{error}");
    env.ok(
        &[
            "user",
            "contact-key",
            "remove",
            "alice@example.org",
            "carol@remote.test",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(
        env.trusted_sender_key("alice@example.org", "carol@remote.test"),
        None
    );
    let (_, error) = env.fails(
        &[
            "user",
            "contact-key",
            "remove",
            "alice@example.org",
            "carol@remote.test",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(error.contains("no trusted key"), "{error}");
    // Removing the account removes its copies too.
    env.ok(&add("carol@remote.test"), &format!("{PASSWORD}\n"));
    assert!(env
        .trusted_sender_key("alice@example.org", "carol@remote.test")
        .is_some());
    env.ok(&["user", "remove", "alice@example.org", "--yes"], "");
    assert_eq!(
        env.trusted_sender_key("alice@example.org", "carol@remote.test"),
        None
    );
}

#[test]
fn dmarc_report_lists_nothing_before_reports_arrive() {
    let env = Env::new();
    assert_eq!(
        env.ok(&["dmarc", "report"], ""),
        "no DMARC reports received\n"
    );
    assert_eq!(
        env.ok(&["dmarc", "report", "example.org"], ""),
        "no DMARC reports received\n"
    );
}

#[test]
fn key_rotation_keeps_old_mail_readable_and_new_mail_uses_the_new_key() {
    let env = Env::new();
    env.with_alice();
    env.ok(
        &["deliver", "alice@example.org"],
        "Subject: before\r\n\r\nbefore\r\n",
    );
    let first_export = env.ok(&["user", "key", "export", "alice@example.org"], "");
    assert!(
        first_export.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
        "{first_export}"
    );
    let (_, error) = env.fails(
        &["user", "key", "rotate", "alice@example.org"],
        "wrong password\n",
    );
    assert!(error.contains("wrong password"), "{error}");
    let rotated = env.ok(
        &["user", "key", "rotate", "alice@example.org"],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        rotated.contains("new OpenPGP key for alice@example.org"),
        "{rotated}"
    );
    env.ok(
        &["deliver", "alice@example.org"],
        "Subject: after\r\n\r\nafter\r\n",
    );
    let listed = env.ok(&["user", "key", "list", "alice@example.org"], "");
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed
            .lines()
            .last()
            .is_some_and(|line| line.ends_with("current")),
        "{listed}"
    );
    assert_ne!(
        env.ok(&["user", "key", "export", "alice@example.org"], ""),
        first_export
    );

    // A key the user brings, locked with the account password.
    let brought = letterlock_crypto::openpgp::UserKey::generate("alice@example.org").expect("key");
    let key_file = env.root.path().join("brought.asc");
    std::fs::write(
        &key_file,
        brought
            .export_locked_armored(PASSWORD.as_bytes())
            .expect("armor"),
    )
    .expect("write");
    let imported = env.ok(
        &[
            "user",
            "key",
            "import",
            "alice@example.org",
            "--file",
            key_file.to_str().expect("utf-8"),
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(imported.contains(&brought.fingerprint()), "{imported}");
    env.ok(
        &["deliver", "alice@example.org"],
        "Subject: third\r\n\r\nthird\r\n",
    );

    let session = env
        .store()
        .unlock(&alice(), &Secret::from(PASSWORD))
        .expect("unlock");
    let inbox = MailboxName::inbox();
    assert_eq!(
        session.fetch(&inbox, 1).expect("before the rotation"),
        b"Subject: before\r\n\r\nbefore\r\n"
    );
    assert_eq!(
        session.fetch(&inbox, 2).expect("after the rotation"),
        b"Subject: after\r\n\r\nafter\r\n"
    );
    assert_eq!(
        session.fetch(&inbox, 3).expect("after the import"),
        b"Subject: third\r\n\r\nthird\r\n"
    );
    // Each message is encrypted to the key that was current when it arrived.
    let third = session.fetch_encrypted(&inbox, 3).expect("ciphertext");
    assert!(
        brought.decrypt(&third, 1024).is_ok(),
        "new mail is encrypted to the imported key"
    );
    let first = session.fetch_encrypted(&inbox, 1).expect("ciphertext");
    assert!(brought.decrypt(&first, 1024).is_err());
}
