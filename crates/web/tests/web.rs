//! The HTTPS service over real TLS: GnuPG's own WKD URL for an address, fetched with curl,
//! gives the key that gpg imports with the account's fingerprint; autoconfig and MTA-STS
//! documents; refusals. GnuPG's own WKD client (`gpg --locate-keys`, through dirmngr) finds
//! the key by both methods, trusting only a test CA.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use letterlock_mailstore::{MailStore, StoreOptions};
use letterlock_server::config::ListenAddress;
use letterlock_server::{tls, Config, Handlers, Server, Service};
use letterlock_storage::embedded::EmbeddedEngine;
use letterlock_types::{Domain, EmailAddress, Secret};
use letterlock_web::{handler, WebSettings};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Running {
    port: u16,
    certificate: PathBuf,
    fingerprint: String,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start() -> Running {
    start_with(|_| {}).await
}

/// A server whose configuration `adjust` may change first (given the data directory).
async fn start_with(adjust: impl FnOnce(&mut Config)) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = EmbeddedEngine::open(&dir.path().join("store")).expect("engine");
    let store = MailStore::new(
        Arc::new(engine),
        StoreOptions {
            kdf: letterlock_crypto::kdf::KdfParams::INSECURE_FOR_TESTS,
            ..StoreOptions::default()
        },
    );
    store
        .add_domain(&Domain::try_from("example.org").expect("domain"))
        .expect("domain");
    let created = store
        .add_user(
            &EmailAddress::try_from("alice@example.org").expect("address"),
            &Secret::from("correct horse battery"),
            0,
            None,
        )
        .expect("user");
    let mut config = Config::default_for(dir.path());
    for service in Service::ALL {
        config.listen.set_address(service, ListenAddress::Disabled);
    }
    config.listen.set_address(
        Service::Https,
        ListenAddress::At("127.0.0.1:0".parse().expect("address")),
    );
    adjust(&mut config);
    let identity = tls::load_or_generate(&config, dir.path()).expect("tls");
    let settings = WebSettings {
        hostname: "mail.example.org".into(),
        imaps_port: Some(993),
        imap_port: Some(143),
        pop3s_port: Some(995),
        submission_tls_port: Some(465),
        submission_starttls_port: Some(587),
        mta_sts_mode: "testing".into(),
    };
    let handlers = Handlers {
        http: Some(handler(store, settings)),
        ..Handlers::default()
    };
    let server = Server::bind(&config, Arc::clone(&identity.server_config), handlers)
        .await
        .expect("bind");
    let port = server.local_address(Service::Https).expect("https").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Running {
        port,
        certificate: identity.certificate_path.clone(),
        fingerprint: created.fingerprint,
        dir,
        stop: Some(stop),
    }
}

/// curl, verifying the server certificate for `localhost`.
fn curl(running: &Running, path: &str) -> std::process::Output {
    Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--fail",
            "--max-time",
            "20",
            "--cacert",
        ])
        .arg(&running.certificate)
        .arg(format!("https://localhost:{}{path}", running.port))
        .output()
        .expect("curl is installed (scripts/install-test-tools.sh)")
}

const WKS_CLIENT: &str = "/usr/lib/gnupg/gpg-wks-client";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gnupg_wkd_url_serves_the_key_gpg_imports() {
    let running = start().await;
    let output = Command::new(WKS_CLIENT)
        .args(["--print-wkd-url", "alice@example.org"])
        .output()
        .expect("gpg-wks-client is installed (scripts/install-test-tools.sh)");
    assert!(output.status.success());
    let url = String::from_utf8(output.stdout).expect("utf-8");
    // https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/HASH?l=alice
    let path = url
        .trim()
        .split_once("/.well-known/")
        .map(|(_, rest)| format!("/.well-known/{rest}"))
        .expect("a WKD URL");
    let (running, fetched) = tokio::task::spawn_blocking(move || {
        let fetched = curl(&running, &path);
        (running, fetched)
    })
    .await
    .expect("join");
    assert!(
        fetched.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    let key_file = running.dir.path().join("alice.pgp");
    std::fs::write(&key_file, &fetched.stdout).expect("write");
    let home = running.dir.path().join("gnupg");
    std::fs::create_dir_all(&home).expect("gnupg home");
    let imported = Command::new("gpg")
        .arg("--homedir")
        .arg(&home)
        .args([
            "--batch",
            "--with-colons",
            "--import-options",
            "show-only",
            "--import",
        ])
        .arg(&key_file)
        .output()
        .expect("gpg");
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let listing = String::from_utf8_lossy(&imported.stdout);
    assert!(
        listing.contains(&format!("fpr:::::::::{}:", running.fingerprint)),
        "{listing}"
    );
    assert!(listing.contains("<alice@example.org>"), "{listing}");
    // The policy file of the advanced method.
    let policy = tokio::task::spawn_blocking(move || {
        curl(&running, "/.well-known/openpgpkey/example.org/policy")
    })
    .await
    .expect("join");
    assert!(policy.status.success());
}

/// A raw HTTPS exchange with any Host header (the direct method names the domain there).
async fn request(running: &Running, raw: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&running.certificate).expect("certificate");
    use rustls::pki_types::pem::PemObject;
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(certificate.expect("pem")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", running.port))
        .await
        .expect("connect");
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    stream.write_all(raw.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn direct_method_autoconfig_mta_sts_and_refusals() {
    let running = start().await;
    let hash = letterlock_web::wkd::local_part_hash("alice");
    let direct = request(
        &running,
        &format!("GET /.well-known/openpgpkey/hu/{hash} HTTP/1.1\r\nHost: example.org\r\n\r\n"),
    )
    .await;
    assert!(direct.starts_with("HTTP/1.1 200 OK\r\n"), "{direct}");
    assert!(
        direct.contains("Content-Type: application/octet-stream"),
        "{direct}"
    );
    let unknown = request(
        &running,
        &format!(
            "GET /.well-known/openpgpkey/hu/{} HTTP/1.1\r\nHost: example.org\r\n\r\n",
            letterlock_web::wkd::local_part_hash("nobody")
        ),
    )
    .await;
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    let other_domain = request(
        &running,
        &format!(
            "GET /.well-known/openpgpkey/hu/{hash} HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n"
        ),
    )
    .await;
    assert!(other_domain.starts_with("HTTP/1.1 404"), "{other_domain}");

    let autoconfig = request(
        &running,
        "GET /mail/config-v1.1.xml?emailaddress=alice%40example.org HTTP/1.1\r\nHost: autoconfig.example.org\r\n\r\n",
    )
    .await;
    assert!(
        autoconfig.starts_with("HTTP/1.1 200 OK\r\n"),
        "{autoconfig}"
    );
    for expected in [
        "<domain>example.org</domain>",
        "<hostname>mail.example.org</hostname>",
        "<port>993</port>",
        "<socketType>SSL</socketType>",
        "<port>587</port>",
        "<socketType>STARTTLS</socketType>",
        "<username>%EMAILADDRESS%</username>",
    ] {
        assert!(
            autoconfig.contains(expected),
            "{expected} missing: {autoconfig}"
        );
    }
    let mta_sts = request(
        &running,
        "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.org\r\n\r\n",
    )
    .await;
    assert!(
        mta_sts.ends_with("version: STSv1\nmode: testing\nmx: mail.example.org\nmax_age: 604800\n"),
        "{mta_sts}"
    );

    let post = request(
        &running,
        "POST / HTTP/1.1\r\nHost: example.org\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let garbage = request(&running, "\u{1}\u{2}garbage\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: example.org\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let huge = request(&running, &huge).await;
    assert!(huge.starts_with("HTTP/1.1 431"), "{huge}");
    let head = request(
        &running,
        "HEAD /.well-known/mta-sts.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(
        head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
}

/// A CONNECT proxy on loopback that sends every tunnel to `target` and keeps each request line:
/// dirmngr asks it for `openpgpkey.example.org:443` (or `example.org:443`), so GnuPG's WKD
/// client reaches the server without port 443 or DNS.
async fn connect_proxy(target: u16) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let kept = Arc::clone(&kept);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    match client.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                kept.lock().expect("lock").push(line);
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                if client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_ok()
                {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (port, seen)
}

/// Runs `gpg --auto-key-locate clear,wkd --locate-keys alice@example.org` in a fresh GnuPG
/// home, inside a private mount namespace where the system CA bundle is `trusted_ca` and
/// `/etc/hosts` is `hosts` (dirmngr trusts only the system store for WKD). Nothing outside
/// the namespace sees either file. Gives gpg's exit success and its key listing afterwards.
async fn gpg_locate_over_wkd(
    dir: &std::path::Path,
    proxy_port: u16,
    trusted_ca: &std::path::Path,
    hosts: &str,
) -> (bool, String) {
    let (dir, trusted_ca, hosts) = (
        dir.to_path_buf(),
        trusted_ca.to_path_buf(),
        hosts.to_string(),
    );
    tokio::task::spawn_blocking(move || gpg_locate_blocking(&dir, proxy_port, &trusted_ca, &hosts))
        .await
        .expect("join")
}

fn gpg_locate_blocking(
    dir: &std::path::Path,
    proxy_port: u16,
    trusted_ca: &std::path::Path,
    hosts: &str,
) -> (bool, String) {
    let home = tempfile::Builder::new()
        .prefix("g")
        .tempdir_in(dir)
        .expect("gnupg home");
    let home = home.keep();
    std::fs::write(
        home.join("dirmngr.conf"),
        format!("http-proxy http://127.0.0.1:{proxy_port}\n"),
    )
    .expect("dirmngr.conf");
    let hosts_file = home.join("hosts");
    std::fs::write(&hosts_file, hosts).expect("hosts");
    let script = r#"set -u
mount --bind "$1" /etc/ssl/certs/ca-certificates.crt || exit 90
mount --bind "$2" /etc/hosts || exit 90
export GNUPGHOME="$3"
timeout 60 gpg --batch --auto-key-locate clear,wkd --locate-keys alice@example.org >/dev/null 2>&1
located=$?
gpg --batch --with-colons --list-keys alice@example.org 2>/dev/null
gpgconf --kill all
exit $located"#;
    let output = Command::new("unshare")
        .args(["--map-root-user", "--mount", "sh", "-c", script, "sh"])
        .arg(trusted_ca)
        .arg(&hosts_file)
        .arg(&home)
        .output()
        .expect("unshare (util-linux) and gpg are installed");
    assert_ne!(
        output.status.code(),
        Some(90),
        "cannot make a private mount namespace: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

const ADVANCED_HOSTS: &str = "127.0.0.1 localhost\n127.0.0.1 openpgpkey.example.org example.org\n";
const DIRECT_HOSTS: &str = "127.0.0.1 localhost\n127.0.0.1 example.org\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpg_locate_keys_finds_the_key_by_wkd_under_a_test_ca() {
    let keys = tempfile::tempdir().expect("tempdir");
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Letterlock WKD test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec![
        "openpgpkey.example.org".to_string(),
        "example.org".to_string(),
    ])
    .expect("params")
    .signed_by(&leaf_key, &ca)
    .expect("leaf");
    let ca_file = keys.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write");
    let chain_file = keys.path().join("chain.pem");
    std::fs::write(&chain_file, leaf.pem() + &ca.pem()).expect("write");
    let key_file = keys.path().join("key.pem");
    std::fs::write(&key_file, leaf_key.serialize_pem()).expect("write");
    let (certificate, private_key) = (chain_file.clone(), key_file.clone());
    let running = start_with(move |config| {
        config.tls.certificate = Some(certificate);
        config.tls.private_key = Some(private_key);
    })
    .await;
    let (proxy_port, tunnels) = connect_proxy(running.port).await;
    let listed = |listing: &str| listing.contains(&format!("fpr:::::::::{}:", running.fingerprint));
    let dir = keys.path().to_path_buf();

    // The advanced method when openpgpkey.example.org resolves (to loopback); the direct
    // method, asking example.org itself, when it does not.
    for (hosts, tunnel) in [
        (
            ADVANCED_HOSTS,
            "CONNECT openpgpkey.example.org:443 HTTP/1.0",
        ),
        (DIRECT_HOSTS, "CONNECT example.org:443 HTTP/1.0"),
    ] {
        tunnels.lock().expect("lock").clear();
        let (found, listing) = gpg_locate_over_wkd(&dir, proxy_port, &ca_file, hosts).await;
        assert!(found, "gpg --locate-keys failed: {listing}");
        assert!(listed(&listing), "{listing}");
        assert!(listing.contains("<alice@example.org>"), "{listing}");
        assert_eq!(tunnels.lock().expect("lock").as_slice(), [tunnel]);
    }

    // Trusting another CA, dirmngr refuses the server's certificate: nothing is imported.
    let other_key = rcgen::KeyPair::generate().expect("key");
    let mut other_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    other_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other = other_params.self_signed(&other_key).expect("CA");
    let other_file = dir.join("other-ca.pem");
    std::fs::write(&other_file, other.pem()).expect("write");
    let (found, listing) = gpg_locate_over_wkd(&dir, proxy_port, &other_file, ADVANCED_HOSTS).await;
    assert!(!found, "{listing}");
    assert!(!listed(&listing), "{listing}");
}
