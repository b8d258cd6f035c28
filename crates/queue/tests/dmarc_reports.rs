//! DMARC aggregate reports (RFC 7489 section 7.2): evaluations collected per reporting domain
//! leave once their day is over, merged into rows with counts, as a gzipped XML report that
//! `mail-auth` parses back; addresses outside the domain get reports only when their domain
//! agrees; received reports are kept and listed.

mod common;

use std::net::IpAddr;

use common::*;
use letterlock_queue::store::now_unix;
use letterlock_queue::DmarcReports;
use mail_auth::report::{
    ActionDisposition, Alignment, Disposition, PolicyPublished, Record, Report,
};

fn policy(domain: &str) -> PolicyPublished {
    PolicyPublished {
        domain: domain.into(),
        version_published: None,
        adkim: Alignment::Relaxed,
        aspf: Alignment::Relaxed,
        p: Disposition::Reject,
        sp: Disposition::Reject,
        np: Disposition::Reject,
        testing: false,
        discovery_method: Default::default(),
        fo: None,
    }
}

fn evaluation(source: &str, header_from: &str) -> Record {
    Record::new()
        .with_source_ip(source.parse::<IpAddr>().expect("ip"))
        .with_header_from(header_from)
        .with_envelope_from(header_from)
        .with_action_disposition(ActionDisposition::Pass)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_days_evaluations_leave_as_one_report_per_domain_with_counted_rows() {
    let setup = setup();
    let reports = DmarcReports::new(setup.queue.clone());
    let start = now_unix();
    for _ in 0..3 {
        reports
            .record(
                &policy("sender.test"),
                &["dmarc@sender.test".into()],
                &evaluation("192.0.2.10", "sender.test"),
                start,
            )
            .expect("record");
    }
    reports
        .record(
            &policy("sender.test"),
            &["dmarc@sender.test".into()],
            &evaluation("198.51.100.20", "sender.test"),
            start,
        )
        .expect("record");
    // Two domains whose rua is elsewhere: one whose report domain agrees, one that does not.
    for domain in ["agreed.test", "unverified.test"] {
        reports
            .record(
                &policy(domain),
                &["reports@collector.test".into()],
                &evaluation("192.0.2.30", domain),
                start,
            )
            .expect("record");
    }
    let receiver = FakeReceiver::start(None, |_, _| "250 2.1.5 ok".into()).await;
    let resolver = resolver_to_localhost()
        .with_mx("sender.test", 10, "mx.remote.test")
        .with_mx("collector.test", 10, "mx.remote.test")
        .with_txt("agreed.test._report._dmarc.collector.test", "v=DMARC1");
    let runner = runner(&setup, receiver.address.port(), resolver);

    runner.run_once_at(start + 3600).await.expect("round");
    assert!(
        setup.queue.list().expect("list").is_empty(),
        "the day is not over"
    );

    let day_later = start + 86_400 + 1;
    assert_eq!(
        runner.send_reports(day_later).await.expect("send"),
        2,
        "sender.test and agreed.test; unverified.test's rua did not agree"
    );
    let queued = setup.queue.list().expect("list");
    assert_eq!(queued.len(), 2);
    assert!(
        queued.iter().all(|entry| entry.envelope.sender.is_none()),
        "null sender"
    );
    runner.run_once_at(day_later).await.expect("round");
    let delivered = receiver.delivered();
    assert_eq!(delivered.len(), 2);

    let parsed: Vec<Report> = delivered
        .iter()
        .map(|message| Report::parse_rfc5322(message, 1 << 20).expect("a DMARC report"))
        .collect();
    let sender = parsed
        .iter()
        .find(|report| report.domain() == "sender.test")
        .expect("sender.test's report");
    assert_eq!(sender.org_name(), "mx.example.org");
    assert_eq!(sender.p(), Disposition::Reject);
    let mut counts: Vec<(String, u32)> = sender
        .records()
        .iter()
        .map(|record| {
            (
                record
                    .source_ip()
                    .map(|ip| ip.to_string())
                    .unwrap_or_default(),
                record.count(),
            )
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("192.0.2.10".to_string(), 3),
            ("198.51.100.20".to_string(), 1)
        ]
    );
    assert!(parsed.iter().any(|report| report.domain() == "agreed.test"));

    // Sent reports are forgotten: nothing more the next day.
    assert_eq!(
        runner.send_reports(day_later + 86_400).await.expect("send"),
        0
    );

    // A report about one of our domains, as another server would send it, is kept.
    let incoming = Report::new()
        .with_org_name("big-provider.test")
        .with_email("noreply@big-provider.test")
        .with_report_id("r-1")
        .with_date_range_begin(1)
        .with_date_range_end(2)
        .with_policy_published(policy("example.org"))
        .with_record(evaluation("203.0.113.5", "example.org").with_count(7))
        .to_rfc5322(
            "big-provider.test",
            ("Reports", "noreply@big-provider.test"),
            ["dmarc@example.org"].into_iter(),
        )
        .expect("report message");
    let is_ours = |domain: &str| domain == "example.org";
    let report = letterlock_queue::dmarc_reports::received_report(incoming.as_bytes(), is_ours)
        .expect("recognised");
    reports.record_received(&report, start).expect("keep");
    assert!(
        letterlock_queue::dmarc_reports::received_report(incoming.as_bytes(), |_| false).is_none(),
        "not about one of ours"
    );
    assert!(
        letterlock_queue::dmarc_reports::received_report(&message("ordinary"), is_ours).is_none()
    );
    let kept = reports.received(Some("example.org")).expect("list");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].1.records()[0].count(), 7);
    assert!(reports
        .received(Some("other.test"))
        .expect("list")
        .is_empty());
}

/// A busy MX writes its evaluations in batches: nothing is written until the batch is full,
/// then all of it in one commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_writes_evaluations_in_batches() {
    use letterlock_queue::dmarc_reports::{Collector, Evaluation};
    let setup = setup();
    let reports = DmarcReports::new(setup.queue.clone());
    let collector = Collector::new(reports.clone(), 3);
    let evaluation = |source: &str| Evaluation {
        policy: policy("batched.test"),
        rua: vec!["dmarc@batched.test".into()],
        record: evaluation(source, "batched.test"),
    };
    assert!(collector.add(evaluation("192.0.2.1")).is_none());
    assert!(collector.add(evaluation("192.0.2.2")).is_none());
    let batch = collector
        .add(evaluation("192.0.2.3"))
        .expect("a full batch");
    assert_eq!(batch.len(), 3);
    let start = now_unix();
    collector.write(&batch, start).expect("write");
    assert!(
        collector.add(evaluation("192.0.2.4")).is_none(),
        "a new batch begins"
    );
    let receiver = FakeReceiver::start(None, |_, _| "250 2.1.5 ok".into()).await;
    let runner = runner(
        &setup,
        receiver.address.port(),
        resolver_to_localhost().with_mx("batched.test", 10, "mx.remote.test"),
    );
    assert_eq!(runner.send_reports(start + 86_401).await.expect("send"), 1);
    runner.run_once_at(start + 86_401).await.expect("round");
    let report = Report::parse_rfc5322(&receiver.delivered()[0], 1 << 20).expect("report");
    assert_eq!(
        report.records().len(),
        3,
        "the written batch, not the buffered fourth"
    );
}
