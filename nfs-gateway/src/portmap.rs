//! Enough of portmap v2 (RFC 1833) for clients that ask where we are: on
//! our own port, and on port 111 when the gateway serves it there
//! (`--portmap-listen`: the Linux client's lockd asks port 111 of the
//! server for NLM, with no way to give it another). Every program we serve
//! answers on the gateway's one port: NFS, MOUNT and NLM over TCP, NSM and
//! portmap over TCP and UDP.

use nfs3_types::portmap::{mapping, pmaplist, IPPROTO_TCP, IPPROTO_UDP, PMAP_PROG};
use nfs3_types::xdr_codec::List;

use crate::rpc::XdrReader;
use crate::Outcome;

/// What this server answers, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    /// The gateway's port (TCP, and UDP when `udp`).
    pub port: u16,
    /// NSM and portmap also answer over UDP on that port.
    pub udp: bool,
}

impl Served {
    /// (program, version, protocol) of everything served.
    pub fn entries(&self) -> Vec<(u32, u32, u32)> {
        let mut v = vec![
            (
                nfs3_types::portmap::PROGRAM,
                nfs3_types::portmap::VERSION,
                IPPROTO_TCP,
            ),
            (
                nfs3_types::nfs3::PROGRAM,
                nfs3_types::nfs3::VERSION,
                IPPROTO_TCP,
            ),
            (
                nfs3_types::mount::PROGRAM,
                nfs3_types::mount::VERSION,
                IPPROTO_TCP,
            ),
            (
                crate::nlm::xdr::PROGRAM,
                crate::nlm::xdr::VERSION,
                IPPROTO_TCP,
            ),
            (crate::nsm::PROGRAM, crate::nsm::VERSION, IPPROTO_TCP),
        ];
        if self.udp {
            v.push((
                nfs3_types::portmap::PROGRAM,
                nfs3_types::portmap::VERSION,
                IPPROTO_UDP,
            ));
            v.push((crate::nsm::PROGRAM, crate::nsm::VERSION, IPPROTO_UDP));
        }
        v
    }
}

/// Answers one portmap v2 call.
pub fn handle_portmap(served: &Served, proc_: u32, args: &[u8]) -> Outcome {
    let port = served.port;
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
            let found = served.entries().contains(&(prog, vers, prot));
            tracing::debug!(prog, vers, prot, found, "portmap GETPORT");
            Outcome::Reply(
                u32::from(if found { port } else { 0 })
                    .to_be_bytes()
                    .to_vec(),
            )
        }
        PMAP_PROG::PMAPPROC_DUMP => {
            let list: pmaplist = List(
                served
                    .entries()
                    .into_iter()
                    .map(|(prog, vers, prot)| mapping {
                        prog,
                        vers,
                        prot,
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

    const SERVED: Served = Served {
        port: 2049,
        udp: true,
    };

    #[test]
    fn getport() {
        let ask =
            |prog, vers, prot| reply(handle_portmap(&SERVED, 3, &words(&[prog, vers, prot, 0])));
        assert_eq!(ask(100003, 3, 6), words(&[2049]));
        assert_eq!(ask(100005, 3, 6), words(&[2049]));
        assert_eq!(ask(100005, 3, 17), words(&[0]), "no MOUNT over UDP");
        assert_eq!(ask(100005, 1, 6), words(&[0]), "no MOUNT v1");
        assert_eq!(ask(100021, 4, 6), words(&[2049]), "NLM v4");
        assert_eq!(ask(100021, 4, 17), words(&[0]), "no NLM over UDP");
        assert_eq!(ask(100021, 1, 6), words(&[0]), "no NLM v1");
        assert_eq!(ask(100024, 1, 6), words(&[2049]), "NSM");
        assert_eq!(ask(100024, 1, 17), words(&[2049]), "NSM over UDP");
        let tcp_only = Served {
            port: 2049,
            udp: false,
        };
        assert_eq!(
            reply(handle_portmap(&tcp_only, 3, &words(&[100024, 1, 17, 0]))),
            words(&[0])
        );
        assert!(matches!(
            handle_portmap(&SERVED, 3, &words(&[1, 2])),
            Outcome::GarbageArgs
        ));
    }

    #[test]
    fn dump_null_and_unknown() {
        let body = reply(handle_portmap(&SERVED, 4, &[]));
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
                (100005, 3, 6, 2049),
                (100021, 4, 6, 2049),
                (100024, 1, 6, 2049),
                (100000, 2, 17, 2049),
                (100024, 1, 17, 2049),
            ]
        );
        assert!(reply(handle_portmap(&SERVED, 0, &[])).is_empty());
        assert!(matches!(
            handle_portmap(&SERVED, 5, &[]),
            Outcome::ProcUnavail
        ));
        assert!(matches!(
            handle_portmap(&SERVED, 99, &[]),
            Outcome::ProcUnavail
        ));
    }
}
