//! NFS v3 arguments as the gateway decodes them before any call: the
//! length checks of nfs-gateway/src/shape.rs, then the `nfs3_types`
//! decoder of the procedure's argument type (nfs::decode_args, the types
//! `dispatch` decodes). First byte: the procedure (0..=21, others are
//! PROC_UNAVAIL); the rest: its XDR arguments.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nfs_gateway::nfs;

fuzz_target!(|data: &[u8]| {
    let Some((&proc_, args)) = data.split_first() else {
        return;
    };
    // Byte values past 21 stand for unknown procedures: one is enough.
    let proc_ = u32::from(proc_.min(22));
    let decoded = nfs::decode_args(proc_, args);
    assert_eq!(decoded.is_some(), proc_ <= 21);
});
