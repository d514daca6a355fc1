//! The MOUNT v3 program (RFC 1813 appendix I): hands out the root handle of
//! a mounted directory after checking the export's rules, and lists the
//! exports. Mounts are not remembered (DUMP is empty): an NFS v3 server
//! holds no state per mount, and the handle alone carries the export.

use std::future::Future;
use std::net::IpAddr;

use nfs3_types::mount::{self as m, mountstat3, MOUNT_PROGRAM};
use nfs3_types::nfs3::nfsstat3;
use nfs3_types::xdr_codec::{List, Opaque};
use proto::{Attr, FileKind, FsError, FsResult, Gfid, Name};
use tracing::info;

use crate::exports::{ExportRule, Exports};
use crate::handles::Handle;
use crate::rpc::{XdrReader, AUTH_NULL, AUTH_UNIX};
use crate::{Caller, Gateway, Outcome};

/// Answers one MOUNT v3 call.
pub async fn handle_mount(gw: &Gateway, caller: &Caller, proc_: u32, args: &[u8]) -> Outcome {
    let Ok(proc_) = MOUNT_PROGRAM::try_from(proc_) else {
        return Outcome::ProcUnavail;
    };
    match proc_ {
        MOUNT_PROGRAM::MOUNTPROC3_NULL => Outcome::Reply(Vec::new()),
        MOUNT_PROGRAM::MOUNTPROC3_MNT => mnt(gw, caller, args).await,
        MOUNT_PROGRAM::MOUNTPROC3_DUMP => Outcome::encode(&m::mountlist::default()),
        MOUNT_PROGRAM::MOUNTPROC3_UMNT => {
            let Some(path) = dirpath(args) else {
                return Outcome::GarbageArgs;
            };
            info!(peer = %caller.peer, path = %shown(path), "UMNT");
            Outcome::Reply(Vec::new())
        }
        MOUNT_PROGRAM::MOUNTPROC3_UMNTALL => {
            info!(peer = %caller.peer, "UMNTALL");
            Outcome::Reply(Vec::new())
        }
        MOUNT_PROGRAM::MOUNTPROC3_EXPORT => {
            let ip = caller.peer.ip();
            match gw.tenancy.table().exports_for(ip) {
                Some(own) => Outcome::encode(&tenant_export_list(&gw.volume, own)),
                None => Outcome::encode(&export_list(&gw.exports, ip)),
            }
        }
    }
}

/// The `dirpath` argument. Its length is bounded by the record only, so
/// that an over-long path gets MNT3ERR_NAMETOOLONG rather than
/// GARBAGE_ARGS. Public for the fuzz target in `fuzz/` only.
#[doc(hidden)]
pub fn dirpath(args: &[u8]) -> Option<&[u8]> {
    XdrReader::new(args).opaque(args.len())
}

/// A path for the log: lossy UTF-8, cut at the longest valid length.
fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(&path[..path.len().min(m::MNTPATHLEN)]).into_owned()
}

async fn mnt(gw: &Gateway, caller: &Caller, args: &[u8]) -> Outcome {
    let Some(path) = dirpath(args) else {
        return Outcome::GarbageArgs;
    };
    let res = match mount_path(gw, caller, path).await {
        Ok(h) => {
            info!(peer = %caller.peer, path = %shown(path), export = h.export, subvol = ?h.subvol, "MNT: MNT3_OK");
            m::mountres3::Ok(m::mountres3_ok {
                fhandle: m::fhandle3(gw.handles.encode(h).data),
                auth_flavors: vec![AUTH_UNIX, AUTH_NULL],
            })
        }
        Err(stat) => {
            info!(peer = %caller.peer, path = %shown(path), status = %stat, "MNT refused");
            m::mountres3::Err(stat)
        }
    };
    Outcome::encode(&res)
}

/// The handle of the directory `path` names: its export rule, and the
/// sub-volume it lies in, whose tenant's networks the caller must be in
/// (`tenancy`).
async fn mount_path(gw: &Gateway, caller: &Caller, path: &[u8]) -> Result<Handle, mountstat3> {
    let (export, rule, names) = gw.exports.for_mount_path(path)?;
    let ip = caller.peer.ip();
    if !rule.allows(ip) {
        return Err(mountstat3::MNT3ERR_ACCES);
    }
    let table = gw.tenancy.table();
    let lookup = |dir, name: Name| async move { gw.layer.lookup(dir, &name).await };
    let in_subvol = names.first().and_then(|n| table.subvolume(&n.0));
    let (subvol, gfid) = match in_subvol {
        Some(owned) => {
            table
                .check_owned(ip, owned)
                .map_err(|_| mountstat3::MNT3ERR_ACCES)?;
            let root = walk(&names[..1], lookup).await?;
            (Some(root), walk_from(root, &names[1..], lookup).await?)
        }
        None => {
            table
                .check(ip, None)
                .map_err(|_| mountstat3::MNT3ERR_ACCES)?;
            (None, walk(&names, lookup).await?)
        }
    };
    Ok(Handle {
        export,
        gfid,
        subvol,
    })
}

/// Looks `names` up from the volume root; every step must be a directory.
async fn walk<F, Fut>(names: &[Name], lookup: F) -> Result<Gfid, mountstat3>
where
    F: FnMut(Gfid, Name) -> Fut,
    Fut: Future<Output = FsResult<Attr>>,
{
    walk_from(Gfid::ROOT, names, lookup).await
}

/// [`walk`] from directory `dir`.
async fn walk_from<F, Fut>(mut dir: Gfid, names: &[Name], mut lookup: F) -> Result<Gfid, mountstat3>
where
    F: FnMut(Gfid, Name) -> Fut,
    Fut: Future<Output = FsResult<Attr>>,
{
    for name in names {
        let attr = lookup(dir, name.clone())
            .await
            .map_err(|e| mount_status(&e))?;
        if attr.kind != FileKind::Dir {
            return Err(mountstat3::MNT3ERR_NOTDIR);
        }
        dir = attr.gfid;
    }
    Ok(dir)
}

/// The client stack's error as a MOUNT status, through the NFS table so
/// both programs agree. MOUNT has no JUKEBOX or ROFS: bricks unreachable
/// or slow become MNT3ERR_IO, which fails the mount and lets it be retried.
fn mount_status(e: &FsError) -> mountstat3 {
    match crate::error::nfsstat(e) {
        nfsstat3::NFS3ERR_NOENT | nfsstat3::NFS3ERR_STALE => mountstat3::MNT3ERR_NOENT,
        nfsstat3::NFS3ERR_ACCES => mountstat3::MNT3ERR_ACCES,
        nfsstat3::NFS3ERR_PERM => mountstat3::MNT3ERR_PERM,
        nfsstat3::NFS3ERR_NOTDIR => mountstat3::MNT3ERR_NOTDIR,
        nfsstat3::NFS3ERR_INVAL => mountstat3::MNT3ERR_INVAL,
        nfsstat3::NFS3ERR_NAMETOOLONG => mountstat3::MNT3ERR_NAMETOOLONG,
        nfsstat3::NFS3ERR_NOTSUPP => mountstat3::MNT3ERR_NOTSUPP,
        _ => mountstat3::MNT3ERR_IO,
    }
}

/// Who may mount a rule: its networks, or `*` for everyone (as
/// `showmount -e` prints them).
fn groups(rule: &ExportRule) -> Vec<String> {
    if rule.allow.is_empty() {
        return vec!["*".to_string()];
    }
    rule.allow
        .iter()
        .map(|c| format!("{}/{}", c.addr, c.prefix))
        .collect()
}

/// The exports `client` may mount. Only those: libnfs (by default) mounts
/// every listed export nested in the one asked for, and fails the whole
/// mount if one of them is refused.
fn export_list(exports: &Exports, client: IpAddr) -> m::exports<'static, 'static> {
    List(
        exports
            .rules()
            .iter()
            .filter(|r| r.allows(client))
            .map(|r| m::export_node {
                ex_dir: m::dirpath(Opaque::owned(r.path.clone().into_bytes())),
                ex_groups: List(
                    groups(r)
                        .into_iter()
                        .map(|g| m::name(Opaque::owned(g.into_bytes())))
                        .collect(),
                ),
            })
            .collect(),
    )
}

/// A tenant's client sees its own sub-volumes only.
fn tenant_export_list(
    volume: &str,
    own: Vec<(String, Vec<tenant::Cidr>)>,
) -> m::exports<'static, 'static> {
    List(
        own.into_iter()
            .map(|(name, nets)| m::export_node {
                ex_dir: m::dirpath(Opaque::owned(format!("/{volume}/{name}").into_bytes())),
                ex_groups: List(
                    nets.iter()
                        .map(|c| m::name(Opaque::owned(c.to_string().into_bytes())))
                        .collect(),
                ),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfs3_types::xdr_codec::Unpack;

    fn attr(gfid: Gfid, kind: FileKind) -> Attr {
        Attr {
            nlink: 2,
            ..Attr::bare(gfid, kind, 0o755)
        }
    }

    fn stat(r: Result<Gfid, mountstat3>) -> u32 {
        match r {
            Ok(_) => 0,
            Err(s) => s as u32,
        }
    }

    #[tokio::test]
    async fn walk_follows_directories_only() {
        let a = Gfid::random();
        let f = Gfid::random();
        let fake = |dir: Gfid, name: Name| async move {
            match (dir, name.to_string().as_str()) {
                (d, "a") if d == Gfid::ROOT => Ok(attr(a, FileKind::Dir)),
                (d, "f") if d == a => Ok(attr(f, FileKind::File)),
                (_, "down") => Err(FsError::Quorum {
                    need: 2,
                    got: 0,
                    detail: String::new(),
                }),
                (_, "secret") => Err(FsError::Access),
                _ => Err(FsError::NotFound),
            }
        };
        let names = |p: &[&str]| p.iter().map(|n| Name::from(*n)).collect::<Vec<_>>();
        assert_eq!(walk(&[], fake).await.ok(), Some(Gfid::ROOT));
        assert_eq!(walk(&names(&["a"]), fake).await.ok(), Some(a));
        assert_eq!(
            stat(walk(&names(&["a", "f"]), fake).await),
            mountstat3::MNT3ERR_NOTDIR as u32
        );
        assert_eq!(
            stat(walk(&names(&["a", "x"]), fake).await),
            mountstat3::MNT3ERR_NOENT as u32
        );
        assert_eq!(
            stat(walk(&names(&["down"]), fake).await),
            mountstat3::MNT3ERR_IO as u32
        );
        assert_eq!(
            stat(walk(&names(&["secret"]), fake).await),
            mountstat3::MNT3ERR_ACCES as u32
        );
    }

    #[test]
    fn export_list_names_groups() {
        let e = Exports::parse("gv0", &["/gv0/pvc,ro,allow=10.0.0.0/8+192.168.1.7".into()])
            .expect("exports");
        let listed = |client: &str| {
            let Outcome::Reply(body) =
                Outcome::encode(&export_list(&e, client.parse().expect("ip")))
            else {
                panic!("no reply");
            };
            let (list, _) = m::exports::unpack(&mut &body[..]).expect("decodes");
            list.0
                .iter()
                .map(|n| {
                    (
                        n.ex_dir.0.to_vec(),
                        n.ex_groups.0.iter().map(|g| g.0.to_vec()).collect(),
                    )
                })
                .collect::<Vec<(Vec<u8>, Vec<Vec<u8>>)>>()
        };
        // Outside the rule's networks, the rule is not listed.
        assert_eq!(
            listed("172.16.0.1"),
            vec![(b"/gv0".to_vec(), vec![b"*".to_vec()])]
        );
        assert_eq!(
            listed("10.1.2.3"),
            vec![
                (b"/gv0".to_vec(), vec![b"*".to_vec()]),
                (
                    b"/gv0/pvc".to_vec(),
                    vec![b"10.0.0.0/8".to_vec(), b"192.168.1.7/32".to_vec()]
                ),
            ]
        );
    }

    #[test]
    fn dirpath_is_bounded_by_the_args() {
        let mut args = 5u32.to_be_bytes().to_vec();
        args.extend_from_slice(b"/gv0\0\0\0\0");
        assert_eq!(dirpath(&args), Some(&b"/gv0\0"[..]));
        assert_eq!(dirpath(&u32::MAX.to_be_bytes()), None);
    }
}
