//! The `letterlock` binary: the admin command line and `serve`.
//!
//! This is the only place `anyhow` is used: library crates return typed errors, and here they
//! become a one-line reason on standard error and a non-zero exit status.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand};
use letterlock_mailstore::{MailStore, PasswordAuthority, PasswordReset, StoreError, StoreOptions};
use letterlock_server::config::Config;
use letterlock_storage::embedded::EmbeddedEngine;
use letterlock_types::{Domain, EmailAddress, Secret};

mod handoff;

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
enum DomainCommand {
    Add { domain: String },
    List,
    Remove { domain: String },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. Reads the password (one line) from standard input, or prompts.
    Add {
        address: String,
        /// Quota in bytes (suffixes K, M, G accepted); 0 means none.
        #[arg(long, default_value = "0")]
        quota: String,
        /// Use this OpenPGP secret key (armoured or binary) instead of generating one.
        /// A locked key must be locked with the account password.
        #[arg(long)]
        import_key: Option<PathBuf>,
    },
    List {
        domain: Option<String>,
    },
    /// Set a new password (read from standard input, or prompted).
    Passwd(PasswdArgs),
    /// Remove an account and all its mail.
    Remove {
        address: String,
        /// Confirm that the account's mail is deleted.
        #[arg(long)]
        yes: bool,
    },
    /// App passwords: one per client, each able to unlock the account.
    #[command(subcommand, name = "app-password")]
    AppPassword(AppPasswordCommand),
}

#[derive(Args)]
struct PasswdArgs {
    address: String,
    /// Keep the account's keys by proving the recovery code (read from standard input after
    /// the new password, or prompted). Without it, the account gets a new key and old mail
    /// can no longer be read.
    #[arg(long, conflicts_with = "current")]
    recovery_code: bool,
    /// Keep the account's keys by proving the current password (read before the new one).
    #[arg(long)]
    current: bool,
}

#[derive(Subcommand)]
enum AppPasswordCommand {
    /// Create an app password. Reads the account password from standard input, or prompts.
    Add {
        address: String,
        name: String,
    },
    List {
        address: String,
    },
    Remove {
        address: String,
        name: String,
    },
}

#[derive(Subcommand)]
enum AliasCommand {
    Add {
        source: String,
        #[arg(required = true)]
        targets: Vec<String>,
    },
    List,
    Remove {
        source: String,
    },
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
    let mut input = Input::new();
    match cli.command {
        Command::Serve => serve(config),
        Command::Domain(command) => domain(&open_store(&config)?, command),
        Command::User(command) => user(&open_store(&config)?, command, &mut input),
        Command::Alias(command) => alias(&open_store(&config)?, command),
        Command::Deliver { recipients } => deliver(&config, &recipients),
        Command::Export { address, out } => {
            let store = open_store(&config)?;
            let address = parse_address(&address)?;
            let password = input.secret("Password: ")?;
            let unlocked = store.unlock(&address, &password)?;
            let summary = unlocked.export_maildir(&out, password.expose())?;
            println!(
                "exported {} message(s) in {} mailbox(es) to {}; the secret key is {}",
                summary.messages,
                summary.mailboxes,
                out.display(),
                out.join("secret-key.asc").display()
            );
            Ok(())
        }
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

/// Open the embedded store, waiting a bounded time if another process holds it.
fn open_store(config: &Config) -> anyhow::Result<MailStore> {
    let started = Instant::now();
    loop {
        match EmbeddedEngine::open(&config.data_dir) {
            Ok(engine) => return Ok(MailStore::new(Arc::new(engine), store_options(config))),
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

fn parse_address(text: &str) -> anyhow::Result<EmailAddress> {
    Ok(EmailAddress::try_from(text)?)
}

fn parse_domain(text: &str) -> anyhow::Result<Domain> {
    Ok(Domain::try_from(text)?)
}

fn parse_size(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (digits, multiplier) = match text.char_indices().last() {
        Some((index, 'K' | 'k')) => (&text[..index], 1024),
        Some((index, 'M' | 'm')) => (&text[..index], 1024 * 1024),
        Some((index, 'G' | 'g')) => (&text[..index], 1024 * 1024 * 1024),
        _ => (text, 1),
    };
    let value: u64 = digits.parse().map_err(|_| {
        anyhow!("invalid size {text:?}: expected a number of bytes, optionally with K, M or G")
    })?;
    value
        .checked_mul(multiplier)
        .ok_or_else(|| anyhow!("size {text:?} is too large"))
}

fn domain(store: &MailStore, command: DomainCommand) -> anyhow::Result<()> {
    match command {
        DomainCommand::Add { domain } => {
            let domain = parse_domain(&domain)?;
            store.add_domain(&domain)?;
            println!("added domain {domain}");
        }
        DomainCommand::List => {
            for domain in store.list_domains()? {
                println!("{domain}");
            }
        }
        DomainCommand::Remove { domain } => {
            let domain = parse_domain(&domain)?;
            store.remove_domain(&domain)?;
            println!("removed domain {domain}");
        }
    }
    Ok(())
}

fn user(store: &MailStore, command: UserCommand, input: &mut Input) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            address,
            quota,
            import_key,
        } => {
            let address = parse_address(&address)?;
            let quota = parse_size(&quota)?;
            let key = match &import_key {
                Some(path) => Some(
                    std::fs::read(path)
                        .with_context(|| format!("cannot read key file {}", path.display()))?,
                ),
                None => None,
            };
            let password = input.new_secret("Password for the new account: ")?;
            let created = store.add_user(&address, &password, quota, key.as_deref())?;
            println!("added user {address}");
            println!("OpenPGP key: {}", created.fingerprint);
            print_recovery_code(&created.recovery_code);
        }
        UserCommand::List { domain } => {
            let domain = domain.as_deref().map(parse_domain).transpose()?;
            for user in store.list_users(domain.as_ref())? {
                let quota = if user.quota_bytes == 0 {
                    "none".to_string()
                } else {
                    user.quota_bytes.to_string()
                };
                println!(
                    "{}\tkey {}\t{} message(s)\t{} bytes\tquota {}\tapp passwords {}",
                    user.address,
                    user.fingerprint,
                    user.messages,
                    user.used_bytes,
                    quota,
                    user.app_passwords.len()
                );
            }
        }
        UserCommand::Passwd(args) => {
            let address = parse_address(&args.address)?;
            // Fail on an unknown user before asking for anything.
            store.public_key(&address)?;
            let current = if args.current {
                Some(input.secret("Current password: ")?)
            } else {
                None
            };
            let new_password = input.new_secret("New password: ")?;
            let code = if args.recovery_code {
                Some(input.secret("Recovery code: ")?)
            } else {
                None
            };
            let authority = match (&current, &code) {
                (Some(current), _) => PasswordAuthority::Current(current),
                (None, Some(code)) => PasswordAuthority::RecoveryCode(code),
                (None, None) => PasswordAuthority::AdminWithoutRecovery,
            };
            match store.set_password(&address, &new_password, authority)? {
                PasswordReset::KeptKeys => {
                    println!("password of {address} changed; all mail stays readable");
                }
                PasswordReset::NewKeys {
                    recovery_code,
                    fingerprint,
                    unreadable_messages,
                } => {
                    println!("password of {address} reset WITHOUT the recovery code.");
                    println!(
                        "WARNING: the {unreadable_messages} message(s) stored before now are encrypted to the old key and can no longer be read."
                    );
                    println!("App passwords were removed. New OpenPGP key: {fingerprint}");
                    print_recovery_code(&recovery_code);
                }
            }
        }
        UserCommand::Remove { address, yes } => {
            let address = parse_address(&address)?;
            if !yes {
                bail!("removing {address} deletes all its mail; run again with --yes to confirm");
            }
            store.remove_user(&address)?;
            println!("removed user {address} and all its mail");
        }
        UserCommand::AppPassword(command) => match command {
            AppPasswordCommand::Add { address, name } => {
                let address = parse_address(&address)?;
                store.public_key(&address)?;
                let password = input.secret("Account password: ")?;
                let app_password = store.add_app_password(&address, &password, &name)?;
                println!("app password {name:?} for {address} (shown once):");
                println!("{}", String::from_utf8_lossy(app_password.expose()));
            }
            AppPasswordCommand::List { address } => {
                let address = parse_address(&address)?;
                for (name, created_unix) in store.list_app_passwords(&address)? {
                    println!("{name}\tcreated {created_unix}");
                }
            }
            AppPasswordCommand::Remove { address, name } => {
                let address = parse_address(&address)?;
                store.remove_app_password(&address, &name)?;
                println!("removed app password {name:?} of {address}");
            }
        },
    }
    Ok(())
}

fn print_recovery_code(code: &Secret) {
    println!("Recovery code (shown once; store it offline, it is the only way to read old mail after a password reset):");
    println!("{}", String::from_utf8_lossy(code.expose()));
}

fn alias(store: &MailStore, command: AliasCommand) -> anyhow::Result<()> {
    match command {
        AliasCommand::Add { source, targets } => {
            let targets = targets
                .iter()
                .map(|target| parse_address(target))
                .collect::<anyhow::Result<Vec<_>>>()?;
            store.add_alias(&source, &targets)?;
            println!("added alias {source}");
        }
        AliasCommand::List => {
            for (source, targets) in store.list_aliases()? {
                let targets: Vec<String> = targets.iter().map(ToString::to_string).collect();
                println!("{source}\t{}", targets.join(", "));
            }
        }
        AliasCommand::Remove { source } => {
            store.remove_alias(&source)?;
            println!("removed alias {source}");
        }
    }
    Ok(())
}

fn deliver(config: &Config, recipients: &[String]) -> anyhow::Result<()> {
    let recipients = recipients
        .iter()
        .map(|recipient| parse_address(recipient))
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
    let store = open_store(&config)?;
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
    let handlers = handlers(&store, &config);
    let handoff_store = store.clone();
    let data_dir = config.data_dir.clone();
    let message_size_max_bytes = config.limits.message_size_max_bytes;
    runtime.block_on(async move {
        let handoff_listener = handoff::bind(&data_dir)?;
        let handoff_task = tokio::spawn(handoff::serve(
            handoff_listener,
            handoff_store,
            message_size_max_bytes,
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
        served
    })?;
    // The store is closed when `store` drops, after every connection has finished.
    drop(store);
    println!("letterlock: stopped");
    Ok(())
}

/// The protocol sessions that are built so far; the others answer "not available yet".
fn handlers(store: &MailStore, config: &Config) -> letterlock_server::Handlers {
    letterlock_server::Handlers {
        pop3: Some(letterlock_pop3::handler(
            store.clone(),
            letterlock_pop3::Pop3Settings {
                idle_timeout_secs: config.limits.idle_timeout_secs,
                message_size_max_bytes: config.limits.message_size_max_bytes,
            },
        )),
        ..letterlock_server::Handlers::default()
    }
}

/// A first run with no accounts: create `localhost` and `you@localhost` so a newcomer can
/// connect a client at once. The password and recovery code are printed once.
fn bootstrap_local_mode(store: &MailStore) -> anyhow::Result<()> {
    if !store.list_users(None)?.is_empty() {
        return Ok(());
    }
    let domain = parse_domain("localhost")?;
    if !store.has_domain(&domain)? {
        store.add_domain(&domain)?;
    }
    let address = parse_address("you@localhost")?;
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

/// Secrets come from standard input, one per line, when it is not a terminal (scripts, tests);
/// otherwise from a prompt that does not echo.
struct Input {
    lines: Option<std::io::StdinLock<'static>>,
}

impl Input {
    fn new() -> Input {
        Input { lines: None }
    }

    fn secret(&mut self, prompt: &str) -> anyhow::Result<Secret> {
        if std::io::stdin().is_terminal() {
            let text =
                rpassword::prompt_password(prompt).context("cannot read from the terminal")?;
            return Ok(Secret::from(text));
        }
        let lines = self.lines.get_or_insert_with(|| std::io::stdin().lock());
        let mut line = String::new();
        let read = lines
            .by_ref()
            .take(letterlock_types::limits::PASSWORD_LENGTH_MAX_BYTES as u64 + 2)
            .read_line(&mut line)
            .context("cannot read standard input")?;
        if read == 0 {
            bail!(
                "expected a line on standard input for {:?}",
                prompt.trim_end_matches([':', ' '])
            );
        }
        let trimmed = line.trim_end_matches(['\n', '\r']).to_string();
        zeroize::Zeroize::zeroize(&mut line);
        Ok(Secret::from(trimmed))
    }

    /// A new secret: on a terminal, asked twice.
    fn new_secret(&mut self, prompt: &str) -> anyhow::Result<Secret> {
        let first = self.secret(prompt)?;
        if std::io::stdin().is_terminal() {
            let second = self.secret("Again: ")?;
            if first != second {
                bail!("the two entries differ");
            }
        }
        let _ = std::io::stdout().flush();
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0").ok(), Some(0));
        assert_eq!(parse_size("10M").ok(), Some(10 * 1024 * 1024));
        assert_eq!(parse_size("2g").ok(), Some(2 * 1024 * 1024 * 1024));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("99999999999999G").is_err());
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
