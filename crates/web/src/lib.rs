//! The HTTPS service of `letterlock serve` (port 443; 2443 in local mode): what other software
//! fetches from a mail server over the web.
//!
//! - WKD: each user's OpenPGP public key ([`wkd`]).
//! - Client autoconfiguration: Thunderbird's `config-v1.1.xml` (also read by K-9, FairEmail,
//!   Evolution), so a client needs only the address and the password.
//! - The MTA-STS policy (RFC 8461 section 3.2) at `/.well-known/mta-sts.txt`.
//!
//! HTTP/1.1 (RFC 9112) with one request per connection: every client of these documents fetches
//! one of them and goes away. Request heads are parsed by `httparse` and bounded in size and time.
//! The webmail and the portal will grow this service.

use std::sync::Arc;
use std::time::Duration;

use letterlock_mailstore::MailStore;
use letterlock_server::{Connection, SessionFuture, SessionHandler, Transport};
use letterlock_types::{Domain, EmailAddress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub mod wkd;

/// A request head larger than this is refused with 431.
pub const REQUEST_HEAD_MAX_BYTES: usize = 16 * 1024;
/// Header fields of one request.
pub const REQUEST_HEADERS_MAX: usize = 64;
/// A client must send its request head within this.
pub const REQUEST_HEAD_TIMEOUT_SECS: u64 = 10;

/// What the binary sets from its configuration.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// The server's own name, which clients connect to.
    pub hostname: String,
    pub imaps_port: Option<u16>,
    pub imap_port: Option<u16>,
    pub pop3s_port: Option<u16>,
    pub submission_tls_port: Option<u16>,
    pub submission_starttls_port: Option<u16>,
    /// RFC 8461 mode: `testing` until the operator has checked the MX certificates.
    pub mta_sts_mode: String,
}

struct Web {
    store: MailStore,
    settings: WebSettings,
}

/// The handler to register for the HTTPS service.
pub fn handler(store: MailStore, settings: WebSettings) -> Arc<dyn SessionHandler> {
    Arc::new(WebHandler(Arc::new(Web { store, settings })))
}

struct WebHandler(Arc<Web>);

impl SessionHandler for WebHandler {
    fn run(&self, connection: Connection) -> SessionFuture {
        let web = Arc::clone(&self.0);
        Box::pin(async move {
            match connection.transport {
                Transport::Tls(stream) => exchange(&web, *stream).await,
                // The listeners only hand HTTPS over TLS; plain HTTP gets nothing.
                Transport::Plain(_) => {}
            }
        })
    }
}

/// One response.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(web: &Arc<Web>, mut stream: S) {
    let head = tokio::time::timeout(
        Duration::from_secs(REQUEST_HEAD_TIMEOUT_SECS),
        read_head(&mut stream),
    )
    .await;
    let (response, is_head) = match head {
        Err(_) => return,
        Ok(Err(response)) => (response, false),
        Ok(Ok(head)) => {
            let is_head = head.method == "HEAD";
            (route(web, head).await, is_head)
        }
    };
    let mut bytes = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nAccess-Control-Allow-Origin: *\r\nCache-Control: max-age=300\r\nConnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    )
    .into_bytes();
    if !is_head {
        bytes.extend_from_slice(&response.body);
    }
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
}

struct Head {
    method: String,
    path: String,
    host: String,
}

async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Head, Response> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|_| Response::text(400, "read error\n"))?;
        if read == 0 {
            return Err(Response::text(400, "incomplete request\n"));
        }
        buffer.extend_from_slice(&chunk[..read]);
        let mut headers = [httparse::EMPTY_HEADER; REQUEST_HEADERS_MAX];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buffer) {
            Ok(httparse::Status::Complete(_)) => {
                let host = request
                    .headers
                    .iter()
                    .find(|header| header.name.eq_ignore_ascii_case("host"))
                    .and_then(|header| std::str::from_utf8(header.value).ok())
                    .map(strip_port)
                    .unwrap_or_default();
                return Ok(Head {
                    method: request.method.unwrap_or("").to_string(),
                    path: request.path.unwrap_or("/").to_string(),
                    host,
                });
            }
            Ok(httparse::Status::Partial) if buffer.len() < REQUEST_HEAD_MAX_BYTES => {}
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                return Err(Response::text(431, "request head too large\n"))
            }
            Err(_) => return Err(Response::text(400, "malformed request\n")),
        }
    }
}

fn strip_port(host: &str) -> String {
    let host = host.trim();
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .unwrap_or("")
            .trim_start_matches('[')
            .to_string();
    }
    host.rsplit_once(':')
        .map(|(name, _)| name)
        .unwrap_or(host)
        .to_ascii_lowercase()
}

async fn route(web: &Arc<Web>, head: Head) -> Response {
    if head.method != "GET" && head.method != "HEAD" {
        return Response::text(405, "only GET and HEAD\n");
    }
    let path = head.path.split('?').next().unwrap_or("");
    if path.starts_with("/.well-known/openpgpkey/") {
        let Some(request) = wkd::parse(&head.path, &head.host) else {
            return Response::text(404, "no such key\n");
        };
        let web = Arc::clone(web);
        return tokio::task::spawn_blocking(move || wkd_response(&web.store, request))
            .await
            .unwrap_or_else(|_| Response::text(500, "internal error\n"));
    }
    if path == "/.well-known/autoconfig/mail/config-v1.1.xml" || path == "/mail/config-v1.1.xml" {
        return autoconfig(&web.settings, &head);
    }
    if path == "/.well-known/mta-sts.txt" {
        return Response {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: format!(
                "version: STSv1\nmode: {}\nmx: {}\nmax_age: 604800\n",
                web.settings.mta_sts_mode, web.settings.hostname
            )
            .into_bytes(),
        };
    }
    Response::text(404, "not found\n")
}

fn wkd_response(store: &MailStore, request: wkd::Request) -> Response {
    let domain = match &request {
        wkd::Request::Policy { domain } | wkd::Request::Key { domain, .. } => domain.clone(),
    };
    let domain = match Domain::try_from(domain.trim_start_matches("openpgpkey.")) {
        Ok(domain) => domain,
        Err(_) => return Response::text(404, "no such domain\n"),
    };
    match store.has_domain(&domain) {
        Ok(true) => {}
        Ok(false) => return Response::text(404, "no such domain\n"),
        Err(_) => return Response::text(503, "try again later\n"),
    }
    let wkd::Request::Key {
        hash, local_part, ..
    } = request
    else {
        return Response {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: Vec::new(),
        };
    };
    // With `l=`, one lookup; without it, the domain's users are hashed until one matches.
    let candidates: Vec<EmailAddress> = match local_part {
        Some(local) => EmailAddress::try_from(format!("{local}@{domain}"))
            .into_iter()
            .collect(),
        None => match store.list_users(Some(&domain)) {
            Ok(users) => users.into_iter().map(|user| user.address).collect(),
            Err(_) => return Response::text(503, "try again later\n"),
        },
    };
    let found = candidates
        .into_iter()
        .find(|address| wkd::local_part_hash(address.local_part()) == hash);
    let Some(address) = found else {
        return Response::text(404, "no such key\n");
    };
    match store.public_key(&address) {
        Ok(key) => Response {
            status: 200,
            content_type: "application/octet-stream",
            body: key,
        },
        Err(_) => Response::text(404, "no such key\n"),
    }
}

/// Thunderbird autoconfig (the "config-v1.1.xml" format of its ISPDB).
fn autoconfig(settings: &WebSettings, head: &Head) -> Response {
    let query = head
        .path
        .split_once('?')
        .map(|(_, query)| query)
        .unwrap_or("");
    let domain = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("emailaddress="))
        .and_then(|address| {
            address
                .replace("%40", "@")
                .rsplit_once('@')
                .map(|(_, domain)| domain.to_string())
        })
        .unwrap_or_else(|| head.host.trim_start_matches("autoconfig.").to_string());
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let host = escape(&settings.hostname);
    let server = |kind: &str, tag: &str, port: Option<u16>, socket: &str| {
        port.map(|port| {
            format!(
                "    <{tag} type=\"{kind}\">\n      <hostname>{host}</hostname>\n      <port>{port}</port>\n      <socketType>{socket}</socketType>\n      <authentication>password-cleartext</authentication>\n      <username>%EMAILADDRESS%</username>\n    </{tag}>\n"
            )
        })
        .unwrap_or_default()
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n  <emailProvider id=\"{domain}\">\n    <domain>{domain}</domain>\n    <displayName>Letterlock ({domain})</displayName>\n{}{}{}{}{}  </emailProvider>\n</clientConfig>\n",
        server("imap", "incomingServer", settings.imaps_port, "SSL"),
        server("imap", "incomingServer", settings.imap_port, "STARTTLS"),
        server("pop3", "incomingServer", settings.pop3s_port, "SSL"),
        server("smtp", "outgoingServer", settings.submission_tls_port, "SSL"),
        server("smtp", "outgoingServer", settings.submission_starttls_port, "STARTTLS"),
        domain = escape(&domain),
    );
    Response {
        status: 200,
        content_type: "application/xml; charset=utf-8",
        body: body.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("Example.org:2443"), "example.org");
        assert_eq!(strip_port("example.org"), "example.org");
        assert_eq!(strip_port("[::1]:443"), "::1");
    }
}
