//! The mail store on the embedded engine: accounts, keys, delivery, reading, and the promise
//! that nothing readable reaches the disk.

use std::sync::Arc;

use letterlock_crypto::kdf::KdfParams;
use letterlock_mailstore::records::flag_bits;
use letterlock_mailstore::{MailStore, PasswordAuthority, PasswordReset, StoreError, StoreOptions};
use letterlock_storage::embedded::EmbeddedEngine;
use letterlock_types::{Domain, EmailAddress, MailboxName, Secret};

const PASSWORD: &str = "correct horse battery";

fn open(dir: &std::path::Path) -> MailStore {
    let engine = EmbeddedEngine::open(dir).expect("open engine");
    MailStore::new(
        Arc::new(engine),
        StoreOptions {
            kdf: KdfParams::INSECURE_FOR_TESTS,
            message_size_max_bytes: 1024 * 1024,
        },
    )
}

fn address(text: &str) -> EmailAddress {
    EmailAddress::try_from(text).expect("address")
}

fn setup() -> (tempfile::TempDir, MailStore, Secret) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .add_domain(&Domain::try_from("example.org").expect("domain"))
        .expect("add domain");
    let created = store
        .add_user(
            &address("alice@example.org"),
            &Secret::from(PASSWORD),
            0,
            None,
        )
        .expect("add user");
    (dir, store, created.recovery_code)
}

fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Bob <bob@example.net>\r\nTo: alice@example.org\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.net>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

#[test]
fn delivered_mail_reads_back_exactly_after_unlock() {
    let (_dir, store, _) = setup();
    let original = message("hello", "the body");
    let report = store
        .deliver(&[address("alice@example.org")], &original)
        .expect("deliver");
    assert_eq!(report.delivered.len(), 1);
    let uid = report.delivered[0].2;
    let session = store
        .unlock(&address("alice@example.org"), &Secret::from(PASSWORD))
        .expect("unlock");
    let inbox = MailboxName::inbox();
    assert_eq!(session.fetch(&inbox, uid).expect("fetch"), original);
    let listing = session.list_messages(&inbox).expect("list");
    assert_eq!(listing.len(), 1);
    let index = listing[0].index.as_ref().expect("index readable");
    assert_eq!(index.envelope.subject.as_deref(), Some("hello"));
    let terms = session.search_terms(&inbox, uid).expect("terms");
    assert!(terms.terms.contains(&"body".to_string()));
    assert!(terms.terms.contains(&"hello".to_string()));
    assert_eq!(listing[0].size_bytes, original.len() as u64);
}

#[test]
fn default_mailboxes_have_special_uses() {
    let (_dir, store, _) = setup();
    let session = store
        .unlock(&address("alice@example.org"), &Secret::from(PASSWORD))
        .expect("unlock");
    let names: Vec<String> = session
        .mailboxes()
        .expect("mailboxes")
        .into_iter()
        .map(|mailbox| match mailbox.special_use {
            Some(special) => format!("{} {}", mailbox.name, special.attribute()),
            None => mailbox.name.to_string(),
        })
        .collect();
    for expected in [
        "INBOX",
        "Sent \\Sent",
        "Drafts \\Drafts",
        "Junk \\Junk",
        "Trash \\Trash",
        "Archive \\Archive",
    ] {
        assert!(
            names.contains(&expected.to_string()),
            "{expected} missing from {names:?}"
        );
    }
}

#[test]
fn wrong_password_cannot_unlock_and_app_password_can() {
    let (_dir, store, _) = setup();
    let alice = address("alice@example.org");
    assert!(matches!(
        store.unlock(&alice, &Secret::from("wrong password")),
        Err(StoreError::WrongCredentials)
    ));
    assert!(matches!(
        store.add_app_password(&alice, &Secret::from("wrong password"), "phone"),
        Err(StoreError::WrongCredentials)
    ));
    let app = store
        .add_app_password(&alice, &Secret::from(PASSWORD), "phone")
        .expect("app password");
    store
        .deliver(std::slice::from_ref(&alice), &message("m1", "x"))
        .expect("deliver");
    let session = store.unlock(&alice, &app).expect("app password unlocks");
    assert_eq!(
        session
            .list_messages(&MailboxName::inbox())
            .expect("list")
            .len(),
        1
    );
    assert!(matches!(
        store.add_app_password(&alice, &Secret::from(PASSWORD), "phone"),
        Err(StoreError::AppPasswordExists(_))
    ));
    store.remove_app_password(&alice, "phone").expect("remove");
    assert!(matches!(
        store.unlock(&alice, &app),
        Err(StoreError::WrongCredentials)
    ));
    assert!(matches!(
        store.remove_app_password(&alice, "phone"),
        Err(StoreError::NoSuchAppPassword(_))
    ));
}

#[test]
fn recovery_code_keeps_old_mail_readable_after_a_reset() {
    let (_dir, store, recovery_code) = setup();
    let alice = address("alice@example.org");
    let original = message("before-reset", "old mail");
    store
        .deliver(std::slice::from_ref(&alice), &original)
        .expect("deliver");
    let new_password = Secret::from("a brand new password");
    assert!(matches!(
        store.set_password(
            &alice,
            &new_password,
            PasswordAuthority::RecoveryCode(&Secret::from("AAAAA-AAAAA-AAAAA-AAAAA-AAAAA"))
        ),
        Err(StoreError::WrongRecoveryCode)
    ));
    let reset = store
        .set_password(
            &alice,
            &new_password,
            PasswordAuthority::RecoveryCode(&recovery_code),
        )
        .expect("reset with recovery code");
    assert!(matches!(reset, PasswordReset::KeptKeys));
    assert!(
        store.unlock(&alice, &Secret::from(PASSWORD)).is_err(),
        "old password still works"
    );
    let session = store.unlock(&alice, &new_password).expect("unlock");
    assert_eq!(
        session.fetch(&MailboxName::inbox(), 1).expect("old mail"),
        original
    );
    // The recovery code itself unlocks too.
    store
        .unlock_with_recovery_code(&alice, &recovery_code)
        .expect("recovery code unlocks");
}

#[test]
fn admin_reset_without_recovery_code_cannot_read_old_mail() {
    let (_dir, store, old_recovery_code) = setup();
    let alice = address("alice@example.org");
    store
        .deliver(std::slice::from_ref(&alice), &message("old", "old mail"))
        .expect("deliver");
    // State sealed under the old account key: a merged search index and a trusted contact.
    {
        let before = store
            .unlock(&alice, &Secret::from(PASSWORD))
            .expect("unlock");
        assert_eq!(
            before
                .search_index(&MailboxName::inbox())
                .expect("index")
                .uids_with("old")
                .len(),
            1
        );
        let carol = letterlock_crypto::openpgp::UserKey::generate("carol@remote.test")
            .expect("key")
            .public_key()
            .to_bytes()
            .expect("bytes");
        before
            .trust_key(&address("carol@remote.test"), &carol)
            .expect("trust");
    }
    // A session that outlives the reset still holds the old account key.
    let stale = store
        .unlock(&alice, &Secret::from(PASSWORD))
        .expect("unlock");
    let new_password = Secret::from("another new password");
    let reset = store
        .set_password(
            &alice,
            &new_password,
            PasswordAuthority::AdminWithoutRecovery,
        )
        .expect("admin reset");
    let PasswordReset::NewKeys {
        unreadable_messages,
        ..
    } = reset
    else {
        panic!("an admin reset must issue new keys");
    };
    assert_eq!(unreadable_messages, 1);
    // What the stale session writes now is sealed under the old account key (an index of the
    // mail it can still read, a contact): it must not get in the way of the new key.
    assert_eq!(
        stale
            .search_index(&MailboxName::inbox())
            .expect("the stale session merges")
            .uids_with("old")
            .len(),
        1
    );
    stale
        .trust_key(
            &address("dan@remote.test"),
            &letterlock_crypto::openpgp::UserKey::generate("dan@remote.test")
                .expect("key")
                .public_key()
                .to_bytes()
                .expect("bytes"),
        )
        .expect("the stale session trusts a key");
    drop(stale);
    let session = store.unlock(&alice, &new_password).expect("unlock");
    assert!(matches!(
        session.fetch(&MailboxName::inbox(), 1),
        Err(StoreError::KeyLost(_))
    ));
    // Neither the old password nor the old recovery code opens the new account key.
    assert!(store.unlock(&alice, &Secret::from(PASSWORD)).is_err());
    assert!(store
        .unlock_with_recovery_code(&alice, &old_recovery_code)
        .is_err());
    // New mail is readable; the old message is listed without its envelope.
    let fresh = message("new", "new mail");
    store
        .deliver(std::slice::from_ref(&alice), &fresh)
        .expect("deliver");
    assert_eq!(
        session.fetch(&MailboxName::inbox(), 2).expect("new mail"),
        fresh
    );
    let listing = session.list_messages(&MailboxName::inbox()).expect("list");
    assert!(listing[0].index.is_none());
    assert!(listing[1].index.is_some());
    // What was sealed under the old account key is gone, not in the way: search works on the
    // mail that can be read, and the trusted contacts start empty.
    let index = session
        .search_index(&MailboxName::inbox())
        .expect("search after a reset");
    assert!(index.uids_with("old").is_empty());
    assert_eq!(index.uids_with("new").into_iter().collect::<Vec<_>>(), [2]);
    assert!(session
        .trusted_keys()
        .expect("contacts after a reset")
        .is_empty());
}

#[test]
fn first_listing_promotes_session_keys_and_later_ones_reuse_them() {
    let (_dir, store, _) = setup();
    let alice = address("alice@example.org");
    for n in 0..5 {
        store
            .deliver(
                std::slice::from_ref(&alice),
                &message(&format!("m{n}"), "x"),
            )
            .expect("deliver");
    }
    let session = store
        .unlock(&alice, &Secret::from(PASSWORD))
        .expect("unlock");
    assert_eq!(session.promoted_key_count().expect("count"), 0);
    session.list_messages(&MailboxName::inbox()).expect("list");
    assert_eq!(session.promoted_key_count().expect("count"), 5);
    // A later session uses the promoted keys: prove it by listing with no secret keys' help —
    // the listing must still work and nothing new is promoted.
    let again = store
        .unlock(&alice, &Secret::from(PASSWORD))
        .expect("unlock");
    assert_eq!(
        again
            .list_messages(&MailboxName::inbox())
            .expect("list")
            .len(),
        5
    );
    assert_eq!(again.promoted_key_count().expect("count"), 5);
}

#[test]
fn aliases_and_catch_all_route_to_accounts() {
    let (_dir, store, _) = setup();
    let alice = address("alice@example.org");
    store
        .add_alias("postmaster@example.org", std::slice::from_ref(&alice))
        .expect("alias");
    assert!(matches!(
        store.deliver(&[address("nobody@example.org")], &message("x", "y")),
        Err(StoreError::UnknownRecipient(_))
    ));
    store
        .add_alias("@example.org", std::slice::from_ref(&alice))
        .expect("catch-all");
    let report = store
        .deliver(
            &[
                address("postmaster@example.org"),
                address("nobody@example.org"),
            ],
            &message("x", "y"),
        )
        .expect("deliver");
    // Two recipients, one account: one copy.
    assert_eq!(report.delivered.len(), 2);
    assert_eq!(report.delivered[0].2, report.delivered[1].2);
    assert!(matches!(
        store.add_alias("ghost@example.org", &[address("nobody@example.org")]),
        Err(StoreError::NoSuchUser(_))
    ));
    assert!(matches!(
        store.add_alias("alice@example.org", std::slice::from_ref(&alice)),
        Err(StoreError::AddressTaken(_))
    ));
    assert!(matches!(
        store.add_alias("x@unknown.example", std::slice::from_ref(&alice)),
        Err(StoreError::NoSuchDomain(_))
    ));
    store.remove_alias("@example.org").expect("remove");
    assert!(matches!(
        store.remove_alias("@example.org"),
        Err(StoreError::NoSuchAlias(_))
    ));
}

#[test]
fn quota_refuses_with_a_temporary_error_and_writes_nothing() {
    let (_dir, store, _) = setup();
    let alice = address("alice@example.org");
    store.set_quota(&alice, 300).expect("quota");
    store
        .deliver(std::slice::from_ref(&alice), &message("a", "small"))
        .expect("fits");
    let error = store
        .deliver(
            std::slice::from_ref(&alice),
            &message("b", &"x".repeat(400)),
        )
        .expect_err("over quota");
    assert!(matches!(error, StoreError::OverQuota { .. }));
    assert!(error.is_temporary());
    let session = store
        .unlock(&alice, &Secret::from(PASSWORD))
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
fn oversized_messages_and_unknown_domains_are_refused() {
    let (_dir, store, _) = setup();
    let alice = address("alice@example.org");
    assert!(matches!(
        store.deliver(&[alice], &vec![b'x'; 2 * 1024 * 1024]),
        Err(StoreError::MessageTooLarge { .. })
    ));
    assert!(matches!(
        store.add_user(
            &address("x@nowhere.example"),
            &Secret::from(PASSWORD),
            0,
            None
        ),
        Err(StoreError::NoSuchDomain(_))
    ));
    assert!(matches!(
        store.add_user(
            &address("alice@example.org"),
            &Secret::from(PASSWORD),
            0,
            None
        ),
        Err(StoreError::AddressTaken(_))
    ));
    assert!(matches!(
        store.add_user(&address("bob@example.org"), &Secret::from("short"), 0, None),
        Err(StoreError::WeakPassword(_))
    ));
}

#[test]
fn flags_append_expunge_and_mailboxes() {
    let (_dir, store, _) = setup();
    let alice = address("alice@example.org");
    let session = store
        .unlock(&alice, &Secret::from(PASSWORD))
        .expect("unlock");
    let work = MailboxName::try_from("Work/2026").expect("name");
    session.create_mailbox(&work).expect("create");
    assert!(matches!(
        session.create_mailbox(&work),
        Err(StoreError::MailboxExists(_))
    ));
    let first = session
        .append(&work, &message("one", "1"), flag_bits::SEEN, 1_700_000_000)
        .expect("append");
    let second = session
        .append(&work, &message("two", "2"), 0, 1_700_000_001)
        .expect("append");
    assert_eq!((first, second), (1, 2));
    let before = session
        .mailboxes()
        .expect("list")
        .into_iter()
        .find(|m| m.name == work)
        .expect("work");
    let modseq = session
        .set_flags(
            &work,
            second,
            flag_bits::DELETED,
            &["$Important".to_string()],
        )
        .expect("flags");
    assert!(modseq > before.highest_modseq);
    assert_eq!(session.expunge(&work).expect("expunge"), vec![second]);
    let third = session
        .append(&work, &message("three", "3"), flag_bits::DELETED, 0)
        .expect("append");
    // Removing by UID leaves other \Deleted messages alone.
    assert_eq!(
        session
            .expunge_uids(&work, &[first, 99])
            .expect("expunge uids"),
        vec![first]
    );
    assert_eq!(session.list_messages(&work).expect("list").len(), 1);
    assert_eq!(session.expunge(&work).expect("expunge"), vec![third]);
    let first = session
        .append(&work, &message("one", "1"), flag_bits::SEEN, 1_700_000_000)
        .expect("append");
    let listing = session.list_messages(&work).expect("list");
    assert_eq!(listing.len(), 1);
    assert_eq!(listing[0].flags, flag_bits::SEEN);
    assert_eq!(listing[0].internal_date_unix, 1_700_000_000);
    assert_eq!(listing[0].uid, first);
    assert!(matches!(
        session.fetch(&work, second),
        Err(StoreError::NoSuchMessage { .. })
    ));
    assert!(matches!(
        session.delete_mailbox(&MailboxName::inbox()),
        Err(StoreError::MailboxProtected(..))
    ));
    session.delete_mailbox(&work).expect("delete");
    assert!(matches!(
        session.list_messages(&work),
        Err(StoreError::NoSuchMailbox(_))
    ));
}

#[test]
fn domains_cannot_be_removed_while_in_use() {
    let (_dir, store, _) = setup();
    let domain = Domain::try_from("example.org").expect("domain");
    assert!(matches!(
        store.add_domain(&domain),
        Err(StoreError::DomainExists(_))
    ));
    assert!(matches!(
        store.remove_domain(&domain),
        Err(StoreError::DomainInUse { users: 1, .. })
    ));
    store
        .remove_user(&address("alice@example.org"))
        .expect("remove user");
    store.remove_domain(&domain).expect("remove domain");
    assert!(store.list_domains().expect("list").is_empty());
}

#[test]
fn nothing_readable_reaches_the_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let canaries = [
        "CANARYSUBJECT7f3a",
        "canary-sender-91b2@example.net",
        "CANARYBODY55e0c",
    ];
    {
        let store = open(dir.path());
        store
            .add_domain(&Domain::try_from("example.org").expect("domain"))
            .expect("domain");
        store
            .add_user(
                &address("alice@example.org"),
                &Secret::from(PASSWORD),
                0,
                None,
            )
            .expect("user");
        let alice = address("alice@example.org");
        let mail = format!(
            "From: Canary <{}>\r\nSubject: {}\r\n\r\n{}\r\n",
            canaries[1], canaries[0], canaries[2]
        );
        store
            .deliver(std::slice::from_ref(&alice), mail.as_bytes())
            .expect("deliver");
        let session = store
            .unlock(&alice, &Secret::from(PASSWORD))
            .expect("unlock");
        // Reading, listing and the merged search index must not leave plaintext behind either.
        session.list_messages(&MailboxName::inbox()).expect("list");
        let index = session
            .search_index(&MailboxName::inbox())
            .expect("search index");
        assert_eq!(
            index.uids_with("canarybody55e0c").len(),
            1,
            "the canary is searchable"
        );
        session
            .append(
                &MailboxName::try_from("Sent").expect("name"),
                mail.as_bytes(),
                0,
                0,
            )
            .expect("append");
    }
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).expect("read");
        for canary in canaries {
            assert!(
                !bytes
                    .windows(canary.len())
                    .any(|window| window == canary.as_bytes()),
                "{canary} found in {}",
                entry.display()
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_batch_commits_once_and_fails_messages_one_by_one() {
    let (_dir, store, _) = setup();
    let alice = address("alice@example.org");
    let nobody = address("nobody@example.org");
    let good = message("good", "1");
    let also_good = message("also-good", "2");
    let to_alice = [alice.clone()];
    let to_nobody = [nobody];
    let results = store.deliver_many(&[
        (&to_alice, &good),
        (&to_nobody, &good),
        (&to_alice, &also_good),
    ]);
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(StoreError::UnknownRecipient(_))));
    let uids: Vec<u32> = [&results[0], &results[2]]
        .iter()
        .map(|result| result.as_ref().expect("delivered").delivered[0].2)
        .collect();
    assert_eq!(uids, vec![1, 2]);
    let session = store
        .unlock(&alice, &Secret::from(PASSWORD))
        .expect("unlock");
    assert_eq!(
        session.fetch(&MailboxName::inbox(), 2).expect("fetch"),
        also_good
    );
}

#[test]
fn sessions_can_move_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<letterlock_mailstore::Unlocked>();
    assert_send_sync::<MailStore>();
}

#[test]
fn an_unknown_account_costs_a_kdf_run_like_a_wrong_password() {
    let (_dir, store, _) = setup();
    let before = store.unlock_cache_stats().password_kdf_runs;
    assert!(matches!(
        store.unlock(&address("nobody@example.org"), &Secret::from(PASSWORD)),
        Err(StoreError::NoSuchUser(_))
    ));
    assert_eq!(store.unlock_cache_stats().password_kdf_runs, before + 1);
    assert!(store
        .unlock(&address("alice@example.org"), &Secret::from("wrong one"))
        .is_err());
    assert_eq!(store.unlock_cache_stats().password_kdf_runs, before + 2);
}

#[test]
fn the_merged_search_index_grows_with_new_mail_and_survives_sessions() {
    let (_dir, store, _) = setup();
    let alice = address("alice@example.org");
    store
        .deliver(
            std::slice::from_ref(&alice),
            &message("first", "zebra crossing"),
        )
        .expect("deliver");
    let session = store
        .unlock(&alice, &Secret::from(PASSWORD))
        .expect("unlock");
    let inbox = MailboxName::inbox();
    let index = session.search_index(&inbox).expect("index");
    assert_eq!(
        index.uids_with("zebra").into_iter().collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(index.uids_with("ebr").len(), 1, "substrings of terms match");
    assert!(index.uids_with("giraffe").is_empty());
    // New mail while the session is open is merged on the next search.
    store
        .deliver(
            std::slice::from_ref(&alice),
            &message("second", "giraffe and zebra"),
        )
        .expect("deliver");
    let index = session.search_index(&inbox).expect("index");
    let mut zebra: Vec<u32> = index.uids_with("zebra").into_iter().collect();
    zebra.sort_unstable();
    assert_eq!(zebra, vec![1, 2]);
    drop(session);
    // A new session starts from the stored (sealed) index and sees the same.
    let again = store
        .unlock(&alice, &Secret::from(PASSWORD))
        .expect("unlock");
    assert_eq!(
        again
            .search_index(&inbox)
            .expect("index")
            .uids_with("giraffe")
            .len(),
        1
    );
}

/// Mail passing through a mailbox does not grow its index forever: once the index has taken
/// in as many messages as the mailbox held at the last compaction (at least
/// `COMPACT_AFTER_MESSAGES_MIN`), the UIDs of expunged messages leave the postings.
#[test]
fn the_search_index_drops_expunged_messages_as_mail_passes_through() {
    let (_dir, store, _) = setup();
    let alice = address("alice@example.org");
    let inbox = MailboxName::inbox();
    let batch = letterlock_mailstore::COMPACT_AFTER_MESSAGES_MIN;
    let deliver = |count: u32, word: &str| {
        let messages: Vec<Vec<u8>> = (0..count)
            .map(|n| message(&format!("note {n}"), &format!("{word} commonword")))
            .collect();
        let recipients = std::slice::from_ref(&alice);
        let batch: Vec<(&[EmailAddress], &[u8])> = messages
            .iter()
            .map(|message| (recipients, message.as_slice()))
            .collect();
        for result in store.deliver_many(&batch) {
            result.expect("deliver");
        }
    };
    deliver(batch, "firstwave");
    let session = store
        .unlock(&alice, &Secret::from(PASSWORD))
        .expect("unlock");
    assert_eq!(
        session.search_index(&inbox).expect("index").indexed_uids(),
        batch as usize
    );
    // Nine in ten of the first wave go; a second wave as large as the mailbox was comes in.
    let gone: Vec<u32> = (1..=batch).filter(|uid| uid % 10 != 0).collect();
    assert_eq!(
        session.expunge_uids(&inbox, &gone).expect("expunge").len(),
        gone.len()
    );
    deliver(batch, "secondwave");
    let index = session.search_index(&inbox).expect("index");
    let kept = (batch / 10 + batch) as usize;
    assert_eq!(index.indexed_uids(), kept, "expunged UIDs were dropped");
    assert_eq!(index.uids_with("commonword").len(), kept);
    assert_eq!(index.uids_with("firstwave").len(), (batch / 10) as usize);
    assert!(index.uids_with("firstwave").iter().all(|uid| uid % 10 == 0));
    drop(session);
    // The stored index is the compacted one.
    let again = store
        .unlock(&alice, &Secret::from(PASSWORD))
        .expect("unlock");
    assert_eq!(
        again.search_index(&inbox).expect("index").indexed_uids(),
        kept
    );
}

/// The account's own trusted keys: kept per account, readable only unlocked, sealed on disk
/// (neither the address nor the key in the clear), refused when they name someone else.
#[test]
fn trusted_contact_keys_are_sealed_per_account() {
    let (dir, store, _) = setup();
    let alice = store
        .unlock(&address("alice@example.org"), &Secret::from(PASSWORD))
        .expect("unlock");
    let contact = address("zelda-contact-7e1@remote.test");
    let key = letterlock_crypto::openpgp::UserKey::generate("zelda-contact-7e1@remote.test")
        .expect("key")
        .public_key();
    let fingerprint = alice
        .trust_key(&contact, &key.to_armored().expect("armoured").into_bytes())
        .expect("trusted");
    assert_eq!(fingerprint, key.fingerprint());
    assert_eq!(
        alice.trusted_key(&contact).expect("read"),
        Some(key.to_bytes().expect("bytes"))
    );
    let listed = alice.trusted_keys().expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].address, contact);
    assert!(matches!(
        alice.trust_key(
            &address("someone@else.test"),
            &key.to_bytes().expect("bytes")
        ),
        Err(StoreError::InvalidKey(_))
    ));
    assert!(matches!(
        alice.trust_key(&contact, b"not a key"),
        Err(StoreError::InvalidKey(_))
    ));
    drop(alice);
    drop(store);
    for file in walk(dir.path()) {
        let bytes = std::fs::read(&file).expect("read");
        assert!(
            !bytes
                .windows(b"zelda-contact-7e1".len())
                .any(|window| window == b"zelda-contact-7e1"),
            "the contact's address in the clear in {}",
            file.display()
        );
    }
    let store = open(dir.path());
    let alice = store
        .unlock(&address("alice@example.org"), &Secret::from(PASSWORD))
        .expect("unlock");
    assert!(
        alice.trusted_key(&contact).expect("read").is_some(),
        "durable"
    );
    assert!(alice.distrust_key(&contact).expect("remove"));
    assert!(!alice.distrust_key(&contact).expect("remove again"));
    assert_eq!(alice.trusted_key(&contact).expect("read"), None);
}

/// RFC 5321 section 4.5.1: postmaster@ a local domain is always deliverable: to an account or
/// alias of that name when there is one, otherwise to the domain's oldest account.
#[test]
fn postmaster_reaches_the_oldest_account_unless_it_has_its_own_address() {
    let (_dir, store, _) = setup();
    store
        .add_user(
            &address("bob@example.org"),
            &Secret::from(PASSWORD),
            0,
            None,
        )
        .expect("bob");
    assert_eq!(
        store
            .resolve_recipient(&address("PostMaster@example.org"))
            .expect("postmaster"),
        vec![address("alice@example.org")]
    );
    store
        .add_alias("postmaster@example.org", &[address("bob@example.org")])
        .expect("alias");
    assert_eq!(
        store
            .resolve_recipient(&address("postmaster@example.org"))
            .expect("postmaster"),
        vec![address("bob@example.org")]
    );
    store
        .add_domain(&Domain::try_from("empty.example").expect("domain"))
        .expect("domain");
    assert!(matches!(
        store.resolve_recipient(&address("postmaster@empty.example")),
        Err(StoreError::UnknownRecipient(_))
    ));
}
