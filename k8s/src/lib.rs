//! `brickfs-provisioner`: a Kubernetes external provisioner that turns
//! PersistentVolumeClaims into brickfs sub-volumes (through the management
//! API, docs/api.md) and NFS PersistentVolumes that Kubernetes' own PV
//! controller binds (the external-provisioning protocol: it acts on claims
//! whose `volume.beta.kubernetes.io/storage-provisioner` names it).
//!
//! - `daemon.rs`, `args.rs`: the process and its flags.
//! - `controller.rs`: leader lease, then the claim and PV controllers and
//!   the sweep; `lease.rs`: the Lease, by hand, optimistic concurrency.
//! - `provision.rs`: a claim → sub-volume → PV; expansion.
//! - `reclaim.rs`: a Released PV → delete/archive/retain, then PV deleted.
//! - `sweep.rs`: sub-volumes a crash left without claim and PV.
//! - `api.rs`: the management API client; `events.rs`: Events.
//! - Pure: `params.rs` (class parameters), `naming.rs` (pathPattern, PV
//!   names), `pv.rs` (the PV object), `quantity.rs` (sizes, durations).
//! - `error.rs`: the one error type and its Event reasons;
//!   `failpoints.rs`: crash points for the tests.

pub mod api;
pub mod args;
pub mod controller;
pub mod daemon;
pub mod error;
pub mod events;
pub mod failpoints;
pub mod lease;
pub mod naming;
pub mod params;
pub mod provision;
pub mod pv;
pub mod quantity;
pub mod reclaim;
pub mod sweep;
