//! The embedded storage engine: one redb file, `store.redb`, in the data directory.
//!
//! This is the default engine, so that a Letterlock server needs nothing beside its own binary.
//! redb is pure Rust (no C or C++ toolchain in the build, unlike RocksDB or LMDB bindings), gives
//! ACID transactions over copy-on-write B-trees with checksums, and lets readers work on a
//! snapshot while one writer commits. Each [`Table`] is one redb table of byte strings to byte
//! strings; redb orders `&[u8]` keys bytewise, which is the order the interface promises.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use crate::{
    check_key, check_value, Engine, KeyRange, ReadTransaction, Result, Row, StorageError, Table,
    WriteTransaction, KEY_SIZE_MAX_BYTES, SCAN_ROWS_MAX, VALUE_SIZE_MAX_BYTES,
};

/// The name of the database file inside the data directory.
pub const STORE_FILE_NAME: &str = "store.redb";

/// The largest key plus value redb stores (its `MAX_PAIR_LENGTH`, 3.75 GiB in redb 4).
/// Our own limits must stay below it, so that redb's `ValueTooLarge` cannot happen: oversized
/// input is refused by [`check_key`] and [`check_value`] as [`StorageError::TooLarge`] instead.
const REDB_PAIR_SIZE_MAX_BYTES: u64 = 3 * 1024 * 1024 * 1024 + 768 * 1024 * 1024;
const _: () =
    assert!((KEY_SIZE_MAX_BYTES as u64) + (VALUE_SIZE_MAX_BYTES as u64) < REDB_PAIR_SIZE_MAX_BYTES);

type RedbTable<'name> = TableDefinition<'name, &'static [u8], &'static [u8]>;

fn definition(table: Table) -> RedbTable<'static> {
    TableDefinition::new(table.name())
}

/// The [`Engine`] on a redb file.
///
/// After an I/O error (a full disk, say), redb refuses every later operation on that
/// `Database` (`PreviousIo`) until it is opened again. So a transaction that meets one marks
/// its database as failed, and the next transaction to begin drops it and opens the file
/// again (redb repairs it; every commit that returned is kept): the server recovers when the
/// disk does, without a restart. Until the reopen succeeds (the failed database's last
/// transactions must end first), beginning a transaction is a temporary failure.
pub struct EmbeddedEngine {
    current: Mutex<Current>,
    open: Opener,
    path: PathBuf,
}

/// How the database is opened, first and again after a failure.
type Opener = Box<dyn Fn() -> std::result::Result<Database, redb::DatabaseError> + Send + Sync>;

/// The open database, if any, and which opening it is.
struct Current {
    database: Option<Arc<Database>>,
    generation: u64,
    failed: bool,
}

impl std::fmt::Debug for EmbeddedEngine {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("EmbeddedEngine")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// redb's page cache. Its default (1 GiB) made a 100,000-message benchmark peak at 1.3 GiB of
/// RSS; the hot data of a mail store (records, promoted keys) is far smaller than the blobs.
pub const CACHE_SIZE_MAX_BYTES: usize = 64 * 1024 * 1024;

impl EmbeddedEngine {
    /// Opens the store in `dir`, creating the directory and an empty store when missing.
    ///
    /// After a crash, redb repairs the file here (it walks the whole file, so this can take a
    /// while on a large store); every transaction whose commit returned is kept.
    pub fn open(dir: &Path) -> Result<EmbeddedEngine> {
        create_private_dir(dir)?;
        let path = dir.join(STORE_FILE_NAME);
        let file = path.clone();
        let engine = EmbeddedEngine::open_with(
            path.clone(),
            Box::new(move || {
                Database::builder()
                    .set_cache_size(CACHE_SIZE_MAX_BYTES)
                    .create(&file)
            }),
        )?;
        // redb syncs the file on commit but not the directory, and a new file whose directory
        // entry is lost in a power failure would take every committed transaction with it.
        // The parent too, in case `dir` itself was created just now.
        sync_dir(dir)?;
        if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        Ok(engine)
    }

    fn open_with(path: PathBuf, open: Opener) -> Result<EmbeddedEngine> {
        let database =
            open().map_err(|error| engine_error(&format!("opening {}", path.display()), error))?;
        Ok(EmbeddedEngine {
            current: Mutex::new(Current {
                database: Some(Arc::new(database)),
                generation: 0,
                failed: false,
            }),
            open,
            path,
        })
    }

    fn current(&self) -> Result<MutexGuard<'_, Current>> {
        self.current
            .lock()
            .map_err(|_| StorageError::Unavailable("embedded store: a thread panicked".into()))
    }

    /// The database to begin a transaction on, opened again if the last one failed. The lock
    /// is held only to pick it (and to reopen), never while a transaction waits for redb.
    fn database(&self) -> Result<(Arc<Database>, u64)> {
        let mut current = self.current()?;
        if current.failed {
            // Dropped here; closed when its last transaction ends.
            current.database = None;
            current.failed = false;
            current.generation += 1;
        }
        let database = match &current.database {
            Some(database) => Arc::clone(database),
            None => {
                let database =
                    Arc::new((self.open)().map_err(|error| {
                        engine_error("opening again after an I/O failure", error)
                    })?);
                current.database = Some(Arc::clone(&database));
                database
            }
        };
        Ok((database, current.generation))
    }

    /// `generation`'s database met an I/O failure: the next transaction reopens the file.
    fn mark_failed(&self, generation: u64) {
        if let Ok(mut current) = self.current.lock() {
            if current.generation == generation {
                current.failed = true;
            }
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates `dir` (and missing parents) open to this user only: keys (addresses, mailbox names)
/// are stored in the clear even where values are ciphertext. An existing directory keeps its
/// permissions, which are the operator's choice.
fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|error| io_error(&format!("creating {}", dir.display()), &error))
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|error| io_error(&format!("syncing {}", dir.display()), &error))
}

fn io_error(action: &str, error: &io::Error) -> StorageError {
    StorageError::Unavailable(format!("embedded store: {action}: {error}"))
}

/// Sorts a redb error into temporary and permanent failure.
fn engine_error(action: &str, error: impl Into<redb::Error>) -> StorageError {
    let error: redb::Error = error.into();
    let message = format!("embedded store: {action}: {error}");
    match error {
        // The file holds something other than what this engine wrote: retrying cannot help.
        redb::Error::Corrupted(_)
        | redb::Error::TableTypeMismatch { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TableIsNotMultimap(_)
        | redb::Error::TypeDefinitionChanged { .. }
        | redb::Error::UnorderedKey => StorageError::Corrupted(message),
        // redb reports a file that is not a redb database (bad magic number) this way.
        redb::Error::Io(ref io) if io.kind() == io::ErrorKind::InvalidData => {
            StorageError::Corrupted(message)
        }
        // I/O errors, a store held open by another process, a poisoned transaction, and a file
        // in an older format (the operator can upgrade it): none means the data is wrong.
        _ => StorageError::Unavailable(message),
    }
}

/// Whether redb met an I/O failure, after which the `Database` refuses everything.
fn is_io_failure(error: &redb::Error) -> bool {
    matches!(error, redb::Error::Io(_) | redb::Error::PreviousIo)
}

/// A transaction's link back to its engine, to report an I/O failure of its database.
struct Watch<'engine> {
    engine: &'engine EmbeddedEngine,
    generation: u64,
}

impl Watch<'_> {
    fn error(&self, action: &str, error: impl Into<redb::Error>) -> StorageError {
        let error: redb::Error = error.into();
        if is_io_failure(&error) {
            self.engine.mark_failed(self.generation);
        }
        engine_error(action, error)
    }
}

/// At most [`SCAN_ROWS_MAX`], whatever the caller asked for.
fn clamp_scan_limit(limit: usize) -> usize {
    limit.min(SCAN_ROWS_MAX)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Direction {
    Ascending,
    Descending,
}

/// One scan over an open table, shared by read and write transactions.
fn scan_table<T>(
    watch: &Watch<'_>,
    table: &T,
    range: &KeyRange,
    limit: usize,
    direction: Direction,
) -> Result<Vec<Row>>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let limit = clamp_scan_limit(limit);
    if limit == 0 {
        return Ok(Vec::new());
    }
    let bounds = (
        range.start.as_ref().map(Vec::as_slice),
        range.end.as_ref().map(Vec::as_slice),
    );
    let entries = table
        .range::<&[u8]>(bounds)
        .map_err(|error| watch.error("starting a scan", error))?;
    let entries: Box<dyn Iterator<Item = _>> = match direction {
        Direction::Ascending => Box::new(entries),
        Direction::Descending => Box::new(entries.rev()),
    };
    let mut rows = Vec::new();
    for entry in entries.take(limit) {
        let (key, value) = entry.map_err(|error| watch.error("scanning", error))?;
        rows.push((key.value().to_vec(), value.value().to_vec()));
    }
    Ok(rows)
}

fn get_from_table<T>(watch: &Watch<'_>, table: &T, key: &[u8]) -> Result<Option<Vec<u8>>>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let value = table
        .get(key)
        .map_err(|error| watch.error("reading a key", error))?;
    Ok(value.map(|value| value.value().to_vec()))
}

impl Engine for EmbeddedEngine {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn begin_read(&self) -> Result<Box<dyn ReadTransaction + '_>> {
        let (database, generation) = self.database()?;
        let watch = Watch {
            engine: self,
            generation,
        };
        let transaction = database
            .begin_read()
            .map_err(|error| watch.error("starting a read transaction", error))?;
        Ok(Box::new(EmbeddedRead { transaction, watch }))
    }

    fn begin_write(&self) -> Result<Box<dyn WriteTransaction + '_>> {
        let (database, generation) = self.database()?;
        let watch = Watch {
            engine: self,
            generation,
        };
        // Blocks while another write transaction of this engine is open: redb has one writer.
        let mut transaction = database
            .begin_write()
            .map_err(|error| watch.error("starting a write transaction", error))?;
        // Immediate is redb's default; set anyway, because the interface promises that a
        // returned commit survives a crash, and that promise must not rest on a default.
        transaction
            .set_durability(Durability::Immediate)
            .map_err(|error| watch.error("setting durability", error))?;
        Ok(Box::new(EmbeddedWrite { transaction, watch }))
    }
}

struct EmbeddedRead<'engine> {
    transaction: redb::ReadTransaction,
    watch: Watch<'engine>,
}

impl EmbeddedRead<'_> {
    /// The table, or `None` when no transaction has created it yet, which reads as empty.
    fn open(
        &self,
        table: Table,
    ) -> Result<Option<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>> {
        match self.transaction.open_table(definition(table)) {
            Ok(opened) => Ok(Some(opened)),
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            Err(error) => Err(self
                .watch
                .error(&format!("opening table {}", table.name()), error)),
        }
    }

    fn scan_in(
        &self,
        table: Table,
        range: KeyRange,
        limit: usize,
        direction: Direction,
    ) -> Result<Vec<Row>> {
        match self.open(table)? {
            Some(opened) => scan_table(&self.watch, &opened, &range, limit, direction),
            None => Ok(Vec::new()),
        }
    }
}

impl ReadTransaction for EmbeddedRead<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.open(table)? {
            Some(opened) => get_from_table(&self.watch, &opened, key),
            None => Ok(None),
        }
    }

    fn scan(&self, table: Table, range: KeyRange, limit: usize) -> Result<Vec<Row>> {
        self.scan_in(table, range, limit, Direction::Ascending)
    }

    fn scan_rev(&self, table: Table, range: KeyRange, limit: usize) -> Result<Vec<Row>> {
        self.scan_in(table, range, limit, Direction::Descending)
    }
}

/// A redb write transaction. Dropping it without commit aborts it (redb does that on drop).
struct EmbeddedWrite<'engine> {
    transaction: redb::WriteTransaction,
    watch: Watch<'engine>,
}

impl EmbeddedWrite<'_> {
    /// Opens, and so creates, the table. Reads create it too: redb's write transaction has no
    /// open-if-exists, and an empty table reads exactly like a missing one.
    /// The table is closed again by each caller before returning, because redb refuses to commit
    /// while a table is open.
    fn open(&self, table: Table) -> Result<redb::Table<'_, &'static [u8], &'static [u8]>> {
        self.transaction
            .open_table(definition(table))
            .map_err(|error| {
                self.watch
                    .error(&format!("opening table {}", table.name()), error)
            })
    }

    fn scan_in(
        &self,
        table: Table,
        range: KeyRange,
        limit: usize,
        direction: Direction,
    ) -> Result<Vec<Row>> {
        let opened = self.open(table)?;
        scan_table(&self.watch, &opened, &range, limit, direction)
    }
}

impl ReadTransaction for EmbeddedWrite<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let opened = self.open(table)?;
        get_from_table(&self.watch, &opened, key)
    }

    fn scan(&self, table: Table, range: KeyRange, limit: usize) -> Result<Vec<Row>> {
        self.scan_in(table, range, limit, Direction::Ascending)
    }

    fn scan_rev(&self, table: Table, range: KeyRange, limit: usize) -> Result<Vec<Row>> {
        self.scan_in(table, range, limit, Direction::Descending)
    }
}

impl WriteTransaction for EmbeddedWrite<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<()> {
        check_key(key)?;
        check_value(value)?;
        let mut opened = self.open(table)?;
        opened
            .insert(key, value)
            .map_err(|error| self.watch.error("writing a key", error))?;
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool> {
        let mut opened = self.open(table)?;
        let removed = opened
            .remove(key)
            .map_err(|error| self.watch.error("deleting a key", error))?;
        Ok(removed.is_some())
    }

    fn commit(self: Box<Self>) -> Result<()> {
        let EmbeddedWrite { transaction, watch } = *self;
        transaction
            .commit()
            .map_err(|error| watch.error("committing", error))
    }

    fn abort(self: Box<Self>) -> Result<()> {
        let EmbeddedWrite { transaction, watch } = *self;
        transaction
            .abort()
            .map_err(|error| watch.error("aborting", error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::Bound;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// redb's file backend, whose writes and syncs fail (as on a full disk) while `failing`.
    #[derive(Debug)]
    struct FailingDisk {
        file: redb::backends::FileBackend,
        failing: Arc<AtomicBool>,
    }

    impl FailingDisk {
        fn check(&self) -> io::Result<()> {
            if self.failing.load(Ordering::SeqCst) {
                Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "disk full (test)",
                ))
            } else {
                Ok(())
            }
        }
    }

    impl redb::StorageBackend for FailingDisk {
        fn len(&self) -> io::Result<u64> {
            self.file.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
            self.file.read(offset, out)
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.check()?;
            self.file.set_len(len)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.check()?;
            self.file.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
            self.check()?;
            self.file.write(offset, data)
        }
        fn close(&self) -> io::Result<()> {
            self.file.close()
        }
        fn try_lock_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> std::result::Result<bool, redb::BackendError> {
            self.file.try_lock_range(start, end)
        }
        fn try_lock_shared_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> std::result::Result<bool, redb::BackendError> {
            self.file.try_lock_shared_range(start, end)
        }
        fn lock_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> std::result::Result<(), redb::BackendError> {
            self.file.lock_range(start, end)
        }
        fn lock_shared_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> std::result::Result<(), redb::BackendError> {
            self.file.lock_shared_range(start, end)
        }
        fn unlock_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> std::result::Result<(), redb::BackendError> {
            self.file.unlock_range(start, end)
        }
        fn query_lock_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> std::result::Result<bool, redb::BackendError> {
            self.file.query_lock_range(start, end)
        }
    }

    fn put(engine: &EmbeddedEngine, key: &[u8]) -> Result<()> {
        let mut tx = engine.begin_write()?;
        tx.put(TABLE, key, b"value")?;
        tx.commit()
    }

    #[test]
    fn the_store_works_again_once_a_failed_disk_does() {
        let dir = temporary_dir();
        let path = dir.path().join(STORE_FILE_NAME);
        let failing = Arc::new(AtomicBool::new(false));
        let (file, disk) = (path.clone(), Arc::clone(&failing));
        let engine = EmbeddedEngine::open_with(
            path,
            Box::new(move || {
                let handle = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&file)?;
                Database::builder().create_with_backend(FailingDisk {
                    file: redb::backends::FileBackend::new(handle)?,
                    failing: Arc::clone(&disk),
                })
            }),
        )
        .expect("open");
        put(&engine, b"before").expect("a healthy commit");

        failing.store(true, Ordering::SeqCst);
        let error = put(&engine, b"lost").expect_err("the disk is full");
        assert!(error.is_temporary(), "{error}");
        let again = put(&engine, b"still full").expect_err("still full");
        assert!(again.is_temporary(), "{again}");

        // Space again: the next transactions work without a new engine, and nothing that was
        // committed is gone.
        failing.store(false, Ordering::SeqCst);
        put(&engine, b"after").expect("a commit after the disk recovered");
        let tx = engine.begin_read().expect("read");
        assert!(tx.get(TABLE, b"before").expect("get").is_some());
        assert!(tx.get(TABLE, b"after").expect("get").is_some());
        assert!(tx.get(TABLE, b"lost").expect("get").is_none());
        assert!(tx.get(TABLE, b"still full").expect("get").is_none());
    }

    const TABLE: Table = Table::new("embedded_test");

    fn temporary_dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("temporary directory")
    }

    #[test]
    fn open_creates_missing_directories_private() {
        let parent = temporary_dir();
        let dir = parent.path().join("a").join("b");
        let engine = EmbeddedEngine::open(&dir).expect("open");
        assert_eq!(engine.name(), "embedded");
        assert_eq!(engine.path(), dir.join(STORE_FILE_NAME));
        assert!(engine.path().is_file());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&dir).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o077, 0, "mode {mode:o} lets others in");
        }
    }

    #[test]
    fn second_open_of_an_open_store_is_temporary_failure() {
        let dir = temporary_dir();
        let _engine = EmbeddedEngine::open(dir.path()).expect("open");
        match EmbeddedEngine::open(dir.path()) {
            Err(error @ StorageError::Unavailable(_)) => assert!(error.is_temporary()),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[test]
    fn a_file_that_is_not_a_store_is_corrupted() {
        let dir = temporary_dir();
        fs::write(dir.path().join(STORE_FILE_NAME), vec![0x55; 8192]).expect("write");
        match EmbeddedEngine::open(dir.path()) {
            Err(error @ StorageError::Corrupted(_)) => assert!(!error.is_temporary()),
            other => panic!("expected Corrupted, got {other:?}"),
        }
    }

    #[test]
    fn a_table_of_other_types_is_corrupted() {
        let dir = temporary_dir();
        {
            let database = Database::create(dir.path().join(STORE_FILE_NAME)).expect("create");
            let transaction = database.begin_write().expect("begin write");
            {
                let definition: TableDefinition<u64, u64> = TableDefinition::new(TABLE.name());
                let mut table = transaction.open_table(definition).expect("open table");
                table.insert(1, 2).expect("insert");
            }
            transaction.commit().expect("commit");
        }
        let engine = EmbeddedEngine::open(dir.path()).expect("open");
        let reader = engine.begin_read().expect("begin read");
        assert!(matches!(
            reader.get(TABLE, b"key"),
            Err(StorageError::Corrupted(_))
        ));
        drop(reader);
        let mut writer = engine.begin_write().expect("begin write");
        assert!(matches!(
            writer.put(TABLE, b"key", b"value"),
            Err(StorageError::Corrupted(_))
        ));
    }

    #[test]
    fn redb_errors_sort_into_temporary_and_permanent() {
        let corrupted = engine_error("test", redb::Error::Corrupted("bad page".into()));
        assert!(matches!(corrupted, StorageError::Corrupted(ref message)
            if message.contains("test") && message.contains("bad page")));
        assert!(matches!(
            engine_error("test", redb::Error::Io(io::Error::other("disk gone"))),
            StorageError::Unavailable(_)
        ));
        assert!(matches!(
            engine_error(
                "test",
                redb::Error::Io(io::Error::new(io::ErrorKind::InvalidData, "magic"))
            ),
            StorageError::Corrupted(_)
        ));
        assert!(matches!(
            engine_error("test", redb::Error::DatabaseAlreadyOpen),
            StorageError::Unavailable(_)
        ));
        assert!(matches!(
            engine_error("test", redb::Error::PreviousIo),
            StorageError::Unavailable(_)
        ));
    }

    #[test]
    fn scan_limit_is_clamped() {
        assert_eq!(clamp_scan_limit(0), 0);
        assert_eq!(clamp_scan_limit(7), 7);
        assert_eq!(clamp_scan_limit(SCAN_ROWS_MAX), SCAN_ROWS_MAX);
        assert_eq!(clamp_scan_limit(usize::MAX), SCAN_ROWS_MAX);
    }

    #[test]
    fn read_of_a_missing_table_does_not_create_it() {
        let dir = temporary_dir();
        let engine = EmbeddedEngine::open(dir.path()).expect("open");
        let reader = engine.begin_read().expect("begin read");
        assert_eq!(reader.get(TABLE, b"key").expect("get"), None);
        drop(reader);
        let transaction = engine
            .database()
            .expect("database")
            .0
            .begin_read()
            .expect("begin read");
        assert_eq!(transaction.list_tables().expect("list tables").count(), 0);
    }
}
