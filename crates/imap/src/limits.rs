//! The IMAP server's limits, each with its unit and reason (RFC 9051, RFC 7889, RFC 2177).

/// Longest command line (without literals). RFC 9051 section 4 sets no limit; RFC 7162
/// section 4 asks servers to accept at least 8,192 octets, and long UID sets from
/// resynchronising clients need more.
pub const LINE_LENGTH_MAX_BYTES: usize = 64 * 1024;
/// Largest literal in a command other than APPEND (a mailbox name, a password, a search
/// string): nothing legitimate comes near it.
pub const LITERAL_SIZE_MAX_BYTES: usize = 64 * 1024;
/// Largest command as a whole, all lines and literals but APPEND's message.
pub const COMMAND_SIZE_MAX_BYTES: usize = 256 * 1024;
/// How many literals one command may carry (a command is a few strings at most).
pub const LITERALS_PER_COMMAND_MAX: usize = 16;
/// RFC 2177 section 3: clients re-issue IDLE at least every 29 minutes; the server may end an
/// IDLE that lasts longer than 30 minutes. Sessions use the configured
/// `limits.idle_timeout_secs`, whose default is this.
pub const IDLE_TIMEOUT_SECS: u64 = 30 * 60;
/// Failed logins one session may make before it is ended with BYE.
pub const LOGIN_FAILURES_PER_SESSION_MAX: u32 = 3;
/// Failed logins an account may receive (from anywhere) in one window before further
/// attempts are refused without checking the password.
pub const LOGIN_FAILURES_PER_ACCOUNT_MAX: u32 = 10;
/// Failed logins one client (IPv4 address or IPv6 /64) may make in one window.
pub const LOGIN_FAILURES_PER_CLIENT_MAX: u32 = 20;
/// The window the two limits above count in.
pub const LOGIN_FAILURE_WINDOW_SECS: u64 = 15 * 60;
/// A failed login is answered after this delay: it slows guessing from one connection
/// without hurting a user who mistyped.
pub const LOGIN_FAILURE_DELAY_MS: u64 = 300;
/// Accounts and clients the failure counter tracks at once; the oldest are forgotten first,
/// so a flood of random names cannot grow it without bound.
pub const LOGIN_FAILURE_ENTRIES_MAX: usize = 100_000;
/// Commands one session may run per second on average before it is slowed down (bursts
/// up to [`COMMAND_BURST_MAX`] pass unhindered).
pub const COMMANDS_PER_SECOND_MAX: u32 = 200;
/// Commands a session may issue in a burst above the average rate.
pub const COMMAND_BURST_MAX: u32 = 1_000;
/// Bad commands (BAD responses) in a row before the session is ended: a client that keeps
/// sending garbage is not an IMAP client.
pub const BAD_COMMANDS_IN_A_ROW_MAX: u32 = 20;
/// Nesting of parenthesised search keys and MIME parts we follow.
pub const NESTING_DEPTH_MAX: usize = 16;
/// Messages one FETCH decrypts in full (BODY[], BODYSTRUCTURE) per batch: bounds memory.
pub const FETCH_BODIES_PER_BATCH_MAX: usize = 64;

/// Authenticated IMAP sessions one account may hold at once: every client of a user keeps a
/// few (INBOX IDLE, a sync, a search), and a leaked credential cannot open thousands.
pub const CONNECTIONS_PER_ACCOUNT_MAX: usize = 50;
