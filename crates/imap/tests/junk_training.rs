//! Moving mail into Junk over IMAP trains the spam classifier (the user's model and the global
//! one); moving it back out trains ham and makes the sender a known correspondent; the trained
//! model then scores similar mail as spam.

mod common;

use std::time::{Duration, Instant};

use common::{address, Client, PASSWORD, USER};
use letterlock_filter::bayes::{score, Model};
use letterlock_filter::reputation::Correspondents;
use letterlock_mailstore::ModelOwner;

fn spam(n: usize) -> Vec<u8> {
    format!("From: Winner <prize{n}@lottery.example>\r\nTo: {USER}\r\nSubject: You have WON {n}\r\n\r\nClaim your free lottery prize money now at https://claim.example/{n}\r\n").into_bytes()
}

fn ham(n: usize) -> Vec<u8> {
    format!("From: Carol <carol@work.example>\r\nTo: {USER}\r\nSubject: Budget review {n}\r\n\r\nThe quarterly budget review meeting notes are attached for the project.\r\n").into_bytes()
}

/// Wait for the background training to reach `(spam, ham)` messages in the user's model.
async fn model_with(server: &common::TestServer, expected: (u32, u32)) -> Model {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let model = server
            .store
            .spam_model(ModelOwner::User(&address(USER)))
            .expect("read model")
            .and_then(|bytes| Model::from_bytes(&bytes).ok());
        if let Some(model) = model {
            if model.trained_messages() == expected {
                return model;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the model never reached {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_to_and_from_junk_trains_the_classifier() {
    let server = common::start().await;
    for n in 0..4 {
        server
            .store
            .deliver(&[address(USER)], &spam(n))
            .expect("deliver");
        server
            .store
            .deliver(&[address(USER)], &ham(n))
            .expect("deliver");
    }
    let mut client = Client::tls(&server).await;
    client
        .command(&format!("LOGIN {USER} \"{PASSWORD}\""))
        .await
        .assert_ok();
    client.command("SELECT INBOX").await.assert_ok();
    // UIDs 1, 3, 5, 7 are the spam; a COPY of ham to Archive teaches nothing.
    client.command("UID COPY 2 Archive").await.assert_ok();
    client.command("UID MOVE 1,3,5,7 Junk").await.assert_ok();
    let model = model_with(&server, (4, 0)).await;
    let global = server
        .store
        .spam_model(ModelOwner::Global)
        .expect("read")
        .and_then(|bytes| Model::from_bytes(&bytes).ok())
        .expect("global model trained too");
    assert_eq!(global.trained_messages(), (4, 0));

    // Three work mails the filter had wrongly filed in Junk (appended there directly, as
    // delivery would) are moved back out: each teaches ham.
    let session = server
        .store
        .unlock(&address(USER), &letterlock_types::Secret::from(PASSWORD))
        .expect("unlock");
    let junk = letterlock_types::MailboxName::try_from("Junk").expect("name");
    for n in 10..13 {
        session.append(&junk, &ham(n), 0, 0).expect("append");
    }
    drop(model);
    client.command("SELECT Junk").await.assert_ok();
    // Junk now holds UIDs 1-4 (the lottery mail) and 5-7 (the work mail).
    client.command("UID MOVE 5:7 INBOX").await.assert_ok();
    let model = model_with(&server, (4, 3)).await;
    // Their sender is now a known correspondent (written before the model, so already there).
    let known = server
        .store
        .spam_model(ModelOwner::Correspondents(&address(USER)))
        .expect("read")
        .and_then(|bytes| Correspondents::from_bytes(&bytes).ok())
        .expect("correspondents recorded");
    assert!(known.contains("carol@work.example"));
    assert!(!known.contains("prize1@lottery.example"));
    let empty = Model::new([0u8; 32]);
    assert!(score(&spam(99), &empty, Some(&model)).spam_probability > 0.9);
    assert!(score(&ham(99), &empty, Some(&model)).spam_probability < 0.1);
    // Junk to Trash is not a lesson.
    client.command("UID MOVE 1 Trash").await.assert_ok();
    tokio::time::sleep(Duration::from_millis(300)).await;
    model_with(&server, (4, 3)).await;
}
