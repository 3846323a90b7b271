//! The baseline for canto's counter benchmark: a plain hyper 1 server that
//! answers `POST /counter/n/<key>` as `http_counter` with a Redis store
//! does (`INCRBY key 1`, the new value as text/plain), with no wasm in
//! between. It reaches Redis as canto's Redis store does: the same `redis`
//! crate and features, one ConnectionManager (a multiplexed connection
//! every request shares) with the store's default timeouts and retries.
//!
//! Usage: `native-counter <port> <redis-url>`; prints `listening on <addr>`.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// canto's per-call store timeout (`http_stores.<name>.timeout`, default 2 s).
const TIMEOUT: Duration = Duration::from_secs(2);

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

async fn count(
    request: Request<hyper::body::Incoming>,
    mut redis: ConnectionManager,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(key) = request.uri().path().strip_prefix("/counter/n/").filter(|key| !key.is_empty()) else {
        return Ok(text(StatusCode::NOT_FOUND, "not found\n".into()));
    };
    if request.method() != Method::POST {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n".into()));
    }
    let key = format!("native:{key}");
    let counted: redis::RedisResult<i64> = redis::cmd("INCRBY").arg(&key).arg(1).query_async(&mut redis).await;
    Ok(match counted {
        Ok(value) => text(StatusCode::OK, format!("{value}\n")),
        Err(error) => text(StatusCode::SERVICE_UNAVAILABLE, format!("store: redis: {error}\n")),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let url = args.next().unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1));
    // Connected before listening, so a benchmark that waits for the port
    // finds Redis reachable.
    let redis = ConnectionManager::new_with_config(redis::Client::open(url.as_str())?, config).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let redis = redis.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| count(request, redis.clone()));
            let _ = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
