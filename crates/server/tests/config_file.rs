//! `Config::load_or_create` against a real data directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use letterlock_server::config::{ListenAddress, CONFIG_FILE_NAME};
use letterlock_server::{Config, ConfigError, InvalidConfig, Service};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn first_run_writes_a_default_file_that_reads_back_the_same() {
    let temporary = tempfile::tempdir().expect("tempdir");
    let data_dir = temporary.path().join("nested").join("data");

    let (created_config, created) = Config::load_or_create(&data_dir, None).expect("create");
    assert!(created);
    assert_eq!(created_config, Config::default_for(&data_dir));
    let file = data_dir.join(CONFIG_FILE_NAME);
    assert!(fs::read_to_string(&file)
        .expect("read")
        .starts_with("# Letterlock configuration"));
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&data_dir), 0o700);

    let (read_config, created) = Config::load_or_create(&data_dir, None).expect("read");
    assert!(!created);
    assert_eq!(read_config, created_config);
}

#[test]
fn an_explicit_path_is_used_and_created() {
    let temporary = tempfile::tempdir().expect("tempdir");
    let data_dir = temporary.path().join("data");
    let file = temporary.path().join("server.toml");
    let (_, created) = Config::load_or_create(&data_dir, Some(&file)).expect("create");
    assert!(created);
    assert!(file.exists());
    assert!(!data_dir.join(CONFIG_FILE_NAME).exists());

    fs::write(
        &file,
        "hostname = \"mail.example.org\"\n[listen]\npop3 = \"\"\n",
    )
    .expect("write");
    let (config, created) = Config::load_or_create(&data_dir, Some(&file)).expect("read");
    assert!(!created);
    assert_eq!(config.hostname.as_str(), "mail.example.org");
    assert_eq!(config.listen.pop3, ListenAddress::Disabled);
    assert_eq!(config.data_dir, data_dir);
}

#[test]
fn an_unknown_key_is_an_error_naming_the_file_key_and_line() {
    let temporary = tempfile::tempdir().expect("tempdir");
    let file = temporary.path().join(CONFIG_FILE_NAME);
    fs::write(
        &file,
        "[limits]\nconnections_max = 10\nconection_per_ip_max = 5\n",
    )
    .expect("write");

    let error = Config::load_or_create(temporary.path(), None).expect_err("typo");
    let message = error.to_string();
    assert!(matches!(error, ConfigError::Parse { .. }), "{message}");
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(message.contains("conection_per_ip_max"), "{message}");
    assert!(message.contains("line 3"), "{message}");
}

#[test]
fn two_services_on_one_address_is_a_typed_error() {
    let temporary = tempfile::tempdir().expect("tempdir");
    let file = temporary.path().join(CONFIG_FILE_NAME);
    fs::write(
        &file,
        "[listen]\nsmtp = \"0.0.0.0:25\"\nsubmission_starttls = \"0.0.0.0:25\"\n",
    )
    .expect("write");

    match Config::load_or_create(temporary.path(), None) {
        Err(ConfigError::Invalid { path, problem }) => {
            assert_eq!(path, file);
            assert_eq!(
                problem,
                InvalidConfig::DuplicateAddress {
                    first: Service::Smtp,
                    second: Service::SubmissionStarttls,
                    address: "0.0.0.0:25".parse().expect("address"),
                }
            );
        }
        other => panic!("expected a duplicate address error, got {other:?}"),
    }
}

#[test]
fn an_unreadable_config_is_an_error_not_a_new_default() {
    let temporary = tempfile::tempdir().expect("tempdir");
    // A directory where the file should be: reading it fails with something other than
    // "not found", and the server must not paper over that with a fresh default.
    fs::create_dir(temporary.path().join(CONFIG_FILE_NAME)).expect("mkdir");
    let error = Config::load_or_create(temporary.path(), None).expect_err("unreadable");
    assert!(matches!(error, ConfigError::Read { .. }), "{error}");
}
