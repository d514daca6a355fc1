//! Text of `volume info`, `volume list` and `volume status`, in the manner
//! of Gluster's.

use volgen::spec::VolumeSpec;

use super::ops::BrickStatus;
use super::probe::probe_error;

/// `1 x 3 = 3`.
pub fn brick_count(spec: &VolumeSpec) -> String {
    format!(
        "{} x {} = {}",
        spec.replica_sets(),
        spec.replica,
        spec.bricks.len()
    )
}

/// What `volume add-brick` says when it is done.
pub fn added(spec: &VolumeSpec, sets_before: usize) -> String {
    let r = usize::from(spec.replica.max(1));
    let mut s = format!(
        "volume add-brick: {}: success
",
        spec.name
    );
    for (i, set) in spec.bricks.chunks(r).enumerate().skip(sets_before) {
        let addrs: Vec<&str> = set.iter().map(|b| b.addr.as_str()).collect();
        s.push_str(&format!(
            "  replica set {}: {}
",
            i + 1,
            addrs.join(" ")
        ));
    }
    s.push_str(&format!(
        "volume {} is {} ({}) now. Its files stay on the sets they are on until \
         `brickfs volume rebalance {} start` spreads them over all sets{}.\n",
        spec.name,
        brick_count(spec),
        spec.type_name(),
        spec.name,
        if spec.state == volgen::spec::VolumeState::Started {
            ""
        } else {
            " (once the volume is started)"
        }
    ));
    s
}

/// `volume info` of one volume.
pub fn info(spec: &VolumeSpec) -> String {
    let mut s = format!(
        "Volume Name: {}\nType: {}\nVolume ID: {}\nStatus: {}\n\
         Number of Bricks: {}\nTransport-type: tcp\nBricks:\n",
        spec.name,
        spec.type_name(),
        spec.id,
        spec.state,
        brick_count(spec)
    );
    for (i, b) in spec.bricks.iter().enumerate() {
        s.push_str(&format!("Brick{}: {} ({})\n", i + 1, b.addr, b.id));
    }
    if !spec.options.is_empty() {
        s.push_str("Options Reconfigured:\n");
        for (k, v) in &spec.options {
            s.push_str(&format!("{k}: {v}\n"));
        }
    }
    s
}

/// `volume info` of several volumes, a blank line between them.
pub fn info_all(specs: &[VolumeSpec]) -> String {
    if specs.is_empty() {
        return "No volumes present\n".into();
    }
    specs.iter().map(info).collect::<Vec<_>>().join("\n")
}

/// `volume list`.
pub fn list(specs: &[VolumeSpec]) -> String {
    if specs.is_empty() {
        return "No volumes present in cluster\n".into();
    }
    specs.iter().map(|s| format!("{}\n", s.name)).collect()
}

/// `volume status`: a table of the bricks, then what went wrong with them.
pub fn status(spec: &VolumeSpec, bricks: &[BrickStatus]) -> String {
    let width = bricks
        .iter()
        .map(|b| b.brick.addr.len())
        .max()
        .unwrap_or(0)
        .max("Brick".len());
    let mut s = format!(
        "Status of volume: {} ({}, {})\n",
        spec.name,
        spec.state,
        brick_count(spec)
    );
    s.push_str(&format!(
        "{:<width$}  {:>3}  {:<6}  {:<8}  {:>12}  {}\n",
        "Brick", "Set", "Online", "Identity", "Heal entries", "Brick ID"
    ));
    let r = usize::from(spec.replica.max(1));
    let mut notes = Vec::new();
    for (i, b) in bricks.iter().enumerate() {
        let (online, identity, heal) = match &b.result {
            Ok(p) if p.id == b.brick.id => ("Y", "ok", p.heal_entries.to_string()),
            Ok(p) => {
                notes.push(format!(
                    "brick {} answers as {}, not as brick {} of the volume \
                     (wiped or replaced disk?)",
                    b.brick.addr,
                    p.id,
                    i + 1
                ));
                ("Y", "WRONG", p.heal_entries.to_string())
            }
            Err(e) => {
                notes.push(probe_error(&b.brick.addr, &spec.name, e));
                let identity = if matches!(e, proto::FsError::Refused(_)) {
                    "refused"
                } else {
                    "-"
                };
                ("N", identity, "-".into())
            }
        };
        s.push_str(&format!(
            "{:<width$}  {:>3}  {online:<6}  {identity:<8}  {heal:>12}  {}\n",
            b.brick.addr,
            i / r + 1,
            b.brick.id
        ));
    }
    for n in notes {
        s.push_str(&format!("note: {n}\n"));
    }
    s.push_str(&quorum_lines(spec, bricks));
    s
}

/// One line per replica set that lost its quorum: what clients see, and
/// which bricks are missing and why.
fn quorum_lines(spec: &VolumeSpec, bricks: &[BrickStatus]) -> String {
    let r = usize::from(spec.replica.max(1));
    let quorum = r / 2 + 1;
    let mut s = String::new();
    for (set, members) in bricks.chunks(r).enumerate() {
        let usable = |b: &&BrickStatus| matches!(&b.result, Ok(p) if p.id == b.brick.id);
        let up = members.iter().filter(usable).count();
        if up >= quorum {
            continue;
        }
        let missing: Vec<String> = members
            .iter()
            .filter(|b| !usable(b))
            .map(|b| match &b.result {
                Ok(p) => format!("{} (answers as another brick, {})", b.brick.addr, p.id),
                Err(e) => format!("{} ({e})", b.brick.addr),
            })
            .collect();
        s.push_str(&format!(
            "quorum lost: replica set {} has {up} of {} bricks usable (needs {quorum}): \
             its files are read-only (EROFS) for every client; missing: {}\n",
            set + 1,
            members.len(),
            missing.join(", ")
        ));
    }
    s
}
