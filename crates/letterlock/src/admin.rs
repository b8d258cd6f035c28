//! The administration commands (`domain`, `user`, `alias`, `export`), written once and run
//! either here, on a store this process opened, or inside a running `serve` that holds the
//! store (see `handoff`): the output goes to any writer and secrets come from a [`Prompter`].

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use letterlock_mailstore::{MailStore, PasswordAuthority, PasswordReset};
use letterlock_types::{Domain, EmailAddress, Secret};

/// Where an administration command gets passwords and recovery codes.
pub trait Prompter {
    /// One secret, for `prompt`.
    fn secret(&mut self, prompt: &str) -> anyhow::Result<Secret>;
    /// Whether a person is typing (a new secret is then asked twice).
    fn is_interactive(&self) -> bool;
}

/// A new secret: asked twice when a person types it.
fn new_secret(input: &mut dyn Prompter, prompt: &str) -> anyhow::Result<Secret> {
    let first = input.secret(prompt)?;
    if input.is_interactive() {
        let second = input.secret("Again: ")?;
        if first != second {
            bail!("the two entries differ");
        }
    }
    Ok(first)
}

/// Export an account (see `letterlock export`).
pub fn export(
    store: &MailStore,
    address: &str,
    out_dir: &std::path::Path,
    input: &mut dyn Prompter,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let address = parse_address(address)?;
    let password = input.secret("Password: ")?;
    let unlocked = store.unlock(&address, &password)?;
    let summary = unlocked.export_maildir(out_dir, password.expose())?;
    writeln!(
        out,
        "exported {} message(s) in {} mailbox(es) to {}; the secret key is {}",
        summary.messages,
        summary.mailboxes,
        out_dir.display(),
        out_dir.join("secret-key.asc").display()
    )?;
    Ok(())
}

#[derive(Subcommand)]
pub enum DomainCommand {
    /// Print the DNS records to publish for this domain (DKIM keys, generated on first use).
    Dns {
        domain: String,
    },
    Add {
        domain: String,
    },
    List,
    Remove {
        domain: String,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
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
    /// The account's OpenPGP keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Keys the account trusts for its correspondents: outbound mail to them is encrypted to
    /// these before any learnt (Autocrypt) or published (WKD) key. Sealed under the account:
    /// each command reads the account password.
    #[command(subcommand, name = "contact-key")]
    ContactKey(ContactKeyCommand),
    /// How the account's submitted mail is protected end to end: when it is encrypted to the
    /// recipients' keys, and whether it is signed. Prints the settings after any change.
    Settings {
        address: String,
        /// never | per-recipient (default: recipients with a key get an encrypted copy) |
        /// when-all-have-keys | always (refuse mail to a recipient without a key).
        #[arg(long, value_parser = letterlock_mailstore::EncryptionPolicy::NAMES)]
        encrypt: Option<String>,
        /// Sign submitted mail with the account's key (PGP/MIME).
        #[arg(long, value_parser = ["on", "off"])]
        sign: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ContactKeyCommand {
    /// Trust the public key in FILE (armoured or binary) for mail to CONTACT.
    Add {
        address: String,
        contact: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// The trusted keys: address and fingerprint.
    List { address: String },
    /// Stop trusting the key for CONTACT.
    Remove { address: String, contact: String },
}

#[derive(Args)]
pub struct PasswdArgs {
    pub address: String,
    /// Keep the account's keys by proving the recovery code (read from standard input after
    /// the new password, or prompted). Without it, the account gets a new key and old mail
    /// can no longer be read.
    #[arg(long, conflicts_with = "current")]
    pub recovery_code: bool,
    /// Keep the account's keys by proving the current password (read before the new one).
    #[arg(long)]
    pub current: bool,
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// The account's keys, oldest first; the last one receives new mail.
    List { address: String },
    /// The current public key, armoured, on standard output.
    Export { address: String },
    /// A new generated key for new mail; older keys keep reading older mail.
    /// Reads the account password from standard input, or prompts.
    Rotate { address: String },
    /// Use the secret key the user brings (armoured or binary; unlocked or locked with the
    /// account password) for new mail. Reads the account password.
    Import {
        address: String,
        #[arg(long)]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum AppPasswordCommand {
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
pub enum AliasCommand {
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

pub fn parse_address(text: &str) -> anyhow::Result<EmailAddress> {
    Ok(EmailAddress::try_from(text)?)
}

pub fn parse_domain(text: &str) -> anyhow::Result<Domain> {
    Ok(Domain::try_from(text)?)
}

pub fn parse_size(text: &str) -> anyhow::Result<u64> {
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

pub fn domain(
    store: &MailStore,
    dkim: &letterlock_queue::DkimKeys,
    command: DomainCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        DomainCommand::Dns { domain } => {
            let domain = parse_domain(&domain)?;
            if !store.has_domain(&domain)? {
                bail!(
                    "domain {domain} does not exist (add it with `letterlock domain add {domain}`)"
                );
            }
            writeln!(
                out,
                "; DKIM keys of {domain} (Ed25519 and RSA-2048): publish both"
            )?;
            for record in dkim.dns_records(&domain)? {
                writeln!(out, "{}", record.zone_line())?;
            }
            writeln!(
                out,
                "; DMARC policy: mail failing SPF and DKIM alignment goes to Junk; other servers'\n\
                 ; aggregate reports come to postmaster@{domain} (`letterlock dmarc report`; postmaster\n\
                 ; reaches the domain's oldest account unless it is an account or alias itself)"
            )?;
            let dmarc = letterlock_queue::TxtRecord {
                name: format!("_dmarc.{domain}"),
                value: format!("v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"),
            };
            writeln!(out, "{}", dmarc.zone_line())?;
        }
        DomainCommand::Add { domain } => {
            let domain = parse_domain(&domain)?;
            store.add_domain(&domain)?;
            writeln!(out, "added domain {domain}")?;
        }
        DomainCommand::List => {
            for domain in store.list_domains()? {
                writeln!(out, "{domain}")?;
            }
        }
        DomainCommand::Remove { domain } => {
            let domain = parse_domain(&domain)?;
            store.remove_domain(&domain)?;
            writeln!(out, "removed domain {domain}")?;
        }
    }
    Ok(())
}

/// `trusted_senders` keeps, under the spool key, the copy of each trusted contact key that
/// inbound signature checks read while the account is locked.
pub fn user(
    store: &MailStore,
    trusted_senders: &letterlock_queue::TrustedSenderKeys,
    command: UserCommand,
    input: &mut dyn Prompter,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
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
            let password = new_secret(input, "Password for the new account: ")?;
            let created = store.add_user(&address, &password, quota, key.as_deref())?;
            writeln!(out, "added user {address}")?;
            writeln!(out, "OpenPGP key: {}", created.fingerprint)?;
            print_recovery_code(&created.recovery_code, out)?;
        }
        UserCommand::List { domain } => {
            let domain = domain.as_deref().map(parse_domain).transpose()?;
            for user in store.list_users(domain.as_ref())? {
                let quota = if user.quota_bytes == 0 {
                    "none".to_string()
                } else {
                    user.quota_bytes.to_string()
                };
                writeln!(
                    out,
                    "{}\tkey {}\t{} message(s)\t{} bytes\tquota {}\tapp passwords {}",
                    user.address,
                    user.fingerprint,
                    user.messages,
                    user.used_bytes,
                    quota,
                    user.app_passwords.len()
                )?;
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
            let new_password = new_secret(input, "New password: ")?;
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
                    writeln!(
                        out,
                        "password of {address} changed; all mail stays readable"
                    )?;
                }
                PasswordReset::NewKeys {
                    recovery_code,
                    fingerprint,
                    unreadable_messages,
                } => {
                    // The sealed contacts went with the old account key; so do their copies.
                    trusted_senders.forget_account(&address)?;
                    writeln!(
                        out,
                        "password of {address} reset WITHOUT the recovery code."
                    )?;
                    writeln!(
                        out,
                        "WARNING: the {unreadable_messages} message(s) stored before now are encrypted to the old key and can no longer be read."
                    )?;
                    writeln!(
                        out,
                        "App passwords and trusted contact keys were removed. New OpenPGP key: {fingerprint}"
                    )?;
                    print_recovery_code(&recovery_code, out)?;
                }
            }
        }
        UserCommand::Remove { address, yes } => {
            let address = parse_address(&address)?;
            if !yes {
                bail!("removing {address} deletes all its mail; run again with --yes to confirm");
            }
            store.remove_user(&address)?;
            trusted_senders.forget_account(&address)?;
            writeln!(out, "removed user {address} and all its mail")?;
        }
        UserCommand::Settings {
            address,
            encrypt,
            sign,
        } => {
            let address = parse_address(&address)?;
            let mut settings = store.user_settings(&address)?;
            let before = settings;
            if let Some(policy) = encrypt
                .as_deref()
                .and_then(letterlock_mailstore::EncryptionPolicy::from_name)
            {
                settings.encryption = policy;
            }
            if let Some(sign) = sign {
                settings.sign = sign == "on";
            }
            if settings != before {
                store.set_user_settings(&address, settings)?;
            }
            writeln!(out, "encrypt: {}", settings.encryption.name())?;
            writeln!(out, "sign: {}", if settings.sign { "on" } else { "off" })?;
        }
        UserCommand::Key(command) => match command {
            KeyCommand::List { address } => {
                let address = parse_address(&address)?;
                let keys = store.list_keys(&address)?;
                let current = keys.len();
                for (position, (fingerprint, created_unix, readable)) in
                    keys.into_iter().enumerate()
                {
                    let mut notes = Vec::new();
                    if position + 1 == current {
                        notes.push("current");
                    }
                    if !readable {
                        notes.push("lost in an admin reset");
                    }
                    writeln!(
                        out,
                        "{fingerprint}\tcreated {created_unix}\t{}",
                        notes.join(", ")
                    )?;
                }
            }
            KeyCommand::Export { address } => {
                let address = parse_address(&address)?;
                let key = letterlock_crypto::openpgp::PublicKey::from_bytes(
                    &store.public_key(&address)?,
                )?;
                write!(out, "{}", key.to_armored()?)?;
            }
            KeyCommand::Rotate { address } => {
                let address = parse_address(&address)?;
                store.public_key(&address)?;
                let password = input.secret("Account password: ")?;
                let fingerprint = store.replace_key(&address, &password, None)?;
                writeln!(out, "new OpenPGP key for {address}: {fingerprint}")?;
                writeln!(out, "older keys are kept and still read older mail")?;
            }
            KeyCommand::Import { address, file } => {
                let address = parse_address(&address)?;
                let bytes = std::fs::read(&file)
                    .with_context(|| format!("cannot read key file {}", file.display()))?;
                store.public_key(&address)?;
                let password = input.secret("Account password: ")?;
                let fingerprint = store.replace_key(&address, &password, Some(&bytes))?;
                writeln!(out, "imported OpenPGP key for {address}: {fingerprint}")?;
                writeln!(out, "older keys are kept and still read older mail")?;
            }
        },
        UserCommand::ContactKey(command) => {
            let account = match &command {
                ContactKeyCommand::Add { address, .. }
                | ContactKeyCommand::List { address }
                | ContactKeyCommand::Remove { address, .. } => parse_address(address)?,
            };
            store.public_key(&account)?;
            let password = input.secret("Account password: ")?;
            let unlocked = store.unlock(&account, &password)?;
            match command {
                ContactKeyCommand::Add { contact, file, .. } => {
                    let contact = parse_address(&contact)?;
                    let bytes = std::fs::read(&file)
                        .with_context(|| format!("cannot read key file {}", file.display()))?;
                    let fingerprint = unlocked.trust_key(&contact, &bytes)?;
                    let trusted = unlocked.trusted_key(&contact)?.ok_or_else(|| {
                        anyhow!("the key trusted for {contact} cannot be read back")
                    })?;
                    trusted_senders.remember(&account, &contact, &trusted)?;
                    writeln!(out, "{account} trusts {fingerprint} for {contact}")?;
                }
                ContactKeyCommand::List { .. } => {
                    for key in unlocked.trusted_keys()? {
                        writeln!(out, "{}\t{}", key.address, key.fingerprint)?;
                    }
                }
                ContactKeyCommand::Remove { contact, .. } => {
                    let contact = parse_address(&contact)?;
                    let forgotten = trusted_senders.forget(&account, &contact)?;
                    if !unlocked.distrust_key(&contact)? && !forgotten {
                        bail!("{account} has no trusted key for {contact}");
                    }
                    writeln!(out, "{account} no longer trusts a key for {contact}")?;
                }
            }
        }
        UserCommand::AppPassword(command) => match command {
            AppPasswordCommand::Add { address, name } => {
                let address = parse_address(&address)?;
                store.public_key(&address)?;
                let password = input.secret("Account password: ")?;
                let app_password = store.add_app_password(&address, &password, &name)?;
                writeln!(out, "app password {name:?} for {address} (shown once):")?;
                writeln!(out, "{}", String::from_utf8_lossy(app_password.expose()))?;
            }
            AppPasswordCommand::List { address } => {
                let address = parse_address(&address)?;
                for (name, created_unix) in store.list_app_passwords(&address)? {
                    writeln!(out, "{name}\tcreated {created_unix}")?;
                }
            }
            AppPasswordCommand::Remove { address, name } => {
                let address = parse_address(&address)?;
                store.remove_app_password(&address, &name)?;
                writeln!(out, "removed app password {name:?} of {address}")?;
            }
        },
    }
    Ok(())
}

fn print_recovery_code(code: &Secret, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "Recovery code (shown once; store it offline, it is the only way to read old mail after a password reset):")?;
    writeln!(out, "{}", String::from_utf8_lossy(code.expose()))
}

pub fn alias(store: &MailStore, command: AliasCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        AliasCommand::Add { source, targets } => {
            let targets = targets
                .iter()
                .map(|target| parse_address(target))
                .collect::<anyhow::Result<Vec<_>>>()?;
            store.add_alias(&source, &targets)?;
            writeln!(out, "added alias {source}")?;
        }
        AliasCommand::List => {
            for (source, targets) in store.list_aliases()? {
                let targets: Vec<String> = targets.iter().map(ToString::to_string).collect();
                writeln!(out, "{source}\t{}", targets.join(", "))?;
            }
        }
        AliasCommand::Remove { source } => {
            store.remove_alias(&source)?;
            writeln!(out, "removed alias {source}")?;
        }
    }
    Ok(())
}

/// The local console: secrets from standard input, one per line, when it is not a terminal
/// (scripts, tests); otherwise from a prompt that does not echo.
pub struct Console {
    lines: Option<std::io::StdinLock<'static>>,
}

impl Console {
    pub fn new() -> Console {
        Console { lines: None }
    }
}

impl Prompter for Console {
    fn is_interactive(&self) -> bool {
        std::io::stdin().is_terminal()
    }

    fn secret(&mut self, prompt: &str) -> anyhow::Result<Secret> {
        if self.is_interactive() {
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
}
