//! Change notifications: after every committed change to a mailbox (a delivery, an APPEND, a
//! flag change, an expunge, a copy or move, a rename or delete), the subscribers of that
//! account are told which mailbox changed, so that open sessions (IMAP IDLE, NOOP) can report
//! EXISTS, EXPUNGE and FETCH responses (RFC 9051 section 7.4; RFC 2177).
//!
//! This is std-only on purpose: the mail store does not depend on an async runtime. A
//! subscriber gives a callback; the IMAP session's callback only marks the mailbox dirty and
//! wakes its task, so callbacks are cheap and run on the committing thread.
//! Notifications are in-process; a multi-node deployment will need the database's own
//! notification channel in addition.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use letterlock_types::{EmailAddress, MailboxName};

use crate::MailStore;

/// One committed change: whose mailbox. What changed is read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxChange {
    pub address: EmailAddress,
    pub mailbox: MailboxName,
}

pub type ChangeCallback = dyn Fn(&MailboxChange) + Send + Sync;

type Subscribers = HashMap<EmailAddress, Vec<(u64, Arc<ChangeCallback>)>>;

#[derive(Default)]
pub(crate) struct Notifier {
    next_id: AtomicU64,
    subscribers: Mutex<Subscribers>,
}

impl Notifier {
    /// Tell every subscriber of `address`. Callbacks run outside the lock, so a callback
    /// that subscribes or drops a subscription cannot deadlock.
    pub(crate) fn notify(&self, address: &EmailAddress, mailbox: &MailboxName) {
        let callbacks: Vec<Arc<ChangeCallback>> = match self.subscribers.lock() {
            Ok(subscribers) => subscribers
                .get(address)
                .map(|list| {
                    list.iter()
                        .map(|(_, callback)| Arc::clone(callback))
                        .collect()
                })
                .unwrap_or_default(),
            // A poisoned lock means a callback panicked; nobody can be notified reliably.
            Err(_) => return,
        };
        let change = MailboxChange {
            address: address.clone(),
            mailbox: mailbox.clone(),
        };
        for callback in callbacks {
            callback(&change);
        }
    }

    fn remove(&self, address: &EmailAddress, id: u64) {
        if let Ok(mut subscribers) = self.subscribers.lock() {
            if let Some(list) = subscribers.get_mut(address) {
                list.retain(|(known, _)| *known != id);
                if list.is_empty() {
                    subscribers.remove(address);
                }
            }
        }
    }
}

/// Keeps a callback registered; dropping it unsubscribes.
pub struct Subscription {
    notifier: Weak<Notifier>,
    address: EmailAddress,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(notifier) = self.notifier.upgrade() {
            notifier.remove(&self.address, self.id);
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Subscription({}, {})", self.address, self.id)
    }
}

impl MailStore {
    /// Call `callback` after every committed change to one of `address`'s mailboxes, until the
    /// returned [`Subscription`] is dropped. The callback runs on the thread that committed;
    /// it must be quick and must not block.
    pub fn subscribe(
        &self,
        address: &EmailAddress,
        callback: impl Fn(&MailboxChange) + Send + Sync + 'static,
    ) -> Subscription {
        let id = self.notifier.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut subscribers) = self.notifier.subscribers.lock() {
            subscribers
                .entry(address.clone())
                .or_default()
                .push((id, Arc::new(callback)));
        }
        Subscription {
            notifier: Arc::downgrade(&self.notifier),
            address: address.clone(),
            id,
        }
    }

    pub(crate) fn notify(&self, address: &EmailAddress, mailbox: &MailboxName) {
        self.notifier.notify(address, mailbox);
    }
}
