//! SMTP replies (RFC 5321 section 4.2) with enhanced status codes (RFC 2034, RFC 3463).

use std::fmt::Write as _;

/// One reply: a code, an enhanced status code and text lines (several lines make a
/// multiline reply, as EHLO's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// RFC 3463 `class.subject.detail`; empty for the greeting and EHLO, which carry none.
    pub enhanced: &'static str,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced,
            lines: vec![text.into()],
        }
    }

    pub fn multiline(code: u16, lines: Vec<String>) -> Reply {
        Reply {
            code,
            enhanced: "",
            lines,
        }
    }

    /// A negative reply caused by the client (5xx), counted toward the error limit.
    pub fn is_permanent_failure(&self) -> bool {
        self.code >= 500
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut text = String::new();
        let count = self.lines.len().max(1);
        for index in 0..count {
            let line = self.lines.get(index).map(String::as_str).unwrap_or("");
            let separator = if index + 1 == count { ' ' } else { '-' };
            let _ = write!(text, "{}{}", self.code, separator);
            if !self.enhanced.is_empty() {
                let _ = write!(text, "{} ", self.enhanced);
            }
            // A reply line never carries a CR or LF of its own (a client-supplied value
            // echoed back could otherwise forge a reply).
            for character in line.chars() {
                if character != '\r' && character != '\n' {
                    text.push(character);
                }
            }
            text.push_str("\r\n");
        }
        out.extend_from_slice(text.as_bytes());
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multiline_replies_are_framed_as_rfc_5321_says() {
        assert_eq!(
            Reply::new(250, "2.1.0", "ok").to_bytes(),
            b"250 2.1.0 ok\r\n".to_vec()
        );
        assert_eq!(
            Reply::multiline(250, vec!["a".into(), "b".into()]).to_bytes(),
            b"250-a\r\n250 b\r\n".to_vec()
        );
        assert_eq!(
            Reply::new(500, "5.5.2", "x\r\n250 forged").to_bytes(),
            b"500 5.5.2 x250 forged\r\n".to_vec()
        );
    }
}
