//! `brickfs-api`: the management API daemon (`docs/api.md`). Serves until
//! SIGINT/SIGTERM; announces `LISTENING <addr>` on stdout once it serves.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};

#[derive(Parser, Debug)]
#[command(
    name = "brickfs-api",
    version,
    about = "brickfs management API: sub-volumes over HTTPS/JSON for compute clusters",
    long_about = "brickfs management API.\n\n\
        Serves sub-volume create/get/list/resize/delete/archive over HTTPS/JSON (see \
        docs/api.md). Each connection must show a certificate of the cluster CA, of role \
        provisioner, tenant or admin (plain HTTP only with --insecure), and each request \
        is authenticated by a tenant's token \
        (`Authorization: Bearer <token>`, tokens from `brickfs tenant create`). A tenant sees \
        and changes only its own sub-volumes; an admin token sees all. Compute clusters \
        (the Kubernetes provisioner) need only this address, a token and the NFS gateway's \
        address: never the bricks or the store.\n\n\
        Example: brickfs-api --store etcd://10.0.0.5:2379 --listen 0.0.0.0:9240"
)]
struct Args {
    #[command(flatten)]
    store: volume::args::StoreArg,
    /// Address to serve on (port 0: any free port, printed on stdout).
    #[arg(long, default_value = "0.0.0.0:9240", value_name = "ADDR")]
    listen: SocketAddr,
    /// Log filter: error, warn, info, debug, trace, or tracing directives.
    #[arg(long, env = "BRICKFS_LOG_LEVEL", value_name = "LEVEL")]
    log_level: Option<String>,
    /// The API reaches the bricks as an admin (ROLE.pem = admin.pem in
    /// --tls-dir): it makes sub-volumes and sets their limits.
    #[command(flatten)]
    tls: tls::TlsArgs,
    /// The key that signs tenants' scope tokens (as `brickfs ca init`
    /// writes it) [default: scope-signing.json in --tls-dir, if there].
    /// Without it the API hands out no scope tokens.
    #[arg(long, env = "BRICKFS_SCOPE_SIGNING_KEY", value_name = "FILE")]
    scope_signing_key: Option<PathBuf>,
    /// The certificate the API serves HTTPS with, of role api [default:
    /// api.pem in --tls-dir]. Clients check that role; they need a
    /// certificate of the same CA themselves (provisioner, tenant or
    /// admin).
    #[arg(long, env = "BRICKFS_API_TLS_CERT", value_name = "FILE")]
    api_cert: Option<PathBuf>,
    /// The key of --api-cert [default: api.key in --tls-dir].
    #[arg(long, env = "BRICKFS_API_TLS_KEY", value_name = "FILE")]
    api_key: Option<PathBuf>,
    #[command(flatten)]
    metrics: telemetry::MetricsArgs,
}

/// The API's own credentials for its port: the CA the process trusts, and
/// the certificate of role api (not the admin one it reaches bricks with).
fn server_tls(args: &Args, mode: &tls::Mode) -> Result<Option<Arc<tls::Tls>>, String> {
    let tls::Mode::Tls(own) = mode else {
        return Ok(None);
    };
    let dir = args.tls.tls_dir.as_ref();
    let pick =
        |given: &Option<PathBuf>, name: &str| given.clone().or_else(|| dir.map(|d| d.join(name)));
    let (Some(cert), Some(key)) = (
        pick(&args.api_cert, "api.pem"),
        pick(&args.api_key, "api.key"),
    ) else {
        return Err(
            "the API serves HTTPS with a certificate of role api: give --api-cert and \
                    --api-key, or have api.pem and api.key in --tls-dir \
                    (`brickfs ca issue --role api NAME --host HOST`)"
                .into(),
        );
    };
    let files = tls::Files {
        ca: own.files().ca.clone(),
        cert,
        key,
    };
    let server = tls::Tls::open(files).map_err(|e| format!("the API's certificate: {e}"))?;
    let me = server.me();
    if me.role() != Some(tls::Role::Api) {
        return Err(format!(
            "{} is {me}, not of role api: clients would refuse it",
            server.files().cert.display()
        ));
    }
    Ok(Some(server))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = supervise::logging::init(args.log_level.as_deref(), "info") {
        eprintln!("brickfs-api: {e}");
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("brickfs-api: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("brickfs-api: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let mode = args
        .tls
        .install(tls::Role::Admin)
        .map_err(|e| e.to_string())?;
    let server = server_tls(&args, mode)?;
    let url = args
        .store
        .store
        .ok_or("no store: give --store URL (or BRICKFS_STORE), the cluster store of the volumes")?;
    let store = store::open(&url).await.map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local address: {e}"))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    let signing = args.scope_signing_key.clone().or_else(|| {
        let d = args.tls.tls_dir.as_ref()?.join(tls::scope::SIGNING_KEY);
        d.exists().then_some(d)
    });
    let signer = match signing {
        Some(path) => {
            let s = tls::scope::Signer::load(&path).map_err(|e| e.to_string())?;
            info!(key = %path.display(), cluster = %s.cluster(), "signing scope tokens");
            Some(s)
        }
        None => {
            info!("no scope signing key: no scope tokens for tenants' hosts");
            None
        }
    };
    let state = api::AppState::new(store, &url, signer);
    let metrics = telemetry::Metrics::new("brickfs-api").ops(api::request_table().clone());
    telemetry::start(&args.metrics, metrics)
        .await
        .map_err(|e| e.to_string())?;
    let scheme = if server.is_some() { "https" } else { "http" };
    info!(%addr, store = %url, scheme, "management API listening");
    let mut out = std::io::stdout().lock();
    writeln!(out, "LISTENING {addr}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("write stdout: {e}"))?;
    drop(out);
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    };
    api::serve(listener, server, state.clone(), shutdown)
        .await
        .map_err(|e| format!("serving: {e}"))?;
    state.close().await;
    info!("stopped");
    Ok(())
}
