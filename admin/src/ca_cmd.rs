//! `brickfs ca init|issue|scope-key`: the cluster CA, the certificates of
//! every process (each with the role that decides what it may do), and the
//! management API's key for scope tokens.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use tls::ca::{self, Request};
use tls::Role;

#[derive(Args, Debug)]
pub struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Make a new CA in DIR: ca.crt and ca.key (keep this one secret and
    /// offline), and ca.pem, the bundle every process trusts. Also the
    /// management API's scope-token key: scope-signing.json (secret, the
    /// API's) and scope-keys.json (public, the bricks').
    Init {
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "brickfs cluster CA")]
        name: String,
        /// The cluster's name: scope tokens are for this cluster only.
        #[arg(long, default_value = "brickfs")]
        cluster: String,
        /// Days the CA is valid.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue a certificate and key for one process: OUT/NAME.pem and
    /// OUT/NAME.key. The role decides what it may do: brick (serves),
    /// client (a FUSE mount: files), gateway (the NFS gateway: files),
    /// heal (heald, heal and rebalance: files and heal RPCs), admin (the
    /// CLI and the management API: everything), provisioner (the
    /// Kubernetes provisioner: the management API only), api and store
    /// (the management API's and etcd's server certificates), tenant (a
    /// tenant's host: files only inside the sub-volumes of a scope token
    /// for the tenant given with --tenant). A process
    /// finds its own as ROLE.pem in --tls-dir, so name it after its role
    /// there, or point --tls-cert/--tls-key at it.
    Issue {
        /// Common name, also the file names.
        name: String,
        #[arg(long)]
        role: Role,
        /// The CA's directory (as made by `ca init`).
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// Where to write the files [default: the CA's directory].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// A host name or address the certificate also carries, for
        /// clients that check names (HTTPS to the API or etcd); repeatable.
        #[arg(long = "host", value_name = "NAME|IP")]
        hosts: Vec<String>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Valid from this many days from now (negative: back-dated), e.g.
        /// to stage a rotation.
        #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
        from_days: i64,
        /// With --role tenant: the tenant whose host this is.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// A new scope-token signing key in DIR (a rotation): scope-signing.json
    /// is replaced, and its public half added to scope-keys.json beside the
    /// old ones. Copy scope-keys.json to the bricks first, then
    /// scope-signing.json to the API; remove the old key from
    /// scope-keys.json once its tokens expired.
    ScopeKey {
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The cluster's name, as given to `ca init`.
        #[arg(long, default_value = "brickfs")]
        cluster: String,
    },
}

pub fn run(args: CaArgs) -> Result<ExitCode, tls::TlsError> {
    match args.command {
        CaCommand::Init {
            dir,
            name,
            cluster,
            days,
        } => {
            ca::init(&dir, &name, &cluster, days)?;
            println!(
                "CA made in {0}: ca.crt and ca.key (the CA; keep ca.key away from the cluster), \
                 ca.pem (the bundle processes trust); scope-signing.json (the API's, secret) and \
                 scope-keys.json (the bricks') for cluster {1:?}. Next: brickfs ca issue --ca {0} --role brick brick",
                dir.display(),
                cluster
            );
        }
        CaCommand::Issue {
            name,
            role,
            ca: ca_dir,
            out,
            hosts,
            days,
            from_days,
            tenant,
        } => {
            let out = out.unwrap_or_else(|| ca_dir.clone());
            let req = Request {
                role,
                name: name.clone(),
                hosts,
                from_days,
                days,
                tenant,
            };
            let cert = ca::issue(&ca_dir, &out, &req)?;
            println!(
                "{} ({role} {name:?}) and {}",
                cert.display(),
                out.join(format!("{name}.key")).display()
            );
        }
        CaCommand::ScopeKey { ca: dir, cluster } => {
            let kid = tls::scope::generate(&dir, &cluster)?;
            println!(
                "new scope-token key {kid} in {}: copy scope-keys.json to every brick, then \
                 scope-signing.json to the management API",
                dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
