//! Tenant scope: which inodes a connection may touch.
//!
//! A connection of a tenant's host (certificate role `tenant`) reaches
//! nothing until it presents a scope token of the management API
//! (`tls::scope`): signed by a key the brick can check but not use to
//! sign, for the tenant its certificate names and the volume its `hello`
//! named. From then on every operation is checked against the token's
//! sub-volume roots: the object (and for entry operations the parent
//! directories) must carry one of those roots as its sub-volume tag
//! (`quota::SUBVOL_XATTR`, set by the brick when it makes an object, never
//! by a client). So whatever gfid or name a modified client sends, it
//! reaches only its own sub-volumes; anything else is answered as if it
//! did not exist, and logged.
//!
//! Other roles are unscoped (they are the storage operator's own
//! processes), unless they present a token themselves.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use proto::{FsError, FsResult, Gfid};

use crate::ops::Backend;

/// Owner and group squashed to this (nobody) under root squash.
pub const NOBODY: u32 = 65534;

/// What a verified token lets the connection reach.
#[derive(Debug)]
pub struct Scope {
    tenant: String,
    /// Root gfid → root squash.
    roots: HashMap<Gfid, bool>,
    names: Vec<String>,
    expires: u64,
}

impl Scope {
    fn from_claims(claims: tls::scope::Claims) -> FsResult<Scope> {
        let mut roots = HashMap::new();
        let mut names = Vec::new();
        for r in claims.roots {
            let gfid = Gfid::from_hex(&r.id)
                .ok_or_else(|| FsError::Invalid(format!("scope root {:?} is not a gfid", r.id)))?;
            roots.insert(gfid, r.squash);
            names.push(r.name);
        }
        Ok(Scope {
            tenant: claims.sub,
            roots,
            names,
            expires: claims.exp,
        })
    }
}

/// Whether owner 0 is squashed in what an operation creates or chowns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Squash(pub bool);

impl Squash {
    pub fn id(self, id: u32) -> u32 {
        if self.0 && id == 0 {
            NOBODY
        } else {
            id
        }
    }
}

/// One connection's scope, shared by its RPC and data connections.
pub struct ScopeSlot {
    /// A tenant's connection: refused everything until a token is given.
    required: bool,
    /// Fast path: an unscoped connection pays one atomic load per call.
    set: AtomicBool,
    current: RwLock<Option<Arc<Scope>>>,
    /// The volume the connection's `hello` named (a token must be for it).
    volume: Mutex<Option<String>>,
}

impl ScopeSlot {
    pub fn new(who: &tls::Peer) -> ScopeSlot {
        ScopeSlot {
            required: who.needs_scope(),
            set: AtomicBool::new(false),
            current: RwLock::new(None),
            volume: Mutex::new(None),
        }
    }

    pub fn said_hello(&self, volume: &str) {
        *self.volume.lock().unwrap_or_else(PoisonError::into_inner) = Some(volume.to_string());
    }

    fn scope(&self) -> FsResult<Option<Arc<Scope>>> {
        if !self.set.load(Ordering::Acquire) {
            if self.required {
                tracing::warn!("refused: a tenant's connection without a scope token");
                return Err(FsError::Perm);
            }
            return Ok(None);
        }
        let s = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(s) = &s {
            if tls::scope::now() >= s.expires {
                tracing::warn!(tenant = %s.tenant, "refused: the scope token expired (the client must renew it)");
                return Err(FsError::Perm);
            }
        }
        Ok(s)
    }

    /// Checks that every object of `gfids` is inside the scope; returns
    /// the squash of the first one's sub-volume.
    pub fn check(&self, backend: &Backend, gfids: &[Gfid]) -> FsResult<Squash> {
        let Some(scope) = self.scope()? else {
            return Ok(Squash::default());
        };
        let mut squash = None;
        for &gfid in gfids {
            let root = backend.subvol_tag(gfid)?;
            match root.and_then(|r| scope.roots.get(&r)) {
                Some(&s) => {
                    squash.get_or_insert(Squash(s));
                }
                None => {
                    tracing::warn!(tenant = %scope.tenant, %gfid, subvolume = ?root.map(|r| r.to_hex()),
                        "refused: an object outside the connection's scope");
                    return Err(FsError::NotFound);
                }
            }
        }
        Ok(squash.unwrap_or_default())
    }

    /// The roots of the connection's scope; `None` for an unscoped one
    /// (quota usage is then shown and taken for those sub-volumes only).
    pub fn roots(&self) -> FsResult<Option<Vec<Gfid>>> {
        Ok(self.scope()?.map(|s| s.roots.keys().copied().collect()))
    }

    /// Verifies `token` with the keys in `keys` and makes it this
    /// connection's scope (again: a renewal replaces the old one).
    pub fn install(&self, who: &tls::Peer, keys: Option<&PathBuf>, token: &str) -> FsResult<()> {
        let refuse = |why: String| {
            tracing::warn!(%who, why, "scope token refused");
            FsError::Perm
        };
        let Some(keys) = keys else {
            return Err(refuse(
                "this brick has no scope keys (--scope-keys, or scope-keys.json in --tls-dir)"
                    .into(),
            ));
        };
        let verifier = tls::scope::Verifier::load(keys).map_err(|e| refuse(e.to_string()))?;
        let claims = verifier
            .verify(token, tls::scope::now())
            .map_err(|e| refuse(e.to_string()))?;
        if let Some(tenant) = who.tenant() {
            if claims.sub != tenant {
                return Err(refuse(format!(
                    "token of tenant {:?} on a certificate of tenant {tenant:?}",
                    claims.sub
                )));
            }
        }
        let volume = self
            .volume
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if volume.as_deref() != Some(claims.vol.as_str()) {
            return Err(refuse(format!(
                "token for volume {:?}, the connection's is {volume:?}",
                claims.vol
            )));
        }
        let scope = Scope::from_claims(claims)?;
        if let Some(old) = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            if old.tenant != scope.tenant {
                return Err(refuse("a renewal for another tenant".into()));
            }
        }
        tracing::info!(tenant = %scope.tenant, subvolumes = ?scope.names, expires = scope.expires,
            "connection scoped");
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(scope));
        self.set.store(true, Ordering::Release);
        Ok(())
    }
}
