//! A small HTTPS client for what delivery does over the web: fetch MTA-STS policies (RFC 8461
//! section 3.3) and WKD keys (draft-koch-openpgp-webkey-service), and post TLS-RPT reports
//! (RFC 8460 section 5.4). Written here rather
//! than taken from an HTTP crate because both need the same narrow thing: one GET over rustls
//! with the server's name verified against the configured roots, the host resolved through the
//! delivery [`Resolver`] (so tests never leave loopback), no redirects (RFC 8461 forbids
//! following them; a WKD key must come from the address's own domain), no cookies, no
//! keep-alive, a bounded body. An HTTP/1.0 request means the reply is never chunked.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::resolver::Resolver;

/// The status line and headers of a reply.
pub const HEADERS_MAX_BYTES: usize = 8 * 1024;

/// A `200` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The media type, lowercase, without parameters.
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Where to fetch from: the HTTPS port (443; tests use another) and the trusted roots.
#[derive(Clone)]
pub struct HttpsSettings {
    pub port: u16,
    pub roots: Arc<RootCertStore>,
    /// Refuse hosts that resolve to a loopback, private, link-local or other non-public
    /// address: for fetches a stranger can cause (WKD lookups for inbound signed mail), so
    /// they cannot make the server connect into its own network. Off for tests on loopback.
    pub public_addresses_only: bool,
}

/// Whether `address` is one a host on the public internet can have (not loopback, private,
/// shared, link-local, unique-local, multicast, documentation, unspecified or broadcast).
pub fn is_public(address: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match address {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                // 100.64.0.0/10, shared address space (RFC 6598).
                || (a == 100 && (b & 0xc0) == 64)
                // 192.0.0.0/24 (IETF protocol assignments) and 240.0.0.0/4 (reserved).
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link-local, 2001:db8::/32 documentation.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8))
        }
    }
}

/// GET `path` from `host`; only a `200` within `body_limit` bytes counts. Callers bound the
/// time with their own timeout.
pub async fn get(
    resolver: &dyn Resolver,
    settings: &HttpsSettings,
    host: &str,
    path: &str,
    body_limit: usize,
) -> Result<Fetched, String> {
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: letterlock\r\n\r\n")
        .into_bytes();
    let reply = exchange(resolver, settings, host, &request, body_limit).await?;
    parse_reply(&reply, body_limit).map_err(|error| format!("{host}: {error}"))
}

/// POST `body` as `content_type` to `path` on `host` (TLS-RPT reports, RFC 8460 section 5.4);
/// any 2xx status is success.
pub async fn post(
    resolver: &dyn Resolver,
    settings: &HttpsSettings,
    host: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<(), String> {
    let mut request = format!(
        "POST {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: letterlock\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let reply = exchange(resolver, settings, host, &request, 0).await?;
    let status = String::from_utf8_lossy(
        reply
            .split(|&byte| byte == b'\n')
            .next()
            .unwrap_or_default(),
    )
    .into_owned();
    match status.split_whitespace().nth(1) {
        Some(code) if code.starts_with('2') => Ok(()),
        _ => Err(format!("{host} replied {:?}", status.trim_end())),
    }
}

/// Send `request` to `host` over verified TLS and read the reply (its headers and at most
/// `body_limit` bytes of body).
async fn exchange(
    resolver: &dyn Resolver,
    settings: &HttpsSettings,
    host: &str,
    request: &[u8],
    body_limit: usize,
) -> Result<Vec<u8>, String> {
    let addresses = resolver
        .ip(host)
        .await
        .map_err(|error| format!("{host}: {error}"))?;
    let address = addresses
        .first()
        .ok_or_else(|| format!("{host} has no address"))?;
    if settings.public_addresses_only && !is_public(*address) {
        return Err(format!(
            "{host} resolves to {address}, which is not a public address"
        ));
    }
    let tcp = TcpStream::connect(SocketAddr::new(*address, settings.port))
        .await
        .map_err(|error| format!("cannot connect to {host}: {error}"))?;
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_root_certificates(Arc::clone(&settings.roots))
            .with_no_client_auth();
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("{host} is not a valid TLS name"))?;
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|error| format!("TLS with {host} failed: {error}"))?;
    tls.write_all(request)
        .await
        .map_err(|error| format!("writing to {host}: {error}"))?;
    let mut reply = Vec::new();
    let limit = (HEADERS_MAX_BYTES + body_limit + 1) as u64;
    // A server that closes without close_notify still sent what it sent: keep it.
    let read = (&mut tls).take(limit).read_to_end(&mut reply).await;
    if let Err(error) = read {
        if reply.is_empty() {
            return Err(format!("reading from {host}: {error}"));
        }
    }
    Ok(reply)
}

/// The status line must say 200 (no redirects) and the body must fit `body_limit`.
pub fn parse_reply(reply: &[u8], body_limit: usize) -> Result<Fetched, String> {
    let end = reply
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .filter(|end| *end <= HEADERS_MAX_BYTES)
        .ok_or("no complete reply header")?;
    let head = String::from_utf8_lossy(&reply[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if !status.starts_with("HTTP/1.") || code != "200" {
        return Err(format!("the server replied {status:?}"));
    }
    let mut content_type = None;
    let mut length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-type") {
                content_type = value
                    .split(';')
                    .next()
                    .map(|media| media.trim().to_ascii_lowercase());
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            }
        }
    }
    let mut body = &reply[end + 4..];
    if let Some(length) = length {
        body = &body[..length.min(body.len())];
    }
    if body.len() > body_limit {
        return Err(format!("the body is larger than {body_limit} bytes"));
    }
    Ok(Fetched {
        content_type,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn only_public_addresses_count_as_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "192.0.2.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_public(private.parse().expect("address")), "{private}");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().expect("address")), "{public}");
        }
    }
    use super::*;

    #[test]
    fn only_a_200_within_the_limit_counts() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n\r\nhello trailing";
        assert_eq!(
            parse_reply(ok, 100),
            Ok(Fetched {
                content_type: Some("text/plain".into()),
                body: b"hello".to_vec()
            })
        );
        let redirect = b"HTTP/1.1 301 Moved\r\nLocation: https://evil.test/\r\n\r\n";
        assert!(parse_reply(redirect, 100).expect_err("3xx").contains("301"));
        let mut large = b"HTTP/1.0 200 OK\r\n\r\n".to_vec();
        large.resize(large.len() + 101, b'a');
        assert!(parse_reply(&large, 100)
            .expect_err("large")
            .contains("100 bytes"));
        assert!(
            parse_reply(b"HTTP/1.0 200 OK\r\n", 100).is_err(),
            "no header end"
        );
    }
}
