//! Named limits, each with its unit and the reason (and RFC section) behind it.

/// RFC 5321 section 4.5.3.1.1.
pub const LOCAL_PART_LENGTH_MAX_OCTETS: usize = 64;
/// RFC 5321 section 4.5.3.1.3 (path of 256 octets less the angle brackets).
pub const ADDRESS_LENGTH_MAX_OCTETS: usize = 254;
/// RFC 1035 section 2.3.4 (255 on the wire is 253 in text).
pub const DOMAIN_LENGTH_MAX_OCTETS: usize = 253;
/// RFC 1035 section 2.3.4.
pub const DOMAIN_LABEL_LENGTH_MAX_OCTETS: usize = 63;
/// Mailbox names past this are refused: no client needs more, and names are
/// part of storage keys (see the storage crate's key limit).
pub const MAILBOX_NAME_LENGTH_MAX_OCTETS: usize = 512;
/// Largest message accepted by delivery, APPEND and submission, unless configured lower.
/// The message is held in memory until it is encrypted, so this bounds memory per session.
pub const MESSAGE_SIZE_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Recipients of one delivery (RFC 5321 section 4.5.3.1.8 asks for at least 100).
pub const RECIPIENTS_PER_MESSAGE_MAX: usize = 100;
/// Mailboxes one user may have.
pub const MAILBOXES_PER_USER_MAX: usize = 10_000;
/// App passwords one user may have.
pub const APP_PASSWORDS_PER_USER_MAX: usize = 50;
/// Targets one alias may expand to.
pub const ALIAS_TARGETS_MAX: usize = 100;
/// Passwords longer than this are refused (they would only feed a slow KDF more work).
pub const PASSWORD_LENGTH_MAX_BYTES: usize = 1024;
/// Passwords shorter than this are refused when set by `user add` or `user passwd`.
pub const PASSWORD_LENGTH_MIN_CHARS: usize = 8;
/// Keywords (IMAP user flags) on one message.
pub const KEYWORDS_PER_MESSAGE_MAX: usize = 64;
