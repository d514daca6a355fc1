//! The data connection (proto/src/data.rs). First byte even: request
//! frames as the brick reads them (brick/src/data.rs `read_request`,
//! behind the same 64 KiB BufReader), until the stream ends or a frame is
//! refused. Odd: the fixed part and the bodies of a response as the client
//! decodes them (bincode `Done<Attr>` for writes, `FsError` for errors).
//! A vectored write's payload is parsed as the brick parses it, and what
//! parses must encode back to the same bytes.
#![no_main]

use brickfs_fuzz::block_on;
use libfuzzer_sys::fuzz_target;
use proto::data::{self, RESP_FIXED};
use proto::{Attr, Done, FsError};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which & 1 == 0 {
        let mut rd = tokio::io::BufReader::with_capacity(64 * 1024, rest);
        block_on(async {
            while let Ok(Some((header, payload))) = brick::fuzzing::read_request(&mut rd).await {
                // What the brick hands on is what the frame announced.
                assert_eq!(
                    header
                        .check(proto::data::REQ_FIXED + header.blame.len() + payload.len())
                        .ok(),
                    Some(payload.len())
                );
                if header.op == data::OP_WRITEV {
                    if let Ok(extents) = data::decode_extents(&payload) {
                        assert_eq!(data::encode_extents(&extents), payload);
                    }
                }
            }
        });
    } else {
        if let Some(len) = rest.get(..4) {
            let _ = data::check_frame_len(u32::from_le_bytes([len[0], len[1], len[2], len[3]]));
        }
        if let Some(fixed) = rest.get(4..4 + RESP_FIXED) {
            let mut f = [0u8; RESP_FIXED];
            f.copy_from_slice(fixed);
            let _ = data::decode_response(&f);
        }
        let body = rest.get(4 + RESP_FIXED..).unwrap_or_default();
        let _ = data::decode_value::<Done<Attr>>(body);
        let _ = data::decode_value::<FsError>(body);
    }
});
