//! `letterlock export`: the user's mail as a Maildir of the stored OpenPGP messages, plus the
//! secret key locked with the user's password, so GnuPG alone can read everything.
//!
//! Layout (Maildir++, as Dovecot and Courier use it): INBOX is `DIR/{cur,new,tmp}`, another
//! mailbox `Name/Sub` is `DIR/.Name.Sub/{cur,new,tmp}`. Each file holds the exact stored binary
//! OpenPGP message; its name carries the internal date, the UID and the flags (`:2,FRS...`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::records::flag_bits;
use crate::session::Unlocked;

#[derive(Debug, Clone, Default)]
pub struct ExportSummary {
    pub mailboxes: usize,
    pub messages: usize,
    pub bytes: u64,
}

fn io_error(path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Storage(letterlock_storage::StorageError::Unavailable(format!(
        "{}: {error}",
        path.display()
    )))
}

/// Maildir info flags, in the ASCII order the spec requires.
fn maildir_flags(flags: u8) -> String {
    let mut out = String::new();
    if flags & flag_bits::DRAFT != 0 {
        out.push('D');
    }
    if flags & flag_bits::FLAGGED != 0 {
        out.push('F');
    }
    if flags & flag_bits::ANSWERED != 0 {
        out.push('R');
    }
    if flags & flag_bits::SEEN != 0 {
        out.push('S');
    }
    if flags & flag_bits::DELETED != 0 {
        out.push('T');
    }
    out
}

fn maildir_folder(root: &Path, mailbox: &str) -> PathBuf {
    if mailbox == "INBOX" {
        root.to_path_buf()
    } else {
        // Maildir++ uses '.' as its separator; a '.' inside a level is escaped Dovecot-style.
        let escaped: Vec<String> = mailbox
            .split('/')
            .map(|level| level.replace('.', "%2E"))
            .collect();
        root.join(format!(".{}", escaped.join(".")))
    }
}

impl Unlocked {
    /// Write the whole account to `dir` (created if missing; must be empty if it exists).
    pub fn export_maildir(&self, dir: &Path, password: &[u8]) -> Result<ExportSummary> {
        if dir.exists() {
            let mut entries = fs::read_dir(dir).map_err(|error| io_error(dir, error))?;
            if entries.next().is_some() {
                return Err(StoreError::Storage(
                    letterlock_storage::StorageError::Unavailable(format!(
                        "{} is not empty; export into a new directory",
                        dir.display()
                    )),
                ));
            }
        }
        let mut summary = ExportSummary::default();
        for mailbox in self.mailboxes()? {
            let folder = maildir_folder(dir, mailbox.name.as_str());
            for sub in ["cur", "new", "tmp"] {
                let path = folder.join(sub);
                fs::create_dir_all(&path).map_err(|error| io_error(&path, error))?;
            }
            summary.mailboxes += 1;
            for message in self.encrypted_messages(&mailbox.name)? {
                let name = format!(
                    "{}.U{}V{}.letterlock:2,{}",
                    message.internal_date_unix,
                    message.uid,
                    mailbox.uid_validity,
                    maildir_flags(message.flags)
                );
                let path = folder.join("cur").join(name);
                write_file(&path, &message.openpgp_bytes)?;
                summary.messages += 1;
                summary.bytes += message.openpgp_bytes.len() as u64;
            }
        }
        let key_path = dir.join("secret-key.asc");
        write_file(&key_path, self.export_secret_keys(password)?.as_bytes())?;
        Ok(summary)
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = fs::File::create(path).map_err(|error| io_error(path, error))?;
    file.write_all(bytes)
        .map_err(|error| io_error(path, error))?;
    file.sync_all().map_err(|error| io_error(path, error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildir_names() {
        assert_eq!(maildir_flags(flag_bits::SEEN | flag_bits::FLAGGED), "FS");
        assert_eq!(
            maildir_folder(Path::new("/x"), "INBOX"),
            PathBuf::from("/x")
        );
        assert_eq!(
            maildir_folder(Path::new("/x"), "Work/v1.2"),
            PathBuf::from("/x/.Work.v1%2E2")
        );
    }
}
