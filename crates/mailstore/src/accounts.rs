//! Domains, users, aliases, app passwords, password changes and the account key's wrappings.

use letterlock_crypto::kdf::{self, DerivedCredential};
use letterlock_crypto::openpgp::UserKey;
use letterlock_crypto::symmetric::SymmetricKey;
use letterlock_storage::{KeyRange, ReadTransaction, WriteTransaction, SCAN_ROWS_MAX};
use letterlock_types::limits::{
    ALIAS_TARGETS_MAX, APP_PASSWORDS_PER_USER_MAX, PASSWORD_LENGTH_MAX_BYTES,
    PASSWORD_LENGTH_MIN_CHARS,
};
use letterlock_types::{Domain, EmailAddress, MailboxName, Secret};
use rand::Rng;

use crate::error::{Result, StoreError};
use crate::records::{
    self, AliasRecord, AppPasswordRecord, CredentialWrap, DomainRecord, KeyRecord, MailboxRecord,
    SpecialUse, UsageRecord, UserRecord, ALIASES, DOMAINS, MAILBOXES, USAGE, USERS, USERS_BY_ID,
};
use crate::session::Unlocked;
use crate::{get_record, next_id, now_unix, put_record, MailStore};

const ACCOUNT_KEY_CONTEXT: &[u8] = b"letterlock account key v1";
const SECRET_KEY_CONTEXT: &[u8] = b"letterlock secret key v1";
/// Recovery codes: 25 symbols of 5 bits (125 bits), Crockford's base32 alphabet.
const RECOVERY_CODE_SYMBOLS: usize = 25;
const CROCKFORD_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// App passwords: 20 lowercase letters (94 bits), grouped by 5 so they can be typed.
const APP_PASSWORD_LETTERS: usize = 20;
const APP_PASSWORD_NAME_LENGTH_MAX_CHARS: usize = 64;

/// The mailboxes every account starts with (RFC 6154 special uses).
const DEFAULT_MAILBOXES: [(&str, Option<SpecialUse>); 6] = [
    ("INBOX", None),
    ("Sent", Some(SpecialUse::Sent)),
    ("Drafts", Some(SpecialUse::Drafts)),
    ("Junk", Some(SpecialUse::Junk)),
    ("Trash", Some(SpecialUse::Trash)),
    ("Archive", Some(SpecialUse::Archive)),
];

pub struct UserCreated {
    pub address: EmailAddress,
    /// Shown once; the only way to read old mail after an administrator resets the password.
    pub recovery_code: Secret,
    pub fingerprint: String,
}

#[derive(Debug, Clone)]
pub struct UserSummary {
    pub address: EmailAddress,
    pub fingerprint: String,
    pub quota_bytes: u64,
    pub used_bytes: u64,
    pub messages: u64,
    pub app_passwords: Vec<String>,
}

/// What entitles a password change.
pub enum PasswordAuthority<'a> {
    /// The user knows the current password (or an app password).
    Current(&'a Secret),
    /// The recovery code printed at account creation.
    RecoveryCode(&'a Secret),
    /// An administrator without either: the account gets a new key, and mail encrypted to the
    /// old one can no longer be read.
    AdminWithoutRecovery,
}

pub enum PasswordReset {
    /// The account key and OpenPGP keys are unchanged; all mail stays readable.
    KeptKeys,
    /// A new account key and OpenPGP key; older mail is unreadable from now on.
    NewKeys {
        recovery_code: Secret,
        fingerprint: String,
        unreadable_messages: u64,
    },
}

pub(crate) fn user_record(
    tx: &(impl ReadTransaction + ?Sized),
    address: &EmailAddress,
) -> Result<UserRecord> {
    get_record(tx, USERS, address.to_string().as_bytes())?
        .ok_or_else(|| StoreError::NoSuchUser(address.clone()))
}

fn check_new_password(password: &Secret) -> Result<()> {
    if password.len() > PASSWORD_LENGTH_MAX_BYTES {
        return Err(StoreError::WeakPassword("longer than 1024 bytes"));
    }
    let text = std::str::from_utf8(password.expose())
        .map_err(|_| StoreError::WeakPassword("not valid UTF-8"))?;
    if text.chars().count() < PASSWORD_LENGTH_MIN_CHARS {
        return Err(StoreError::WeakPassword("shorter than 8 characters"));
    }
    if text.chars().any(char::is_control) {
        return Err(StoreError::WeakPassword("contains control characters"));
    }
    Ok(())
}

fn wrap_with(
    derived: &DerivedCredential,
    salt: &[u8],
    account_key: &SymmetricKey,
) -> CredentialWrap {
    CredentialWrap {
        salt: salt.to_vec(),
        verifier: derived.verifier.to_vec(),
        wrapped_account_key: derived
            .key_encryption_key
            .seal(ACCOUNT_KEY_CONTEXT, account_key.expose()),
        kdf: None,
    }
}

fn wrap_password(
    store: &MailStore,
    password: &Secret,
    account_key: &SymmetricKey,
) -> Result<CredentialWrap> {
    let salt = kdf::random_salt();
    let derived = kdf::derive(password.expose(), &salt, store.options.kdf)?;
    let mut wrap = wrap_with(&derived, &salt, account_key);
    wrap.kdf = Some(store.options.kdf);
    Ok(wrap)
}

fn wrap_generated(secret: &Secret, account_key: &SymmetricKey) -> CredentialWrap {
    let salt = kdf::random_salt();
    let derived = kdf::derive_high_entropy(secret.expose(), &salt);
    wrap_with(&derived, &salt, account_key)
}

/// Try one credential against one wrap. `Ok(None)` means "not this credential".
fn open_wrap(wrap: &CredentialWrap, secret: &[u8]) -> Result<Option<SymmetricKey>> {
    let derived = match wrap.kdf {
        Some(params) => kdf::derive(secret, &wrap.salt, params)?,
        None => kdf::derive_high_entropy(secret, &wrap.salt),
    };
    if !derived.verifies(&wrap.verifier) {
        return Ok(None);
    }
    let bytes = derived
        .key_encryption_key
        .open(ACCOUNT_KEY_CONTEXT, &wrap.wrapped_account_key)?;
    Ok(Some(SymmetricKey::from_slice(&bytes)?))
}

fn generate_recovery_code() -> Secret {
    let mut rng = rand::thread_rng();
    let symbols: Vec<u8> = (0..RECOVERY_CODE_SYMBOLS)
        .map(|_| CROCKFORD_ALPHABET[rng.gen_range(0..32)])
        .collect();
    let groups: Vec<&str> = symbols
        .chunks(5)
        .map(|chunk| std::str::from_utf8(chunk).unwrap_or_default())
        .collect();
    Secret::from(groups.join("-"))
}

/// Accept a recovery code as a person types it: any case, dashes and spaces anywhere,
/// and the letters Crockford's base32 reads as digits.
fn normalize_recovery_code(code: &Secret) -> Secret {
    let normalized: Vec<u8> = code
        .expose()
        .iter()
        .filter(|byte| !matches!(byte, b'-' | b' ' | b'\t' | b'\r' | b'\n'))
        .map(|byte| match byte.to_ascii_uppercase() {
            b'O' => b'0',
            b'I' | b'L' => b'1',
            other => other,
        })
        .collect();
    // Stored wraps are made from the dashed form; rebuild it.
    let groups: Vec<&[u8]> = normalized.chunks(5).collect();
    Secret::new(groups.join(&b'-'))
}

fn generate_app_password() -> Secret {
    let mut rng = rand::thread_rng();
    let letters: Vec<u8> = (0..APP_PASSWORD_LETTERS)
        .map(|_| b'a' + rng.gen_range(0..26u8))
        .collect();
    let groups: Vec<&[u8]> = letters.chunks(5).collect();
    Secret::new(groups.join(&b'-'))
}

fn seal_user_key(account_key: &SymmetricKey, key: &UserKey, generation: u32) -> Result<KeyRecord> {
    let secret_bytes = key.to_bytes()?;
    Ok(KeyRecord {
        fingerprint: key.fingerprint(),
        public_key: key.public_key().to_bytes()?,
        sealed_secret_key: account_key.seal(SECRET_KEY_CONTEXT, &secret_bytes),
        account_key_generation: generation,
        created_unix: now_unix(),
    })
}

/// Open every key of `user` that is sealed under the current account key.
pub(crate) fn open_user_keys(
    user: &UserRecord,
    account_key: &SymmetricKey,
) -> Result<Vec<UserKey>> {
    user.keys
        .iter()
        .filter(|key| key.account_key_generation == user.account_key_generation)
        .map(|key| {
            let bytes = zeroize::Zeroizing::new(
                account_key.open(SECRET_KEY_CONTEXT, &key.sealed_secret_key)?,
            );
            Ok(UserKey::from_bytes(&bytes)?)
        })
        .collect()
}

impl MailStore {
    // ---- domains ----

    pub fn add_domain(&self, domain: &Domain) -> Result<()> {
        let mut tx = self.engine.begin_write()?;
        if tx.get(DOMAINS, domain.as_str().as_bytes())?.is_some() {
            return Err(StoreError::DomainExists(domain.clone()));
        }
        put_record(
            tx.as_mut(),
            DOMAINS,
            domain.as_str().as_bytes(),
            &DomainRecord {
                created_unix: now_unix(),
            },
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn list_domains(&self) -> Result<Vec<Domain>> {
        let tx = self.engine.begin_read()?;
        tx.scan(DOMAINS, KeyRange::all(), SCAN_ROWS_MAX)?
            .into_iter()
            .map(|(key, _)| {
                let text = String::from_utf8(key)
                    .map_err(|_| StoreError::Corrupted("domain key".into()))?;
                Ok(Domain::try_from(text)?)
            })
            .collect()
    }

    pub fn has_domain(&self, domain: &Domain) -> Result<bool> {
        let tx = self.engine.begin_read()?;
        Ok(tx.get(DOMAINS, domain.as_str().as_bytes())?.is_some())
    }

    /// Remove a domain with no users and no aliases left.
    pub fn remove_domain(&self, domain: &Domain) -> Result<()> {
        let mut tx = self.engine.begin_write()?;
        if tx.get(DOMAINS, domain.as_str().as_bytes())?.is_none() {
            return Err(StoreError::NoSuchDomain(domain.clone()));
        }
        let users = count_in_domain(tx.as_ref(), USERS, domain)?;
        let aliases = count_in_domain(tx.as_ref(), ALIASES, domain)?;
        if users > 0 || aliases > 0 {
            return Err(StoreError::DomainInUse {
                domain: domain.clone(),
                users,
                aliases,
            });
        }
        tx.delete(DOMAINS, domain.as_str().as_bytes())?;
        tx.commit()?;
        Ok(())
    }

    // ---- users ----

    /// Create an account: its account key, its OpenPGP key (generated, or `import_key` as the
    /// user brings it), its wrappings, and its default mailboxes.
    pub fn add_user(
        &self,
        address: &EmailAddress,
        password: &Secret,
        quota_bytes: u64,
        import_key: Option<&[u8]>,
    ) -> Result<UserCreated> {
        check_new_password(password)?;
        // The expensive work (key generation, Argon2id) happens before the write transaction.
        let user_key = match import_key {
            Some(bytes) => UserKey::import(bytes, password.expose())?,
            None => UserKey::generate(&address.to_string())?,
        };
        let account_key = SymmetricKey::generate();
        let recovery_code = generate_recovery_code();
        let password_wrap = wrap_password(self, password, &account_key)?;
        let recovery_wrap = wrap_generated(&recovery_code, &account_key);
        let key_record = seal_user_key(&account_key, &user_key, 0)?;

        let mut tx = self.engine.begin_write()?;
        if tx
            .get(DOMAINS, address.domain().as_str().as_bytes())?
            .is_none()
        {
            return Err(StoreError::NoSuchDomain(address.domain().clone()));
        }
        let key = address.to_string();
        if tx.get(USERS, key.as_bytes())?.is_some() || tx.get(ALIASES, key.as_bytes())?.is_some() {
            return Err(StoreError::AddressTaken(address.clone()));
        }
        let id = next_id(tx.as_mut(), records::COUNTER_USER_ID)?;
        let user = UserRecord {
            id,
            address: address.clone(),
            created_unix: now_unix(),
            quota_bytes,
            account_key_generation: 0,
            password: password_wrap,
            recovery: recovery_wrap,
            app_passwords: Vec::new(),
            keys: vec![key_record],
        };
        put_record(tx.as_mut(), USERS, key.as_bytes(), &user)?;
        tx.put(USERS_BY_ID, &records::u64_key(id), key.as_bytes())?;
        put_record(
            tx.as_mut(),
            USAGE,
            &records::u64_key(id),
            &UsageRecord::default(),
        )?;
        for (name, special_use) in DEFAULT_MAILBOXES {
            let name = MailboxName::try_from(name)?;
            create_mailbox_in(tx.as_mut(), id, &name, special_use)?;
        }
        tx.commit()?;
        Ok(UserCreated {
            address: address.clone(),
            recovery_code,
            fingerprint: user_key.fingerprint(),
        })
    }

    pub fn list_users(&self, domain: Option<&Domain>) -> Result<Vec<UserSummary>> {
        let tx = self.engine.begin_read()?;
        let mut out = Vec::new();
        for (_, value) in tx.scan(USERS, KeyRange::all(), SCAN_ROWS_MAX)? {
            let user: UserRecord = records::decode("user", &value)?;
            if domain.is_some_and(|domain| user.address.domain() != domain) {
                continue;
            }
            let usage: UsageRecord =
                get_record(tx.as_ref(), USAGE, &records::u64_key(user.id))?.unwrap_or_default();
            out.push(UserSummary {
                fingerprint: user.current_key()?.fingerprint.clone(),
                address: user.address,
                quota_bytes: user.quota_bytes,
                used_bytes: usage.bytes,
                messages: usage.messages,
                app_passwords: user.app_passwords.into_iter().map(|app| app.name).collect(),
            });
        }
        Ok(out)
    }

    /// Remove an account and all its mail.
    pub fn remove_user(&self, address: &EmailAddress) -> Result<()> {
        let mut tx = self.engine.begin_write()?;
        let user = user_record(tx.as_ref(), address)?;
        let id_key = records::u64_key(user.id);
        for (mailbox_key, value) in tx.scan(MAILBOXES, KeyRange::prefix(&id_key), SCAN_ROWS_MAX)? {
            let mailbox: MailboxRecord = records::decode("mailbox", &value)?;
            crate::delivery::delete_mailbox_messages(tx.as_mut(), &mailbox)?;
            tx.delete(MAILBOXES, &mailbox_key)?;
        }
        delete_sealed_under_account_key(tx.as_mut(), user.id)?;
        tx.delete(USAGE, &id_key)?;
        for key in [
            crate::spam_models::user_model_key(user.id),
            crate::spam_models::correspondents_key(user.id),
        ] {
            tx.delete(crate::spam_models::SPAM_MODELS, &key)?;
        }
        tx.delete(
            crate::user_settings::USER_SETTINGS,
            &crate::user_settings::settings_key(user.id),
        )?;
        tx.delete(USERS_BY_ID, &id_key)?;
        tx.delete(USERS, address.to_string().as_bytes())?;
        tx.commit()?;
        self.unlock_cache.forget(address);
        Ok(())
    }

    /// Give the account a new OpenPGP key, generated here or the one the user brings
    /// (`import`, armoured or binary, unlocked or locked with the account password). Mail
    /// arriving from now on is encrypted to it; older keys are kept, so older mail stays
    /// readable. Needs the account password: the new secret key is sealed under the account key.
    /// Returns the new key's fingerprint.
    pub fn replace_key(
        &self,
        address: &EmailAddress,
        password: &Secret,
        import: Option<&[u8]>,
    ) -> Result<String> {
        let unlocked = self.unlock(address, password)?;
        let key = match import {
            Some(bytes) => UserKey::import(bytes, password.expose())?,
            None => UserKey::generate(&address.to_string())?,
        };
        let mut tx = self.engine.begin_write()?;
        let mut user = user_record(tx.as_ref(), address)?;
        if user
            .keys
            .iter()
            .any(|record| record.fingerprint == key.fingerprint())
        {
            return Err(StoreError::Corrupted(format!(
                "key {} is already one of this account's keys",
                key.fingerprint()
            )));
        }
        let record = seal_user_key(unlocked.account_key(), &key, user.account_key_generation)?;
        user.keys.push(record);
        put_record(tx.as_mut(), USERS, address.to_string().as_bytes(), &user)?;
        tx.commit()?;
        // Sessions unlocked before hold the old key list.
        self.unlock_cache.forget(address);
        Ok(key.fingerprint())
    }

    /// Fingerprints and creation times of the account's keys, oldest first; the last one is
    /// the one new mail is encrypted to. `readable` is false for keys sealed under an account
    /// key that an admin reset replaced.
    pub fn list_keys(&self, address: &EmailAddress) -> Result<Vec<(String, u64, bool)>> {
        let tx = self.engine.begin_read()?;
        let user = user_record(tx.as_ref(), address)?;
        Ok(user
            .keys
            .iter()
            .map(|key| {
                (
                    key.fingerprint.clone(),
                    key.created_unix,
                    key.account_key_generation == user.account_key_generation,
                )
            })
            .collect())
    }

    pub fn public_key(&self, address: &EmailAddress) -> Result<Vec<u8>> {
        let tx = self.engine.begin_read()?;
        Ok(user_record(tx.as_ref(), address)?
            .current_key()?
            .public_key
            .clone())
    }

    /// Unlock an account with its password or one of its app passwords.
    pub fn unlock(&self, address: &EmailAddress, secret: &Secret) -> Result<Unlocked> {
        if secret.len() > PASSWORD_LENGTH_MAX_BYTES {
            return Err(StoreError::WrongCredentials);
        }
        let user = {
            let tx = self.engine.begin_read()?;
            match user_record(tx.as_ref(), address) {
                Ok(user) => user,
                Err(StoreError::NoSuchUser(unknown)) => {
                    // Spend what a wrong password costs, so the answer's timing does not tell
                    // which accounts exist.
                    self.unlock_cache.count_password_kdf_run();
                    let _ = kdf::derive(secret.expose(), &kdf::random_salt(), self.options.kdf);
                    return Err(StoreError::NoSuchUser(unknown));
                }
                Err(error) => return Err(error),
            }
        };
        // The unlock cache first (DESIGN.md point 8): honoured only while the account still
        // holds the password wrap it was unlocked through.
        if let Some((account_key, verifier)) = self.unlock_cache.lookup(address, secret) {
            if user.password.verifier == verifier {
                return Unlocked::open(self.clone(), user, account_key);
            }
            self.unlock_cache.remove(address, secret);
        }
        // App passwords next: checking them costs microseconds, the password an Argon2id run.
        for app in &user.app_passwords {
            if let Some(account_key) = open_wrap(&app.wrap, secret.expose())? {
                return Unlocked::open(self.clone(), user, account_key);
            }
        }
        if user.password.kdf.is_some() {
            self.unlock_cache.count_password_kdf_run();
        }
        match open_wrap(&user.password, secret.expose())? {
            Some(account_key) => {
                self.unlock_cache
                    .insert(address, secret, &user.password.verifier, &account_key);
                Unlocked::open(self.clone(), user, account_key)
            }
            None => Err(StoreError::WrongCredentials),
        }
    }

    pub fn unlock_with_recovery_code(
        &self,
        address: &EmailAddress,
        code: &Secret,
    ) -> Result<Unlocked> {
        let user = {
            let tx = self.engine.begin_read()?;
            user_record(tx.as_ref(), address)?
        };
        match open_wrap(&user.recovery, normalize_recovery_code(code).expose())? {
            Some(account_key) => Unlocked::open(self.clone(), user, account_key),
            None => Err(StoreError::WrongRecoveryCode),
        }
    }

    /// Set a new password. With the current password or the recovery code, the account key is
    /// re-wrapped and all mail stays readable; without either, see
    /// [`PasswordAuthority::AdminWithoutRecovery`].
    pub fn set_password(
        &self,
        address: &EmailAddress,
        new_password: &Secret,
        authority: PasswordAuthority<'_>,
    ) -> Result<PasswordReset> {
        check_new_password(new_password)?;
        let account_key = match authority {
            PasswordAuthority::Current(current) => {
                Some(self.unlock(address, current)?.account_key().clone())
            }
            PasswordAuthority::RecoveryCode(code) => Some(
                self.unlock_with_recovery_code(address, code)?
                    .account_key()
                    .clone(),
            ),
            PasswordAuthority::AdminWithoutRecovery => None,
        };
        match account_key {
            Some(account_key) => {
                let wrap = wrap_password(self, new_password, &account_key)?;
                let mut tx = self.engine.begin_write()?;
                let mut user = user_record(tx.as_ref(), address)?;
                user.password = wrap;
                put_record(tx.as_mut(), USERS, address.to_string().as_bytes(), &user)?;
                tx.commit()?;
                self.unlock_cache.forget(address);
                Ok(PasswordReset::KeptKeys)
            }
            None => self.reset_without_recovery(address, new_password),
        }
    }

    fn reset_without_recovery(
        &self,
        address: &EmailAddress,
        new_password: &Secret,
    ) -> Result<PasswordReset> {
        let user_key = UserKey::generate(&address.to_string())?;
        let account_key = SymmetricKey::generate();
        let recovery_code = generate_recovery_code();
        let password_wrap = wrap_password(self, new_password, &account_key)?;
        let recovery_wrap = wrap_generated(&recovery_code, &account_key);

        let mut tx = self.engine.begin_write()?;
        let mut user = user_record(tx.as_ref(), address)?;
        let generation = user
            .account_key_generation
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupted("key generation overflow".into()))?;
        let key_record = seal_user_key(&account_key, &user_key, generation)?;
        let usage: UsageRecord =
            get_record(tx.as_ref(), USAGE, &records::u64_key(user.id))?.unwrap_or_default();
        user.account_key_generation = generation;
        user.password = password_wrap;
        user.recovery = recovery_wrap;
        // App passwords wrap the old account key, which is gone.
        user.app_passwords.clear();
        user.keys.push(key_record);
        put_record(tx.as_mut(), USERS, address.to_string().as_bytes(), &user)?;
        // What was sealed under the old account key is useless now, and would only fail to
        // open (the merged search indexes are rebuilt from the mail still readable).
        delete_sealed_under_account_key(tx.as_mut(), user.id)?;
        tx.commit()?;
        self.unlock_cache.forget(address);
        // Wakes the account's idling sessions, which then find their key is not current.
        self.notify(address, &MailboxName::inbox());
        Ok(PasswordReset::NewKeys {
            recovery_code,
            fingerprint: user_key.fingerprint(),
            unreadable_messages: usage.messages,
        })
    }

    pub fn set_quota(&self, address: &EmailAddress, quota_bytes: u64) -> Result<()> {
        let mut tx = self.engine.begin_write()?;
        let mut user = user_record(tx.as_ref(), address)?;
        user.quota_bytes = quota_bytes;
        put_record(tx.as_mut(), USERS, address.to_string().as_bytes(), &user)?;
        tx.commit()?;
        Ok(())
    }

    // ---- app passwords ----

    /// Create an app password (the account password is needed: the new credential must wrap
    /// the account key). Returns the generated password, to be shown once.
    pub fn add_app_password(
        &self,
        address: &EmailAddress,
        password: &Secret,
        name: &str,
    ) -> Result<Secret> {
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > APP_PASSWORD_NAME_LENGTH_MAX_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(StoreError::Invalid(
                letterlock_types::InvalidValue::MailboxName(
                    name.to_string(),
                    "an app password name is 1 to 64 printable characters",
                ),
            ));
        }
        let unlocked = self.unlock(address, password)?;
        let app_password = generate_app_password();
        let wrap = wrap_generated(&app_password, unlocked.account_key());
        let mut tx = self.engine.begin_write()?;
        let mut user = user_record(tx.as_ref(), address)?;
        if user.app_passwords.iter().any(|app| app.name == name) {
            return Err(StoreError::AppPasswordExists(name.to_string()));
        }
        if user.app_passwords.len() >= APP_PASSWORDS_PER_USER_MAX {
            return Err(StoreError::TooMany {
                what: "app passwords",
                limit: APP_PASSWORDS_PER_USER_MAX,
            });
        }
        user.app_passwords.push(AppPasswordRecord {
            name: name.to_string(),
            created_unix: now_unix(),
            wrap,
        });
        put_record(tx.as_mut(), USERS, address.to_string().as_bytes(), &user)?;
        tx.commit()?;
        Ok(app_password)
    }

    pub fn list_app_passwords(&self, address: &EmailAddress) -> Result<Vec<(String, u64)>> {
        let tx = self.engine.begin_read()?;
        let user = user_record(tx.as_ref(), address)?;
        Ok(user
            .app_passwords
            .into_iter()
            .map(|app| (app.name, app.created_unix))
            .collect())
    }

    pub fn remove_app_password(&self, address: &EmailAddress, name: &str) -> Result<()> {
        let mut tx = self.engine.begin_write()?;
        let mut user = user_record(tx.as_ref(), address)?;
        let before = user.app_passwords.len();
        user.app_passwords.retain(|app| app.name != name);
        if user.app_passwords.len() == before {
            return Err(StoreError::NoSuchAppPassword(name.to_string()));
        }
        put_record(tx.as_mut(), USERS, address.to_string().as_bytes(), &user)?;
        tx.commit()?;
        self.unlock_cache.forget(address);
        Ok(())
    }

    // ---- aliases ----

    /// Add an alias `source` (an address, or `@domain` for a catch-all) delivering to local users.
    pub fn add_alias(&self, source: &str, targets: &[EmailAddress]) -> Result<()> {
        let source_key = alias_key(source)?;
        if targets.is_empty() || targets.len() > ALIAS_TARGETS_MAX {
            return Err(StoreError::TooMany {
                what: "alias targets (1 or more are needed)",
                limit: ALIAS_TARGETS_MAX,
            });
        }
        let mut tx = self.engine.begin_write()?;
        let domain = alias_domain(&source_key)?;
        if tx.get(DOMAINS, domain.as_str().as_bytes())?.is_none() {
            return Err(StoreError::NoSuchDomain(domain));
        }
        if tx.get(ALIASES, source_key.as_bytes())?.is_some()
            || tx.get(USERS, source_key.as_bytes())?.is_some()
        {
            return Err(StoreError::AddressTaken(
                EmailAddress::try_from(source_key.trim_start_matches('@'))
                    .unwrap_or_else(|_| targets[0].clone()),
            ));
        }
        for target in targets {
            // Targets are local accounts; forwarding to remote addresses needs the outbound queue.
            user_record(tx.as_ref(), target)?;
        }
        put_record(
            tx.as_mut(),
            ALIASES,
            source_key.as_bytes(),
            &AliasRecord {
                targets: targets.to_vec(),
                created_unix: now_unix(),
            },
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn list_aliases(&self) -> Result<Vec<(String, Vec<EmailAddress>)>> {
        let tx = self.engine.begin_read()?;
        tx.scan(ALIASES, KeyRange::all(), SCAN_ROWS_MAX)?
            .into_iter()
            .map(|(key, value)| {
                let record: AliasRecord = records::decode("alias", &value)?;
                Ok((String::from_utf8_lossy(&key).into_owned(), record.targets))
            })
            .collect()
    }

    pub fn remove_alias(&self, source: &str) -> Result<()> {
        let source_key = alias_key(source)?;
        let mut tx = self.engine.begin_write()?;
        if !tx.delete(ALIASES, source_key.as_bytes())? {
            return Err(StoreError::NoSuchAlias(source_key));
        }
        tx.commit()?;
        Ok(())
    }

    /// The accounts mail to `recipient` goes to: the account itself, else an alias,
    /// else the domain's catch-all. Unknown recipients are an error (SMTP 550 5.1.1).
    pub fn resolve_recipient(&self, recipient: &EmailAddress) -> Result<Vec<EmailAddress>> {
        let tx = self.engine.begin_read()?;
        resolve_in(tx.as_ref(), recipient)
    }
}

pub(crate) fn resolve_in(
    tx: &(impl ReadTransaction + ?Sized),
    recipient: &EmailAddress,
) -> Result<Vec<EmailAddress>> {
    let key = recipient.to_string();
    if tx.get(USERS, key.as_bytes())?.is_some() {
        return Ok(vec![recipient.clone()]);
    }
    if let Some(alias) = get_record::<AliasRecord>(tx, ALIASES, key.as_bytes())? {
        return Ok(alias.targets);
    }
    let catch_all = format!("@{}", recipient.domain());
    if let Some(alias) = get_record::<AliasRecord>(tx, ALIASES, catch_all.as_bytes())? {
        return Ok(alias.targets);
    }
    // RFC 5321 section 4.5.1: every domain accepts mail for its postmaster. Without an
    // account or alias of that name, the domain's oldest account receives it.
    if recipient.local_part().eq_ignore_ascii_case("postmaster") {
        let mut oldest: Option<UserRecord> = None;
        for (_, value) in tx.scan(USERS, KeyRange::all(), SCAN_ROWS_MAX)? {
            let user: UserRecord = records::decode("user", &value)?;
            if user.address.domain() == recipient.domain()
                && oldest.as_ref().is_none_or(|known| user.id < known.id)
            {
                oldest = Some(user);
            }
        }
        if let Some(user) = oldest {
            return Ok(vec![user.address]);
        }
    }
    Err(StoreError::UnknownRecipient(recipient.clone()))
}

/// Every row of `user_id` sealed under its account key: promoted session keys, merged search
/// indexes, trusted contact keys (whose addresses are keyed under it too).
fn delete_sealed_under_account_key(tx: &mut dyn WriteTransaction, user_id: u64) -> Result<()> {
    for (table, prefix) in [
        (records::PROMOTED_KEYS, records::u64_key(user_id).to_vec()),
        (
            crate::search_index::SEARCH_INDEX,
            records::u64_key(user_id).to_vec(),
        ),
        (
            crate::contacts::CONTACT_KEYS,
            crate::contacts::user_prefix(user_id),
        ),
    ] {
        for (key, _) in tx.scan(table, KeyRange::prefix(&prefix), SCAN_ROWS_MAX)? {
            tx.delete(table, &key)?;
        }
    }
    Ok(())
}

/// Normalised alias key: `local@domain`, or `@domain` for a catch-all.
fn alias_key(source: &str) -> Result<String> {
    match source.strip_prefix('@') {
        Some(domain) => Ok(format!("@{}", Domain::try_from(domain)?)),
        None => Ok(EmailAddress::try_from(source)?.to_string()),
    }
}

fn alias_domain(key: &str) -> Result<Domain> {
    let domain = key
        .rsplit_once('@')
        .map(|(_, domain)| domain)
        .unwrap_or(key);
    Ok(Domain::try_from(domain)?)
}

fn count_in_domain(
    tx: &(impl ReadTransaction + ?Sized),
    table: letterlock_storage::Table,
    domain: &Domain,
) -> Result<usize> {
    let suffix = format!("@{domain}");
    Ok(tx
        .scan(table, KeyRange::all(), SCAN_ROWS_MAX)?
        .into_iter()
        .filter(|(key, _)| key.ends_with(suffix.as_bytes()))
        .count())
}

pub(crate) fn create_mailbox_in(
    tx: &mut (impl WriteTransaction + ?Sized),
    user_id: u64,
    name: &MailboxName,
    special_use: Option<SpecialUse>,
) -> Result<MailboxRecord> {
    let key = records::mailbox_key(user_id, name);
    if tx.get(MAILBOXES, &key)?.is_some() {
        return Err(StoreError::MailboxExists(name.clone()));
    }
    let id = next_id(tx, records::COUNTER_MAILBOX_ID)?;
    // UIDVALIDITY must change if a mailbox is recreated under the same name (RFC 9051
    // section 2.3.1.1); a random non-zero value does, with overwhelming probability.
    let uid_validity = rand::thread_rng().gen_range(1..=u32::MAX);
    let record = MailboxRecord {
        id,
        uid_validity,
        uid_next: 1,
        highest_modseq: 1,
        special_use,
        subscribed: true,
        created_unix: now_unix(),
    };
    put_record(tx, MAILBOXES, &key, &record)?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_normalise_as_typed() {
        let code = generate_recovery_code();
        let text = std::str::from_utf8(code.expose())
            .expect("ascii")
            .to_string();
        assert_eq!(text.len(), 29);
        let typed = Secret::from(text.to_lowercase().replace('-', " "));
        assert_eq!(normalize_recovery_code(&typed).expose(), code.expose());
    }

    #[test]
    fn app_passwords_have_the_documented_shape() {
        let password = generate_app_password();
        let text = std::str::from_utf8(password.expose()).expect("ascii");
        assert_eq!(text.len(), 23);
        assert!(text.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
    }
}
