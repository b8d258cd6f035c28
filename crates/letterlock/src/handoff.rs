//! Talking to a running `serve`: the embedded store admits one process, so while the server
//! holds it, `letterlock deliver` and the administration commands (`domain`, `user`, `alias`,
//! `export`) run inside the server, reached over a Unix socket in the data directory
//! (`DATA/control.sock`, mode 0600: only the server's own user can use it). The server runs
//! exactly the code this process would have run, on its own store, and a delivery is answered
//! only after its durable commit.
//!
//! The exchange, one per connection, between two copies of this same binary:
//! - `DELIVER <recipient count>\n`, one recipient per line, `<message length>\n`, the bytes;
//!   answered `OK\n` and `delivered <recipient> <account> <uid>\n` lines, or
//!   `ERR <nouser|toolarge|temporary|permanent> <reason>\n`.
//! - `ADMIN <argument count> <interactive 0|1>\n`, each argument as `<length>\n<bytes>`; the
//!   server then sends `OUT <line>\n` for output, `PROMPT <text>\n` for a secret (answered
//!   `ANSWER <secret>\n` or `NOANSWER\n`), and ends with `EXIT <status> <reason>\n`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use letterlock_mailstore::{DeliveryReport, MailStore, StoreError};
use letterlock_types::limits::RECIPIENTS_PER_MESSAGE_MAX;
use letterlock_types::{EmailAddress, Secret};

use crate::admin::Prompter;

pub const SOCKET_FILE_NAME: &str = "control.sock";
/// A header line of the exchange (a recipient, a count, a prompt).
const HEADER_LINE_LENGTH_MAX_BYTES: usize = 2048;
/// Arguments of one forwarded command, and the length of each.
const ARGUMENTS_MAX: usize = 64;
const ARGUMENT_LENGTH_MAX_BYTES: usize = 4096;
/// How long either side waits for the other. A prompt may wait on a person at a terminal.
const EXCHANGE_TIMEOUT_SECS: u64 = 300;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE_NAME)
}

/// Whether a server answers on the data directory's socket (a stale file after a crash does not).
pub fn server_is_listening(data_dir: &Path) -> bool {
    UnixStream::connect(socket_path(data_dir)).is_ok()
}

/// Why the server refused a handed-off delivery, as the client reports it.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct Refused {
    pub kind: String,
    pub reason: String,
}

/// A command that failed inside the server, with the exit status it would have had here.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct RemoteFailure {
    pub status: u8,
    pub reason: String,
}

/// What the server runs for a forwarded administration command.
pub type AdminRunner = Arc<
    dyn Fn(Vec<String>, &mut dyn Prompter, &mut dyn Write) -> Result<(), (u8, String)>
        + Send
        + Sync,
>;

fn connect(data_dir: &Path) -> anyhow::Result<UnixStream> {
    let path = socket_path(data_dir);
    let stream = UnixStream::connect(&path)
        .with_context(|| format!("cannot reach the running server at {}", path.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(EXCHANGE_TIMEOUT_SECS)))?;
    stream.set_write_timeout(Some(Duration::from_secs(EXCHANGE_TIMEOUT_SECS)))?;
    Ok(stream)
}

fn read_line(reader: &mut impl BufRead) -> anyhow::Result<String> {
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(HEADER_LINE_LENGTH_MAX_BYTES as u64)
        .read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        bail!("the other side closed the connection or sent a malformed line");
    }
    line.pop();
    String::from_utf8(line).map_err(|_| anyhow!("not UTF-8"))
}

// ---- client side ----

/// Deliver through the running server. Returns its report lines.
pub fn deliver_via_server(
    data_dir: &Path,
    recipients: &[EmailAddress],
    message: &[u8],
) -> anyhow::Result<Vec<String>> {
    let mut stream = connect(data_dir)?;
    let mut request = format!("DELIVER {}\n", recipients.len());
    for recipient in recipients {
        request.push_str(&format!("{recipient}\n"));
    }
    request.push_str(&format!("{}\n", message.len()));
    stream.write_all(request.as_bytes())?;
    stream.write_all(message)?;
    stream.flush()?;
    let mut reader = BufReader::new(stream);
    let status = read_line(&mut reader)?;
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

/// Run an administration command inside the running server, relaying prompts and output.
pub fn admin_via_server(
    data_dir: &Path,
    arguments: &[String],
    console: &mut dyn Prompter,
) -> anyhow::Result<()> {
    let mut stream = connect(data_dir)?;
    let mut request = format!(
        "ADMIN {} {}\n",
        arguments.len(),
        u8::from(console.is_interactive())
    )
    .into_bytes();
    for argument in arguments {
        request.extend_from_slice(format!("{}\n", argument.len()).as_bytes());
        request.extend_from_slice(argument.as_bytes());
    }
    stream.write_all(&request)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stdout = std::io::stdout().lock();
    loop {
        let line = read_line(&mut reader)?;
        if let Some(text) = line.strip_prefix("OUT ") {
            writeln!(stdout, "{text}")?;
        } else if let Some(prompt) = line.strip_prefix("PROMPT ") {
            let answer = match console.secret(prompt) {
                Ok(secret) => {
                    let mut answer = b"ANSWER ".to_vec();
                    answer.extend_from_slice(secret.expose());
                    answer.push(b'\n');
                    answer
                }
                Err(_) => b"NOANSWER\n".to_vec(),
            };
            stream.write_all(&answer)?;
        } else if let Some(exit) = line.strip_prefix("EXIT ") {
            let (status, reason) = exit.split_once(' ').unwrap_or((exit, ""));
            let status: u8 = status
                .parse()
                .map_err(|_| anyhow!("malformed exit status"))?;
            if status == 0 {
                return Ok(());
            }
            return Err(RemoteFailure {
                status,
                reason: reason.to_string(),
            }
            .into());
        } else {
            bail!("unexpected message from the server: {line:?}");
        }
    }
}

// ---- server side ----

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

/// Accept exchanges until the task is dropped. Each runs on a blocking thread: deliveries and
/// administration commands are blocking store calls anyway.
pub async fn serve(
    listener: tokio::net::UnixListener,
    store: MailStore,
    message_size_max_bytes: usize,
    admin: AdminRunner,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        let store = store.clone();
        let admin = Arc::clone(&admin);
        tokio::task::spawn_blocking(move || {
            if let Err(error) = handle(stream, &store, message_size_max_bytes, &admin) {
                tracing::info!("control socket exchange failed: {error}");
            }
        });
    }
}

fn handle(
    stream: UnixStream,
    store: &MailStore,
    message_size_max_bytes: usize,
    admin: &AdminRunner,
) -> anyhow::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(EXCHANGE_TIMEOUT_SECS)))?;
    stream.set_write_timeout(Some(Duration::from_secs(EXCHANGE_TIMEOUT_SECS)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let header = read_line(&mut reader)?;
    if let Some(count) = header.strip_prefix("DELIVER ") {
        let answer = match read_delivery(&mut reader, count, message_size_max_bytes) {
            Ok((recipients, message)) => match store.deliver(&recipients, &message) {
                Ok(report) => ok_answer(&report),
                Err(error) => error_answer(&error),
            },
            Err(error) => format!("ERR permanent {}\n", error.to_string().replace('\n', " ")),
        };
        writer.write_all(answer.as_bytes())?;
        return Ok(());
    }
    if let Some(rest) = header.strip_prefix("ADMIN ") {
        let (count, interactive) = rest
            .split_once(' ')
            .ok_or_else(|| anyhow!("malformed ADMIN"))?;
        let count: usize = count.parse().map_err(|_| anyhow!("malformed ADMIN"))?;
        if count > ARGUMENTS_MAX {
            bail!("too many arguments");
        }
        let mut arguments = Vec::with_capacity(count);
        for _ in 0..count {
            let length: usize = read_line(&mut reader)?
                .parse()
                .map_err(|_| anyhow!("malformed argument length"))?;
            if length > ARGUMENT_LENGTH_MAX_BYTES {
                bail!("argument too long");
            }
            let mut argument = vec![0u8; length];
            reader.read_exact(&mut argument)?;
            arguments.push(String::from_utf8(argument).map_err(|_| anyhow!("argument not UTF-8"))?);
        }
        let mut prompter = RemotePrompter {
            reader: &mut reader,
            writer: writer.try_clone()?,
            interactive: interactive == "1",
        };
        let mut out = RemoteOutput {
            writer: writer.try_clone()?,
            pending: Vec::new(),
        };
        let result = admin(arguments, &mut prompter, &mut out);
        out.flush()?;
        let exit = match result {
            Ok(()) => "EXIT 0 \n".to_string(),
            Err((status, reason)) => {
                format!("EXIT {} {}\n", status.max(1), reason.replace('\n', " "))
            }
        };
        writer.write_all(exit.as_bytes())?;
        return Ok(());
    }
    bail!("unknown request {header:?}")
}

fn read_delivery(
    reader: &mut impl BufRead,
    count: &str,
    message_size_max_bytes: usize,
) -> anyhow::Result<(Vec<EmailAddress>, Vec<u8>)> {
    let count: usize = count.parse().map_err(|_| anyhow!("malformed request"))?;
    if count == 0 || count > RECIPIENTS_PER_MESSAGE_MAX {
        bail!("between 1 and {RECIPIENTS_PER_MESSAGE_MAX} recipients");
    }
    let mut recipients = Vec::with_capacity(count);
    for _ in 0..count {
        recipients.push(EmailAddress::try_from(read_line(reader)?)?);
    }
    let length: usize = read_line(reader)?
        .parse()
        .map_err(|_| anyhow!("malformed length"))?;
    if length > message_size_max_bytes {
        bail!("message of {length} bytes is over the limit of {message_size_max_bytes} bytes");
    }
    let mut message = vec![0u8; length];
    reader.read_exact(&mut message)?;
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

/// Asks the client for secrets, which it reads from its terminal or standard input.
struct RemotePrompter<'a, R: BufRead> {
    reader: &'a mut R,
    writer: UnixStream,
    interactive: bool,
}

impl<R: BufRead> Prompter for RemotePrompter<'_, R> {
    fn is_interactive(&self) -> bool {
        self.interactive
    }

    fn secret(&mut self, prompt: &str) -> anyhow::Result<Secret> {
        self.writer
            .write_all(format!("PROMPT {}\n", prompt.replace('\n', " ")).as_bytes())?;
        let answer = read_line(self.reader)?;
        match answer.strip_prefix("ANSWER ") {
            Some(secret) => Ok(Secret::from(secret)),
            None => bail!(
                "expected a line on standard input for {:?}",
                prompt.trim_end_matches([':', ' '])
            ),
        }
    }
}

/// Sends the command's output to the client line by line.
struct RemoteOutput {
    writer: UnixStream,
    pending: Vec<u8>,
}

impl Write for RemoteOutput {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.writer.write_all(b"OUT ")?;
            self.writer.write_all(&line)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let mut line = std::mem::take(&mut self.pending);
            line.push(b'\n');
            self.writer.write_all(b"OUT ")?;
            self.writer.write_all(&line)?;
        }
        self.writer.flush()
    }
}
