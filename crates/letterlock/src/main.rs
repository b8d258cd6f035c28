//! The `letterlock` binary: the admin command line and `serve`.
//!
//! This is the only place `anyhow` is used: library crates return typed errors, and here they
//! become a one-line reason on standard error and a non-zero exit status.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use letterlock_mailstore::{MailStore, StoreError, StoreOptions};
use letterlock_server::config::{Config, DnsResolver};
use letterlock_storage::embedded::EmbeddedEngine;
use letterlock_types::Secret;

mod admin;
mod handoff;

use admin::{AliasCommand, DomainCommand, UserCommand};

/// How long a command waits for the store while another process holds it
/// (a concurrent `letterlock deliver`, say) before it gives up.
const STORE_LOCK_WAIT_MS: u64 = 10_000;
const STORE_LOCK_RETRY_MS: u64 = 50;

/// sysexits.h codes, which MTAs and fetchmail read from a delivery agent.
const EX_DATAERR: u8 = 65;
const EX_NOUSER: u8 = 67;
const EX_TEMPFAIL: u8 = 75;

#[derive(Parser)]
#[command(
    name = "letterlock",
    version,
    about = "A self-hosted mail server that stores mail encrypted to each user's OpenPGP key"
)]
struct Cli {
    /// Data directory (the store, the TLS certificate, the configuration).
    #[arg(long, global = true, default_value = "./data")]
    data: PathBuf,
    /// Configuration file [default: DATA/letterlock.toml].
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. With no configuration: local mode on 127.0.0.1 (ports 2000 + standard).
    Serve,
    /// Manage the domains this server receives mail for.
    #[command(subcommand)]
    Domain(DomainCommand),
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage aliases (`alias@domain`, or `@domain` for a catch-all).
    #[command(subcommand)]
    Alias(AliasCommand),
    /// The outbound queue: mail for remote recipients waiting for delivery.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// DMARC aggregate reports other servers sent about our domains.
    #[command(subcommand)]
    Dmarc(DmarcCommand),
    /// Deliver one message from standard input to local recipients.
    Deliver {
        #[arg(required = true)]
        recipients: Vec<String>,
    },
    /// Export an account as a Maildir of OpenPGP messages plus its password-locked secret key.
    /// Reads the account password from standard input.
    Export {
        address: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Every queued message: id, sender, recipients and their state, next attempt.
    List,
    /// One message's envelope and delivery status (never its content).
    Show { id: String },
    /// Try this message again now.
    Retry { id: String },
    /// Remove this message from the queue without delivering or bouncing it.
    Delete { id: String },
}

#[derive(Subcommand)]
enum DmarcCommand {
    /// The reports received, newest first: who reported, the period, and each sending
    /// source with its message count, disposition and DKIM/SPF results.
    Report {
        /// Only reports about this domain.
        domain: Option<String>,
    },
}

fn dmarc_command(
    queue: &letterlock_queue::Queue,
    command: DmarcCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let DmarcCommand::Report { domain } = command;
    let reports = letterlock_queue::DmarcReports::new(queue.clone()).received(domain.as_deref())?;
    if reports.is_empty() {
        writeln!(out, "no DMARC reports received")?;
    }
    for (arrived, report) in reports {
        writeln!(
            out,
            "{}\tfrom {} <{}>\treport {}\t{} to {}\t(received {})",
            report.domain(),
            report.org_name(),
            report.email(),
            report.report_id(),
            letterlock_types::time::rfc5322_date(report.date_range_begin() as i64),
            letterlock_types::time::rfc5322_date(report.date_range_end() as i64),
            letterlock_types::time::rfc5322_date(arrived),
        )?;
        for record in report.records() {
            let source = record
                .source_ip()
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| "?".into());
            writeln!(
                out,
                "  {source}\t{} message(s)\tdisposition {:?}\tdkim {:?}\tspf {:?}\tfrom {}",
                record.count(),
                record.action_disposition(),
                record.dmarc_dkim_result(),
                record.dmarc_spf_result(),
                record.header_from(),
            )?;
        }
    }
    Ok(())
}

fn queue_command(
    queue: &letterlock_queue::Queue,
    command: QueueCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let parse_id = |id: &str| -> anyhow::Result<letterlock_queue::QueueId> {
        id.parse().map_err(|_| {
            anyhow!("invalid queue id {id:?}: expected a number from `letterlock queue list`")
        })
    };
    match command {
        QueueCommand::List => {
            for entry in queue.list()? {
                writeln!(out, "{}", queue_line(&entry))?;
            }
        }
        QueueCommand::Show { id } => {
            let entry = queue.show(parse_id(&id)?)?;
            writeln!(out, "{}", queue_line(&entry))?;
            writeln!(
                out,
                "created {}  expires {}  size {} bytes",
                entry.created_unix, entry.expires_unix, entry.size_bytes
            )?;
            for recipient in &entry.envelope.recipients {
                writeln!(
                    out,
                    "  {}\t{:?}\t{}",
                    recipient.address,
                    recipient.state,
                    recipient.last_reply.as_deref().unwrap_or("")
                )?;
            }
            if let Some(error) = &entry.envelope.last_error {
                writeln!(out, "last error: {error}")?;
            }
        }
        QueueCommand::Retry { id } => {
            let id = parse_id(&id)?;
            queue.retry_now(id)?;
            writeln!(out, "queued message {id} will be tried again now")?;
        }
        QueueCommand::Delete { id } => {
            let id = parse_id(&id)?;
            queue.delete(id)?;
            writeln!(out, "deleted queued message {id}")?;
        }
    }
    Ok(())
}

fn queue_line(entry: &letterlock_queue::EntryStatus) -> String {
    let sender = entry
        .envelope
        .sender
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| "<>".to_string());
    let pending = entry
        .envelope
        .recipients
        .iter()
        .filter(|recipient| recipient.state == letterlock_queue::RecipientState::Pending)
        .count();
    format!(
        "{}\tfrom {sender}\t{} recipient(s), {pending} pending\tattempts {}\tnext {}{}",
        entry.id,
        entry.envelope.recipients.len(),
        entry.attempts,
        entry.next_attempt_unix,
        if entry.in_delivery {
            "\tin delivery"
        } else {
            ""
        }
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("letterlock: {}", one_line(&error));
            ExitCode::from(exit_status(&error))
        }
    }
}

fn one_line(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text.replace('\n', " ")
}

fn exit_status(error: &anyhow::Error) -> u8 {
    if let Some(failure) = error.downcast_ref::<handoff::RemoteFailure>() {
        return failure.status;
    }
    if let Some(refused) = error.downcast_ref::<handoff::Refused>() {
        return match refused.kind.as_str() {
            "nouser" => EX_NOUSER,
            "toolarge" => EX_DATAERR,
            "temporary" => EX_TEMPFAIL,
            _ => 1,
        };
    }
    match error.downcast_ref::<StoreError>() {
        Some(StoreError::UnknownRecipient(_) | StoreError::NoSuchUser(_)) => EX_NOUSER,
        Some(StoreError::MessageTooLarge { .. }) => EX_DATAERR,
        Some(store_error) if store_error.is_temporary() => EX_TEMPFAIL,
        _ => 1,
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let (config, created) = Config::load_or_create(&cli.data, cli.config.as_deref())?;
    if created {
        eprintln!(
            "letterlock: wrote a default configuration to {}",
            config_path(&cli).display()
        );
    }
    match cli.command {
        Command::Serve => serve(config),
        Command::Deliver { recipients } => deliver(&config, &recipients),
        command => {
            let mut console = admin::Console::new();
            match open_store_or_server(&config)? {
                StoreAccess::Local(services) => run_admin(
                    &services,
                    command,
                    &mut console,
                    &mut std::io::stdout().lock(),
                ),
                StoreAccess::Server => handoff::admin_via_server(
                    &config.data_dir,
                    &forwarded_arguments()?,
                    &mut console,
                ),
            }
        }
    }
}

/// Run an administration command on a store this process holds, or (inside `serve`) on
/// behalf of a `letterlock` process that could not open it.
fn run_admin(
    services: &Services,
    command: Command,
    input: &mut dyn admin::Prompter,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let store = &services.store;
    match command {
        Command::Queue(command) => queue_command(&services.queue, command, out),
        Command::Dmarc(command) => dmarc_command(&services.queue, command, out),
        Command::Domain(command) => admin::domain(store, &services.dkim, command, out),
        Command::User(command) => admin::user(
            store,
            &letterlock_queue::TrustedSenderKeys::new(services.queue.clone()),
            command,
            input,
            out,
        ),
        Command::Alias(command) => admin::alias(store, command, out),
        Command::Export { address, out: dir } => admin::export(store, &address, &dir, input, out),
        Command::Serve | Command::Deliver { .. } => {
            bail!("only domain, user, alias and export commands can run inside the server")
        }
    }
}

/// Inside `serve`: parse and run a command another `letterlock` process forwarded.
fn forwarded_command(
    services: &Services,
    arguments: Vec<String>,
    input: &mut dyn admin::Prompter,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let cli = Cli::try_parse_from(std::iter::once("letterlock".to_string()).chain(arguments))
        .map_err(|error| {
            anyhow!(
                "{}",
                error
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or("invalid command")
            )
        })?;
    run_admin(services, cli.command, input, out)
}

/// This process's arguments for the running server: the subcommand and its arguments, with
/// file paths made absolute (the server does not share our working directory) and the global
/// options dropped (the server has its own data directory).
fn forwarded_arguments() -> anyhow::Result<Vec<String>> {
    let mut forwarded = Vec::new();
    let mut arguments = std::env::args().skip(1);
    let absolute = |path: &str| -> anyhow::Result<String> {
        let path = std::path::Path::new(path);
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()?.join(path)
        };
        Ok(absolute.display().to_string())
    };
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--data" | "--config" => {
                arguments.next();
            }
            "--out" | "--import-key" | "--file" => {
                forwarded.push(argument);
                if let Some(path) = arguments.next() {
                    forwarded.push(absolute(&path)?);
                }
            }
            _ if argument.starts_with("--data=") || argument.starts_with("--config=") => {}
            _ => match argument.split_once('=') {
                Some((flag @ ("--out" | "--import-key" | "--file"), path)) => {
                    forwarded.push(format!("{flag}={}", absolute(path)?));
                }
                _ => forwarded.push(argument),
            },
        }
    }
    Ok(forwarded)
}

enum StoreAccess {
    Local(Services),
    /// A running `serve` holds the store and takes commands on its socket.
    Server,
}

fn open_store_or_server(config: &Config) -> anyhow::Result<StoreAccess> {
    match EmbeddedEngine::open(&config.data_dir) {
        Ok(engine) => Ok(StoreAccess::Local(services_on(Arc::new(engine), config)?)),
        Err(error) if error.is_temporary() && handoff::server_is_listening(&config.data_dir) => {
            Ok(StoreAccess::Server)
        }
        Err(_) => Ok(StoreAccess::Local(open_services(config)?)),
    }
}

fn config_path(cli: &Cli) -> PathBuf {
    cli.config
        .clone()
        .unwrap_or_else(|| cli.data.join("letterlock.toml"))
}

fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        kdf: letterlock_crypto::kdf::KdfParams {
            memory_kib: config.kdf.argon2_memory_kib,
            iterations: config.kdf.argon2_iterations,
            parallelism: config.kdf.argon2_parallelism,
        },
        message_size_max_bytes: config.limits.message_size_max_bytes,
    }
}

/// Everything the commands and the server work on, over one engine.
#[derive(Clone)]
struct Services {
    store: MailStore,
    queue: letterlock_queue::Queue,
    dkim: letterlock_queue::DkimKeys,
}

/// The spool key seals the outbound queue and the DKIM private keys, and lives apart from the
/// data (`DESIGN.md`, encryption at rest, point 1): from `LETTERLOCK_SPOOL_KEY` (64 hex digits)
/// if set, else from a file beside the data directory (`./data.spool-key` for `./data`),
/// created 0600 on first use. A backup of the data directory alone cannot read the queue.
fn spool_key(config: &Config) -> anyhow::Result<letterlock_queue::SpoolKey> {
    if std::env::var_os(SPOOL_KEY_VARIABLE).is_some() {
        return letterlock_queue::SpoolKey::from_env(SPOOL_KEY_VARIABLE)
            .with_context(|| format!("cannot use {SPOOL_KEY_VARIABLE}"));
    }
    let path = spool_key_path(config);
    letterlock_queue::SpoolKey::load_or_create_file(&path)
        .with_context(|| format!("cannot use the spool key {}", path.display()))
}

const SPOOL_KEY_VARIABLE: &str = "LETTERLOCK_SPOOL_KEY";
/// RFC 5321 section 4.5.4: relays deliver to port 25.
const OUTBOUND_SMTP_PORT: u16 = 25;
/// Where MTA-STS policies and WKD keys are fetched from.
const HTTPS_PORT: u16 = 443;
/// On shutdown, the outbound runner gets this long to finish the delivery in hand.
const RUNNER_STOP_GRACE_SECS: u64 = 5;

fn spool_key_path(config: &Config) -> PathBuf {
    let mut name = config
        .data_dir
        .file_name()
        .map(|name| name.to_os_string())
        .unwrap_or_else(|| "data".into());
    name.push(".spool-key");
    config.data_dir.with_file_name(name)
}

fn open_services(config: &Config) -> anyhow::Result<Services> {
    let engine = open_engine(config)?;
    services_on(engine, config)
}

fn services_on(
    engine: Arc<dyn letterlock_storage::Engine>,
    config: &Config,
) -> anyhow::Result<Services> {
    let spool_key = spool_key(config)?;
    Ok(Services {
        store: MailStore::new(Arc::clone(&engine), store_options(config)),
        queue: letterlock_queue::Queue::new(
            Arc::clone(&engine),
            &spool_key,
            letterlock_queue::QueueSettings::default(),
        ),
        dkim: letterlock_queue::DkimKeys::new(engine, &spool_key),
    })
}

fn open_store(config: &Config) -> anyhow::Result<MailStore> {
    Ok(MailStore::new(open_engine(config)?, store_options(config)))
}

/// Open the embedded engine, waiting a bounded time if another process holds it.
fn open_engine(config: &Config) -> anyhow::Result<Arc<dyn letterlock_storage::Engine>> {
    let started = Instant::now();
    loop {
        match EmbeddedEngine::open(&config.data_dir) {
            Ok(engine) => return Ok(Arc::new(engine)),
            Err(error)
                if error.is_temporary()
                    && started.elapsed() < Duration::from_millis(STORE_LOCK_WAIT_MS) =>
            {
                std::thread::sleep(Duration::from_millis(STORE_LOCK_RETRY_MS));
            }
            Err(error) => {
                return Err(StoreError::from(error)).with_context(|| {
                    format!(
                        "cannot open the store in {} (is `letterlock serve` running on it?)",
                        config.data_dir.display()
                    )
                })
            }
        }
    }
}

fn deliver(config: &Config, recipients: &[String]) -> anyhow::Result<()> {
    let recipients = recipients
        .iter()
        .map(|recipient| admin::parse_address(recipient))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let limit = config.limits.message_size_max_bytes;
    let mut message = Vec::new();
    std::io::stdin()
        .lock()
        .take(limit as u64 + 1)
        .read_to_end(&mut message)
        .context("cannot read the message from standard input")?;
    if message.len() > limit {
        return Err(StoreError::MessageTooLarge {
            size_bytes: message.len(),
            limit_bytes: limit,
        }
        .into());
    }
    // While `serve` runs it holds the store: hand the message to it.
    if handoff::socket_path(&config.data_dir).exists() {
        match handoff::deliver_via_server(&config.data_dir, &recipients, &message) {
            Ok(lines) => {
                for line in lines {
                    let words: Vec<&str> = line.split(' ').collect();
                    if let ["delivered", recipient, account, uid] = words.as_slice() {
                        print_delivered(recipient, account, uid);
                    }
                }
                return Ok(());
            }
            // A refusal is the answer; anything else means no server is listening (a stale
            // socket after a crash): deliver directly.
            Err(error) if error.downcast_ref::<handoff::Refused>().is_some() => return Err(error),
            Err(_) => {}
        }
    }
    let store = open_store(config)?;
    let report = store.deliver(&recipients, &message)?;
    for (recipient, account, uid) in report.delivered {
        print_delivered(
            &recipient.to_string(),
            &account.to_string(),
            &uid.to_string(),
        );
    }
    Ok(())
}

fn print_delivered(recipient: &str, account: &str, uid: &str) {
    if recipient == account {
        println!("delivered to {account} (INBOX, UID {uid})");
    } else {
        println!("delivered to {account} for {recipient} (INBOX, UID {uid})");
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    if handoff::server_is_listening(&config.data_dir) {
        bail!(
            "another `letterlock serve` is already running on {}",
            config.data_dir.display()
        );
    }
    let services = open_services(&config)?;
    let store = services.store.clone();
    bootstrap_local_mode(&store)?;
    let tls = letterlock_server::tls::load_or_generate(&config, &config.data_dir)?;
    println!(
        "letterlock: data in {} ({} store)",
        config.data_dir.display(),
        store.engine_name()
    );
    println!(
        "letterlock: TLS certificate {} (SHA-256 {})",
        tls.certificate_path.display(),
        tls.certificate_sha256_fingerprint
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let data_dir = config.data_dir.clone();
    let message_size_max_bytes = config.limits.message_size_max_bytes;
    runtime.block_on(async move {
        // The outbound runner: delivers what submission queued, until the server stops.
        let resolver: Arc<dyn letterlock_queue::Resolver> = match config.dns.resolver {
            DnsResolver::System => Arc::new(
                letterlock_queue::HickoryResolver::from_system_conf()
                    .context("cannot read the system's DNS configuration")?,
            ),
            // No DNS: every destination is unknown, so mail waits in the queue.
            DnsResolver::Off => Arc::new(letterlock_queue::MapResolver::default()),
        };
        let roots = Arc::new(letterlock_queue::client::system_roots());
        // Recipients' keys by WKD for outbound encryption (only with real DNS).
        let key_discovery = match config.dns.resolver {
            DnsResolver::System => Some(Arc::new(letterlock_queue::wkd::KeyDiscovery::new(
                Arc::clone(&resolver),
                letterlock_queue::https::HttpsSettings {
                    port: HTTPS_PORT,
                    roots: Arc::clone(&roots),
                    public_addresses_only: true,
                },
            ))),
            DnsResolver::Off => None,
        };
        let client = letterlock_queue::client::ClientSettings {
            hostname: config.hostname.to_string(),
            port: OUTBOUND_SMTP_PORT,
            timeouts: letterlock_queue::client::Timeouts::default(),
            roots,
        };
        let mut runner_settings = letterlock_queue::RunnerSettings::new(client);
        runner_settings.mta_sts_port = HTTPS_PORT;
        runner_settings.dkim = Some(services.dkim.clone());
        let runner = letterlock_queue::Runner::new(
            services.queue.clone(),
            store.clone(),
            resolver,
            runner_settings,
        );
        let outbound = letterlock_queue::Outbound {
            queue: services.queue.clone(),
            dkim: services.dkim.clone(),
            wake: Some(runner.waker()),
        };
        let handlers = handlers(&store, outbound, key_discovery, &config)?;
        let (runner_stop, runner_stopped) = tokio::sync::oneshot::channel::<()>();
        let runner_task = tokio::spawn(runner.run(async {
            let _ = runner_stopped.await;
        }));

        let handoff_listener = handoff::bind(&data_dir)?;
        let admin_services = services.clone();
        let admin: handoff::AdminRunner = Arc::new(move |arguments, input, out| {
            forwarded_command(&admin_services, arguments, input, out)
                .map_err(|error| (exit_status(&error), one_line(&error)))
        });
        let handoff_task = tokio::spawn(handoff::serve(
            handoff_listener,
            store.clone(),
            message_size_max_bytes,
            admin,
        ));
        // Registered before the listeners are announced: a SIGTERM that arrives as soon as
        // the operator (or a test) sees them must stop the server cleanly, not kill it.
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("cannot handle SIGTERM")?;
        let interrupt = tokio::signal::ctrl_c();
        let shutdown = async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt => {}
            }
        };
        let served = letterlock_server::serve(config, tls, handlers, shutdown)
            .await
            .map_err(anyhow::Error::from);
        handoff_task.abort();
        let _ = std::fs::remove_file(handoff::socket_path(&data_dir));
        // A delivery cut short here keeps its lease and is retried after it: at-least-once.
        let _ = runner_stop.send(());
        let _ =
            tokio::time::timeout(Duration::from_secs(RUNNER_STOP_GRACE_SECS), runner_task).await;
        served
    })?;
    // The store closed when the block above ended, after every connection had finished.
    println!("letterlock: stopped");
    Ok(())
}

/// The protocol session of every service: SMTP (MX and submission), IMAP, POP3 and HTTPS.
fn handlers(
    store: &MailStore,
    outbound: letterlock_queue::Outbound,
    key_discovery: Option<Arc<letterlock_queue::wkd::KeyDiscovery>>,
    config: &Config,
) -> anyhow::Result<letterlock_server::Handlers> {
    let mut settings = letterlock_smtp::Settings::from_limits(&config.limits);
    settings.key_discovery = key_discovery;
    settings.sender_authentication = Some(Arc::new(
        match config.dns.resolver {
            DnsResolver::System => letterlock_smtp::auth::SenderAuthenticator::from_system_conf()
                .context("cannot read the system's DNS configuration")?,
            DnsResolver::Off => letterlock_smtp::auth::SenderAuthenticator::from_records(
                letterlock_smtp::auth::DnsRecords::default(),
            )
            .context("cannot set up offline sender authentication")?,
        }
        .with_dnsbl_zones(&config.dns.dnsbl),
    ));
    let smtp = letterlock_smtp::handler_with_outbound(store.clone(), settings, Some(outbound))
        .context("cannot start SMTP delivery")?;
    let port = |service: letterlock_server::Service| match config.listen.address(service) {
        letterlock_server::config::ListenAddress::At(address) => Some(address.port()),
        letterlock_server::config::ListenAddress::Disabled => None,
    };
    let web = letterlock_web::handler(
        store.clone(),
        letterlock_web::WebSettings {
            hostname: config.hostname.to_string(),
            imaps_port: port(letterlock_server::Service::Imaps),
            imap_port: port(letterlock_server::Service::Imap),
            pop3s_port: port(letterlock_server::Service::Pop3s),
            submission_tls_port: port(letterlock_server::Service::SubmissionTls),
            submission_starttls_port: port(letterlock_server::Service::SubmissionStarttls),
            mta_sts_mode: "testing".to_string(),
        },
    );
    Ok(letterlock_server::Handlers {
        smtp: Some(smtp),
        http: Some(web),
        imap: Some(letterlock_imap::handler(
            store.clone(),
            letterlock_imap::ImapSettings::from_config(config),
        )),
        pop3: Some(letterlock_pop3::handler(
            store.clone(),
            letterlock_pop3::Pop3Settings {
                idle_timeout_secs: config.limits.idle_timeout_secs,
                message_size_max_bytes: config.limits.message_size_max_bytes,
            },
        )),
    })
}

/// A first run with no accounts: create `localhost` and `you@localhost` so a newcomer can
/// connect a client at once. The password and recovery code are printed once.
fn bootstrap_local_mode(store: &MailStore) -> anyhow::Result<()> {
    if !store.list_users(None)?.is_empty() {
        return Ok(());
    }
    let domain = admin::parse_domain("localhost")?;
    if !store.has_domain(&domain)? {
        store.add_domain(&domain)?;
    }
    let address = admin::parse_address("you@localhost")?;
    let password = random_password();
    let created = store.add_user(&address, &password, 0, None)?;
    println!("letterlock: first run: created the account you@localhost");
    println!(
        "  password:      {}",
        String::from_utf8_lossy(password.expose())
    );
    println!(
        "  recovery code: {}",
        String::from_utf8_lossy(created.recovery_code.expose())
    );
    println!(
        "  (shown once; change the password with `letterlock user passwd you@localhost --current`)"
    );
    Ok(())
}

fn random_password() -> Secret {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    Secret::new(
        (0..20)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())])
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(admin::parse_size("0").ok(), Some(0));
        assert_eq!(admin::parse_size("10M").ok(), Some(10 * 1024 * 1024));
        assert_eq!(admin::parse_size("2g").ok(), Some(2 * 1024 * 1024 * 1024));
        assert!(admin::parse_size("ten").is_err());
        assert!(admin::parse_size("99999999999999G").is_err());
    }

    #[test]
    fn default_configuration_uses_the_crypto_crates_default_kdf() {
        let config = Config::default_for(std::path::Path::new("data"));
        assert_eq!(
            store_options(&config).kdf,
            letterlock_crypto::kdf::KdfParams::DEFAULT
        );
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
