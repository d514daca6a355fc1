//! Sub-volumes: directories of a volume with an owner (tenant), a byte
//! limit and an optional object limit, recorded in the cluster store and
//! enforced by the bricks (`brick/src/quota.rs`).
//!
//! Map: `record` (the store's document and keys), `manager` (create, list,
//! info, resize, delete, archive, through one client stack of the volume),
//! `tree` (removing a tree through the stack), `size` (`10Gi`).

mod error;
pub mod manager;
pub mod record;
pub mod size;
mod tree;

pub use error::SubvolError;
pub use manager::{CreateReq, Manager, WithUsage};
pub use record::{Settings, State, Subvolume};
