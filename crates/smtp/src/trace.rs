//! Trace headers added on acceptance: `Return-Path` and `Received` (RFC 5321 section 4.4),
//! with the protocol keyword of RFC 3848 (ESMTP, ESMTPS, ESMTPSA) and the TLS parameters as a
//! comment.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// What the `Received` header tells about the session a message came in on.
pub struct TraceInfo<'a> {
    pub helo: &'a str,
    pub peer_ip: std::net::IpAddr,
    pub hostname: &'a str,
    /// "ESMTP", "ESMTPS", "ESMTPSA"... (RFC 3848).
    pub protocol: &'static str,
    /// e.g. "TLSv1_3 TLS13_AES_256_GCM_SHA384".
    pub tls: Option<&'a str>,
    /// The recipient, named only when there is exactly one (RFC 5321 section 7.2: naming
    /// several would show each recipient the others).
    pub single_recipient: Option<&'a str>,
    pub reverse_path: &'a str,
}

static QUEUE_ID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A short identifier for the `id` clause, unique within this process and across restarts.
pub fn new_transaction_id() -> String {
    let count = QUEUE_ID_COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as u64)
        .unwrap_or(0);
    format!("{now:x}.{count:x}")
}

/// `Return-Path` and `Received`, to be put in front of the message as received.
pub fn trace_headers(info: &TraceInfo<'_>, transaction_id: &str, now_unix: i64) -> Vec<u8> {
    let helo = sanitize(info.helo);
    let mut header = format!(
        "Return-Path: <{}>\r\nReceived: from {} ([{}])\r\n\tby {} (Letterlock)",
        sanitize(info.reverse_path),
        helo,
        info.peer_ip,
        info.hostname
    );
    if let Some(tls) = info.tls {
        header.push_str(&format!("\r\n\t({})", sanitize(tls)));
    }
    header.push_str(&format!(
        "\r\n\twith {} id {}",
        info.protocol, transaction_id
    ));
    if let Some(recipient) = info.single_recipient {
        header.push_str(&format!("\r\n\tfor <{}>", sanitize(recipient)));
    }
    header.push_str(&format!("; {}\r\n", rfc5322_date(now_unix)));
    header.into_bytes()
}

/// Client-supplied text in a header: no line breaks, no parentheses that would end a comment
/// early, nothing but printable characters.
fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() && *c != '(' && *c != ')' && *c != '<' && *c != '>')
        .take(255)
        .collect()
}

pub use letterlock_types::time::rfc5322_date;

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc_5322() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_795_508_000),
            "Tue, 24 Nov 2026 08:13:20 +0000"
        );
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn received_names_tls_and_the_single_recipient_and_escapes_client_text() {
        let headers = trace_headers(
            &TraceInfo {
                helo: "client.example\r\nX-Injected: yes",
                peer_ip: "192.0.2.1".parse().expect("ip"),
                hostname: "mx.example.org",
                protocol: "ESMTPS",
                tls: Some("TLSv1_3 TLS13_AES_256_GCM_SHA384"),
                single_recipient: Some("alice@example.org"),
                reverse_path: "bob@example.net",
            },
            "abc.1",
            0,
        );
        let text = String::from_utf8(headers).expect("utf-8");
        assert_eq!(
            text,
            "Return-Path: <bob@example.net>\r\n\
             Received: from client.exampleX-Injected: yes ([192.0.2.1])\r\n\
             \tby mx.example.org (Letterlock)\r\n\
             \t(TLSv1_3 TLS13_AES_256_GCM_SHA384)\r\n\
             \twith ESMTPS id abc.1\r\n\
             \tfor <alice@example.org>; Thu, 1 Jan 1970 00:00:00 +0000\r\n"
        );
    }
}
