//! The cluster store: where volume specs live, by key. One trait, two
//! backends: a local directory (`file:///var/lib/brickfs`, one host,
//! nothing to install) and etcd (`etcd://host:2379[,host:2379…]`, several
//! hosts sharing a cluster). Every write is a compare-and-swap on the key's
//! revision, so two admins (or two hosts) never overwrite each other
//! unknowingly.

use std::sync::Arc;

mod etcd;
mod file;
pub mod key;

pub use etcd::EtcdStore;
pub use file::{dir_of_url, file_url, FileStore};

/// A key's version: changes with every successful write of the key.
pub type Revision = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    pub revision: Revision,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported store URL {0:?} (use file:///DIR, etcd://HOST:PORT[,HOST:PORT] or etcds://… for TLS)")]
    BadUrl(String),
    #[error("bad key {0:?} (keys are /-separated names of [A-Za-z0-9._-])")]
    BadKey(String),
    #[error("the store at {url} is unreachable: {why}")]
    Unreachable { url: String, why: String },
    #[error("{key} changed meanwhile (expected revision {expected:?}, found {found:?}); nothing was written")]
    Conflict {
        key: String,
        expected: Option<Revision>,
        found: Option<Revision>,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("corrupt store entry {key}: {why}")]
    Corrupt { key: String, why: String },
}

#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// The URL the store was opened with (for messages).
    fn url(&self) -> &str;
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError>;
    /// Every entry whose key starts with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError>;
    /// Writes `value` if the key's revision is `expected` (`None`: the key
    /// must not exist); returns the new revision. On a mismatch nothing is
    /// written and the error says what was found.
    async fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Revision>,
    ) -> Result<Revision, StoreError>;
    /// Deletes the key if its revision is `expected`.
    async fn delete(&self, key: &str, expected: Revision) -> Result<(), StoreError>;
    /// Returns `key`'s entry as soon as its revision is no longer `seen`
    /// (`None`: the key was absent), or when `timeout` has passed, whichever
    /// comes first. Survives a lost connection: it is made again and the key
    /// read afresh, so a change made meanwhile is not missed.
    async fn watch(
        &self,
        key: &str,
        seen: Option<Revision>,
        timeout: std::time::Duration,
    ) -> Result<Option<Entry>, StoreError>;
}

/// Opens a store by URL: `file:///DIR` or `/DIR` (`FileStore::open` has
/// the details; nothing is created
/// until the first write), `etcd://HOST:PORT[,HOST:PORT…]` (checks that etcd
/// answers: `Unreachable` within a few seconds if not), or `etcds://…`
/// (the same over mutual TLS: etcd's certificate has role store, ours is
/// the process's own).
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("etcd://") || url.starts_with("etcds://") {
        Ok(Arc::new(EtcdStore::open(url).await?))
    } else {
        // A `file:` URL or an absolute path; BadUrl for anything else.
        Ok(Arc::new(FileStore::open(url)?))
    }
}
