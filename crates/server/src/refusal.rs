//! What a connection is told when the server will not serve it, in its protocol's own words:
//! too many connections (RFC 5321 section 4.2.3 code 421 with RFC 3463 status 4.7.0 for SMTP,
//! `BYE [UNAVAILABLE]` of RFC 9051 section 7.1 for IMAP, `-ERR [SYS/TEMP]` of RFC 3206 for
//! POP3, HTTP `503` with `Retry-After` of RFC 9110 section 15.6.4), or, until the protocol
//! implementations land, that the service is not available yet.
//!
//! Every step is bounded: the HTTP request head by size and time, each write by time, and the
//! wait for the client to close by time and bytes. A shutdown cuts every wait short.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use crate::config::Protocol;
use crate::session::ShutdownSignal;

/// An HTTP request head larger than this is not read further (RFC 9110 section 21.1 leaves
/// the bound to the server; 16 KiB is more than any browser sends).
pub const HTTP_REQUEST_HEAD_MAX_BYTES: usize = 16 * 1024;
/// A client that has not sent a whole request head by then is disconnected.
pub const HTTP_REQUEST_HEAD_TIMEOUT_SECS: u64 = 10;
/// How long a busy HTTPS client is asked to wait before trying again.
pub const HTTP_BUSY_RETRY_AFTER_SECS: u64 = 60;
/// A reply that cannot be written in this time (the client does not read) is abandoned.
pub const REPLY_WRITE_TIMEOUT_SECS: u64 = 10;
/// After the reply, the server waits this long for the client to close, reading and
/// discarding what it sends, so that the client sees the reply rather than a reset.
pub const CLOSE_DRAIN_TIMEOUT_MS: u64 = 1000;
/// The most the server reads and discards while waiting for the client to close.
pub const CLOSE_DRAIN_MAX_BYTES: usize = 64 * 1024;

/// Why a connection is turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The protocol is not implemented yet (the placeholder until its issue lands).
    NotAvailableYet,
    /// The client already holds its share of connections.
    TooManyFromClient,
    /// The server holds all the connections it will.
    TooManyTotal,
}

/// Sends the refusal in the protocol's words and closes the connection.
pub(crate) async fn refuse<S>(
    mut stream: S,
    protocol: Protocol,
    hostname: &str,
    refusal: Refusal,
    shutdown: ShutdownSignal,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let reply = match protocol {
        Protocol::Http => {
            let mut shutdown_while_reading = shutdown.clone();
            let head = tokio::select! {
                head = read_request_head(&mut stream) => head,
                () = shutdown_while_reading.requested() => RequestHead::Incomplete,
            };
            match head {
                RequestHead::Complete { method_is_head } => http_response(refusal, method_is_head),
                RequestHead::TooLarge => http_response(refusal, false),
                // Nothing to answer: the client went away, was too slow, or we are stopping.
                RequestHead::Incomplete => return,
            }
        }
        Protocol::Smtp => smtp_reply(hostname, refusal).into_bytes(),
        Protocol::Imap => imap_reply(refusal).into_bytes(),
        Protocol::Pop3 => pop3_reply(refusal).into_bytes(),
    };
    let write = async {
        stream.write_all(&reply).await?;
        stream.flush().await?;
        // Sends a TLS close_notify where there is TLS, then the TCP FIN.
        stream.shutdown().await
    };
    match timeout(Duration::from_secs(REPLY_WRITE_TIMEOUT_SECS), write).await {
        Ok(Ok(())) => drain_until_closed(&mut stream, shutdown).await,
        Ok(Err(error)) => tracing::debug!("cannot send the reply: {error}"),
        Err(_) => {
            tracing::debug!("the client did not read the reply in {REPLY_WRITE_TIMEOUT_SECS}s")
        }
    }
}

/// RFC 3463 status 4.3.2 "system not accepting network messages" for a service that is
/// not there yet, 4.7.0 (a policy refusal) for too many connections.
pub fn smtp_reply(hostname: &str, refusal: Refusal) -> String {
    let code = match refusal {
        Refusal::NotAvailableYet => "421 4.3.2",
        Refusal::TooManyFromClient | Refusal::TooManyTotal => "421 4.7.0",
    };
    format!("{code} {hostname} {}\r\n", reason_text("SMTP", refusal))
}

/// An untagged BYE, which a client may receive instead of a greeting (RFC 9051 section 7.1.5).
pub fn imap_reply(refusal: Refusal) -> String {
    format!("* BYE [UNAVAILABLE] {}\r\n", reason_text("IMAP", refusal))
}

/// `-ERR` with the SYS/TEMP response code of RFC 3206 (a temporary problem of the server).
pub fn pop3_reply(refusal: Refusal) -> String {
    format!("-ERR [SYS/TEMP] {}\r\n", reason_text("POP3", refusal))
}

fn reason_text(service_name: &str, refusal: Refusal) -> String {
    match refusal {
        Refusal::NotAvailableYet => format!("Letterlock: {service_name} is not available yet"),
        Refusal::TooManyFromClient => {
            "Letterlock: too many connections from your address, try again later".to_string()
        }
        Refusal::TooManyTotal => "Letterlock: too many connections, try again later".to_string(),
    }
}

/// A complete `503 Service Unavailable` response that closes the connection. After a `HEAD`
/// request it carries no body (RFC 9110 section 9.3.2).
pub fn http_response(refusal: Refusal, method_is_head: bool) -> Vec<u8> {
    let (body, retry_after) = match refusal {
        Refusal::NotAvailableYet => (
            "Letterlock: the web interface is not available yet.\n",
            None,
        ),
        Refusal::TooManyFromClient => (
            "Letterlock: too many connections from your address, try again later.\n",
            Some(HTTP_BUSY_RETRY_AFTER_SECS),
        ),
        Refusal::TooManyTotal => (
            "Letterlock: too many connections, try again later.\n",
            Some(HTTP_BUSY_RETRY_AFTER_SECS),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 503 Service Unavailable\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         Cache-Control: no-store\r\n\
         Connection: close\r\n",
        body.len()
    );
    if let Some(seconds) = retry_after {
        response.push_str(&format!("Retry-After: {seconds}\r\n"));
    }
    response.push_str("\r\n");
    if !method_is_head {
        response.push_str(body);
    }
    response.into_bytes()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestHead {
    Complete { method_is_head: bool },
    TooLarge,
    Incomplete,
}

/// Reads until the empty line that ends an HTTP/1.1 request head (RFC 9112 section 2.1),
/// within [`HTTP_REQUEST_HEAD_MAX_BYTES`] and [`HTTP_REQUEST_HEAD_TIMEOUT_SECS`].
async fn read_request_head<S: AsyncRead + Unpin>(stream: &mut S) -> RequestHead {
    let read = async {
        let mut head = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        loop {
            let read = match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return RequestHead::Incomplete,
                Ok(read) => read,
            };
            head.extend_from_slice(&chunk[..read]);
            if let Some(end) = end_of_head(&head) {
                let head = &head[..end];
                return RequestHead::Complete {
                    method_is_head: head.starts_with(b"HEAD "),
                };
            }
            if head.len() > HTTP_REQUEST_HEAD_MAX_BYTES {
                return RequestHead::TooLarge;
            }
        }
    };
    timeout(Duration::from_secs(HTTP_REQUEST_HEAD_TIMEOUT_SECS), read)
        .await
        .unwrap_or(RequestHead::Incomplete)
}

/// Where the head ends, if it has: after CRLF CRLF, or after LF LF, which RFC 9112
/// section 2.2 lets a recipient accept.
fn end_of_head(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|start| start + 4);
    let lf = bytes
        .windows(2)
        .position(|window| window == b"\n\n")
        .map(|start| start + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (found, None) | (None, found) => found,
    }
}

/// Reads and discards until the client closes, within [`CLOSE_DRAIN_TIMEOUT_MS`] and
/// [`CLOSE_DRAIN_MAX_BYTES`], or until a shutdown.
async fn drain_until_closed<S: AsyncRead + Unpin>(stream: &mut S, mut shutdown: ShutdownSignal) {
    let drain = async {
        let mut discarded = 0usize;
        let mut chunk = [0u8; 1024];
        while discarded < CLOSE_DRAIN_MAX_BYTES {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => discarded += read,
            }
        }
    };
    tokio::select! {
        _ = timeout(Duration::from_millis(CLOSE_DRAIN_TIMEOUT_MS), drain) => {}
        () = shutdown.requested() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_lines_are_the_documented_ones() {
        let host = "mail.example.org";
        assert_eq!(
            smtp_reply(host, Refusal::NotAvailableYet),
            "421 4.3.2 mail.example.org Letterlock: SMTP is not available yet\r\n"
        );
        assert_eq!(
            imap_reply(Refusal::NotAvailableYet),
            "* BYE [UNAVAILABLE] Letterlock: IMAP is not available yet\r\n"
        );
        assert_eq!(
            pop3_reply(Refusal::NotAvailableYet),
            "-ERR [SYS/TEMP] Letterlock: POP3 is not available yet\r\n"
        );
    }

    #[test]
    fn busy_smtp_is_421_4_7_0() {
        let line = smtp_reply("localhost", Refusal::TooManyFromClient);
        assert!(line.starts_with("421 4.7.0 localhost "), "{line}");
        assert!(line.ends_with("\r\n"));
    }

    #[test]
    fn http_response_has_a_matching_length_and_no_body_after_head() {
        let response =
            String::from_utf8(http_response(Refusal::NotAvailableYet, false)).expect("utf-8");
        let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(head.contains("\r\nConnection: close"));
        assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())));
        let head_only = http_response(Refusal::TooManyTotal, true);
        assert!(head_only.ends_with(b"\r\n\r\n"));
        assert!(String::from_utf8_lossy(&head_only).contains("Retry-After: 60\r\n"));
    }

    #[test]
    fn end_of_head_accepts_crlf_and_bare_lf() {
        assert_eq!(
            end_of_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"),
            Some(27)
        );
        assert_eq!(end_of_head(b"GET / HTTP/1.1\nHost: a\n\n"), Some(24));
        assert_eq!(end_of_head(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
    }

    #[tokio::test]
    async fn a_request_head_is_read_up_to_its_end() {
        let mut input: &[u8] = b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        assert_eq!(
            read_request_head(&mut input).await,
            RequestHead::Complete {
                method_is_head: true
            }
        );
        let long = vec![b'a'; HTTP_REQUEST_HEAD_MAX_BYTES + 2];
        assert_eq!(
            read_request_head(&mut long.as_slice()).await,
            RequestHead::TooLarge
        );
        let mut cut: &[u8] = b"GET / HTTP/1.1\r\n";
        assert_eq!(read_request_head(&mut cut).await, RequestHead::Incomplete);
    }
}
