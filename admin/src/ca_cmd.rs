//! `brickfs ca init|issue`: the cluster CA and the certificates of every
//! process, each with the role that decides what it may do.

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
    /// offline), and ca.pem, the bundle every process trusts.
    Init {
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "brickfs cluster CA")]
        name: String,
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
    /// (the management API's and etcd's server certificates). A process
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
    },
}

pub fn run(args: CaArgs) -> Result<ExitCode, tls::TlsError> {
    match args.command {
        CaCommand::Init { dir, name, days } => {
            ca::init(&dir, &name, days)?;
            println!(
                "CA made in {0}: ca.crt and ca.key (the CA; keep ca.key away from the cluster), \
                 ca.pem (the bundle processes trust). Next: brickfs ca issue --ca {0} --role brick brick",
                dir.display()
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
        } => {
            let out = out.unwrap_or_else(|| ca_dir.clone());
            let req = Request {
                role,
                name: name.clone(),
                hosts,
                from_days,
                days,
            };
            let cert = ca::issue(&ca_dir, &out, &req)?;
            println!(
                "{} ({role} {name:?}) and {}",
                cert.display(),
                out.join(format!("{name}.key")).display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
