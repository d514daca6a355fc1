//! MOUNT v3 arguments: the `dirpath` of MNT and UMNT
//! (nfs-gateway/src/mount.rs) and the export lookup every MNT makes with
//! it (exports::Exports::for_mount_path), against a fixed set of exports.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nfs_gateway::exports::Exports;
use nfs_gateway::mount;

fn exports() -> &'static Exports {
    static EXPORTS: OnceLock<Exports> = OnceLock::new();
    EXPORTS.get_or_init(|| {
        Exports::parse(
            "gv0",
            &[
                "/gv0/pvc-1,ro,allow=10.0.0.0/8".into(),
                "/gv0/pvc-1/deep,root_squash".into(),
            ],
        )
        .expect("the fixed exports parse")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Some(path) = mount::dirpath(data) {
        assert!(path.len() <= data.len());
        if let Ok((index, rule, names)) = exports().for_mount_path(path) {
            assert!(exports().rule(index).is_some());
            let _ = (rule, names);
        }
    }
});
