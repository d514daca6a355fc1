//! NLM v4 arguments (nfs-gateway/src/nlm/xdr.rs: TEST, LOCK, CANCEL,
//! UNLOCK, SHARE, FREE_ALL, and the `nlm4_res` answering our GRANTED
//! callbacks) and NSM's SM_NOTIFY `stat_chge` (nsm/mod.rs). First byte:
//! which decoder; the rest: its XDR.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nfs_gateway::nlm::xdr::{
    decode_res, CancelArgs, LockArgs, Notify, ShareArgs, TestArgs, UnlockArgs, MAX_NAME, MAX_NETOBJ,
};
use nfs_gateway::nsm::StatChange;

fuzz_target!(|data: &[u8]| {
    let Some((&which, args)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => {
            if let Some(a) = TestArgs::decode(args) {
                assert!(a.cookie.len() <= MAX_NETOBJ);
                // The GRANTED callback sends what TEST decodes: it must
                // come back the same.
                assert_eq!(TestArgs::decode(&a.encode()), Some(a));
            }
        }
        1 => {
            if let Some(a) = LockArgs::decode(args) {
                assert!(a.cookie.len() <= MAX_NETOBJ);
                let _ = a.lock.range();
            }
        }
        2 => {
            let _ = CancelArgs::decode(args).map(|a| a.lock.range());
        }
        3 => {
            let _ = UnlockArgs::decode(args).map(|a| a.lock.range());
        }
        4 => {
            let _ = ShareArgs::decode(args);
        }
        5 => {
            if let Some(n) = Notify::decode(args) {
                assert!(n.name.len() <= MAX_NAME);
            }
        }
        6 => {
            let _ = decode_res(args);
        }
        _ => {
            if let Some(c) = StatChange::decode(args) {
                assert_eq!(StatChange::decode(&c.encode()), Some(c));
            }
        }
    }
});
