//! The process: arguments, logging, the Kubernetes client, signals.

use std::process::ExitCode;

use clap::Parser;

use crate::api::{ApiClient, Token};
use crate::args::Args;
use crate::controller::{self, RunConfig};
use crate::error::Error;
use crate::lease::{self, LeaseConfig};

pub fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = supervise::logging::init(args.log_level.as_deref(), "info") {
        eprintln!("brickfs-provisioner: {e}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error with its causes, one after another.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

async fn kube_client(args: &Args) -> Result<kube::Client, Error> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
    };
    kube::Client::try_from(config).map_err(Error::kube("building the Kubernetes client"))
}

async fn run(args: Args) -> Result<(), Error> {
    let token = match (&args.token_file, std::env::var("BRICKFS_API_TOKEN")) {
        (Some(path), _) => Token::File(path.clone()),
        (None, Ok(t)) if !t.trim().is_empty() => Token::Value(t.trim().to_string()),
        _ => {
            return Err(Error::Config(
                "no API token: give --token-file or set BRICKFS_API_TOKEN".into(),
            ))
        }
    };
    let identity = match args
        .tls
        .install(tls::Role::Provisioner)
        .map_err(|e| Error::Config(e.to_string()))?
    {
        tls::Mode::Tls(t) => Some(t.clone()),
        tls::Mode::Insecure => None,
    };
    let api = ApiClient::new(&args.api, token, args.api_timeout, identity)?;
    let metrics = telemetry::Metrics::new("brickfs-provisioner").ops(crate::api::calls().clone());
    telemetry::start(&args.metrics, metrics)
        .await
        .map_err(|e| Error::Config(e.to_string()))?;
    let client = kube_client(&args).await?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot catch SIGTERM: {e}");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stopping");
        let _ = tx.send(true);
    });
    let duration = args.lease_duration;
    let cfg = RunConfig {
        lease: LeaseConfig {
            namespace: args.lease_namespace.clone(),
            name: args.lease_name.clone(),
            identity: lease::identity(),
            duration,
            renew_every: (duration / 3).max(std::time::Duration::from_millis(200)),
            renew_deadline: duration * 2 / 3,
        },
        sweep_interval: args.sweep_interval,
        concurrency: args.concurrency.max(1),
    };
    tracing::info!(
        api = %args.api,
        provisioner = %args.provisioner_name,
        identity = %cfg.lease.identity,
        "brickfs-provisioner starting"
    );
    controller::run(client, api, args.provisioner_name.clone(), cfg, rx).await
}
