//! Sans-IO framing of the bytes a client sends: command lines (RFC 5321 section 2.3.8, CRLF
//! only), DATA content with its `<CRLF>.<CRLF>` end and dot-stuffing (section 4.5.2), and BDAT
//! chunks of a declared length (RFC 3030). Bytes in, framed units out, with a bound on every
//! allocation; no parsing of commands (that is `smtp-proto`'s).

/// Bytes received and not yet framed.
#[derive(Debug, Default)]
pub struct InputBuffer {
    bytes: Vec<u8>,
    start: usize,
    /// Inside an overlong command line: drop bytes until its LF.
    discarding_line: bool,
}

/// What [`InputBuffer::take_command_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum CommandLine {
    /// A whole line, CRLF removed.
    Line(Vec<u8>),
    /// A line ended by a bare LF: refused (RFC 5321 section 2.3.8), so that no two parties
    /// can disagree on where a command ends.
    BareLineFeed,
    /// A line longer than the limit, dropped up to its end.
    TooLong,
}

impl InputBuffer {
    pub fn new() -> InputBuffer {
        InputBuffer::default()
    }

    pub fn pending(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    pub fn is_empty(&self) -> bool {
        self.pending().is_empty()
    }

    pub fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    pub fn extend(&mut self, received: &[u8]) {
        if self.start > 0 && self.start == self.bytes.len() {
            self.bytes.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        self.bytes.extend_from_slice(received);
    }

    pub fn consume(&mut self, count: usize) {
        self.start = (self.start + count).min(self.bytes.len());
    }

    /// Drop everything buffered (after STARTTLS: bytes pipelined behind it were sent in the
    /// clear and must not be taken as if they came over TLS, RFC 3207 section 4.2).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.start = 0;
        self.discarding_line = false;
    }

    /// The next command line, or `None` when more bytes are needed. `length_max_bytes`
    /// counts the CRLF.
    pub fn take_command_line(&mut self, length_max_bytes: usize) -> Option<CommandLine> {
        loop {
            let pending = self.pending();
            let newline = pending.iter().position(|&byte| byte == b'\n');
            if self.discarding_line {
                match newline {
                    Some(position) => {
                        self.consume(position + 1);
                        self.discarding_line = false;
                        return Some(CommandLine::TooLong);
                    }
                    None => {
                        let all = pending.len();
                        self.consume(all);
                        return None;
                    }
                }
            }
            match newline {
                Some(position) if position < length_max_bytes => {
                    let line = &pending[..position];
                    let outcome = match line.strip_suffix(b"\r") {
                        Some(content) => CommandLine::Line(content.to_vec()),
                        None => CommandLine::BareLineFeed,
                    };
                    self.consume(position + 1);
                    return Some(outcome);
                }
                Some(_) => {
                    self.discarding_line = true;
                    continue;
                }
                None if pending.len() >= length_max_bytes => {
                    self.discarding_line = true;
                    continue;
                }
                None => return None,
            }
        }
    }
}

/// Why a message body was refused, found while reading it (the reply comes after its end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    LineTooLong,
}

/// The content of a DATA command, accumulated line by line until `<CRLF>.<CRLF>`.
#[derive(Debug)]
pub struct DataReader {
    body: Vec<u8>,
    size_max_bytes: usize,
    line_length_max_bytes: usize,
    /// The previous line ended with CRLF (or there was none): only then does a line starting
    /// with '.' end the data or lose its stuffing dot. A bare LF never starts a "line" that
    /// could end the message (the SMTP smuggling attack of 2023 relies on servers that do).
    after_crlf: bool,
    inside_long_line: bool,
    error: Option<BodyError>,
}

impl DataReader {
    pub fn new(size_max_bytes: usize, line_length_max_bytes: usize) -> DataReader {
        DataReader {
            body: Vec::new(),
            size_max_bytes,
            line_length_max_bytes,
            after_crlf: true,
            inside_long_line: false,
            error: None,
        }
    }

    /// Consume what `input` holds; `true` once the end of the data has been read.
    pub fn feed(&mut self, input: &mut InputBuffer) -> bool {
        loop {
            let pending = input.pending();
            let Some(position) = pending.iter().position(|&byte| byte == b'\n') else {
                if pending.len() > self.line_length_max_bytes {
                    // Keep nothing of an overlong line: the message is refused at its end.
                    self.fail(BodyError::LineTooLong);
                    self.inside_long_line = true;
                    let all = pending.len();
                    input.consume(all);
                }
                return false;
            };
            let line = &pending[..=position];
            let ends_with_crlf = line.ends_with(b"\r\n");
            if self.inside_long_line {
                self.inside_long_line = false;
            } else if line.len() > self.line_length_max_bytes {
                self.fail(BodyError::LineTooLong);
            } else if self.after_crlf && line == b".\r\n" {
                input.consume(position + 1);
                return true;
            } else {
                let content = if self.after_crlf && line.first() == Some(&b'.') {
                    &line[1..]
                } else {
                    line
                };
                if self.error.is_none() {
                    if self.body.len() + content.len() > self.size_max_bytes {
                        self.fail(BodyError::TooLarge);
                    } else {
                        self.body.extend_from_slice(content);
                    }
                }
            }
            self.after_crlf = ends_with_crlf;
            input.consume(position + 1);
        }
    }

    fn fail(&mut self, error: BodyError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
        // Nothing of a refused message is kept in memory.
        self.body = Vec::new();
    }

    pub fn finish(self) -> Result<Vec<u8>, BodyError> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.body),
        }
    }
}

/// Take up to `remaining` bytes of a BDAT chunk from `input` into `body` (or drop them once the
/// message is over `size_max_bytes`). Returns how many bytes were taken.
pub fn take_chunk(
    input: &mut InputBuffer,
    remaining: usize,
    body: &mut Vec<u8>,
    too_large: &mut bool,
    size_max_bytes: usize,
) -> usize {
    let count = remaining.min(input.len());
    if !*too_large {
        if body.len() + count > size_max_bytes {
            *too_large = true;
            *body = Vec::new();
        } else {
            body.extend_from_slice(&input.pending()[..count]);
        }
    }
    input.consume(count);
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(bytes: &[u8]) -> InputBuffer {
        let mut input = InputBuffer::new();
        input.extend(bytes);
        input
    }

    #[test]
    fn command_lines_end_with_crlf_and_pipelined_lines_come_one_by_one() {
        let mut input = buffer(b"EHLO a\r\nMAIL FROM:<>\r\nRCPT");
        assert_eq!(
            input.take_command_line(1000),
            Some(CommandLine::Line(b"EHLO a".to_vec()))
        );
        assert_eq!(
            input.take_command_line(1000),
            Some(CommandLine::Line(b"MAIL FROM:<>".to_vec()))
        );
        assert_eq!(input.take_command_line(1000), None);
        input.extend(b" TO:<a@b>\r\n");
        assert_eq!(
            input.take_command_line(1000),
            Some(CommandLine::Line(b"RCPT TO:<a@b>".to_vec()))
        );
    }

    #[test]
    fn a_bare_lf_is_reported_and_an_overlong_line_is_dropped_to_its_end() {
        let mut input = buffer(b"NOOP\nNOOP\r\n");
        assert_eq!(
            input.take_command_line(1000),
            Some(CommandLine::BareLineFeed)
        );
        assert_eq!(
            input.take_command_line(1000),
            Some(CommandLine::Line(b"NOOP".to_vec()))
        );
        let mut input = buffer(&[b'A'; 30]);
        assert_eq!(input.take_command_line(10), None);
        assert!(input.is_empty(), "an overlong line is not kept");
        input.extend(b"AAAA\r\nQUIT\r\n");
        assert_eq!(input.take_command_line(10), Some(CommandLine::TooLong));
        assert_eq!(
            input.take_command_line(10),
            Some(CommandLine::Line(b"QUIT".to_vec()))
        );
        // The limit counts the CRLF: 8 bytes + CRLF fit in 10, 9 bytes + CRLF do not... 11.
        let mut input = buffer(b"12345678\r\n123456789\r\n");
        assert!(matches!(
            input.take_command_line(10),
            Some(CommandLine::Line(_))
        ));
        assert_eq!(input.take_command_line(10), Some(CommandLine::TooLong));
    }

    #[test]
    fn data_ends_at_crlf_dot_crlf_and_loses_its_stuffing_dots() {
        let mut reader = DataReader::new(1000, 100);
        let mut input = buffer(b"Subject: x\r\n\r\n..leading dot\r\n");
        assert!(!reader.feed(&mut input));
        input.extend(b".\r\nQUIT\r\n");
        assert!(reader.feed(&mut input));
        assert_eq!(input.pending(), b"QUIT\r\n");
        assert_eq!(
            reader.finish().expect("body"),
            b"Subject: x\r\n\r\n.leading dot\r\n".to_vec()
        );
    }

    #[test]
    fn a_dot_after_a_bare_lf_does_not_end_the_data() {
        let mut reader = DataReader::new(1000, 100);
        let mut input = buffer(b"a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n");
        assert!(reader.feed(&mut input));
        assert_eq!(
            reader.finish().expect("body"),
            b"a\n.\r\nMAIL FROM:<x@y>\r\n".to_vec()
        );
    }

    #[test]
    fn an_oversized_body_or_line_is_read_to_its_end_and_refused() {
        let mut reader = DataReader::new(10, 100);
        let mut input = buffer(b"0123456789\r\nmore\r\n.\r\nNOOP\r\n");
        assert!(reader.feed(&mut input));
        assert_eq!(reader.finish(), Err(BodyError::TooLarge));
        assert_eq!(input.pending(), b"NOOP\r\n");

        let mut reader = DataReader::new(1000, 8);
        let mut input = buffer(b"short\r\n");
        assert!(!reader.feed(&mut input));
        input.extend(b"a line that is far too long");
        assert!(!reader.feed(&mut input));
        assert!(input.is_empty());
        input.extend(b" still\r\n.\r\n");
        assert!(reader.feed(&mut input));
        assert_eq!(reader.finish(), Err(BodyError::LineTooLong));
    }

    #[test]
    fn chunks_take_exactly_their_length() {
        let mut input = buffer(b"hello worldQUIT\r\n");
        let mut body = Vec::new();
        let mut too_large = false;
        assert_eq!(
            take_chunk(&mut input, 11, &mut body, &mut too_large, 100),
            11
        );
        assert_eq!(body, b"hello world");
        assert_eq!(input.pending(), b"QUIT\r\n");
        assert_eq!(take_chunk(&mut input, 11, &mut body, &mut too_large, 12), 6);
        assert!(too_large);
        assert!(body.is_empty());
    }
}
