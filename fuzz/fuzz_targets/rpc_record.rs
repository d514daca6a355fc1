//! ONC RPC over TCP as the gateway reads it (nfs-gateway/src/rpc.rs).
//! First byte 0 mod 3: a stream of records (record marking, fragments, at
//! most `MAX_RECORD` each) and the call header of each; 1: one record's
//! call header (the UDP path's datagram); 2: a reply to a call we made
//! (rpc_client::parse_reply, the xid from the next four bytes).
#![no_main]

use brickfs_fuzz::block_on;
use libfuzzer_sys::fuzz_target;
use nfs_gateway::rpc::{self, Decoded, MAX_RECORD};
use nfs_gateway::rpc_client;

fn call(record: &[u8]) {
    if let Ok(Decoded::Call(h)) = rpc::decode_call(record) {
        // The arguments are sliced from here on: it must lie in the record.
        assert!(h.args_at <= record.len());
        let _ = &record[h.args_at..];
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            let mut rd = rest;
            block_on(async {
                while let Ok(Some(record)) = rpc::read_record(&mut rd, MAX_RECORD).await {
                    assert!(record.len() <= MAX_RECORD);
                    call(&record);
                }
            });
        }
        1 => call(rest),
        _ => {
            if rest.len() >= 4 {
                let xid = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                let _ = rpc_client::parse_reply(xid, &rest[4..]);
            }
        }
    }
});
