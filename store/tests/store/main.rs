//! The store's tests: one suite (`suite.rs`) run against both backends
//! (`file.rs`, and `etcd.rs` against a real etcd started by the test), plus
//! what is particular to each.

mod etcd;
mod etcd_server;
mod file;
mod suite;
