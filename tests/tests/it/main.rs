//! The integration tests: one test binary, one module per subject. One
//! binary links the whole stack once (not once per file), and
//! `--test-threads` then spreads the tests of every module over the threads.
//!
//! `cargo test -p tests --test it -- heal::` runs one module (the filter
//! matches any part of `module::test_name`). Helpers the modules share are
//! in the harness (`tests/src`), not here.

mod add_brick;
mod api;
mod api_tls;
mod bad_input;
mod build_tools;
mod coherence;
mod crash;
mod dev;
mod distribute;
mod distribute_edge;
mod graph_switch;
mod harness;
mod heal;
mod inode_limit;
mod k8s_manifests;
mod metrics;
mod mount_helper;
mod nfs;
mod nfs_write_behind;
mod nlm;
mod nlm_kernel;
mod posix;
mod provisioner;
mod rebalance;
mod replication;
mod security;
mod server_copy;
mod small_files;
mod smoke;
mod soak;
mod subvolume;
mod subvolume_kernel;
mod tenant_scope;
mod volumes;
mod write_behind;
mod write_behind_apps;
