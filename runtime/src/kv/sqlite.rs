//! The embedded backend: one SQLite file in WAL mode, so several canto
//! processes on one machine may share it. Each store owns one connection
//! on its own thread; calls queue to it, which serialises writes as SQLite
//! does anyway and keeps tokio's blocking pool for WASI's files.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::{MAX_KEYS_PER_CALL, StoreError, parse_counter};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Calls waiting for the store's thread; more wait in their modules.
const QUEUE: usize = 1024;

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
                let mut connection = connection;
                while let Some(job) = queue.blocking_recv() {
                    job(&mut connection);
                }
            })
            .map_err(|error| unavailable("cannot start the thread for", &error))?;
        Ok(Self { jobs })
    }

    /// Runs `work` on the store's thread. A call whose module gave up
    /// (timed out) before its turn is skipped.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |connection| {
            if !reply.is_closed() {
                let _ = reply.send(work(connection));
            }
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

    /// Read and write in one `BEGIN IMMEDIATE` transaction: in WAL mode a
    /// deferred one that reads first cannot be retried when another
    /// process wrote in between.
    pub async fn increment(&self, ns: &str, key: &str, delta: i64) -> Result<i64, StoreError> {
        let (ns, key) = (ns.to_owned(), key.to_owned());
        self.run(move |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let current = match read(&transaction, &ns, &key).map_err(backend)? {
                Some(value) => parse_counter(&key, &value)?,
                None => 0,
            };
            let next = current
                .checked_add(delta)
                .ok_or_else(|| StoreError::NotANumber(format!("incrementing '{key}' would overflow")))?;
            write(&transaction, &ns, &key, next.to_string().as_bytes()).map_err(backend)?;
            transaction.commit().map_err(backend)?;
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

    /// All in one transaction.
    pub async fn set_many(&self, ns: &str, pairs: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        let ns = ns.to_owned();
        self.run(move |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            for (key, value) in &pairs {
                write(&transaction, &ns, key, value).map_err(backend)?;
            }
            transaction.commit().map_err(backend)
        })
        .await
    }

    pub async fn delete_many(&self, ns: &str, keys: &[String]) -> Result<(), StoreError> {
        let (ns, keys) = (ns.to_owned(), keys.to_vec());
        self.run(move |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            for key in &keys {
                remove(&transaction, &ns, key).map_err(backend)?;
            }
            transaction.commit().map_err(backend)
        })
        .await
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
