//! The command line (every flag also from the environment).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// brickfs-provisioner: a Kubernetes external provisioner of brickfs
/// sub-volumes, mounted over NFS.
///
/// For each PersistentVolumeClaim whose StorageClass names this
/// provisioner (`provisioner: brickfs.io/nfs`), it makes a sub-volume
/// through the brickfs management API with the tenant token, then a
/// PersistentVolume (`nfs: {server, path}`) bound to the claim. It deletes,
/// archives or keeps the sub-volume when the PV is released, resizes it
/// when the claim grows, and writes every failure as an Event on the claim.
///
/// StorageClass parameters: `volume` (required), `server` (required: the
/// NFS gateway's stable address), `pathPattern` (e.g.
/// `${.PVC.namespace}-${.PVC.name}`), `onDelete` (delete|archive|retain),
/// `archiveKeep` (e.g. `720h`), `inodes`, `mode` (octal), `uid`, `gid`;
/// claims may override the last three with the annotations
/// `brickfs.io/mode`, `brickfs.io/uid`, `brickfs.io/gid`.
///
/// Of several replicas one acts, the holder of a coordination.k8s.io
/// Lease; the others take over once it expires.
#[derive(Parser, Debug, Clone)]
#[command(name = "brickfs-provisioner", version)]
pub struct Args {
    /// The management API (brickfs-api), e.g. https://brickfs-api:9240.
    /// Reached over mutual TLS with this provisioner's certificate (role
    /// provisioner, --tls-dir); http:// only with --insecure.
    #[arg(long, value_name = "URL", env = "BRICKFS_API_URL")]
    pub api: String,

    /// The storage cluster's CA bundle and this provisioner's certificate:
    /// ca.pem, provisioner.pem and provisioner.key in --tls-dir (`brickfs ca
    /// issue --role provisioner NAME` on the storage side). Read again when
    /// they change: a renewed Secret applies without a restart.
    #[command(flatten)]
    pub tls: tls::TlsArgs,

    #[command(flatten)]
    pub metrics: telemetry::MetricsArgs,

    /// File holding the tenant token (a mounted Secret); read again for
    /// every request, so a rotated Secret applies without a restart.
    /// Without it the token comes from BRICKFS_API_TOKEN.
    #[arg(long, value_name = "PATH", env = "BRICKFS_API_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// The provisioner name StorageClasses name in `provisioner:`.
    #[arg(
        long,
        default_value = "brickfs.io/nfs",
        env = "BRICKFS_PROVISIONER_NAME"
    )]
    pub provisioner_name: String,

    /// Kubeconfig to use; default: in-cluster or KUBECONFIG / ~/.kube/config.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Namespace of the leader-election Lease.
    #[arg(
        long,
        default_value = "brickfs-system",
        env = "BRICKFS_LEASE_NAMESPACE"
    )]
    pub lease_namespace: String,

    /// Name of the leader-election Lease.
    #[arg(
        long,
        default_value = "brickfs-provisioner",
        env = "BRICKFS_LEASE_NAME"
    )]
    pub lease_name: String,

    /// Seconds the lease stays ours without renewal; a standby takes over
    /// after that long without a renewal.
    #[arg(long, value_name = "SECS", default_value = "15", value_parser = volgen::secs::parse_timeout)]
    pub lease_duration: Duration,

    /// Seconds between two sweeps for sub-volumes left without claim or PV
    /// (crash leftovers).
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = volgen::secs::parse_retry)]
    pub sweep_interval: Duration,

    /// Seconds one management API request may take.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = volgen::secs::parse_timeout)]
    pub api_timeout: Duration,

    /// Claims and PVs reconciled at once.
    #[arg(long, default_value = "16")]
    pub concurrency: u16,

    /// Log level or directives (`info`, `k8s=debug,info`).
    #[arg(long, value_name = "LEVEL", env = "BRICKFS_LOG_LEVEL")]
    pub log_level: Option<String>,
}
