//! Volume definitions (specs) and the graphs generated from them.
//!
//! - [`spec`]: `VolumeSpec`, the JSON document the cluster store keeps at
//!   `volumes/<name>`, and the validation of names, brick lists and options.
//! - [`plan`]: what a client needs from a spec (bricks, identities,
//!   timeouts), refusing volumes it cannot serve.
//! - [`graph`]: pure functions from a spec to the client graph (the layers
//!   of a mount's client stack, rendered like a Gluster volfile) and to one
//!   brick's config; golden-tested against `tests/golden/`.
//!
//! - [`follow`]: a running client following its volume in the store.
//!
//! Architecture invariant: this library does no I/O but [`plan::fetch`]
//! (one spec read from the store, for the client binaries) and [`follow`]
//! (watching that spec and switching graphs). Everything that starts
//! processes, touches files or talks to bricks or the store lives in the
//! `brickfs` binary (`src/main.rs` and its modules: `src/volume_cmd/` for
//! `brickfs volume create|start|…`, `src/dev/`, `src/heal_cmd/`), so specs
//! and graph generation stay pure and golden-testable.
//!
//! `brickfs volume heal` reads volumes from the store, and still
//! understands the `cluster.json` of a `brickfs dev` state directory given
//! as the store (`src/store.rs`).

pub mod follow;
pub mod graph;
pub mod plan;
pub mod spec;
