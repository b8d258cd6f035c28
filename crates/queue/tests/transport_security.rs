//! MTA-STS (RFC 8461) and DANE (RFC 7672) enforced by the runner, against scripted SMTP
//! receivers that speak real TLS on 127.0.0.1, a real HTTPS policy server, certificates from a
//! test CA made here, and the map resolver (TXT and TLSA records, DNSSEC status included).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use letterlock_queue::resolver::TlsaRecord;
use letterlock_queue::store::now_unix;
use letterlock_queue::testing::*;
use letterlock_queue::{MapResolver, QueueId, RunnerSettings};
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

const RECIPIENT: &str = "carol@remote.test";
const ENFORCE: &str = "version: STSv1\r\nmode: enforce\r\nmx: mx.remote.test\r\nmax_age: 86400\r\n";

fn spki_sha256(certificate: &CertificateDer<'_>) -> Vec<u8> {
    let spki = letterlock_queue::dane::subject_public_key_info(certificate).expect("spki");
    Sha256::digest(spki).to_vec()
}

/// An HTTPS server answering every request with `body` as text/plain; counts the requests.
async fn policy_server(tls: TlsAcceptor, body: &str) -> (u16, Arc<AtomicU32>) {
    let body = body.to_string();
    let server = HttpsServer::start(tls, move |path| {
        assert_eq!(path, "/.well-known/mta-sts.txt");
        (200, "text/plain", body.clone().into_bytes())
    })
    .await;
    (server.port, server.requests)
}

/// remote.test's MX on 127.0.0.1, announcing an MTA-STS policy with `id`.
fn announcing(id: &str) -> MapResolver {
    resolver_to_localhost()
        .with_ip("mta-sts.remote.test", "127.0.0.1".parse().expect("ip"))
        .with_txt("_mta-sts.remote.test", "v=spf1 -all")
        .with_txt("_mta-sts.remote.test", &format!("v=STSv1; id={id};"))
}

fn settings(receiver_port: u16, policy_port: u16, roots: RootCertStore) -> RunnerSettings {
    let mut settings = RunnerSettings::new(client_settings(receiver_port, roots));
    settings.mta_sts_port = policy_port;
    settings.mta_sts_timeout = Duration::from_secs(5);
    settings
}

fn enqueue(setup: &Setup, subject: &str) -> QueueId {
    setup
        .queue
        .enqueue(
            Some(address(ALICE)),
            &[address(RECIPIENT)],
            false,
            &message(subject),
        )
        .expect("enqueue")
}

/// One round; `Ok(())` when the entry left the queue delivered, `Err(last reply)` when it
/// stayed for a retry.
async fn attempt(
    setup: &Setup,
    settings: RunnerSettings,
    resolver: MapResolver,
) -> Result<(), String> {
    let id = enqueue(setup, "transport");
    let runner = runner_with(setup, settings, resolver);
    runner.run_once_at(now_unix()).await.expect("round");
    match setup.queue.show(id) {
        Ok(status) => Err(status.envelope.recipients[0]
            .last_reply
            .clone()
            .unwrap_or_default()),
        Err(_) => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enforced_policy_delivers_over_verified_tls_and_is_fetched_once_per_id() {
    let ca = TestCa::new();
    let receiver = FakeReceiver::accepting_tls(ca.leaf("mx.remote.test")).await;
    let (policy_cert, policy_key) = ca.leaf("mta-sts.remote.test");
    let (policy_port, fetches) =
        policy_server(acceptor(vec![policy_cert], policy_key), ENFORCE).await;
    let setup = setup();
    for round in 1..=2 {
        let delivered = attempt(
            &setup,
            settings(receiver.address.port(), policy_port, ca.roots()),
            announcing("20261124"),
        )
        .await;
        assert_eq!(delivered, Ok(()), "round {round}");
    }
    assert_eq!(receiver.delivered().len(), 2);
    assert_eq!(*receiver.over_tls.lock().expect("lock"), vec![true, true]);
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "the second round used the cache"
    );
    // A new id in the TXT record makes the sender fetch again.
    attempt(
        &setup,
        settings(receiver.address.port(), policy_port, ca.roots()),
        announcing("20261125"),
    )
    .await
    .expect("delivered");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enforced_policy_holds_back_mail_the_mx_cannot_protect() {
    let ca = TestCa::new();
    let (policy_cert, policy_key) = ca.leaf("mta-sts.remote.test");
    let policy = acceptor(vec![policy_cert], policy_key);
    let (enforce_port, _) = policy_server(policy.clone(), ENFORCE).await;
    let (elsewhere_port, _) = policy_server(
        policy.clone(),
        "version: STSv1\nmode: enforce\nmx: *.elsewhere.test\nmax_age: 86400\n",
    )
    .await;
    let (testing_port, _) = policy_server(
        policy,
        "version: STSv1\nmode: testing\nmx: mx.remote.test\nmax_age: 86400\n",
    )
    .await;
    let (untrusted_cert, untrusted_key) = self_signed("mta-sts.remote.test");
    let (untrusted_port, _) =
        policy_server(acceptor(vec![untrusted_cert], untrusted_key), ENFORCE).await;
    let unverifiable = FakeReceiver::accepting_tls(self_signed("mx.remote.test")).await;
    let good = FakeReceiver::accepting_tls(ca.leaf("mx.remote.test")).await;
    let plaintext = FakeReceiver::start(None, |_, _| "250 2.1.5 ok".into()).await;

    for (case, receiver, policy_port, expected) in [
        (
            "self-signed MX",
            &unverifiable,
            enforce_port,
            Some("TLS with mx.remote.test failed (MTA-STS)"),
        ),
        (
            "no STARTTLS",
            &plaintext,
            enforce_port,
            Some("MTA-STS: mx.remote.test does not offer STARTTLS"),
        ),
        (
            "MX not named",
            &good,
            elsewhere_port,
            Some("none of the MX hosts of remote.test"),
        ),
        ("testing mode", &unverifiable, testing_port, None),
        (
            "policy from an untrusted server",
            &unverifiable,
            untrusted_port,
            None,
        ),
    ] {
        let setup = setup();
        let outcome = attempt(
            &setup,
            settings(receiver.address.port(), policy_port, ca.roots()),
            announcing("1"),
        )
        .await;
        match expected {
            Some(reason) => {
                let reply = outcome.expect_err(case);
                assert!(reply.contains(reason), "{case}: {reply}");
                assert!(reply.starts_with("451 4.7.5"), "{case}: {reply}");
            }
            None => assert_eq!(outcome, Ok(()), "{case}"),
        }
    }
    assert!(good.delivered().is_empty());
    assert!(plaintext.delivered().is_empty());
    assert_eq!(
        unverifiable.delivered().len(),
        2,
        "testing mode and the ignored policy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_policy_outlives_a_stripped_txt_record_and_a_new_runner() {
    let ca = TestCa::new();
    let (policy_cert, policy_key) = ca.leaf("mta-sts.remote.test");
    let (policy_port, _) = policy_server(acceptor(vec![policy_cert], policy_key), ENFORCE).await;
    let good = FakeReceiver::accepting_tls(ca.leaf("mx.remote.test")).await;
    let impostor = FakeReceiver::accepting_tls(self_signed("mx.remote.test")).await;

    // Without a cached policy, an attacker who strips the TXT record and sits in front of the
    // MX gets the mail (opportunistic TLS takes any certificate)...
    let fresh = setup();
    attempt(
        &fresh,
        settings(impostor.address.port(), policy_port, ca.roots()),
        resolver_to_localhost(),
    )
    .await
    .expect("opportunistic delivery");
    assert_eq!(impostor.delivered().len(), 1);

    // ...but not once the policy has been seen: it is cached durably, so a new runner (as
    // after a restart) still enforces it.
    let seen = setup();
    attempt(
        &seen,
        settings(good.address.port(), policy_port, ca.roots()),
        announcing("1"),
    )
    .await
    .expect("delivered under the policy");
    let reply = attempt(
        &seen,
        settings(impostor.address.port(), policy_port, ca.roots()),
        resolver_to_localhost().failing("_mta-sts.remote.test"),
    )
    .await
    .expect_err("the cached policy holds");
    assert!(reply.contains("MTA-STS"), "{reply}");
    assert_eq!(
        impostor.delivered().len(),
        1,
        "nothing more reached the impostor"
    );
}

fn dane_ee(data: Vec<u8>) -> TlsaRecord {
    TlsaRecord {
        usage: 3,
        selector: 1,
        matching: 1,
        data,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dane_ee_pins_the_mx_key_and_ignores_unvalidated_records() {
    let (cert, key) = self_signed("mx.remote.test");
    let pinned = spki_sha256(&cert);
    let receiver = FakeReceiver::start(Some(acceptor(vec![cert], key)), |_, _| {
        "250 2.1.5 ok".into()
    })
    .await;
    let port = receiver.address.port();
    let tlsa_name = "_25._tcp.mx.remote.test";
    let no_roots = || settings(port, 1, RootCertStore::empty());

    // A validated record that matches: delivered, though no CA vouches for the certificate.
    attempt(
        &setup(),
        no_roots(),
        resolver_to_localhost().with_tlsa(tlsa_name, true, dane_ee(pinned.clone())),
    )
    .await
    .expect("DANE-EE match");
    // A validated record that does not match: held back.
    let reply = attempt(
        &setup(),
        no_roots(),
        resolver_to_localhost().with_tlsa(tlsa_name, true, dane_ee(vec![7; 32])),
    )
    .await
    .expect_err("DANE-EE mismatch");
    assert!(reply.contains("(DANE)"), "{reply}");
    // The same record without DNSSEC proves nothing and is ignored (opportunistic TLS).
    attempt(
        &setup(),
        no_roots(),
        resolver_to_localhost().with_tlsa(tlsa_name, false, dane_ee(vec![7; 32])),
    )
    .await
    .expect("unvalidated TLSA ignored");
    // A TLSA lookup that fails leaves the host's status unknown: not sent to.
    let reply = attempt(
        &setup(),
        no_roots(),
        resolver_to_localhost().failing(tlsa_name),
    )
    .await
    .expect_err("TLSA lookup failed");
    assert!(reply.contains("TLSA lookup"), "{reply}");
    assert_eq!(receiver.delivered().len(), 2);
    assert_eq!(*receiver.over_tls.lock().expect("lock"), vec![true, true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dane_ta_needs_a_chain_to_the_pinned_anchor_naming_the_host() {
    let ca = TestCa::new();
    let anchor = TlsaRecord {
        usage: 2,
        selector: 0,
        matching: 1,
        data: Sha256::digest(ca.der().as_ref()).to_vec(),
    };
    let tlsa_name = "_25._tcp.mx.remote.test";
    for (name, expected) in [("mx.remote.test", true), ("mx.elsewhere.test", false)] {
        let (cert, key) = ca.leaf(name);
        let receiver = FakeReceiver::start(Some(acceptor(vec![cert, ca.der()], key)), |_, _| {
            "250 2.1.5 ok".into()
        })
        .await;
        let outcome = attempt(
            &setup(),
            // No trusted roots at all: only the TLSA record can make the chain count.
            settings(receiver.address.port(), 1, RootCertStore::empty()),
            resolver_to_localhost().with_tlsa(tlsa_name, true, anchor.clone()),
        )
        .await;
        assert_eq!(outcome.is_ok(), expected, "{name}: {outcome:?}");
        assert_eq!(receiver.delivered().len(), usize::from(expected), "{name}");
    }
}

/// TLS-RPT (RFC 8460): a session an enforced MTA-STS policy refused (untrusted certificate)
/// and one that succeeded are counted for remote.test, and after a day its `_smtp._tls` rua
/// gets one report that mail-auth reads back: the sts policy, one success, one failure of
/// type certificate-not-trusted at mx.remote.test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_results_are_reported_to_the_domains_tlsrpt_address() {
    use mail_auth::report::tlsrpt::{PolicyType, ResultType, TlsReport};
    let ca = TestCa::new();
    let (policy_cert, policy_key) = ca.leaf("mta-sts.remote.test");
    let (policy_port, _) = policy_server(acceptor(vec![policy_cert], policy_key), ENFORCE).await;
    let impostor = FakeReceiver::accepting_tls(self_signed("mx.remote.test")).await;
    let good = FakeReceiver::accepting_tls(ca.leaf("mx.remote.test")).await;
    let (collector_cert, collector_key) = ca.leaf("reports.remote.test");
    let reports = HttpsServer::start(acceptor(vec![collector_cert], collector_key), |_| {
        (200, "text/plain", Vec::new())
    })
    .await;
    let resolver = || {
        announcing("1")
            .with_ip("reports.remote.test", "127.0.0.1".parse().expect("ip"))
            .with_txt(
                "_smtp._tls.remote.test",
                "v=TLSRPTv1; rua=mailto:tlsrpt@remote.test,https://reports.remote.test/tlsrpt",
            )
    };
    let setup = setup();
    let now = now_unix();
    let held = runner_with(
        &setup,
        settings(impostor.address.port(), policy_port, ca.roots()),
        resolver(),
    );
    let id = enqueue(&setup, "tls-rpt");
    held.run_once_at(now).await.expect("round");
    assert!(setup.queue.show(id).is_ok(), "held back by the policy");
    let delivering = runner_with(
        &setup,
        settings(good.address.port(), policy_port, ca.roots()),
        resolver(),
    );
    delivering.run_once_at(now + 120).await.expect("round");
    assert_eq!(good.delivered().len(), 1);

    let day_later = now + 86_401;
    // The results the delivering runner counted are written at its next check; another
    // runner, whose HTTPS port is the report collector's, sends them.
    delivering.send_reports(now + 600).await.expect("write");
    let mut reporting_settings = settings(good.address.port(), reports.port, ca.roots());
    reporting_settings.mta_sts_port = reports.port;
    let reporting = runner_with(&setup, reporting_settings, resolver());
    assert_eq!(
        reporting.send_reports(day_later).await.expect("send"),
        2,
        "mailed and posted"
    );
    delivering.run_once_at(day_later + 1).await.expect("round");
    let delivered = good.delivered();
    assert_eq!(delivered.len(), 2, "the message, then the report");
    let report = TlsReport::parse_rfc5322(&delivered[1], 1 << 20).expect("a TLS report");
    assert_eq!(report.organization_name.as_deref(), Some("mx.example.org"));
    assert_eq!(report.policies.len(), 1);
    let policy = &report.policies[0];
    assert_eq!(policy.policy.policy_type, PolicyType::Sts);
    assert_eq!(policy.policy.policy_domain, "remote.test");
    assert!(policy
        .policy
        .policy_string
        .contains(&"mode: enforce".to_string()));
    assert_eq!(
        (policy.summary.total_success, policy.summary.total_failure),
        (1, 1)
    );
    let failure = &policy.failure_details[0];
    assert_eq!(failure.result_type, ResultType::CertificateNotTrusted);
    assert_eq!(
        failure.receiving_mx_hostname.as_deref(),
        Some("mx.remote.test")
    );
    assert_eq!(failure.failed_session_count, 1);

    // The https: address got the same report, posted gzipped (section 5.4).
    let posted = reports.posted.lock().expect("lock").clone();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].path, "/tlsrpt");
    assert_eq!(posted[0].content_type, "application/tlsrpt+gzip");
    let mut json = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(posted[0].body.as_slice()),
        &mut json,
    )
    .expect("gzip");
    let posted: TlsReport = serde_json::from_str(&json).expect("TLS-RPT JSON");
    assert_eq!(posted.policies, report.policies);
}

/// A policy in use is fetched again once halfway to its max_age, which extends it; when that
/// fetch fails (the policy server blocked), the cached policy holds, and it holds past the
/// first fetch's expiry because the refresh renewed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_in_use_is_refreshed_before_it_expires() {
    use letterlock_queue::mta_sts::{policy_for, FetchSettings};
    let setup = setup();
    let ca = TestCa::new();
    let (policy_cert, policy_key) = ca.leaf("mta-sts.remote.test");
    let (port, requests) = policy_server(acceptor(vec![policy_cert], policy_key), ENFORCE).await;
    let fetch = FetchSettings {
        port,
        roots: Arc::new(ca.roots()),
        timeout: Duration::from_secs(5),
    };
    let domain = letterlock_types::Domain::try_from("remote.test").expect("domain");
    let reachable = announcing("one");
    let blocked = announcing("one").failing("mta-sts.remote.test");
    let start = now_unix();
    let mut fetches = Vec::new();
    for (after_secs, resolver) in [
        (0, &reachable),
        (3_600, &reachable),
        // max_age is a day (ENFORCE): halfway, it is fetched again.
        (43_200, &reachable),
        (50_000, &reachable),
        // Due again, but the policy server cannot be reached: the cached policy holds...
        (86_400, &blocked),
        // ...past the first fetch's expiry, because the refresh renewed it.
        (100_000, &blocked),
    ] {
        let policy = policy_for(&setup.queue, resolver, &fetch, &domain, start + after_secs).await;
        assert!(
            policy.is_some_and(|policy| policy.mx == ["mx.remote.test"]),
            "no policy {after_secs} s after the first fetch"
        );
        fetches.push(requests.load(Ordering::SeqCst));
    }
    assert_eq!(fetches, [1, 1, 2, 2, 2, 2]);
}
