//! Test support shared by this crate's tests and its users' (feature `test-support`): a
//! certificate authority made on the spot, TLS acceptors for its certificates, and a tiny
//! HTTPS server, so tests of MTA-STS and WKD speak real TLS on loopback. Test code: it panics
//! on any failure, never in the server.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::RootCertStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A certificate authority for tests, its leaves, and TLS acceptors serving them.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Default for TestCa {
    fn default() -> TestCa {
        TestCa::new()
    }
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Letterlock test CA");
        let key = KeyPair::generate().expect("key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA"),
        }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.der()).expect("root");
        roots
    }

    /// A certificate for `name` signed by this CA, and its key.
    pub fn leaf(&self, name: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().expect("key");
        let certificate = CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .signed_by(&key, &self.issuer)
            .expect("leaf");
        (certificate.der().clone(), private_key(&key))
    }
}

pub fn private_key(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

pub fn self_signed(name: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = KeyPair::generate().expect("key");
    let certificate = CertificateParams::new(vec![name.to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    (certificate.der().clone(), private_key(&key))
}

pub fn acceptor(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> TlsAcceptor {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    TlsAcceptor::from(Arc::new(config))
}

/// An HTTPS/1.x server for tests: `respond(path)` gives the status, content type and body of
/// each request; requests are counted, and POSTed bodies kept with their path and type.
pub struct HttpsServer {
    pub port: u16,
    pub requests: Arc<AtomicU32>,
    pub posted: Arc<Mutex<Vec<Posted>>>,
}

/// A POST the test server received.
#[derive(Debug, Clone)]
pub struct Posted {
    pub path: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl HttpsServer {
    pub async fn start(
        tls: TlsAcceptor,
        respond: impl Fn(&str) -> (u16, &'static str, Vec<u8>) + Send + Sync + 'static,
    ) -> HttpsServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let requests = Arc::new(AtomicU32::new(0));
        let posted = Arc::new(Mutex::new(Vec::new()));
        let (counted, kept, respond) = (
            Arc::clone(&requests),
            Arc::clone(&posted),
            Arc::new(respond),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tls, counted, kept, respond) = (
                    tls.clone(),
                    Arc::clone(&counted),
                    Arc::clone(&kept),
                    Arc::clone(&respond),
                );
                tokio::spawn(async move {
                    let Ok(mut stream) = tls.accept(stream).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(end) =
                            request.windows(4).position(|window| window == b"\r\n\r\n")
                        {
                            break end + 4;
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(count) => request.extend_from_slice(&chunk[..count]),
                        }
                    };
                    let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
                    assert!(head.contains(" HTTP/1.0\r\n"), "{head}");
                    let mut words = head.split(' ');
                    let method = words.next().unwrap_or("").to_string();
                    let path = words.next().unwrap_or("").to_string();
                    let header = |name: &str| {
                        head.lines()
                            .find_map(|line| {
                                let (key, value) = line.split_once(':')?;
                                key.eq_ignore_ascii_case(name)
                                    .then(|| value.trim().to_string())
                            })
                            .unwrap_or_default()
                    };
                    if method == "POST" {
                        let length: usize = header("content-length").parse().unwrap_or(0);
                        while request.len() < head_end + length {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(count) => request.extend_from_slice(&chunk[..count]),
                            }
                        }
                        kept.lock().expect("lock").push(Posted {
                            path: path.clone(),
                            content_type: header("content-type"),
                            body: request[head_end..head_end + length].to_vec(),
                        });
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let (status, content_type, body) = respond(&path);
                    let mut reply = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    reply.extend_from_slice(&body);
                    let _ = stream.write_all(&reply).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        HttpsServer {
            port,
            requests,
            posted,
        }
    }
}
