//! Volume definitions and what is generated from them. Pure: no I/O, no
//! network, no store, so everything here is unit- and golden-testable.
//!
//! - [`spec`]: `VolumeSpec`, the JSON document the cluster store keeps at
//!   `volumes/<name>`, the validation of names, brick lists and options, and
//!   the options table.
//! - [`secs`]: durations in seconds, parsed the same way for every flag and
//!   every option.
//! - [`plan`]: what a client needs from a spec (bricks, identities,
//!   timeouts), refusing volumes it cannot serve.
//! - [`graph`]: a spec → the client graph (the layers of a mount's client
//!   stack, rendered like a Gluster volfile) and one brick's config;
//!   golden-tested against `tests/golden/`.
//!
//! Reading specs from the store and running clients of them is the
//! `volume` crate's job; the admin CLI (`brickfs`) is the `admin` crate.

pub mod graph;
pub mod plan;
pub mod secs;
pub mod spec;
