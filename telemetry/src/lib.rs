//! What a daemon shows of itself on `--metrics-listen ADDR`: Prometheus
//! `/metrics` (OpenMetrics text, prometheus-client's encoder) with the
//! counts and latency histograms of its operations (`ops`), its process's
//! memory and CPU (`process`), and which daemon and version it is.
//!
//! The port is plain HTTP and shows counts only, never names or data:
//! bind it to loopback or to the operators' network.

pub mod ops;
mod process;

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use ops::{OpSnapshot, OpTable};

/// The flag every daemon takes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics on http://ADDR/metrics (plain HTTP, counts
    /// only: bind it to loopback or an operators' network). Off without it.
    #[arg(long, env = "BRICKFS_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

/// A collector shared with the code that records into it.
#[derive(Debug)]
pub struct Shared<T>(pub Arc<T>);

impl<T: Collector> Collector for Shared<T> {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
}

/// The metrics of one process, filled in before serving.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// `daemon`: brickd, brickfs-mount, … (in `brickfs_build_info`).
    pub fn new(daemon: &str) -> Metrics {
        let mut registry = Registry::default();
        registry.register(
            "brickfs_build",
            "Which daemon this is, and its version",
            Info::new(vec![
                ("daemon", daemon.to_string()),
                ("version", env!("CARGO_PKG_VERSION").to_string()),
            ]),
        );
        registry.register_collector(Box::new(process::Process));
        Metrics { registry }
    }

    /// Adds a table of operations.
    pub fn ops(mut self, table: Arc<OpTable>) -> Metrics {
        self.registry.register_collector(Box::new(Shared(table)));
        self
    }

    /// Adds a gauge whose value `read` gives at each scrape.
    pub fn gauge(
        mut self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> i64 + Send + Sync + 'static,
    ) -> Metrics {
        self.registry.register_collector(Box::new(ReadGauge {
            name,
            help,
            read: Box::new(read),
        }));
        self
    }

    /// Adds any other collector.
    pub fn collector(mut self, c: Box<dyn Collector>) -> Metrics {
        self.registry.register_collector(c);
        self
    }

    /// The exposition as of now.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(error = %e, "encoding the metrics failed");
        }
        text
    }

    /// Serves `/metrics` on `addr` from a task of the current runtime;
    /// the address bound (for port 0).
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("metrics: cannot listen on {addr}: {e}"))
        })?;
        let bound = listener.local_addr()?;
        let me = Arc::new(self);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let me = me.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        me.render(),
                    )
                }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "the metrics endpoint stopped");
            }
        });
        tracing::info!(addr = %bound, "metrics on http://{bound}/metrics");
        Ok(bound)
    }
}

/// A gauge read when scraped, from state its owner keeps anyway.
struct ReadGauge {
    name: &'static str,
    help: &'static str,
    read: Box<dyn Fn() -> i64 + Send + Sync>,
}

impl std::fmt::Debug for ReadGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadGauge")
            .field("name", &self.name)
            .finish()
    }
}

impl Collector for ReadGauge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        process::gauge(&mut encoder, self.name, self.help, (self.read)())
    }
}

/// Serves `metrics` if `args` asks for it; a port that cannot be bound is
/// an error (a daemon told to show metrics should not run blind).
pub async fn start(args: &MetricsArgs, metrics: Metrics) -> std::io::Result<Option<SocketAddr>> {
    match args.metrics_listen {
        Some(addr) => metrics.serve(addr).await.map(Some),
        None => Ok(None),
    }
}
