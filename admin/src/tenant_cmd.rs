//! `brickfs tenant create|list|revoke`: who may use the management API,
//! and from which networks the NFS gateway serves each one.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::error::{Error, IoContext, Result};

#[derive(Args, Debug)]
#[command(
    long_about = "Tenants own sub-volumes. Each has a token for the management API \
    (brickfs-api), printed once by `create` (the store keeps only its hash), and the client \
    networks the NFS gateway exports its sub-volumes to: a client address inside a tenant's \
    network may mount only that tenant's sub-volumes. An admin tenant's token sees and changes \
    every sub-volume."
)]
pub struct TenantArgs {
    #[command(subcommand)]
    cmd: TenantCmd,
}

#[derive(Subcommand, Debug)]
enum TenantCmd {
    /// Make a tenant and print its token (shown this once only).
    Create(CreateArgs),
    /// Tenants with their networks.
    List,
    /// End a tenant and its token at once; its sub-volumes stay, unexported.
    Revoke(NameArg),
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// 1 to 40 of [a-z0-9-], starting with a letter.
    name: String,
    /// A client network of the tenant (ADDRESS or ADDRESS/PREFIX); repeat
    /// for several. Without any, its sub-volumes are exported nowhere.
    #[arg(long = "network", value_name = "CIDR")]
    networks: Vec<String>,
    /// Its token sees and changes every tenant's sub-volumes.
    #[arg(long)]
    admin: bool,
}

#[derive(Args, Debug)]
struct NameArg {
    name: String,
}

fn msg(e: tenant::TenantError) -> Error {
    Error::Msg(e.to_string())
}

pub fn run(args: TenantArgs, store_url: Option<&str>) -> Result<ExitCode> {
    let url = store_url
        .ok_or_else(|| Error::Msg("no cluster store: give --store URL or BRICKFS_STORE".into()))?
        .to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ctx(|| "starting the tokio runtime".into())?;
    rt.block_on(async {
        let store = store::open(&url)
            .await
            .map_err(|e| Error::Msg(e.to_string()))?;
        let store = store.as_ref();
        match args.cmd {
            TenantCmd::Create(a) => {
                let nets = tenant::parse_networks(&a.networks).map_err(msg)?;
                let (t, token) = tenant::create(store, &a.name, nets, a.admin)
                    .await
                    .map_err(msg)?;
                eprintln!(
                    "tenant create: success: {}{}; its token (shown only now):",
                    t.name,
                    if t.admin { " (admin)" } else { "" }
                );
                println!("{token}");
            }
            TenantCmd::List => {
                println!("{:<24} {:<6} NETWORKS", "NAME", "ADMIN");
                for t in tenant::list(store).await.map_err(msg)? {
                    let nets: Vec<String> = t.networks.iter().map(ToString::to_string).collect();
                    println!(
                        "{:<24} {:<6} {}",
                        t.name,
                        if t.admin { "yes" } else { "no" },
                        if nets.is_empty() {
                            "-".to_string()
                        } else {
                            nets.join(",")
                        }
                    );
                }
            }
            TenantCmd::Revoke(a) => {
                tenant::revoke(store, &a.name).await.map_err(msg)?;
                println!(
                    "tenant revoke: success: {} (its token no longer works)",
                    a.name
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
