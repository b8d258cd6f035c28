//! The queue on the embedded engine, and the runner against scripted SMTP receivers on
//! 127.0.0.1 reached through the map resolver: sealing (canary scan), restart, concurrent
//! claims, the operator's functions, retry with backoff, bounces, REQUIRETLS, null MX.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use common::*;
use letterlock_queue::store::{now_unix, Finish};
use letterlock_queue::{
    DsnRequest, MapResolver, Notify, Queue, QueueError, QueueId, QueueSettings, RecipientRequest,
    RecipientState, SpoolKey,
};

#[test]
fn queued_mail_is_sealed_on_disk() {
    let setup = setup();
    let recipient = "canary-recipient-4d1e@remote.test";
    setup
        .queue
        .enqueue(
            Some(address(ALICE)),
            &[address(recipient)],
            false,
            &message("sealed"),
        )
        .expect("enqueue");
    drop(setup.queue);
    drop(setup.store);
    drop(setup.engine);
    let files = files_under(setup.dir.path());
    assert!(!files.is_empty());
    for file in files {
        let bytes = std::fs::read(&file).expect("read");
        for needle in [CANARY, recipient, "Subject: sealed"] {
            assert!(
                !bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes()),
                "{needle} in plaintext in {}",
                file.display()
            );
        }
    }
}

#[test]
fn the_queue_survives_reopening_the_engine_and_needs_its_key() {
    let setup = setup();
    let id = setup
        .queue
        .enqueue(
            Some(address(ALICE)),
            &[address("carol@remote.test")],
            true,
            &message("restart"),
        )
        .expect("enqueue");
    let Setup {
        dir,
        engine,
        store,
        queue,
        key,
    } = setup;
    drop((queue, store, engine));
    let reopened = open(dir, key);
    let entries = reopened.queue.list().expect("list");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].id, id);
    assert!(entries[0].envelope.requiretls);
    let claimed = reopened.queue.claim(now_unix(), 60, 10).expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].message, message("restart"));
    let wrong_key = Queue::new(
        Arc::clone(&reopened.engine),
        &SpoolKey::generate(),
        QueueSettings::default(),
    );
    assert!(matches!(wrong_key.list(), Err(QueueError::Corrupted(_))));
}

/// Several copies of one submission are queued in one commit: all of them, or, when one is
/// refused, none.
#[test]
fn several_copies_are_queued_together_or_not_at_all() {
    use letterlock_queue::store::Submission;
    let setup = setup();
    let carol = [RecipientRequest::from(address("carol@remote.test"))];
    let dan = [RecipientRequest::from(address("dan@remote.test"))];
    let (one, two) = (message("one"), message("two"));
    let submission = |recipients, message| Submission {
        sender: Some(address(ALICE)),
        recipients,
        requiretls: false,
        dsn: DsnRequest::default(),
        message,
    };
    let ids = setup
        .queue
        .enqueue_many(&[submission(&carol, &one), submission(&dan, &two)])
        .expect("both queued");
    assert_eq!(ids.len(), 2);
    assert_eq!(setup.queue.list().expect("list").len(), 2);
    // The second copy has no recipient: refused, and the first is not queued either.
    let refused = setup
        .queue
        .enqueue_many(&[submission(&carol, &one), submission(&[], &two)]);
    assert!(
        matches!(refused, Err(QueueError::NoRecipients)),
        "{refused:?}"
    );
    assert_eq!(setup.queue.list().expect("list").len(), 2);
}

#[test]
fn concurrent_claims_never_hand_out_one_entry_twice() {
    let setup = setup();
    let count = 60;
    for index in 0..count {
        enqueue_for_carol(&setup, &format!("claim-{index}"));
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let now = now_unix();
    let runners: Vec<_> = (0..2)
        .map(|_| {
            let queue = setup.queue.clone();
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || loop {
                let claimed = queue.claim(now, 600, 3).expect("claim");
                if claimed.is_empty() {
                    return;
                }
                let mut seen = seen.lock().expect("lock");
                seen.extend(claimed.iter().map(|entry| entry.id));
            })
        })
        .collect();
    for runner in runners {
        runner.join().expect("runner");
    }
    let seen = seen.lock().expect("lock");
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(seen.len(), count, "every entry claimed exactly once");
    assert_eq!(unique.len(), count);
    // Every entry is leased now: nothing more to claim until the leases run out.
    assert!(setup.queue.claim(now, 600, 100).expect("claim").is_empty());
    assert_eq!(
        setup.queue.claim(now + 601, 600, 100).expect("claim").len(),
        count
    );
}

#[test]
fn operator_list_show_retry_delete() {
    let setup = setup();
    let queue = &setup.queue;
    let first = queue
        .enqueue(
            Some(address(ALICE)),
            &[address("carol@remote.test"), address("dave@other.test")],
            false,
            &message("operator"),
        )
        .expect("enqueue");
    let second = queue
        .enqueue(
            None,
            &[address("erin@remote.test")],
            false,
            &message("bounce"),
        )
        .expect("enqueue");
    let listed = queue.list().expect("list");
    assert_eq!(
        listed.iter().map(|entry| entry.id).collect::<Vec<_>>(),
        vec![first, second]
    );
    let shown = queue.show(first).expect("show");
    assert_eq!(shown.envelope.sender, Some(address(ALICE)));
    assert_eq!(shown.envelope.recipients.len(), 2);
    assert_eq!(
        shown.envelope.pending_by_domain().len(),
        2,
        "grouped by domain"
    );
    assert_eq!(shown.size_bytes, message("operator").len() as u64);
    assert_eq!(shown.expires_unix - shown.created_unix, 5 * 24 * 3600);
    assert!(!shown.in_delivery);

    queue.delete(second).expect("delete");
    assert!(matches!(
        queue.show(second),
        Err(QueueError::NoSuchEntry(_))
    ));
    assert!(matches!(
        queue.delete(second),
        Err(QueueError::NoSuchEntry(_))
    ));
    assert_eq!(queue.list().expect("list").len(), 1);

    let now = now_unix();
    let claimed = queue.claim(now, 600, 1).expect("claim");
    assert_eq!(claimed[0].id, first);
    assert!(queue.show(first).expect("show").in_delivery);
    assert!(matches!(queue.retry_now(first), Err(QueueError::Busy(_))));
    assert!(matches!(queue.delete(first), Err(QueueError::Busy(_))));
    let mut envelope = claimed[0].envelope.clone();
    envelope.set_state(
        &address("carol@remote.test"),
        RecipientState::Delivered,
        "250 ok",
    );
    queue
        .finish(&claimed[0], &envelope, Finish::RetryAt(now + 3600))
        .expect("finish");
    let shown = queue.show(first).expect("show");
    assert_eq!(shown.attempts, 1);
    assert_eq!(shown.next_attempt_unix, now + 3600);
    assert_eq!(
        shown.envelope.recipients[0].state,
        RecipientState::Delivered
    );
    assert!(queue
        .claim(now, 600, 10)
        .expect("claim")
        .iter()
        .all(|c| c.id != first));

    queue.retry_now(first).expect("retry");
    assert!(queue.show(first).expect("show").next_attempt_unix <= now_unix());
    let claimed = queue.claim(now_unix(), 600, 10).expect("claim");
    assert_eq!(
        claimed.iter().map(|entry| entry.id).collect::<Vec<_>>(),
        vec![first]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_failure_is_retried_with_backoff_then_delivered() {
    let setup = setup();
    let receiver = FakeReceiver::start(None, |connection, _| {
        if connection == 1 {
            "451 4.3.0 try again later".into()
        } else {
            "250 2.1.5 ok".into()
        }
    })
    .await;
    let runner = runner(&setup, receiver.address.port(), resolver_to_localhost());
    let id = enqueue_for_carol(&setup, "retry");
    let now = now_unix();
    let round = runner.run_once_at(now).await.expect("round");
    assert_eq!((round.claimed, round.retried), (1, 1));
    let shown = setup.queue.show(id).expect("still queued");
    assert_eq!(shown.attempts, 1);
    assert_eq!(
        shown.next_attempt_unix,
        now + 60,
        "first retry after a minute"
    );
    assert_eq!(
        shown.envelope.recipients[0].last_reply.as_deref(),
        Some("451 4.3.0 try again later")
    );
    // Not due yet: nothing happens.
    assert_eq!(
        runner.run_once_at(now + 30).await.expect("round").claimed,
        0
    );
    let round = runner.run_once_at(now + 61).await.expect("round");
    assert_eq!((round.claimed, round.finished), (1, 1));
    assert!(setup.queue.list().expect("list").is_empty());
    let messages = receiver.messages.lock().expect("lock").clone();
    assert_eq!(messages.len(), 1);
    // Dot-stuffing undone by the receiver's view: the line starts with two dots on the wire.
    assert!(String::from_utf8_lossy(&messages[0]).contains("\r\n..leading dot line"));
    assert!(inbox(&setup.store, ALICE).is_empty(), "no bounce");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_bounces_a_dsn_into_the_senders_inbox() {
    let setup = setup();
    let receiver = FakeReceiver::start(None, |_, rcpt| {
        if rcpt.starts_with("nobody") {
            "550 5.1.1 no such user".into()
        } else {
            "250 2.1.5 ok".into()
        }
    })
    .await;
    let runner = runner(&setup, receiver.address.port(), resolver_to_localhost());
    setup
        .queue
        .enqueue(
            Some(address(ALICE)),
            &[address("nobody@remote.test"), address("carol@remote.test")],
            false,
            &message("bounce-me"),
        )
        .expect("enqueue");
    let round = runner.run_once_at(now_unix()).await.expect("round");
    assert_eq!(round.finished, 1);
    assert_eq!(
        receiver.messages.lock().expect("lock").len(),
        1,
        "carol got it"
    );
    let inbox = inbox(&setup.store, ALICE);
    assert_eq!(inbox.len(), 1, "one DSN");
    let dsn = String::from_utf8_lossy(&inbox[0]);
    assert!(dsn.contains("multipart/report"), "{dsn}");
    assert!(
        dsn.contains("Final-Recipient: rfc822; nobody@remote.test"),
        "{dsn}"
    );
    assert!(dsn.contains("Status: 5.1.1"), "{dsn}");
    assert!(
        dsn.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user"),
        "{dsn}"
    );
    assert!(!dsn.contains("carol@remote.test>:"), "{dsn}");
    assert!(
        dsn.contains("Subject: bounce-me"),
        "original headers: {dsn}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requiretls_to_a_receiver_without_starttls_is_not_delivered_and_bounces() {
    let setup = setup();
    let receiver = FakeReceiver::start(None, |_, _| "250 2.1.5 ok".into()).await;
    let runner = runner(&setup, receiver.address.port(), resolver_to_localhost());
    setup
        .queue
        .enqueue(
            Some(address(ALICE)),
            &[address("carol@remote.test")],
            true,
            &message("tls-only"),
        )
        .expect("enqueue");
    let round = runner.run_once_at(now_unix()).await.expect("round");
    assert_eq!(round.finished, 1);
    assert!(
        receiver.messages.lock().expect("lock").is_empty(),
        "not sent in the clear"
    );
    assert_eq!(*receiver.connections.lock().expect("lock"), 1);
    let inbox = inbox(&setup.store, ALICE);
    assert_eq!(inbox.len(), 1);
    let dsn = String::from_utf8_lossy(&inbox[0]);
    assert!(dsn.contains("Status: 5.7.30"), "{dsn}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_mx_fails_at_once_and_an_unreachable_host_is_retried() {
    let setup = setup();
    let resolver = MapResolver::default()
        .with_mx("null.test", 0, ".")
        .with_mx("down.test", 10, "mx.down.test")
        .with_ip("mx.down.test", "127.0.0.1".parse().expect("ip"));
    // Port 1 on localhost: connection refused.
    let runner = runner(&setup, 1, resolver);
    setup
        .queue
        .enqueue(
            Some(address(ALICE)),
            &[address("x@null.test")],
            false,
            &message("null-mx"),
        )
        .expect("enqueue");
    let down = setup
        .queue
        .enqueue(
            Some(address(ALICE)),
            &[address("y@down.test")],
            false,
            &message("down"),
        )
        .expect("enqueue");
    let now = now_unix();
    let round = runner.run_once_at(now).await.expect("round");
    assert_eq!((round.finished, round.retried), (1, 1));
    let inbox_now = inbox(&setup.store, ALICE);
    assert_eq!(inbox_now.len(), 1);
    assert!(String::from_utf8_lossy(&inbox_now[0]).contains("Status: 5.1.10"));
    // Past the expiry, the unreachable one is given up and bounced too.
    let expires = setup.queue.show(down).expect("show").expires_unix;
    let round = runner.run_once_at(expires + 1).await.expect("round");
    assert_eq!(round.finished, 1);
    let inbox_later = inbox(&setup.store, ALICE);
    assert_eq!(inbox_later.len(), 2);
    assert!(String::from_utf8_lossy(&inbox_later[1]).contains("Status: 4.4.7"));
}

fn with_dsn(notify: Notify, orcpt: &str) -> RecipientRequest {
    RecipientRequest {
        address: address("carol@remote.test"),
        notify,
        orcpt: Some(orcpt.into()),
    }
}

fn notify(success: bool, failure: bool, delay: bool) -> Notify {
    Notify {
        given: true,
        success,
        failure,
        delay,
    }
}

fn enqueue_with_dsn(setup: &Setup, recipient: RecipientRequest, ret_full: bool) -> QueueId {
    setup
        .queue
        .enqueue_with_dsn(
            Some(address(ALICE)),
            &[recipient],
            false,
            DsnRequest {
                ret_full,
                envid: Some("QQ314159 x".into()),
            },
            &message("dsn"),
        )
        .expect("enqueue")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_success_is_passed_on_to_a_dsn_server_and_reported_as_relayed_otherwise() {
    // A server that does DSN gets the parameters (xtext-encoded) and the duty to report.
    let first = setup();
    let dsn_server =
        FakeReceiver::start_advertising(None, &["DSN"], |_, _| "250 2.1.5 ok".into()).await;
    enqueue_with_dsn(
        &first,
        with_dsn(notify(true, true, false), "Carol@Remote.test"),
        true,
    );
    runner(&first, dsn_server.address.port(), resolver_to_localhost())
        .run_once_at(now_unix())
        .await
        .expect("round");
    let commands = dsn_server.commands.lock().expect("lock").clone();
    assert!(
        commands
            .iter()
            .any(|line| line.starts_with("MAIL FROM:<alice@example.org>")
                && line.ends_with(" RET=FULL ENVID=QQ314159+20x")),
        "{commands:?}"
    );
    assert!(
        commands.contains(
            &"RCPT TO:<carol@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Carol@Remote.test"
                .to_string()
        ),
        "{commands:?}"
    );
    assert!(
        inbox(&first.store, ALICE).is_empty(),
        "the next server reports, not us"
    );

    // A server without DSN: the success report is ours, as "relayed", with ENVID and ORCPT.
    let second = setup();
    let plain = FakeReceiver::start(None, |_, _| "250 2.1.5 ok".into()).await;
    enqueue_with_dsn(
        &second,
        with_dsn(notify(true, false, false), "Carol@Remote.test"),
        false,
    );
    runner(&second, plain.address.port(), resolver_to_localhost())
        .run_once_at(now_unix())
        .await
        .expect("round");
    let commands = plain.commands.lock().expect("lock").clone();
    assert!(
        commands
            .iter()
            .all(|line| !line.contains("NOTIFY") && !line.contains("ENVID")),
        "{commands:?}"
    );
    let reports = inbox(&second.store, ALICE);
    assert_eq!(reports.len(), 1);
    let text = String::from_utf8_lossy(&reports[0]);
    for expected in [
        "Action: relayed",
        "Status: 2.0.0",
        "Original-Envelope-Id: QQ314159 x",
        "Original-Recipient: rfc822; Carol@Remote.test",
        "Final-Recipient: rfc822; carol@remote.test",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_never_silences_failures_and_ret_full_returns_the_whole_message() {
    let receiver = FakeReceiver::start(None, |_, _| "550 5.1.1 no such user".into()).await;
    let silent = setup();
    let id = enqueue_with_dsn(&silent, with_dsn(Notify::NEVER, "carol@remote.test"), true);
    runner(&silent, receiver.address.port(), resolver_to_localhost())
        .run_once_at(now_unix())
        .await
        .expect("round");
    assert!(silent.queue.show(id).is_err(), "finished");
    assert!(inbox(&silent.store, ALICE).is_empty(), "NOTIFY=NEVER");

    let full = setup();
    enqueue_with_dsn(
        &full,
        with_dsn(notify(false, true, false), "carol@remote.test"),
        true,
    );
    runner(&full, receiver.address.port(), resolver_to_localhost())
        .run_once_at(now_unix())
        .await
        .expect("round");
    let bounces = inbox(&full.store, ALICE);
    assert_eq!(bounces.len(), 1);
    let text = String::from_utf8_lossy(&bounces[0]);
    assert!(
        text.contains("Action: failed") && text.contains("message/rfc822"),
        "{text}"
    );
    assert!(text.contains(CANARY), "RET=FULL returns the body: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_delay_sends_one_delay_report_after_four_hours() {
    let setup = setup();
    let receiver = FakeReceiver::start(None, |_, _| "451 4.3.0 try again later".into()).await;
    let id = enqueue_with_dsn(
        &setup,
        with_dsn(notify(false, true, true), "carol@remote.test"),
        false,
    );
    let runner = runner(&setup, receiver.address.port(), resolver_to_localhost());
    let start = now_unix();
    runner.run_once_at(start).await.expect("round");
    assert!(inbox(&setup.store, ALICE).is_empty(), "not late yet");
    let late = start + letterlock_queue::runner::DELAY_REPORT_AFTER_SECS + 1;
    runner.run_once_at(late).await.expect("round");
    let reports = inbox(&setup.store, ALICE);
    assert_eq!(reports.len(), 1);
    let text = String::from_utf8_lossy(&reports[0]);
    for expected in [
        "Action: delayed",
        "Will-Retry-Until:",
        "Diagnostic-Code: smtp; 451 4.3.0",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    assert!(
        !text.contains(CANARY),
        "a delay report carries the header only"
    );
    runner.run_once_at(late + 7200).await.expect("round");
    assert_eq!(
        inbox(&setup.store, ALICE).len(),
        1,
        "one delay report, not one per attempt"
    );
    assert!(setup.queue.show(id).is_ok(), "still queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_to_one_destination_are_bounded_and_the_rest_wait_their_turn() {
    let setup = setup();
    let receiver = FakeReceiver::start_slow(std::time::Duration::from_millis(300)).await;
    for index in 0..8 {
        enqueue_for_carol(&setup, &format!("concurrency-{index}"));
    }
    let mut settings = letterlock_queue::RunnerSettings::new(client_settings(
        receiver.address.port(),
        rustls::RootCertStore::empty(),
    ));
    settings.destination_concurrency_max = 2;
    let runner = runner_with(&setup, settings, resolver_to_localhost());
    let round = runner.run_once_at(now_unix()).await.expect("round");
    assert_eq!((round.claimed, round.finished), (8, 8), "{round:?}");
    assert_eq!(receiver.delivered().len(), 8);
    assert_eq!(
        receiver
            .sessions_max
            .load(std::sync::atomic::Ordering::SeqCst),
        2,
        "never more than the limit at once, and the limit used"
    );
}

/// The runner's own loop: it sleeps until woken (as submission wakes it), delivers, and stops
/// when told to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_runner_delivers_when_woken_and_stops_on_shutdown() {
    let setup = setup();
    let receiver = FakeReceiver::start(None, |_, _| "250 2.1.5 ok".into()).await;
    let runner = runner(&setup, receiver.address.port(), resolver_to_localhost());
    let waker = runner.waker();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(runner.run(async move {
        let _ = stopped.await;
    }));
    // Let it find the queue empty and go to sleep (the poll interval is 30 s).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    enqueue_for_carol(&setup, "woken");
    waker.notify_one();
    let delivered = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while receiver.delivered().is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        delivered.is_ok(),
        "woken runner delivered well before its poll"
    );
    let _ = stop.send(());
    tokio::time::timeout(std::time::Duration::from_secs(5), running)
        .await
        .expect("stopped on shutdown")
        .expect("runner task");
}
