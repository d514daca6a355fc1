//! brickd: stores one brick of a volume as plain files under a directory and
//! serves it over tarpc (the `proto::Brick` service).
//!
//! Map: `daemon` (the brickd command line) → `server` (listener,
//! connections, tarpc glue) → `ops` (posix backend, one function per fop) →
//! `store` (gfid index, safe resolution), `staging` (crash safety: objects
//! made off to the side, recovery at start), `changelog` (pending counters,
//! heal index, dirty set), `locks` (inodelks, record locks), `quota`
//! (sub-volume usage and limits), `scope` (what a tenant's connection may
//! reach), `attr` (stat →
//! wire attributes), `failpoints` (crash tests only), `error`.
//!
//! Architecture invariants: no syscall resolves a client-chosen path outside
//! the brick directory (see `store`); every lock a connection holds ends with
//! the connection; a brick killed at any instant restarts consistent, and no
//! object is ever visible without its gfid (see `staging`).

mod attr;
mod changelog;
pub mod daemon;
mod data;
mod dirty;
pub mod error;
pub mod failpoints;
mod heal;
mod limits;
mod locks;
mod ops;
mod orphans;
mod quota;
mod scope;
mod server;
mod staging;
pub mod stats;
mod store;
mod top;

pub use error::BrickError;
pub use server::{check, serve, BrickConfig};

/// Parsers of what arrives from the network, for the fuzz targets in
/// `fuzz/` only: not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::data::read_request;
}

#[cfg(test)]
mod tests;
