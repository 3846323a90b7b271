//! The shared backend: a Redis server every canto node reaches. One
//! multiplexed connection per store (redis-rs's ConnectionManager), which
//! reconnects after Redis went away; until then a refused connection fails
//! a call at once, and a Redis that does not answer fails it after the
//! store's timeout. TCP keepalive and `TCP_USER_TIMEOUT` notice a Redis
//! host that vanished without closing the connection.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};

use super::{MAX_KEYS_PER_CALL, StoreError};

/// Compare-and-swap in one round trip: ARGV[1] says whether the key was
/// present when read (ARGV[2] its value then).
const SWAP: &str = r"
local current = redis.call('GET', KEYS[1])
if (ARGV[1] == '1' and current == ARGV[2]) or (ARGV[1] == '0' and not current) then
  redis.call('SET', KEYS[1], ARGV[3])
  return 1
end
return 0";

pub(super) struct RedisStore {
    connection: ConnectionManager,
    /// `prefix` from the config; each namespace is under it.
    prefix: String,
    swap: Script,
}

fn failed(error: redis::RedisError) -> StoreError {
    let lost =
        error.is_io_error() || error.is_connection_refusal() || error.is_timeout() || error.is_connection_dropped();
    // Loading its data, a replica, a primary gone, a slot moving: Redis is
    // there but cannot serve now, as when it is down.
    let not_now = matches!(error.code(), Some("LOADING" | "READONLY" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN"));
    let text = error.to_string();
    if lost || not_now {
        StoreError::Unavailable(format!("redis: {text}"))
    } else if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError)
        && (text.contains("not an integer") || text.contains("overflow"))
    {
        // As SQLite answers: the value is no counter, or would overflow.
        StoreError::NotANumber(format!("redis: {text}"))
    } else {
        StoreError::Backend(format!("redis: {text}"))
    }
}

/// A SCAN pattern matching `text` literally.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

impl RedisStore {
    /// Connects on first use, so canto starts while Redis is down.
    pub fn open(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        use redis::IntoConnectionInfo;
        let tcp = redis::io::tcp::TcpSettings::default()
            .set_nodelay(true)
            .set_keepalive(socket2::TcpKeepalive::new().with_time(Duration::from_secs(10)))
            .set_user_timeout(timeout * 2);
        let info = url.into_connection_info().map_err(failed)?.set_tcp_settings(tcp);
        let client = redis::Client::open(info).map_err(failed)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout.mul_f64(0.9)))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let connection = ConnectionManager::new_lazy_with_config(client, config).map_err(failed)?;
        Ok(Self { connection, prefix: prefix.to_string(), swap: Script::new(SWAP) })
    }

    fn key(&self, ns: &str, key: &str) -> String {
        format!("{}{ns}{key}", self.prefix)
    }

    async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, StoreError> {
        command.query_async(&mut self.connection.clone()).await.map_err(failed)
    }

    pub async fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.query(redis::cmd("GET").arg(self.key(ns, key))).await
    }

    pub async fn set(&self, ns: &str, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.query(redis::cmd("SET").arg(self.key(ns, key)).arg(value)).await
    }

    pub async fn delete(&self, ns: &str, key: &str) -> Result<(), StoreError> {
        self.query::<i64>(redis::cmd("DEL").arg(self.key(ns, key))).await.map(drop)
    }

    pub async fn exists(&self, ns: &str, key: &str) -> Result<bool, StoreError> {
        self.query(redis::cmd("EXISTS").arg(self.key(ns, key))).await
    }

    /// SCAN's own cursor; a page may come back empty before the end.
    pub async fn list_keys(
        &self,
        ns: &str,
        cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        // A cursor is what the last page gave: a number; anything else is
        // the module's mistake, not the store's.
        if let Some(cursor) = &cursor
            && cursor.parse::<u64>().is_err()
        {
            return Err(StoreError::Limit(format!("'{cursor}' is not a cursor this store gave")));
        }
        let full_prefix = self.key(ns, "");
        let pattern = format!("{}*", glob_escape(&full_prefix));
        let command = redis::cmd("SCAN")
            .arg(cursor.as_deref().unwrap_or("0"))
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(MAX_KEYS_PER_CALL)
            .to_owned();
        let (next, keys): (String, Vec<String>) = self.query(&command).await?;
        let keys = keys.into_iter().filter_map(|key| key.strip_prefix(&full_prefix).map(str::to_owned)).collect();
        Ok((keys, (next != "0").then_some(next)))
    }

    pub async fn increment(&self, ns: &str, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.query(redis::cmd("INCRBY").arg(self.key(ns, key)).arg(delta)).await
    }

    pub async fn compare_and_swap(
        &self,
        ns: &str,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let mut invocation = self.swap.key(self.key(ns, key));
        match expected {
            Some(expected) => invocation.arg("1").arg(expected),
            None => invocation.arg("0").arg(""),
        };
        let swapped: i64 = invocation.arg(value).invoke_async(&mut self.connection.clone()).await.map_err(failed)?;
        Ok(swapped == 1)
    }

    pub async fn get_many(&self, ns: &str, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut command = redis::cmd("MGET");
        for key in keys {
            command.arg(self.key(ns, key));
        }
        let values: Vec<Option<Vec<u8>>> = self.query(&command).await?;
        super::within_batch_budget(values.iter().flatten().map(Vec::len))?;
        Ok(values)
    }

    pub async fn set_many(&self, ns: &str, pairs: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut command = redis::cmd("MSET");
        for (key, value) in pairs {
            command.arg(self.key(ns, &key)).arg(value);
        }
        self.query::<Value>(&command).await.map(drop)
    }

    pub async fn delete_many(&self, ns: &str, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut command = redis::cmd("DEL");
        for key in keys {
            command.arg(self.key(ns, key));
        }
        self.query::<i64>(&command).await.map(drop)
    }
}
