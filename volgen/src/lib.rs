//! Volume definitions (specs) and, later, the graphs generated from them.
//!
//! Architecture invariant: this library does no I/O. Everything that starts
//! processes, touches files or talks to bricks lives in the `brickfs` binary
//! (`src/main.rs` and its modules, e.g. `src/dev/`), so specs and graph
//! generation stay pure and golden-testable.
//!
//! Volume specs and the real volume store arrive with the volgen issue;
//! until then the binary has `brickfs dev`, `brickfs heald` and
//! `brickfs volume heal`, which finds volumes in the `cluster.json` of a
//! `brickfs dev` state directory (`src/store.rs`).
