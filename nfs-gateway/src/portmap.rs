//! Enough of portmap v2 (RFC 1833) for clients that ask where we are: they
//! reach it on our own port (we do not register with the host's rpcbind),
//! and every program we serve answers on that same port, over TCP only.

use nfs3_types::portmap::{mapping, pmaplist, IPPROTO_TCP, PMAP_PROG};
use nfs3_types::xdr_codec::List;

use crate::rpc::XdrReader;
use crate::Outcome;

/// The (program, version) pairs this server answers.
const SERVED: [(u32, u32); 3] = [
    (nfs3_types::portmap::PROGRAM, nfs3_types::portmap::VERSION),
    (nfs3_types::nfs3::PROGRAM, nfs3_types::nfs3::VERSION),
    (nfs3_types::mount::PROGRAM, nfs3_types::mount::VERSION),
];

/// Answers one portmap v2 call; `port` is the port this server listens on.
pub fn handle_portmap(port: u16, proc_: u32, args: &[u8]) -> Outcome {
    let Ok(proc_) = PMAP_PROG::try_from(proc_) else {
        return Outcome::ProcUnavail;
    };
    match proc_ {
        PMAP_PROG::PMAPPROC_NULL => Outcome::Reply(Vec::new()),
        PMAP_PROG::PMAPPROC_GETPORT => {
            let mut r = XdrReader::new(args);
            let (Some(prog), Some(vers), Some(prot), Some(_port)) =
                (r.u32(), r.u32(), r.u32(), r.u32())
            else {
                return Outcome::GarbageArgs;
            };
            let found = prot == IPPROTO_TCP && SERVED.contains(&(prog, vers));
            tracing::debug!(prog, vers, prot, found, "portmap GETPORT");
            Outcome::Reply(
                u32::from(if found { port } else { 0 })
                    .to_be_bytes()
                    .to_vec(),
            )
        }
        PMAP_PROG::PMAPPROC_DUMP => {
            let list: pmaplist = List(
                SERVED
                    .iter()
                    .map(|&(prog, vers)| mapping {
                        prog,
                        vers,
                        prot: IPPROTO_TCP,
                        port: u32::from(port),
                    })
                    .collect(),
            );
            Outcome::encode(&list)
        }
        // Registration belongs to the host's rpcbind, not to us: refused
        // (a boolean FALSE), as rpcbind refuses other owners' entries.
        PMAP_PROG::PMAPPROC_SET | PMAP_PROG::PMAPPROC_UNSET => {
            Outcome::Reply(0u32.to_be_bytes().to_vec())
        }
        // Forwarding calls to other programs is an amplifier nobody needs.
        PMAP_PROG::PMAPPROC_CALLIT => Outcome::ProcUnavail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::tests::words;
    use nfs3_types::xdr_codec::Unpack;

    fn reply(o: Outcome) -> Vec<u8> {
        match o {
            Outcome::Reply(b) => b,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn getport() {
        let ask = |prog, vers, prot| reply(handle_portmap(2049, 3, &words(&[prog, vers, prot, 0])));
        assert_eq!(ask(100003, 3, 6), words(&[2049]));
        assert_eq!(ask(100005, 3, 6), words(&[2049]));
        assert_eq!(ask(100005, 3, 17), words(&[0]), "no UDP");
        assert_eq!(ask(100005, 1, 6), words(&[0]), "no MOUNT v1");
        assert_eq!(ask(100021, 4, 6), words(&[0]), "no NLM");
        assert!(matches!(
            handle_portmap(2049, 3, &words(&[1, 2])),
            Outcome::GarbageArgs
        ));
    }

    #[test]
    fn dump_null_and_unknown() {
        let body = reply(handle_portmap(2049, 4, &[]));
        let (list, _) = pmaplist::unpack(&mut &body[..]).expect("pmaplist");
        let got: Vec<_> = list
            .0
            .iter()
            .map(|m| (m.prog, m.vers, m.prot, m.port))
            .collect();
        assert_eq!(
            got,
            vec![
                (100000, 2, 6, 2049),
                (100003, 3, 6, 2049),
                (100005, 3, 6, 2049)
            ]
        );
        assert!(reply(handle_portmap(2049, 0, &[])).is_empty());
        assert!(matches!(handle_portmap(2049, 5, &[]), Outcome::ProcUnavail));
        assert!(matches!(
            handle_portmap(2049, 99, &[]),
            Outcome::ProcUnavail
        ));
    }
}
