//! What a client (FUSE mount, NFS gateway, heal daemon, rebalance) needs
//! from a volume spec to run its stack: the bricks and their identities in
//! volume order, and the options that set its timeouts. Pure: the `volume`
//! crate reads the spec from the store and resolves the addresses.

use std::time::Duration;

use crate::spec::{SpecError, VolumeSpec, VolumeState};

#[derive(Clone, Debug, PartialEq)]
pub struct ClientPlan {
    pub volume: String,
    /// `host:port` as the spec has them, in volume order.
    pub bricks: Vec<String>,
    /// The bricks' identities, in the same order; empty when the bricks
    /// were named by address without a spec (nothing to check them by).
    pub brick_ids: Vec<proto::BrickId>,
    /// Bricks per replica set (`client::StackConfig::replica`).
    pub replica: usize,
    pub attr_timeout: Duration,
    pub entry_timeout: Duration,
    pub op_timeout: Duration,
    pub heal_retry: Duration,
}

/// The plan for a client of `spec`; only a started volume is served.
pub fn client_plan(spec: &VolumeSpec) -> Result<ClientPlan, SpecError> {
    if spec.state != VolumeState::Started {
        return Err(SpecError(format!(
            "volume {} is {}: start it first (brickfs volume start {})",
            spec.name, spec.state, spec.name
        )));
    }
    admin_plan(spec)
}

/// The plan of `spec` in whatever state it is: for admin work on the
/// bricks (heal, replace-brick's refill) that does not serve the volume.
pub fn admin_plan(spec: &VolumeSpec) -> Result<ClientPlan, SpecError> {
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
        attr_timeout: spec.option_duration("performance.attr-timeout"),
        entry_timeout: spec.option_duration("performance.entry-timeout"),
        op_timeout: spec.option_duration("network.op-timeout"),
        heal_retry: spec.option_duration("cluster.heal-retry"),
    })
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
