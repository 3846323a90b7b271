//! WebSocket load for the benchmarks (Python's clients would be the
//! bottleneck, not the servers).
//!
//! - `ws-load idle <url> <count>`: opens `count` connections, prints
//!   `open <count>`, holds them until stdin closes.
//! - `ws-load echo <url> <connections> <seconds>`: each connection sends a
//!   32-byte text message and waits for it to come back, again and again;
//!   prints `messages <n> rate <per second> p50_ms <x> p99_ms <y>`.
//!
//! Raises its own open-file limit to the hard limit first.

use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use tokio::io::AsyncReadExt as _;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn open(url: &str) -> Result<Socket, String> {
    // `localhost` in the URL names the virtual host; connect over IPv4, where the servers listen.
    let authority =
        url.trim_start_matches("ws://").split('/').next().unwrap_or_default().replace("localhost", "127.0.0.1");
    let stream = tokio::net::TcpStream::connect(&authority).await.map_err(|e| format!("connect {authority}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (socket, _) = tokio_tungstenite::client_async(url, stream).await.map_err(|e| format!("handshake: {e}"))?;
    Ok(socket)
}

fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, limit);
}

async fn idle(url: &str, count: usize) -> Result<(), String> {
    let mut sockets = Vec::with_capacity(count);
    // A few at a time: the servers' accept queues are finite.
    for chunk in (0..count).collect::<Vec<_>>().chunks(200) {
        let opened = futures::future::join_all(chunk.iter().map(|_| open(url))).await;
        for socket in opened {
            sockets.push(socket?);
        }
    }
    println!("open {}", sockets.len());
    // Held until the benchmark closes stdin.
    let mut rest = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut rest).await;
    drop(sockets);
    Ok(())
}

async fn echo(url: &str, connections: usize, seconds: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let workers = (0..connections).map(|_| async {
        let mut socket = open(url).await?;
        let payload = "x".repeat(32);
        let mut latencies = Vec::new();
        while Instant::now() < deadline {
            let sent = Instant::now();
            socket.send(Message::text(payload.clone())).await.map_err(|e| format!("send: {e}"))?;
            loop {
                match socket.next().await {
                    Some(Ok(Message::Text(text))) if text.len() == payload.len() => break,
                    Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                        return Err("a different message came back".into());
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(format!("receive: {e}")),
                    None => return Err("closed".into()),
                }
            }
            latencies.push(sent.elapsed());
        }
        let _ = socket.close(None).await;
        Ok::<_, String>(latencies)
    });
    let started = Instant::now();
    let mut all = Vec::new();
    for result in futures::future::join_all(workers).await {
        all.extend(result?);
    }
    let took = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let at = |q: f64| all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1))).copied();
    let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    println!(
        "messages {} rate {:.0} p50_ms {:.3} p99_ms {:.3}",
        all.len(),
        all.len() as f64 / took,
        ms(at(0.5)),
        ms(at(0.99))
    );
    Ok(())
}

#[tokio::main]
async fn main() {
    raise_fd_limit();
    let args: Vec<String> = std::env::args().collect();
    let number = |i: usize| args.get(i).and_then(|n| n.parse::<u64>().ok());
    let outcome = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("idle"), Some(url)) => idle(url, number(3).unwrap_or(1000) as usize).await,
        (Some("echo"), Some(url)) => echo(url, number(3).unwrap_or(1) as usize, number(4).unwrap_or(10)).await,
        _ => Err("usage: ws-load idle <url> <count> | ws-load echo <url> <connections> <seconds>".into()),
    };
    if let Err(error) = outcome {
        eprintln!("ws-load: {error}");
        std::process::exit(1);
    }
}
