//! Junk training (`DESIGN.md`, "Spam"): a user moving or copying mail into Junk teaches the
//! classifier spam; moving it out of Junk (anywhere but Trash) teaches ham. Both the user's own
//! model and the global one learn, and the sender of mail taken out of Junk becomes a known
//! correspondent. Runs after the command has been answered, off the session:
//! training never delays or fails a client's MOVE.

use letterlock_filter::bayes::{Class, Model};
use letterlock_filter::reputation;
use letterlock_mailstore::{MailStore, ModelOwner, SpecialUse, StoreError, Unlocked};
use letterlock_types::MailboxName;

/// Messages learnt from one command; a user moving a whole folder trains on its first ones.
pub const TRAINING_MESSAGES_PER_COMMAND_MAX: usize = 500;

/// What a move from one mailbox to another teaches, if anything.
pub fn lesson(from: Option<SpecialUse>, to: Option<SpecialUse>) -> Option<Class> {
    match (from, to) {
        (Some(SpecialUse::Junk), Some(SpecialUse::Junk)) => None,
        (_, Some(SpecialUse::Junk)) => Some(Class::Spam),
        (Some(SpecialUse::Junk), Some(SpecialUse::Trash)) => None,
        (Some(SpecialUse::Junk), _) => Some(Class::Ham),
        _ => None,
    }
}

/// After a COPY or MOVE from `from` to `to` that produced `target_uids`: learn, if the move
/// teaches anything. Returns how many messages were learnt.
pub fn after_copy(
    store: &MailStore,
    user: &Unlocked,
    from: &MailboxName,
    to: &MailboxName,
    target_uids: &[u32],
) -> Result<usize, StoreError> {
    let mailboxes = user.mailboxes()?;
    let special = |name: &MailboxName| {
        mailboxes
            .iter()
            .find(|mailbox| &mailbox.name == name)
            .and_then(|mailbox| mailbox.special_use)
    };
    let Some(class) = lesson(special(from), special(to)) else {
        return Ok(0);
    };
    let mut messages = Vec::new();
    for uid in target_uids.iter().take(TRAINING_MESSAGES_PER_COMMAND_MAX) {
        messages.push(user.fetch(to, *uid)?);
    }
    if class == Class::Ham {
        // Taken out of Junk: its sender is wanted (reputation from the user's own history).
        let senders: Vec<String> = messages
            .iter()
            .filter_map(|message| reputation::from_address(message))
            .collect();
        store.update_spam_model(ModelOwner::Correspondents(user.address()), |current| {
            reputation::remember(current.as_deref(), &senders, rand::random())
        })?;
    }
    for owner in [ModelOwner::Global, ModelOwner::User(user.address())] {
        store.update_spam_model(owner, |current| {
            let mut model = current
                .and_then(|bytes| Model::from_bytes(&bytes).ok())
                .unwrap_or_else(|| Model::new(rand::random()));
            for message in &messages {
                model.train(message, class);
            }
            model.to_bytes()
        })?;
    }
    Ok(messages.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lessons() {
        assert_eq!(lesson(None, Some(SpecialUse::Junk)), Some(Class::Spam));
        assert_eq!(
            lesson(Some(SpecialUse::Archive), Some(SpecialUse::Junk)),
            Some(Class::Spam)
        );
        assert_eq!(lesson(Some(SpecialUse::Junk), None), Some(Class::Ham));
        assert_eq!(
            lesson(Some(SpecialUse::Junk), Some(SpecialUse::Trash)),
            None
        );
        assert_eq!(lesson(None, Some(SpecialUse::Trash)), None);
        assert_eq!(lesson(None, None), None);
    }
}
