//! Opening a volume: "store URL + volume name", or a list of brick
//! addresses, becomes a running client stack that follows its volume.
//! `brickfs-mount`, `brickfs-nfs`, `brickfs heald`, `brickfs volume heal`,
//! the rebalance runner and replace-brick's refill all start here, so the
//! way a spec turns into connections is written once.
//!
//! - [`Source`]: where the volume is (and [`args::SourceArgs`], the flags
//!   every binary takes for it: `--store`/`BRICKFS_STORE`, `--bricks`).
//! - [`Source::resolve`]: one read of the spec → [`Resolved`]: the
//!   [`ClientPlan`] and the [`StackConfig`] built from it
//!   ([`Resolved::from_plan`] is the one place a `StackConfig` is made).
//! - [`open`]: resolve, connect, and (from a store) follow: the stack's top
//!   is a [`Switch`] and a task keeps it on the volume's current graph and
//!   options ([`follow`]).
//! - [`follow::Follower`]: the versions of a spec as they change, for
//!   clients that are not one stack (heald rebuilds its healers).

pub mod args;
mod error;
pub mod follow;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use client::switch::Switch;
use client::{Layer, StackConfig};
use store::Revision;
use volgen::plan::ClientPlan;
use volgen::spec::VolumeSpec;

pub use error::OpenError;
pub use follow::OnCacheTimes;

/// How long closing a stack may take before the process moves on (locks
/// are given back with their post-op; a hung brick must not hold up exit).
pub const CLOSE_LIMIT: Duration = Duration::from_secs(2);

/// Where a client finds its volume.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// Volume `name` in the cluster store at `url`: bricks, identities and
    /// options come from its spec, and are followed while the client runs.
    Store { url: String, name: String },
    /// Fixed bricks of one replica set, in volume order, without a store:
    /// nothing is followed and the identities are not checked.
    Bricks {
        name: String,
        bricks: Vec<SocketAddr>,
        op_timeout: Duration,
    },
}

/// A volume's spec as a client runs it.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub plan: ClientPlan,
    pub config: StackConfig,
    /// The store revision the plan was read at (`None` for `--bricks`).
    pub revision: Option<Revision>,
}

impl Source {
    pub fn name(&self) -> &str {
        match self {
            Source::Store { name, .. } | Source::Bricks { name, .. } => name,
        }
    }

    /// Reads the spec once (from a store) and resolves the brick addresses;
    /// only a started volume is served.
    pub async fn resolve(&self) -> Result<Resolved, OpenError> {
        self.resolve_as(Serve::StartedOnly).await
    }

    /// As [`Source::resolve`], for admin work on the bricks (heal) that
    /// does not serve the volume: any state.
    pub async fn resolve_for_admin(&self) -> Result<Resolved, OpenError> {
        self.resolve_as(Serve::AnyState).await
    }

    async fn resolve_as(&self, serve: Serve) -> Result<Resolved, OpenError> {
        match self {
            Source::Store { url, name } => {
                volgen::spec::validate_name(name).map_err(|source| OpenError::Spec {
                    name: name.clone(),
                    source,
                })?;
                let store = store::open(url).await?;
                let entry = store.get(&VolumeSpec::key(name)).await?.ok_or_else(|| {
                    OpenError::UnknownVolume {
                        name: name.clone(),
                        url: url.clone(),
                    }
                })?;
                resolve_entry(name, &entry, serve).await
            }
            Source::Bricks {
                name,
                bricks,
                op_timeout,
            } => {
                let plan = ClientPlan {
                    volume: name.clone(),
                    bricks: bricks.iter().map(ToString::to_string).collect(),
                    brick_ids: Vec::new(),
                    replica: bricks.len(),
                    attr_timeout: VolumeSpec::default_duration("performance.attr-timeout"),
                    entry_timeout: VolumeSpec::default_duration("performance.entry-timeout"),
                    op_timeout: *op_timeout,
                    heal_retry: VolumeSpec::default_duration("cluster.heal-retry"),
                };
                Ok(Resolved {
                    config: Resolved::config_for(&plan, bricks.clone()),
                    plan,
                    revision: None,
                })
            }
        }
    }
}

impl Resolved {
    /// The plan of a spec (any state: admin commands such as replace-brick's
    /// refill work on stopped volumes too), addresses resolved.
    pub async fn from_spec(spec: &VolumeSpec) -> Result<Resolved, OpenError> {
        let plan = volgen::plan::admin_plan(spec).map_err(|source| OpenError::Spec {
            name: spec.name.clone(),
            source,
        })?;
        Resolved::from_plan(plan, None).await
    }

    /// Resolves the plan's brick addresses and builds its stack config.
    pub async fn from_plan(
        plan: ClientPlan,
        revision: Option<Revision>,
    ) -> Result<Resolved, OpenError> {
        let mut addrs = Vec::with_capacity(plan.bricks.len());
        for b in &plan.bricks {
            addrs.push(resolve_addr(b).await?);
        }
        Ok(Resolved {
            config: Resolved::config_for(&plan, addrs),
            plan,
            revision,
        })
    }

    /// The one place a plan becomes a `StackConfig` (everything else keeps
    /// `StackConfig::default`'s values, such as the ping interval).
    fn config_for(plan: &ClientPlan, bricks: Vec<SocketAddr>) -> StackConfig {
        StackConfig {
            volume: plan.volume.clone(),
            bricks,
            op_timeout: plan.op_timeout,
            brick_ids: (!plan.brick_ids.is_empty()).then(|| plan.brick_ids.clone()),
            replica: plan.replica,
            ..StackConfig::default()
        }
    }
}

/// Which volumes a plan is made for.
#[derive(Clone, Copy)]
enum Serve {
    StartedOnly,
    AnyState,
}

async fn resolve_entry(
    name: &str,
    entry: &store::Entry,
    serve: Serve,
) -> Result<Resolved, OpenError> {
    let spec_error = |source| OpenError::Spec {
        name: name.to_string(),
        source,
    };
    let spec = VolumeSpec::from_json(&entry.value).map_err(spec_error)?;
    let plan = match serve {
        Serve::StartedOnly => volgen::plan::client_plan(&spec),
        Serve::AnyState => volgen::plan::admin_plan(&spec),
    }
    .map_err(spec_error)?;
    Resolved::from_plan(plan, Some(entry.revision)).await
}

async fn resolve_addr(addr: &str) -> Result<SocketAddr, OpenError> {
    let resolve_error = |why: String| OpenError::Resolve {
        addr: addr.to_string(),
        why,
    };
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| resolve_error(e.to_string()))?
        .next()
        .ok_or_else(|| resolve_error("no address".into()))
}

/// A running client stack of a volume.
pub struct Opened {
    /// The top of the stack: a [`Switch`] when the volume is followed.
    pub layer: Arc<dyn Layer>,
    /// What the stack was built from.
    pub plan: ClientPlan,
    follower: Option<tokio::task::JoinHandle<()>>,
}

impl Opened {
    /// Stops following and closes the stack: replication locks go back with
    /// their post-op (no dirty marks left for heal), connections close.
    /// Bounded by [`CLOSE_LIMIT`].
    pub async fn close(&mut self) {
        if let Some(f) = self.follower.take() {
            f.abort();
        }
        let _ = tokio::time::timeout(CLOSE_LIMIT, self.layer.close()).await;
    }
}

/// Resolves `source`, connects to its bricks and, from a store, follows
/// the volume: option changes apply live, brick changes switch the stack to
/// a new graph. `on_cache_times` gets the FUSE cache times: the first ones
/// before this returns, then every change.
pub async fn open(source: &Source, on_cache_times: OnCacheTimes) -> Result<Opened, OpenError> {
    let resolved = source.resolve().await?;
    on_cache_times(resolved.plan.attr_timeout, resolved.plan.entry_timeout);
    let stack = client::connect(resolved.config.clone())
        .await
        .map_err(|source| OpenError::Connect {
            name: resolved.plan.volume.clone(),
            source,
        })?;
    let Source::Store { url, name } = source else {
        return Ok(Opened {
            layer: stack,
            plan: resolved.plan,
            follower: None,
        });
    };
    let switch = Switch::new(stack);
    let follower = follow::Follower::new(url.clone(), name.clone(), resolved.revision);
    let task = tokio::spawn(follow::keep_switched(
        follower,
        resolved.plan.clone(),
        switch.clone(),
        on_cache_times,
    ));
    Ok(Opened {
        layer: switch,
        plan: resolved.plan,
        follower: Some(task),
    })
}
