//! Hostile: spins forever. The CPU deadline must stop it without blocking
//! other requests.
use canto_sdk::{IncomingRequest, ResponseOutparam};

struct Spin;

impl canto_sdk::Handler for Spin {
    fn handle(_request: IncomingRequest, _out: ResponseOutparam) {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

canto_sdk::export!(Spin);
