//! The NFS v3 program (RFC 1813) over the client stack: every procedure,
//! LINK, MKNOD and COMMIT included. Each call: decode the arguments, open
//! the handles (volume, export rule, allowed client network), apply the
//! export's root squash and read-only flag, check permissions for the
//! caller, run the operation through the `Layer`, encode the result.

use std::io::Cursor;
use std::sync::OnceLock;

use nfs3_types::nfs3::*;
use nfs3_types::xdr_codec::{List, Opaque, Pack, Unpack, Void};
use proto::{Attr, FileKind, FsError, Gfid, Name, RenameReq, SetAttr, TimeSet, Timespec};

use crate::access::{self, EXEC, READ, WRITE};
use crate::attrs::{self, fattr, post_op, wcc_after};
use crate::error::nfsstat;
use crate::exports::ExportRule;
use crate::handles::Handle;
use crate::{Caller, Gateway, Outcome};

/// Largest READ or WRITE payload (advertised in FSINFO).
const IO_MAX: u32 = 1 << 20;

type Res<T> = Result<T, nfsstat3>;

/// One call's view: the gateway and the caller.
struct Call<'a> {
    gw: &'a Gateway,
    caller: &'a Caller,
}

/// An opened handle: what it names, under which export rule, and the
/// caller as that rule lets it act (root squashed or not).
pub(crate) struct Opened<'a> {
    pub h: Handle,
    pub rule: &'a ExportRule,
    pub caller: Caller,
}

/// Opens a file handle for `caller`: ours, of this volume, under an export
/// rule that allows the caller's network; root squashed if the rule says
/// so. NLM opens its file handles the same way.
pub(crate) fn open_handle<'a>(gw: &'a Gateway, caller: &Caller, fh: &[u8]) -> Res<Opened<'a>> {
    let h = gw.handles.decode_bytes(fh)?;
    let rule = gw
        .exports
        .rule(h.export)
        .ok_or(nfsstat3::NFS3ERR_BADHANDLE)?;
    if !rule.allows(caller.peer.ip()) {
        tracing::warn!(peer = %caller.peer, export = %rule.path, "call from a network the export does not allow");
        return Err(nfsstat3::NFS3ERR_ACCES);
    }
    let tenancy = gw.tenancy.table();
    if let Err(s) = tenancy.check(caller.peer.ip(), h.subvol) {
        tracing::warn!(peer = %caller.peer, subvol = ?h.subvol, "call from a network the sub-volume's tenant does not have");
        return Err(s);
    }
    let mut caller = caller.clone();
    if (rule.root_squash || tenancy.squashes(h.subvol)) && caller.uid == 0 {
        caller.uid = Caller::NOBODY;
        caller.gid = Caller::NOBODY;
        caller.gids.clear();
    }
    Ok(Opened { h, rule, caller })
}

fn fail(e: &FsError) -> nfsstat3 {
    nfsstat(e)
}

fn name_of(f: &filename3<'_>) -> Res<Name> {
    let n = Name::new(f.as_ref().to_vec());
    n.validate().map_err(|e| match e {
        FsError::NameTooLong => nfsstat3::NFS3ERR_NAMETOOLONG,
        _ => nfsstat3::NFS3ERR_INVAL,
    })?;
    Ok(n)
}

/// Changes with every gateway start: a client that sent UNSTABLE writes
/// to a gateway that restarted before COMMIT sees another verifier and
/// sends them again.
fn write_verifier() -> writeverf3 {
    static VERF: OnceLock<[u8; 8]> = OnceLock::new();
    writeverf3(*VERF.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let h =
            blake3::hash(&[&nanos.to_le_bytes()[..], &std::process::id().to_le_bytes()].concat());
        let mut v = [0u8; 8];
        v.copy_from_slice(&h.as_bytes()[..8]);
        v
    }))
}

impl<'a> Call<'a> {
    fn fsid(&self) -> u64 {
        self.gw.handles.fsid()
    }

    fn open(&self, fh: &nfs_fh3) -> Res<Opened<'a>> {
        open_handle(self.gw, self.caller, fh.data.as_ref())
    }

    fn open_writable(&self, fh: &nfs_fh3) -> Res<Opened<'a>> {
        let o = self.open(fh)?;
        if o.rule.read_only {
            return Err(nfsstat3::NFS3ERR_ROFS);
        }
        Ok(o)
    }

    fn handle(&self, o: &Opened<'_>, gfid: Gfid) -> nfs_fh3 {
        self.gw.handles.encode(Handle {
            export: o.h.export,
            gfid,
            subvol: o.h.subvol,
        })
    }

    /// The handle of `name` in directory `o`: entering a sub-volume at the
    /// volume root is where its tenant's networks are checked and its root
    /// goes into the handle; `None` if the caller may not enter it.
    fn child_handle(&self, o: &Opened<'_>, name: &[u8], gfid: Gfid) -> Option<nfs_fh3> {
        if !o.h.gfid.is_root() {
            return Some(self.handle(o, gfid));
        }
        let table = self.gw.tenancy.table();
        let Some(owned) = table.subvolume(name) else {
            return Some(self.handle(o, gfid));
        };
        table.check_owned(self.caller.peer.ip(), owned).ok()?;
        Some(self.gw.handles.encode(Handle {
            export: o.h.export,
            gfid,
            subvol: Some(gfid),
        }))
    }

    async fn attr(&self, gfid: Gfid) -> Res<Attr> {
        self.gw
            .access
            .attr(self.gw.layer.as_ref(), gfid)
            .await
            .map_err(|e| fail(&e))
    }

    /// Attributes for a reply, best effort (a failure leaves them out).
    async fn attr_opt(&self, gfid: Gfid) -> Option<Attr> {
        self.gw.layer.getattr(gfid).await.ok()
    }

    async fn check(&self, o: &Opened<'_>, gfid: Gfid, want: u32) -> Res<Attr> {
        let a = self.attr(gfid).await?;
        if !access::may(&a, &o.caller, want) {
            return Err(nfsstat3::NFS3ERR_ACCES);
        }
        Ok(a)
    }

    async fn dir_wcc(&self, dir: Gfid) -> wcc_data {
        self.gw.access.forget(dir);
        wcc_after(self.attr_opt(dir).await.as_ref(), self.fsid())
    }
}

fn decode<T: Unpack>(args: &[u8]) -> Option<T> {
    T::unpack(&mut Cursor::new(args)).ok().map(|(v, _)| v)
}

macro_rules! args {
    ($t:ty, $args:expr) => {
        match decode::<$t>($args) {
            Some(a) => a,
            None => return Outcome::GarbageArgs,
        }
    };
}

/// Answers one NFS v3 call (`proc_` is the procedure number, `args` its
/// XDR-encoded arguments).
pub async fn handle_nfs(gw: &Gateway, caller: &Caller, proc_: u32, args: &[u8]) -> Outcome {
    if !crate::shape::plausible(proc_, args) {
        return Outcome::GarbageArgs;
    }
    let outcome = dispatch(gw, caller, proc_, args).await;
    if let Outcome::Reply(body) = &outcome {
        // Every NFS v3 result starts with its status.
        if let Some(status) = body.get(..4) {
            let status = u32::from_be_bytes([status[0], status[1], status[2], status[3]]);
            if status != 0 && proc_ != 0 {
                tracing::debug!(proc_, status, "nfs error status");
            }
        }
    }
    outcome
}

/// Every NFSv3 procedure with its argument type and handler, written once:
/// `dispatch` (what the gateway runs) and `decode_args` (what the fuzz
/// target runs) are both made from this list, so they cannot drift apart.
macro_rules! procedures {
    ($($num:literal => $args:ty, $handler:ident;)*) => {
        async fn dispatch(gw: &Gateway, caller: &Caller, proc_: u32, args: &[u8]) -> Outcome {
            let c = Call { gw, caller };
            match proc_ {
                0 => Outcome::encode(&Void),
                $($num => Outcome::encode(&c.$handler(args!($args, args)).await),)*
                _ => Outcome::ProcUnavail,
            }
        }

        /// The argument decoding of [`handle_nfs`] alone, no call made:
        /// what the fuzz target in `fuzz/` runs. `None` for a procedure
        /// that does not exist, `Some(false)` where the call would be
        /// answered GARBAGE_ARGS.
        #[doc(hidden)]
        pub fn decode_args(proc_: u32, args: &[u8]) -> Option<bool> {
            let decodes: fn(&[u8]) -> bool = match proc_ {
                // NULL takes no arguments.
                0 => |_| true,
                $($num => |a| decode::<$args>(a).is_some(),)*
                _ => return None,
            };
            Some(crate::shape::plausible(proc_, args) && decodes(args))
        }
    };
}

procedures! {
    1 => GETATTR3args, getattr;
    2 => SETATTR3args, setattr;
    3 => LOOKUP3args<'static>, lookup;
    4 => ACCESS3args, access;
    5 => READLINK3args, readlink;
    6 => READ3args, read;
    7 => WRITE3args<'static>, write;
    8 => CREATE3args<'static>, create;
    9 => MKDIR3args<'static>, mkdir;
    10 => SYMLINK3args<'static>, symlink;
    11 => MKNOD3args<'static>, mknod;
    12 => REMOVE3args<'static>, remove;
    13 => RMDIR3args<'static>, rmdir;
    14 => RENAME3args<'static, 'static>, rename;
    15 => LINK3args<'static>, link;
    16 => READDIR3args, readdir;
    17 => READDIRPLUS3args, readdirplus;
    18 => FSSTAT3args, fsstat;
    19 => FSINFO3args, fsinfo;
    20 => PATHCONF3args, pathconf;
    21 => COMMIT3args, commit;
}

impl Call<'_> {
    async fn getattr(&self, a: GETATTR3args) -> GETATTR3res {
        let r: Res<Attr> = async {
            let o = self.open(&a.object)?;
            // An NFS client's open is this GETATTR (close-to-open): asked
            // of enough bricks to find a copy another client's writes
            // missed, whatever the last pings said (`Layer::getattr_to_open`).
            let attr = self
                .gw
                .layer
                .getattr_to_open(o.h.gfid)
                .await
                .map_err(|e| fail(&e))?;
            self.gw.access.put(&attr);
            Ok(attr)
        }
        .await;
        match r {
            Ok(attr) => Nfs3Result::Ok(GETATTR3resok {
                obj_attributes: fattr(&attr, self.fsid()),
            }),
            Err(s) => Nfs3Result::Err((s, Void)),
        }
    }

    async fn setattr(&self, a: SETATTR3args) -> SETATTR3res {
        let r: Res<Attr> = async {
            let o = self.open_writable(&a.object)?;
            let gfid = o.h.gfid;
            let current = self.gw.layer.getattr(gfid).await.map_err(|e| fail(&e))?;
            if let Nfs3Option::Some(ctime) = a.guard {
                if attrs::fattr(&current, 0).ctime != ctime {
                    return Err(nfsstat3::NFS3ERR_NOT_SYNC);
                }
            }
            let set = attrs::set_attr(&a.new_attributes);
            check_setattr(&current, &set, &o.caller)?;
            self.gw.access.forget(gfid);
            if attrs::is_empty(&set) {
                return Ok(current);
            }
            self.gw.layer.setattr(gfid, set).await.map_err(|e| fail(&e))
        }
        .await;
        match r {
            Ok(attr) => Nfs3Result::Ok(SETATTR3resok {
                obj_wcc: wcc_after(Some(&attr), self.fsid()),
            }),
            Err(s) => Nfs3Result::Err((s, SETATTR3resfail::default())),
        }
    }

    async fn lookup(&self, a: LOOKUP3args<'static>) -> LOOKUP3res {
        let dir_gfid = self.gw.handles.decode(&a.what.dir).map(|h| h.gfid).ok();
        let r: Res<(nfs_fh3, Attr)> = async {
            let o = self.open(&a.what.dir)?;
            let dir = self.check(&o, o.h.gfid, EXEC).await?;
            if dir.kind != FileKind::Dir {
                return Err(nfsstat3::NFS3ERR_NOTDIR);
            }
            let raw: &[u8] = a.what.name.as_ref();
            if raw == b"." {
                return Ok((self.handle(&o, o.h.gfid), dir));
            }
            if raw == b".." {
                // The client stack keeps no parent pointers; the export
                // root is its own parent, as on any NFS server.
                if o.h.gfid.is_root() {
                    return Ok((self.handle(&o, o.h.gfid), dir));
                }
                return Err(nfsstat3::NFS3ERR_NOENT);
            }
            let name = name_of(&a.what.name)?;
            let attr = self
                .gw
                .layer
                .lookup(o.h.gfid, &name)
                .await
                .map_err(|e| fail(&e))?;
            self.gw.access.put(&attr);
            let fh = self
                .child_handle(&o, raw, attr.gfid)
                .ok_or(nfsstat3::NFS3ERR_ACCES)?;
            Ok((fh, attr))
        }
        .await;
        match r {
            Ok((object, attr)) => Nfs3Result::Ok(LOOKUP3resok {
                object,
                obj_attributes: post_op(Some(&attr), self.fsid()),
                dir_attributes: Nfs3Option::None,
            }),
            Err(s) => {
                let dir_attributes = match dir_gfid {
                    Some(g) if s == nfsstat3::NFS3ERR_NOENT => {
                        post_op(self.attr(g).await.ok().as_ref(), self.fsid())
                    }
                    _ => Nfs3Option::None,
                };
                Nfs3Result::Err((s, LOOKUP3resfail { dir_attributes }))
            }
        }
    }

    async fn access(&self, a: ACCESS3args) -> ACCESS3res {
        const READ_: u32 = 0x01;
        const LOOKUP_: u32 = 0x02;
        const MODIFY_: u32 = 0x04;
        const EXTEND_: u32 = 0x08;
        const DELETE_: u32 = 0x10;
        const EXECUTE_: u32 = 0x20;
        let r: Res<(Attr, u32)> = async {
            let o = self.open(&a.object)?;
            let attr = self.attr(o.h.gfid).await?;
            let is_dir = attr.kind == FileKind::Dir;
            let ro = o.rule.read_only;
            let mut granted = 0;
            let who = &o.caller;
            if access::may(&attr, who, READ) {
                granted |= READ_;
            }
            if is_dir && access::may(&attr, who, EXEC) {
                granted |= LOOKUP_;
            }
            if !ro && access::may(&attr, who, WRITE) {
                granted |= MODIFY_ | EXTEND_;
                if is_dir {
                    granted |= DELETE_;
                }
            }
            if !is_dir && access::may(&attr, who, EXEC) {
                granted |= EXECUTE_;
            }
            Ok((attr, granted & a.access))
        }
        .await;
        match r {
            Ok((attr, access)) => Nfs3Result::Ok(ACCESS3resok {
                obj_attributes: post_op(Some(&attr), self.fsid()),
                access,
            }),
            Err(s) => Nfs3Result::Err((s, ACCESS3resfail::default())),
        }
    }

    async fn readlink(&self, a: READLINK3args) -> READLINK3res<'static> {
        let r: Res<Vec<u8>> = async {
            let o = self.open(&a.symlink)?;
            self.gw.layer.readlink(o.h.gfid).await.map_err(|e| fail(&e))
        }
        .await;
        match r {
            Ok(target) => Nfs3Result::Ok(READLINK3resok {
                symlink_attributes: Nfs3Option::None,
                data: nfspath3(Opaque::owned(target)),
            }),
            Err(s) => Nfs3Result::Err((s, READLINK3resfail::default())),
        }
    }

    async fn read(&self, a: READ3args) -> READ3res<'static> {
        let r: Res<(Vec<u8>, bool)> = async {
            let o = self.open(&a.file)?;
            let attr = self.attr(o.h.gfid).await?;
            if attr.kind != FileKind::File {
                return Err(if attr.kind == FileKind::Dir {
                    nfsstat3::NFS3ERR_ISDIR
                } else {
                    nfsstat3::NFS3ERR_INVAL
                });
            }
            if !access::may_data(&attr, &o.caller, READ) && !access::may(&attr, &o.caller, EXEC) {
                return Err(nfsstat3::NFS3ERR_ACCES);
            }
            let count = a.count.min(IO_MAX);
            let data = self
                .gw
                .layer
                .read(o.h.gfid, a.offset, count)
                .await
                .map_err(|e| fail(&e))?;
            let eof = (data.len() as u32) < count;
            Ok((data, eof))
        }
        .await;
        match r {
            Ok((data, eof)) => Nfs3Result::Ok(READ3resok {
                file_attributes: Nfs3Option::None,
                count: data.len() as u32,
                eof,
                data: Opaque::owned(data),
            }),
            Err(s) => Nfs3Result::Err((s, READ3resfail::default())),
        }
    }

    async fn write(&self, a: WRITE3args<'static>) -> WRITE3res {
        let WRITE3args {
            file,
            offset,
            count,
            stable,
            data,
        } = a;
        // The payload the decoder read is handed on as it is: no copy.
        let mut data = data.into_owned();
        data.truncate(count as usize);
        let count = data.len() as u32;
        let r: Res<(Attr, stable_how)> = async {
            let o = self.open_writable(&file)?;
            let attr = self.attr(o.h.gfid).await?;
            if attr.kind != FileKind::File {
                return Err(nfsstat3::NFS3ERR_INVAL);
            }
            if !access::may_data(&attr, &o.caller, WRITE) {
                return Err(nfsstat3::NFS3ERR_ACCES);
            }
            if count > IO_MAX {
                return Err(nfsstat3::NFS3ERR_INVAL);
            }
            let after = self
                .gw
                .layer
                .write(o.h.gfid, offset, data)
                .await
                .map_err(|e| fail(&e))?;
            // UNSTABLE: queued here (write-behind, `unstable.rs`), or
            // applied by a quorum of bricks when the gateway writes
            // through; on stable storage only after an fsync, which
            // DATA_SYNC/FILE_SYNC ask for now and UNSTABLE writes get from
            // COMMIT (which also reports a write that failed behind).
            let committed = match stable {
                stable_how::UNSTABLE => stable_how::UNSTABLE,
                how => {
                    self.gw
                        .layer
                        .fsync(o.h.gfid, how == stable_how::DATA_SYNC)
                        .await
                        .map_err(|e| fail(&e))?;
                    how
                }
            };
            self.gw.access.put(&after);
            Ok((after, committed))
        }
        .await;
        match r {
            Ok((after, committed)) => Nfs3Result::Ok(WRITE3resok {
                file_wcc: wcc_after(Some(&after), self.fsid()),
                count,
                committed,
                verf: write_verifier(),
            }),
            Err(s) => Nfs3Result::Err((s, WRITE3resfail::default())),
        }
    }

    /// The object behind `name` in `dir`, looked up only when the sticky
    /// bit makes its owner matter (a round trip saved on every other remove
    /// and rename; a missing name fails in the operation itself).
    async fn owner_matters(
        &self,
        dir: &Attr,
        gfid: Gfid,
        name: &Name,
        caller: &Caller,
    ) -> Res<Option<Attr>> {
        if !access::sticky_applies(dir, caller) {
            return Ok(None);
        }
        let found = self
            .gw
            .layer
            .lookup(gfid, name)
            .await
            .map_err(|e| fail(&e))?;
        Ok(Some(found))
    }

    /// Checks for making a name in directory `dir`; returns its attributes.
    async fn may_add(&self, o: &Opened<'_>) -> Res<Attr> {
        let dir = self.check(o, o.h.gfid, WRITE | EXEC).await?;
        if dir.kind != FileKind::Dir {
            return Err(nfsstat3::NFS3ERR_NOTDIR);
        }
        Ok(dir)
    }

    /// Creates an object owned by the caller (root may give it away).
    async fn make(
        &self,
        o: &Opened<'_>,
        name: Name,
        kind: FileKind,
        s: &sattr3,
        rdev: u64,
        target: Option<Vec<u8>>,
    ) -> Res<Attr> {
        let set = attrs::set_attr(s);
        let default_perm = match kind {
            FileKind::Dir => 0o755,
            FileKind::Symlink => 0o777,
            _ => 0o644,
        };
        let root = o.caller.uid == 0;
        let entry = client::NewEntry {
            name,
            kind,
            perm: set.perm.unwrap_or(default_perm),
            rdev,
            uid: if root {
                set.uid.unwrap_or(0)
            } else {
                o.caller.uid
            },
            gid: match set.gid {
                Some(g) if root || o.caller.in_group(g) => g,
                _ => o.caller.gid,
            },
            target,
        };
        let attr = self
            .gw
            .layer
            .create(o.h.gfid, entry)
            .await
            .map_err(|e| fail(&e))?;
        let rest = SetAttr {
            perm: None,
            uid: None,
            gid: None,
            // A new object is empty already.
            size: set.size.filter(|s| *s != 0),
            ..set
        };
        let attr = if attrs::is_empty(&rest) || kind == FileKind::Symlink {
            attr
        } else {
            self.gw
                .layer
                .setattr(attr.gfid, rest)
                .await
                .map_err(|e| fail(&e))?
        };
        self.gw.access.put(&attr);
        Ok(attr)
    }

    async fn create(&self, a: CREATE3args<'static>) -> CREATE3res {
        let dir_fh = a.where_.dir.clone();
        let r: Res<(nfs_fh3, Attr)> = async {
            let o = self.open_writable(&a.where_.dir)?;
            self.may_add(&o).await?;
            let name = name_of(&a.where_.name)?;
            let existing = match self.gw.layer.lookup(o.h.gfid, &name).await {
                Ok(attr) => Some(attr),
                Err(FsError::NotFound) => None,
                Err(e) => return Err(fail(&e)),
            };
            let attr = match (&a.how, existing) {
                (createhow3::GUARDED(_), Some(_)) => return Err(nfsstat3::NFS3ERR_EXIST),
                (createhow3::UNCHECKED(s), Some(old)) => {
                    // An existing file is opened, truncated if asked.
                    if old.kind == FileKind::Dir {
                        return Err(nfsstat3::NFS3ERR_ISDIR);
                    }
                    let set = attrs::set_attr(s);
                    match set.size {
                        Some(size) => {
                            if !access::may_data(&old, &o.caller, WRITE) {
                                return Err(nfsstat3::NFS3ERR_ACCES);
                            }
                            let only_size = SetAttr {
                                size: Some(size),
                                ..SetAttr::default()
                            };
                            self.gw
                                .layer
                                .setattr(old.gfid, only_size)
                                .await
                                .map_err(|e| fail(&e))?
                        }
                        None => old,
                    }
                }
                (createhow3::EXCLUSIVE(verf), Some(old)) => {
                    // A retransmitted exclusive create finds its verifier
                    // in the times it set.
                    if old.kind == FileKind::File && times_of(verf) == (old.atime, old.mtime) {
                        old
                    } else {
                        return Err(nfsstat3::NFS3ERR_EXIST);
                    }
                }
                (createhow3::UNCHECKED(s) | createhow3::GUARDED(s), None) => {
                    self.make(&o, name, FileKind::File, s, 0, None).await?
                }
                (createhow3::EXCLUSIVE(verf), None) => {
                    let (at, mt) = times_of(verf);
                    let s = sattr3 {
                        mode: Nfs3Option::Some(0o600),
                        ..sattr3::default()
                    };
                    let made = self.make(&o, name, FileKind::File, &s, 0, None).await?;
                    let stamp = SetAttr {
                        atime: Some(TimeSet::At(at)),
                        mtime: Some(TimeSet::At(mt)),
                        ..SetAttr::default()
                    };
                    self.gw
                        .layer
                        .setattr(made.gfid, stamp)
                        .await
                        .map_err(|e| fail(&e))?
                }
            };
            Ok((self.handle(&o, attr.gfid), attr))
        }
        .await;
        let dir_wcc = match self.gw.handles.decode(&dir_fh) {
            Ok(h) => self.dir_wcc(h.gfid).await,
            Err(_) => wcc_data::default(),
        };
        match r {
            Ok((fh, attr)) => Nfs3Result::Ok(CREATE3resok {
                obj: Nfs3Option::Some(fh),
                obj_attributes: post_op(Some(&attr), self.fsid()),
                dir_wcc,
            }),
            Err(s) => Nfs3Result::Err((s, CREATE3resfail { dir_wcc })),
        }
    }

    /// The shared path of MKDIR, SYMLINK and MKNOD.
    async fn make_in(
        &self,
        dir: &nfs_fh3,
        name: &filename3<'_>,
        kind: FileKind,
        s: &sattr3,
        rdev: u64,
        target: Option<Vec<u8>>,
    ) -> (Res<(nfs_fh3, Attr)>, wcc_data) {
        let r: Res<(nfs_fh3, Attr)> = async {
            let o = self.open_writable(dir)?;
            self.may_add(&o).await?;
            let name = name_of(name)?;
            let attr = self.make(&o, name, kind, s, rdev, target).await?;
            Ok((self.handle(&o, attr.gfid), attr))
        }
        .await;
        let wcc = match self.gw.handles.decode(dir) {
            Ok(h) => self.dir_wcc(h.gfid).await,
            Err(_) => wcc_data::default(),
        };
        (r, wcc)
    }

    async fn mkdir(&self, a: MKDIR3args<'static>) -> MKDIR3res {
        let (r, dir_wcc) = self
            .make_in(
                &a.where_.dir,
                &a.where_.name,
                FileKind::Dir,
                &a.attributes,
                0,
                None,
            )
            .await;
        match r {
            Ok((fh, attr)) => Nfs3Result::Ok(MKDIR3resok {
                obj: Nfs3Option::Some(fh),
                obj_attributes: post_op(Some(&attr), self.fsid()),
                dir_wcc,
            }),
            Err(s) => Nfs3Result::Err((s, MKDIR3resfail { dir_wcc })),
        }
    }

    async fn symlink(&self, a: SYMLINK3args<'static>) -> SYMLINK3res {
        let target = a.symlink.symlink_data.0.to_vec();
        let (r, dir_wcc) = self
            .make_in(
                &a.where_.dir,
                &a.where_.name,
                FileKind::Symlink,
                &a.symlink.symlink_attributes,
                0,
                Some(target),
            )
            .await;
        match r {
            Ok((fh, attr)) => Nfs3Result::Ok(SYMLINK3resok {
                obj: Nfs3Option::Some(fh),
                obj_attributes: post_op(Some(&attr), self.fsid()),
                dir_wcc,
            }),
            Err(s) => Nfs3Result::Err((s, SYMLINK3resfail { dir_wcc })),
        }
    }

    async fn mknod(&self, a: MKNOD3args<'static>) -> MKNOD3res {
        let dev = |d: &devicedata3| libc::makedev(d.spec.specdata1, d.spec.specdata2);
        let (kind, s, rdev) = match &a.what {
            mknoddata3::NF3CHR(d) => (FileKind::CharDev, d.dev_attributes.clone(), dev(d)),
            mknoddata3::NF3BLK(d) => (FileKind::BlockDev, d.dev_attributes.clone(), dev(d)),
            mknoddata3::NF3SOCK(s) => (FileKind::Socket, s.clone(), 0),
            mknoddata3::NF3FIFO(s) => (FileKind::Fifo, s.clone(), 0),
            mknoddata3::default => {
                return Nfs3Result::Err((
                    nfsstat3::NFS3ERR_BADTYPE,
                    MKNOD3resfail {
                        dir_wcc: wcc_data::default(),
                    },
                ))
            }
        };
        let (r, dir_wcc) = self
            .make_in(&a.where_.dir, &a.where_.name, kind, &s, rdev, None)
            .await;
        match r {
            Ok((fh, attr)) => Nfs3Result::Ok(MKNOD3resok {
                obj: Nfs3Option::Some(fh),
                obj_attributes: post_op(Some(&attr), self.fsid()),
                dir_wcc,
            }),
            Err(s) => Nfs3Result::Err((s, MKNOD3resfail { dir_wcc })),
        }
    }

    /// REMOVE and RMDIR.
    async fn unlink(&self, what: &diropargs3<'_>, is_dir: bool) -> (Res<()>, wcc_data) {
        let r: Res<()> = async {
            let o = self.open_writable(&what.dir)?;
            let dir = self.attr(o.h.gfid).await?;
            let name = name_of(&what.name)?;
            tracing::debug!(dir = %o.h.gfid, %name, is_dir, "remove");
            let victim = self.owner_matters(&dir, o.h.gfid, &name, &o.caller).await?;
            if !access::may_unlink(&dir, victim.as_ref(), &o.caller) {
                return Err(nfsstat3::NFS3ERR_ACCES);
            }
            let res = if is_dir {
                self.gw.layer.rmdir(o.h.gfid, &name).await
            } else {
                self.gw
                    .layer
                    .unlink(o.h.gfid, &name, false)
                    .await
                    .map(|_| ())
            };
            res.map_err(|e| fail(&e))
        }
        .await;
        let wcc = match self.gw.handles.decode(&what.dir) {
            Ok(h) => self.dir_wcc(h.gfid).await,
            Err(_) => wcc_data::default(),
        };
        (r, wcc)
    }

    async fn remove(&self, a: REMOVE3args<'static>) -> REMOVE3res {
        match self.unlink(&a.object, false).await {
            (Ok(()), dir_wcc) => Nfs3Result::Ok(REMOVE3resok { dir_wcc }),
            (Err(s), dir_wcc) => Nfs3Result::Err((s, REMOVE3resfail { dir_wcc })),
        }
    }

    async fn rmdir(&self, a: RMDIR3args<'static>) -> RMDIR3res {
        match self.unlink(&a.object, true).await {
            (Ok(()), dir_wcc) => Nfs3Result::Ok(RMDIR3resok { dir_wcc }),
            (Err(s), dir_wcc) => Nfs3Result::Err((s, RMDIR3resfail { dir_wcc })),
        }
    }

    async fn rename(&self, a: RENAME3args<'static, 'static>) -> RENAME3res {
        let r: Res<()> = async {
            let from = self.open_writable(&a.from.dir)?;
            let to = self.open_writable(&a.to.dir)?;
            if from.h.export != to.h.export {
                return Err(nfsstat3::NFS3ERR_XDEV);
            }
            let name = name_of(&a.from.name)?;
            let new_name = name_of(&a.to.name)?;
            let from_dir = self.attr(from.h.gfid).await?;
            let victim = self
                .owner_matters(&from_dir, from.h.gfid, &name, &from.caller)
                .await?;
            if !access::may_unlink(&from_dir, victim.as_ref(), &from.caller) {
                return Err(nfsstat3::NFS3ERR_ACCES);
            }
            let to_dir = self.attr(to.h.gfid).await?;
            let replaced = match self
                .owner_matters(&to_dir, to.h.gfid, &new_name, &to.caller)
                .await
            {
                Err(nfsstat3::NFS3ERR_NOENT) => None,
                other => other?,
            };
            if !access::may_unlink(&to_dir, replaced.as_ref(), &to.caller) {
                return Err(nfsstat3::NFS3ERR_ACCES);
            }
            let req = RenameReq {
                parent: from.h.gfid,
                name,
                new_parent: to.h.gfid,
                new_name,
                flags: 0,
            };
            self.gw.layer.rename(req).await.map_err(|e| fail(&e))
        }
        .await;
        let wcc = |fh: &nfs_fh3| self.gw.handles.decode(fh).ok().map(|h| h.gfid);
        let fromdir_wcc = match wcc(&a.from.dir) {
            Some(g) => self.dir_wcc(g).await,
            None => wcc_data::default(),
        };
        let todir_wcc = match wcc(&a.to.dir) {
            Some(g) => self.dir_wcc(g).await,
            None => wcc_data::default(),
        };
        match r {
            Ok(()) => Nfs3Result::Ok(RENAME3resok {
                fromdir_wcc,
                todir_wcc,
            }),
            Err(s) => Nfs3Result::Err((
                s,
                RENAME3resfail {
                    fromdir_wcc,
                    todir_wcc,
                },
            )),
        }
    }

    async fn link(&self, a: LINK3args<'static>) -> LINK3res {
        let r: Res<Attr> = async {
            let file = self.open_writable(&a.file)?;
            let dir = self.open_writable(&a.link.dir)?;
            if file.h.export != dir.h.export {
                return Err(nfsstat3::NFS3ERR_XDEV);
            }
            self.may_add(&dir).await?;
            let name = name_of(&a.link.name)?;
            let attr = self
                .gw
                .layer
                .link(file.h.gfid, dir.h.gfid, &name)
                .await
                .map_err(|e| fail(&e))?;
            self.gw.access.put(&attr);
            Ok(attr)
        }
        .await;
        let linkdir_wcc = match self.gw.handles.decode(&a.link.dir) {
            Ok(h) => self.dir_wcc(h.gfid).await,
            Err(_) => wcc_data::default(),
        };
        match r {
            Ok(attr) => Nfs3Result::Ok(LINK3resok {
                file_attributes: post_op(Some(&attr), self.fsid()),
                linkdir_wcc,
            }),
            Err(s) => Nfs3Result::Err((
                s,
                LINK3resfail {
                    file_attributes: Nfs3Option::None,
                    linkdir_wcc,
                },
            )),
        }
    }

    /// Directory entries after `cookie` (see `cookies`), at most `max`.
    async fn entries(
        &self,
        o: &Opened<'_>,
        cookie: u64,
        max: u32,
    ) -> Res<(Vec<proto::DirEntry>, bool)> {
        let dir = self.check(o, o.h.gfid, READ).await?;
        if dir.kind != FileKind::Dir {
            return Err(nfsstat3::NFS3ERR_NOTDIR);
        }
        let after = (cookie != 0).then(|| self.gw.cookies.name_after(o.h.gfid, cookie));
        tracing::debug!(dir = %o.h.gfid, cookie, after = ?after, "readdir from");
        let page = self
            .gw
            .layer
            .readdir(o.h.gfid, after, max)
            .await
            .map_err(|e| fail(&e))?;
        Ok((page.entries, page.eof))
    }

    async fn readdir(&self, a: READDIR3args) -> READDIR3res<'static> {
        let r: Res<(Vec<entry3<'static>>, bool)> = async {
            let o = self.open(&a.dir)?;
            // Names and cookies cost about 24 bytes plus the name.
            let budget = (a.count as usize).saturating_sub(128);
            let max = (budget / 32).clamp(1, 4096) as u32;
            let (entries, eof) = self.entries(&o, a.cookie, max).await?;
            let mut out = Vec::new();
            let mut used = 0;
            let mut complete = eof;
            for e in entries {
                let size = 24 + e.name.as_bytes().len().div_ceil(4) * 4;
                if used + size > budget && !out.is_empty() {
                    complete = false;
                    break;
                }
                used += size;
                let cookie = self.gw.cookies.issue(o.h.gfid, &e.name);
                out.push(entry3 {
                    fileid: e.attr.gfid.ino(),
                    name: filename3(Opaque::owned(e.name.0)),
                    cookie,
                });
            }
            tracing::debug!(entries = out.len(), eof = complete, "readdir");
            Ok((out, complete))
        }
        .await;
        match r {
            Ok((entries, eof)) => Nfs3Result::Ok(READDIR3resok {
                dir_attributes: Nfs3Option::None,
                cookieverf: cookieverf3::default(),
                reply: dirlist3 {
                    entries: List(entries),
                    eof,
                },
            }),
            Err(s) => Nfs3Result::Err((s, READDIR3resfail::default())),
        }
    }

    async fn readdirplus(&self, a: READDIRPLUS3args) -> READDIRPLUS3res<'static> {
        let r: Res<(Vec<entryplus3<'static>>, bool)> = async {
            let o = self.open(&a.dir)?;
            let budget = (a.maxcount as usize).saturating_sub(256);
            let max = (budget / 160).clamp(1, 4096) as u32;
            let (entries, eof) = self.entries(&o, a.cookie, max).await?;
            let mut out = Vec::new();
            let mut used = 0;
            let mut complete = eof;
            for e in entries {
                let cookie = self.gw.cookies.issue(o.h.gfid, &e.name);
                let item = entryplus3 {
                    fileid: e.attr.gfid.ino(),
                    name: filename3(Opaque::owned(e.name.0.clone())),
                    cookie,
                    name_attributes: post_op(Some(&e.attr), self.fsid()),
                    name_handle: match self.child_handle(&o, &e.name.0, e.attr.gfid) {
                        Some(fh) => Nfs3Option::Some(fh),
                        None => Nfs3Option::None,
                    },
                };
                let size = item.packed_size() + 4;
                if used + size > budget && !out.is_empty() {
                    complete = false;
                    break;
                }
                used += size;
                self.gw.access.put(&e.attr);
                out.push(item);
            }
            tracing::debug!(entries = out.len(), eof = complete, "readdirplus");
            Ok((out, complete))
        }
        .await;
        match r {
            Ok((entries, eof)) => Nfs3Result::Ok(READDIRPLUS3resok {
                dir_attributes: Nfs3Option::None,
                cookieverf: cookieverf3::default(),
                reply: dirlistplus3 {
                    entries: List(entries),
                    eof,
                },
            }),
            Err(s) => Nfs3Result::Err((s, READDIRPLUS3resfail::default())),
        }
    }

    async fn fsstat(&self, a: FSSTAT3args) -> FSSTAT3res {
        let r: Res<proto::StatFs> = async {
            // Any handle: kubelet's volume stats and df may stat any file,
            // and one inside a sub-volume answers with its limits.
            let o = self.open(&a.fsroot)?;
            let s = self.gw.layer.statfs(o.h.gfid).await.map_err(|e| fail(&e))?;
            Ok(s.as_seen())
        }
        .await;
        match r {
            Ok(s) => {
                let unit = u64::from(s.frsize.max(1));
                Nfs3Result::Ok(FSSTAT3resok {
                    obj_attributes: Nfs3Option::None,
                    tbytes: s.blocks.saturating_mul(unit),
                    fbytes: s.bfree.saturating_mul(unit),
                    abytes: s.bavail.saturating_mul(unit),
                    tfiles: s.files,
                    ffiles: s.ffree,
                    afiles: s.ffree,
                    invarsec: 0,
                })
            }
            Err(s) => Nfs3Result::Err((s, FSSTAT3resfail::default())),
        }
    }

    async fn fsinfo(&self, a: FSINFO3args) -> FSINFO3res {
        match self.open(&a.fsroot) {
            Ok(_) => Nfs3Result::Ok(FSINFO3resok {
                obj_attributes: Nfs3Option::None,
                rtmax: IO_MAX,
                rtpref: IO_MAX,
                rtmult: 4096,
                wtmax: IO_MAX,
                wtpref: IO_MAX,
                wtmult: 4096,
                dtpref: 64 * 1024,
                maxfilesize: i64::MAX as u64,
                time_delta: nfstime3 {
                    seconds: 0,
                    nseconds: 1,
                },
                // FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME
                properties: 0x0001 | 0x0002 | 0x0008 | 0x0010,
            }),
            Err(s) => Nfs3Result::Err((s, FSINFO3resfail::default())),
        }
    }

    async fn pathconf(&self, a: PATHCONF3args) -> PATHCONF3res {
        match self.open(&a.object) {
            Ok(_) => Nfs3Result::Ok(PATHCONF3resok {
                obj_attributes: Nfs3Option::None,
                linkmax: 65_000,
                name_max: proto::NAME_MAX as u32,
                no_trunc: true,
                chown_restricted: true,
                case_insensitive: false,
                case_preserving: true,
            }),
            Err(s) => Nfs3Result::Err((s, PATHCONF3resfail::default())),
        }
    }

    async fn commit(&self, a: COMMIT3args) -> COMMIT3res {
        let r: Res<()> = async {
            let o = self.open(&a.file)?;
            self.gw
                .layer
                .fsync(o.h.gfid, false)
                .await
                .map_err(|e| fail(&e))
        }
        .await;
        match r {
            Ok(()) => Nfs3Result::Ok(COMMIT3resok {
                file_wcc: wcc_data::default(),
                verf: write_verifier(),
            }),
            Err(s) => Nfs3Result::Err((
                s,
                COMMIT3resfail {
                    file_wcc: wcc_data::default(),
                },
            )),
        }
    }
}

/// The times an exclusive create stores its verifier in (as Linux knfsd).
fn times_of(verf: &createverf3) -> (Timespec, Timespec) {
    let v = verf.0;
    let a = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
    let m = u32::from_be_bytes([v[4], v[5], v[6], v[7]]);
    (
        Timespec {
            secs: i64::from(a & 0x7fff_ffff),
            nsecs: 0,
        },
        Timespec {
            secs: i64::from(m & 0x7fff_ffff),
            nsecs: 0,
        },
    )
}

/// SETATTR rules: mode and times by the owner (or root), uid by root,
/// gid by root or an owner who is in the new group, size with write access.
fn check_setattr(current: &Attr, set: &SetAttr, who: &Caller) -> Res<()> {
    if who.uid == 0 {
        return Ok(());
    }
    let owner = who.uid == current.uid;
    if set.perm.is_some() && !owner {
        return Err(nfsstat3::NFS3ERR_PERM);
    }
    if set.uid.is_some_and(|u| u != current.uid) {
        return Err(nfsstat3::NFS3ERR_PERM);
    }
    if let Some(g) = set.gid {
        if g != current.gid && !(owner && who.in_group(g)) {
            return Err(nfsstat3::NFS3ERR_PERM);
        }
    }
    if set.size.is_some() && !access::may_data(current, who, WRITE) {
        return Err(nfsstat3::NFS3ERR_ACCES);
    }
    let explicit = |t: &Option<TimeSet>| matches!(t, Some(TimeSet::At(_)));
    if (explicit(&set.atime) || explicit(&set.mtime)) && !owner {
        return Err(nfsstat3::NFS3ERR_PERM);
    }
    let now = |t: &Option<TimeSet>| matches!(t, Some(TimeSet::Now));
    if (now(&set.atime) || now(&set.mtime)) && !owner && !access::may(current, who, WRITE) {
        return Err(nfsstat3::NFS3ERR_ACCES);
    }
    Ok(())
}
