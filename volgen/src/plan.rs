//! What a client (FUSE mount, NFS gateway, heal daemon) needs from a
//! volume spec to run its stack: the bricks and their identities in volume
//! order, and the options that set its timeouts. Pure: the binaries read
//! the spec from the store and resolve the addresses.

use std::time::Duration;

use crate::spec::{SpecError, VolumeSpec, VolumeState};

#[derive(Clone, Debug, PartialEq)]
pub struct ClientPlan {
    pub volume: String,
    /// `host:port` as the spec has them, in volume order.
    pub bricks: Vec<String>,
    pub brick_ids: Vec<proto::BrickId>,
    /// Bricks per replica set (`client::StackConfig::replica`).
    pub replica: usize,
    pub attr_timeout: Duration,
    pub entry_timeout: Duration,
    pub op_timeout: Duration,
    pub heal_retry: Duration,
}

fn secs(spec: &VolumeSpec, key: &str) -> Duration {
    Duration::from_secs_f64(spec.option_secs(key).max(0.0))
}

/// The plan for a client of `spec`; only a started volume is served.
pub fn client_plan(spec: &VolumeSpec) -> Result<ClientPlan, SpecError> {
    if spec.state != VolumeState::Started {
        return Err(SpecError(format!(
            "volume {} is {}: start it first (brickfs volume start {})",
            spec.name, spec.state, spec.name
        )));
    }
    let replica = usize::from(spec.replica);
    if replica == 0 || spec.bricks.is_empty() || !spec.bricks.len().is_multiple_of(replica) {
        return Err(SpecError(format!(
            "volume {} has {} bricks, not whole replica sets of {}",
            spec.name,
            spec.bricks.len(),
            spec.replica
        )));
    }
    let brick_ids = spec
        .bricks
        .iter()
        .map(|b| {
            uuid::Uuid::parse_str(&b.id)
                .map(|u| proto::BrickId(*u.as_bytes()))
                .map_err(|e| SpecError(format!("brick {} has a bad id {:?}: {e}", b.addr, b.id)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ClientPlan {
        volume: spec.name.clone(),
        bricks: spec.bricks.iter().map(|b| b.addr.clone()).collect(),
        brick_ids,
        replica,
        attr_timeout: secs(spec, "performance.attr-timeout"),
        entry_timeout: secs(spec, "performance.entry-timeout"),
        op_timeout: secs(spec, "network.op-timeout"),
        heal_retry: secs(spec, "cluster.heal-retry"),
    })
}

/// Reads volume `name` from the store at `url` and plans a client for it,
/// with the brick addresses resolved. The library's one piece of I/O: every
/// client binary (mount, NFS gateway, heal daemon) starts this way.
pub async fn fetch(
    url: &str,
    name: &str,
) -> Result<(ClientPlan, Vec<std::net::SocketAddr>), String> {
    crate::spec::validate_name(name).map_err(|e| e.to_string())?;
    let store = store::open(url).await.map_err(|e| e.to_string())?;
    let entry = store
        .get(&VolumeSpec::key(name))
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("unknown volume {name} (the store at {url} has no such volume)"))?;
    plan_entry(&entry).await
}

/// The plan from a volume's store entry, with the brick addresses resolved.
pub async fn plan_entry(
    entry: &store::Entry,
) -> Result<(ClientPlan, Vec<std::net::SocketAddr>), String> {
    let spec = VolumeSpec::from_json(&entry.value).map_err(|e| e.to_string())?;
    let plan = client_plan(&spec).map_err(|e| e.to_string())?;
    let mut addrs = Vec::with_capacity(plan.bricks.len());
    for b in &plan.bricks {
        let found = tokio::net::lookup_host(b.as_str())
            .await
            .map_err(|e| format!("cannot resolve brick {b}: {e}"))?
            .next()
            .ok_or_else(|| format!("brick {b} resolves to no address"))?;
        addrs.push(found);
    }
    Ok((plan, addrs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::BrickRef;

    fn spec(state: VolumeState, n: usize) -> VolumeSpec {
        VolumeSpec {
            format: crate::spec::SPEC_FORMAT,
            name: "gv0".into(),
            id: uuid::Uuid::new_v4().to_string(),
            replica: 3,
            bricks: (0..n)
                .map(|i| BrickRef {
                    addr: format!("127.0.0.1:{}", 4000 + i),
                    id: uuid::Uuid::new_v4().to_string(),
                })
                .collect(),
            options: [("network.op-timeout".to_string(), "3".to_string())].into(),
            state,
            created_by: String::new(),
            created_at: 0,
        }
    }

    #[test]
    fn only_started_volumes_of_whole_sets_are_served() {
        let p = client_plan(&spec(VolumeState::Started, 3)).expect("plan");
        assert_eq!(p.bricks.len(), 3);
        assert_eq!(p.op_timeout, Duration::from_secs(3));
        assert_eq!(p.attr_timeout, Duration::from_secs(1));
        assert!(client_plan(&spec(VolumeState::Stopped, 3)).is_err());
        assert!(client_plan(&spec(VolumeState::Created, 3)).is_err());
        let two = client_plan(&spec(VolumeState::Started, 6)).expect("2x3 plan");
        assert_eq!((two.bricks.len(), two.replica), (6, 3));
        assert!(client_plan(&spec(VolumeState::Started, 4)).is_err());
    }
}
