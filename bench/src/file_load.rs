//! Upload and download load for the file-share benchmark: a fixed amount of
//! work timed end to end, as MiB/s (wrk runs for a time, but every upload
//! needs a slot of its own).
//!
//! - `file-load put <slots.json> <bytes> <connections>`: one PUT of `bytes`
//!   bytes per slot; `slots.json` is `[{"url": ..., "headers": {...}}]`.
//! - `file-load get <url> <count> <connections>`: `count` GETs of `url`.
//!
//! Prints `requests <n> errors <n> seconds <s> mib_s <x>`, and the first
//! failure, if any, on stderr. Plain HTTP/1.1 over keep-alive connections,
//! written by hand: bodies are counted, never kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

struct Request {
    authority: String,
    head: String,
}

/// Splits `http://authority/path` and writes the request head for it.
fn request(method: &str, url: &str, headers: &[(String, String)], length: Option<usize>) -> Result<Request, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("not an http:// URL: {url}"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(length) = length {
        head.push_str(&format!("Content-Length: {length}\r\n"));
    }
    head.push_str("\r\n");
    // The host names the virtual host; every server here listens on loopback.
    let port = authority.rsplit_once(':').map_or("80", |(_, port)| port);
    Ok(Request { authority: format!("127.0.0.1:{port}"), head })
}

/// One exchange on `connection` (opened again if the server closed it);
/// returns the status and the response body's length.
async fn exchange(connection: &mut Option<TcpStream>, request: &Request, body: &[u8]) -> Result<(u16, u64), String> {
    if connection.is_none() {
        let stream = TcpStream::connect(&request.authority).await.map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        *connection = Some(stream);
    }
    let Some(stream) = connection.as_mut() else { unreachable!() };
    stream.write_all(request.head.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    stream.write_all(body).await.map_err(|e| format!("write body: {e}"))?;
    let mut buffer = vec![0u8; 256 * 1024];
    let mut filled = 0;
    let end = loop {
        let n = stream.read(&mut buffer[filled..]).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before the response".into());
        }
        filled += n;
        if let Some(end) = buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if filled == buffer.len() {
            return Err("response head too large".into());
        }
    };
    let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).ok_or("no status line")?;
    let header = |name: &str| {
        head.lines().find_map(|line| line.strip_prefix(name).and_then(|v| v.strip_prefix(':')).map(str::trim))
    };
    if header("transfer-encoding").is_some() {
        return Err("chunked responses are not counted".into());
    }
    let length: u64 = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut left = length.saturating_sub((filled - end) as u64);
    while left > 0 {
        let n = stream.read(&mut buffer).await.map_err(|e| format!("read body: {e}"))?;
        if n == 0 {
            return Err("connection closed mid-body".into());
        }
        left = left.saturating_sub(n as u64);
    }
    if header("connection") == Some("close") {
        *connection = None;
    }
    Ok((status, length))
}

/// Runs `requests` over `connections` workers; each request's bytes moved
/// (the upload's body, or the download's) add up to the MiB/s.
async fn run(requests: Vec<Request>, body: Vec<u8>, connections: usize) {
    let (requests, body) = (Arc::new(requests), Arc::new(body));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (requests, body, next) = (requests.clone(), body.clone(), next.clone());
            tokio::spawn(async move {
                let (mut connection, mut moved, mut errors) = (None, 0u64, 0usize);
                while let Some(request) = requests.get(next.fetch_add(1, Ordering::Relaxed)) {
                    match exchange(&mut connection, request, &body).await {
                        Ok((status, length)) if (200..300).contains(&status) => moved += body.len() as u64 + length,
                        outcome => {
                            if errors == 0 {
                                eprintln!("file-load: {}: {outcome:?}", request.head.lines().next().unwrap_or(""));
                            }
                            errors += 1;
                            connection = None;
                        }
                    }
                }
                (moved, errors)
            })
        })
        .collect();
    let (mut moved, mut errors) = (0, 0);
    for worker in workers {
        let (m, e) = worker.await.unwrap_or((0, 1));
        moved += m;
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    let mib_s = moved as f64 / (1 << 20) as f64 / seconds;
    println!("requests {} errors {errors} seconds {seconds:.3} mib_s {mib_s:.1}", requests.len());
}

type Headers = Vec<(String, String)>;

/// `[{"url": "...", "headers": {"name": "value"}}]`, as bench/suite.py writes it.
fn slots(text: &str) -> Result<Vec<(String, Headers)>, String> {
    let slots: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|e| format!("slots: {e}"))?;
    slots
        .iter()
        .map(|slot| {
            let url = slot["url"].as_str().ok_or("a slot without a url")?.to_string();
            let headers = slot["headers"].as_object().map_or(Vec::new(), |headers| {
                headers.iter().map(|(name, value)| (name.clone(), value.as_str().unwrap_or("").to_string())).collect()
            });
            Ok((url, headers))
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize| args.get(i).and_then(|s| s.parse::<usize>().ok()).ok_or("usage: see the module doc");
    match args.first().map(String::as_str) {
        Some("put") => {
            let text = std::fs::read_to_string(args.get(1).ok_or("slots file")?).map_err(|e| e.to_string())?;
            let size = number(2)?;
            let requests = slots(&text)?
                .iter()
                .map(|(url, headers)| request("PUT", url, headers, Some(size)))
                .collect::<Result<_, _>>()?;
            let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            run(requests, body, number(3)?).await;
        }
        Some("get") => {
            let url = args.get(1).ok_or("url")?;
            let requests = (0..number(2)?).map(|_| request("GET", url, &[], None)).collect::<Result<_, _>>()?;
            run(requests, Vec::new(), number(3)?).await;
        }
        _ => {
            return Err(
                "usage: file-load put <slots.json> <bytes> <connections> | get <url> <count> <connections>".into()
            );
        }
    }
    Ok(())
}
