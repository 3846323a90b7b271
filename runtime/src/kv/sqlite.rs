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

/// A call, run inside its group's transaction: whether it succeeded, and
/// how to answer its caller once the group is committed (`None`) or not
/// (why). Given `Err` when the group could not begin.
type Job = Box<dyn FnOnce(Result<&Connection, &str>) -> (bool, Answer) + Send>;
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

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

impl SqliteStore {
    /// Opens (creating) the file and its table, then starts the thread.
    pub fn open(path: &Path, timeout: Duration) -> Result<Self, StoreError> {
        let unavailable = |what: &str, error: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!("{what} {}: {error}", path.display()))
        };
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|error| unavailable("cannot create the directory of", &error))?;
        }
        let connection = Connection::open(path).map_err(|error| unavailable("cannot open", &error))?;
        // Another process may be creating the same file: wait for its lock.
        connection.busy_timeout(timeout).map_err(backend)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 CREATE TABLE IF NOT EXISTS canto_kv (
                     namespace TEXT NOT NULL,
                     key TEXT NOT NULL,
                     value BLOB NOT NULL,
                     PRIMARY KEY (namespace, key)
                 ) WITHOUT ROWID;",
            )
            .map_err(|error| unavailable("cannot set up", &error))?;
        let (jobs, mut queue) = mpsc::channel::<Job>(QUEUE);
        let name = format!("canto-sqlite {}", path.display());
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                while let Some(first) = queue.blocking_recv() {
                    let mut group = vec![first];
                    while group.len() < GROUP
                        && let Ok(job) = queue.try_recv()
                    {
                        group.push(job);
                    }
                    run_group(&connection, group);
                }
            })
            .map_err(|error| unavailable("cannot start the thread for", &error))?;
        Ok(Self { jobs })
    }

    /// Runs `work` on the store's thread and answers once it is committed.
    /// A call whose module gave up (timed out) before its turn is skipped.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |connection| {
            let result = match connection {
                Ok(_) if reply.is_closed() => None,
                Ok(connection) => Some(work(connection)),
                Err(why) => Some(Err(StoreError::Unavailable(why.to_string()))),
            };
            let succeeded = result.as_ref().is_some_and(Result::is_ok);
            let answer: Answer = Box::new(move |not_committed| {
                let result = match (result, not_committed) {
                    (None, _) => return,
                    (Some(Ok(_)), Some(why)) => Err(StoreError::Unavailable(why.to_string())),
                    (Some(result), _) => result,
                };
                let _ = reply.send(result);
            });
            (succeeded, answer)
        });
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
                .prepare_cached("SELECT key FROM canto_kv WHERE namespace = ?1 AND key > ?2 ORDER BY key LIMIT ?3")
                .map_err(backend)?;
            let after = cursor.unwrap_or_default();
            let keys = statement
                .query_map(params![ns, after, MAX_KEYS_PER_CALL as i64], |row| row.get::<_, String>(0))
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
        self.run(move |c| keys.iter().map(|key| read(c, &ns, key).map_err(backend)).collect()).await
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
/// then answers them all.
fn run_group(c: &Connection, group: Vec<Job>) {
    if let Err(error) = c.execute_batch("BEGIN IMMEDIATE") {
        let why = format!("sqlite: {error}");
        for job in group {
            let (_, answer) = job(Err(&why));
            answer(Some(&why));
        }
        return;
    }
    let mut answers = Vec::with_capacity(group.len());
    for job in group {
        let savepoint = c.execute_batch("SAVEPOINT call");
        let (succeeded, answer) = job(savepoint.as_ref().map(|_| c).map_err(|_| "sqlite: cannot make a savepoint"));
        let end = if succeeded { "RELEASE call" } else { "ROLLBACK TO call; RELEASE call" };
        if savepoint.is_ok() {
            let _ = c.execute_batch(end);
        }
        answers.push(answer);
    }
    let not_committed = c.execute_batch("COMMIT").err().map(|error| {
        let _ = c.execute_batch("ROLLBACK");
        format!("sqlite: {error}")
    });
    for answer in answers {
        answer(not_committed.as_deref());
    }
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
