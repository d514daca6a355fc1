//! NSM, the status monitor (program 100024 version 1), as far as a server
//! needs it: the state directory with the hosts to tell of our restarts
//! (`state_dir`), the SM_NOTIFY we send them after a start (`notify`), and
//! the calls other hosts' statds make to us. SM_NOTIFY from a client that
//! rebooted frees the locks it held. SM_MON and SM_UNMON are for a host's
//! own lockd and refused; SM_STAT gives our state number.

pub mod notify;
pub mod state_dir;

use crate::xdr::{XdrReader, XdrWriter};
use crate::{Caller, Gateway, Outcome};

pub const PROGRAM: u32 = 100_024;
pub const VERSION: u32 = 1;
/// `SM_MAXSTRLEN`.
pub const MAX_NAME: usize = 1024;

pub const SM_NULL: u32 = 0;
pub const SM_STAT: u32 = 1;
pub const SM_MON: u32 = 2;
pub const SM_UNMON: u32 = 3;
pub const SM_UNMON_ALL: u32 = 4;
pub const SM_SIMU_CRASH: u32 = 5;
pub const SM_NOTIFY: u32 = 6;

const STAT_SUCC: u32 = 0;
const STAT_FAIL: u32 = 1;

/// `stat_chge`, the argument of SM_NOTIFY.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatChange {
    pub mon_name: Vec<u8>,
    pub state: i32,
}

impl StatChange {
    pub fn decode(args: &[u8]) -> Option<StatChange> {
        let mut r = XdrReader::new(args);
        Some(StatChange {
            mon_name: r.opaque(MAX_NAME)?.to_vec(),
            state: r.i32()?,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = XdrWriter::new();
        w.opaque(&self.mon_name).i32(self.state);
        w.into_bytes()
    }
}

fn sm_stat_res(res: u32, state: i32) -> Vec<u8> {
    let mut w = XdrWriter::new();
    w.u32(res).i32(state);
    w.into_bytes()
}

/// Answers one NSM v1 call.
pub fn handle_nsm(gw: &Gateway, caller: &Caller, proc_: u32, args: &[u8]) -> Outcome {
    let state = gw.locks.nsm_state();
    match proc_ {
        SM_NULL => Outcome::Reply(Vec::new()),
        SM_STAT => match XdrReader::new(args).opaque(MAX_NAME) {
            Some(_) => Outcome::Reply(sm_stat_res(STAT_SUCC, state)),
            None => Outcome::GarbageArgs,
        },
        // Monitoring is what a host's own statd does for its own lockd.
        SM_MON => Outcome::Reply(sm_stat_res(STAT_FAIL, state)),
        SM_UNMON | SM_UNMON_ALL => {
            let mut w = XdrWriter::new();
            w.i32(state);
            Outcome::Reply(w.into_bytes())
        }
        // Nobody else decides that we crashed.
        SM_SIMU_CRASH => Outcome::Reply(Vec::new()),
        SM_NOTIFY => {
            let Some(change) = StatChange::decode(args) else {
                return Outcome::GarbageArgs;
            };
            gw.locks
                .host_rebooted(caller.peer.ip(), &change.mon_name, change.state);
            Outcome::Reply(Vec::new())
        }
        _ => Outcome::ProcUnavail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_change_round_trip() {
        let c = StatChange {
            mon_name: b"10.0.0.1".to_vec(),
            state: 7,
        };
        assert_eq!(StatChange::decode(&c.encode()), Some(c));
        assert_eq!(StatChange::decode(&u32::MAX.to_be_bytes()), None);
        let mut long = XdrWriter::new();
        long.opaque(&[b'a'; MAX_NAME + 1]).i32(1);
        assert_eq!(StatChange::decode(&long.into_bytes()), None);
    }
}
