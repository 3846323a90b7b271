//! Hostile: recurses without end. Stack exhaustion must trap the instance.
use canto_sdk::{IncomingRequest, ResponseOutparam};

struct Deep;

#[expect(unconditional_recursion, reason = "exhausting the stack is the point")]
fn dive(pad: [u8; 256]) -> u64 {
    let pad = std::hint::black_box(pad);
    dive(pad) + u64::from(pad[0])
}

impl canto_sdk::Handler for Deep {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let depth = dive([0; 256]);
        canto_sdk::respond(out, 200, "text/plain", format!("{depth}\n").as_bytes());
    }
}

canto_sdk::export!(Deep);
