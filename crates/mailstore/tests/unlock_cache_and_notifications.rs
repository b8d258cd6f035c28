//! The unlock cache (DESIGN.md point 8) and change notifications, on the embedded engine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use letterlock_crypto::kdf::KdfParams;
use letterlock_mailstore::{MailStore, PasswordAuthority, StoreError, StoreOptions};
use letterlock_storage::embedded::EmbeddedEngine;
use letterlock_types::{Domain, EmailAddress, MailboxName, Secret};

const PASSWORD: &str = "correct horse battery";

fn address(text: &str) -> EmailAddress {
    EmailAddress::try_from(text).expect("address")
}

fn setup(kdf: KdfParams) -> (tempfile::TempDir, MailStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = EmbeddedEngine::open(dir.path()).expect("engine");
    let store = MailStore::new(
        Arc::new(engine),
        StoreOptions {
            kdf,
            message_size_max_bytes: 1024 * 1024,
        },
    );
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
    (dir, store)
}

#[test]
fn a_second_login_with_the_same_password_skips_argon2() {
    let (_dir, store) = setup(KdfParams::DEFAULT);
    let alice = address("alice@example.org");
    let before = store.unlock_cache_stats();
    let started = Instant::now();
    store
        .unlock(&alice, &Secret::from(PASSWORD))
        .expect("first unlock");
    let fresh = started.elapsed();
    let after_first = store.unlock_cache_stats();
    assert_eq!(after_first.password_kdf_runs, before.password_kdf_runs + 1);

    let started = Instant::now();
    let unlocked = store
        .unlock(&alice, &Secret::from(PASSWORD))
        .expect("cached unlock");
    let cached = started.elapsed();
    let after_second = store.unlock_cache_stats();
    assert_eq!(
        after_second.password_kdf_runs, after_first.password_kdf_runs,
        "no Argon2id run"
    );
    assert_eq!(after_second.hits, after_first.hits + 1);
    assert_eq!(unlocked.address(), &alice);
    // With the real Argon2id cost the difference is an order of magnitude at least.
    assert!(cached * 5 < fresh, "fresh {fresh:?}, cached {cached:?}");

    // A wrong password is never served from the cache, and each try costs a KDF run.
    let error = store
        .unlock(&alice, &Secret::from("not the password"))
        .expect_err("wrong password");
    assert!(matches!(error, StoreError::WrongCredentials));
    assert_eq!(
        store.unlock_cache_stats().password_kdf_runs,
        after_second.password_kdf_runs + 1
    );
}

#[test]
fn a_changed_password_invalidates_the_cached_unlock() {
    let (_dir, store) = setup(KdfParams::INSECURE_FOR_TESTS);
    let alice = address("alice@example.org");
    store
        .unlock(&alice, &Secret::from(PASSWORD))
        .expect("unlock");
    store
        .unlock(&alice, &Secret::from(PASSWORD))
        .expect("cached");
    assert_eq!(store.unlock_cache_stats().hits, 1);

    let old = Secret::from(PASSWORD);
    store
        .set_password(
            &alice,
            &Secret::from("a brand new password"),
            PasswordAuthority::Current(&old),
        )
        .expect("change");
    let error = store
        .unlock(&alice, &Secret::from(PASSWORD))
        .expect_err("the old password no longer unlocks, cached or not");
    assert!(matches!(error, StoreError::WrongCredentials));
    store
        .unlock(&alice, &Secret::from("a brand new password"))
        .expect("the new one does");

    // An admin reset too.
    store
        .unlock(&alice, &Secret::from("a brand new password"))
        .expect("cached");
    store
        .set_password(
            &alice,
            &Secret::from("reset by the admin"),
            PasswordAuthority::AdminWithoutRecovery,
        )
        .expect("reset");
    assert!(store
        .unlock(&alice, &Secret::from("a brand new password"))
        .is_err());
    assert_eq!(store.unlock_cache_stats().entries, 0);

    // And logout-all.
    store
        .unlock(&alice, &Secret::from("reset by the admin"))
        .expect("unlock");
    assert_eq!(store.unlock_cache_stats().entries, 1);
    store.forget_unlocks(&alice);
    assert_eq!(store.unlock_cache_stats().entries, 0);
}

#[test]
fn subscribers_hear_of_every_committed_change_until_they_unsubscribe() {
    let (_dir, store) = setup(KdfParams::INSECURE_FOR_TESTS);
    let alice = address("alice@example.org");
    let heard = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let (heard_in, calls_in) = (Arc::clone(&heard), Arc::clone(&calls));
    let subscription = store.subscribe(&alice, move |change| {
        heard_in
            .lock()
            .expect("lock")
            .push(change.mailbox.to_string());
        calls_in.fetch_add(1, Ordering::SeqCst);
    });
    let message = b"Subject: x\r\n\r\nbody\r\n";
    store
        .deliver(std::slice::from_ref(&alice), message)
        .expect("deliver");
    let unlocked = store
        .unlock(&alice, &Secret::from(PASSWORD))
        .expect("unlock");
    let inbox = MailboxName::inbox();
    let archive = MailboxName::try_from("Archive").expect("name");
    unlocked.append(&archive, message, 0, 0).expect("append");
    unlocked.set_flags(&inbox, 1, 1, &[]).expect("flags");
    let copied = unlocked
        .copy_messages(&inbox, &[1], &archive)
        .expect("copy");
    assert_eq!(copied.uids, vec![(1, 2)]);
    let moved = unlocked
        .move_messages(&archive, &[1], &inbox)
        .expect("move");
    assert_eq!(moved.uids, vec![(1, 2)]);
    unlocked.expunge_uids(&inbox, &[1]).expect("expunge");
    assert_eq!(
        *heard.lock().expect("lock"),
        vec!["INBOX", "Archive", "INBOX", "Archive", "Archive", "INBOX", "INBOX"]
    );
    // The moved and copied messages still decrypt.
    assert_eq!(unlocked.fetch(&inbox, 2).expect("moved"), message);
    assert_eq!(unlocked.fetch(&archive, 2).expect("copied"), message);
    drop(subscription);
    let before = calls.load(Ordering::SeqCst);
    store
        .deliver(std::slice::from_ref(&alice), message)
        .expect("deliver");
    assert_eq!(calls.load(Ordering::SeqCst), before, "unsubscribed");
}
