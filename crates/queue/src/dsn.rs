//! Delivery status notifications (bounces): RFC 3464 `multipart/report` messages
//! (RFC 6522) with a human part, a `message/delivery-status` part and the original headers
//! (`text/rfc822-headers`), built with `mail-builder`. Status codes are RFC 3463's.

use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::mime::{BodyPart, MimePart};
use mail_builder::MessageBuilder;

use letterlock_types::EmailAddress;

use crate::store::{Envelope, RecipientState};

/// The original message's header section is included up to this size: enough to identify it,
/// while the body (which the sender has) is not sent back unless RET=FULL asked for it.
pub const ORIGINAL_HEADERS_MAX_BYTES: usize = 64 * 1024;

/// Why a failure report is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceReason {
    /// The remote server refused recipients for good.
    Refused,
    /// The queue gave up after its expiry (RFC 5321 section 4.5.4.1).
    Expired,
}

/// RFC 3464 section 2.3.3: what happened to the recipients of one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed(BounceReason),
    /// Still trying (NOTIFY=DELAY), until the time given.
    Delayed {
        retry_until_unix: i64,
    },
    /// Handed to a server that does not do DSN, so no later report will come (NOTIFY=SUCCESS).
    Relayed,
    /// Put in the recipient's mailbox here (NOTIFY=SUCCESS).
    Delivered,
}

/// One recipient of a report: the address, what the submitter called it (ORCPT), and the
/// last reply or reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub address: String,
    pub original_recipient: Option<String>,
    pub reply: String,
}

/// A delivery status notification to send.
pub struct Report<'a> {
    pub reporting_host: &'a str,
    pub sender: &'a EmailAddress,
    pub action: Action,
    pub recipients: Vec<Reported>,
    /// RFC 3461 section 4.4: the submitter's ENVID, echoed back.
    pub envelope_id: Option<&'a str>,
    /// RFC 3461 section 4.3: RET=FULL returns the whole message with a failure report.
    pub return_full: bool,
    pub arrival_unix: i64,
}

/// The failure report for the failed recipients of `envelope` whose NOTIFY asks for one, to
/// its sender; `None` when there is nobody to tell (a null sender: bounces never bounce) or
/// nothing to report.
pub fn build_bounce(
    reporting_host: &str,
    envelope: &Envelope,
    original: &[u8],
    arrival_unix: i64,
    reason: BounceReason,
) -> Option<Vec<u8>> {
    let sender = envelope.sender.as_ref()?;
    let recipients = envelope
        .recipients
        .iter()
        .filter(|recipient| {
            recipient.state == RecipientState::Failed && recipient.notify.wants_failure()
        })
        .map(reported)
        .collect();
    build_report(
        &Report {
            reporting_host,
            sender,
            action: Action::Failed(reason),
            recipients,
            envelope_id: envelope.dsn.envid.as_deref(),
            return_full: envelope.dsn.ret_full,
            arrival_unix,
        },
        original,
    )
}

/// The report line of a queued recipient.
pub fn reported(recipient: &crate::store::Recipient) -> Reported {
    Reported {
        address: recipient.address.to_string(),
        original_recipient: recipient.orcpt.clone(),
        reply: recipient.last_reply.clone().unwrap_or_default(),
    }
}

/// An RFC 3464 report: a human part, the `message/delivery-status` part, and the original
/// (its header section, or all of it for a RET=FULL failure report).
pub fn build_report(report: &Report<'_>, original: &[u8]) -> Option<Vec<u8>> {
    if report.recipients.is_empty() {
        return None;
    }
    let reporting_host = report.reporting_host;
    let (subject, opening, action_name) = match report.action {
        Action::Failed(BounceReason::Refused) => (
            "Undelivered Mail Returned to Sender",
            "Your message could not be delivered to the following recipients:",
            "failed",
        ),
        Action::Failed(BounceReason::Expired) => (
            "Undelivered Mail Returned to Sender",
            "Your message could not be delivered in time, and delivery was given up for:",
            "failed",
        ),
        Action::Delayed { .. } => (
            "Delayed Mail (still being retried)",
            "Your message has not been delivered yet to the following recipients; delivery is still being tried:",
            "delayed",
        ),
        Action::Relayed => (
            "Successful Mail Delivery Report",
            "Your message was handed to the recipients' mail servers, which will send no further reports:",
            "relayed",
        ),
        Action::Delivered => (
            "Successful Mail Delivery Report",
            "Your message was delivered to the following recipients:",
            "delivered",
        ),
    };
    let mut human =
        format!("This is the mail system at {reporting_host}.\r\n\r\n{opening}\r\n\r\n");
    let mut status = String::new();
    if let Some(envelope_id) = report.envelope_id {
        status.push_str(&format!(
            "Original-Envelope-Id: {}\r\n",
            one_line(envelope_id)
        ));
    }
    status.push_str(&format!(
        "Reporting-MTA: dns; {reporting_host}\r\nArrival-Date: {}\r\n",
        rfc5322_date(report.arrival_unix)
    ));
    for recipient in &report.recipients {
        let reply = one_line(&recipient.reply);
        human.push_str(&format!("  <{}>: {}\r\n", recipient.address, reply));
        status.push_str("\r\n");
        if let Some(original) = &recipient.original_recipient {
            status.push_str(&format!(
                "Original-Recipient: rfc822; {}\r\n",
                one_line(original)
            ));
        }
        let code = match report.action {
            Action::Failed(reason) => status_code(&reply, reason),
            Action::Delayed { .. } => "4.0.0".into(),
            Action::Relayed | Action::Delivered => "2.0.0".into(),
        };
        status.push_str(&format!(
            "Final-Recipient: rfc822; {}\r\nAction: {action_name}\r\nStatus: {code}\r\n",
            recipient.address
        ));
        if reply.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            status.push_str(&format!("Diagnostic-Code: smtp; {reply}\r\n"));
        }
        if let Action::Delayed { retry_until_unix } = report.action {
            status.push_str(&format!(
                "Will-Retry-Until: {}\r\n",
                rfc5322_date(retry_until_unix)
            ));
        }
    }
    let full = report.return_full && matches!(report.action, Action::Failed(_));
    let returned = if full {
        // RFC 2046 section 5.2.1: message/rfc822 is never base64 or quoted-printable.
        MimePart::new(
            ContentType::new("message/rfc822"),
            BodyPart::Binary(original.to_vec().into()),
        )
        .transfer_encoding(if original.is_ascii() { "7bit" } else { "8bit" })
    } else {
        let headers_end = original
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .map(|position| position + 2)
            .unwrap_or(original.len())
            .min(ORIGINAL_HEADERS_MAX_BYTES);
        MimePart::new(
            ContentType::new("text/rfc822-headers"),
            BodyPart::Text(
                String::from_utf8_lossy(&original[..headers_end])
                    .into_owned()
                    .into(),
            ),
        )
    };
    let body = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        BodyPart::Multipart(vec![
            MimePart::new(ContentType::new("text/plain"), BodyPart::Text(human.into())),
            MimePart::new(
                ContentType::new("message/delivery-status"),
                BodyPart::Text(status.into()),
            ),
            returned,
        ]),
    );
    let postmaster = format!("MAILER-DAEMON@{reporting_host}");
    MessageBuilder::new()
        .from(("Mail Delivery System", postmaster.as_str()))
        .to(report.sender.to_string())
        .subject(subject)
        .date(Date::new(crate::store::now_unix()))
        .header(
            "Auto-Submitted",
            mail_builder::headers::raw::Raw::new("auto-replied"),
        )
        .body(body)
        .write_to_vec()
        .ok()
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
    use crate::store::{DsnRequest, Notify, Recipient};

    #[test]
    fn a_bounce_is_a_multipart_report_with_the_status_of_each_failed_recipient() {
        let recipient = |address: &str, state, reply: &str| Recipient {
            address: EmailAddress::try_from(address).expect("address"),
            state,
            last_reply: Some(reply.into()),
            notify: Notify::default(),
            orcpt: None,
            delay_reported: false,
        };
        let mut envelope = Envelope {
            sender: Some(EmailAddress::try_from("alice@example.org").expect("address")),
            requiretls: false,
            dsn: DsnRequest::default(),
            recipients: vec![
                recipient(
                    "nobody@remote.test",
                    RecipientState::Failed,
                    "550 5.1.1 no such user",
                ),
                recipient("carol@remote.test", RecipientState::Delivered, "250 ok"),
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

        // RET=FULL and ENVID, ORCPT echoed; NOTIFY=NEVER silences the report.
        envelope.dsn = DsnRequest {
            ret_full: true,
            envid: Some("QQ314159".into()),
        };
        envelope.recipients[0].orcpt = Some("Nobody@Remote.test".into());
        let full =
            build_bounce("mx", &envelope, original, 0, BounceReason::Refused).expect("bounce");
        let text = String::from_utf8_lossy(&full);
        assert!(text.contains("Original-Envelope-Id: QQ314159"), "{text}");
        assert!(
            text.contains("Original-Recipient: rfc822; Nobody@Remote.test"),
            "{text}"
        );
        assert!(
            text.contains("message/rfc822") && text.contains("secret body"),
            "{text}"
        );
        envelope.recipients[0].notify = Notify::NEVER;
        assert!(build_bounce("mx", &envelope, original, 0, BounceReason::Refused).is_none());
    }
}
