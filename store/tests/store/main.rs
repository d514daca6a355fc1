//! The store's tests: one suite (`suite.rs`) run against both backends
//! (`file.rs`, and `etcd.rs` against a real etcd started by the test with
//! the integration-test harness's launcher, `tests::etcd`), plus what is
//! particular to each.

mod etcd;
mod file;
mod suite;
