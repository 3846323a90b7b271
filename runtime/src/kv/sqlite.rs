//! The embedded backend: one SQLite file in WAL mode, so several canto
//! processes on one machine may share it. Each store owns one connection
//! on its own thread; calls queue to it, which serialises writes as SQLite
//! does anyway and keeps tokio's blocking pool for WASI's files.
//!
//! The thread commits in groups: the calls waiting when it wakes run in one
//! `BEGIN IMMEDIATE` transaction, each in a savepoint of its own (so one
//! call's error undoes only its own writes), and each is answered once the
//! group is committed. Under load that is one commit for many increments.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::{MAX_KEYS_PER_CALL, StoreError, parse_counter};

/// One module's call waiting for the store's thread.
trait Call: Send {
    /// Whether its caller gave up waiting (timed out): then it is not run.
    fn abandoned(&self) -> bool;
    /// Runs it inside the group's transaction; whether it succeeded.
    fn run(&mut self, connection: &Connection) -> bool;
    /// Answers its caller: its own result once the group is committed
    /// (`None`), else why the group was not.
    fn answer(self: Box<Self>, not_committed: Option<&str>);
}

struct Pending<T, F> {
    work: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Call for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn run(&mut self, connection: &Connection) -> bool {
        let Some(work) = self.work.take() else { return false };
        let result = work(connection);
        let succeeded = result.is_ok();
        self.result = Some(result);
        succeeded
    }

    fn answer(self: Box<Self>, not_committed: Option<&str>) {
        let result = match (self.result, not_committed) {
            // Its own error stands; a success is void if the group was not committed.
            (Some(Err(error)), _) => Err(error),
            (Some(Ok(_)) | None, Some(why)) => Err(StoreError::Unavailable(why.to_string())),
            (Some(Ok(value)), None) => Ok(value),
            (None, None) => Err(StoreError::Unavailable("sqlite: the call was not run".into())),
        };
        let _ = self.reply.send(result);
    }
}

type Job = Box<dyn Call>;

/// Calls waiting for the store's thread; more wait in their modules.
const QUEUE: usize = 1024;
/// Calls committed together at most.
const GROUP: usize = 128;

pub(super) struct SqliteStore {
    jobs: mpsc::Sender<Job>,
}

fn backend(error: rusqlite::Error) -> StoreError {
    match error {
        rusqlite::Error::SqliteFailure(code, _)
            if matches!(code.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
        {
            StoreError::Unavailable(format!("sqlite: {error}"))
        }
        error => StoreError::Backend(format!("sqlite: {error}")),
    }
}

/// Opens (creating) the file and its table.
fn set_up(path: &Path, timeout: Duration) -> Result<Connection, String> {
    let failed = |what: &str, error: &dyn std::fmt::Display| format!("sqlite: {what} {}: {error}", path.display());
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|error| failed("cannot create the directory of", &error))?;
    }
    let connection = Connection::open(path).map_err(|error| failed("cannot open", &error))?;
    // Another process may hold the lock (or be creating the file): wait.
    connection.busy_timeout(timeout).map_err(|error| failed("cannot set up", &error))?;
    let journal: String = connection
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|error| failed("cannot set up", &error))?;
    if !journal.eq_ignore_ascii_case("wal") {
        tracing::warn!(
            "{}: WAL is not available here (journal mode {journal}): readers wait on writers",
            path.display()
        );
    }
    connection
        .execute_batch(
            "PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS canto_kv (
                 namespace TEXT NOT NULL,
                 key TEXT NOT NULL,
                 value BLOB NOT NULL,
                 PRIMARY KEY (namespace, key)
             ) WITHOUT ROWID;",
        )
        .map_err(|error| failed("cannot set up", &error))?;
    Ok(connection)
}

impl SqliteStore {
    /// Starts the store's thread, which opens (creating) the file and its
    /// table; a store that cannot be set up answers every call with why.
    /// Nothing here waits on the file, so a reload never does.
    pub fn open(path: &Path, timeout: Duration) -> Result<Self, StoreError> {
        let (jobs, mut queue) = mpsc::channel::<Job>(QUEUE);
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name(format!("canto-sqlite {}", path.display()))
            .spawn(move || {
                let connection = match set_up(&path, timeout) {
                    Ok(connection) => connection,
                    Err(why) => {
                        tracing::error!("store file {}: {why}", path.display());
                        while let Some(call) = queue.blocking_recv() {
                            call.answer(Some(&why));
                        }
                        return;
                    }
                };
                while let Some(first) = queue.blocking_recv() {
                    let mut group = vec![first];
                    while group.len() < GROUP
                        && let Ok(job) = queue.try_recv()
                    {
                        group.push(job);
                    }
                    // Calls whose modules gave up are not worth a lock.
                    group.retain(|call| !call.abandoned());
                    if group.is_empty() {
                        continue;
                    }
                    // A panic costs its group's calls (their callers hear
                    // "stopped"), not the store: the next group rolls back
                    // whatever it left open.
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_group(&connection, group)));
                    if ran.is_err() {
                        tracing::error!("store file {}: a call panicked; its group was not committed", path.display());
                    }
                }
            })
            .map_err(|error| StoreError::Unavailable(format!("sqlite: cannot start the store's thread: {error}")))?;
        Ok(Self { jobs })
    }

    /// Runs `work` on the store's thread and answers once it is committed.
    /// A call whose module gave up (timed out) before its turn is skipped.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(Pending { work: Some(work), result: None, reply });
        let stopped = || StoreError::Unavailable("the store's thread stopped".into());
        self.jobs.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    pub async fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (ns, key) = (ns.to_owned(), key.to_owned());
        self.run(move |c| read(c, &ns, &key).map_err(backend)).await
    }

    pub async fn set(&self, ns: &str, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let (ns, key) = (ns.to_owned(), key.to_owned());
        self.run(move |c| write(c, &ns, &key, &value).map_err(backend)).await
    }

    pub async fn delete(&self, ns: &str, key: &str) -> Result<(), StoreError> {
        let (ns, key) = (ns.to_owned(), key.to_owned());
        self.run(move |c| remove(c, &ns, &key).map_err(backend)).await
    }

    pub async fn exists(&self, ns: &str, key: &str) -> Result<bool, StoreError> {
        let (ns, key) = (ns.to_owned(), key.to_owned());
        self.run(move |c| {
            let mut statement =
                c.prepare_cached("SELECT 1 FROM canto_kv WHERE namespace = ?1 AND key = ?2").map_err(backend)?;
            statement.exists(params![ns, key]).map_err(backend)
        })
        .await
    }

    /// Keys in order; the cursor is the last key of the page.
    pub async fn list_keys(
        &self,
        ns: &str,
        cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        let ns = ns.to_owned();
        self.run(move |c| {
            let mut statement = c
                .prepare_cached(
                    "SELECT key FROM canto_kv WHERE namespace = ?1 AND (?2 IS NULL OR key > ?2) ORDER BY key LIMIT ?3",
                )
                .map_err(backend)?;
            let keys = statement
                .query_map(params![ns, cursor, MAX_KEYS_PER_CALL as i64], |row| row.get::<_, String>(0))
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            let next = (keys.len() == MAX_KEYS_PER_CALL).then(|| keys.last().cloned()).flatten();
            Ok((keys, next))
        })
        .await
    }

    /// Read and write in the group's `BEGIN IMMEDIATE` transaction: in WAL
    /// mode a deferred one that reads first cannot be retried when another
    /// process wrote in between.
    pub async fn increment(&self, ns: &str, key: &str, delta: i64) -> Result<i64, StoreError> {
        let (ns, key) = (ns.to_owned(), key.to_owned());
        self.run(move |c| {
            let current = match read(c, &ns, &key).map_err(backend)? {
                Some(value) => parse_counter(&key, &value)?,
                None => 0,
            };
            let next = current
                .checked_add(delta)
                .ok_or_else(|| StoreError::NotANumber(format!("incrementing '{key}' would overflow")))?;
            write(c, &ns, &key, next.to_string().as_bytes()).map_err(backend)?;
            Ok(next)
        })
        .await
    }

    pub async fn compare_and_swap(
        &self,
        ns: &str,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let (ns, key) = (ns.to_owned(), key.to_owned());
        self.run(move |c| {
            let changed = match expected {
                Some(expected) => c
                    .prepare_cached("UPDATE canto_kv SET value = ?4 WHERE namespace = ?1 AND key = ?2 AND value = ?3")
                    .and_then(|mut s| s.execute(params![ns, key, expected, value])),
                None => c
                    .prepare_cached(
                        "INSERT INTO canto_kv (namespace, key, value) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    )
                    .and_then(|mut s| s.execute(params![ns, key, value])),
            };
            Ok(changed.map_err(backend)? == 1)
        })
        .await
    }

    pub async fn get_many(&self, ns: &str, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let (ns, keys) = (ns.to_owned(), keys.to_vec());
        self.run(move |c| {
            let values = keys.iter().map(|key| read(c, &ns, key).map_err(backend)).collect::<Result<Vec<_>, _>>()?;
            super::within_batch_budget(values.iter().flatten().map(Vec::len))?;
            Ok(values)
        })
        .await
    }

    /// All or none (the call's savepoint).
    pub async fn set_many(&self, ns: &str, pairs: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        let ns = ns.to_owned();
        self.run(move |c| pairs.iter().try_for_each(|(key, value)| write(c, &ns, key, value).map_err(backend))).await
    }

    pub async fn delete_many(&self, ns: &str, keys: &[String]) -> Result<(), StoreError> {
        let (ns, keys) = (ns.to_owned(), keys.to_vec());
        self.run(move |c| keys.iter().try_for_each(|key| remove(c, &ns, key).map_err(backend))).await
    }
}

/// Runs a group of calls in one transaction, each in its own savepoint,
/// then answers them all. If SQLite rolls the whole transaction back (a
/// full disk, say), the calls left are not run and none is committed.
fn run_group(c: &Connection, group: Vec<Job>) {
    // A transaction left open by a failed ROLLBACK would block every BEGIN.
    if !c.is_autocommit() {
        let _ = c.execute_batch("ROLLBACK");
    }
    if let Err(error) = c.execute_batch("BEGIN IMMEDIATE") {
        let why = format!("sqlite: {error}");
        group.into_iter().for_each(|call| call.answer(Some(&why)));
        return;
    }
    let mut ran = Vec::with_capacity(group.len());
    let mut lost: Option<String> = None;
    for mut call in group {
        if lost.is_some() || call.abandoned() {
            ran.push(call);
            continue;
        }
        if let Err(error) = c.execute_batch("SAVEPOINT call") {
            lost = Some(format!("sqlite: {error}"));
            ran.push(call);
            continue;
        }
        let succeeded = call.run(c);
        let end = if succeeded { "RELEASE call" } else { "ROLLBACK TO call; RELEASE call" };
        if let Err(error) = c.execute_batch(end) {
            lost = Some(format!("sqlite: {error}"));
        } else if c.is_autocommit() {
            lost = Some("sqlite: the transaction was rolled back".into());
        }
        ran.push(call);
    }
    let not_committed = match lost {
        Some(why) => Some(why),
        None => c.execute_batch("COMMIT").err().map(|error| format!("sqlite: {error}")),
    };
    if not_committed.is_some() && !c.is_autocommit() {
        let _ = c.execute_batch("ROLLBACK");
    }
    ran.into_iter().for_each(|call| call.answer(not_committed.as_deref()));
}

fn read(c: &Connection, ns: &str, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    c.prepare_cached("SELECT value FROM canto_kv WHERE namespace = ?1 AND key = ?2")?
        .query_row(params![ns, key], |row| row.get(0))
        .optional()
}

fn write(c: &Connection, ns: &str, key: &str, value: &[u8]) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO canto_kv (namespace, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![ns, key, value])
    .map(drop)
}

fn remove(c: &Connection, ns: &str, key: &str) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM canto_kv WHERE namespace = ?1 AND key = ?2")?.execute(params![ns, key]).map(drop)
}
