//! Every open WebSocket connection of the server, by host and module (a
//! module reaches only its own): each one's send queue and the state its
//! module keeps between events. Survives reloads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};

use super::bindings::imports::canto::http::websocket::{ConnectionInfo, Message};

/// Messages queued to one connection before its reader counts as too slow.
pub const SEND_QUEUE: usize = 64;
/// Bytes queued to one connection before its reader counts as too slow
/// (a module cannot make the server buffer without bound).
pub const SEND_QUEUE_BYTES: usize = 4 << 20;
/// Bytes of state a module may keep per connection: room for an unfinished
/// stanza as large as Prosody allows a WebSocket frame (512 KiB).
pub const MAX_STATE_BYTES: usize = 512 * 1024;

/// What the server is asked to do with a connection.
#[derive(Debug)]
pub enum Outgoing {
    Message(Message),
    Close(u16, String),
}

/// The connections one module has on one host: (host, module).
pub type Room = (Arc<str>, Arc<str>);

/// One open connection, as the registry keeps it.
#[derive(Clone)]
pub struct Peer {
    pub outbox: mpsc::Sender<Outgoing>,
    pub state: Arc<Mutex<Vec<u8>>>,
    /// Bytes of messages in `outbox`.
    queued: Arc<AtomicUsize>,
    /// Set when its send queue overflowed: the connection closes with 1008.
    pub overflowed: Arc<AtomicBool>,
    pub wake: Arc<Notify>,
    /// Events of the links the connection owns, for its socket task.
    pub link_events: mpsc::Sender<LinkEvent>,
}

impl Peer {
    pub fn new(outbox: mpsc::Sender<Outgoing>, link_events: mpsc::Sender<LinkEvent>) -> Self {
        Self {
            outbox,
            state: Arc::default(),
            queued: Arc::default(),
            overflowed: Arc::default(),
            wake: Arc::default(),
            link_events,
        }
    }

    /// A message left the queue for the socket.
    pub fn dequeued(&self, message: &Message) {
        self.queued.fetch_sub(size_of(message), Ordering::Relaxed);
    }

    fn overflow(&self) {
        self.overflowed.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }
}

fn size_of(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Binary(data) => data.len(),
    }
}

/// Every open WebSocket connection of the server; survives reloads.
#[derive(Default)]
pub struct WsRegistry {
    next_id: AtomicU64,
    rooms: Mutex<HashMap<Room, HashMap<u64, Peer>>>,
    /// Set at shutdown: every socket closes, and no new one joins.
    closing: AtomicBool,
}

impl std::fmt::Debug for WsRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = self.rooms.lock().map_or(0, |rooms| rooms.values().map(HashMap::len).sum());
        f.debug_struct("WsRegistry").field("open", &open).finish()
    }
}

impl WsRegistry {
    pub fn allocate_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Adds a connection to a room holding fewer than `limit`; `false`
    /// when it is full, or the server is shutting down.
    pub fn join(&self, room: &Room, id: u64, peer: Peer, limit: usize) -> bool {
        let Ok(mut rooms) = self.rooms.lock() else { return false };
        let peers = rooms.entry(room.clone()).or_default();
        if self.closing() || peers.len() >= limit {
            return false;
        }
        peers.insert(id, peer);
        true
    }

    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    pub fn leave(&self, room: &Room, id: u64) {
        if let Ok(mut rooms) = self.rooms.lock()
            && let Some(peers) = rooms.get_mut(room)
        {
            peers.remove(&id);
            if peers.is_empty() {
                rooms.remove(room);
            }
        }
    }

    pub fn ids(&self, room: &Room) -> Vec<u64> {
        let Ok(rooms) = self.rooms.lock() else { return Vec::new() };
        let mut ids: Vec<u64> = rooms.get(room).map(|peers| peers.keys().copied().collect()).unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    fn peer(&self, room: &Room, id: u64) -> Option<Peer> {
        self.rooms.lock().ok()?.get(room)?.get(&id).cloned()
    }

    /// Queues `outgoing` for connection `id` of `room`. A full queue marks
    /// the connection too slow (it is closed with 1008).
    pub fn send(&self, room: &Room, id: u64, outgoing: Outgoing) -> Result<(), String> {
        let peer = self.peer(room, id).ok_or_else(|| format!("no open connection {id}"))?;
        let size = match &outgoing {
            Outgoing::Message(message) => size_of(message),
            Outgoing::Close(..) => 0,
        };
        if size > SEND_QUEUE_BYTES {
            return Err(format!("a message is limited to {SEND_QUEUE_BYTES} bytes"));
        }
        if peer.queued.fetch_add(size, Ordering::Relaxed) + size > SEND_QUEUE_BYTES {
            peer.queued.fetch_sub(size, Ordering::Relaxed);
            peer.overflow();
            return Err(format!("connection {id} is not reading; it is being closed"));
        }
        match peer.outbox.try_send(outgoing) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                peer.queued.fetch_sub(size, Ordering::Relaxed);
                peer.overflow();
                Err(format!("connection {id} is not reading; it is being closed"))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                peer.queued.fetch_sub(size, Ordering::Relaxed);
                Err(format!("connection {id} is closing"))
            }
        }
    }

    /// Shutdown: every connection closes (1001), none joins any more;
    /// returns how many were open.
    pub fn close_all(&self) -> usize {
        let Ok(rooms) = self.rooms.lock() else { return 0 };
        self.closing.store(true, Ordering::Relaxed);
        let peers: Vec<&Peer> = rooms.values().flat_map(HashMap::values).collect();
        for peer in &peers {
            peer.wake.notify_one();
        }
        peers.len()
    }
}

/// What the instance running one event of a connection knows of it.
pub struct WsEvent {
    pub info: ConnectionInfo,
    pub state: Arc<Mutex<Vec<u8>>>,
    /// Where links bound to the connection send their events; `None` when
    /// the module does not export `link-handler` (it may not bind any).
    pub link_events: Option<mpsc::Sender<LinkEvent>>,
}

/// What a link bound to a WebSocket tells that connection's socket task.
#[derive(Debug)]
pub enum LinkEvent {
    Data(u64, Vec<u8>),
    Closed(u64, String),
}
