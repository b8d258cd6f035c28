//! IMAP command syntax (RFC 9051 section 9, with RFC 3501 forms for IMAP4rev1 clients),
//! sans-IO: a complete command (its lines and literals already framed, see
//! [`literal_at_end`]) in, a typed [`Command`] or a [`ParseError`] out.
//!
//! Extensions parsed here: LITERAL+ (RFC 7888), SASL-IR (RFC 4959), UIDPLUS (RFC 4315),
//! MOVE (RFC 6851), ENABLE (RFC 5161), ID (RFC 2971), LIST-EXTENDED (RFC 5258),
//! LIST-STATUS (RFC 5819), SPECIAL-USE (RFC 6154), ESEARCH (RFC 4731),
//! CONDSTORE (RFC 7162: CHANGEDSINCE, UNCHANGEDSINCE, MODSEQ).

use letterlock_mailstore::records::flag_bits;
use letterlock_types::Secret;

use crate::limits::NESTING_DEPTH_MAX;
use crate::sequence::SequenceSet;

/// A literal announced at the end of a line: `{N}` (synchronizing) or `{N+}` (RFC 7888).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiteralHeader {
    pub size_bytes: u64,
    pub synchronizing: bool,
}

/// The literal a line announces, if it ends with one (the line is given without CRLF).
pub fn literal_at_end(line: &[u8]) -> Option<LiteralHeader> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&byte| byte == b'{')?;
    let mut digits = &body[open + 1..];
    let mut synchronizing = true;
    if let Some(rest) = digits.strip_suffix(b"+") {
        digits = rest;
        synchronizing = false;
    }
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size_bytes = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(LiteralHeader {
        size_bytes,
        synchronizing,
    })
}

/// The tag and command name of a command's first line, if they can be read: to answer a
/// command that cannot be parsed with its own tag, and to know an APPEND before its literal.
pub fn tag_and_name(line: &[u8]) -> (Option<String>, Option<String>) {
    let mut words = line.split(|&byte| byte == b' ');
    let tag = words
        .next()
        .filter(|tag| !tag.is_empty() && tag.iter().all(|&byte| is_tag_char(byte)))
        .map(|tag| String::from_utf8_lossy(tag).into_owned());
    let name = words
        .next()
        .map(|name| String::from_utf8_lossy(name).to_ascii_uppercase());
    (tag, name)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub tag: Option<String>,
    pub message: String,
}

/// A flag in a command: a system flag (as its bit) or a keyword.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flag {
    System(u8),
    /// `\Recent` (IMAP4rev1 only): accepted and ignored; it cannot be stored.
    Recent,
    Keyword(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    Size,
    Recent,
    HighestModseq,
    /// RFC 8474.
    MailboxId,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    pub subscribed_only: bool,
    pub special_use_only: bool,
    pub return_subscribed: bool,
    pub return_children: bool,
    pub return_special_use: bool,
    pub return_status: Option<Vec<StatusItem>>,
    /// The command used LIST-EXTENDED syntax (RFC 5258), so responses may carry extended data.
    pub extended: bool,
    /// RFC 5258 section 3.5: also report matching mailboxes whose descendants meet the
    /// selection (with CHILDINFO).
    pub recursive_match: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionText {
    Header,
    Text,
    Mime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Part numbers, outermost first; empty for the whole message.
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
    /// `HEADER.FIELDS (...)` or `HEADER.FIELDS.NOT (...)`: names and whether they are excluded.
    pub fields: Option<(Vec<String>, bool)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchItem {
    Flags,
    Uid,
    InternalDate,
    Rfc822Size,
    Envelope,
    BodyStructure,
    /// `BODY` alone: BODYSTRUCTURE without extension data.
    Body,
    Section {
        section: Section,
        peek: bool,
        /// `<origin.length>`.
        partial: Option<(u64, u64)>,
    },
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    ModSeq,
    /// RFC 8474.
    EmailId,
    ThreadId,
    /// RFC 3516: a part with its transfer encoding undone.
    Binary {
        part: Vec<u32>,
        peek: bool,
        partial: Option<(u64, u64)>,
    },
    /// RFC 3516: the size of that decoded part.
    BinarySize {
        part: Vec<u32>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Replace,
    Add,
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
    /// RFC 5182: keep the result as `$`.
    Save,
}

/// A calendar day, as days since 1970-01-01 (search dates have no time, RFC 9051 section 6.4.4).
pub type Day = i64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    All,
    And(Vec<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    Not(Box<SearchKey>),
    /// A system flag set (`true`) or unset (`false`).
    Flag(u8, bool),
    Keyword(String, bool),
    /// `NEW` and `RECENT`: nothing is ever `\Recent` here (IMAP4rev2 dropped it).
    Recent(bool),
    Header(String, String),
    Body(String),
    Text(String),
    Larger(u64),
    Smaller(u64),
    Uid(SequenceSet),
    Sequence(SequenceSet),
    Before(Day),
    On(Day),
    Since(Day),
    SentBefore(Day),
    SentOn(Day),
    SentSince(Day),
    ModSeq(u64),
}

#[derive(Debug)]
pub enum Command {
    Capability,
    Noop,
    Logout,
    StartTls,
    Login {
        user: String,
        password: Secret,
    },
    Authenticate {
        mechanism: String,
        initial_response: Option<String>,
    },
    Enable(Vec<String>),
    Id,
    Namespace,
    List {
        reference: String,
        patterns: Vec<String>,
        options: ListOptions,
    },
    Lsub {
        reference: String,
        pattern: String,
    },
    Status {
        mailbox: String,
        items: Vec<StatusItem>,
    },
    Select {
        mailbox: String,
        read_only: bool,
        condstore: bool,
        qresync: Option<QresyncParameters>,
    },
    Create(String),
    Delete(String),
    Rename(String, String),
    Subscribe(String),
    Unsubscribe(String),
    Append {
        mailbox: String,
        flags: Vec<Flag>,
        internal_date_unix: Option<i64>,
        message: Vec<u8>,
    },
    Check,
    Close,
    Unselect,
    Expunge,
    UidExpunge(SequenceSet),
    Search {
        uid: bool,
        returns: Option<Vec<SearchReturn>>,
        key: SearchKey,
    },
    Fetch {
        uid: bool,
        set: SequenceSet,
        items: Vec<FetchItem>,
        changed_since: Option<u64>,
        /// RFC 7162 section 3.2.6: with CHANGEDSINCE, also report expunged UIDs.
        vanished: bool,
    },
    Store {
        uid: bool,
        set: SequenceSet,
        mode: StoreMode,
        silent: bool,
        flags: Vec<Flag>,
        unchanged_since: Option<u64>,
    },
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: String,
    },
    Move {
        uid: bool,
        set: SequenceSet,
        mailbox: String,
    },
    Idle,
    /// RFC 5256: SEARCH results in the order of `criteria`.
    Sort {
        uid: bool,
        criteria: Vec<crate::sort::SortCriterion>,
        key: SearchKey,
    },
    /// RFC 5256: SEARCH results as threads (REFERENCES only).
    Thread {
        uid: bool,
        key: SearchKey,
    },
    /// RFC 9208: the quota root of a mailbox, and its quotas.
    GetQuotaRoot(String),
    /// RFC 9208: one quota root's usage and limits.
    GetQuota(String),
    /// RFC 9208: refused; quotas are the administrator's.
    SetQuota,
}

/// `SELECT mailbox (QRESYNC (uidvalidity modseq [known-uids]))` (RFC 7162 section 3.2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QresyncParameters {
    pub uid_validity: u32,
    pub modseq: u64,
    pub known_uids: Option<SequenceSet>,
}

/// Parse one complete command: `tag SP command` with any literals inline (`{N}\r\n` + data).
pub fn parse_command(input: &[u8]) -> Result<(String, Command), ParseError> {
    let mut parser = Parser { input, position: 0 };
    let tag = parser
        .tag()
        .map_err(|message| ParseError { tag: None, message })?;
    let result = parser.command();
    result
        .map(|command| (tag.clone(), command))
        .map_err(|message| ParseError {
            tag: Some(tag),
            message,
        })
}

type Parsed<T> = Result<T, String>;

struct Parser<'a> {
    input: &'a [u8],
    position: usize,
}

fn is_tag_char(byte: u8) -> bool {
    is_astring_char(byte) && byte != b'+'
}

fn is_atom_char(byte: u8) -> bool {
    byte > 0x20
        && byte < 0x7f
        && !matches!(byte, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

fn is_astring_char(byte: u8) -> bool {
    is_atom_char(byte) || byte == b']'
}

/// List-mailbox characters: atom characters, the wildcards and `]`.
fn is_list_char(byte: u8) -> bool {
    is_astring_char(byte) || byte == b'%' || byte == b'*'
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.position).copied()
    }

    fn at_end(&self) -> bool {
        self.position >= self.input.len()
    }

    fn expect(&mut self, byte: u8) -> Parsed<()> {
        if self.peek() == Some(byte) {
            self.position += 1;
            Ok(())
        } else {
            Err(format!(
                "expected {:?} at octet {}",
                byte as char, self.position
            ))
        }
    }

    fn space(&mut self) -> Parsed<()> {
        self.expect(b' ')
    }

    fn end(&self) -> Parsed<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err(format!("unexpected text at octet {}", self.position))
        }
    }

    fn take_while(&mut self, accept: impl Fn(u8) -> bool) -> &[u8] {
        let start = self.position;
        while self.peek().is_some_and(&accept) {
            self.position += 1;
        }
        &self.input[start..self.position]
    }

    fn tag(&mut self) -> Parsed<String> {
        let tag = self.take_while(is_tag_char);
        if tag.is_empty() {
            return Err("a command starts with a tag".into());
        }
        let tag = String::from_utf8_lossy(tag).into_owned();
        self.space()?;
        Ok(tag)
    }

    fn atom(&mut self) -> Parsed<String> {
        let atom = self.take_while(is_atom_char);
        if atom.is_empty() {
            return Err(format!("expected an atom at octet {}", self.position));
        }
        Ok(String::from_utf8_lossy(atom).into_owned())
    }

    fn upper_atom(&mut self) -> Parsed<String> {
        Ok(self.atom()?.to_ascii_uppercase())
    }

    fn number(&mut self) -> Parsed<u64> {
        let digits = self.take_while(|byte| byte.is_ascii_digit());
        std::str::from_utf8(digits)
            .ok()
            .and_then(|digits| digits.parse().ok())
            .ok_or_else(|| format!("expected a number at octet {}", self.position))
    }

    fn nz_number(&mut self) -> Parsed<u32> {
        let number = self.number()?;
        u32::try_from(number)
            .ok()
            .filter(|&number| number > 0)
            .ok_or_else(|| "number out of range".to_string())
    }

    fn quoted(&mut self) -> Parsed<Vec<u8>> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') => return Err("unterminated quoted string".into()),
                Some(b'"') => {
                    self.position += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.position += 1;
                    match self.peek() {
                        Some(byte @ (b'"' | b'\\')) => {
                            out.push(byte);
                            self.position += 1;
                        }
                        _ => return Err("bad escape in quoted string".into()),
                    }
                }
                Some(byte) => {
                    out.push(byte);
                    self.position += 1;
                }
            }
        }
    }

    fn literal(&mut self) -> Parsed<Vec<u8>> {
        self.expect(b'{')?;
        let size = self.number()?;
        if self.peek() == Some(b'+') {
            self.position += 1;
        }
        self.expect(b'}')?;
        self.expect(b'\r')?;
        self.expect(b'\n')?;
        let size = usize::try_from(size).map_err(|_| "literal too large".to_string())?;
        let end = self
            .position
            .checked_add(size)
            .filter(|&end| end <= self.input.len())
            .ok_or_else(|| "literal shorter than announced".to_string())?;
        let data = self.input[self.position..end].to_vec();
        self.position = end;
        Ok(data)
    }

    fn string_bytes(&mut self) -> Parsed<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            _ => Err(format!("expected a string at octet {}", self.position)),
        }
    }

    fn astring_bytes(&mut self) -> Parsed<Vec<u8>> {
        match self.peek() {
            Some(b'"') | Some(b'{') => self.string_bytes(),
            _ => {
                let atom = self.take_while(is_astring_char);
                if atom.is_empty() {
                    return Err(format!("expected a string at octet {}", self.position));
                }
                Ok(atom.to_vec())
            }
        }
    }

    fn astring(&mut self) -> Parsed<String> {
        String::from_utf8(self.astring_bytes()?).map_err(|_| "string is not UTF-8".to_string())
    }

    fn string(&mut self) -> Parsed<String> {
        String::from_utf8(self.string_bytes()?).map_err(|_| "string is not UTF-8".to_string())
    }

    fn list_mailbox(&mut self) -> Parsed<String> {
        match self.peek() {
            Some(b'"') | Some(b'{') => self.string(),
            _ => {
                let atom = self.take_while(is_list_char);
                if atom.is_empty() {
                    return Err("expected a mailbox pattern".into());
                }
                Ok(String::from_utf8_lossy(atom).into_owned())
            }
        }
    }

    fn sequence_set(&mut self) -> Parsed<SequenceSet> {
        let text = self
            .take_while(|byte| byte.is_ascii_digit() || matches!(byte, b':' | b',' | b'*' | b'$'));
        SequenceSet::parse(text).map_err(|error| error.to_string())
    }

    fn flag(&mut self) -> Parsed<Flag> {
        if self.peek() == Some(b'\\') {
            self.position += 1;
            let name = self.upper_atom()?;
            return match name.as_str() {
                "SEEN" => Ok(Flag::System(flag_bits::SEEN)),
                "ANSWERED" => Ok(Flag::System(flag_bits::ANSWERED)),
                "FLAGGED" => Ok(Flag::System(flag_bits::FLAGGED)),
                "DELETED" => Ok(Flag::System(flag_bits::DELETED)),
                "DRAFT" => Ok(Flag::System(flag_bits::DRAFT)),
                "RECENT" => Ok(Flag::Recent),
                _ => Err(format!("unknown system flag \\{name}")),
            };
        }
        Ok(Flag::Keyword(self.atom()?))
    }

    fn flag_list(&mut self) -> Parsed<Vec<Flag>> {
        self.expect(b'(')?;
        let mut flags = Vec::new();
        while self.peek() != Some(b')') {
            if !flags.is_empty() {
                self.space()?;
            }
            flags.push(self.flag()?);
        }
        self.expect(b')')?;
        Ok(flags)
    }

    /// A parenthesised list of atoms, or a single atom.
    fn atom_list(&mut self) -> Parsed<Vec<String>> {
        if self.peek() != Some(b'(') {
            return Ok(vec![self.upper_atom()?]);
        }
        self.position += 1;
        let mut atoms = Vec::new();
        while self.peek() != Some(b')') {
            if !atoms.is_empty() {
                self.space()?;
            }
            atoms.push(self.upper_atom()?);
        }
        self.expect(b')')?;
        Ok(atoms)
    }

    fn command(&mut self) -> Parsed<Command> {
        let name = self.upper_atom()?;
        let command = match name.as_str() {
            "CAPABILITY" => Command::Capability,
            "NOOP" => Command::Noop,
            "LOGOUT" => Command::Logout,
            "STARTTLS" => Command::StartTls,
            "CHECK" => Command::Check,
            "CLOSE" => Command::Close,
            "UNSELECT" => Command::Unselect,
            "EXPUNGE" => Command::Expunge,
            "IDLE" => Command::Idle,
            "NAMESPACE" => Command::Namespace,
            "LOGIN" => {
                self.space()?;
                let user = self.astring()?;
                self.space()?;
                let password = Secret::new(self.astring_bytes()?);
                Command::Login { user, password }
            }
            "AUTHENTICATE" => {
                self.space()?;
                let mechanism = self.upper_atom()?;
                let initial_response = if self.peek() == Some(b' ') {
                    self.space()?;
                    let text = self.take_while(|byte| {
                        byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'=')
                    });
                    Some(String::from_utf8_lossy(text).into_owned())
                } else {
                    None
                };
                Command::Authenticate {
                    mechanism,
                    initial_response,
                }
            }
            "ENABLE" => {
                let mut capabilities = Vec::new();
                while self.peek() == Some(b' ') {
                    self.space()?;
                    capabilities.push(self.upper_atom()?);
                }
                if capabilities.is_empty() {
                    return Err("ENABLE needs at least one capability".into());
                }
                Command::Enable(capabilities)
            }
            "ID" => {
                self.space()?;
                self.skip_id_parameters()?;
                Command::Id
            }
            "LIST" => self.list()?,
            "LSUB" => {
                self.space()?;
                let reference = self.astring()?;
                self.space()?;
                let pattern = self.list_mailbox()?;
                Command::Lsub { reference, pattern }
            }
            "STATUS" => {
                self.space()?;
                let mailbox = self.astring()?;
                self.space()?;
                let items = self.status_items()?;
                Command::Status { mailbox, items }
            }
            "SELECT" | "EXAMINE" => {
                self.space()?;
                let mailbox = self.astring()?;
                let mut condstore = false;
                let mut qresync = None;
                if self.peek() == Some(b' ') {
                    self.space()?;
                    self.expect(b'(')?;
                    while self.peek() != Some(b')') {
                        if condstore || qresync.is_some() {
                            self.space()?;
                        }
                        match self.upper_atom()?.as_str() {
                            "CONDSTORE" => condstore = true,
                            "QRESYNC" => {
                                self.space()?;
                                qresync = Some(self.qresync_parameters()?);
                            }
                            other => return Err(format!("unknown SELECT parameter {other}")),
                        }
                    }
                    self.expect(b')')?;
                }
                Command::Select {
                    mailbox,
                    read_only: name == "EXAMINE",
                    condstore,
                    qresync,
                }
            }
            "GETQUOTAROOT" => {
                self.space()?;
                Command::GetQuotaRoot(self.astring()?)
            }
            "GETQUOTA" => {
                self.space()?;
                Command::GetQuota(self.astring()?)
            }
            "SETQUOTA" => {
                // The rest of the line is not needed to refuse it.
                self.position = self.input.len();
                Command::SetQuota
            }
            "CREATE" | "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" => {
                self.space()?;
                let mailbox = self.astring()?;
                match name.as_str() {
                    "CREATE" => Command::Create(mailbox),
                    "DELETE" => Command::Delete(mailbox),
                    "SUBSCRIBE" => Command::Subscribe(mailbox),
                    _ => Command::Unsubscribe(mailbox),
                }
            }
            "RENAME" => {
                self.space()?;
                let from = self.astring()?;
                self.space()?;
                let to = self.astring()?;
                Command::Rename(from, to)
            }
            "APPEND" => self.append()?,
            "SEARCH" => self.search(false)?,
            "SORT" => self.sort(false)?,
            "THREAD" => self.thread(false)?,
            "FETCH" => self.fetch(false)?,
            "STORE" => self.store(false)?,
            "COPY" | "MOVE" => self.copy_or_move(false, name == "MOVE")?,
            "UID" => {
                self.space()?;
                let name = self.upper_atom()?;
                match name.as_str() {
                    "SEARCH" => self.search(true)?,
                    "SORT" => self.sort(true)?,
                    "THREAD" => self.thread(true)?,
                    "FETCH" => self.fetch(true)?,
                    "STORE" => self.store(true)?,
                    "COPY" | "MOVE" => self.copy_or_move(true, name == "MOVE")?,
                    "EXPUNGE" => {
                        self.space()?;
                        Command::UidExpunge(self.sequence_set()?)
                    }
                    other => return Err(format!("unknown command UID {other}")),
                }
            }
            other => return Err(format!("unknown command {other}")),
        };
        self.end()?;
        Ok(command)
    }

    fn skip_id_parameters(&mut self) -> Parsed<()> {
        if self.peek() == Some(b'(') {
            self.position += 1;
            while self.peek() != Some(b')') {
                if self.peek() == Some(b' ') {
                    self.position += 1;
                }
                match self.peek() {
                    Some(b'"') | Some(b'{') => {
                        self.string_bytes()?;
                    }
                    _ => {
                        self.atom()?;
                    }
                }
            }
            self.expect(b')')
        } else {
            let nil = self.upper_atom()?;
            if nil == "NIL" {
                Ok(())
            } else {
                Err("ID takes a parameter list or NIL".into())
            }
        }
    }

    fn status_items(&mut self) -> Parsed<Vec<StatusItem>> {
        self.atom_list()?
            .into_iter()
            .map(|item| match item.as_str() {
                "MESSAGES" => Ok(StatusItem::Messages),
                "UIDNEXT" => Ok(StatusItem::UidNext),
                "UIDVALIDITY" => Ok(StatusItem::UidValidity),
                "UNSEEN" => Ok(StatusItem::Unseen),
                "DELETED" => Ok(StatusItem::Deleted),
                "SIZE" => Ok(StatusItem::Size),
                "RECENT" => Ok(StatusItem::Recent),
                "HIGHESTMODSEQ" => Ok(StatusItem::HighestModseq),
                "MAILBOXID" => Ok(StatusItem::MailboxId),
                other => Err(format!("unknown STATUS item {other}")),
            })
            .collect()
    }

    fn list(&mut self) -> Parsed<Command> {
        let mut options = ListOptions::default();
        self.space()?;
        if self.peek() == Some(b'(') {
            options.extended = true;
            for selection in self.atom_list()? {
                match selection.as_str() {
                    "SUBSCRIBED" => {
                        options.subscribed_only = true;
                        options.return_subscribed = true;
                    }
                    "SPECIAL-USE" => options.special_use_only = true,
                    "RECURSIVEMATCH" => options.recursive_match = true,
                    // No remote mailboxes here.
                    "REMOTE" => {}
                    other => return Err(format!("unknown LIST selection option {other}")),
                }
            }
            // RFC 5258 section 3.1: RECURSIVEMATCH alone has nothing to recurse on.
            if options.recursive_match && !options.subscribed_only {
                return Err("RECURSIVEMATCH needs the SUBSCRIBED selection option".into());
            }
            self.space()?;
        }
        let reference = self.astring()?;
        self.space()?;
        let patterns = if self.peek() == Some(b'(') {
            options.extended = true;
            self.position += 1;
            let mut patterns = Vec::new();
            while self.peek() != Some(b')') {
                if !patterns.is_empty() {
                    self.space()?;
                }
                patterns.push(self.list_mailbox()?);
            }
            self.expect(b')')?;
            patterns
        } else {
            vec![self.list_mailbox()?]
        };
        if self.peek() == Some(b' ') {
            self.space()?;
            if self.upper_atom()? != "RETURN" {
                return Err("expected RETURN".into());
            }
            options.extended = true;
            self.space()?;
            self.expect(b'(')?;
            let mut first = true;
            while self.peek() != Some(b')') {
                if !first {
                    self.space()?;
                }
                first = false;
                match self.upper_atom()?.as_str() {
                    "SUBSCRIBED" => options.return_subscribed = true,
                    "CHILDREN" => options.return_children = true,
                    "SPECIAL-USE" => options.return_special_use = true,
                    "STATUS" => {
                        self.space()?;
                        options.return_status = Some(self.status_items()?);
                    }
                    other => return Err(format!("unknown LIST return option {other}")),
                }
            }
            self.expect(b')')?;
        }
        Ok(Command::List {
            reference,
            patterns,
            options,
        })
    }

    fn append(&mut self) -> Parsed<Command> {
        self.space()?;
        let mailbox = self.astring()?;
        self.space()?;
        let mut flags = Vec::new();
        if self.peek() == Some(b'(') {
            flags = self.flag_list()?;
            self.space()?;
        }
        let mut internal_date_unix = None;
        if self.peek() == Some(b'"') {
            let text = self.quoted()?;
            let text = String::from_utf8(text).map_err(|_| "bad date-time".to_string())?;
            internal_date_unix =
                Some(parse_date_time(&text).ok_or_else(|| format!("bad date-time {text:?}"))?);
            self.space()?;
        }
        // RFC 3516 section 4.4: with BINARY, the message may come as a literal8 (`~{N}`).
        if self.peek() == Some(b'~') {
            self.position += 1;
        }
        let message = self.literal()?;
        Ok(Command::Append {
            mailbox,
            flags,
            internal_date_unix,
            message,
        })
    }

    fn copy_or_move(&mut self, uid: bool, is_move: bool) -> Parsed<Command> {
        self.space()?;
        let set = self.sequence_set()?;
        self.space()?;
        let mailbox = self.astring()?;
        Ok(if is_move {
            Command::Move { uid, set, mailbox }
        } else {
            Command::Copy { uid, set, mailbox }
        })
    }

    fn store(&mut self, uid: bool) -> Parsed<Command> {
        self.space()?;
        let set = self.sequence_set()?;
        self.space()?;
        let mut unchanged_since = None;
        if self.peek() == Some(b'(') {
            self.position += 1;
            if self.upper_atom()? != "UNCHANGEDSINCE" {
                return Err("unknown STORE modifier".into());
            }
            self.space()?;
            unchanged_since = Some(self.number()?);
            self.expect(b')')?;
            self.space()?;
        }
        let item = self.upper_atom()?;
        let (mode, rest) = match item.as_bytes().first() {
            Some(b'+') => (StoreMode::Add, &item[1..]),
            Some(b'-') => (StoreMode::Remove, &item[1..]),
            _ => (StoreMode::Replace, item.as_str()),
        };
        let silent = match rest {
            "FLAGS" => false,
            "FLAGS.SILENT" => true,
            _ => return Err(format!("unknown STORE item {item}")),
        };
        self.space()?;
        let flags = if self.peek() == Some(b'(') {
            self.flag_list()?
        } else {
            let mut flags = vec![self.flag()?];
            while self.peek() == Some(b' ') {
                self.space()?;
                flags.push(self.flag()?);
            }
            flags
        };
        Ok(Command::Store {
            uid,
            set,
            mode,
            silent,
            flags,
            unchanged_since,
        })
    }

    /// `(uidvalidity modseq [known-uids [(seq-match)]])`; the sequence match data is read and
    /// ignored (it only saves the server work).
    fn qresync_parameters(&mut self) -> Parsed<QresyncParameters> {
        self.expect(b'(')?;
        let uid_validity = u32::try_from(self.number()?)
            .ok()
            .filter(|&value| value > 0)
            .ok_or_else(|| "bad UIDVALIDITY".to_string())?;
        self.space()?;
        let modseq = self.number()?;
        let mut known_uids = None;
        if self.peek() == Some(b' ') {
            self.space()?;
            if self.peek() != Some(b'(') {
                known_uids = Some(self.sequence_set()?);
                if self.peek() == Some(b' ') {
                    self.space()?;
                }
            }
            if self.peek() == Some(b'(') {
                let mut depth = 0usize;
                while let Some(byte) = self.peek() {
                    self.position += 1;
                    match byte {
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        self.expect(b')')?;
        Ok(QresyncParameters {
            uid_validity,
            modseq,
            known_uids,
        })
    }

    fn fetch(&mut self, uid: bool) -> Parsed<Command> {
        self.space()?;
        let set = self.sequence_set()?;
        self.space()?;
        let mut items = Vec::new();
        if self.peek() == Some(b'(') {
            self.position += 1;
            while self.peek() != Some(b')') {
                if !items.is_empty() {
                    self.space()?;
                }
                self.fetch_item(&mut items)?;
            }
            self.expect(b')')?;
        } else {
            self.fetch_item(&mut items)?;
        }
        let mut changed_since = None;
        let mut vanished = false;
        if self.peek() == Some(b' ') {
            self.space()?;
            self.expect(b'(')?;
            loop {
                match self.upper_atom()?.as_str() {
                    "CHANGEDSINCE" => {
                        self.space()?;
                        changed_since = Some(self.number()?);
                    }
                    "VANISHED" => vanished = true,
                    _ => return Err("unknown FETCH modifier".into()),
                }
                if self.peek() != Some(b' ') {
                    break;
                }
                self.space()?;
            }
            self.expect(b')')?;
            if changed_since.is_none() {
                return Err("VANISHED needs CHANGEDSINCE".into());
            }
            if vanished && !uid {
                return Err("VANISHED is for UID FETCH only".into());
            }
            items.push(FetchItem::ModSeq);
        }
        Ok(Command::Fetch {
            uid,
            set,
            items,
            changed_since,
            vanished,
        })
    }

    fn fetch_item(&mut self, items: &mut Vec<FetchItem>) -> Parsed<()> {
        let name = self
            .take_while(|byte| is_atom_char(byte) && byte != b'[')
            .to_ascii_uppercase();
        let name = String::from_utf8_lossy(&name).into_owned();
        let item = match name.as_str() {
            "ALL" | "FAST" | "FULL" => {
                items.extend([
                    FetchItem::Flags,
                    FetchItem::InternalDate,
                    FetchItem::Rfc822Size,
                ]);
                if name != "FAST" {
                    items.push(FetchItem::Envelope);
                }
                if name == "FULL" {
                    items.push(FetchItem::Body);
                }
                return Ok(());
            }
            "FLAGS" => FetchItem::Flags,
            "UID" => FetchItem::Uid,
            "INTERNALDATE" => FetchItem::InternalDate,
            "RFC822.SIZE" => FetchItem::Rfc822Size,
            "ENVELOPE" => FetchItem::Envelope,
            "BODYSTRUCTURE" => FetchItem::BodyStructure,
            "RFC822" => FetchItem::Rfc822,
            "RFC822.HEADER" => FetchItem::Rfc822Header,
            "RFC822.TEXT" => FetchItem::Rfc822Text,
            "MODSEQ" => FetchItem::ModSeq,
            "EMAILID" => FetchItem::EmailId,
            "THREADID" => FetchItem::ThreadId,
            "BODY" | "BODY.PEEK" if self.peek() == Some(b'[') => {
                let section = self.section()?;
                let partial = self.partial()?;
                FetchItem::Section {
                    section,
                    peek: name == "BODY.PEEK",
                    partial,
                }
            }
            "BODY" => FetchItem::Body,
            "BINARY" | "BINARY.PEEK" | "BINARY.SIZE" => {
                let part = self.binary_section()?;
                if name == "BINARY.SIZE" {
                    FetchItem::BinarySize { part }
                } else {
                    FetchItem::Binary {
                        part,
                        peek: name == "BINARY.PEEK",
                        partial: self.partial()?,
                    }
                }
            }
            other => return Err(format!("unknown FETCH item {other}")),
        };
        items.push(item);
        Ok(())
    }

    fn section(&mut self) -> Parsed<Section> {
        self.expect(b'[')?;
        let mut section = Section {
            part: Vec::new(),
            text: None,
            fields: None,
        };
        while self.peek().is_some_and(|byte| byte.is_ascii_digit()) {
            section.part.push(self.nz_number()?);
            if section.part.len() > NESTING_DEPTH_MAX {
                return Err("section nested too deeply".into());
            }
            if self.peek() == Some(b'.') {
                self.position += 1;
            } else {
                break;
            }
        }
        if self.peek() != Some(b']') {
            let name = self
                .take_while(|byte| byte.is_ascii_alphanumeric() || byte == b'.')
                .to_ascii_uppercase();
            match name.as_slice() {
                b"HEADER" => section.text = Some(SectionText::Header),
                b"TEXT" => section.text = Some(SectionText::Text),
                b"MIME" if !section.part.is_empty() => section.text = Some(SectionText::Mime),
                b"HEADER.FIELDS" | b"HEADER.FIELDS.NOT" => {
                    self.space()?;
                    self.expect(b'(')?;
                    let mut fields = Vec::new();
                    while self.peek() != Some(b')') {
                        if !fields.is_empty() {
                            self.space()?;
                        }
                        fields.push(self.astring()?.to_ascii_uppercase());
                    }
                    self.expect(b')')?;
                    section.text = Some(SectionText::Header);
                    section.fields = Some((fields, name.as_slice() == b"HEADER.FIELDS.NOT"));
                }
                _ => {
                    return Err(format!(
                        "unknown section {}",
                        String::from_utf8_lossy(&name)
                    ))
                }
            }
        }
        self.expect(b']')?;
        Ok(section)
    }

    /// `[1.2.3]` or `[]` (RFC 3516 section-binary: part numbers only).
    fn binary_section(&mut self) -> Parsed<Vec<u32>> {
        self.expect(b'[')?;
        let mut part = Vec::new();
        while self.peek() != Some(b']') {
            if !part.is_empty() {
                self.expect(b'.')?;
            }
            let number = self.number()?;
            let number = u32::try_from(number)
                .ok()
                .filter(|&number| number > 0)
                .ok_or_else(|| "a part number is a positive integer".to_string())?;
            part.push(number);
            if part.len() > crate::limits::NESTING_DEPTH_MAX {
                return Err("section nested too deeply".into());
            }
        }
        self.expect(b']')?;
        Ok(part)
    }

    fn partial(&mut self) -> Parsed<Option<(u64, u64)>> {
        if self.peek() != Some(b'<') {
            return Ok(None);
        }
        self.position += 1;
        let origin = self.number()?;
        self.expect(b'.')?;
        let length = self.number()?;
        if length == 0 {
            return Err("a partial length is at least 1".into());
        }
        self.expect(b'>')?;
        Ok(Some((origin, length)))
    }

    fn search(&mut self, uid: bool) -> Parsed<Command> {
        let mut returns = None;
        let mut keys = Vec::new();
        while self.peek() == Some(b' ') {
            self.space()?;
            let start = self.position;
            let word = self
                .take_while(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
                .to_ascii_uppercase();
            if word == b"RETURN" && returns.is_none() && keys.is_empty() {
                self.space()?;
                self.expect(b'(')?;
                let mut list = Vec::new();
                while self.peek() != Some(b')') {
                    if !list.is_empty() {
                        self.space()?;
                    }
                    list.push(match self.upper_atom()?.as_str() {
                        "MIN" => SearchReturn::Min,
                        "MAX" => SearchReturn::Max,
                        "ALL" => SearchReturn::All,
                        "COUNT" => SearchReturn::Count,
                        "SAVE" => SearchReturn::Save,
                        other => return Err(format!("unknown SEARCH return option {other}")),
                    });
                }
                self.expect(b')')?;
                returns = Some(list);
                continue;
            }
            if word == b"CHARSET" && keys.is_empty() {
                self.space()?;
                let charset = self.astring()?.to_ascii_uppercase();
                if charset != "UTF-8" && charset != "US-ASCII" {
                    return Err("[BADCHARSET (UTF-8 US-ASCII)] unsupported charset".into());
                }
                continue;
            }
            self.position = start;
            keys.push(self.search_key(0)?);
        }
        if keys.is_empty() {
            return Err("SEARCH needs at least one key".into());
        }
        Ok(Command::Search {
            uid,
            returns,
            key: SearchKey::And(keys),
        })
    }

    /// `charset SP search-key *(SP search-key)`, as SORT and THREAD take them (RFC 5256).
    fn charset_and_keys(&mut self, command: &str) -> Parsed<SearchKey> {
        let charset = self.astring()?.to_ascii_uppercase();
        if charset != "UTF-8" && charset != "US-ASCII" {
            return Err("[BADCHARSET (UTF-8 US-ASCII)] unsupported charset".into());
        }
        let mut keys = Vec::new();
        while self.peek() == Some(b' ') {
            self.space()?;
            keys.push(self.search_key(0)?);
        }
        if keys.is_empty() {
            return Err(format!("{command} needs at least one search key"));
        }
        Ok(SearchKey::And(keys))
    }

    /// `THREAD algorithm charset search-keys` (RFC 5256 section 4); REFERENCES only.
    fn thread(&mut self, uid: bool) -> Parsed<Command> {
        self.space()?;
        let algorithm = self.upper_atom()?;
        if algorithm != "REFERENCES" {
            return Err(format!(
                "unsupported THREAD algorithm {algorithm} (REFERENCES is offered)"
            ));
        }
        self.space()?;
        let key = self.charset_and_keys("THREAD")?;
        Ok(Command::Thread { uid, key })
    }

    /// `SORT (criteria) charset search-keys` (RFC 5256 section 3).
    fn sort(&mut self, uid: bool) -> Parsed<Command> {
        use crate::sort::{SortCriterion, SortKey};
        self.space()?;
        self.expect(b'(')?;
        let mut criteria = Vec::new();
        let mut reverse = false;
        loop {
            let word = self.upper_atom()?;
            let key = match word.as_str() {
                "REVERSE" => {
                    reverse = true;
                    self.space()?;
                    continue;
                }
                "ARRIVAL" => SortKey::Arrival,
                "CC" => SortKey::Cc,
                "DATE" => SortKey::Date,
                "FROM" => SortKey::From,
                "SIZE" => SortKey::Size,
                "SUBJECT" => SortKey::Subject,
                "TO" => SortKey::To,
                other => return Err(format!("unknown SORT criterion {other}")),
            };
            criteria.push(SortCriterion { key, reverse });
            reverse = false;
            if self.peek() == Some(b')') {
                break;
            }
            self.space()?;
        }
        self.expect(b')')?;
        self.space()?;
        let key = self.charset_and_keys("SORT")?;
        Ok(Command::Sort { uid, criteria, key })
    }

    fn search_key(&mut self, depth: usize) -> Parsed<SearchKey> {
        if depth > NESTING_DEPTH_MAX {
            return Err("search keys nested too deeply".into());
        }
        match self.peek() {
            Some(b'(') => {
                self.position += 1;
                let mut keys = Vec::new();
                while self.peek() != Some(b')') {
                    if !keys.is_empty() {
                        self.space()?;
                    }
                    keys.push(self.search_key(depth + 1)?);
                }
                self.expect(b')')?;
                return Ok(SearchKey::And(keys));
            }
            Some(byte) if byte.is_ascii_digit() || byte == b'*' || byte == b'$' => {
                return Ok(SearchKey::Sequence(self.sequence_set()?));
            }
            _ => {}
        }
        let name = self.upper_atom()?;
        let key = match name.as_str() {
            "ALL" => SearchKey::All,
            "ANSWERED" => SearchKey::Flag(flag_bits::ANSWERED, true),
            "DELETED" => SearchKey::Flag(flag_bits::DELETED, true),
            "DRAFT" => SearchKey::Flag(flag_bits::DRAFT, true),
            "FLAGGED" => SearchKey::Flag(flag_bits::FLAGGED, true),
            "SEEN" => SearchKey::Flag(flag_bits::SEEN, true),
            "UNANSWERED" => SearchKey::Flag(flag_bits::ANSWERED, false),
            "UNDELETED" => SearchKey::Flag(flag_bits::DELETED, false),
            "UNDRAFT" => SearchKey::Flag(flag_bits::DRAFT, false),
            "UNFLAGGED" => SearchKey::Flag(flag_bits::FLAGGED, false),
            "UNSEEN" => SearchKey::Flag(flag_bits::SEEN, false),
            "NEW" | "RECENT" => SearchKey::Recent(true),
            "OLD" => SearchKey::Recent(false),
            "KEYWORD" | "UNKEYWORD" => {
                self.space()?;
                SearchKey::Keyword(self.atom()?, name == "KEYWORD")
            }
            "FROM" | "TO" | "CC" | "BCC" | "SUBJECT" => {
                self.space()?;
                SearchKey::Header(name, self.astring()?)
            }
            "HEADER" => {
                self.space()?;
                let field = self.astring()?.to_ascii_uppercase();
                self.space()?;
                SearchKey::Header(field, self.astring()?)
            }
            "BODY" => {
                self.space()?;
                SearchKey::Body(self.astring()?)
            }
            "TEXT" => {
                self.space()?;
                SearchKey::Text(self.astring()?)
            }
            "LARGER" | "SMALLER" => {
                self.space()?;
                let size = self.number()?;
                if name == "LARGER" {
                    SearchKey::Larger(size)
                } else {
                    SearchKey::Smaller(size)
                }
            }
            "UID" => {
                self.space()?;
                SearchKey::Uid(self.sequence_set()?)
            }
            "NOT" => {
                self.space()?;
                SearchKey::Not(Box::new(self.search_key(depth + 1)?))
            }
            "OR" => {
                self.space()?;
                let left = self.search_key(depth + 1)?;
                self.space()?;
                let right = self.search_key(depth + 1)?;
                SearchKey::Or(Box::new(left), Box::new(right))
            }
            "MODSEQ" => {
                self.space()?;
                // RFC 7162 section 3.1.5: an optional entry name and type come first.
                if self.peek() == Some(b'"') {
                    self.quoted()?;
                    self.space()?;
                    self.atom()?;
                    self.space()?;
                }
                SearchKey::ModSeq(self.number()?)
            }
            "BEFORE" | "ON" | "SINCE" | "SENTBEFORE" | "SENTON" | "SENTSINCE" => {
                self.space()?;
                let text = self.astring()?;
                let day = parse_date(&text).ok_or_else(|| format!("bad date {text:?}"))?;
                match name.as_str() {
                    "BEFORE" => SearchKey::Before(day),
                    "ON" => SearchKey::On(day),
                    "SINCE" => SearchKey::Since(day),
                    "SENTBEFORE" => SearchKey::SentBefore(day),
                    "SENTON" => SearchKey::SentOn(day),
                    _ => SearchKey::SentSince(day),
                }
            }
            other => return Err(format!("unknown search key {other}")),
        };
        Ok(key)
    }
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// `d-Mon-yyyy` (RFC 9051 `date`) as days since 1970-01-01.
pub fn parse_date(text: &str) -> Option<Day> {
    let mut fields = text.trim().splitn(3, '-');
    let day: u32 = fields.next()?.trim().parse().ok()?;
    let month = fields.next()?.to_ascii_uppercase();
    let month = MONTHS.iter().position(|name| *name == month)? as u32 + 1;
    let year: i64 = fields.next()?.parse().ok()?;
    if !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// `dd-Mon-yyyy hh:mm:ss +zzzz` (RFC 9051 `date-time`) as Unix seconds.
pub fn parse_date_time(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, rest) = text.split_once(' ')?;
    let (time, zone) = rest.trim().split_once(' ')?;
    let day = parse_date(date)?;
    let mut clock = time.split(':');
    let hours: i64 = clock.next()?.parse().ok()?;
    let minutes: i64 = clock.next()?.parse().ok()?;
    let seconds: i64 = clock.next()?.parse().ok()?;
    if hours > 23 || minutes > 59 || seconds > 60 {
        return None;
    }
    let (sign, digits) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    if digits.len() != 4 {
        return None;
    }
    let zone_hours: i64 = digits[..2].parse().ok()?;
    let zone_minutes: i64 = digits[2..].parse().ok()?;
    let offset = sign * (zone_hours * 3600 + zone_minutes * 60);
    Some(day * 86_400 + hours * 3600 + minutes * 60 + seconds - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date of a day number: (year, month 1-12, day 1-31).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Unix seconds as an IMAP `date-time` in UTC: `"24-Nov-2026 08:00:00 +0000"` (unquoted).
pub fn format_date_time(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let seconds = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{:02}-{}-{:04} {:02}:{:02}:{:02} +0000",
        day,
        capitalised_month(month),
        year,
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

fn capitalised_month(month: u32) -> String {
    let name = MONTHS[(month.clamp(1, 12) - 1) as usize];
    format!("{}{}", &name[..1], name[1..].to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Command {
        parse_command(text.as_bytes()).expect("parses").1
    }

    #[test]
    fn literals_at_end_of_line() {
        assert_eq!(
            literal_at_end(b"a APPEND INBOX {12}"),
            Some(LiteralHeader {
                size_bytes: 12,
                synchronizing: true
            })
        );
        assert_eq!(
            literal_at_end(b"a LOGIN {5+}"),
            Some(LiteralHeader {
                size_bytes: 5,
                synchronizing: false
            })
        );
        assert_eq!(literal_at_end(b"a NOOP"), None);
        assert_eq!(literal_at_end(b"a {}"), None);
        assert_eq!(literal_at_end(b"a {99999999999999999999}"), None);
    }

    #[test]
    fn login_with_quoted_and_literal_strings() {
        match parse("a1 LOGIN \"alice@example.org\" {5}\r\np\"ss ") {
            Command::Login { user, password } => {
                assert_eq!(user, "alice@example.org");
                assert_eq!(password.expose(), b"p\"ss ");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fetch_items_and_sections() {
        match parse("t UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To)] BODY[1.2]<0.100> RFC822.SIZE)") {
            Command::Fetch { uid, items, .. } => {
                assert!(uid);
                assert_eq!(items.len(), 4);
                assert_eq!(
                    items[1],
                    FetchItem::Section {
                        section: Section {
                            part: vec![],
                            text: Some(SectionText::Header),
                            fields: Some((vec!["FROM".into(), "TO".into()], false)),
                        },
                        peek: true,
                        partial: None
                    }
                );
                assert_eq!(
                    items[2],
                    FetchItem::Section {
                        section: Section {
                            part: vec![1, 2],
                            text: None,
                            fields: None
                        },
                        peek: false,
                        partial: Some((0, 100))
                    }
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn search_keys_nest() {
        match parse(
            "s SEARCH RETURN (MIN COUNT) OR FROM bob NOT SEEN (UID 1:5 BODY \"hello world\")",
        ) {
            Command::Search { returns, key, .. } => {
                assert_eq!(returns, Some(vec![SearchReturn::Min, SearchReturn::Count]));
                let SearchKey::And(keys) = key else { panic!() };
                assert_eq!(keys.len(), 2);
                assert!(matches!(keys[0], SearchKey::Or(..)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_keep_the_tag() {
        let error = parse_command(b"x7 FROB").expect_err("unknown");
        assert_eq!(error.tag.as_deref(), Some("x7"));
        let error = parse_command(b"").expect_err("empty");
        assert_eq!(error.tag, None);
        assert!(parse_command(b"a FETCH 1 (BODY[").is_err());
        assert!(parse_command(b"a LOGIN {10}\r\nshort").is_err());
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_date("1-Jan-1970"), Some(0));
        let unix = parse_date_time("24-Nov-2026 08:00:00 +0100").expect("date-time");
        assert_eq!(format_date_time(unix), "24-Nov-2026 07:00:00 +0000");
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }
}
