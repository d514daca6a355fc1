//! `brickfs subvolume create|list|info|resize|delete|archive|purge`: the
//! `subvolume` crate's operations on the command line.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use subvolume::size::{parse_bytes, show_bytes};
use subvolume::{CreateReq, Manager, Settings, Subvolume};

use crate::error::{Error, IoContext, Result};

#[derive(Args, Debug)]
#[command(
    long_about = "Sub-volumes: directories of a started volume with an owner and limits \
    the bricks enforce (EDQUOT past them, for FUSE and NFS clients alike). `df` inside one \
    shows its limit as the size. Mount one alone with `brickfs-mount VOLUME/NAME DIR` or \
    over NFS at `/VOLUME/NAME`."
)]
pub struct SubvolumeArgs {
    #[command(subcommand)]
    cmd: SubvolumeCmd,
}

#[derive(Subcommand, Debug)]
enum SubvolumeCmd {
    /// Make a sub-volume (the same command again is a no-op; one stopped
    /// half-way is finished).
    Create(CreateArgs),
    /// The sub-volumes of a volume (with --archived: the archives).
    List(ListArgs),
    /// One sub-volume with its usage now.
    Info(NameArgs),
    /// New limits: grow at any time, shrink down to current usage.
    Resize(ResizeArgs),
    /// Remove a sub-volume and all its data.
    Delete(NameArgs),
    /// Move a sub-volume's data aside under /.archive and keep it.
    Archive(ArchiveArgs),
    /// Remove archives whose --keep time is up.
    Purge(VolumeOnly),
}

/// The limits `create` and `resize` take.
#[derive(Args, Debug)]
struct Limits {
    /// Byte limit: 10Gi, 500M, 4096 …
    #[arg(long, value_parser = parse_bytes)]
    size: u64,
    /// Limit on files, directories and other objects (for resize, 0: none).
    #[arg(long)]
    inodes: Option<u64>,
}

#[derive(Args, Debug)]
struct CreateArgs {
    volume: String,
    name: String,
    #[command(flatten)]
    limits: Limits,
    /// Owning tenant (see `brickfs tenant`).
    #[arg(long)]
    tenant: Option<String>,
    /// Mode of its root directory, octal.
    #[arg(long, default_value = "0755", value_parser = parse_mode)]
    mode: u32,
    #[arg(long, default_value_t = 0)]
    uid: u32,
    #[arg(long, default_value_t = 0)]
    gid: u32,
    /// Root squash (owner 0 acts as nobody, 65534, over NFS and for
    /// tenants' hosts on the bricks): true or false [default: true for a
    /// tenant's sub-volume, false for the admin's own].
    #[arg(long, value_name = "BOOL")]
    root_squash: Option<bool>,
}

#[derive(Args, Debug)]
struct ListArgs {
    volume: String,
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long)]
    archived: bool,
}

#[derive(Args, Debug)]
struct NameArgs {
    volume: String,
    name: String,
}

#[derive(Args, Debug)]
struct VolumeOnly {
    volume: String,
}

#[derive(Args, Debug)]
struct ResizeArgs {
    volume: String,
    name: String,
    #[command(flatten)]
    limits: Limits,
}

#[derive(Args, Debug)]
struct ArchiveArgs {
    volume: String,
    name: String,
    /// Keep the archive this long (e.g. 30d, 12h, 3600), then `purge`
    /// removes it; kept for ever without.
    #[arg(long, value_parser = parse_keep)]
    keep: Option<u64>,
}

fn parse_mode(s: &str) -> std::result::Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| m & !0o7777 == 0)
        .ok_or_else(|| format!("{s:?} is not an octal mode"))
}

fn parse_keep(s: &str) -> std::result::Result<u64, String> {
    let (num, mult) = match s.chars().last() {
        Some('d') => (&s[..s.len() - 1], 86_400),
        Some('h') => (&s[..s.len() - 1], 3600),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('s') => (&s[..s.len() - 1], 1),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .map(|n| n.saturating_mul(mult))
        .map_err(|_| format!("{s:?}: a duration like 30d, 12h, 90m or seconds"))
}

fn show(sub: &Subvolume) -> String {
    format!(
        "{:<24} {:<9} {:>10} {:<12} {}",
        sub.name,
        format!("{:?}", sub.state).to_lowercase(),
        show_bytes(sub.settings.bytes),
        sub.settings.tenant.as_deref().unwrap_or("-"),
        sub.path
    )
}

pub fn run(args: SubvolumeArgs, store_url: Option<&str>) -> Result<ExitCode> {
    let url = store_url
        .ok_or_else(|| Error::Msg("no cluster store: give --store URL or BRICKFS_STORE".into()))?
        .to_string();
    let volume = match &args.cmd {
        SubvolumeCmd::Create(a) => a.volume.clone(),
        SubvolumeCmd::List(a) => a.volume.clone(),
        SubvolumeCmd::Info(a) | SubvolumeCmd::Delete(a) => a.volume.clone(),
        SubvolumeCmd::Resize(a) => a.volume.clone(),
        SubvolumeCmd::Archive(a) => a.volume.clone(),
        SubvolumeCmd::Purge(a) => a.volume.clone(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .ctx(|| "starting the tokio runtime".into())?;
    rt.block_on(async {
        let m = Manager::open(&url, &volume).await.map_err(msg)?;
        let out = run_on(&m, args.cmd).await;
        m.close().await;
        out
    })
}

fn msg(e: subvolume::SubvolError) -> Error {
    Error::Msg(e.to_string())
}

async fn run_on(m: &Manager, cmd: SubvolumeCmd) -> Result<ExitCode> {
    match cmd {
        SubvolumeCmd::Create(a) => {
            let req = CreateReq {
                name: a.name,
                settings: Settings {
                    tenant: a.tenant,
                    bytes: a.limits.size,
                    inodes: a.limits.inodes,
                    mode: a.mode,
                    uid: a.uid,
                    gid: a.gid,
                    labels: Default::default(),
                    root_squash: a.root_squash,
                },
            };
            let sub = m.create(&req).await.map_err(msg)?;
            println!(
                "subvolume create: success: {}/{} ({}, path {})",
                sub.volume,
                sub.name,
                show_bytes(sub.settings.bytes),
                sub.path
            );
        }
        SubvolumeCmd::List(a) => {
            let subs = if a.archived {
                m.archives(a.tenant.as_deref()).await
            } else {
                m.list(a.tenant.as_deref()).await
            }
            .map_err(msg)?;
            println!(
                "{:<24} {:<9} {:>10} {:<12} PATH",
                "NAME", "STATE", "LIMIT", "TENANT"
            );
            for s in subs {
                println!("{}", show(&s));
            }
        }
        SubvolumeCmd::Info(a) => {
            let w = m.info(&a.name).await.map_err(msg)?;
            let s = &w.sub;
            println!("Name: {}/{}", s.volume, s.name);
            println!("State: {:?}", s.state);
            let set = &s.settings;
            println!("Tenant: {}", set.tenant.as_deref().unwrap_or("-"));
            println!("Path: {}", s.path);
            println!("Limit: {} ({} bytes)", show_bytes(set.bytes), set.bytes);
            match set.inodes {
                Some(i) => println!("Object limit: {i}"),
                None => println!("Object limit: none"),
            }
            match w.usage {
                Some(u) => {
                    println!("Used: {} bytes, {} objects", u.bytes, u.inodes);
                    println!("Available: {} bytes", set.bytes.saturating_sub(u.bytes));
                }
                None => println!("Used: unknown (limits not on the bricks yet)"),
            }
            let (uid, gid) = set.root_owner();
            println!("Mode: {:o}, owner {uid}:{gid}", set.mode);
            println!(
                "Root squash: {}",
                if set.squashes_root() { "on" } else { "off" }
            );
        }
        SubvolumeCmd::Resize(a) => {
            let inodes = a.limits.inodes.map(|i| (i > 0).then_some(i));
            let sub = m
                .resize(&a.name, a.limits.size, inodes)
                .await
                .map_err(msg)?;
            println!(
                "subvolume resize: success: {}/{} is {}",
                sub.volume,
                sub.name,
                show_bytes(sub.settings.bytes)
            );
        }
        SubvolumeCmd::Delete(a) => {
            m.delete(&a.name).await.map_err(msg)?;
            println!(
                "subvolume delete: success: {}/{} and its data removed",
                a.volume, a.name
            );
        }
        SubvolumeCmd::Archive(a) => {
            let sub = m.archive(&a.name, a.keep).await.map_err(msg)?;
            println!(
                "subvolume archive: success: {}/{} moved to {}",
                sub.volume, sub.name, sub.path
            );
        }
        SubvolumeCmd::Purge(a) => {
            let n = m.purge_expired().await.map_err(msg)?;
            println!(
                "subvolume purge: {n} expired archive(s) of {} removed",
                a.volume
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
