//! A sub-volume made through the management API, mounted by the real
//! Linux kernel NFS client in a qemu guest the way kubelet mounts a PV's
//! nfs source (`mount -t nfs -o <mountOptions> server:/volume/name`, no
//! nolock), from the network registered for its tenant: df shows the
//! limit, writing past it is EDQUOT, locks work, freeing works.

use serde_json::json;
use tests::kernel_nfs::{self, Net};
use tests::volume::StoreVolume;
use tests::TestCluster;

const MIB: u64 = 1 << 20;

#[test]
fn the_kernel_client_sees_the_quota_in_df_and_gets_edquot_past_it() {
    kernel_nfs::prepare();
    let cluster = TestCluster::start(3);
    let v = StoreVolume::create(&cluster);
    let net = Net::up();
    let api = v.start_api();
    let token = v.tenant("compute-1", &[&net.guest_network()], false);
    let limit = 16 * MIB;
    let r = api.call(
        "POST",
        "/v1/volumes/test/subvolumes",
        &token,
        Some(&json!({"name": "default-data", "bytes": limit, "mode": 0o777})),
    );
    assert_eq!(r.status, 201, "{}", r.raw);
    let export = r.body["export"].as_str().expect("export").to_string();
    let listen = format!("{}:0", net.host).parse().expect("address");
    let portmap = format!("{}:111", net.host);
    let gw = cluster.start_gateway_from_store_on(&v.url, listen, &["--portmap-listen", &portmap]);
    let port = gw.port();
    let options = [
        "vers=3".to_string(),
        "proto=tcp".into(),
        "mountproto=tcp".into(),
        "hard".into(),
        format!("port={port}"),
        format!("mountport={port}"),
    ];
    let run = kernel_nfs::check_pv(&net, &net.host, &export, &options, limit, cluster.root());
    run.assert_passed(
        &[
            "df size = the limit",
            "writing past the limit fails with EDQUOT",
            "usage",
            "fcntl lock on the PV",
            "removing the data frees it",
        ],
        gw.log(),
    );
}
