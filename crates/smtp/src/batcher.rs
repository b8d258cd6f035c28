//! Group commit: one committer thread collects the deliveries of every session and writes each
//! batch with one `MailStore::deliver_many` call, which is one durable commit. Each session
//! waits on its own answer, so `250` is sent only after the commit that holds its message, and
//! a failed message (unknown account, full mailbox) fails alone.
//!
//! The committer takes whatever is queued when it becomes free; when it has just seen more than
//! one delivery at a time, it also waits a short window for more, trading a millisecond of
//! latency for fewer commits under load. A lone session never waits.

use std::thread;
use std::time::{Duration, Instant};

use letterlock_mailstore::{DeliveryReport, Filing, MailStore, StoreError};
use letterlock_types::EmailAddress;
use tokio::sync::{mpsc, oneshot};

use crate::settings::Settings;

/// One message for local recipients, and where to send the outcome.
struct Delivery {
    recipients: Vec<EmailAddress>,
    message: Vec<u8>,
    filing: Filing,
    answer: oneshot::Sender<Result<DeliveryReport, StoreError>>,
}

/// Why a delivery did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the delivery committer has stopped")]
    CommitterGone,
}

impl DeliveryError {
    pub fn is_temporary(&self) -> bool {
        match self {
            DeliveryError::Store(error) => error.is_temporary(),
            DeliveryError::CommitterGone => true,
        }
    }
}

/// The sessions' handle on the committer. Cheap to clone; the thread ends when the last handle
/// is dropped.
#[derive(Clone)]
pub struct DeliveryBatcher {
    queue: mpsc::Sender<Delivery>,
}

impl DeliveryBatcher {
    /// Start the committer thread for `store`.
    pub fn start(store: MailStore, settings: &Settings) -> std::io::Result<DeliveryBatcher> {
        let (queue, receiver) = mpsc::channel(settings.delivery_queue_max.max(1));
        let limits = BatchLimits {
            messages_max: settings.group_commit_messages_max.max(1),
            bytes_max: settings.group_commit_bytes_max,
            window: settings.group_commit_window,
        };
        thread::Builder::new()
            .name("smtp-group-commit".into())
            .spawn(move || run_committer(store, receiver, limits))?;
        Ok(DeliveryBatcher { queue })
    }

    /// Deliver `message` to `recipients` (local addresses, each resolved by the store) and
    /// return after the durable commit.
    pub async fn deliver(
        &self,
        recipients: Vec<EmailAddress>,
        message: Vec<u8>,
        filing: Filing,
    ) -> Result<DeliveryReport, DeliveryError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Delivery {
                recipients,
                message,
                filing,
                answer,
            })
            .await
            .map_err(|_| DeliveryError::CommitterGone)?;
        answered
            .await
            .map_err(|_| DeliveryError::CommitterGone)?
            .map_err(DeliveryError::Store)
    }
}

#[derive(Clone, Copy)]
struct BatchLimits {
    messages_max: usize,
    bytes_max: usize,
    window: Duration,
}

fn run_committer(store: MailStore, mut receiver: mpsc::Receiver<Delivery>, limits: BatchLimits) {
    let mut saw_concurrency = false;
    while let Some(first) = receiver.blocking_recv() {
        let mut bytes = first.message.len();
        let mut batch = vec![first];
        let deadline = Instant::now() + limits.window;
        loop {
            if batch.len() >= limits.messages_max || bytes >= limits.bytes_max {
                break;
            }
            match receiver.try_recv() {
                Ok(delivery) => {
                    bytes += delivery.message.len();
                    batch.push(delivery);
                }
                Err(mpsc::error::TryRecvError::Empty) => {
                    if !saw_concurrency || Instant::now() >= deadline {
                        break;
                    }
                    thread::sleep(Duration::from_micros(100));
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        }
        saw_concurrency = batch.len() > 1;
        let results = {
            let items: Vec<(&[EmailAddress], &[u8], Filing)> = batch
                .iter()
                .map(|delivery| {
                    (
                        delivery.recipients.as_slice(),
                        delivery.message.as_slice(),
                        delivery.filing,
                    )
                })
                .collect();
            store.deliver_many_filed(&items)
        };
        tracing::debug!(messages = batch.len(), bytes, "group commit");
        let mut results = results.into_iter();
        for delivery in batch {
            let result = results
                .next()
                .unwrap_or_else(|| Err(StoreError::Corrupted("missing batch result".into())));
            // A session that went away no longer wants its answer; its message is stored.
            let _ = delivery.answer.send(result);
        }
    }
}
