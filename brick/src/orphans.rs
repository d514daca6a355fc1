//! Files unlinked while a client still has them open. POSIX keeps such a
//! file alive until its last close; here the brick keeps the file's gfid
//! index link (the data stays reachable by gfid, with no name) until the
//! client that unlinked it says it closed it, or the client is gone: no
//! connection from it for a grace period (a reconnect after a timeout keeps
//! the file).
//!
//! Marker files in `indices/open-unlinked/` survive a brick restart; every
//! connection is gone by then, so a restart purges them all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use proto::{FsResult, Gfid};

use crate::store::Store;
use proto::ClientId;

pub struct Orphans {
    dir: PathBuf,
    held: Mutex<HashMap<Gfid, ClientId>>,
}

impl Orphans {
    /// Purges what a previous run left.
    pub fn open(private: &Path, store: &Store) -> std::io::Result<Orphans> {
        let dir = private.join("indices/open-unlinked");
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if let Some(g) = entry.file_name().to_str().and_then(Gfid::from_hex) {
                if let Err(e) = store.drop_index_if_orphan(g) {
                    tracing::warn!(gfid = %g, error = %e, "cannot purge an open-unlinked file");
                }
            }
            std::fs::remove_file(entry.path())?;
        }
        Ok(Orphans {
            dir,
            held: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Gfid, ClientId>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `gfid` (which just lost its last name) for `client`.
    pub fn keep(&self, gfid: Gfid, client: ClientId) -> FsResult<()> {
        std::fs::File::create(self.dir.join(gfid.to_hex()))?;
        self.lock().insert(gfid, client);
        Ok(())
    }

    /// The unlink `keep` was for did not happen: the file keeps its name.
    pub fn forget(&self, gfid: Gfid) {
        self.lock().remove(&gfid);
        if let Err(e) = std::fs::remove_file(self.dir.join(gfid.to_hex())) {
            tracing::warn!(%gfid, error = %e, "cannot remove an open-unlinked marker");
        }
    }

    /// `client` closed the file: it goes now.
    pub fn purge(&self, store: &Store, gfid: Gfid, client: ClientId) -> FsResult<()> {
        let mine = {
            let mut held = self.lock();
            match held.get(&gfid) {
                Some(c) if *c == client => held.remove(&gfid).is_some(),
                _ => false,
            }
        };
        if mine {
            self.drop(store, gfid)?;
        }
        Ok(())
    }

    /// The client is gone: everything it kept goes.
    pub fn release_client(&self, store: &Store, client: ClientId) {
        let gone: Vec<Gfid> = {
            let mut held = self.lock();
            let gone = held
                .iter()
                .filter(|(_, c)| **c == client)
                .map(|(g, _)| *g)
                .collect::<Vec<_>>();
            for g in &gone {
                held.remove(g);
            }
            gone
        };
        for g in gone {
            if let Err(e) = self.drop(store, g) {
                tracing::warn!(gfid = %g, error = %e, "cannot purge an open-unlinked file");
            }
        }
    }

    fn drop(&self, store: &Store, gfid: Gfid) -> FsResult<()> {
        store.drop_index_if_orphan(gfid)?;
        match std::fs::remove_file(self.dir.join(gfid.to_hex())) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
