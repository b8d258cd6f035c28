//! WKD key discovery against a real HTTPS server under a test CA: the advanced method when
//! `openpgpkey.<domain>` exists, the direct method otherwise; a key that does not name the
//! address is refused; answers (found and missing) are cached; hosts on non-public addresses
//! are refused when the server's rule asks for it.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::*;
use letterlock_crypto::openpgp::UserKey;
use letterlock_queue::https::HttpsSettings;
use letterlock_queue::testing::*;
use letterlock_queue::wkd::KeyDiscovery;
use letterlock_queue::MapResolver;

fn public_key_bytes(address: &str) -> Vec<u8> {
    UserKey::generate(address)
        .expect("key")
        .public_key()
        .to_bytes()
        .expect("bytes")
}

/// An HTTPS server for `host` serving `key` at `path` and 404 elsewhere.
async fn key_server(ca: &TestCa, host: &str, path: String, key: Vec<u8>) -> HttpsServer {
    let (cert, private) = ca.leaf(host);
    HttpsServer::start(acceptor(vec![cert], private), move |requested| {
        if requested == path {
            (200, "application/octet-stream", key.clone())
        } else {
            (404, "text/plain", b"no such key".to_vec())
        }
    })
    .await
}

fn discovery(ca: &TestCa, port: u16, resolver: MapResolver) -> KeyDiscovery {
    discovery_with(ca, port, resolver, false)
}

fn discovery_with(
    ca: &TestCa,
    port: u16,
    resolver: MapResolver,
    public_addresses_only: bool,
) -> KeyDiscovery {
    KeyDiscovery::new(
        Arc::new(resolver),
        HttpsSettings {
            port,
            roots: Arc::new(ca.roots()),
            public_addresses_only,
        },
    )
}

/// As the server runs it (inbound signed mail makes strangers able to ask for lookups): a
/// domain whose WKD host resolves to loopback is not asked at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_public_addresses_only_a_host_on_loopback_is_not_contacted() {
    let ca = TestCa::new();
    let hash = letterlock_crypto::wkd::local_part_hash("erin");
    let server = key_server(
        &ca,
        "openpgpkey.remote.test",
        format!("/.well-known/openpgpkey/remote.test/hu/{hash}?l=erin"),
        public_key_bytes("erin@remote.test"),
    )
    .await;
    let resolver =
        MapResolver::default().with_ip("openpgpkey.remote.test", "127.0.0.1".parse().expect("ip"));
    let refusing = discovery_with(&ca, server.port, resolver.clone(), true);
    assert_eq!(refusing.key_for(&address("erin@remote.test")).await, None);
    assert_eq!(server.requests.load(Ordering::SeqCst), 0);
    // The same lookup allowed to loopback finds the key: only the address rule refused it.
    let allowed = discovery_with(&ca, server.port, resolver, false);
    assert!(allowed
        .key_for(&address("erin@remote.test"))
        .await
        .is_some());
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_advanced_method_finds_a_key_once_and_the_cache_answers_after() {
    let ca = TestCa::new();
    let key = public_key_bytes("erin@remote.test");
    let hash = letterlock_crypto::wkd::local_part_hash("erin");
    let server = key_server(
        &ca,
        "openpgpkey.remote.test",
        format!("/.well-known/openpgpkey/remote.test/hu/{hash}?l=erin"),
        key.clone(),
    )
    .await;
    let resolver =
        MapResolver::default().with_ip("openpgpkey.remote.test", "127.0.0.1".parse().expect("ip"));
    let discovery = discovery(&ca, server.port, resolver);
    assert_eq!(
        discovery.key_for(&address("Erin@remote.test")).await,
        Some(key.clone())
    );
    assert_eq!(
        discovery.key_for(&address("erin@remote.test")).await,
        Some(key)
    );
    assert_eq!(
        discovery.key_for(&address("frank@remote.test")).await,
        None,
        "404"
    );
    assert_eq!(discovery.key_for(&address("frank@remote.test")).await, None);
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        2,
        "one request per address, then the cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_openpgpkey_host_the_direct_method_is_used_and_keys_must_name_the_address() {
    let ca = TestCa::new();
    let hash = letterlock_crypto::wkd::local_part_hash("gina");
    let path = format!("/.well-known/openpgpkey/hu/{hash}?l=gina");
    let resolver =
        || MapResolver::default().with_ip("direct.test", "127.0.0.1".parse().expect("ip"));
    let right = key_server(
        &ca,
        "direct.test",
        path.clone(),
        public_key_bytes("gina@direct.test"),
    )
    .await;
    assert!(discovery(&ca, right.port, resolver())
        .key_for(&address("gina@direct.test"))
        .await
        .is_some());

    // A key for somebody else at that URL is not Gina's key.
    let wrong = key_server(
        &ca,
        "direct.test",
        path,
        public_key_bytes("mallory@evil.test"),
    )
    .await;
    assert_eq!(
        discovery(&ca, wrong.port, resolver())
            .key_for(&address("gina@direct.test"))
            .await,
        None
    );
    // A server whose certificate the roots do not vouch for is not believed.
    let untrusted = TestCa::new();
    assert_eq!(
        discovery(&untrusted, right.port, resolver())
            .key_for(&address("gina@direct.test"))
            .await,
        None
    );
}
