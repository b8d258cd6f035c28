//! Running the real `letterlock` binary against a fresh data directory.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use letterlock_mailstore::{MailStore, StoreOptions};
use letterlock_storage::embedded::EmbeddedEngine;

pub const PASSWORD: &str = "correct horse battery";

pub struct Env {
    pub root: tempfile::TempDir,
    pub data: PathBuf,
    /// Given to the binary as TMPDIR, so a test can prove nothing readable lands there either.
    pub tmp: PathBuf,
}

impl Env {
    /// A data directory whose configuration uses cheap Argon2id parameters (tests only)
    /// and, since tests run in parallel, lets the OS pick every port.
    pub fn new() -> Env {
        let root = tempfile::tempdir().expect("tempdir");
        let data = root.path().join("data");
        let tmp = root.path().join("tmp");
        std::fs::create_dir_all(&data).expect("data dir");
        std::fs::create_dir_all(&tmp).expect("tmp dir");
        std::fs::write(data.join("letterlock.toml"), test_config(&data)).expect("config");
        Env { root, data, tmp }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_letterlock"));
        command
            .arg("--data")
            .arg(&self.data)
            .args(args)
            .env("TMPDIR", &self.tmp)
            .env_remove("RUST_LOG");
        command
    }

    /// Run to completion with `stdin` as standard input.
    pub fn run(&self, args: &[&str], stdin: &str) -> Output {
        self.run_bytes(args, stdin.as_bytes())
    }

    pub fn run_bytes(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn letterlock");
        let mut input = child.stdin.take().expect("stdin");
        // A command may exit before reading everything (an error); that is not a test failure.
        let _ = input.write_all(stdin);
        drop(input);
        child.wait_with_output().expect("wait")
    }

    /// Run and require success; returns standard output.
    pub fn ok(&self, args: &[&str], stdin: &str) -> String {
        let output = self.run(args, stdin);
        assert!(
            output.status.success(),
            "letterlock {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Run and require failure; returns (exit code, standard error).
    pub fn fails(&self, args: &[&str], stdin: &str) -> (i32, String) {
        let output = self.run(args, stdin);
        assert!(
            !output.status.success(),
            "letterlock {args:?} succeeded: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            stderr.starts_with("letterlock: "),
            "error without the one-line reason: {stderr:?}"
        );
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "error is not one line: {stderr:?}"
        );
        (output.status.code().unwrap_or(-1), stderr)
    }

    /// Open the store directly (no `serve` may be running on it).
    pub fn store(&self) -> MailStore {
        let engine = EmbeddedEngine::open(&self.data).expect("open store");
        MailStore::new(
            Arc::new(engine),
            StoreOptions {
                kdf: letterlock_crypto::kdf::KdfParams::INSECURE_FOR_TESTS,
                ..StoreOptions::default()
            },
        )
    }

    /// The key `account` trusts for `correspondent` in the copy inbound signature checks read,
    /// opened with the spool key beside the data (no `serve` may be running).
    pub fn trusted_sender_key(&self, account: &str, correspondent: &str) -> Option<Vec<u8>> {
        let engine = EmbeddedEngine::open(&self.data).expect("open store");
        let spool_key = letterlock_queue::SpoolKey::load_or_create_file(
            &self.root.path().join("data.spool-key"),
        )
        .expect("spool key");
        let queue = letterlock_queue::Queue::new(
            Arc::new(engine),
            &spool_key,
            letterlock_queue::QueueSettings::default(),
        );
        letterlock_queue::TrustedSenderKeys::new(queue)
            .key(
                &letterlock_types::EmailAddress::try_from(account).expect("address"),
                &letterlock_types::EmailAddress::try_from(correspondent).expect("address"),
            )
            .expect("read")
    }

    /// A domain and one user, `alice@example.org`, with [`PASSWORD`]. Returns the recovery code.
    pub fn with_alice(&self) -> String {
        self.ok(&["domain", "add", "example.org"], "");
        let out = self.ok(
            &["user", "add", "alice@example.org"],
            &format!("{PASSWORD}\n"),
        );
        recovery_code(&out)
    }
}

/// The recovery code a command printed (the line after the "Recovery code" heading).
pub fn recovery_code(stdout: &str) -> String {
    let mut lines = stdout.lines();
    while let Some(line) = lines.next() {
        if line.starts_with("Recovery code") {
            return lines.next().expect("code line").trim().to_string();
        }
    }
    panic!("no recovery code in {stdout:?}");
}

pub fn test_config(data: &Path) -> String {
    format!(
        r#"data_dir = "{data}"
hostname = "localhost"

[listen]
smtp = "127.0.0.1:0"
submission_tls = "127.0.0.1:0"
submission_starttls = "127.0.0.1:0"
imap = "127.0.0.1:0"
imaps = "127.0.0.1:0"
pop3 = "127.0.0.1:0"
pop3s = "127.0.0.1:0"
https = "127.0.0.1:0"

[kdf]
argon2_memory_kib = 8
argon2_iterations = 1
argon2_parallelism = 1

# Tests reach nothing but loopback.
[dns]
resolver = "off"
"#,
        data = data.display()
    )
}

/// Every file under `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
