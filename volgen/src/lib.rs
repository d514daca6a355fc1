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
//! Architecture invariant: this library does no I/O but [`plan::fetch`]
//! (one spec read from the store, for the client binaries). Everything that starts
//! processes, touches files or talks to bricks or the store lives in the
//! `brickfs` binary (`src/main.rs` and its modules: `src/volume_cmd/` for
//! `brickfs volume create|start|…`, `src/dev/`, `src/heal_cmd/`), so specs
//! and graph generation stay pure and golden-testable.
//!
//! `brickfs volume heal` still finds volumes in the `cluster.json` of a
//! `brickfs dev` state directory (`src/store.rs`); the binary's
//! `volume_cmd::stored_bricks` is what it will call once it moves to the
//! store.

pub mod follow;
pub mod graph;
pub mod plan;
pub mod spec;
