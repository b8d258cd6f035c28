//! The storage conformance suite: what every [`Engine`] must do, written once and run unchanged
//! against each engine, so that the layers above may rely on the contract in the crate docs
//! without knowing which engine they run on.
//!
//! An engine's test file is one line: [`storage_conformance_tests!`](crate::storage_conformance_tests)
//! with a function that opens the engine on a directory. The macro expands to one `#[test]` per
//! case. Opening the same directory again must reopen the same data; an engine that keeps its
//! data elsewhere (a PostgreSQL database) derives where from the directory. Every case uses a
//! fresh directory, so cases never see each other's rows.
//!
//! The cases panic on failure, as tests do. The crash case runs the test binary again as a child
//! process, kills it with SIGKILL in the middle of its commits, and checks that every commit the
//! child acknowledged is there.

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{
    Engine, KeyRange, Row, StorageError, Table, KEY_SIZE_MAX_BYTES, SCAN_ROWS_MAX,
    VALUE_SIZE_MAX_BYTES,
};

/// Opens an engine whose data lives under the given directory.
pub type OpenEngine = dyn Fn(&Path) -> Box<dyn Engine>;

/// The environment variable that turns the crash child on and names its directory.
pub const CRASH_DIR_ENV: &str = "LETTERLOCK_CONFORMANCE_CRASH_DIR";

/// What the crash child prints after each commit returned, followed by the key number.
const CRASH_ACK_MARKER: &str = "letterlock-conformance-ack";

/// Acknowledged commits the parent waits for before killing the child: enough that the kill
/// lands among commits in flight rather than on a fresh file.
const CRASH_ACKS_BEFORE_KILL: u64 = 200;

/// How long the parent waits for those acknowledgements.
const CRASH_ACK_TIMEOUT_MS: u64 = 60_000;

/// The child stops on its own after this many commits, in case nobody kills it.
const CRASH_CHILD_COMMITS_MAX: u64 = 10_000;

/// A value of a few pages, so that a commit writes more than one block and a torn write shows.
const CRASH_VALUE_SIZE_BYTES: usize = 4 * 1024;

/// Large enough to span many pages of any engine, small enough to keep the suite fast.
const LARGE_VALUE_SIZE_BYTES: usize = 5 * 1024 * 1024;

const CONCURRENT_WRITER_THREADS: u64 = 4;
const INCREMENTS_PER_WRITER: u64 = 50;

/// How many names [`ScratchDir::new`] tries before giving up.
const SCRATCH_DIR_ATTEMPTS_MAX: u32 = 100;

const TABLE_A: Table = Table::new("conformance_a");
/// A name that starts with another table's name, to catch engines that match names by prefix.
const TABLE_A_B: Table = Table::new("conformance_a_b");
const TABLE_NEVER_WRITTEN: Table = Table::new("conformance_never_written");
const TABLE_CRASH: Table = Table::new("conformance_crash");

/// A directory under the system's temporary directory, removed when dropped, kept when the
/// test is failing so the files can be inspected.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn new() -> ScratchDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let started_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        for _ in 0..SCRATCH_DIR_ATTEMPTS_MAX {
            let path = std::env::temp_dir().join(format!(
                "letterlock-conformance-{}-{}-{}",
                std::process::id(),
                started_ns,
                NEXT.fetch_add(1, Ordering::Relaxed),
            ));
            match fs::create_dir(&path) {
                Ok(()) => return ScratchDir { path },
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => panic!("creating {}: {error}", path.display()),
            }
        }
        panic!("no free scratch directory name after {SCRATCH_DIR_ATTEMPTS_MAX} attempts");
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for ScratchDir {
    fn default() -> ScratchDir {
        ScratchDir::new()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("kept {} for inspection", self.path.display());
        } else {
            // Nothing to do about a failed clean-up of a temporary directory.
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Opens an engine in a fresh directory and runs one case on it.
pub fn run_on_fresh_engine(open: &OpenEngine, case: fn(&dyn Engine)) {
    let dir = ScratchDir::new();
    let engine = open(dir.path());
    case(&*engine);
    // The engine must close before its directory goes.
    drop(engine);
}

/// The name libtest knows a test by: its module path without the crate name, then the function.
/// `module_path` is what `module_path!()` gives where the test is defined.
pub fn test_name_in_binary(module_path: &str, function: &str) -> String {
    match module_path.split_once("::") {
        Some((_crate_name, module)) => format!("{module}::{function}"),
        None => function.to_string(),
    }
}

// Small helpers, so that each case reads as what it checks.

fn commit_rows(engine: &dyn Engine, table: Table, rows: &[(&[u8], &[u8])]) {
    let mut transaction = engine.begin_write().expect("begin write");
    for (key, value) in rows {
        transaction.put(table, key, value).expect("put");
    }
    transaction.commit().expect("commit");
}

fn read_get(engine: &dyn Engine, table: Table, key: &[u8]) -> Option<Vec<u8>> {
    let transaction = engine.begin_read().expect("begin read");
    transaction.get(table, key).expect("get")
}

fn read_scan(engine: &dyn Engine, table: Table, range: KeyRange, limit: usize) -> Vec<Row> {
    let transaction = engine.begin_read().expect("begin read");
    transaction.scan(table, range, limit).expect("scan")
}

fn read_scan_rev(engine: &dyn Engine, table: Table, range: KeyRange, limit: usize) -> Vec<Row> {
    let transaction = engine.begin_read().expect("begin read");
    transaction.scan_rev(table, range, limit).expect("scan_rev")
}

fn keys_of(rows: &[Row]) -> Vec<Vec<u8>> {
    rows.iter().map(|(key, _)| key.clone()).collect()
}

fn owned_keys(keys: &[&[u8]]) -> Vec<Vec<u8>> {
    keys.iter().map(|key| key.to_vec()).collect()
}

/// A value whose every byte depends on its position and on `seed`, so that a shifted, truncated
/// or swapped value cannot compare equal.
fn patterned_value(seed: u64, size_bytes: usize) -> Vec<u8> {
    let mut value = Vec::with_capacity(size_bytes);
    value.extend_from_slice(&seed.to_be_bytes());
    value.truncate(size_bytes);
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while value.len() < size_bytes {
        // xorshift: cheap, and no byte pattern repeats at page-sized offsets.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        value.extend_from_slice(&state.to_le_bytes()[..(size_bytes - value.len()).min(8)]);
    }
    value
}

/// Put, get, overwrite and delete one key; delete reports whether the key existed.
pub fn put_get_overwrite_delete(engine: &dyn Engine) {
    assert_eq!(read_get(engine, TABLE_A, b"key"), None);

    commit_rows(engine, TABLE_A, &[(b"key", b"first")]);
    assert_eq!(read_get(engine, TABLE_A, b"key"), Some(b"first".to_vec()));

    commit_rows(
        engine,
        TABLE_A,
        &[(b"key", b"second, longer than the first")],
    );
    assert_eq!(
        read_get(engine, TABLE_A, b"key"),
        Some(b"second, longer than the first".to_vec())
    );

    commit_rows(engine, TABLE_A, &[(b"key", b"")]);
    assert_eq!(
        read_get(engine, TABLE_A, b"key"),
        Some(Vec::new()),
        "an empty value is a value, not a missing key"
    );

    let mut transaction = engine.begin_write().expect("begin write");
    assert!(transaction.delete(TABLE_A, b"key").expect("delete"));
    assert!(!transaction.delete(TABLE_A, b"key").expect("delete again"));
    assert!(!transaction
        .delete(TABLE_A, b"never")
        .expect("delete missing"));
    transaction.commit().expect("commit");
    assert_eq!(read_get(engine, TABLE_A, b"key"), None);
    assert_eq!(read_scan(engine, TABLE_A, KeyRange::all(), 10), Vec::new());

    // The empty key is a key like any other.
    commit_rows(engine, TABLE_A, &[(b"", b"empty key")]);
    assert_eq!(read_get(engine, TABLE_A, b""), Some(b"empty key".to_vec()));
    let mut transaction = engine.begin_write().expect("begin write");
    assert!(transaction.delete(TABLE_A, b"").expect("delete empty key"));
    transaction.commit().expect("commit");
    assert_eq!(read_get(engine, TABLE_A, b""), None);
}

/// The same key in two tables holds two values; writing or deleting in one leaves the other.
pub fn tables_are_independent(engine: &dyn Engine) {
    commit_rows(engine, TABLE_A, &[(b"shared", b"in a"), (b"only_a", b"1")]);
    commit_rows(
        engine,
        TABLE_A_B,
        &[(b"shared", b"in a_b"), (b"only_a_b", b"2")],
    );

    assert_eq!(read_get(engine, TABLE_A, b"shared"), Some(b"in a".to_vec()));
    assert_eq!(
        read_get(engine, TABLE_A_B, b"shared"),
        Some(b"in a_b".to_vec())
    );
    assert_eq!(read_get(engine, TABLE_A, b"only_a_b"), None);
    assert_eq!(read_get(engine, TABLE_A_B, b"only_a"), None);
    assert_eq!(
        keys_of(&read_scan(engine, TABLE_A, KeyRange::all(), 10)),
        owned_keys(&[b"only_a", b"shared"])
    );
    assert_eq!(
        keys_of(&read_scan_rev(engine, TABLE_A_B, KeyRange::all(), 10)),
        owned_keys(&[b"shared", b"only_a_b"])
    );

    let mut transaction = engine.begin_write().expect("begin write");
    assert!(transaction.delete(TABLE_A, b"shared").expect("delete"));
    transaction.commit().expect("commit");
    assert_eq!(read_get(engine, TABLE_A, b"shared"), None);
    assert_eq!(
        read_get(engine, TABLE_A_B, b"shared"),
        Some(b"in a_b".to_vec())
    );
    assert_eq!(read_get(engine, TABLE_NEVER_WRITTEN, b"shared"), None);
}

/// A table nobody has written to reads as empty, in read and in write transactions.
pub fn missing_table_reads_as_empty(engine: &dyn Engine) {
    let reader = engine.begin_read().expect("begin read");
    assert_eq!(reader.get(TABLE_NEVER_WRITTEN, b"key").expect("get"), None);
    assert_eq!(
        reader
            .scan(TABLE_NEVER_WRITTEN, KeyRange::all(), 10)
            .expect("scan"),
        Vec::new()
    );
    assert_eq!(
        reader
            .scan_rev(TABLE_NEVER_WRITTEN, KeyRange::prefix(b"k"), 10)
            .expect("scan_rev"),
        Vec::new()
    );
    drop(reader);

    let mut writer = engine.begin_write().expect("begin write");
    assert_eq!(writer.get(TABLE_NEVER_WRITTEN, b"key").expect("get"), None);
    assert_eq!(
        writer
            .scan(TABLE_NEVER_WRITTEN, KeyRange::all(), 10)
            .expect("scan"),
        Vec::new()
    );
    assert!(!writer.delete(TABLE_NEVER_WRITTEN, b"key").expect("delete"));
    writer.commit().expect("commit");

    assert_eq!(read_get(engine, TABLE_NEVER_WRITTEN, b"key"), None);
    assert_eq!(
        read_scan(engine, TABLE_NEVER_WRITTEN, KeyRange::all(), 10),
        Vec::new()
    );
}

/// Keys that catch signed comparison, string comparison (stopping at 0x00) and wrong handling of
/// keys that are prefixes of each other, in bytewise order.
const ORDERED_KEYS: [&[u8]; 17] = [
    b"",
    &[0x00],
    &[0x00, 0x00],
    &[0x00, 0x01],
    &[0x00, 0xff],
    &[0x01],
    b"a",
    b"a\x00",
    b"a\x00\x00",
    b"a\x01",
    b"ab",
    b"b",
    &[0x7f],
    &[0x80],
    &[0xff],
    &[0xff, 0x00],
    &[0xff, 0xff],
];

fn commit_ordered_keys(engine: &dyn Engine) {
    let mut transaction = engine.begin_write().expect("begin write");
    // Out of order, so that an engine which only keeps insertion order fails.
    for step in 0..ORDERED_KEYS.len() {
        let key = ORDERED_KEYS[(step * 7 + 3) % ORDERED_KEYS.len()];
        transaction.put(TABLE_A, key, key).expect("put");
    }
    transaction.commit().expect("commit");
}

/// Scans return keys in bytewise order, with each key's own value.
pub fn keys_sort_bytewise(engine: &dyn Engine) {
    let expected = owned_keys(&ORDERED_KEYS);
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "ORDERED_KEYS must be listed in order");

    commit_ordered_keys(engine);
    let rows = read_scan(engine, TABLE_A, KeyRange::all(), 100);
    assert_eq!(keys_of(&rows), expected);
    for (key, value) in &rows {
        assert_eq!(key, value, "each key was stored with itself as value");
    }
    let mut descending = expected.clone();
    descending.reverse();
    assert_eq!(
        keys_of(&read_scan_rev(engine, TABLE_A, KeyRange::all(), 100)),
        descending
    );
}

/// A prefix scan returns exactly the keys that start with the prefix, including after a
/// prefix of 0xff bytes, which has no successor.
pub fn scan_prefix(engine: &dyn Engine) {
    commit_ordered_keys(engine);
    let cases: [(&[u8], &[&[u8]]); 6] = [
        (b"a", &[b"a", b"a\x00", b"a\x00\x00", b"a\x01", b"ab"]),
        (b"a\x00", &[b"a\x00", b"a\x00\x00"]),
        (
            &[0x00],
            &[&[0x00], &[0x00, 0x00], &[0x00, 0x01], &[0x00, 0xff]],
        ),
        (&[0xff], &[&[0xff], &[0xff, 0x00], &[0xff, 0xff]]),
        (&[0xff, 0xff], &[&[0xff, 0xff]]),
        (b"c", &[]),
    ];
    for (prefix, expected) in cases {
        assert_eq!(
            keys_of(&read_scan(engine, TABLE_A, KeyRange::prefix(prefix), 100)),
            owned_keys(expected),
            "prefix {prefix:02x?}"
        );
        let mut descending = owned_keys(expected);
        descending.reverse();
        assert_eq!(
            keys_of(&read_scan_rev(
                engine,
                TABLE_A,
                KeyRange::prefix(prefix),
                100
            )),
            descending,
            "prefix {prefix:02x?}, descending"
        );
    }
    assert_eq!(
        read_scan(engine, TABLE_A, KeyRange::prefix(b""), 100).len(),
        ORDERED_KEYS.len(),
        "the empty prefix matches every key"
    );
}

/// `between` includes its start and excludes its end; other bounds are honoured as given.
pub fn scan_between(engine: &dyn Engine) {
    commit_ordered_keys(engine);
    assert_eq!(
        keys_of(&read_scan(
            engine,
            TABLE_A,
            KeyRange::between(b"a", b"ab"),
            100
        )),
        owned_keys(&[b"a", b"a\x00", b"a\x00\x00", b"a\x01"])
    );
    assert_eq!(
        keys_of(&read_scan(
            engine,
            TABLE_A,
            KeyRange::between(&[0x01], &[0x80]),
            100
        )),
        owned_keys(&[
            &[0x01],
            b"a",
            b"a\x00",
            b"a\x00\x00",
            b"a\x01",
            b"ab",
            b"b",
            &[0x7f]
        ])
    );
    assert_eq!(
        keys_of(&read_scan(
            engine,
            TABLE_A,
            KeyRange::between(b"", &[0x00, 0x00]),
            100
        )),
        owned_keys(&[b"", &[0x00]])
    );
    assert_eq!(
        read_scan(engine, TABLE_A, KeyRange::between(b"b", b"b"), 100),
        Vec::new(),
        "an empty range"
    );
    assert_eq!(
        read_scan(engine, TABLE_A, KeyRange::between(b"b", b"a"), 100),
        Vec::new(),
        "a reversed range is empty, not an error"
    );
    assert_eq!(
        read_scan_rev(engine, TABLE_A, KeyRange::between(b"b", b"a"), 100),
        Vec::new(),
        "a reversed range is empty, not an error"
    );

    let excluded_start_included_end = KeyRange {
        start: Bound::Excluded(b"a".to_vec()),
        end: Bound::Included(b"ab".to_vec()),
    };
    assert_eq!(
        keys_of(&read_scan(
            engine,
            TABLE_A,
            excluded_start_included_end.clone(),
            100
        )),
        owned_keys(&[b"a\x00", b"a\x00\x00", b"a\x01", b"ab"])
    );
    assert_eq!(
        keys_of(&read_scan_rev(
            engine,
            TABLE_A,
            excluded_start_included_end,
            100
        )),
        owned_keys(&[b"ab", b"a\x01", b"a\x00\x00", b"a\x00"])
    );
    let up_to = KeyRange {
        start: Bound::Unbounded,
        end: Bound::Excluded(vec![0x00, 0x01]),
    };
    assert_eq!(
        keys_of(&read_scan(engine, TABLE_A, up_to, 100)),
        owned_keys(&[b"", &[0x00], &[0x00, 0x00]])
    );
    let from = KeyRange {
        start: Bound::Included(vec![0x80]),
        end: Bound::Unbounded,
    };
    assert_eq!(
        keys_of(&read_scan(engine, TABLE_A, from, 100)),
        owned_keys(&[&[0x80], &[0xff], &[0xff, 0x00], &[0xff, 0xff]])
    );
}

/// Unbounded scans return everything, and every scan stops at its limit.
pub fn scan_unbounded_and_limit(engine: &dyn Engine) {
    commit_ordered_keys(engine);
    let all = owned_keys(&ORDERED_KEYS);
    assert_eq!(
        keys_of(&read_scan(engine, TABLE_A, KeyRange::all(), 100)),
        all
    );
    assert_eq!(
        keys_of(&read_scan(engine, TABLE_A, KeyRange::all(), 3)),
        all[..3].to_vec()
    );
    assert_eq!(read_scan(engine, TABLE_A, KeyRange::all(), 0), Vec::new());
    assert_eq!(
        keys_of(&read_scan(engine, TABLE_A, KeyRange::prefix(b"a"), 2)),
        owned_keys(&[b"a", b"a\x00"])
    );
    assert_eq!(
        keys_of(&read_scan(engine, TABLE_A, KeyRange::all(), all.len())),
        all,
        "a limit equal to the row count"
    );
    // A limit far above the row count (and above SCAN_ROWS_MAX) must neither fail nor try to
    // reserve room for that many rows.
    assert_eq!(
        keys_of(&read_scan(engine, TABLE_A, KeyRange::all(), usize::MAX)),
        all
    );
    assert_eq!(
        read_scan(engine, TABLE_A, KeyRange::all(), SCAN_ROWS_MAX).len(),
        all.len()
    );
}

/// `scan_rev` returns the highest keys first and stops at its limit.
pub fn scan_rev_descends_and_limits(engine: &dyn Engine) {
    commit_ordered_keys(engine);
    let mut descending = owned_keys(&ORDERED_KEYS);
    descending.reverse();
    assert_eq!(
        keys_of(&read_scan_rev(engine, TABLE_A, KeyRange::all(), 100)),
        descending
    );
    assert_eq!(
        keys_of(&read_scan_rev(engine, TABLE_A, KeyRange::all(), 2)),
        owned_keys(&[&[0xff, 0xff], &[0xff, 0x00]])
    );
    assert_eq!(
        keys_of(&read_scan_rev(engine, TABLE_A, KeyRange::prefix(b"a"), 2)),
        owned_keys(&[b"ab", b"a\x01"]),
        "the limit keeps the highest keys of the range"
    );
    assert_eq!(
        keys_of(&read_scan_rev(
            engine,
            TABLE_A,
            KeyRange::between(b"a", b"b"),
            1
        )),
        owned_keys(&[b"ab"])
    );
    assert_eq!(
        read_scan_rev(engine, TABLE_A, KeyRange::all(), 0),
        Vec::new()
    );
    assert_eq!(
        read_scan_rev(engine, TABLE_A, KeyRange::all(), usize::MAX).len(),
        ORDERED_KEYS.len()
    );
}

/// A write transaction reads its own uncommitted puts and deletes, by get and by scan.
pub fn write_transaction_sees_own_writes(engine: &dyn Engine) {
    commit_rows(
        engine,
        TABLE_A,
        &[(b"committed", b"old"), (b"doomed", b"x")],
    );

    let mut transaction = engine.begin_write().expect("begin write");
    assert_eq!(
        transaction.get(TABLE_A, b"committed").expect("get"),
        Some(b"old".to_vec()),
        "a write transaction sees what was committed before it"
    );
    transaction.put(TABLE_A, b"new", b"1").expect("put");
    transaction.put(TABLE_A, b"committed", b"new").expect("put");
    assert!(transaction.delete(TABLE_A, b"doomed").expect("delete"));
    transaction.put(TABLE_A_B, b"other", b"2").expect("put");

    assert_eq!(
        transaction.get(TABLE_A, b"new").expect("get"),
        Some(b"1".to_vec())
    );
    assert_eq!(
        transaction.get(TABLE_A, b"committed").expect("get"),
        Some(b"new".to_vec())
    );
    assert_eq!(transaction.get(TABLE_A, b"doomed").expect("get"), None);
    assert_eq!(
        transaction.get(TABLE_A_B, b"other").expect("get"),
        Some(b"2".to_vec())
    );
    assert_eq!(
        transaction
            .scan(TABLE_A, KeyRange::all(), 10)
            .expect("scan"),
        vec![
            (b"committed".to_vec(), b"new".to_vec()),
            (b"new".to_vec(), b"1".to_vec()),
        ]
    );
    assert_eq!(
        keys_of(
            &transaction
                .scan_rev(TABLE_A, KeyRange::all(), 10)
                .expect("scan_rev")
        ),
        owned_keys(&[b"new", b"committed"])
    );
    assert!(
        transaction.delete(TABLE_A, b"new").expect("delete"),
        "deleting an uncommitted put finds it"
    );
    assert_eq!(transaction.get(TABLE_A, b"new").expect("get"), None);
    transaction.commit().expect("commit");

    assert_eq!(
        read_scan(engine, TABLE_A, KeyRange::all(), 10),
        vec![(b"committed".to_vec(), b"new".to_vec())]
    );
    assert_eq!(read_get(engine, TABLE_A_B, b"other"), Some(b"2".to_vec()));
}

/// Writes of an open write transaction are invisible to read transactions, whether they began
/// before the writes or while the writer is still open.
pub fn uncommitted_writes_are_invisible(engine: &dyn Engine) {
    commit_rows(engine, TABLE_A, &[(b"key", b"committed")]);
    let reader_before = engine.begin_read().expect("begin read");

    let mut writer = engine.begin_write().expect("begin write");
    writer.put(TABLE_A, b"key", b"uncommitted").expect("put");
    writer.put(TABLE_A, b"new", b"uncommitted").expect("put");
    writer
        .put(TABLE_NEVER_WRITTEN, b"new", b"uncommitted")
        .expect("put");

    let reader_during = engine
        .begin_read()
        .expect("begin read while a writer is open");
    for reader in [&reader_before, &reader_during] {
        assert_eq!(
            reader.get(TABLE_A, b"key").expect("get"),
            Some(b"committed".to_vec())
        );
        assert_eq!(reader.get(TABLE_A, b"new").expect("get"), None);
        assert_eq!(
            reader.scan(TABLE_A, KeyRange::all(), 10).expect("scan"),
            vec![(b"key".to_vec(), b"committed".to_vec())]
        );
        assert_eq!(
            reader
                .scan(TABLE_NEVER_WRITTEN, KeyRange::all(), 10)
                .expect("scan"),
            Vec::new()
        );
    }
    writer.commit().expect("commit");

    assert_eq!(
        read_get(engine, TABLE_A, b"key"),
        Some(b"uncommitted".to_vec()),
        "once committed, new read transactions see the writes"
    );
    assert_eq!(
        read_get(engine, TABLE_NEVER_WRITTEN, b"new"),
        Some(b"uncommitted".to_vec())
    );
}

/// A write transaction that is dropped or aborted leaves nothing behind, and does not hold up
/// the next writer.
pub fn dropped_or_aborted_writes_are_lost(engine: &dyn Engine) {
    commit_rows(engine, TABLE_A, &[(b"key", b"committed")]);

    let mut dropped = engine.begin_write().expect("begin write");
    dropped.put(TABLE_A, b"key", b"dropped").expect("put");
    dropped.put(TABLE_A, b"dropped", b"1").expect("put");
    assert!(dropped.delete(TABLE_A, b"key").expect("delete"));
    dropped
        .put(TABLE_NEVER_WRITTEN, b"dropped", b"1")
        .expect("put");
    drop(dropped);

    let mut aborted = engine
        .begin_write()
        .expect("begin write after a dropped one");
    aborted.put(TABLE_A, b"key", b"aborted").expect("put");
    aborted.put(TABLE_A, b"aborted", b"1").expect("put");
    aborted.abort().expect("abort");

    assert_eq!(
        read_scan(engine, TABLE_A, KeyRange::all(), 10),
        vec![(b"key".to_vec(), b"committed".to_vec())]
    );
    assert_eq!(read_get(engine, TABLE_NEVER_WRITTEN, b"dropped"), None);

    let mut next = engine
        .begin_write()
        .expect("begin write after an aborted one");
    assert_eq!(
        next.get(TABLE_A, b"key").expect("get"),
        Some(b"committed".to_vec())
    );
    next.put(TABLE_A, b"next", b"1").expect("put");
    next.commit().expect("commit");
    assert_eq!(read_get(engine, TABLE_A, b"next"), Some(b"1".to_vec()));
}

/// A read transaction keeps the snapshot it began with while others commit.
pub fn read_transaction_keeps_its_snapshot(engine: &dyn Engine) {
    commit_rows(
        engine,
        TABLE_A,
        &[(b"changed", b"old"), (b"deleted", b"old")],
    );
    let reader = engine.begin_read().expect("begin read");

    let mut writer = engine.begin_write().expect("begin write");
    writer.put(TABLE_A, b"changed", b"new").expect("put");
    assert!(writer.delete(TABLE_A, b"deleted").expect("delete"));
    writer.put(TABLE_A, b"added", b"new").expect("put");
    writer.put(TABLE_A_B, b"added", b"new").expect("put");
    writer.commit().expect("commit");

    // Read twice: a snapshot must not change between two reads of the same transaction either.
    for _ in 0..2 {
        assert_eq!(
            reader.get(TABLE_A, b"changed").expect("get"),
            Some(b"old".to_vec())
        );
        assert_eq!(
            reader.get(TABLE_A, b"deleted").expect("get"),
            Some(b"old".to_vec())
        );
        assert_eq!(reader.get(TABLE_A, b"added").expect("get"), None);
        assert_eq!(
            keys_of(&reader.scan(TABLE_A, KeyRange::all(), 10).expect("scan")),
            owned_keys(&[b"changed", b"deleted"])
        );
        assert_eq!(
            reader.scan(TABLE_A_B, KeyRange::all(), 10).expect("scan"),
            Vec::new(),
            "a table created after the snapshot reads as empty"
        );
    }
    drop(reader);

    assert_eq!(
        keys_of(&read_scan(engine, TABLE_A, KeyRange::all(), 10)),
        owned_keys(&[b"added", b"changed"])
    );
}

fn assert_too_large(result: crate::Result<()>, expected_what: &str, expected_size_bytes: usize) {
    match result {
        Err(StorageError::TooLarge {
            what,
            size_bytes,
            limit_bytes,
        }) => {
            assert_eq!(what, expected_what);
            assert_eq!(size_bytes, expected_size_bytes);
            assert!(limit_bytes < size_bytes);
        }
        other => panic!("expected TooLarge for the {expected_what}, got {other:?}"),
    }
}

/// Keys and values over the limits are refused with `TooLarge`, permanently, and leave the
/// transaction usable with nothing of theirs written; keys at the limit are accepted.
pub fn oversized_key_and_value_are_refused(engine: &dyn Engine) {
    let key_at_limit = vec![0x6b; KEY_SIZE_MAX_BYTES];
    let key_over_limit = vec![0x6b; KEY_SIZE_MAX_BYTES + 1];
    let value_over_limit = vec![0x76; VALUE_SIZE_MAX_BYTES + 1];

    let mut transaction = engine.begin_write().expect("begin write");
    transaction.put(TABLE_A, b"before", b"1").expect("put");
    let refused = transaction.put(TABLE_A, &key_over_limit, b"small");
    assert!(refused.as_ref().is_err_and(|error| !error.is_temporary()));
    assert_too_large(refused, "key", KEY_SIZE_MAX_BYTES + 1);
    assert_too_large(
        transaction.put(TABLE_A, b"big value", &value_over_limit),
        "value",
        VALUE_SIZE_MAX_BYTES + 1,
    );
    assert_too_large(
        transaction.put(TABLE_A, &key_over_limit, &value_over_limit),
        "key",
        KEY_SIZE_MAX_BYTES + 1,
    );
    transaction
        .put(TABLE_A, &key_at_limit, b"at the limit")
        .expect("a key of exactly KEY_SIZE_MAX_BYTES is accepted");
    assert_eq!(transaction.get(TABLE_A, b"big value").expect("get"), None);
    transaction
        .commit()
        .expect("a refused put leaves the transaction usable");

    assert_eq!(
        read_scan(engine, TABLE_A, KeyRange::all(), 10),
        vec![
            (b"before".to_vec(), b"1".to_vec()),
            (key_at_limit.clone(), b"at the limit".to_vec()),
        ]
    );
    assert_eq!(read_get(engine, TABLE_A, &key_over_limit), None);
}

/// Multi-megabyte values come back byte for byte, through get and scan, before and after commit.
pub fn large_values_round_trip(engine: &dyn Engine) {
    let large = patterned_value(1, LARGE_VALUE_SIZE_BYTES);
    let odd_sized = patterned_value(2, LARGE_VALUE_SIZE_BYTES / 2 + 13);

    let mut transaction = engine.begin_write().expect("begin write");
    transaction.put(TABLE_A, b"large", &large).expect("put");
    transaction.put(TABLE_A, b"odd", &odd_sized).expect("put");
    transaction.put(TABLE_A, b"small", b"s").expect("put");
    assert!(
        transaction.get(TABLE_A, b"large").expect("get") == Some(large.clone()),
        "the writer reads its large value back"
    );
    transaction.commit().expect("commit");

    // assert! rather than assert_eq!, so that a failure does not print megabytes.
    assert!(read_get(engine, TABLE_A, b"large") == Some(large.clone()));
    assert!(read_get(engine, TABLE_A, b"odd") == Some(odd_sized.clone()));
    let rows = read_scan(engine, TABLE_A, KeyRange::all(), 10);
    assert!(
        rows == vec![
            (b"large".to_vec(), large.clone()),
            (b"odd".to_vec(), odd_sized.clone()),
            (b"small".to_vec(), b"s".to_vec()),
        ]
    );

    // Overwriting with a smaller value must not leave the old tail behind.
    commit_rows(engine, TABLE_A, &[(b"large", &odd_sized)]);
    assert!(read_get(engine, TABLE_A, b"large") == Some(odd_sized));
}

/// Writers on several threads doing read-modify-write lose no update: write transactions are
/// serialised (or made to look so) by the engine, and callers need no retry loop.
pub fn concurrent_writers_lose_no_update(engine: &dyn Engine) {
    let counter_key: &[u8] = b"counter";
    let seen = thread::scope(|scope| {
        let writers: Vec<_> = (0..CONCURRENT_WRITER_THREADS)
            .map(|_| {
                scope.spawn(move || {
                    let mut seen = Vec::new();
                    for _ in 0..INCREMENTS_PER_WRITER {
                        let mut transaction = engine.begin_write().expect("begin write");
                        let count = match transaction.get(TABLE_A, counter_key).expect("get") {
                            Some(bytes) => {
                                u64::from_be_bytes(bytes.try_into().expect("an 8-byte counter"))
                            }
                            None => 0,
                        };
                        transaction
                            .put(TABLE_A, counter_key, &(count + 1).to_be_bytes())
                            .expect("put");
                        transaction.commit().expect("commit");
                        seen.push(count);
                    }
                    seen
                })
            })
            .collect();
        let mut seen = Vec::new();
        for writer in writers {
            seen.extend(writer.join().expect("writer thread"));
        }
        seen
    });

    let total = CONCURRENT_WRITER_THREADS * INCREMENTS_PER_WRITER;
    assert_eq!(
        read_get(engine, TABLE_A, counter_key),
        Some(total.to_be_bytes().to_vec())
    );
    let mut seen = seen;
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..total).collect::<Vec<_>>(),
        "every committed increment read the value the previous one wrote"
    );
}

/// Committed data is there after the engine is closed and opened again; uncommitted is not.
pub fn data_survives_reopen(open: &OpenEngine, dir: &Path) {
    {
        let engine = open(dir);
        commit_rows(engine.as_ref(), TABLE_A, &[(b"one", b"1"), (b"two", b"2")]);
        commit_rows(engine.as_ref(), TABLE_A_B, &[(b"other", b"table")]);
        let mut uncommitted = engine.begin_write().expect("begin write");
        uncommitted.put(TABLE_A, b"uncommitted", b"x").expect("put");
        drop(uncommitted);
    }
    {
        let engine = open(dir);
        assert_eq!(
            read_scan(engine.as_ref(), TABLE_A, KeyRange::all(), 10),
            vec![
                (b"one".to_vec(), b"1".to_vec()),
                (b"two".to_vec(), b"2".to_vec()),
            ]
        );
        assert_eq!(
            read_get(engine.as_ref(), TABLE_A_B, b"other"),
            Some(b"table".to_vec())
        );
        let mut transaction = engine.begin_write().expect("begin write after reopen");
        assert!(transaction.delete(TABLE_A, b"one").expect("delete"));
        transaction.put(TABLE_A, b"three", b"3").expect("put");
        transaction.commit().expect("commit");
    }
    {
        let engine = open(dir);
        assert_eq!(
            read_scan(engine.as_ref(), TABLE_A, KeyRange::all(), 10),
            vec![
                (b"three".to_vec(), b"3".to_vec()),
                (b"two".to_vec(), b"2".to_vec()),
            ]
        );
    }
}

fn crash_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn crash_value(index: u64) -> Vec<u8> {
    patterned_value(index, CRASH_VALUE_SIZE_BYTES)
}

/// The key number of an acknowledgement line. libtest may print its own text on the same line
/// ("test crash_child ... "), so the marker is searched for, not expected at the start.
fn parse_ack(line: &str) -> Option<u64> {
    let (_, after) = line.split_once(CRASH_ACK_MARKER)?;
    after.split_whitespace().next()?.parse().ok()
}

/// Counts an acknowledgement, or keeps the line for the failure message.
fn record_line(line: String, acked: &mut u64, other_output: &mut Vec<String>) {
    match parse_ack(&line) {
        Some(index) => {
            assert_eq!(index, *acked, "the child acknowledges keys in order");
            *acked += 1;
        }
        None => other_output.push(line),
    }
}

/// Kills the child on every way out of the parent, a failed assertion included, so that no
/// child outlives its test.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // The child may be gone already; either way there is nothing left to do.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs [`crash_child`] as a child process, kills it with SIGKILL once it has acknowledged
/// `CRASH_ACKS_BEFORE_KILL` (200) commits, then checks that every acknowledged commit survived,
/// that no commit survived in part, and that the store takes new writes.
///
/// `child_test_name` is the exact libtest name of a test that calls [`crash_child`] with the
/// same `open`.
pub fn crash_keeps_acknowledged_commits(open: &OpenEngine, child_test_name: &str) {
    let dir = ScratchDir::new();
    let test_binary = std::env::current_exe().expect("the path of this test binary");
    let child = Command::new(test_binary)
        .args([
            "--exact",
            child_test_name,
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CRASH_DIR_ENV, dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Inherited, so that a panic in the child shows beside the parent's failure.
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the crash child");
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().expect("the child's stdout");

    let (line_sender, lines) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line_sender.send(line).is_err() {
                break;
            }
        }
    });

    let mut acked: u64 = 0;
    let mut other_output = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(CRASH_ACK_TIMEOUT_MS);
    while acked < CRASH_ACKS_BEFORE_KILL {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(remaining) {
            Ok(line) => record_line(line, &mut acked, &mut other_output),
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "the crash child acknowledged {acked} commits in {CRASH_ACK_TIMEOUT_MS} ms, \
                 wanted {CRASH_ACKS_BEFORE_KILL}"
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                "the crash child ({child_test_name}) stopped after {acked} acknowledgements; \
                 its other output: {other_output:?}"
            ),
        }
    }

    // Child::kill is SIGKILL on Unix: no destructor, no flush, no clean close.
    child.0.kill().expect("kill the crash child");
    child.0.wait().expect("wait for the crash child");
    // Acknowledgements printed between the last one read and the kill count too.
    reader.join().expect("the stdout reader");
    for line in lines.try_iter() {
        record_line(line, &mut acked, &mut other_output);
    }
    drop(child);

    let engine = open(dir.path());
    let rows = read_scan(engine.as_ref(), TABLE_CRASH, KeyRange::all(), usize::MAX);
    let committed = rows.len() as u64;
    // The child commits key i before acknowledging it and never starts i + 1 before that,
    // so at most one commit may have landed without its acknowledgement.
    assert!(
        committed == acked || committed == acked + 1,
        "{acked} commits acknowledged, {committed} found after the crash"
    );
    for (index, (key, value)) in (0..committed).zip(&rows) {
        assert_eq!(key.as_slice(), crash_key(index), "key {index}");
        assert!(
            *value == crash_value(index),
            "value of key {index} differs from what was committed"
        );
    }

    let mut transaction = engine.begin_write().expect("begin write after the crash");
    transaction
        .put(TABLE_CRASH, &crash_key(committed), &crash_value(committed))
        .expect("put after the crash");
    transaction.commit().expect("commit after the crash");
    assert_eq!(
        read_get(engine.as_ref(), TABLE_CRASH, &crash_key(committed)),
        Some(crash_value(committed))
    );
    drop(engine);
}

/// The child side of [`crash_keeps_acknowledged_commits`]. Does nothing unless [`CRASH_DIR_ENV`]
/// is set, so it passes as an ordinary test. Otherwise it opens the engine there and commits key
/// after key, printing an acknowledgement once each commit has returned, until it is killed.
pub fn crash_child(open: &OpenEngine) {
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
        return;
    };
    let engine = open(Path::new(&dir));
    // Straight to the process's stdout, past libtest's capture, so acknowledgements arrive
    // even without --nocapture.
    let mut stdout = io::stdout();
    for index in 0..CRASH_CHILD_COMMITS_MAX {
        let mut transaction = engine.begin_write().expect("begin write");
        transaction
            .put(TABLE_CRASH, &crash_key(index), &crash_value(index))
            .expect("put");
        transaction.commit().expect("commit");
        // A failed write means the parent is gone; the child should stop as well.
        writeln!(stdout, "{CRASH_ACK_MARKER} {index}").expect("write an acknowledgement");
        stdout.flush().expect("flush an acknowledgement");
    }
}

/// Expands to one `#[test]` per conformance case, each opening the engine with the given
/// function of type `Fn(&Path) -> Box<dyn Engine>`. Invoke it once per module, in a test target
/// that uses the standard libtest harness: the crash case runs its own binary again with libtest
/// arguments (`--exact NAME`), which works under both `cargo test` and `cargo nextest`.
///
/// ```ignore
/// letterlock_storage::storage_conformance_tests!(
///     |dir: &std::path::Path| -> Box<dyn letterlock_storage::Engine> {
///         Box::new(letterlock_storage::embedded::EmbeddedEngine::open(dir).expect("open"))
///     }
/// );
/// ```
#[macro_export]
macro_rules! storage_conformance_tests {
    (@on_fresh_engine $open:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::run_on_fresh_engine(&$open, $crate::conformance::$case);
            }
        )*
    };
    ($open:expr $(,)?) => {
        $crate::storage_conformance_tests!(@on_fresh_engine $open;
            put_get_overwrite_delete,
            tables_are_independent,
            missing_table_reads_as_empty,
            keys_sort_bytewise,
            scan_prefix,
            scan_between,
            scan_unbounded_and_limit,
            scan_rev_descends_and_limits,
            write_transaction_sees_own_writes,
            uncommitted_writes_are_invisible,
            dropped_or_aborted_writes_are_lost,
            read_transaction_keeps_its_snapshot,
            oversized_key_and_value_are_refused,
            large_values_round_trip,
            concurrent_writers_lose_no_update,
        );

        #[test]
        fn data_survives_reopen() {
            let dir = $crate::conformance::ScratchDir::new();
            $crate::conformance::data_survives_reopen(&$open, dir.path());
        }

        #[test]
        fn crash_keeps_acknowledged_commits() {
            let child = $crate::conformance::test_name_in_binary(
                ::core::module_path!(),
                "crash_child_process",
            );
            $crate::conformance::crash_keeps_acknowledged_commits(&$open, &child);
        }

        /// The child process of `crash_keeps_acknowledged_commits`; passes at once on its own.
        #[test]
        fn crash_child_process() {
            $crate::conformance::crash_child(&$open);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_names_drop_the_crate() {
        assert_eq!(
            test_name_in_binary("conformance_embedded", "crash_child_process"),
            "crash_child_process"
        );
        assert_eq!(
            test_name_in_binary("letterlock_storage::embedded::tests", "crash_child_process"),
            "embedded::tests::crash_child_process"
        );
    }

    #[test]
    fn acknowledgements_are_found_beside_libtest_output() {
        assert_eq!(parse_ack("letterlock-conformance-ack 0"), Some(0));
        assert_eq!(
            parse_ack("test crash_child_process ... letterlock-conformance-ack 17"),
            Some(17)
        );
        assert_eq!(parse_ack("running 1 test"), None);
        assert_eq!(parse_ack("letterlock-conformance-ack"), None);
        assert_eq!(parse_ack("letterlock-conformance-ack x"), None);
    }

    #[test]
    fn patterned_values_differ_by_seed_and_keep_their_size() {
        assert_eq!(patterned_value(3, 0), Vec::<u8>::new());
        assert_eq!(patterned_value(3, 5).len(), 5);
        assert_eq!(patterned_value(3, 4097).len(), 4097);
        assert_ne!(patterned_value(3, 64), patterned_value(4, 64));
        assert_eq!(&patterned_value(3, 64)[..8], &3u64.to_be_bytes());
    }

    #[test]
    fn scratch_dirs_are_distinct_and_removed() {
        let first = ScratchDir::new();
        let second = ScratchDir::new();
        assert_ne!(first.path(), second.path());
        let path = first.path().to_path_buf();
        fs::write(path.join("file"), b"x").expect("write into the scratch dir");
        drop(first);
        assert!(!path.exists());
    }
}
