//! The brickfs client stack: layers over one async trait ([`Layer`]).
//! `protocol` talks to one brick; `replicate` turns three of them into one
//! replica set with quorum, changelog and eager locks.

pub mod layer;

pub use layer::{Layer, NewEntry};
