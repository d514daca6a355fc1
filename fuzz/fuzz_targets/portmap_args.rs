//! portmap v2 calls as the gateway answers them (nfs-gateway/src/portmap.rs
//! `handle_portmap`: GETPORT's mapping is the only argument decoded).
//! First byte: the procedure (0..=5, others are PROC_UNAVAIL).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nfs_gateway::portmap::{handle_portmap, Served};

fuzz_target!(|data: &[u8]| {
    let Some((&proc_, args)) = data.split_first() else {
        return;
    };
    let served = Served {
        port: 2049,
        udp: proc_ & 0x80 != 0,
    };
    let _ = handle_portmap(&served, u32::from(proc_ & 0x7f), args);
});
