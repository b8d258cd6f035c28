//! Delivery status notifications (bounces): RFC 3464 `multipart/report` messages
//! (RFC 6522) with a human part, a `message/delivery-status` part and the original headers
//! (`text/rfc822-headers`), built with `mail-builder`. Status codes are RFC 3463's.

use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::mime::{BodyPart, MimePart};
use mail_builder::MessageBuilder;

use crate::store::{Envelope, RecipientState};

/// The original message's header section is included up to this size: enough to identify it,
/// while the body (which the sender has) is not sent back.
pub const ORIGINAL_HEADERS_MAX_BYTES: usize = 64 * 1024;

/// Why the bounce is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceReason {
    /// The remote server refused recipients for good.
    Refused,
    /// The queue gave up after its expiry (RFC 5321 section 4.5.4.1).
    Expired,
}

/// The DSN for the failed recipients of `envelope`, to its sender; `None` when there is
/// nobody to tell (a null sender: bounces never bounce) or nothing failed.
pub fn build_bounce(
    reporting_host: &str,
    envelope: &Envelope,
    original: &[u8],
    arrival_unix: i64,
    reason: BounceReason,
) -> Option<Vec<u8>> {
    let sender = envelope.sender.as_ref()?;
    let failed: Vec<_> = envelope
        .recipients
        .iter()
        .filter(|recipient| recipient.state == RecipientState::Failed)
        .collect();
    if failed.is_empty() {
        return None;
    }
    let mut human = String::from("This is the mail system at ");
    human.push_str(reporting_host);
    human.push_str(".\r\n\r\n");
    human.push_str(match reason {
        BounceReason::Refused => {
            "Your message could not be delivered to the following recipients:\r\n\r\n"
        }
        BounceReason::Expired => {
            "Your message could not be delivered in time, and delivery was given up for:\r\n\r\n"
        }
    });
    let mut status = format!(
        "Reporting-MTA: dns; {reporting_host}\r\nArrival-Date: {}\r\n",
        rfc5322_date(arrival_unix)
    );
    for recipient in &failed {
        let reply = recipient.last_reply.clone().unwrap_or_default();
        let reply = one_line(&reply);
        human.push_str(&format!("  <{}>: {}\r\n", recipient.address, reply));
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\n",
            recipient.address,
            status_code(&reply, reason)
        ));
        if reply.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            status.push_str(&format!("Diagnostic-Code: smtp; {reply}\r\n"));
        }
    }
    let headers_end = original
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|position| position + 2)
        .unwrap_or(original.len())
        .min(ORIGINAL_HEADERS_MAX_BYTES);
    let original_headers = String::from_utf8_lossy(&original[..headers_end]).into_owned();
    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        BodyPart::Multipart(vec![
            MimePart::new(ContentType::new("text/plain"), BodyPart::Text(human.into())),
            MimePart::new(
                ContentType::new("message/delivery-status"),
                BodyPart::Text(status.into()),
            ),
            MimePart::new(
                ContentType::new("text/rfc822-headers"),
                BodyPart::Text(original_headers.into()),
            ),
        ]),
    );
    let postmaster = format!("MAILER-DAEMON@{reporting_host}");
    let message = MessageBuilder::new()
        .from(("Mail Delivery System", postmaster.as_str()))
        .to(sender.to_string())
        .subject("Undelivered Mail Returned to Sender")
        .date(Date::new(crate::store::now_unix()))
        .header(
            "Auto-Submitted",
            mail_builder::headers::raw::Raw::new("auto-replied"),
        )
        .body(report)
        .write_to_vec()
        .ok()?;
    Some(message)
}

/// The RFC 3463 code of a reply (`550 5.1.1 ...` gives `5.1.1`), or a generic one.
fn status_code(reply: &str, reason: BounceReason) -> String {
    if reason == BounceReason::Expired {
        return "4.4.7".into();
    }
    let enhanced = reply.split_whitespace().nth(1).filter(|code| {
        let parts: Vec<&str> = code.split('.').collect();
        parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts.iter().all(|part| {
                !part.is_empty() && part.len() <= 3 && part.bytes().all(|b| b.is_ascii_digit())
            })
    });
    match enhanced {
        Some(code) => code.to_string(),
        None => "5.0.0".into(),
    }
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `YYYYMMDD` of a unix time (UTC), for DKIM selectors.
pub(crate) fn ymd(unix: i64) -> String {
    let (year, month, day) = civil_from_days(unix.div_euclid(86_400));
    format!("{year:04}{month:02}{day:02}")
}

use letterlock_types::time::civil_from_days;
pub use letterlock_types::time::rfc5322_date;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Recipient;
    use letterlock_types::EmailAddress;

    #[test]
    fn a_bounce_is_a_multipart_report_with_the_status_of_each_failed_recipient() {
        let envelope = Envelope {
            sender: Some(EmailAddress::try_from("alice@example.org").expect("address")),
            requiretls: false,
            recipients: vec![
                Recipient {
                    address: EmailAddress::try_from("nobody@remote.test").expect("address"),
                    state: RecipientState::Failed,
                    last_reply: Some("550 5.1.1 no such user".into()),
                },
                Recipient {
                    address: EmailAddress::try_from("carol@remote.test").expect("address"),
                    state: RecipientState::Delivered,
                    last_reply: Some("250 ok".into()),
                },
            ],
            last_error: None,
        };
        let original = b"From: alice@example.org\r\nSubject: hello\r\n\r\nsecret body\r\n";
        let bounce = build_bounce(
            "mx.example.org",
            &envelope,
            original,
            0,
            BounceReason::Refused,
        )
        .expect("bounce");
        let text = String::from_utf8_lossy(&bounce);
        assert!(text.contains("multipart/report"), "{text}");
        assert!(
            text.contains("report-type=\"delivery-status\"")
                || text.contains("report-type=delivery-status"),
            "{text}"
        );
        assert!(
            text.contains("Final-Recipient: rfc822; nobody@remote.test"),
            "{text}"
        );
        assert!(text.contains("Status: 5.1.1"), "{text}");
        assert!(!text.contains("carol@remote.test"), "{text}");
        assert!(text.contains("Subject: hello"), "{text}");
        assert!(!text.contains("secret body"), "{text}");
        let mut null_sender = envelope.clone();
        null_sender.sender = None;
        assert!(build_bounce("mx", &null_sender, original, 0, BounceReason::Refused).is_none());
    }
}
