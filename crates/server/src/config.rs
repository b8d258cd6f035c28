//! The server's configuration file (TOML): where to listen, which certificate to use,
//! connection and message limits, and the Argon2id cost of new password wraps.
//!
//! A first run writes a commented file with every default spelled out, so an operator can
//! read what is configurable without the documentation. Unknown keys are errors (a typo must
//! not silently leave a default in place), and every error names the file and the key.
//!
//! Relative paths in the file (`data_dir`, `tls.certificate`, `tls.private_key`) are relative
//! to the directory that holds the file, so a data directory can be moved as a whole.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use letterlock_types::{limits, Domain};
use serde::{Deserialize, Serialize};

/// Name of the configuration file inside the data directory, unless a path is given.
pub const CONFIG_FILE_NAME: &str = "letterlock.toml";
/// Name the server gives itself when the file does not say.
pub const DEFAULT_HOSTNAME: &str = "localhost";
/// "Local mode" listens on loopback at the standard port plus this, so a first run needs no
/// privileges and is reachable only from this machine.
pub const LOCAL_MODE_PORT_OFFSET: u16 = 2000;
/// Default for `limits.connections_per_ip_max`: enough for a household behind one NAT
/// (every client keeps a few IMAP connections open), too few for one host to starve the rest.
pub const CONNECTIONS_PER_IP_MAX_DEFAULT: u32 = 20;
/// Default for `limits.connections_max`, over every service together.
pub const CONNECTIONS_MAX_DEFAULT: u32 = 1000;
/// Default for `limits.idle_timeout_secs`: RFC 9051 section 5.4 asks IMAP servers to wait
/// at least 30 minutes before logging out an idle client.
pub const IDLE_TIMEOUT_SECS_DEFAULT: u64 = 30 * 60;
/// Argon2 needs at least 8 KiB of memory per lane (RFC 9106 section 3.1).
pub const ARGON2_MEMORY_KIB_PER_LANE_MIN: u32 = 8;
/// Past this, a few concurrent logins could exhaust the memory of a small server.
pub const ARGON2_MEMORY_KIB_MAX: u32 = 4 * 1024 * 1024;
/// Past this, a login would take seconds of CPU.
pub const ARGON2_ITERATIONS_MAX: u32 = 64;
/// Lanes beyond the cores of any plausible server only add overhead.
pub const ARGON2_PARALLELISM_MAX: u32 = 64;
/// OWASP's Argon2id recommendation (19 MiB, 2 passes, 1 lane): about 70 ms of CPU on the
/// 2-core reference machine. The same as the crypto crate's `KdfParams::DEFAULT` (the binary
/// tests that they agree).
pub const ARGON2_MEMORY_KIB_DEFAULT: u32 = 19 * 1024;
pub const ARGON2_ITERATIONS_DEFAULT: u32 = 2;
pub const ARGON2_PARALLELISM_DEFAULT: u32 = 1;

/// Everything `letterlock serve` reads from its configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where mail, keys and the generated certificate live. In the file it is optional: when
    /// absent it is the directory given to [`Config::load_or_create`].
    #[serde(default)]
    pub data_dir: PathBuf,
    /// The name this server gives itself in greetings and in the self-signed certificate.
    #[serde(default = "default_hostname")]
    pub hostname: Domain,
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub tls: TlsFiles,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub kdf: Kdf,
    #[serde(default)]
    pub dns: Dns,
}

/// Where DNS answers come from: SPF/DKIM/DMARC checks of inbound mail and MX routing of
/// outbound mail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dns {
    pub resolver: DnsResolver,
    /// DNS blocklist zones (RFC 5782) asked about each inbound client; a listing counts
    /// strongly toward spam. None by default: lists have usage terms the operator must accept.
    pub dnsbl: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsResolver {
    /// The system's resolvers (`/etc/resolv.conf`).
    #[default]
    System,
    /// No DNS at all: inbound checks report `none`/`temperror`, outbound mail waits in the
    /// queue. For machines with no network (tests, air-gapped installs).
    Off,
}

/// One address per service; see [`Service`] for what each one is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    pub smtp: ListenAddress,
    pub submission_tls: ListenAddress,
    pub submission_starttls: ListenAddress,
    pub imap: ListenAddress,
    pub imaps: ListenAddress,
    pub pop3: ListenAddress,
    pub pop3s: ListenAddress,
    pub https: ListenAddress,
}

/// Where one service listens. In the file: `"IP:port"`, or `""` to disable the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ListenAddress {
    Disabled,
    At(SocketAddr),
}

/// The certificate chain and private key, as PEM files. Both or neither: with neither, a
/// self-signed pair is generated on first run (see the `tls` module).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub certificate: Option<PathBuf>,
    pub private_key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest message accepted by delivery, submission and APPEND. At most
    /// [`limits::MESSAGE_SIZE_MAX_BYTES`], because a message is held in memory until encrypted.
    pub message_size_max_bytes: usize,
    /// Connections open at once from one IPv4 address or one IPv6 /64, over all services.
    pub connections_per_ip_max: u32,
    /// Connections open at once over all services.
    pub connections_max: u32,
    /// A session that has said nothing for this long is closed.
    pub idle_timeout_secs: u64,
}

/// Argon2id cost of new password wraps. Existing wraps keep the parameters they were made
/// with, so raising these later does not lock anyone out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Kdf {
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
}

/// The network services, each with its own listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// SMTP from other servers (MX), STARTTLS offered (RFC 5321, RFC 3207).
    Smtp,
    /// SMTP submission over implicit TLS (RFC 8314).
    SubmissionTls,
    /// SMTP submission, STARTTLS required before AUTH (RFC 6409).
    SubmissionStarttls,
    /// IMAP, STARTTLS required before LOGIN (RFC 9051).
    Imap,
    /// IMAP over implicit TLS (RFC 8314).
    Imaps,
    /// POP3, STLS required before USER (RFC 1939, RFC 2595).
    Pop3,
    /// POP3 over implicit TLS (RFC 8314).
    Pop3s,
    /// Webmail, portal, admin, API, WKD, autoconfig, MTA-STS policy.
    Https,
}

/// The application protocol a service speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Smtp,
    Imap,
    Pop3,
    Http,
}

/// How TLS starts on a service's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// The TLS handshake comes first, before any protocol byte.
    Implicit,
    /// Plaintext until the client upgrades; the server offers but cannot insist (MX).
    StartTlsOffered,
    /// Plaintext until the client upgrades; no credentials are accepted before it does.
    StartTlsRequired,
}

impl Service {
    pub const ALL: [Service; 8] = [
        Service::Smtp,
        Service::SubmissionTls,
        Service::SubmissionStarttls,
        Service::Imap,
        Service::Imaps,
        Service::Pop3,
        Service::Pop3s,
        Service::Https,
    ];

    /// The key of this service in the `[listen]` section.
    pub fn key(self) -> &'static str {
        match self {
            Service::Smtp => "smtp",
            Service::SubmissionTls => "submission_tls",
            Service::SubmissionStarttls => "submission_starttls",
            Service::Imap => "imap",
            Service::Imaps => "imaps",
            Service::Pop3 => "pop3",
            Service::Pop3s => "pop3s",
            Service::Https => "https",
        }
    }

    /// The IANA-assigned port.
    pub fn standard_port(self) -> u16 {
        match self {
            Service::Smtp => 25,
            Service::SubmissionTls => 465,
            Service::SubmissionStarttls => 587,
            Service::Imap => 143,
            Service::Imaps => 993,
            Service::Pop3 => 110,
            Service::Pop3s => 995,
            Service::Https => 443,
        }
    }

    /// The default address: loopback, standard port plus [`LOCAL_MODE_PORT_OFFSET`].
    pub fn local_mode_address(self) -> SocketAddr {
        SocketAddr::from((
            [127, 0, 0, 1],
            LOCAL_MODE_PORT_OFFSET + self.standard_port(),
        ))
    }

    pub fn protocol(self) -> Protocol {
        match self {
            Service::Smtp | Service::SubmissionTls | Service::SubmissionStarttls => Protocol::Smtp,
            Service::Imap | Service::Imaps => Protocol::Imap,
            Service::Pop3 | Service::Pop3s => Protocol::Pop3,
            Service::Https => Protocol::Http,
        }
    }

    pub fn tls_mode(self) -> TlsMode {
        match self {
            Service::Smtp => TlsMode::StartTlsOffered,
            Service::SubmissionStarttls | Service::Imap | Service::Pop3 => {
                TlsMode::StartTlsRequired
            }
            Service::SubmissionTls | Service::Imaps | Service::Pop3s | Service::Https => {
                TlsMode::Implicit
            }
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::Implicit => "implicit TLS",
            TlsMode::StartTlsOffered => "STARTTLS offered",
            TlsMode::StartTlsRequired => "STARTTLS required",
        })
    }
}

impl ListenAddress {
    pub fn socket_address(self) -> Option<SocketAddr> {
        match self {
            ListenAddress::Disabled => None,
            ListenAddress::At(address) => Some(address),
        }
    }
}

/// A `[listen]` value that is neither `""` nor an `IP:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a listen address: write IP:port, such as \"0.0.0.0:993\" or \"[::]:993\" \
     (a host name is not accepted), or \"\" to disable the service"
)]
pub struct InvalidListenAddress(pub String);

impl TryFrom<String> for ListenAddress {
    type Error = InvalidListenAddress;

    fn try_from(text: String) -> Result<ListenAddress, InvalidListenAddress> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(ListenAddress::Disabled);
        }
        trimmed
            .parse::<SocketAddr>()
            .map(ListenAddress::At)
            .map_err(|_| InvalidListenAddress(text))
    }
}

impl From<ListenAddress> for String {
    fn from(address: ListenAddress) -> String {
        match address {
            ListenAddress::Disabled => String::new(),
            ListenAddress::At(address) => address.to_string(),
        }
    }
}

impl Listen {
    pub fn address(&self, service: Service) -> ListenAddress {
        match service {
            Service::Smtp => self.smtp,
            Service::SubmissionTls => self.submission_tls,
            Service::SubmissionStarttls => self.submission_starttls,
            Service::Imap => self.imap,
            Service::Imaps => self.imaps,
            Service::Pop3 => self.pop3,
            Service::Pop3s => self.pop3s,
            Service::Https => self.https,
        }
    }

    pub fn set_address(&mut self, service: Service, address: ListenAddress) {
        let slot = match service {
            Service::Smtp => &mut self.smtp,
            Service::SubmissionTls => &mut self.submission_tls,
            Service::SubmissionStarttls => &mut self.submission_starttls,
            Service::Imap => &mut self.imap,
            Service::Imaps => &mut self.imaps,
            Service::Pop3 => &mut self.pop3,
            Service::Pop3s => &mut self.pop3s,
            Service::Https => &mut self.https,
        };
        *slot = address;
    }

    /// The enabled services and their addresses, in [`Service::ALL`] order.
    pub fn enabled(&self) -> Vec<(Service, SocketAddr)> {
        Service::ALL
            .iter()
            .filter_map(|&service| {
                self.address(service)
                    .socket_address()
                    .map(|address| (service, address))
            })
            .collect()
    }
}

impl Default for Listen {
    fn default() -> Listen {
        let at = |service: Service| ListenAddress::At(service.local_mode_address());
        Listen {
            smtp: at(Service::Smtp),
            submission_tls: at(Service::SubmissionTls),
            submission_starttls: at(Service::SubmissionStarttls),
            imap: at(Service::Imap),
            imaps: at(Service::Imaps),
            pop3: at(Service::Pop3),
            pop3s: at(Service::Pop3s),
            https: at(Service::Https),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            message_size_max_bytes: limits::MESSAGE_SIZE_MAX_BYTES,
            connections_per_ip_max: CONNECTIONS_PER_IP_MAX_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            idle_timeout_secs: IDLE_TIMEOUT_SECS_DEFAULT,
        }
    }
}

impl Default for Kdf {
    fn default() -> Kdf {
        Kdf {
            argon2_memory_kib: ARGON2_MEMORY_KIB_DEFAULT,
            argon2_iterations: ARGON2_ITERATIONS_DEFAULT,
            argon2_parallelism: ARGON2_PARALLELISM_DEFAULT,
        }
    }
}

fn default_hostname() -> Domain {
    // A literal checked by the unit test `default_hostname_is_valid`, not outside input.
    Domain::try_from(DEFAULT_HOSTNAME).expect("DEFAULT_HOSTNAME is a valid domain")
}

/// Why a configuration file could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write configuration file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot create data directory {path}: {source}")]
    CreateDataDir { path: PathBuf, source: io::Error },
    /// Not TOML, an unknown key, a value of the wrong type or an invalid address or host name;
    /// the message gives the line, the column and the key.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// Well-formed, but the values do not make a working server.
    #[error("{path}: {problem}")]
    Invalid {
        path: PathBuf,
        problem: InvalidConfig,
    },
}

/// A configuration that parses but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidConfig {
    #[error(
        "listen.{first} and listen.{second} both use {address}; give each service its own address"
    )]
    DuplicateAddress {
        first: Service,
        second: Service,
        address: SocketAddr,
    },
    #[error("limits.{key} is 0; it must be at least 1")]
    ZeroLimit { key: &'static str },
    #[error(
        "limits.message_size_max_bytes is {value}; it can be at most {max} \
         (messages are held in memory until they are encrypted)"
    )]
    MessageSizeTooLarge { value: usize, max: usize },
    #[error(
        "kdf.argon2_memory_kib is {value}; Argon2 needs at least {min} KiB \
         ({per_lane_min} KiB for each of the {parallelism} lanes in kdf.argon2_parallelism)"
    )]
    KdfMemoryTooSmall {
        value: u32,
        min: u64,
        per_lane_min: u32,
        parallelism: u32,
    },
    #[error("kdf.{key} is {value}; it must be between {min} and {max}")]
    KdfOutOfRange {
        key: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
    #[error(
        "tls.{present} is set but tls.{missing} is not; set both, or neither to use a \
         generated self-signed certificate"
    )]
    TlsPairIncomplete {
        present: &'static str,
        missing: &'static str,
    },
}

impl Config {
    /// The configuration a first run writes, for the given data directory.
    pub fn default_for(data_dir: &Path) -> Config {
        Config {
            data_dir: data_dir.to_path_buf(),
            hostname: default_hostname(),
            listen: Listen::default(),
            tls: TlsFiles::default(),
            limits: Limits::default(),
            kdf: Kdf::default(),
            dns: Dns::default(),
        }
    }

    /// Reads the configuration file (`config_path`, or `data_dir/letterlock.toml`), or, when
    /// there is none, writes a commented default one and returns that. The `bool` is true when
    /// the file was created by this call. The data directory is created (mode 0700) if needed.
    pub fn load_or_create(
        data_dir: &Path,
        config_path: Option<&Path>,
    ) -> Result<(Config, bool), ConfigError> {
        let path = match config_path {
            Some(path) => path.to_path_buf(),
            None => data_dir.join(CONFIG_FILE_NAME),
        };
        match fs::read_to_string(&path) {
            Ok(text) => Ok((Config::parse(&text, &path, data_dir)?, false)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                create_private_dir(data_dir).map_err(|source| ConfigError::CreateDataDir {
                    path: data_dir.to_path_buf(),
                    source,
                })?;
                let text = default_config_text();
                match write_new_file(&path, &text) {
                    Ok(()) => Ok((Config::parse(&text, &path, data_dir)?, true)),
                    // Another process created it between our read and our write: use theirs.
                    Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                        let text =
                            fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                                path: path.clone(),
                                source,
                            })?;
                        Ok((Config::parse(&text, &path, data_dir)?, false))
                    }
                    Err(source) => Err(ConfigError::Write { path, source }),
                }
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Parses and validates the text of a configuration file found at `path` (used to name
    /// the file in errors and to resolve relative paths). `data_dir` is used when the file
    /// does not set one.
    pub fn parse(text: &str, path: &Path, data_dir: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: error.to_string().trim_end().to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        config.data_dir = if config.data_dir.as_os_str().is_empty() {
            data_dir.to_path_buf()
        } else {
            base.join(&config.data_dir)
        };
        config.tls.certificate = config.tls.certificate.map(|file| base.join(file));
        config.tls.private_key = config.tls.private_key.map(|file| base.join(file));
        config.validate().map_err(|problem| ConfigError::Invalid {
            path: path.to_path_buf(),
            problem,
        })?;
        Ok(config)
    }

    /// Checks what the types alone cannot: distinct addresses, non-zero limits, a usable KDF.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        self.validate_addresses()?;
        self.validate_limits()?;
        self.validate_kdf()?;
        match (&self.tls.certificate, &self.tls.private_key) {
            (Some(_), None) => Err(InvalidConfig::TlsPairIncomplete {
                present: "certificate",
                missing: "private_key",
            }),
            (None, Some(_)) => Err(InvalidConfig::TlsPairIncomplete {
                present: "private_key",
                missing: "certificate",
            }),
            _ => Ok(()),
        }
    }

    fn validate_addresses(&self) -> Result<(), InvalidConfig> {
        let enabled = self.listen.enabled();
        for (index, &(first, first_address)) in enabled.iter().enumerate() {
            for &(second, second_address) in &enabled[index + 1..] {
                if addresses_overlap(first_address, second_address) {
                    return Err(InvalidConfig::DuplicateAddress {
                        first,
                        second,
                        address: second_address,
                    });
                }
            }
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), InvalidConfig> {
        let limits = &self.limits;
        let counts = [
            (
                "message_size_max_bytes",
                limits.message_size_max_bytes as u64,
            ),
            (
                "connections_per_ip_max",
                u64::from(limits.connections_per_ip_max),
            ),
            ("connections_max", u64::from(limits.connections_max)),
            ("idle_timeout_secs", limits.idle_timeout_secs),
        ];
        if let Some(&(key, _)) = counts.iter().find(|&&(_, value)| value == 0) {
            return Err(InvalidConfig::ZeroLimit { key });
        }
        if limits.message_size_max_bytes > limits::MESSAGE_SIZE_MAX_BYTES {
            return Err(InvalidConfig::MessageSizeTooLarge {
                value: limits.message_size_max_bytes,
                max: limits::MESSAGE_SIZE_MAX_BYTES,
            });
        }
        Ok(())
    }

    fn validate_kdf(&self) -> Result<(), InvalidConfig> {
        let kdf = &self.kdf;
        let in_range = |key, value, min, max| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(InvalidConfig::KdfOutOfRange {
                    key,
                    value,
                    min,
                    max,
                })
            }
        };
        in_range(
            "argon2_iterations",
            kdf.argon2_iterations,
            1,
            ARGON2_ITERATIONS_MAX,
        )?;
        in_range(
            "argon2_parallelism",
            kdf.argon2_parallelism,
            1,
            ARGON2_PARALLELISM_MAX,
        )?;
        let memory_min =
            u64::from(ARGON2_MEMORY_KIB_PER_LANE_MIN) * u64::from(kdf.argon2_parallelism);
        if u64::from(kdf.argon2_memory_kib) < memory_min {
            return Err(InvalidConfig::KdfMemoryTooSmall {
                value: kdf.argon2_memory_kib,
                min: memory_min,
                per_lane_min: ARGON2_MEMORY_KIB_PER_LANE_MIN,
                parallelism: kdf.argon2_parallelism,
            });
        }
        in_range(
            "argon2_memory_kib",
            kdf.argon2_memory_kib,
            ARGON2_MEMORY_KIB_PER_LANE_MIN,
            ARGON2_MEMORY_KIB_MAX,
        )
    }
}

/// Two listeners conflict when one would take the other's port: the same address, or the
/// same port with a wildcard address on either side (on Linux `[::]` also takes IPv4).
/// Port 0 asks the system for a free port, so it never conflicts.
fn addresses_overlap(first: SocketAddr, second: SocketAddr) -> bool {
    if first.port() == 0 || first.port() != second.port() {
        return false;
    }
    first.ip() == second.ip() || first.ip().is_unspecified() || second.ip().is_unspecified()
}

fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Writes a file that must not exist yet, readable by the owner only (a configuration may
/// later hold a database password), and makes it durable.
fn write_new_file(path: &Path, text: &str) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// The file a first run writes: every default spelled out and explained.
/// `Config::parse` of this text gives `Config::default_for(data_dir)` (a unit test checks).
pub fn default_config_text() -> String {
    let address = |service: Service| service.local_mode_address();
    let limits = Limits::default();
    let kdf = Kdf::default();
    format!(
        r#"# Letterlock configuration, written on the first run with every default spelled out.
# Edit it and restart `letterlock serve`. Unknown keys are errors, so a typo is caught.
# Relative paths are relative to the directory of this file.

# The name this server gives itself in greetings and in the self-signed certificate.
# In production, the host name your MX record points to, such as "mail.example.org".
hostname = "{hostname}"

# Where mail, keys and the generated certificate live. Unset, it is the data directory
# given on the command line; set, it takes the place of that one.
# data_dir = "/var/lib/letterlock"

# One address per service, as "IP:port"; "" disables the service.
# The defaults are "local mode": loopback only, at the standard port + {offset}, so a first
# run needs no privileges and nothing outside this machine can reach it.
# In production use the standard ports on every address: "0.0.0.0:25", or "[::]:25" for
# IPv6 and IPv4 together.
[listen]
smtp = "{smtp}"                 # SMTP from other servers (MX, port 25), STARTTLS offered
submission_tls = "{submission_tls}"       # SMTP submission, implicit TLS (port 465)
submission_starttls = "{submission_starttls}"  # SMTP submission, STARTTLS required (port 587)
imap = "{imap}"                 # IMAP, STARTTLS required (port 143)
imaps = "{imaps}"                # IMAP, implicit TLS (port 993)
pop3 = "{pop3}"                 # POP3, STLS required (port 110)
pop3s = "{pop3s}"                # POP3, implicit TLS (port 995)
https = "{https}"                # webmail, portal, admin, API, WKD, autoconfig (port 443)

# The certificate chain (leaf first) and its private key, as PEM files, such as those of
# an ACME client. Leave both unset to use a self-signed certificate that is generated on
# the first run in DATA/tls/ and covers hostname, localhost, 127.0.0.1 and ::1.
[tls]
# certificate = "/etc/letsencrypt/live/mail.example.org/fullchain.pem"
# private_key = "/etc/letsencrypt/live/mail.example.org/privkey.pem"

[limits]
# Largest message accepted (delivery, submission, APPEND); at most {message_size_max}.
# A message is held in memory until it is encrypted, so this bounds memory per session.
message_size_max_bytes = {message_size}
# Connections open at once from one IPv4 address or one IPv6 /64, over all services.
connections_per_ip_max = {per_ip}
# Connections open at once over all services.
connections_max = {total}
# A session that has said nothing for this long is closed (RFC 9051: at least 30 minutes).
idle_timeout_secs = {idle}

# Argon2id cost of new password wraps (RFC 9106). Existing wraps keep their parameters,
# so these can be raised later. The defaults cost about 70-100 ms of CPU per derivation.
[kdf]
argon2_memory_kib = {memory}
argon2_iterations = {iterations}
argon2_parallelism = {parallelism}

# DNS for SPF, DKIM and DMARC checks and for delivering to other servers:
# "system" (the resolvers of /etc/resolv.conf) or "off" (no network at all).
# dnsbl: blocklists asked about each inbound client (off unless listed here), for
# example dnsbl = ["zen.spamhaus.org"] (mind the list's terms of use).
[dns]
resolver = "system"
dnsbl = []
"#,
        hostname = DEFAULT_HOSTNAME,
        offset = LOCAL_MODE_PORT_OFFSET,
        smtp = address(Service::Smtp),
        submission_tls = address(Service::SubmissionTls),
        submission_starttls = address(Service::SubmissionStarttls),
        imap = address(Service::Imap),
        imaps = address(Service::Imaps),
        pop3 = address(Service::Pop3),
        pop3s = address(Service::Pop3s),
        https = address(Service::Https),
        message_size_max = limits::MESSAGE_SIZE_MAX_BYTES,
        message_size = limits.message_size_max_bytes,
        per_ip = limits.connections_per_ip_max,
        total = limits.connections_max,
        idle = limits.idle_timeout_secs,
        memory = kdf.argon2_memory_kib,
        iterations = kdf.argon2_iterations,
        parallelism = kdf.argon2_parallelism,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(
            text,
            Path::new("/srv/mail/letterlock.toml"),
            Path::new("/data"),
        )
    }

    fn invalid(text: &str) -> InvalidConfig {
        match parse(text) {
            Err(ConfigError::Invalid { problem, .. }) => problem,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn default_hostname_is_valid() {
        assert_eq!(default_hostname().as_str(), DEFAULT_HOSTNAME);
    }

    #[test]
    fn default_text_parses_to_the_default_config() {
        let config = Config::parse(
            &default_config_text(),
            Path::new("data/letterlock.toml"),
            Path::new("data"),
        )
        .expect("default text parses");
        assert_eq!(config, Config::default_for(Path::new("data")));
    }

    #[test]
    fn serialized_default_parses_back_to_itself() {
        let config = Config::default_for(Path::new("/data"));
        let text = toml::to_string(&config).expect("serialize");
        assert_eq!(parse(&text).expect("parse"), config);
    }

    #[test]
    fn an_empty_file_is_the_default_config() {
        assert_eq!(
            parse("").expect("parse"),
            Config::default_for(Path::new("/data"))
        );
    }

    #[test]
    fn local_mode_ports_are_standard_plus_2000() {
        let listen = Listen::default();
        assert_eq!(
            listen.imaps,
            ListenAddress::At("127.0.0.1:2993".parse().expect("address"))
        );
        assert_eq!(
            listen.smtp,
            ListenAddress::At("127.0.0.1:2025".parse().expect("address"))
        );
        assert_eq!(listen.enabled().len(), Service::ALL.len());
    }

    #[test]
    fn dnsbl_zones_are_off_by_default_and_listed_when_set() {
        assert!(parse("").expect("parse").dns.dnsbl.is_empty());
        let config = parse("[dns]\ndnsbl = [\"zen.example\", \"bl.example\"]\n").expect("parse");
        assert_eq!(config.dns.dnsbl, ["zen.example", "bl.example"]);
        assert!(
            parse("[dns]\ndnsbl = \"zen.example\"\n").is_err(),
            "a list, not a string"
        );
    }

    #[test]
    fn an_empty_address_disables_the_service() {
        let config = parse("[listen]\npop3 = \"\"\npop3s = \"  \"\n").expect("parse");
        assert_eq!(config.listen.pop3, ListenAddress::Disabled);
        assert_eq!(config.listen.pop3s, ListenAddress::Disabled);
        assert_eq!(config.listen.enabled().len(), Service::ALL.len() - 2);
    }

    #[test]
    fn an_ipv6_address_parses() {
        let config = parse("[listen]\nimaps = \"[::]:993\"\n").expect("parse");
        assert_eq!(
            config.listen.imaps.socket_address(),
            Some("[::]:993".parse().expect("address"))
        );
    }

    #[test]
    fn an_unknown_key_names_the_file_the_key_and_the_line() {
        let error =
            parse("hostname = \"mail.example.org\"\n\n[listen]\nimapz = \"127.0.0.1:143\"\n")
                .expect_err("unknown key");
        let message = error.to_string();
        assert!(matches!(error, ConfigError::Parse { .. }), "{message}");
        assert!(
            message.starts_with("/srv/mail/letterlock.toml: "),
            "{message}"
        );
        assert!(message.contains("imapz"), "{message}");
        assert!(message.contains("line 4"), "{message}");
    }

    #[test]
    fn an_unparseable_address_is_named() {
        let message = parse("[listen]\nimap = \"localhost:143\"\n")
            .expect_err("host name")
            .to_string();
        assert!(
            message.contains("\"localhost:143\" is not a listen address"),
            "{message}"
        );
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn an_invalid_hostname_is_refused() {
        let message = parse("hostname = \"mail example\"\n")
            .expect_err("space")
            .to_string();
        assert!(message.contains("hostname"), "{message}");
    }

    #[test]
    fn two_services_on_one_address_are_refused() {
        let problem = invalid("[listen]\nimap = \"127.0.0.1:2993\"\n");
        assert_eq!(
            problem,
            InvalidConfig::DuplicateAddress {
                first: Service::Imap,
                second: Service::Imaps,
                address: "127.0.0.1:2993".parse().expect("address"),
            }
        );
    }

    #[test]
    fn a_wildcard_overlaps_a_specific_address_on_the_same_port() {
        let problem = invalid("[listen]\nimap = \"0.0.0.0:2995\"\n");
        assert!(
            matches!(problem, InvalidConfig::DuplicateAddress { .. }),
            "{problem}"
        );
        parse("[listen]\nimap = \"0.0.0.0:143\"\n").expect("different port");
    }

    #[test]
    fn port_zero_never_conflicts() {
        let mut text = String::from("[listen]\n");
        for service in Service::ALL {
            text.push_str(&format!("{} = \"127.0.0.1:0\"\n", service.key()));
        }
        parse(&text).expect("port 0 everywhere");
    }

    #[test]
    fn zero_limits_are_refused() {
        assert_eq!(
            invalid("[limits]\nconnections_per_ip_max = 0\n"),
            InvalidConfig::ZeroLimit {
                key: "connections_per_ip_max"
            }
        );
        assert_eq!(
            invalid("[limits]\nidle_timeout_secs = 0\n"),
            InvalidConfig::ZeroLimit {
                key: "idle_timeout_secs"
            }
        );
    }

    #[test]
    fn message_size_cannot_exceed_the_built_in_limit() {
        let problem = invalid(&format!(
            "[limits]\nmessage_size_max_bytes = {}\n",
            limits::MESSAGE_SIZE_MAX_BYTES + 1
        ));
        assert!(matches!(problem, InvalidConfig::MessageSizeTooLarge { .. }));
    }

    #[test]
    fn kdf_memory_below_8_kib_per_lane_is_refused() {
        let problem = invalid("[kdf]\nargon2_memory_kib = 7\n");
        assert!(
            matches!(problem, InvalidConfig::KdfMemoryTooSmall { min: 8, .. }),
            "{problem}"
        );
        let problem = invalid("[kdf]\nargon2_memory_kib = 16\nargon2_parallelism = 4\n");
        assert!(
            matches!(problem, InvalidConfig::KdfMemoryTooSmall { min: 32, .. }),
            "{problem}"
        );
        parse("[kdf]\nargon2_memory_kib = 8\n").expect("the Argon2 minimum");
    }

    #[test]
    fn kdf_iterations_of_zero_are_refused() {
        let problem = invalid("[kdf]\nargon2_iterations = 0\n");
        assert!(matches!(
            problem,
            InvalidConfig::KdfOutOfRange {
                key: "argon2_iterations",
                ..
            }
        ));
    }

    #[test]
    fn a_certificate_without_a_key_is_refused() {
        let problem = invalid("[tls]\ncertificate = \"cert.pem\"\n");
        assert_eq!(
            problem,
            InvalidConfig::TlsPairIncomplete {
                present: "certificate",
                missing: "private_key"
            }
        );
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let config = parse(
            "data_dir = \"store\"\n[tls]\ncertificate = \"tls/cert.pem\"\nprivate_key = \"/etc/key.pem\"\n",
        )
        .expect("parse");
        assert_eq!(config.data_dir, Path::new("/srv/mail/store"));
        assert_eq!(
            config.tls.certificate.as_deref(),
            Some(Path::new("/srv/mail/tls/cert.pem"))
        );
        assert_eq!(
            config.tls.private_key.as_deref(),
            Some(Path::new("/etc/key.pem"))
        );
    }
}
