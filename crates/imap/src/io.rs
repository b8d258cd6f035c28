//! Framing of an IMAP connection: bounded lines, literals (RFC 9051 section 4.3, LITERAL+
//! of RFC 7888) read only after their size has been checked, and buffered output.
//! Generic over the stream, so the same code runs on plain TCP, TLS, and in-memory pipes.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::limits::{
    COMMAND_SIZE_MAX_BYTES, LINE_LENGTH_MAX_BYTES, LITERALS_PER_COMMAND_MAX, LITERAL_SIZE_MAX_BYTES,
};
use crate::syntax::{literal_at_end, tag_and_name};

/// Output is written to the stream once this much has gathered (large FETCH responses).
pub const OUTPUT_FLUSH_BYTES: usize = 256 * 1024;

/// How much of a too-long line is kept: enough to answer with its tag.
const TOO_LONG_PREFIX_BYTES: usize = 64;

pub enum Line {
    Complete(Vec<u8>),
    /// The line was over the limit; its first octets, for the tag.
    TooLong(Vec<u8>),
}

/// What reading a command produced.
pub enum Frame {
    Command(Vec<u8>),
    /// Answer `tag BAD message` (or `* BAD` without a tag) and go on.
    Bad {
        tag: Option<String>,
        message: String,
    },
    /// A synchronizing literal refused before it was sent: answer and go on.
    Refused {
        tag: String,
        response: String,
    },
    /// A non-synchronizing literal over the limit: its data is already on the way, so answer
    /// and end the session (RFC 7888 section 4).
    Fatal {
        tag: Option<String>,
        response: String,
    },
}

/// Read-ahead per connection. Commands are short and literals are read through it in pieces,
/// so a small buffer costs a few more reads and saves memory on every idle connection
/// (tokio's default is 8 KiB; measured with `bench-idle`).
const READ_BUFFER_BYTES: usize = 2 * 1024;

pub struct Io<S> {
    stream: BufReader<S>,
    /// The part of a line read so far: kept here, not in a future, so that reading a line
    /// can be cancelled (IDLE waits on a line and on mailbox changes at once) without loss.
    partial: Vec<u8>,
    partial_too_long: bool,
    pub out: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    pub fn new(stream: S) -> Io<S> {
        Io {
            stream: BufReader::with_capacity(READ_BUFFER_BYTES, stream),
            partial: Vec::new(),
            partial_too_long: false,
            out: Vec::new(),
        }
    }

    /// The stream, dropping anything read ahead (after STARTTLS, pipelined plaintext must be
    /// discarded: RFC 9051 section 6.2.1).
    pub fn into_inner(self) -> S {
        self.stream.into_inner()
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    pub fn line(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            self.stream.get_mut().write_all(&out).await?;
        }
        self.stream.get_mut().flush().await
    }

    pub async fn flush_if_large(&mut self) -> std::io::Result<()> {
        if self.out.len() >= OUTPUT_FLUSH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// One line without its CRLF, at most `max_bytes` long; `None` at end of stream.
    /// Cancel-safe.
    pub async fn read_line(&mut self, max_bytes: usize) -> std::io::Result<Option<Line>> {
        loop {
            let buffer = self.stream.fill_buf().await?;
            if buffer.is_empty() {
                return Ok(None);
            }
            let (chunk, complete) = match buffer.iter().position(|&byte| byte == b'\n') {
                Some(newline) => (&buffer[..newline + 1], true),
                None => (buffer, false),
            };
            let taken = chunk.len();
            if !self.partial_too_long {
                if self.partial.len() + taken > max_bytes + 2 {
                    self.partial_too_long = true;
                    self.partial.extend_from_slice(chunk);
                    self.partial.truncate(TOO_LONG_PREFIX_BYTES);
                } else {
                    self.partial.extend_from_slice(chunk);
                }
            }
            self.stream.consume(taken);
            if complete {
                let too_long = std::mem::take(&mut self.partial_too_long);
                let mut line = std::mem::take(&mut self.partial);
                if too_long {
                    return Ok(Some(Line::TooLong(line)));
                }
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(Line::Complete(line)));
            }
        }
    }

    async fn read_exact_into(&mut self, size: usize, into: &mut Vec<u8>) -> std::io::Result<()> {
        let start = into.len();
        into.resize(start + size, 0);
        self.stream.read_exact(&mut into[start..]).await?;
        Ok(())
    }

    /// One command with its literals. `append_limit_bytes` bounds an APPEND's message.
    pub async fn read_command(
        &mut self,
        append_limit_bytes: usize,
    ) -> std::io::Result<Option<Frame>> {
        let mut command = Vec::new();
        let mut literals = 0;
        let mut tag = None;
        let mut is_append = false;
        loop {
            let line = match self.read_line(LINE_LENGTH_MAX_BYTES).await? {
                None => return Ok(None),
                Some(Line::TooLong(prefix)) => {
                    return Ok(Some(Frame::Bad {
                        tag: tag.or_else(|| tag_and_name(&prefix).0),
                        message: format!("line longer than {LINE_LENGTH_MAX_BYTES} octets"),
                    }))
                }
                Some(Line::Complete(line)) => line,
            };
            if command.is_empty() {
                let (first_tag, name) = tag_and_name(&line);
                tag = first_tag;
                is_append = name.as_deref() == Some("APPEND");
            }
            command.extend_from_slice(&line);
            let Some(literal) = literal_at_end(&line) else {
                return Ok(Some(Frame::Command(command)));
            };
            literals += 1;
            let limit = if is_append {
                append_limit_bytes
            } else {
                LITERAL_SIZE_MAX_BYTES
            };
            let too_big = literal.size_bytes > limit as u64
                || literals > LITERALS_PER_COMMAND_MAX
                || (!is_append
                    && command.len() as u64 + literal.size_bytes > COMMAND_SIZE_MAX_BYTES as u64);
            if too_big {
                let response = if is_append {
                    format!("NO [TOOBIG] the message is over the APPENDLIMIT of {limit} octets")
                } else {
                    format!("BAD [TOOBIG] literal over the limit of {limit} octets")
                };
                if literal.synchronizing {
                    if let Some(tag) = tag {
                        return Ok(Some(Frame::Refused { tag, response }));
                    }
                    return Ok(Some(Frame::Bad {
                        tag: None,
                        message: "a command needs a tag".into(),
                    }));
                }
                return Ok(Some(Frame::Fatal {
                    tag,
                    response: format!(
                        "BAD [TOOBIG] non-synchronizing literal over the limit of {limit} octets"
                    ),
                }));
            }
            command.extend_from_slice(b"\r\n");
            if literal.synchronizing {
                self.line("+ Ready for literal data");
                self.flush().await?;
            }
            // Bounded above by the limit just checked.
            self.read_exact_into(literal.size_bytes as usize, &mut command)
                .await?;
        }
    }
}
