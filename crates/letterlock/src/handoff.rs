//! Local delivery while `serve` runs: the embedded store admits one process, so `letterlock
//! deliver` hands its message to the running server over a Unix socket in the data directory
//! (`DATA/deliver.sock`, mode 0600, so only the server's own user can use it). The server
//! delivers it exactly as it would itself (same encryption, same durable commit) and answers
//! only after the commit.
//!
//! The exchange, one per connection, between two copies of this same binary:
//! request  `DELIVER <recipient count>\n`, one recipient per line, `<message length>\n`, the bytes;
//! response `OK\n` then `delivered <recipient> <account> <uid>\n` lines, or
//!          `ERR <nouser|toolarge|temporary|permanent> <reason>\n`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use letterlock_mailstore::{DeliveryReport, MailStore, StoreError};
use letterlock_types::limits::RECIPIENTS_PER_MESSAGE_MAX;
use letterlock_types::EmailAddress;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

pub const SOCKET_FILE_NAME: &str = "deliver.sock";
/// A header line of the exchange (a recipient, a count): an address is at most 254 octets.
const HEADER_LINE_LENGTH_MAX_BYTES: usize = 512;
/// How long either side waits for the other; a delivery of the largest message fits easily.
const EXCHANGE_TIMEOUT_SECS: u64 = 120;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE_NAME)
}

/// Why the server refused a handed-off delivery, as the client reports it.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct Refused {
    pub kind: String,
    pub reason: String,
}

/// Client side: deliver through the running server. Returns its report lines.
pub fn deliver_via_server(
    data_dir: &Path,
    recipients: &[EmailAddress],
    message: &[u8],
) -> anyhow::Result<Vec<String>> {
    let path = socket_path(data_dir);
    let mut stream = UnixStream::connect(&path)
        .with_context(|| format!("cannot reach the running server at {}", path.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(EXCHANGE_TIMEOUT_SECS)))?;
    stream.set_write_timeout(Some(Duration::from_secs(EXCHANGE_TIMEOUT_SECS)))?;
    let mut request = format!("DELIVER {}\n", recipients.len());
    for recipient in recipients {
        request.push_str(&format!("{recipient}\n"));
    }
    request.push_str(&format!("{}\n", message.len()));
    stream.write_all(request.as_bytes())?;
    stream.write_all(message)?;
    stream.flush()?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    let status = status.trim_end();
    if let Some(error) = status.strip_prefix("ERR ") {
        let (kind, reason) = error.split_once(' ').unwrap_or((error, ""));
        return Err(Refused {
            kind: kind.to_string(),
            reason: reason.to_string(),
        }
        .into());
    }
    if status != "OK" {
        bail!("unexpected answer from the server: {status:?}");
    }
    let mut lines = Vec::new();
    for line in reader.lines() {
        lines.push(line?);
    }
    Ok(lines)
}

/// Server side: accept hand-offs until the task is dropped.
pub async fn serve(
    listener: tokio::net::UnixListener,
    store: MailStore,
    message_size_max_bytes: usize,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let store = store.clone();
        tokio::spawn(async move {
            let exchange = handle(stream, store, message_size_max_bytes);
            if tokio::time::timeout(Duration::from_secs(EXCHANGE_TIMEOUT_SECS), exchange)
                .await
                .is_err()
            {
                tracing::info!("deliver hand-off timed out");
            }
        });
    }
}

/// Bind the socket, replacing a stale file from a server that did not stop cleanly (the
/// store's own lock already guarantees no other server runs on this data directory).
pub fn bind(data_dir: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    let path = socket_path(data_dir);
    if path.exists() {
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot remove stale {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn handle(stream: tokio::net::UnixStream, store: MailStore, message_size_max_bytes: usize) {
    let (read_half, mut write_half) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read_half);
    let answer = match read_request(&mut reader, message_size_max_bytes).await {
        Ok((recipients, message)) => {
            let delivered =
                tokio::task::spawn_blocking(move || store.deliver(&recipients, &message)).await;
            match delivered {
                Ok(Ok(report)) => ok_answer(&report),
                Ok(Err(error)) => error_answer(&error),
                Err(_) => "ERR temporary internal error\n".to_string(),
            }
        }
        Err(error) => format!("ERR permanent {}\n", error.to_string().replace('\n', " ")),
    };
    let _ = write_half.write_all(answer.as_bytes()).await;
    let _ = write_half.shutdown().await;
}

async fn read_header_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> anyhow::Result<String> {
    let mut line = Vec::new();
    let read = reader
        .take(HEADER_LINE_LENGTH_MAX_BYTES as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 || line.last() != Some(&b'\n') {
        bail!("malformed request");
    }
    line.pop();
    String::from_utf8(line).map_err(|_| anyhow!("request is not UTF-8"))
}

async fn read_request<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    message_size_max_bytes: usize,
) -> anyhow::Result<(Vec<EmailAddress>, Vec<u8>)> {
    let header = read_header_line(reader).await?;
    let count: usize = header
        .strip_prefix("DELIVER ")
        .and_then(|count| count.parse().ok())
        .ok_or_else(|| anyhow!("malformed request"))?;
    if count == 0 || count > RECIPIENTS_PER_MESSAGE_MAX {
        bail!("between 1 and {RECIPIENTS_PER_MESSAGE_MAX} recipients");
    }
    let mut recipients = Vec::with_capacity(count);
    for _ in 0..count {
        recipients.push(EmailAddress::try_from(read_header_line(reader).await?)?);
    }
    let length: usize = read_header_line(reader)
        .await?
        .parse()
        .map_err(|_| anyhow!("malformed length"))?;
    if length > message_size_max_bytes {
        bail!("message of {length} bytes is over the limit of {message_size_max_bytes} bytes");
    }
    let mut message = vec![0u8; length];
    reader.read_exact(&mut message).await?;
    Ok((recipients, message))
}

fn ok_answer(report: &DeliveryReport) -> String {
    let mut answer = "OK\n".to_string();
    for (recipient, account, uid) in &report.delivered {
        answer.push_str(&format!("delivered {recipient} {account} {uid}\n"));
    }
    answer
}

fn error_answer(error: &StoreError) -> String {
    let kind = match error {
        StoreError::UnknownRecipient(_) | StoreError::NoSuchUser(_) => "nouser",
        StoreError::MessageTooLarge { .. } => "toolarge",
        error if error.is_temporary() => "temporary",
        _ => "permanent",
    };
    format!("ERR {kind} {}\n", error.to_string().replace('\n', " "))
}
