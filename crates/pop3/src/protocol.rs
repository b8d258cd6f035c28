//! POP3 commands and replies as values, with no IO: RFC 1939 (the protocol), RFC 2449 (CAPA,
//! extended response codes), RFC 2595 (STLS) and RFC 5034 (AUTH).
//!
//! A command line goes in (without its CRLF), a [`Command`] or a [`CommandError`] comes out.

use std::fmt;

/// RFC 2449 section 4: a command line is at most 255 octets including the CRLF.
pub const COMMAND_LINE_LENGTH_MAX_BYTES: usize = 255;
/// RFC 1939 section 3: arguments are at most 40 characters. A SASL initial response is longer
/// (RFC 5034 section 4 raises the line limit for AUTH to 255 octets), so it is checked apart.
pub const ARGUMENT_LENGTH_MAX_CHARS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Capa,
    Stls,
    User(String),
    Pass(String),
    /// `AUTH mechanism [initial-response]`; `AUTH` alone lists mechanisms (RFC 5034 section 4).
    Auth {
        mechanism: Option<String>,
        initial_response: Option<String>,
    },
    Stat,
    List(Option<u32>),
    Uidl(Option<u32>),
    Retr(u32),
    Top {
        message: u32,
        lines: u32,
    },
    Dele(u32),
    Rset,
    Noop,
    Quit,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("command line too long (the limit is 255 octets)")]
    LineTooLong,
    #[error("command line is not valid UTF-8")]
    NotUtf8,
    #[error("unknown command")]
    Unknown,
    #[error("{0}")]
    BadArguments(&'static str),
}

impl Command {
    pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
        // The caller strips CRLF; the limit counts it.
        if line.len() + 2 > COMMAND_LINE_LENGTH_MAX_BYTES {
            return Err(CommandError::LineTooLong);
        }
        let text = std::str::from_utf8(line).map_err(|_| CommandError::NotUtf8)?;
        let mut words = text.split(' ');
        let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
        let arguments: Vec<&str> = words.collect();
        let no_arguments = |command: Command| {
            if arguments.is_empty() {
                Ok(command)
            } else {
                Err(CommandError::BadArguments(
                    "this command takes no arguments",
                ))
            }
        };
        match keyword.as_str() {
            "CAPA" => no_arguments(Command::Capa),
            "STLS" => no_arguments(Command::Stls),
            "STAT" => no_arguments(Command::Stat),
            "RSET" => no_arguments(Command::Rset),
            "NOOP" => no_arguments(Command::Noop),
            "QUIT" => no_arguments(Command::Quit),
            "USER" => Ok(Command::User(one_argument(&arguments)?.to_string())),
            // A password may contain spaces (RFC 1939 section 7 leaves it to the server):
            // everything after "PASS " is the password.
            "PASS" => match text.get(5..) {
                Some(password) if text.len() > 5 => Ok(Command::Pass(password.to_string())),
                _ => Err(CommandError::BadArguments("PASS needs a password")),
            },
            "AUTH" => match arguments.as_slice() {
                [] => Ok(Command::Auth {
                    mechanism: None,
                    initial_response: None,
                }),
                [mechanism] => Ok(Command::Auth {
                    mechanism: Some(mechanism.to_ascii_uppercase()),
                    initial_response: None,
                }),
                [mechanism, response] => Ok(Command::Auth {
                    mechanism: Some(mechanism.to_ascii_uppercase()),
                    initial_response: Some((*response).to_string()),
                }),
                _ => Err(CommandError::BadArguments(
                    "AUTH mechanism [initial-response]",
                )),
            },
            "LIST" => Ok(Command::List(optional_number(&arguments)?)),
            "UIDL" => Ok(Command::Uidl(optional_number(&arguments)?)),
            "RETR" => Ok(Command::Retr(number(one_argument(&arguments)?)?)),
            "DELE" => Ok(Command::Dele(number(one_argument(&arguments)?)?)),
            "TOP" => match arguments.as_slice() {
                [message, lines] => Ok(Command::Top {
                    message: number(message)?,
                    lines: lines
                        .parse()
                        .map_err(|_| CommandError::BadArguments("TOP msg n: n is a number"))?,
                }),
                _ => Err(CommandError::BadArguments(
                    "TOP needs a message number and a line count",
                )),
            },
            _ => Err(CommandError::Unknown),
        }
    }
}

fn one_argument<'a>(arguments: &[&'a str]) -> Result<&'a str, CommandError> {
    match arguments {
        [argument]
            if !argument.is_empty() && argument.chars().count() <= ARGUMENT_LENGTH_MAX_CHARS =>
        {
            Ok(argument)
        }
        [argument] if !argument.is_empty() => Err(CommandError::BadArguments("argument too long")),
        _ => Err(CommandError::BadArguments(
            "this command takes one argument",
        )),
    }
}

fn optional_number(arguments: &[&str]) -> Result<Option<u32>, CommandError> {
    if arguments.is_empty() {
        return Ok(None);
    }
    Ok(Some(number(one_argument(arguments)?)?))
}

/// A message number: 1 or more (RFC 1939 section 3).
fn number(text: &str) -> Result<u32, CommandError> {
    match text.parse::<u32>() {
        Ok(value) if value > 0 => Ok(value),
        _ => Err(CommandError::BadArguments(
            "a message number is a positive integer",
        )),
    }
}

/// RFC 2449 section 8 / RFC 3206 extended response codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseCode {
    Auth,
    InUse,
    SysTemp,
    SysPerm,
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResponseCode::Auth => "[AUTH]",
            ResponseCode::InUse => "[IN-USE]",
            ResponseCode::SysTemp => "[SYS/TEMP]",
            ResponseCode::SysPerm => "[SYS/PERM]",
        })
    }
}

pub fn ok(text: &str) -> Vec<u8> {
    format!("+OK {text}\r\n").into_bytes()
}

pub fn err(text: &str) -> Vec<u8> {
    format!("-ERR {text}\r\n").into_bytes()
}

pub fn err_code(code: ResponseCode, text: &str) -> Vec<u8> {
    format!("-ERR {code} {text}\r\n").into_bytes()
}

/// A multi-line response body (RFC 1939 section 3): CRLF line endings, lines starting with
/// "." byte-stuffed, ended by ".\r\n". A bare LF in a stored message is sent as CRLF, and a
/// final line without an ending gets one, so the terminator is always on a line of its own.
pub fn multiline(body: &[u8], max_body_lines: Option<u32>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64 + 8);
    let mut in_body = false;
    let mut body_lines = 0u32;
    for line in split_lines(body) {
        if in_body {
            if let Some(max) = max_body_lines {
                if body_lines >= max {
                    break;
                }
            }
            body_lines += 1;
        }
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        if line.is_empty() && !in_body {
            in_body = true;
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Lines without their endings (CRLF or bare LF).
fn split_lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let trimmed = body
        .strip_suffix(b"\n")
        .map(|rest| rest.strip_suffix(b"\r").unwrap_or(rest))
        .unwrap_or(body);
    let empty = body.is_empty();
    trimmed
        .split(|&byte| byte == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(move |_| !empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_case_insensitively() {
        assert_eq!(Command::parse(b"capa"), Ok(Command::Capa));
        assert_eq!(
            Command::parse(b"USER alice@example.org"),
            Ok(Command::User("alice@example.org".into()))
        );
        assert_eq!(
            Command::parse(b"PASS with spaces inside"),
            Ok(Command::Pass("with spaces inside".into()))
        );
        assert_eq!(
            Command::parse(b"top 3 10"),
            Ok(Command::Top {
                message: 3,
                lines: 10
            })
        );
        assert_eq!(Command::parse(b"LIST"), Ok(Command::List(None)));
        assert_eq!(Command::parse(b"UIDL 2"), Ok(Command::Uidl(Some(2))));
        assert_eq!(
            Command::parse(b"AUTH PLAIN AGFsaWNlAHB3"),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial_response: Some("AGFsaWNlAHB3".into())
            })
        );
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(Command::parse(b"FROB"), Err(CommandError::Unknown));
        assert_eq!(Command::parse(b""), Err(CommandError::Unknown));
        assert!(matches!(
            Command::parse(b"RETR 0"),
            Err(CommandError::BadArguments(_))
        ));
        assert!(matches!(
            Command::parse(b"RETR -1"),
            Err(CommandError::BadArguments(_))
        ));
        assert!(matches!(
            Command::parse(b"RETR"),
            Err(CommandError::BadArguments(_))
        ));
        assert!(matches!(
            Command::parse(b"STAT now"),
            Err(CommandError::BadArguments(_))
        ));
        assert!(matches!(
            Command::parse(b"PASS"),
            Err(CommandError::BadArguments(_))
        ));
        assert_eq!(Command::parse(&[0xff, 0xfe]), Err(CommandError::NotUtf8));
        assert_eq!(Command::parse(&[b'A'; 254]), Err(CommandError::LineTooLong));
        assert!(matches!(
            Command::parse(format!("USER {}", "a".repeat(41)).as_bytes()),
            Err(CommandError::BadArguments("argument too long"))
        ));
    }

    #[test]
    fn multiline_stuffs_dots_and_normalises_line_endings() {
        assert_eq!(multiline(b"a\r\n.b\nc", None), b"a\r\n..b\r\nc\r\n.\r\n");
        assert_eq!(multiline(b"", None), b".\r\n");
        assert_eq!(multiline(b"x\r\n", None), b"x\r\n.\r\n");
    }

    #[test]
    fn top_sends_headers_blank_line_and_n_body_lines() {
        let message = b"H: 1\r\nI: 2\r\n\r\nb1\r\nb2\r\nb3\r\n";
        assert_eq!(
            multiline(message, Some(2)),
            b"H: 1\r\nI: 2\r\n\r\nb1\r\nb2\r\n.\r\n"
        );
        assert_eq!(multiline(message, Some(0)), b"H: 1\r\nI: 2\r\n\r\n.\r\n");
    }
}
