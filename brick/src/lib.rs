//! brickd: stores one brick of a volume as plain files under a directory and
//! serves it over tarpc (the `proto::Brick` service).
//!
//! Map: `server` (listener, connections, tarpc glue) → `ops` (posix backend,
//! one function per fop) → `store` (gfid index, safe resolution),
//! `changelog` (pending counters, heal index, dirty set), `locks` (inodelks,
//! record locks), `attr` (stat → wire attributes), `error`.
//!
//! Architecture invariants: no syscall resolves a client-chosen path outside
//! the brick directory (see `store`); every lock a connection holds ends with
//! the connection.

mod attr;
mod changelog;
mod data;
mod dirty;
pub mod error;
mod heal;
mod limits;
mod locks;
mod ops;
mod orphans;
mod server;
mod store;

pub use error::BrickError;
pub use server::{check, serve, BrickConfig};

#[cfg(test)]
mod tests;
