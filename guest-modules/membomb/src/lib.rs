//! Hostile: allocates until something stops it. The memory cap must trap
//! it (one 500) long before the host feels it.
use canto_sdk::{IncomingRequest, ResponseOutparam};

struct Bomb;

impl canto_sdk::Handler for Bomb {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        for _ in 0..100_000 {
            hoard.push(vec![1u8; 1 << 20]);
        }
        canto_sdk::respond(out, 200, "text/plain", format!("kept {} MiB\n", hoard.len()).as_bytes());
    }
}

canto_sdk::export!(Bomb);
